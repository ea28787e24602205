"""Time as a dependency: a manual clock for tests, the real one for tools."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt import clock as clock_mod
from xvirt.clock import Clock, ManualClock, SystemClock


def test_manual_clock_starts_where_told() -> None:
    assert ManualClock().now() == 0.0
    assert ManualClock(123.5).now() == 123.5


def test_manual_clock_moves_only_when_told() -> None:
    c = ManualClock(1.0)
    assert c.now() == c.now() == 1.0
    c.advance(2.5)
    assert c.now() == 3.5
    c.advance(0)
    assert c.now() == 3.5


def test_manual_clock_cannot_go_backwards() -> None:
    c = ManualClock(5.0)
    with pytest.raises(ValueError):
        c.advance(-0.1)
    assert c.now() == 5.0


def test_manual_sleep_advances_instantly() -> None:
    c = ManualClock()
    c.sleep(0.05)
    assert c.now() == 0.05
    c.sleep(-3)  # sleeping a negative time is no sleep
    assert c.now() == 0.05


@given(st.lists(st.floats(0, 1e6), max_size=20))
def test_manual_clock_is_the_sum_of_its_advances(steps: list[float]) -> None:
    c = ManualClock()
    for s in steps:
        c.advance(s)
    assert c.now() == pytest.approx(sum(steps), rel=1e-9, abs=1e-9)


def test_manual_clock_advances_are_not_lost_between_threads() -> None:
    c = ManualClock()

    def work() -> None:
        for _ in range(2000):
            c.advance(1.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.now() == 8000.0


def test_system_clock_is_monotonic() -> None:
    c = SystemClock()
    readings = [c.now() for _ in range(100)]
    assert readings == sorted(readings)


@pytest.mark.parametrize("seconds", [0, 0.0, -1.0])
def test_system_clock_does_not_sleep_for_nothing(
    monkeypatch: pytest.MonkeyPatch, seconds: float
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(clock_mod.time, "sleep", calls.append)
    SystemClock().sleep(seconds)
    assert calls == []


def test_system_clock_sleeps_through_time_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(clock_mod.time, "sleep", calls.append)
    SystemClock().sleep(0.25)
    assert calls == [0.25]


def test_both_clocks_fit_the_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), ManualClock()]
    for c in clocks:
        assert isinstance(c.now(), float)
