"""libvirt itself, beside the libvirt driver, for what xvirt's API does not carry.

Over a ``libvirt:`` URI the face serves most calls through xvirt's API (and so
its cache and counters). A few answers are libvirt's own and the API has no
word for them: why a domain is in its state (``state()``'s reason), a domain XML
as the script wrote it (``defineXML``), starting and undefining with libvirt's
flags and semantics (libvirt undefines a running domain, leaving it transient;
xvirt's hosts refuse, as xend's ``delete`` did), the errors libvirt gives
for calls on a shut-off domain, and libvirt's lifecycle events with their exact
details (xvirt's driver rebuilds its events from observations: a domain started
and stopped between two of them is not seen). For those the face opens, when
first needed, a second connection to the same libvirt URI through the real binding.

A second connection sees the same domains only where libvirt keeps them outside
the connection: a daemon (``qemu:///system``, ``test+unix:///default``...) or the
test driver's shared ``test:///default``. The test driver gives every other
``test://`` connection a host of its own (read from the file the URI names), and
each open of an embedded driver (``qemu:///embed``) registers it again: there
:func:`shared_target` says None and the face answers through xvirt's API alone.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from xvirt.compat import _constants as c
from xvirt.compat._errors import from_binding, libvirtError
from xvirt.compat._events import EventLoop
from xvirt.libvirt_api.binding import real_libvirt

__all__ = ["Native", "NativeEvent", "NativeEvents", "shared_target"]

T = TypeVar("T")


def shared_target(xvirt_uri: str) -> str | None:
    """The libvirt URI behind an xvirt ``libvirt:`` URI when a second connection to it
    sees the same domains; None otherwise (not a libvirt URI, a private test host, an
    embedded driver)."""
    if not xvirt_uri.startswith("libvirt:"):
        return None
    target = _without_cache_option(xvirt_uri[len("libvirt:"):])
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    driver = parts.scheme.partition("+")[0].lower()
    if driver == "test" and parts.path != "/default":
        return None  # test://<file>: every connection gets its own host
    if parts.path.rstrip("/") == "/embed":
        return None  # an embedded driver: a second open registers it again
    return target


def _without_cache_option(uri: str) -> str:
    """``uri`` without xvirt's ``cache=`` option (it configures xvirt's connection)."""
    base, question, rest = uri.partition("?")
    if not question:
        return uri
    query, hash_, fragment = rest.partition("#")
    kept = [part for part in query.split("&") if part.partition("=")[0] != "cache"]
    return base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment


class Native:
    """A lazily opened real libvirt connection to ``target`` (thread-safe). Its
    errors become the face's libvirtError with every field libvirt gave."""

    def __init__(self, target: str, *, readonly: bool) -> None:
        self.target = target
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None:
                lv = real_libvirt()
                try:
                    opened = (lv.openReadOnly(self.target) if self.readonly
                              else lv.open(self.target))
                except lv.libvirtError as exc:
                    raise from_binding(exc) from None
                self._conn = opened
            return self._conn

    def call(self, fn: Callable[[Any], T], *, retry: bool = False) -> T:
        """``fn(connection)``. A lost connection is dropped (the next call opens
        another); ``retry`` (reads only: an action's fate would be unknown) repeats
        the call once on a new one."""
        lv = real_libvirt()
        for attempt in range(2):
            conn = self._connection()
            try:
                return fn(conn)
            except lv.libvirtError as exc:
                if self._alive(conn) or not retry or attempt:
                    raise from_binding(exc) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _alive(self, conn: Any) -> bool:
        """Whether ``conn`` still works; a dead one is dropped."""
        with contextlib.suppress(real_libvirt().libvirtError):
            if conn.isAlive():
                return True
        with self._lock:
            if self._conn is conn:
                self._conn = None
        return False

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(real_libvirt().libvirtError):
                conn.close()


class NativeEvent(NamedTuple):
    """One lifecycle event as libvirt sent it."""

    uuid: str
    name: str
    event: int
    detail: int


class NativeEvents:
    """libvirt's lifecycle events on the second connection, each posted to the face's
    loop as ``deliver(NativeEvent)``; an event source for _callbacks.Callbacks.

    libvirt calls back on its own event loop thread (the libvirt driver runs it): the
    callback only reads the handle's UUID and name, which the handle holds. Should
    the second connection be lost and opened again, its events stop (libvirt's own
    callbacks die with their connection, as a script's do)."""

    def __init__(self, native: Native, deliver: Callable[[NativeEvent], None],
                 loop: EventLoop) -> None:
        self._deliver = deliver
        self._loop = loop
        self._native = native
        self._done = threading.Event()
        self._callback_id: int = native.call(functools.partial(
            _register, callback=self._on_event))

    def _on_event(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if self._done.is_set():
            return
        with contextlib.suppress(real_libvirt().libvirtError):
            found = NativeEvent(str(dom.UUIDString()), str(dom.name()), int(event), int(detail))
            self._loop.post(functools.partial(self._deliver, found))

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    def stop(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        callback_id = self._callback_id
        with contextlib.suppress(libvirtError):  # a connection lost since: nothing to undo
            self._native.call(lambda conn: conn.domainEventDeregisterAny(callback_id))

    def join(self, timeout: float | None = None) -> None:
        """Stopping is immediate (no thread of its own): returns at once once stopped."""
        self._done.wait(timeout)


def _register(conn: Any, *, callback: Callable[..., None]) -> int:
    return int(conn.domainEventRegisterAny(None, c.VIR_DOMAIN_EVENT_ID_LIFECYCLE, callback,
                                           None))
