"""What each hot-path trick of ``xvirt.hotpath`` saves, measured beside its plain form.

Each pair runs interleaved, run by run, in one process, so drift hits both alike;
the figure is the median over runs of the mean time per operation. The results
go to docs/benchmarks.md (section ``hotpath_cost``) with a bar plot; the figures
quoted in ``src/xvirt/hotpath.py`` are this benchmark's.

    .venv/bin/python benchmarks/hotpath_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
import timeit
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import PLOTS, command_line, machine_lines, write_section

from xvirt.hotpath import tuple_new
from xvirt.model import DomainState
from xvirt.planes import DataRow
from xvirt.wire.binary import TEXT_OF, uuid_from_bytes

PLOT = PLOTS / "hotpath_cost.png"
RUNS = 9
NUMBER = 200_000


def _plain_uuid_text(raw: bytes) -> str:
    """What the cache saves: formatting the text anew each time."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pairs() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Each trick as (plain, trick): two callables doing the same work."""
    fields = (7, "4a95f7e5-7175-4299-b6bf-46e93f0c3682", DomainState.RUNNING, 524288, 524288,
              2, 123456789)
    raw = uuidlib.uuid4().bytes
    uuid_from_bytes(raw)  # warm the cache, as every seen UUID is
    counter = itertools.count()
    lock = threading.Lock()
    locked = [0]

    def locked_bump() -> None:
        with lock:
            locked[0] += 1

    slot_struct = __import__("struct").Struct("@BB2xIQQQdd16s")
    buffer = bytes(slot_struct.size)
    unpack_bound = slot_struct.unpack_from

    now = time.time

    class MethodClock:
        def now(self) -> float:
            return time.time()

    method_clock = MethodClock()
    return {
        "named tuple: DataRow(...) vs tuple_new": (
            lambda: DataRow(*fields), lambda: tuple_new(DataRow, fields)),
        "UUID text: format vs TEXT_OF.get": (
            lambda: _plain_uuid_text(raw), lambda: TEXT_OF.get(raw) or uuid_from_bytes(raw)),
        "count: lock round trip vs itertools.count": (locked_bump, lambda: next(counter)),
        "unpack: Struct attribute vs bound method": (
            lambda: slot_struct.unpack_from(buffer, 0), lambda: unpack_bound(buffer, 0)),
        "clock: method vs time.time itself": (method_clock.now, now),
    }


def measure(runs: int, number: int) -> dict[str, tuple[float, float]]:
    """Median microseconds per operation, (plain, trick), for each pair."""
    results: dict[str, tuple[list[float], list[float]]] = {}
    cases = pairs()
    for _ in range(runs):
        for name, (plain, trick) in cases.items():
            a, b = results.setdefault(name, ([], []))
            a.append(timeit.timeit(plain, number=number) / number * 1e6)
            b.append(timeit.timeit(trick, number=number) / number * 1e6)
    return {name: (statistics.median(a), statistics.median(b))
            for name, (a, b) in results.items()}


def plot(figures: dict[str, tuple[float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(figures)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ys = range(len(names))
    ax.barh([y + 0.2 for y in ys], [figures[n][0] for n in names], height=0.4, label="plain")
    ax.barh([y - 0.2 for y in ys], [figures[n][1] for n in names], height=0.4, label="trick")
    ax.set_yticks(list(ys), [n.split(":")[0] for n in names])
    ax.set_xlabel("microseconds per operation (median)")
    ax.set_title("Hot-path tricks: what each saves")
    ax.legend()
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def render(figures: dict[str, tuple[float, float]], command: str) -> str:
    lines = ["## Hot-path tricks (`xvirt.hotpath`)", "",
             "Each trick beside its plain form, interleaved in one process; medians of "
             f"{RUNS} runs.", "", *machine_lines(command), "",
             "| trick | plain, us | trick, us | saved per operation, us |",
             "|---|---:|---:|---:|"]
    for name, (plain, trick) in figures.items():
        lines.append(f"| {name} | {plain:.3f} | {trick:.3f} | {plain - trick:.3f} |")
    lines += ["", f"![hot-path tricks](benchmarks/{PLOT.name})"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations per run")
    args = parser.parse_args(argv[1:])
    figures = measure(RUNS, NUMBER // 10 if args.quick else NUMBER)
    for name, (plain, trick) in figures.items():
        print(f"{name:48} {plain:7.3f} us -> {trick:7.3f} us")
    plot(figures)
    write_section("hotpath_cost", render(figures, command_line(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
