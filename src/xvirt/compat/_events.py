"""libvirt's default event loop, and domain events from xvirt's event stream.

A libvirt-python script registers callbacks and runs ``virEventRunDefaultImpl()``
in a loop; libvirt calls the callbacks from inside that call. The face does
the same: a pump thread per connection reads ``Connection.events()`` and
posts each event to the loop, and the loop's ``run_once`` blocks (on a
condition, at most ``MAX_WAIT_S``) until there is something to deliver or a
timer is due, then delivers it on the caller's thread.

Every domain event ID libvirt 9.0 has can be registered (``EVENT_IDS``); each
callback is called with that ID's arguments (:func:`event_args`). xvirt's hosts
produce the lifecycle events and METADATA_CHANGE; a reboot is, as libvirt's Xen driver
(libxl) reports it, STOPPED/SHUTDOWN then STARTED/BOOTED, and no REBOOT event (only
QEMU and LXC have one). A callback for any other ID (REBOOT, agent lifecycle, block
jobs, tray changes...) is registered and never called, as on a libvirt driver that
has no such event.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from xvirt.compat import _constants as c
from xvirt.errors import ConnectionClosedError, XvirtError
from xvirt.model import DomainEvent, EventKind

__all__ = ["EVENT_IDS", "LIFECYCLE", "LOOP", "EventLoop", "Pump", "event_args", "guarded"]

#: VIR_DOMAIN_EVENT_ID_LAST in libvirt 9.0.0: the domain event IDs are 0 .. EVENT_IDS - 1.
EVENT_IDS = 27

#: xvirt's lifecycle changes as libvirt's (event, detail) pairs.
LIFECYCLE: dict[EventKind, tuple[int, int]] = {
    EventKind.CREATED: (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_BOOTED),
    EventKind.RESTORED: (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_RESTORED),
    EventKind.MIGRATED: (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
    EventKind.REBOOTED: (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_BOOTED),
    EventKind.DESTROYED: (c.VIR_DOMAIN_EVENT_STOPPED, c.VIR_DOMAIN_EVENT_STOPPED_DESTROYED),
    EventKind.SHUTDOWN: (c.VIR_DOMAIN_EVENT_STOPPED, c.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN),
    EventKind.SAVED: (c.VIR_DOMAIN_EVENT_STOPPED, c.VIR_DOMAIN_EVENT_STOPPED_SAVED),
    # Xen keeps a crashed domain (on_crash=preserve): libvirt's CRASHED event, not STOPPED.
    EventKind.CRASHED: (c.VIR_DOMAIN_EVENT_CRASHED, c.VIR_DOMAIN_EVENT_CRASHED_PANICKED),
    EventKind.PAUSED: (c.VIR_DOMAIN_EVENT_SUSPENDED, c.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
    EventKind.RESUMED: (c.VIR_DOMAIN_EVENT_RESUMED, c.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED),
    EventKind.RENAMED: (c.VIR_DOMAIN_EVENT_DEFINED, c.VIR_DOMAIN_EVENT_DEFINED_RENAMED),
    EventKind.STARTED: (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_BOOTED),
    EventKind.DEFINED: (c.VIR_DOMAIN_EVENT_DEFINED, c.VIR_DOMAIN_EVENT_DEFINED_ADDED),
    EventKind.UNDEFINED: (c.VIR_DOMAIN_EVENT_UNDEFINED, c.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED),
}


def event_args(event_id: int, event: DomainEvent) -> tuple[object, ...] | None:
    """What a callback registered for ``event_id`` is called with between the domain
    and its opaque, for ``event`` (as libvirt-python's dispatchers call it): the
    lifecycle's ``(event, detail)``, METADATA_CHANGE's
    ``(type, namespace URI or None)``; None when ``event`` is not of that ID."""
    if event_id == c.VIR_DOMAIN_EVENT_ID_LIFECYCLE:
        return LIFECYCLE.get(event.kind)
    if event_id == c.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE:
        kind = event.kind.metadata
        return None if kind is None else (kind.value, event.uri)
    return None


@dataclass(slots=True)
class _Timer:
    interval_ms: int
    cb: Callable[[int, Any], object]
    opaque: Any
    due: float


class EventLoop:
    """One loop per process, as libvirt's default implementation."""

    #: The longest one iteration blocks with nothing to do (libvirt's blocks for
    #: ever; returning lets a script's loop notice its own stop flag).
    MAX_WAIT_S = 0.5

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: deque[Callable[[], object]] = deque()
        self._timers: dict[int, _Timer] = {}
        self._ids = itertools.count(1)
        self.registered = False
        #: Called after each post when libvirt's own loop runs the script's events
        #: (the face then wakes that loop, which calls :meth:`run_ready`).
        self.waker: Callable[[], object] | None = None

    def post(self, job: Callable[[], object]) -> None:
        """Run ``job`` in the next iteration (from any thread)."""
        with self._cond:
            self._pending.append(job)
            self._cond.notify_all()
            waker = self.waker
        if waker is not None:
            waker()

    def run_ready(self) -> None:
        """Run what was posted, without waiting (from libvirt's loop, via the waker)."""
        with self._cond:
            jobs = list(self._pending)
            self._pending.clear()
        for job in jobs:
            guarded(job)

    def add_timeout(self, interval_ms: int, cb: Callable[[int, Any], object],
                    opaque: Any) -> int:
        with self._cond:
            timer = next(self._ids)
            self._timers[timer] = _Timer(interval_ms, cb, opaque, self._due(interval_ms))
            self._cond.notify_all()
            return timer

    def update_timeout(self, timer: int, interval_ms: int) -> None:
        with self._cond:
            if timer in self._timers:
                self._timers[timer].interval_ms = interval_ms
                self._timers[timer].due = self._due(interval_ms)
                self._cond.notify_all()

    def remove_timeout(self, timer: int) -> int:
        with self._cond:
            return 0 if self._timers.pop(timer, None) is not None else -1

    def _due(self, interval_ms: int) -> float:
        return float("inf") if interval_ms < 0 else self._clock() + interval_ms / 1000.0

    def run_once(self) -> int:
        """One iteration: wait until a job or a timer is due (bounded), run them."""
        with self._cond:
            deadline = self._clock() + self.MAX_WAIT_S
            while True:
                now = self._clock()
                due = [(t, tm) for t, tm in self._timers.items() if tm.due <= now]
                if self._pending or due or now >= deadline:
                    break
                next_due = min((tm.due for tm in self._timers.values()), default=deadline)
                self._cond.wait(max(0.0, min(deadline, next_due) - now))
            jobs = list(self._pending)
            self._pending.clear()
            for _, tm in due:
                tm.due = self._due(tm.interval_ms)
        for job in jobs:
            guarded(job)
        for timer, tm in due:
            guarded(functools.partial(tm.cb, timer, tm.opaque))
        return 0


def guarded(job: Callable[[], object]) -> None:
    """A failing callback is printed and the loop goes on, as in libvirt-python."""
    try:
        job()
    except Exception:
        traceback.print_exc()


#: The process's loop (virEventRegisterDefaultImpl / virEventRunDefaultImpl).
LOOP = EventLoop()


class Pump:
    """Reads one connection's event stream on a daemon thread and posts each
    event to the loop as ``deliver(event)``."""

    POLL_S = 0.5  # how long one read waits: also how soon the thread notices stop()

    def __init__(self, stream: Iterator[DomainEvent], deliver: Callable[[DomainEvent], None],
                 loop: EventLoop) -> None:
        self._stream = stream
        self._deliver = deliver
        self._loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xvirt-compat-events",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = next(self._stream)
            except StopIteration:  # nothing within POLL_S: the stream goes on from here
                continue
            except ConnectionClosedError:
                return
            except XvirtError:  # host away: the stream resumes when it is back (C8)
                self._stop.wait(self.POLL_S)
                continue
            if not self._stop.is_set():
                self._loop.post(functools.partial(self._deliver, event))
