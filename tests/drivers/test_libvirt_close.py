"""Closing the libvirt driver never waits on its lock (issue 18, item 4).

A script that did not close its connection sometimes never exited: at interpreter exit
``virConnect.__del__`` closed the driver, whose lock a thread stopped by the exit still
held. Here another thread holds the lock, as a call blocked in libvirt does, and the
close must return all the same: at once, from a finalizer, and at interpreter exit.
The exit itself, many times over: tests/compat/test_close_at_exit.py.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

import pytest

import xvirt
import xvirt.compat.libvirt as face
from tests.locks import HUNG_S, Holder, returns
from xvirt.drivers import closing
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.errors import XvirtError

URI = "libvirt:test:///default"


@pytest.fixture
def driver() -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(URI, "test:///default")
    d.follow_events()  # the event connection and registration too: all that close undoes
    yield d
    d.close()


class Disarmed:
    """The driver's binding connections as they were before a close at interpreter exit
    disarmed them, to put back and close for real: in a test the process goes on."""

    def __init__(self, driver: LibvirtDriver) -> None:
        self._driver = driver
        conns = (driver._watched, driver._conn)
        self._saved = [(c, c._o, vars(c).get("domainEventCallbacks"))
                       for c in {id(c): c for c in conns if c is not None}.values()]

    def close(self) -> None:
        for conn, o, callbacks in self._saved:
            conn._o = o
            if callbacks is not None:
                conn.domainEventCallbacks = callbacks
                with contextlib.suppress(Exception):
                    conn.domainEventDeregister(self._driver._on_event)
            conn.close()


def test_close_returns_while_another_thread_holds_the_lock(driver: LibvirtDriver) -> None:
    holder = Holder(driver._lock)
    try:
        assert returns(driver.close)
        assert driver._closed  # at once: a call waiting for the lock will find it closed
        assert driver._conn is not None  # torn down only once the holder lets go
    finally:
        holder.release()
    assert driver._closer is not None
    driver._closer.join(HUNG_S)
    assert (driver._conn, driver._watched) == (None, None)
    with pytest.raises(XvirtError):
        driver.snapshot()
    driver.close()  # and again: nothing more to do


def test_a_finalizer_returns_while_another_thread_holds_the_lock() -> None:
    conn = face.open(URI)
    conn.lookupByName("test").info()
    driver = conn._xvirt._driver
    assert isinstance(driver, LibvirtDriver)
    holder = Holder(driver._lock)
    try:
        assert returns(conn.__del__)  # what collecting a script's unclosed connection calls
        assert conn._xvirt.closed
    finally:
        holder.release()
    assert driver._closer is not None
    driver._closer.join(HUNG_S)
    assert driver._conn is None
    del conn
    gc.collect()


def test_at_interpreter_exit_close_makes_no_libvirt_call_and_disarms_the_binding(
        driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt calls the event loop's Python callbacks holding its own locks, so at
    exit a stopped thread may hold them: deregistering or closing would never return,
    and libvirt-python's finalizer of a connection makes those calls."""
    watched, conn = driver._watched, driver._conn
    assert watched is not None and conn is not None
    assert hasattr(watched, "domainEventCallbacks")  # the driver's registration
    disarmed = Disarmed(driver)
    holder = Holder(driver._lock)
    calls: list[str] = []
    monkeypatch.setattr(closing, "finalizing", lambda: True)
    for each in (watched, conn):
        monkeypatch.setattr(each, "domainEventDeregister", lambda *a: calls.append("dereg"))
        monkeypatch.setattr(each, "close", lambda *a: calls.append("close"))
    try:
        assert returns(driver.close)
    finally:
        holder.release()
    assert driver._closer is None and calls == []
    assert not hasattr(watched, "domainEventCallbacks")
    assert (watched._o, conn._o) == (None, None)  # their own finalizers: nothing to do
    monkeypatch.undo()
    disarmed.close()


def test_a_closed_connection_wakes_its_event_waiters_once_torn_down(
        driver: LibvirtDriver) -> None:
    """A thread waiting for events sees the close when the teardown runs."""
    seen: list[int] = []
    waiter = threading.Thread(
        target=lambda: seen.append(len(driver.events_since(10**9, timeout=HUNG_S).events)),
        daemon=True)
    waiter.start()
    holder = Holder(driver._lock)
    try:
        assert returns(driver.close)
    finally:
        holder.release()
    waiter.join(HUNG_S)
    assert not waiter.is_alive() and seen == [0]


def test_the_public_connection_closes_as_its_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = xvirt.open(URI)
    driver = conn._driver
    assert isinstance(driver, LibvirtDriver)
    holder = Holder(driver._lock)
    try:
        assert returns(conn.close)
        assert conn.closed
    finally:
        holder.release()
