"""The conformance kit's long run: random histories by the hundred thousand steps.

    python -m xvirt.testing.long_run --steps 100000 --drivers sim,daemon,libvirt
    python -m xvirt.testing.long_run --steps 1000 --drivers qemu --guests 30

Each driver runs fresh, non-derandomized histories in rounds (a fresh Hypothesis
engine per round, so its bookkeeping does not pile up) until ``--steps`` steps are
checked, with ``--readers`` client threads judged beside every history, the
random ID policy on a small ID space (libvirt hands out IDs itself: it never
reuses one). It prints what was exercised and how fast; any violation stops it
with the failing history and exit status 1.

``qemu`` is real QEMU guests behind a private libvirtd (``xvirt.testing.qemu``:
KVM where its user can open /dev/kvm, else TCG; it says which), with ``--guests``
guests running beside each history's own: booted once, every history begins with
them and may act on them as on its own, and the next one boots again any it
ended. Needs root (the daemon runs as ``nobody``) and QEMU; it is not among the
default drivers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from hypothesis import Phase

from xvirt.testing.conformance import ConformanceReport, check_driver
from xvirt.testing.targets import SimTarget, Target

__all__ = ["DRIVERS", "Plan", "main", "run"]


@dataclass(frozen=True)
class Plan:
    """How one driver's histories are run."""

    factory: Callable[[], Target] | None  # None: real QEMU (see _qemu_rounds)
    history: int  # steps per history, at most
    restart_gap: int  # steps between host reboots and daemon restarts, at least


def _sim() -> Target:
    return SimTarget(id_policy="random", max_domid=6)


def _daemon() -> Target:
    from xvirt.testing.daemon import DaemonTarget

    return DaemonTarget(max_domid=6)


def _libvirt() -> Target:
    from xvirt.testing.libvirt_target import LibvirtTarget

    if "XVIRT_LIBVIRT_IMAGE_DIR" not in os.environ:  # where its saved images go
        os.environ["XVIRT_LIBVIRT_IMAGE_DIR"] = tempfile.mkdtemp(prefix="xvirt-long-run-")
    return LibvirtTarget()


#: A real daemon restarts in a few hundred milliseconds and each history starts
#: one: its histories are longer and its restarts further apart.
DRIVERS: dict[str, Plan] = {
    "sim": Plan(_sim, history=100, restart_gap=0),
    "daemon": Plan(_daemon, history=300, restart_gap=40),
    "libvirt": Plan(_libvirt, history=150, restart_gap=0),
    "qemu": Plan(None, history=40, restart_gap=0),  # each history's guests boot for real
}
#: Guests running beside each QEMU history, unless --guests says otherwise.
QEMU_GUESTS = 20

#: One round: (report, histories, steps per history, readers) -> None.
Round = Callable[[ConformanceReport, int, int, int], None]


@contextlib.contextmanager
def _kit_rounds(plan: Plan) -> Iterator[Round]:
    factory = plan.factory
    assert factory is not None

    def one(report: ConformanceReport, histories: int, history: int, readers: int) -> None:
        # Concurrent answers cannot be replayed, so no shrinking: the first failing
        # history is reported as it happened.
        check_driver(factory, max_examples=histories, stateful_step_count=history,
                     readers=readers, restart_gap=plan.restart_gap, report=report,
                     database=None, phases=[Phase.generate])

    yield one


@contextlib.contextmanager
def _qemu_rounds(guests: int) -> Iterator[Round]:
    """One private libvirtd with QEMU guests for the whole run (its ``guests``
    bystanders booted by the first history and kept), stopped by PID at the end."""
    from xvirt.testing.qemu import DaemonQemu
    from xvirt.testing.qemu_target import QemuReport, check_qemu

    saved = os.environ.get("XVIRT_LIBVIRT_IMAGE_DIR")
    with DaemonQemu() as qemu:
        os.environ["XVIRT_LIBVIRT_IMAGE_DIR"] = str(qemu.image_dir)  # QEMU's user's

        def one(report: ConformanceReport, histories: int, history: int,
                readers: int) -> None:
            assert isinstance(report, QemuReport)
            check_qemu(qemu, max_examples=histories, stateful_step_count=history,
                       bystanders=guests, readers=readers, report=report,
                       database=None, phases=[Phase.generate])

        try:
            yield one
        finally:
            if saved is None:
                os.environ.pop("XVIRT_LIBVIRT_IMAGE_DIR", None)
            else:
                os.environ["XVIRT_LIBVIRT_IMAGE_DIR"] = saved


def run(name: str, steps: int, *, readers: int = 3, histories_per_round: int = 10,
        progress: Callable[[ConformanceReport, float], None] | None = None,
        until: Callable[[ConformanceReport], bool] | None = None, max_rounds: int = 8,
        history: int | None = None, guests: int = QEMU_GUESTS,
        ) -> tuple[ConformanceReport, int, float]:
    """Check driver ``name`` for ``steps`` steps; returns the report, how many
    histories ran, and the seconds taken. Raises on a violation.

    ``until``: also go on, round after round (at most ``max_rounds`` in all), until it
    holds of the report. Hypothesis switches rules off at random per history (swarm
    testing), so a few short histories can all miss a rare rule such as a host
    reboot; a short run that must reach it says so here rather than hoping.
    ``history``: steps per history, at most, instead of the driver's plan (a short run
    whose round would otherwise check far more steps than it asks for).
    ``guests``: for ``qemu``, the guests running beside each history."""
    plan = DRIVERS[name]
    if history is not None:
        plan = Plan(plan.factory, history, plan.restart_gap)
    report: ConformanceReport
    if plan.factory is None:
        from xvirt.testing.qemu_target import QemuReport

        report, rounds_of = QemuReport(), _qemu_rounds(guests)
    else:
        report, rounds_of = ConformanceReport(), _kit_rounds(plan)
    histories = 0
    rounds = 0
    start = time.perf_counter()
    with rounds_of as one_round:
        while report.steps < steps or (until is not None and not until(report)
                                       and rounds < max_rounds):
            rounds += 1
            before = report.steps
            one_round(report, histories_per_round, plan.history, readers)
            histories += histories_per_round
            if progress is not None:
                progress(report, time.perf_counter() - start)
            if report.steps == before:
                raise RuntimeError(f"{name}: a round ran no steps")
    return report, histories, time.perf_counter() - start


def _line(name: str, report: ConformanceReport, histories: int, seconds: float) -> str:
    return (f"{name:8} {report.steps:>8} steps  {histories:>5} histories  "
            f"{report.concurrent_answers:>9} concurrent answers  "
            f"{report.id_reuses:>7} ID reuses  {report.moves:>6} moves  "
            f"{report.host_reboots:>5} host reboots  {report.daemon_restarts:>5} daemon "
            f"restarts  {report.defines:>6} defines  {report.starts:>6} starts  "
            f"{report.undefines:>6} undefines  0 violations  {seconds:8.1f} s  "
            f"{report.steps / seconds:6.0f} steps/s"
            + (f"  (cannot: {', '.join(sorted(report.skipped))})" if report.skipped else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xvirt.testing.long_run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per driver")
    parser.add_argument("--readers", type=int, default=3, help="client threads beside")
    parser.add_argument("--drivers", default="sim,daemon,libvirt",
                        help=f"comma-separated, of {', '.join(DRIVERS)}")
    parser.add_argument("--guests", type=int, default=QEMU_GUESTS,
                        help="qemu: guests running beside each history")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.drivers.split(",") if n.strip()]
    unknown = [n for n in names if n not in DRIVERS]
    if unknown or args.steps < 1 or args.readers < 0 or args.guests < 0:
        parser.error(f"unknown driver {unknown[0]!r}" if unknown
                     else "--steps must be positive, --readers and --guests not negative")

    def progress(report: ConformanceReport, seconds: float) -> None:
        print(f"  ... {report.steps} steps, {report.concurrent_answers} concurrent answers, "
              f"{seconds:.0f} s", file=sys.stderr, flush=True)

    print(f"long run: {args.steps} steps per driver, {args.readers} reader threads, "
          "random ID policy (sim, daemon), IDs 1-6")
    for name in names:
        try:
            report, histories, seconds = run(name, args.steps, readers=args.readers,
                                             progress=progress, guests=args.guests)
        except BaseException as exc:
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            raise
        print(_line(name, report, histories, seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
