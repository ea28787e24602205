"""The process's libvirt event loop (drivers/libvirt_loop.py), with real libvirt.

Handles and timers are registered through libvirt's own public calls
(``virEventAddHandle``, ``virEventAddTimeout``...), which go to the registered
implementation: this one. Waits are liveness bounds, never timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from xvirt.drivers.libvirt import LibvirtDriver, _shared_host, _through_daemon
from xvirt.drivers.libvirt_loop import READABLE, EventLoop, ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess

LIVENESS_S = 10.0


@pytest.fixture
def lv() -> Any:
    return real_libvirt()


@pytest.fixture
def loop(lv: Any) -> Iterator[EventLoop]:
    loop = ensure_event_loop(lv)
    assert loop is not None, "another event implementation was registered in this process"
    errors = len(loop.errors)
    yield loop
    assert loop.errors[errors:] == []  # nothing a test did made the loop fail


class Fired:
    """Counts calls and lets a test wait for the n-th."""

    def __init__(self) -> None:
        self.count = 0
        self.events: list[int] = []
        self._cond = threading.Condition()

    def __call__(self, *args: Any) -> None:
        with self._cond:
            self.count += 1
            if len(args) == 4:  # a handle's: (watch, fd, events, opaque)
                self.events.append(args[2])
            self._cond.notify_all()

    def reach(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, LIVENESS_S)


def one_iteration(lv: Any) -> None:
    """Returns once the loop has been round at least once more: a timer that fires
    at once, then removed."""
    fired = Fired()
    timer = lv.virEventAddTimeout(0, fired, None)
    assert fired.reach(1)
    lv.virEventRemoveTimeout(timer)
    again = Fired()
    timer = lv.virEventAddTimeout(0, again, None)
    assert again.reach(1)  # a second, whole iteration after the first timer's
    lv.virEventRemoveTimeout(timer)


def test_ensure_event_loop_is_one_loop_per_process(lv: Any, loop: EventLoop) -> None:
    assert ensure_event_loop(lv) is loop


def test_a_timer_fires_until_disabled_and_removed(lv: Any, loop: EventLoop) -> None:
    fired = Fired()
    timer = lv.virEventAddTimeout(0, fired, None)  # every iteration
    assert fired.reach(3)
    lv.virEventUpdateTimeout(timer, -1)
    one_iteration(lv)
    stopped = fired.count
    one_iteration(lv)
    assert fired.count == stopped
    lv.virEventUpdateTimeout(timer, 1)  # a period: fires again
    assert fired.reach(stopped + 2)
    lv.virEventRemoveTimeout(timer)
    one_iteration(lv)
    removed = fired.count
    one_iteration(lv)
    assert fired.count == removed


def test_a_handle_fires_on_what_it_asks_for_only(lv: Any, loop: EventLoop) -> None:
    r, w = os.pipe()
    try:
        fired = Fired()
        watch = lv.virEventAddHandle(r, READABLE, fired, None)
        os.write(w, b"x")
        assert fired.reach(1) and fired.events[0] & READABLE
        lv.virEventUpdateHandle(watch, 0)  # readable still, but not asked for
        one_iteration(lv)
        asked_none = fired.count
        one_iteration(lv)
        assert fired.count == asked_none
        lv.virEventUpdateHandle(watch, READABLE)  # asked again, from another thread
        assert fired.reach(asked_none + 1)
        lv.virEventRemoveHandle(watch)
        one_iteration(lv)
        removed = fired.count
        one_iteration(lv)
        assert fired.count == removed
    finally:
        os.close(r)
        os.close(w)


def test_libvirt_events_come_through_it(lv: Any, loop: EventLoop) -> None:
    conn = lv.open("test:///default")
    try:
        fired = Fired()
        cid = conn.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, fired, None)
        dom = conn.lookupByName("test")
        dom.suspend()
        dom.resume()
        assert fired.reach(2)
        conn.domainEventDeregisterAny(cid)
    finally:
        conn.close()


def test_a_connection_opened_unwatched_is_not_in_the_loop(
        lv: Any, loop: EventLoop, libvirtd: LibvirtdProcess) -> None:
    before = loop.watches()
    with loop.unwatched():
        plain = lv.open(libvirtd.uri)
    try:
        assert loop.watches() == before
        with pytest.raises(lv.libvirtError, match="keepalive"):
            plain.setKeepAlive(1, 3)  # libvirt: no event loop for this one
        assert len(plain.listAllDomains(0)) >= 1  # and it works
        watched = lv.open(libvirtd.uri)
        assert loop.watches() == before + 1
        assert watched.setKeepAlive(1, 3) == 0
        watched.close()
        one_iteration(lv)
        assert loop.watches() == before
    finally:
        plain.close()


def test_the_driver_calls_on_an_unwatched_connection_where_a_daemon_serves_one_host(
        loop: EventLoop, libvirtd: LibvirtdProcess) -> None:
    before = loop.watches()
    driver = LibvirtDriver("libvirt:" + libvirtd.uri, libvirtd.uri)
    try:
        assert driver.census().members and driver.snapshot().rows
        assert loop.watches() == before  # a monitor that lists and reads: none watched
        driver.follow_events()  # someone follows events: the events' connection opens
        assert driver._watched is not None and driver._conn is not driver._watched
        assert loop.watches() == before + 1
        assert driver.census().members
    finally:
        driver.close()
    one_iteration(real_libvirt())
    assert loop.watches() == before


@pytest.mark.parametrize(("target", "daemon", "shared"), [
    ("test:///default", False, True),
    ("test:///tmp/node.xml", False, False),
    ("test+unix:///default?socket=/s", True, True),
    ("test+unix:///tmp/node.xml?socket=/s", True, False),
    ("qemu:///system", True, True),
    ("qemu:///session", True, True),
    ("qemu:///embed?root=/r", False, True),
    ("qemu+ssh://host/system", True, True),
    ("xen:///system", True, True),
])
def test_which_targets_get_two_connections(target: str, daemon: bool, shared: bool) -> None:
    assert _through_daemon(target) is daemon
    assert _shared_host(target) is shared


def test_a_program_that_registered_its_own_loop_keeps_it() -> None:
    """Then its loop runs every connection, and the driver still gets its events."""
    script = textwrap.dedent("""
        import threading, libvirt
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl()
                                         for _ in iter(int, 1)], daemon=True).start()
        from xvirt.drivers.libvirt import LibvirtDriver
        from xvirt.drivers.libvirt_loop import ensure_event_loop
        assert ensure_event_loop(libvirt) is None
        d = LibvirtDriver("libvirt:test:///default", "test:///default")
        d.census()  # "test" observed running: its pause is news
        after = d.events_since(0).latest
        libvirt.open("test:///default").lookupByName("test").suspend()
        batch = d.events_since(after, timeout=10)
        print(sorted({e.kind.value for e in batch.events}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['paused']"
