"""The one libvirt event loop of the process, and connections kept out of it.

libvirt delivers lifecycle events and notices a dead connection (close callback,
keepalive) only through a registered event implementation; it must be registered
before the first connection is opened, and every remote connection opened after
that puts its socket in the loop. That costs each call on such a connection: the
calling thread takes the socket out of the loop and back (two wake-ups of the
loop thread per call), and keepalive resets a timer on every message. Measured
on a private libvirtd, naive loop, microseconds per domain (2 calls): 174 without
a loop, 195 with libvirt's default loop, 209 with keepalive too.

So this is libvirt's event implementation written here rather than the default
one: the same semantics (handles, timers, free callbacks run from the loop, never
from inside libvirt), on one daemon thread, plus :meth:`EventLoop.unwatched`: a
connection opened inside it gets no handle, so libvirt runs it as it runs a
connection in a process without a loop (no events, no keepalive, no wake-ups).
The libvirt driver makes its calls on such a connection and takes events on a
second, watched one. A wake-up is sent only when the loop must poll sooner or
for more than it does, so keepalive's per-message timer resets cost nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xvirt.libvirt_api.binding import event_impl_registered

__all__ = ["EventLoop", "ensure_event_loop"]

_ERRORS_KEPT = 10

# libvirt's handle event bits (virEventHandleType).
READABLE, WRITABLE, ERROR, HANGUP = 1, 2, 4, 8

_TO_POLL = ((READABLE, select.POLLIN | select.POLLPRI), (WRITABLE, select.POLLOUT))
_FROM_POLL = ((select.POLLIN | select.POLLPRI, READABLE), (select.POLLOUT, WRITABLE),
              (select.POLLERR | select.POLLNVAL, ERROR), (select.POLLHUP, HANGUP))


def _poll_mask(events: int) -> int:
    return sum(mask for bit, mask in _TO_POLL if events & bit)


def _libvirt_events(revents: int) -> int:
    return sum(bit for mask, bit in _FROM_POLL if revents & mask)


@dataclass
class _Handle:
    fd: int
    events: int
    cb: Any
    opaque: Any


@dataclass
class _Timer:
    interval_ms: int  # -1 disabled, 0 every iteration
    due: float  # monotonic seconds
    cb: Any
    opaque: Any


class EventLoop:
    """libvirt's event implementation for this process, run on one daemon thread."""

    def __init__(self, binding: Any) -> None:
        self._lv = binding
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._handles: dict[int, _Handle] = {}
        self._timers: dict[int, _Timer] = {}
        self._to_free: list[Any] = []
        # What the loop's current poll waits for: updates that ask for less need no wake-up.
        self._polled: dict[int, int] = {}  # watch -> events
        self._wake_at = math.inf
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._local = threading.local()
        self.errors: list[Exception] = []  # what the loop caught, newest last
        self._thread = threading.Thread(target=self._run, name="xvirt-libvirt-events",
                                        daemon=True)

    def start(self) -> None:
        """Register with libvirt and start the thread (once, before any connection)."""
        self._lv.virEventRegisterImpl(self._add_handle, self._update_handle,
                                      self._remove_handle, self._add_timeout,
                                      self._update_timeout, self._remove_timeout)
        self._thread.start()

    @contextlib.contextmanager
    def unwatched(self) -> Iterator[None]:
        """Connections opened by this thread inside get no handle in the loop: libvirt
        then gives them no events and no keepalive, and their calls never wake it."""
        self._local.refusing = True
        try:
            yield
        finally:
            self._local.refusing = False

    def watches(self) -> int:
        """How many file handles the loop holds (one per watched connection, and
        whatever libvirt's own drivers add)."""
        with self._lock:
            return len(self._handles)

    # -- libvirt's side (any thread; libvirt may hold its own locks) -----------------

    def _add_handle(self, fd: int, events: int, cb: Any, opaque: Any) -> int:
        if getattr(self._local, "refusing", False):
            return -1
        with self._lock:
            watch = next(self._ids)
            self._handles[watch] = _Handle(fd, events, cb, opaque)
        if events:
            self._wake()
        return watch

    def _update_handle(self, watch: int, events: int) -> None:
        with self._lock:
            handle = self._handles.get(watch)
            if handle is None:
                return
            handle.events = events
            sooner = events & ~self._polled.get(watch, 0)
        if sooner:
            self._wake()  # asked for less: a stale readiness is checked before dispatch

    def _remove_handle(self, watch: int) -> int:
        with self._lock:
            handle = self._handles.pop(watch, None)
            if handle is None:
                return -1
            self._to_free.append(handle.opaque)
        self._wake()  # the free callback releases libvirt's socket: soon, from the loop
        return 0

    def _add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        with self._lock:
            timer = next(self._ids)
            due = self._due(timeout)
            self._timers[timer] = _Timer(timeout, due, cb, opaque)
            sooner = due < self._wake_at
        if sooner:
            self._wake()
        return timer

    def _update_timeout(self, timer: int, timeout: int) -> None:
        with self._lock:
            entry = self._timers.get(timer)
            if entry is None:
                return
            entry.interval_ms = timeout
            entry.due = self._due(timeout)
            sooner = entry.due < self._wake_at
        if sooner:
            self._wake()  # later than the loop's own wake-up: it finds out then

    def _remove_timeout(self, timer: int) -> int:
        with self._lock:
            entry = self._timers.pop(timer, None)
            if entry is None:
                return -1
            self._to_free.append(entry.opaque)
        self._wake()
        return 0

    @staticmethod
    def _due(timeout_ms: int) -> float:
        return math.inf if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000

    def _wake(self) -> None:
        if threading.current_thread() is self._thread:
            return  # the loop plans its next poll after this callback anyway
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            os.write(self._wake_w, b"\0")

    # -- the loop thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._iterate()
            except Exception as exc:  # one error must not stop every event
                self.errors.append(exc)  # for tests: the loop must never see one
                del self.errors[:-_ERRORS_KEPT]
                time.sleep(0.01)

    def _iterate(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        with self._lock:
            to_free, self._to_free = self._to_free, []
            polled: dict[int, int] = {}
            masks: dict[int, int] = {}  # one registration per descriptor: their union
            for watch, handle in self._handles.items():
                if handle.events:
                    polled[watch] = handle.events
                    masks[handle.fd] = masks.get(handle.fd, 0) | _poll_mask(handle.events)
            for fd, mask in masks.items():
                poller.register(fd, mask)
            self._polled = polled
            self._wake_at = min((t.due for t in self._timers.values()), default=math.inf)
            wait = self._wake_at - time.monotonic()
        for opaque in to_free:
            self._lv.virEventInvokeFreeCallback(opaque)
        if to_free:
            return  # freeing may have changed the tables: plan again
        timeout_ms = None if wait == math.inf else max(0, math.ceil(wait * 1000))
        ready = poller.poll(timeout_ms)
        for fd, revents in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
                continue
            self._dispatch_handles(fd, revents)
        self._dispatch_timers()

    def _dispatch_handles(self, fd: int, revents: int) -> None:
        with self._lock:
            due = [(watch, h) for watch, h in self._handles.items() if h.fd == fd and h.events]
        for watch, handle in due:
            with self._lock:
                if self._handles.get(watch) is not handle:
                    continue  # removed by an earlier callback
                events = _libvirt_events(revents) & (handle.events | ERROR | HANGUP)
            if events:
                handle.cb(watch, fd, events, handle.opaque)

    def _dispatch_timers(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [(timer, t) for timer, t in self._timers.items() if t.due <= now]
            for _, t in due:
                t.due = now + t.interval_ms / 1000
        for timer, t in due:
            with self._lock:
                if self._timers.get(timer) is not t or t.interval_ms < 0:
                    continue  # removed or disabled by an earlier callback
            t.cb(timer, t.opaque)


_lock = threading.Lock()
_loop: EventLoop | None = None
_checked = False


def ensure_event_loop(binding: Any) -> EventLoop | None:
    """The process's loop, registered and started on first use; None when the
    program registered an event implementation of its own first (its loop then
    runs every connection, and none can be kept out of it).

    Also installs a silent error handler: libvirt otherwise prints every error
    to stderr, and the driver reports them as exceptions instead."""
    global _loop, _checked
    with _lock:
        if not _checked:
            binding.registerErrorHandler(lambda _ctx, _err: None, None)
            if not event_impl_registered(binding):
                loop = EventLoop(binding)
                loop.start()
                _loop = loop
            _checked = True
        return _loop
