"""What monitoring costs on real QEMU guests, xvirt beside libvirt-python (issue 17).

Boots N tiny guests (no OS: SeaBIOS, 32 MiB, 1 vCPU; every fourth with a disk and a NIC)
under a private libvirtd run as ``nobody`` (``xvirt.testing.qemu.DaemonQemu``: TCG unless
that user can open /dev/kvm; the report says which), reached over its unix socket, and
measures in one process, side by side:

(a) the naive monitoring loop (list the IDs, look each up by ID, ``info()``) through
    libvirt-python, through xvirt's own API (``xvirt.open("libvirt:" + uri)``,
    ``list_domain_ids``, ``lookup_by_id``, ``info``), and through the compat face (the same
    function, its ``libvirt`` being ``xvirt.compat.libvirt``); then the same loop as a
    script (``benchmarks/scripts/loop2006.py``), run by Python and by ``xvirt compat``;
(b) ``Connection.sample()`` beside ``listAllDomains(ACTIVE)`` + ``info()`` each, and the
    other calls a sample could be made of (``getAllDomainStats`` of the state group, with
    and without NOWAIT, and of the groups that ask every guest's QEMU monitor);
(c) with one guest's QEMU stopped (SIGSTOP; SIGCONT in a ``finally``), how long each client
    takes to answer for every other domain: ``survey()``, ``sample()`` (what ``xvirt list``
    calls), the naive loop through xvirt's API, through the face and through
    libvirt-python; then again with a ``suspend()`` of the stopped guest pending on another
    connection (an administrator's ``virsh suspend``, waiting on its monitor).

(a) and (b) run in rounds, every case once per round in turn, so drift hits all alike;
figures are medians over every sample of every round. Needs root (to run libvirtd as
``nobody``), qemu-system-x86 and libvirt's QEMU driver; without them it says why and exits
with status 77 (``benchmarks/all.py`` reports that as skipped). Writes the ``qemu_costs``
section of docs/benchmarks.md and docs/benchmarks/qemu_costs.png.

    .venv/bin/python benchmarks/qemu_costs.py [--guests N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_cost import PYTHON, SCRIPT, XVIRT
from compat_cost import run as run_script
from daemon_cost import naive_sample
from report import PLOTS, REPO, REPORT, bar_plot, command_line, machine_lines, write_section

import xvirt
from xvirt.drivers.libvirt_loop import ensure_event_loop

PLOT = PLOTS / "qemu_costs.png"
SKIPPED = 77  # the exit status all.py reads as "cannot run here"
QEMU_SYSTEM = Path("/usr/bin/qemu-system-x86_64")
LIBVIRTD = Path("/usr/sbin/libvirtd")
NAIVE_TARGET = 1.1  # issue 17: the naive loop through xvirt within 1.1x of libvirt-python's
ANSWER_TARGET_S = 1.0  # issue 17: one guest stopped, every other domain answered within 1 s
LIVENESS_S = 30.0  # a call not back by then is reported as frozen, not waited for


@dataclass(frozen=True)
class Plan:
    guests: int
    rounds: int  # (a) and (b): every case once per round
    samples: int  # per case per round
    script_runs: int
    script_samples: int
    stop_rounds: int


FULL = Plan(guests=30, rounds=41, samples=1, script_runs=7, script_samples=20, stop_rounds=9)
QUICK = Plan(guests=6, rounds=2, samples=2, script_runs=1, script_samples=3, stop_rounds=2)

NAIVE = ("libvirt-python", "xvirt API (`xvirt.open`)", "compat face (`xvirt.compat.libvirt`)",
         "libvirt's calls of xvirt's loop alone")
SCRIPTS = ("loop2006.py, libvirt-python", "loop2006.py under `xvirt compat`")
XVIRT_SAMPLE = "xvirt `Connection.sample()`"
#: (c): the baseline, then one guest's QEMU stopped, then also an action on it pending.
CONDITIONS = ("nothing stopped", "one guest's QEMU stopped",
              "stopped, and a suspend() of it pending elsewhere")
SHORT = {CONDITIONS[1]: "stopped", CONDITIONS[2]: "stopped + suspend"}
LIST_INFO = "listAllDomains(ACTIVE) + info() each"
SAMPLE_CALLS = "getAllDomainStats(STATE, NOWAIT) + info() each (what sample() asks)"


def unavailable() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (it runs a private libvirtd as the user nobody)"
    if not QEMU_SYSTEM.exists():
        return f"needs {QEMU_SYSTEM} (Debian: qemu-system-x86)"
    if not LIBVIRTD.exists():
        return f"needs {LIBVIRTD} (Debian: libvirt-daemon)"
    from xvirt.testing.libvirtd import DRIVER_MODULES

    if not (DRIVER_MODULES / "libvirt_driver_qemu.so").exists():
        return "needs libvirt's QEMU driver (Debian: libvirt-daemon-driver-qemu)"
    return None


# -- the clients ----------------------------------------------------------------------------

def lv_naive(conn: Any) -> int:
    """The loop as libvirt-python users write it; the face runs this very function."""
    n = 0
    for domid in conn.listDomainsID():
        conn.lookupByID(domid).info()
        n += 1
    return n


def xvirt_floor(raw: Any, lv: Any) -> int:
    """The libvirt calls xvirt's naive loop makes, with nothing of xvirt between them: one
    listing, then ``lookupByUUIDString`` + ``info()`` per domain."""
    n = 0
    for dom in raw.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        raw.lookupByUUIDString(dom.UUIDString()).info()
        n += 1
    return n


@dataclass
class Clients:
    """Every client, each on a connection of its own, read-only as a monitor's is."""

    lv: Any
    raw: Any
    api: xvirt.Connection
    face: Any

    def naive(self) -> dict[str, Callable[[], int]]:
        return {NAIVE[0]: lambda: lv_naive(self.raw), NAIVE[1]: lambda: naive_sample(self.api),
                NAIVE[2]: lambda: lv_naive(self.face),
                NAIVE[3]: lambda: xvirt_floor(self.raw, self.lv)}

    def samples(self) -> dict[str, Callable[[], int]]:
        lv, raw = self.lv, self.raw
        active = lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        nowait = active | lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        state = lv.VIR_DOMAIN_STATS_STATE
        monitor = (state | lv.VIR_DOMAIN_STATS_CPU_TOTAL | lv.VIR_DOMAIN_STATS_BALLOON
                   | lv.VIR_DOMAIN_STATS_VCPU)
        return {
            XVIRT_SAMPLE: lambda: len(self.api.sample()),
            LIST_INFO: lambda: len([d.info() for d in raw.listAllDomains(
                lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]),
            "getAllDomainStats(STATE) + info() each": lambda: len(
                [d.info() for d, _ in raw.getAllDomainStats(state, active)]),
            SAMPLE_CALLS: lambda: len(
                [d.info() for d, _ in raw.getAllDomainStats(state, nowait)]),
            "listAllDomains(ACTIVE) alone": lambda: len(raw.listAllDomains(
                lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)),
            "getAllDomainStats(STATE) alone": lambda: len(raw.getAllDomainStats(state, active)),
            "getAllDomainStats(STATE, NOWAIT) alone": lambda: len(
                raw.getAllDomainStats(state, nowait)),
            "getAllDomainStats(CPU_TOTAL) alone": lambda: len(
                raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_CPU_TOTAL, active)),
            "getAllDomainStats(BALLOON) alone": lambda: len(
                raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_BALLOON, active)),
            "getAllDomainStats(VCPU) alone": lambda: len(
                raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_VCPU, active)),
            "getAllDomainStats(STATE|CPU_TOTAL|BALLOON|VCPU), the former sample":
                lambda: len(raw.getAllDomainStats(monitor, active)),
        }

    def answering(self) -> dict[str, Callable[[], int]]:
        """(c): each returns how many domains it answered for."""
        naive = self.naive()
        return {"xvirt `survey()`": lambda: len(self.api.survey().samples),
                "xvirt `sample()` (`xvirt list`)": lambda: len(self.api.sample()),
                f"naive loop, {NAIVE[1]}": naive[NAIVE[1]],
                f"naive loop, {NAIVE[2]}": naive[NAIVE[2]],
                f"naive loop, {NAIVE[0]}": naive[NAIVE[0]]}


def rounds(cases: dict[str, Callable[[], int]], plan: Plan,
           expected: int) -> dict[str, list[float]]:
    """Every case ``plan.samples`` times per round, in turn; each checked to see them all."""
    for name, case in cases.items():  # warm, and check
        if (seen := case()) != expected:
            raise SystemExit(f"{name}: saw {seen} domains, expected {expected}")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(plan.rounds):
        for name, case in cases.items():
            gc.collect()
            for _ in range(plan.samples):
                start = time.perf_counter()
                case()
                times[name].append(time.perf_counter() - start)
    return times


def scripts(uri: str, plan: Plan, expected: int) -> dict[str, list[float]]:
    """The unmodified script, by Python and under ``xvirt compat``, runs interleaved."""
    commands = {SCRIPTS[0]: [PYTHON, str(SCRIPT), uri, str(plan.script_samples)],
                SCRIPTS[1]: [*XVIRT, "compat", "--", PYTHON, str(SCRIPT), uri,
                             str(plan.script_samples)]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(plan.script_runs):
        for name, argv in commands.items():
            domains, seconds = run_script(argv)
            if domains != expected:
                raise SystemExit(f"{name}: saw {domains} domains, expected {expected}")
            times[name] += seconds[1:]  # the first sample of a process pays its warm-up
    return times


# -- (c) one guest stopped ------------------------------------------------------------------

@dataclass
class Answers:
    """One client's calls in one condition: wall times, and what each answered."""

    seconds: list[float] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    frozen: bool = False

    def worst(self) -> float:
        return LIVENESS_S if self.frozen else max(self.seconds, default=0.0)


def timed_call(call: Callable[[], int]) -> tuple[float, int | None, str | None]:
    """``call()`` on a thread of its own: (seconds, its answer, its error); the answer and
    error both None when it is not back within LIVENESS_S (it is left to finish)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["answer"] = call()
        except Exception as exc:  # reported in the table, not raised: the others go on
            box["error"] = f"{type(exc).__name__}: {exc}"
        box["end"] = time.perf_counter()

    worker = threading.Thread(target=run, name="qemu-costs-call", daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join(LIVENESS_S)
    if worker.is_alive():
        return LIVENESS_S, None, None
    return box["end"] - start, box.get("answer"), box.get("error")


def answer_rounds(cases: dict[str, Callable[[], int]], stop_rounds: int) -> dict[str, Answers]:
    found = {name: Answers() for name in cases}
    for _ in range(stop_rounds):
        for name, case in cases.items():
            got = found[name]
            if got.frozen:
                continue  # its thread still waits: the connection is taken
            seconds, answer, error = timed_call(case)
            if answer is None and error is None:
                got.frozen = True
                continue
            got.seconds.append(seconds)
            if error is not None:
                got.errors.append(error)
            else:
                assert answer is not None
                got.answered.append(answer)
    return found


def stopped_guest(host: Any, clients: Clients, victim: str,
                  stop_rounds: int) -> dict[str, dict[str, Answers]]:
    """Three conditions: nothing stopped (the baseline), ``victim``'s QEMU stopped, and
    stopped with a suspend of it pending on another connection."""
    cases = clients.answering()
    results = {CONDITIONS[0]: answer_rounds(cases, stop_rounds)}
    pid = host.qemu_pid(victim)
    admin = clients.lv.open(host.uri)  # the outside world's connection
    suspending: threading.Thread | None = None
    os.kill(pid, signal.SIGSTOP)
    try:
        results[CONDITIONS[1]] = answer_rounds(cases, stop_rounds)
        dom = admin.lookupByName(victim)
        suspending = threading.Thread(target=dom.suspend, name="qemu-costs-suspend",
                                      daemon=True)
        suspending.start()
        suspending.join(0.5)
        if not suspending.is_alive():
            raise SystemExit(f"suspend() of {victim} answered though its QEMU is stopped")
        results[CONDITIONS[2]] = answer_rounds(cases, stop_rounds)
    finally:
        os.kill(pid, signal.SIGCONT)
    if suspending is not None:
        suspending.join(LIVENESS_S)
        admin.lookupByName(victim).resume()
    admin.close()
    return results


# -- the report -----------------------------------------------------------------------------

def verdict(ratio: float, limit: float) -> str:
    """Met (``ratio`` at most ``limit``) or missed; within 10% of the limit it is a close
    call: on a shared machine successive runs land on either side of it."""
    said = "met" if ratio <= limit else "**missed**"
    if abs(ratio / limit - 1) < 0.1:
        said += " (a close call: within 10%, successive runs here land on either side)"
    return said


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def render(plan: Plan, host: Any, naive: dict[str, list[float]], script: dict[str, list[float]],
           sampled: dict[str, list[float]], answers: dict[str, dict[str, Answers]],
           victim: str, command: str, quick: bool) -> str:
    g = plan.guests
    how = "with KVM" if host.accel == "KVM" else "without KVM: TCG"
    lines = [
        "## Real QEMU guests: the naive loop, the sample, a stopped guest (`qemu_costs`)", "",
        *machine_lines(command), "",
        f"**{g} {host.accel} guests** (QEMU {how}"
        f"; they run as `nobody`, who {'can' if host.accel == 'KVM' else 'cannot'} open "
        "/dev/kvm) under a private libvirtd (`xvirt.testing.qemu.DaemonQemu`, libvirt "
        f"{host.lv.getVersion() // 1000000}.{host.lv.getVersion() // 1000 % 1000}), every "
        "client in this process on a read-only connection of its own over the daemon's unix "
        "socket. Guests have no OS (SeaBIOS, 32 MiB, 1 vCPU; every fourth a disk and a NIC). "
        "The machine was shared with other engineers' test runs while this ran: absolute "
        "figures carry their noise; the side-by-side ratios are what to read"
        + (" (quick smoke run)." if quick else "."), "",
        "### (a) The naive loop: list the IDs, look each up by ID, `info()`", "",
        f"Median milliseconds per sample, of {plan.rounds * plan.samples} samples per client "
        f"in {plan.rounds} rounds that interleave the clients. The face runs the very "
        "function libvirt-python runs (`lv_naive` in `benchmarks/qemu_costs.py`), its "
        "`libvirt` being `xvirt.compat.libvirt`; the "
        f"script rows are `benchmarks/scripts/loop2006.py` in fresh processes, {plan.script_runs} "
        f"interleaved runs of {plan.script_samples} samples each (the first sample of a "
        "run left out: it pays the process's warm-up).", "",
        "| client | ms per sample: median (min-max) | per domain, us | vs libvirt-python |",
        "|---|---|---:|---:|"]
    base, floor = med(naive[NAIVE[0]]), med(naive[NAIVE[3]])
    for name in NAIVE:
        t = naive[name]
        lines.append(f"| {name} | {ms(med(t))} ({ms(min(t))}-{ms(max(t))}) | "
                     f"{med(t) / g * 1e6:.0f} | {med(t) / base:.2f}x |")
    sbase = med(script[SCRIPTS[0]])
    for name in SCRIPTS:
        t = script[name]
        lines.append(f"| {name} | {ms(med(t))} ({ms(min(t))}-{ms(max(t))}) | "
                     f"{med(t) / g * 1e6:.0f} | {med(t) / sbase:.2f}x |")
    ratios = {name: med(naive[name]) / base for name in NAIVE[1:3]}
    ratios[SCRIPTS[1]] = med(script[SCRIPTS[1]]) / sbase
    worst = max(ratios, key=lambda n: ratios[n])
    lines += ["", f"Target: the naive loop through xvirt's API and through the face within "
              f"{NAIVE_TARGET}x of libvirt-python's: {verdict(ratios[worst], NAIVE_TARGET)} "
              f"(API {ratios[NAIVE[1]]:.2f}x, face {ratios[NAIVE[2]]:.2f}x in process, "
              f"{ratios[SCRIPTS[1]]:.2f}x as a script; worst: {worst}). Each client makes "
              "two libvirt calls per domain (xvirt's lookup by ID is a `lookupByUUIDString` "
              "of the UUID its mirror believes holds the ID, then `info()` on that handle): "
              f"made alone, back to back, xvirt's calls take {ms(floor)} ms "
              f"({floor / base:.2f}x libvirt-python's loop), so what xvirt adds, "
              f"{(med(naive[NAIVE[1]]) - floor) / g * 1e6:.0f} us per domain through its "
              "API, is its own work between the round trips (the driver, the cache, "
              "the listing: the layers in `libvirt_costs`).", "",
              "libvirt-python's connection is what a script that registers no event loop "
              "has (libvirt-python's default; this process has one, so that connection is "
              "opened inside `EventLoop.unwatched()`, which makes libvirt run it exactly "
              "so). xvirt's driver makes its calls on such a connection too, and takes "
              "libvirt's events, with keepalive, on a second one (see "
              "`xvirt/drivers/libvirt_loop.py`): a connection in an event loop pays for "
              "it on every call (two wake-ups of the loop thread, and keepalive's timer "
              "reset on every message).", ""]

    lines += ["### (b) A sample: every running domain's state, memory, vCPUs and CPU time", "",
              f"Median milliseconds per call, of {plan.rounds * plan.samples} calls of each "
              f"in {plan.rounds} interleaved rounds. The rows after the first two are "
              "libvirt-python's candidates, for reference; on QEMU the cpu-total, balloon "
              "and vcpu groups ask every guest's QEMU monitor, the state group and `info()` "
              "do not.", "",
              "| call | ms per call: median (min-max) | vs listAllDomains + info() |",
              "|---|---|---:|"]
    lbase = med(sampled[LIST_INFO])
    for name, t in sampled.items():
        lines.append(f"| {name} | {ms(med(t))} ({ms(min(t))}-{ms(max(t))}) | "
                     f"{med(t) / lbase:.2f}x |")
    mine = med(sampled[XVIRT_SAMPLE])
    asks = med(sampled[SAMPLE_CALLS])
    lines += ["", f"Target: `Connection.sample()` no slower than `listAllDomains(ACTIVE)` + "
              f"`info()` each: {verdict(mine / lbase, 1.0)} ({ms(mine)} ms "
              f"against {ms(lbase)} ms, {mine / lbase:.2f}x). The libvirt calls `sample()` "
              f"makes take {ms(asks)} ms made back to back, on one connection "
              f"({asks / lbase:.2f}x); `sample()` makes the same calls, but overlaps the "
              "`info()` round trips over three connections to the daemon (its own and two "
              "lanes, a thread each: `xvirt/drivers/libvirt_fanout.py`), as libvirt lets a "
              "client's calls run concurrently.", ""]

    lines += ["### (c) One guest's QEMU stopped", "",
              f"`{victim}`'s QEMU process (found by PID as the harness finds it: "
              "`DaemonQemu.qemu_pid`, from its command line) gets SIGSTOP, as a hung storage "
              "backend leaves a guest, and SIGCONT in a `finally`. Each call runs on a thread "
              f"of its own and is given {LIVENESS_S:.0f} s; {plan.stop_rounds} calls per client "
              "per condition, interleaved. \"Answered\" is the fewest domains one call answered "
              f"for; every other domain means at least {g - 1} of {g}. The pending `suspend()` "
              "is made on another connection (an administrator's `virsh suspend`): it holds "
              "the guest's job and waits on its monitor until SIGCONT.", "",
              "| condition | client | median, ms | slowest, ms | answered | errors |",
              "|---|---|---:|---:|---:|---:|"]
    verdicts: list[str] = []
    for condition, found in answers.items():
        for client, got in found.items():
            slowest = f"no answer in {LIVENESS_S:.0f} s" if got.frozen else ms(got.worst())
            answered = min(got.answered) if got.answered else 0
            median = ms(med(got.seconds)) if got.seconds else "-"
            lines.append(f"| {condition} | {client} | {median} | {slowest} | "
                         f"{answered}/{g} | {len(got.errors)} |")
            if condition != CONDITIONS[0]:
                ok = (not got.frozen and not got.errors and answered >= g - 1
                      and got.worst() <= ANSWER_TARGET_S)
                if not ok:
                    verdicts.append(f"{client} ({condition}): slowest {slowest} ms, "
                                    f"answered {answered}/{g}, {len(got.errors)} errors"
                                    + (f" ({got.errors[0]})" if got.errors else ""))
    slowest_all = max(got.worst() for condition, found in answers.items()
                      if condition != CONDITIONS[0] for got in found.values())
    outcome = (f"**met** by every client in both conditions (slowest call {ms(slowest_all)} ms)"
               if not verdicts else "**missed**: " + "; ".join(verdicts))
    lines += ["", f"Target: with one guest stopped, every other domain answered within "
              f"{ANSWER_TARGET_S:.0f} s by each client: {outcome}.",
              "", f"![qemu costs](benchmarks/{PLOT.name})", ""]
    return "\n".join(lines)


def short(label: str) -> str:
    """A client's name without its module, for a plot's axis."""
    return label.replace(" (`xvirt.compat.libvirt`)", "").replace(" (`xvirt.open`)", "")


def plot(naive: dict[str, list[float]], script: dict[str, list[float]],
         sampled: dict[str, list[float]], answers: dict[str, dict[str, Answers]],
         guests: int, accel: str) -> None:
    stopped = {f"{short(client)}, {SHORT[condition]}": got.worst() * 1e3
               for condition, found in answers.items() if condition in SHORT
               for client, got in found.items()}
    bar_plot(PLOT, {
        "(a) the naive loop, ms per sample (median)":
            {**{n: med(t) * 1e3 for n, t in naive.items()},
             **{n: med(t) * 1e3 for n, t in script.items()}},
        "(b) one sample, ms per call (median)": {n: med(t) * 1e3 for n, t in sampled.items()},
        "(c) one guest's QEMU stopped: slowest call, ms": stopped,
    }, xlabel="milliseconds",
        title=f"{guests} {accel} guests under a private libvirtd",
        marks={"(c) one guest's QEMU stopped: slowest call, ms": (ANSWER_TARGET_S * 1e3,
                                                                  "target: 1 s")})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="monitoring costs on real QEMU guests")
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few guests)")
    parser.add_argument("--guests", type=int, default=None,
                        help=f"how many guests (default {FULL.guests}; {QUICK.guests} quick)")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"qemu_costs: skipped: {reason}", flush=True)
        return SKIPPED
    plan = QUICK if args.quick else FULL
    if args.guests is not None:
        plan = Plan(args.guests, plan.rounds, plan.samples, plan.script_runs,
                    plan.script_samples, plan.stop_rounds)
    from xvirt.testing.qemu import DaemonQemu

    face = importlib.import_module("xvirt.compat.libvirt")
    with tempfile.TemporaryDirectory(prefix="xvirt-qemu-costs-") as tmp:
        os.environ["XVIRT_LIBVIRT_IMAGE_DIR"] = tmp  # nothing here saves; never ~/.local
        host = DaemonQemu()
        try:
            host.boot_many(plan.guests, prefix="q")
            time.sleep(3)  # past SeaBIOS's start, to its wait for a boot device
            victim = f"q{plan.guests // 2:03d}"
            lv = host.lv
            loop = ensure_event_loop(lv)
            assert loop is not None
            with loop.unwatched():  # as in a script that registers no event loop
                raw = lv.openReadOnly(host.uri)
            clients = Clients(lv, raw, xvirt.open("libvirt:" + host.uri, readonly=True),
                              face.openReadOnly(host.uri))
            try:
                naive = rounds(clients.naive(), plan, plan.guests)
                print("(a) " + ", ".join(f"{n} {ms(med(t))} ms" for n, t in naive.items()),
                      flush=True)
                script = scripts(host.uri, plan, plan.guests)
                print("(a) " + ", ".join(f"{n} {ms(med(t))} ms" for n, t in script.items()),
                      flush=True)
                sampled = rounds(clients.samples(), plan, plan.guests)
                print("(b) " + ", ".join(f"{n} {ms(med(t))} ms" for n, t in sampled.items()),
                      flush=True)
                answers = stopped_guest(host, clients, victim, plan.stop_rounds)
                for condition, found in answers.items():
                    print(f"(c) {condition}: " + ", ".join(
                        f"{n} slowest {ms(a.worst())} ms" for n, a in found.items()), flush=True)
            finally:
                clients.api.close()
                clients.face.close()
                clients.raw.close()
        finally:
            host.close()
    plot(naive, script, sampled, answers, plan.guests, host.accel)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_section("qemu_costs", render(plan, host, naive, script, sampled, answers, victim,
                                       command, args.quick))
    print(f"wrote {REPORT.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
