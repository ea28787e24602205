"""What each way of asking libvirt costs, on libvirt's test driver (issue 17, items 4-5).

In one process, on one test-driver host of N running domains, interleaved run by
run, medians of one sample of:

* lookups: the naive loop (``list_domain_ids``, then ``lookup_by_id`` + ``info``
  + ``close`` each) through xvirt as it is (a hash lookup by the believed UUID),
  through xvirt made to scan as before (``lookupByID`` for every lookup: the
  driver's belief hidden), and libvirt-python's own loop (``lookupByID`` each);
* the floor under xvirt's loop: libvirt's own calls that loop makes, alone
  (``listDomainsID``, then ``lookupByUUIDString`` + ``info()`` each);
* samples: ``Connection.sample()``, and the libvirt combinations it could be
  made of: ``listAllDomains(ACTIVE)`` + ``info()`` each,
  ``getAllDomainStats(STATE, NOWAIT)`` + ``info()`` each, and the bulk call
  with the groups that on QEMU ask every guest's monitor
  (``STATE|CPU_TOTAL|BALLOON|VCPU``; the test driver fills only the state);
* the naive loop through a private libvirtd (``xvirt.testing.libvirtd``, its
  test driver's shared host, ``test+unix:///default``, made to run as many
  domains), xvirt beside libvirt-python: every call a round trip over the
  daemon's socket. libvirt-python's connection is one a script that registers
  no event loop has (opened inside ``EventLoop.unwatched()``: this process has
  one), as are the connection xvirt makes its calls on.

Then cProfile of one sample of xvirt's naive loop at the largest size, in
process: where each domain's microseconds go, function by function.

    .venv/bin/python benchmarks/libvirt_costs.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_cost import node_file
from daemon_cost import naive_sample
from matrix import libvirt_naive
from report import REPO, command_line, machine_lines, write_section

import xvirt
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess

RUNS = 5
MINE = "naive loop, xvirt (lookup by believed UUID)"
SCAN = "naive loop, xvirt scanning (lookupByID, as before)"
RAW = "naive loop, libvirt-python (lookupByID)"
FLOOR = "libvirt's calls of xvirt's loop alone (lookupByUUIDString + info() each)"
D_MINE = "through libvirtd (test+unix): naive loop, xvirt"
D_RAW = "through libvirtd (test+unix): naive loop, libvirt-python"
D_FLOOR = "through libvirtd (test+unix): libvirt's calls of xvirt's loop alone"
DAEMON_TARGET = 2.0  # issue 17: through libvirtd, xvirt's naive loop >= 2x libvirt-python's
TARGET = 5.0  # issue 17: in process, >= 5x
PROFILE_ROWS = 14


def scanning(conn: xvirt.Connection) -> xvirt.Connection:
    """``conn`` with its driver's belief of who holds an ID hidden: every lookup is a
    ``lookupByID``, as before issue 17."""
    driver = conn._driver
    assert isinstance(driver, LibvirtDriver)
    driver._mirror.holder = lambda domid: None  # type: ignore[method-assign]
    return conn


def floor(raw: Any, uuids: dict[int, str]) -> int:
    """The libvirt calls xvirt's naive loop makes, with nothing of xvirt around them: the
    IDs, then per domain ``lookupByUUIDString`` of its UUID and ``info()``."""
    n = 0
    for domid in raw.listDomainsID():
        raw.lookupByUUIDString(uuids[domid]).info()
        n += 1
    return n


def samplers(conn: xvirt.Connection, scan: xvirt.Connection, raw: Any, lv: Any,
             daemon: tuple[xvirt.Connection, Any] | None) -> dict[str, Callable[[], int]]:
    monitor = (lv.VIR_DOMAIN_STATS_STATE | lv.VIR_DOMAIN_STATS_CPU_TOTAL
               | lv.VIR_DOMAIN_STATS_BALLOON | lv.VIR_DOMAIN_STATS_VCPU)
    nowait = (lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
              | lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
    uuids = {d.ID(): d.UUIDString() for d in raw.listAllDomains(0)}
    run: dict[str, Callable[[], int]] = {
        MINE: lambda: naive_sample(conn),
        SCAN: lambda: naive_sample(scan),
        RAW: lambda: libvirt_naive(raw),
        FLOOR: lambda: floor(raw, uuids),
        "xvirt Connection.sample()": lambda: len(conn.sample()),
        "listAllDomains(ACTIVE) + info() each": lambda: len(
            [d.info() for d in raw.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]),
        "getAllDomainStats(STATE, NOWAIT) + info() each": lambda: len(
            [d.info() for d, _ in raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_STATE, nowait)]),
        "getAllDomainStats(STATE|CPU_TOTAL|BALLOON|VCPU) alone": lambda: len(
            raw.getAllDomainStats(monitor, lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)),
    }
    if daemon is not None:
        dconn, draw = daemon
        duuids = {d.ID(): d.UUIDString() for d in draw.listAllDomains(0)}
        run[D_MINE] = lambda: naive_sample(dconn)
        run[D_RAW] = lambda: libvirt_naive(draw)
        run[D_FLOOR] = lambda: floor(draw, duuids)
    return run


def populated(libvirtd: LibvirtdProcess, guests: int) -> Any:
    """The daemon's shared test host (``/default``: every connection sees the one host,
    as on a real daemon), made pristine, then running ``guests`` domains named and
    sized as the host file's. Returns the connection that made them: the test driver
    forgets the shared host when its last connection closes."""
    libvirtd.restart()
    admin = real_libvirt().open(libvirtd.uri)
    for i in range(guests - len(admin.listDomainsID())):
        admin.createXML(
            f"<domain type='test'><name>guest-{i + 1:05d}</name>"
            f"<uuid>00000000-0000-4000-8000-{i:012x}</uuid><memory>262144</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os></domain>", 0)
    return admin


def measure(guests: int, samples: int, workdir: Path,
            libvirtd: LibvirtdProcess | None) -> dict[str, list[float]]:
    lv = real_libvirt()
    node = node_file(workdir, guests)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(xvirt.open(f"libvirt:test://{node}", readonly=True))
        scan = scanning(stack.enter_context(xvirt.open(f"libvirt:test://{node}",
                                                       readonly=True)))
        raw = lv.openReadOnly(f"test://{node}")
        stack.callback(raw.close)
        daemon = None
        if libvirtd is not None:
            admin = populated(libvirtd, guests)
            stack.callback(admin.close)
            remote = libvirtd.uri
            dconn = stack.enter_context(xvirt.open(f"libvirt:{remote}", readonly=True))
            loop = ensure_event_loop(lv)
            assert loop is not None
            with loop.unwatched():  # as in a script that registers no event loop
                draw = lv.openReadOnly(remote)
            stack.callback(draw.close)
            daemon = (dconn, draw)
        run = samplers(conn, scan, raw, lv, daemon)
        for name, sample in run.items():  # warm, and check every one sees every domain
            if sample() != guests:
                raise SystemExit(f"{name}: did not see {guests} domains")
        times: dict[str, list[float]] = {name: [] for name in run}
        for _ in range(RUNS * samples):  # one sample of each case per round: drift and
            for name, sample in run.items():  # the machine's other load hit all alike
                gc.collect()
                start = time.perf_counter()
                sample()
                times[name].append(time.perf_counter() - start)
    return times


LAYERS = (
    "listing: `list_domain_ids()` (listDomainsID; a census only when the IDs changed)",
    "libvirt's per-domain calls alone: lookupByUUIDString + info()",
    "the driver per domain: `identify()` + `info_by_uuid()`",
    "the whole naive loop (Connection, cache, driver, libvirt)",
)


def layers(conn: xvirt.Connection, raw: Any, rounds: int = 7) -> dict[str, float]:
    """Microseconds per domain of each layer of xvirt's naive loop, unprofiled: medians of
    ``rounds`` interleaved samples, so that the layers' differences say what each adds."""
    driver = conn._driver
    assert isinstance(driver, LibvirtDriver)
    naive_sample(conn)
    ids = conn.list_domain_ids()
    pairs = [(d.ID(), d.UUIDString()) for d in raw.listAllDomains(0)]

    def per_domain_driver() -> None:
        for domid in ids:
            owner = driver.identify(domid)
            assert owner.uuid is not None
            driver.info_by_uuid(owner.uuid, domid)

    cases: dict[str, Callable[[], object]] = {
        LAYERS[0]: conn.list_domain_ids,
        LAYERS[1]: lambda: [raw.lookupByUUIDString(u).info() for _, u in pairs],
        LAYERS[2]: per_domain_driver,
        LAYERS[3]: lambda: naive_sample(conn),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()
            start = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) / len(ids) * 1e6 for name, t in times.items()}


def profile(guests: int, workdir: Path, samples: int = 3) -> tuple[str, dict[str, float]]:
    """Where xvirt's naive loop spends its time on a host of ``guests``, in process:
    cProfile of ``samples`` samples (the functions with the most own time, in microseconds
    per domain; the profiler's overhead inflates them), and the unprofiled cost of each
    layer (:func:`layers`). Through libvirtd the round trips' noise (tens of microseconds
    on a shared machine) drowns the layers' differences, so they are not split there."""
    lv = real_libvirt()
    node = node_file(workdir, guests)
    with xvirt.open(f"libvirt:test://{node}", readonly=True) as conn:
        raw = lv.openReadOnly(f"test://{node}")
        try:
            local = layers(conn, raw)
        finally:
            raw.close()
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(samples):
            naive_sample(conn)
        profiler.disable()
    stats = pstats.Stats(profiler)
    per = 1e6 / (samples * guests)
    rows = sorted(stats.stats.items(),  # type: ignore[attr-defined]
                  key=lambda kv: kv[1][2], reverse=True)
    total = sum(v[2] for _, v in rows)
    out = io.StringIO()
    out.write(f"{'calls/domain':>12} {'own us/domain':>13} {'cum us/domain':>13}  function\n")
    for (filename, line, function), (_cc, ncalls, own, cum, _callers) in rows[:PROFILE_ROWS]:
        where = filename.replace(str(REPO) + "/", "") if filename != "~" else ""
        name = f"{where}:{line}({function})" if where else function
        out.write(f"{ncalls / (samples * guests):12.2f} {own * per:13.2f} {cum * per:13.2f}  "
                  f"{name}\n")
    out.write(f"{'':>12} {total * per:13.2f} {'':>13}  (all functions, profiled)\n")
    return out.getvalue(), local


def verdict(ratio: float, target: float) -> str:
    """Met or missed; a ratio within 10% of its target is said to be a close call: on a
    shared machine successive runs land on either side of it."""
    said = "met" if ratio >= target else "**missed**"
    if abs(ratio / target - 1) < 0.1:
        said += (" (a close call: within 10% of the target, successive runs on this shared "
                 "machine land on either side)")
    return said


def render(results: dict[int, dict[str, list[float]]], command: str, quick: bool,
           profiled: tuple[str, dict[str, float]] | None) -> str:
    sizes = sorted(results)
    names = list(results[sizes[0]])
    lines = ["## libvirt: lookups and samples, call by call (`libvirt_costs`)", "",
             *machine_lines(command), "",
             "Median milliseconds per sample, of "
             + ", ".join(f"{len(results[n][names[0]])} samples at {n}" for n in sizes)
             + " domains, in rounds of one sample of every case in turn "
             f"{'(quick smoke run) ' if quick else ''}in one process, on libvirt's test "
             "driver (one host file per size). On QEMU every group but the state one "
             "asks each guest's monitor; the test driver fills only the state group, so "
             "its bulk row is a floor, not the QEMU cost. The machine was shared with "
             "other engineers' test runs while this ran: the figures through libvirtd (two "
             "processes taking turns on 2 cores) are the noisiest.", "",
             "| what | " + " | ".join(f"{n} domains" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{statistics.median(results[n][name]) * 1e3:.2f}" for n in sizes) + " |")
    top = max(sizes)
    med = {name: statistics.median(results[top][name]) for name in names}
    mine, scan, raw, low = med[MINE], med[SCAN], med[RAW], med[FLOOR]
    lines += ["", f"At {top} domains the naive loop through xvirt is {raw / mine:.1f}x "
              f"faster than libvirt-python's ({scan / mine:.1f}x faster than xvirt "
              f"scanning by ID); the target (issue 17) is >= {TARGET:.0f}x: "
              f"{verdict(raw / mine, TARGET)}. libvirt's own calls in "
              f"that loop take {low / top * 1e6:.1f} us per domain "
              f"({low / mine * 100:.0f}% of xvirt's {mine / top * 1e6:.1f} us); "
              f"{TARGET:.0f}x needs {raw / TARGET / top * 1e6:.1f} us per domain in all."]
    if D_MINE in med:
        dmine, draw, dlow = med[D_MINE], med[D_RAW], med[D_FLOOR]
        lines += ["", f"Through a private libvirtd (`xvirt.testing.libvirtd`, its test driver's "
                  f"shared host `test+unix:///default` running as many domains), at {top} "
                  "domains xvirt's "
                  f"naive loop takes {dmine * 1e3:.0f} ms, libvirt-python's "
                  f"{draw * 1e3:.0f} ms: {draw / dmine:.2f}x faster (target >= "
                  f"{DAEMON_TARGET:.0f}x: {verdict(draw / dmine, DAEMON_TARGET)}). Both make "
                  "two round trips per domain; libvirt-python's lookupByID also scans the "
                  "daemon's domain list, xvirt's lookupByUUIDString hashes. xvirt's two "
                  f"calls alone, back to back, take {dlow * 1e3:.0f} ms "
                  f"({dlow / top * 1e6:.0f} us per domain, xvirt's whole loop "
                  f"{dmine / top * 1e6:.0f} us): no client that makes them can be more than "
                  f"{draw / dlow:.2f}x faster than libvirt-python's loop here"
                  + (", so the round trips alone rule the target out." if
                     draw / dlow < DAEMON_TARGET else
                     f"; {DAEMON_TARGET:.0f}x leaves xvirt "
                     f"{(draw / DAEMON_TARGET - dlow) / top * 1e6:.0f} us per domain on top "
                     f"of them, and it adds {(dmine - dlow) / top * 1e6:.0f} us (its work "
                     "between the calls).")]
    if profiled is not None:
        table, local = profiled
        lines += ["", f"Where each domain's microseconds go in process at {top} domains, "
                  "layer by layer (unprofiled: medians of interleaved samples of each layer "
                  "alone, in microseconds per domain; the listing is shared by the domains "
                  "of a sample):", "", "| layer | us per domain |", "|---|---:|"]
        lines += [f"| {name} | {local[name]:.1f} |" for name in LAYERS]
        lines += ["", f"The driver adds {local[LAYERS[2]] - local[LAYERS[1]]:.1f} us per "
                  "domain to libvirt's calls, the Connection and cache above it "
                  f"{local[LAYERS[3]] - local[LAYERS[2]] - local[LAYERS[0]]:.1f} us, the "
                  f"listing {local[LAYERS[0]]:.1f} us.", "",
                  "cProfile of 3 samples of the loop in process, functions by own time, "
                  "in microseconds per domain (the profiler's overhead inflates every "
                  "figure, the pure-Python ones most):", "", "```", table.rstrip(), "```"]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="libvirt lookups and samples, call by call")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    sizes = ((50, 5), (500, 3)) if args.quick else ((50, 21), (1000, 7), (5000, 3))
    results: dict[int, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="xvirt-libvirt-costs-") as tmp, \
            LibvirtdProcess() as libvirtd:
        for guests, samples in sizes:
            results[guests] = measure(guests, samples, Path(tmp), libvirtd)
            print(f"{guests:5d}: " + ", ".join(
                f"{name} {statistics.median(t) * 1e3:.2f} ms"
                for name, t in results[guests].items()), flush=True)
        profiled = profile(max(results), Path(tmp))
        print(*profiled, sep="\n")
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_section("libvirt-costs", render(results, command, args.quick, profiled),
                  order=("matrix",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
