"""The 2006 loop as an unmodified libvirt-python script: real libvirt-python on
libvirt's test driver against the same script through `xvirt compat` on the
embedded host, on the daemon, and on libvirt itself, side by side in one run.

    .venv/bin/python benchmarks/compat_cost.py [--quick]

Each configuration is a fresh process running benchmarks/scripts/loop2006.py;
the script times its own samples, so process start-up is not counted. The
test driver's host is a node file of N running domains (`test:///path.xml`),
the embedded one `sim:///bench?guests=N`, the daemon's is made through its
admin route. Writes the `compat_cost` section of docs/benchmarks.md and
docs/benchmarks/compat_cost.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_cost import _populate
from report import PLOTS, REPO, REPORT, command_line, line_plot, write_section

from xvirt.testing.daemon import DaemonProcess

SCRIPT = REPO / "benchmarks" / "scripts" / "loop2006.py"
PLOT = PLOTS / "compat_cost.png"
PYTHON = sys.executable
XVIRT = [PYTHON, "-m", "xvirt"]
TARGET_RATIO = 15.0
FULL = ((20, 20, 3), (1000, 5, 3), (5000, 5, 3))  # guests, samples per run, runs
QUICK = ((20, 3, 1), (200, 3, 1))
CONFIGS = ("libvirt-python, test driver", "xvirt compat, sim", "xvirt compat, daemon",
           "xvirt compat, libvirt test driver")


@dataclass
class Cell:
    config: str
    guests: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def node_file(directory: Path, guests: int) -> Path:
    """A libvirt test-driver host of N running guests, like the embedded one's."""
    node = ET.Element("node")
    for i in range(guests):
        dom = ET.SubElement(node, "domain", type="test")
        ET.SubElement(dom, "name").text = f"guest-{i + 1:05d}"
        ET.SubElement(dom, "uuid").text = f"00000000-0000-4000-8000-{i:012x}"
        ET.SubElement(dom, "memory").text = "262144"
        ET.SubElement(dom, "vcpu").text = "1"
        ET.SubElement(ET.SubElement(dom, "os"), "type").text = "hvm"
    path = directory / f"node-{guests}.xml"
    ET.ElementTree(node).write(path)
    return path


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[float]]:
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=env,
                         timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return int(answer["domains"]), [float(s) for s in answer["seconds"]]


def measure(guests: int, samples: int, runs: int, workdir: Path) -> list[Cell]:
    node = node_file(workdir, guests)
    daemon = DaemonProcess(tcp=False)
    daemon.start()
    env = dict(os.environ, XVIRT_LIBVIRT_IMAGE_DIR=str(workdir / "images"))
    try:
        _populate(daemon, guests)
        commands = {
            CONFIGS[0]: [PYTHON, str(SCRIPT), f"test://{node}", str(samples)],
            CONFIGS[1]: [*XVIRT, "compat", "--", PYTHON, str(SCRIPT),
                         f"sim:///bench?guests={guests}", str(samples)],
            CONFIGS[2]: [*XVIRT, "compat", "--", PYTHON, str(SCRIPT), daemon.unix_uri,
                         str(samples)],
            CONFIGS[3]: [*XVIRT, "compat", "--", PYTHON, str(SCRIPT), f"test://{node}",
                         str(samples)],
        }
        cells = {name: Cell(name, guests, []) for name in commands}
        for _ in range(runs):  # interleaved, so drift hits every configuration alike
            for name, argv in commands.items():
                domains, seconds = run(argv, env)
                expected = guests + (1 if name in (CONFIGS[1], CONFIGS[2]) else 0)
                if domains != expected:  # Domain-0 is listed on the Xen-style hosts
                    raise SystemExit(f"{name}: saw {domains} domains, expected {expected}")
                cells[name].seconds.extend(seconds)
        return list(cells.values())
    finally:
        daemon.cleanup()


def plot(cells: Sequence[Cell]) -> None:
    line_plot(PLOT, {name: [(c.guests, c.median * 1e3) for c in cells if c.config == name]
                     for name in CONFIGS},
              xlabel="running domains", ylabel="one sample of the 2006 loop, ms (median)",
              title="the same libvirt-python script, four ways")



def render(cells: Sequence[Cell], command: str, quick: bool) -> str:
    sizes = sorted({c.guests for c in cells})
    get = {(c.config, c.guests): c for c in cells}
    lines = ["## The 2006 loop as a libvirt-python script (`compat_cost`)", "",
             f"Command: `{command}`{' (quick smoke run)' if quick else ''}. "
             f"{os.cpu_count()} cores. Each cell is the median seconds per sample over "
             "every sample of every run (runs interleaved across configurations); the "
             "script is `benchmarks/scripts/loop2006.py` (listDomainsID, then lookupByID and "
             "info() for each), unmodified in every configuration.", "",
             "| configuration | " + " | ".join(f"{n} domains" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for name in CONFIGS:
        lines.append(f"| {name} | " + " | ".join(
            f"{get[(name, n)].median * 1e3:.2f} ms" for n in sizes) + " |")
    lines += ["", "Speed-up over real libvirt-python's loop on its test driver "
              "(median against median):", "",
              "| through `xvirt compat` on | " + " | ".join(f"{n}" for n in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for name in CONFIGS[1:]:
        lines.append(f"| {name.split(', ', 1)[1]} | " + " | ".join(
            f"{get[(CONFIGS[0], n)].median / get[(name, n)].median:.1f}x" for n in sizes) + " |")
    top = max(sizes)
    base = get[(CONFIGS[0], top)].median
    worst = min(base / get[(n, top)].median for n in CONFIGS[1:3])
    need = base / TARGET_RATIO
    verdict = "met" if worst >= TARGET_RATIO else (
        f"**missed**: {worst:.1f}x; {TARGET_RATIO:.0f}x needs a sample in "
        f"{need * 1e3:.1f} ms, i.e. {need / top * 1e6:.1f} us per domain for lookupByID and "
        "info() together. The profile of the loop in one process puts the time in the two "
        "validated data-plane reads each domain costs (lookupByID checks the ID's owner, "
        "info() reads the UUID's figures: on the daemon two shared-table reads of about "
        "2 us each), the cache's bookkeeping around them (locks, generation checks, "
        "about 3 us), and the face's own wrapping (about 1 us per call)")
    lines += ["", f"At {top} domains the slower of sim and the daemon is **{worst:.1f}x** "
              f"faster than libvirt-python's loop (target >= {TARGET_RATIO:.0f}x at 5000: "
              f"{verdict}). "
              "libvirt's test driver finds an ID by scanning its domain list; xvirt's cache "
              "answers from an index and validates with one data-plane call. Through the "
              "libvirt driver, xvirt makes the same two libvirt calls per domain as "
              "libvirt-python (the floor on libvirt: an ID can only be validated by asking), "
              "so it cannot be faster there, only as fast plus the face's overhead.", "",
              f"![compat cost](benchmarks/{PLOT.name})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="libvirt-python script vs xvirt compat")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="xvirt-compat-bench-") as tmp:
        for guests, samples, runs in (QUICK if args.quick else FULL):
            row = measure(guests, samples, runs, Path(tmp))
            cells += row
            print(f"{guests:5d}: " + ", ".join(f"{c.config} {c.median * 1e3:.2f} ms"
                                               for c in row), flush=True)
    plot(cells)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_section("compat_cost", render(cells, command, args.quick))
    print(f"wrote {REPORT.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
