"""Regenerate docs/benchmarks.md and its plots: every benchmark, one after the other.

    .venv/bin/python benchmarks/all.py [--quick]

Each benchmark owns one section of the report and rewrites only that one; they
run one at a time so none competes with another for the CPUs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: In the report's order.
BENCHMARKS = ("daemon_cost", "lookup_cost", "compat_cost", "open_cost", "matrix", "bench_cli",
              "exporter_cost", "memory_cost", "hotpath_cost", "exporter_attack")


def main(argv: list[str]) -> int:
    failed = []
    for name in BENCHMARKS:
        start = time.monotonic()
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *argv])
        print(f"== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
