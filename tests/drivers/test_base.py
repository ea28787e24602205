"""The driver interface's shared parts: exact counts under threads."""

from __future__ import annotations

import sys
import threading

from xvirt.drivers.base import PlaneCounters


def test_counts_start_at_zero_and_reading_does_not_count() -> None:
    counters = PlaneCounters()
    for _ in range(3):
        assert (counters.control_requests, counters.data_calls, counters.event_requests) == (
            0, 0, 0)
    counters.data()
    counters.data()
    counters.control()
    assert (counters.control_requests, counters.data_calls, counters.event_requests) == (1, 2, 0)
    assert counters.data_calls == 2


def test_counts_stay_exact_with_many_threads_bumping_and_reading() -> None:
    counters = PlaneCounters()
    threads_n, per_thread = 8, 20_000
    seen: list[int] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch as often as CPython will: lost updates would show

    def bump() -> None:
        for i in range(per_thread):
            counters.data()
            if i % 1000 == 0:
                seen.append(counters.data_calls)  # reads interleaved with the bumps

    try:
        workers = [threading.Thread(target=bump) for _ in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(old)
    assert counters.data_calls == threads_n * per_thread
    assert all(0 < s <= threads_n * per_thread for s in seen)
    assert (counters.control_requests, counters.event_requests) == (0, 0)
