"""``xvirt bench`` twice, its reports written to docs/benchmarks.md as they print.

1. The 2006 experiment as the mail ran it: 20 domains, 5 samples, 50 ms per
   control-plane request (the command's defaults).
2. The scaling story: 20 to 5000 domains at 1 ms per request (what one request
   to a host daemon costs here, see `daemon_cost`), with the plot.

    .venv/bin/python benchmarks/bench_cli.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import PLOTS, REPO, REPORT, command_line, machine_lines, write_section

PLOT = PLOTS / "bench.png"
XVIRT = [sys.executable, "-m", "xvirt", "bench"]


def bench(args: list[str]) -> str:
    env = dict(os.environ, XVIRT_NO_PROGRESS="1")
    out = subprocess.run([*XVIRT, *args], capture_output=True, text=True, check=False,
                         env=env, cwd=REPO, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"xvirt bench {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout.rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="xvirt bench into docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    classic = ["--repeats", "1"] if args.quick else []
    scaling = ["--domains", "20,200" if args.quick else "20,200,1000,5000",
               "--control-latency-ms", "1", "--repeats", "1" if args.quick else "3",
               "--plot", str(PLOT.relative_to(REPO))]
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    first = bench(classic)
    print(first, flush=True)
    second = bench(scaling)
    print(second, flush=True)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    rel = PLOT.relative_to(REPO)
    lines = ["## `xvirt bench`: the 2006 experiment, and how it scales (`bench`)", "",
             *machine_lines(command), "",
             f"`{' '.join(['xvirt bench', *classic])}`", "", "```text", first,
             "```", "", f"`xvirt bench {' '.join(scaling)}`", "", "```text", second, "```",
             "", f"![xvirt bench]({rel.relative_to('docs')})", ""]
    write_section("bench", "\n".join(lines))
    print(f"wrote {REPORT.relative_to(REPO)} and {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
