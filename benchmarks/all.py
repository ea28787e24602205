"""Regenerate docs/benchmarks.md and its plots: every benchmark, one after the other.

    .venv/bin/python benchmarks/all.py [--quick]

Each benchmark owns one section of the report and rewrites only that one; they
run one at a time so none competes with another for the CPUs.

``qemu_costs`` boots real QEMU guests under a private libvirtd run as ``nobody``:
it needs root, qemu-system-x86 and libvirt's QEMU driver. Where it cannot run it
prints why and exits with status 77, and this script reports it as skipped (its
section in docs/benchmarks.md is then left as it was), not as failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: In the report's order.
BENCHMARKS = ("daemon_cost", "lookup_cost", "compat_cost", "open_cost", "matrix", "bench_cli",
              "exporter_cost", "memory_cost", "hotpath_cost", "exporter_attack",
              "libvirt_costs", "qemu_costs", "exporter_peers", "startup_cost")
#: What a benchmark needs beyond the repository's environment, said before it runs.
NEEDS = {"qemu_costs": "root, qemu-system-x86 and libvirt's QEMU driver (real guests under "
                       "a private libvirtd run as nobody)",
         "exporter_peers": "root, qemu-system-x86, libvirt's QEMU driver and Debian's "
                           "prometheus-libvirt-exporter"}
#: The exit status of a benchmark that cannot run here (it prints why).
SKIPPED = 77


def main(argv: list[str]) -> int:
    failed, skipped = [], []
    for name in BENCHMARKS:
        start = time.monotonic()
        print(f"== {name}" + (f" (needs {NEEDS[name]})" if name in NEEDS else ""), flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *argv])
        if code == SKIPPED:
            print(f"== {name}: skipped (it printed why); its section is left as it was",
                  flush=True)
            skipped.append(name)
            continue
        print(f"== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if skipped:
        print(f"skipped: {', '.join(skipped)}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
