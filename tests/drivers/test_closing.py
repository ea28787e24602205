"""close_when_free: a close never waits on a lock another thread holds (issue 18, item 4)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.locks import HUNG_S, Holder
from xvirt.drivers import closing
from xvirt.drivers.closing import close_when_free


@pytest.fixture
def steps() -> list[str]:
    return []


@pytest.fixture(params=["Lock", "RLock"])
def lock(request: pytest.FixtureRequest) -> threading.Lock | threading.RLock:
    return threading.Lock() if request.param == "Lock" else threading.RLock()


@pytest.fixture
def held(lock: threading.Lock | threading.RLock) -> Iterator[Holder]:
    holder = Holder(lock)
    yield holder
    holder.release()


def _free_for_others(lock: threading.Lock | threading.RLock) -> bool:
    """Whether another thread could take ``lock`` now."""
    got: list[bool] = []

    def probe() -> None:
        got.append(lock.acquire(blocking=False))
        if got[0]:
            lock.release()

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join(HUNG_S)
    return got == [True]


def test_a_free_lock_tears_down_at_once(lock: threading.Lock | threading.RLock,
                                        steps: list[str]) -> None:
    assert close_when_free(
        lock, lambda: steps.append(f"under, free: {_free_for_others(lock)}"),
        lambda: steps.append(f"after, free: {_free_for_others(lock)}")) is None
    assert steps == ["under, free: False", "after, free: True"]


def test_a_held_lock_is_not_waited_for_and_the_teardown_follows_its_release(
        lock: threading.Lock | threading.RLock, held: Holder, steps: list[str]) -> None:
    closer = close_when_free(lock, lambda: steps.append("under"),
                             lambda: steps.append("after"))
    assert closer is not None and closer.daemon  # never keeps the process alive
    assert steps == []  # returned while the lock was held: nothing done yet
    held.release()
    closer.join(HUNG_S)
    assert not closer.is_alive() and steps == ["under", "after"]


def test_the_thread_that_holds_a_reentrant_lock_tears_down_itself(steps: list[str]) -> None:
    lock = threading.RLock()
    with lock:  # a finalizer that runs in the middle of a call of this very thread
        assert close_when_free(lock, lambda: steps.append("under")) is None
    assert steps == ["under"]


def test_at_interpreter_exit_nothing_waits_and_only_at_exit_runs(
        lock: threading.Lock | threading.RLock, held: Holder, steps: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closing, "finalizing", lambda: True)
    assert close_when_free(lock, lambda: steps.append("under"), lambda: steps.append("after"),
                           at_exit=lambda: steps.append("at exit")) is None
    held.release()
    assert steps == ["at exit"]


def test_at_interpreter_exit_a_free_lock_is_not_taken_either(
        lock: threading.Lock | threading.RLock, steps: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a free lock of ours does not make the teardown's calls safe then."""
    monkeypatch.setattr(closing, "finalizing", lambda: True)
    assert close_when_free(lock, lambda: steps.append("under")) is None
    assert steps == []


def test_no_thread_can_be_started_any_more(
        lock: threading.Lock | threading.RLock, held: Holder, steps: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpreter shutdown refuses new threads: the close still returns."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert close_when_free(lock, lambda: steps.append("under")) is None
    monkeypatch.undo()
    held.release()
    assert steps == []
