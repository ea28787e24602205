"""Time as a dependency: hosts and drivers never call time.* directly.

Injecting the clock lets tests advance CPU time and control-plane latency
without really sleeping, and lets benchmarks use the real one.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "WallClock"]


class Clock(Protocol):
    """Monotonic seconds and a way to wait."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock."""

    #: The C function itself, not a method calling it: hot paths read the clock.
    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class WallClock(SystemClock):
    """Seconds since the epoch: what a host outliving its daemon needs, because its
    times are saved by one process and read by another (or by another program)."""

    now = staticmethod(time.time)


class ManualClock:
    """A clock that moves only when told; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
