"""The scaling matrix: the 2006 loop on every driver beside real libvirt-python.

For 20, 200, 1000 and 5000 running domains, in one process and interleaved run
by run so drift hits every configuration alike, one sample of:

* the naive loop (``list_domain_ids``, then ``lookup_by_id`` + ``info`` +
  ``close`` for each) through xvirt's cache on the embedded host, on a host
  daemon (a real ``xvirt daemon`` process, reached over its unix socket) and on
  libvirt's test driver (``libvirt:test:///<node file>``);
* libvirt-python's own naive loop (``listDomainsID``, ``lookupByID``,
  ``info``) on the same test-driver host;
* libvirt-python's bulk call, ``getAllDomainStats`` (state, cpu-total,
  balloon, vcpu), on the same host: the cheapest way libvirt offers.

Targets (issue 7): at 5000 domains the naive loop on sim is no slower than
getAllDomainStats on the test driver, and through the daemon it is >= 15x
faster than libvirt-python's naive loop; (issue 17) through the libvirt driver
it is >= 5x faster than libvirt-python's naive loop on the same host.

    .venv/bin/python benchmarks/matrix.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_cost import node_file
from daemon_cost import _populate, naive_sample
from report import PLOTS, REPO, REPORT, command_line, line_plot, machine_lines, write_section

import xvirt
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.daemon import DaemonProcess

PLOT = PLOTS / "matrix.png"
FULL = ((20, 41), (200, 15), (1000, 9), (5000, 5))  # domains, samples per configuration
QUICK = ((20, 5), (200, 3))
RUNS = 3
CONFIGS = (
    "xvirt, sim",
    "xvirt, daemon",
    "xvirt, libvirt test driver",
    "libvirt-python naive loop",
    "libvirt-python getAllDomainStats",
)


@dataclass
class Row:
    config: str
    domains: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def libvirt_naive(conn: Any) -> int:
    n = 0
    for domid in conn.listDomainsID():
        conn.lookupByID(domid).info()
        n += 1
    return n


def libvirt_bulk(conn: Any, lv: Any) -> int:
    stats = (lv.VIR_DOMAIN_STATS_STATE | lv.VIR_DOMAIN_STATS_CPU_TOTAL
             | lv.VIR_DOMAIN_STATS_BALLOON | lv.VIR_DOMAIN_STATS_VCPU)
    return len(conn.getAllDomainStats(stats, lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE))


@contextlib.contextmanager
def samplers(guests: int, workdir: Path) -> Iterator[dict[str, Callable[[], int]]]:
    """One sampler per configuration, each over a host of ``guests`` guests."""
    lv = real_libvirt()
    node = node_file(workdir, guests)
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(xvirt.sim.Host(f"matrix-{guests}"))
        for i in range(guests):
            host.create(f"guest-{i + 1:05d}", memory_kib=262144, vcpus=1)
        daemon = DaemonProcess(tcp=False)
        daemon.start()
        stack.callback(daemon.cleanup)
        _populate(daemon, guests)
        sim = stack.enter_context(xvirt.open(host.uri, readonly=True))
        remote = stack.enter_context(xvirt.open(daemon.unix_uri, readonly=True))
        onlv = stack.enter_context(xvirt.open(f"libvirt:test://{node}", readonly=True))
        raw = lv.openReadOnly(f"test://{node}")
        stack.callback(raw.close)
        yield {
            CONFIGS[0]: lambda: naive_sample(sim),
            CONFIGS[1]: lambda: naive_sample(remote),
            CONFIGS[2]: lambda: naive_sample(onlv),
            CONFIGS[3]: lambda: libvirt_naive(raw),
            CONFIGS[4]: lambda: libvirt_bulk(raw, lv),
        }


def measure(guests: int, samples: int, workdir: Path) -> list[Row]:
    rows = {name: Row(name, guests) for name in CONFIGS}
    with samplers(guests, workdir) as run:
        expected = {name: guests + (1 if i < 2 else 0) for i, name in enumerate(CONFIGS)}
        for name, sample in run.items():  # warm: caches filled, channels open
            seen = sample()
            if seen != expected[name]:
                raise SystemExit(f"{name}: saw {seen} domains, expected {expected[name]}")
        for _ in range(RUNS):
            for name, sample in run.items():
                gc.collect()
                for _ in range(samples):
                    start = time.perf_counter()
                    sample()
                    rows[name].seconds.append(time.perf_counter() - start)
    return list(rows.values())


def plot(rows: Sequence[Row]) -> None:
    line_plot(PLOT, {name: [(r.domains, r.median * 1e3) for r in rows if r.config == name]
                     for name in CONFIGS},
              xlabel="running domains", ylabel="one sample, ms (median)",
              title="the 2006 loop on every driver, beside libvirt-python")



def render(rows: Sequence[Row], command: str, quick: bool) -> str:
    sizes = sorted({r.domains for r in rows})
    get = {(r.config, r.domains): r for r in rows}
    lines = ["## Every driver beside libvirt-python (`matrix`)", "", *machine_lines(command),
             "", f"Median milliseconds per sample over {RUNS} interleaved runs "
             f"{'(quick smoke run) ' if quick else ''}in one process. xvirt's rows run the "
             "naive loop through the cache (warmed by one sample); the daemon is a real "
             "process; the libvirt rows use the same test-driver host file.", "",
             "| configuration | " + " | ".join(f"{n} domains" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for name in CONFIGS:
        lines.append(f"| {name} | " + " | ".join(
            f"{get[(name, n)].median * 1e3:.2f}" for n in sizes) + " |")
    top = max(sizes)
    sim, daemon = get[(CONFIGS[0], top)].median, get[(CONFIGS[1], top)].median
    naive, bulk = get[(CONFIGS[3], top)].median, get[(CONFIGS[4], top)].median
    onlv = get[(CONFIGS[2], top)].median
    lines += ["", f"At {top} domains:", "",
              f"- the naive loop on sim against libvirt's getAllDomainStats: "
              f"{sim * 1e3:.1f} ms vs {bulk * 1e3:.1f} ms, {bulk / sim:.2f}x "
              f"(target: no slower, i.e. >= 1x: {'met' if sim <= bulk else '**missed**'});",
              f"- through the daemon against libvirt-python's naive loop: {naive / daemon:.1f}x "
              f"faster (target >= 15x: {'met' if naive / daemon >= 15 else '**missed**'});",
              f"- through the libvirt driver against libvirt-python's naive loop on the same "
              f"test-driver host: {onlv * 1e3:.1f} ms vs {naive * 1e3:.1f} ms, "
              f"{naive / onlv:.1f}x faster (issue 17, target >= 5x: "
              f"{'met' if naive / onlv >= 5 else '**missed**'}).",
              "", f"![matrix](benchmarks/{PLOT.name})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="every driver beside libvirt-python")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="xvirt-matrix-") as tmp:
        for guests, samples in (QUICK if args.quick else FULL):
            mine = measure(guests, samples, Path(tmp))
            rows += mine
            print(f"{guests:5d}: " + ", ".join(f"{r.config} {r.median * 1e3:.2f} ms"
                                               for r in mine), flush=True)
    plot(rows)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_section("matrix", render(rows, command, args.quick))
    print(f"wrote {REPORT.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
