"""The fuzz targets' shared driver: short in the suite, a million inputs in the long run.

``XVIRT_LONG_RUN=1`` selects the long run (not derandomized, rounds of ``ROUND``
examples, each with a fresh Hypothesis engine so its bookkeeping does not pile
up); ``XVIRT_FUZZ_EXAMPLES`` overrides the count in either mode, and
``XVIRT_FUZZ_REPORT`` names a file each target appends its rate to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from hypothesis import HealthCheck, settings

__all__ = ["LONG", "ROUND", "fuzz", "fuzz_settings"]

LONG = os.environ.get("XVIRT_LONG_RUN") == "1"
ROUND = 20_000  # examples per Hypothesis engine in the long run (its memory grows per run)


def _examples(short: int) -> int:
    return int(os.environ.get("XVIRT_FUZZ_EXAMPLES", 1_000_000 if LONG else short))


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, derandomize=not LONG, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def fuzz(name: str, short: int, run: Callable[[int], Callable[[], None]],
         count: Callable[[], int]) -> None:
    """Run ``run(n)()`` until ``count()`` reaches the target, in rounds; report the rate."""
    wanted = _examples(short)
    start = time.perf_counter()
    while count() < wanted:
        before = count()
        run(min(ROUND, wanted - count()) if LONG else wanted)()
        if count() == before or not LONG:
            break  # the strategy's space is exhausted, or the short run is done
    elapsed = time.perf_counter() - start
    line = (f"FUZZ {name}: {count()} inputs in {elapsed:.1f} s "
            f"({count() / max(elapsed, 1e-9):.0f}/s)")
    print(line)
    report = os.environ.get("XVIRT_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as f:
            f.write(line + "\n")
