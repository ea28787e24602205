"""The face on a ``libvirt:`` URI: the real binding, accelerated.

What the face accelerates (listing, lookups, ``info()``, the identity of a domain)
goes through xvirt's API, its cache and its contract (C1-C3). Every other method of
``virConnect`` and ``virDomain`` is libvirt-python's own, called on the libvirt
connection under the xvirt one (``Connection.libvirt_connection()``: the one with
libvirt's events and keepalive), so it answers exactly as libvirt does: its XML, its
capabilities, its flags, errors and reasons, networks, storage, streams, snapshots.
Domains that libvirt hands back (``createXML``, events, ``libvirt_qemu``) become the
face's own ``virDomain``; a face domain handed to libvirt becomes libvirt's handle of
the same UUID.

Errors libvirt raises are the binding's ``libvirtError``, which is the face's too
(_errors.py); they are made the thread's last error and reported as the face's own.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from xvirt.compat._connect import virConnect
from xvirt.compat._domain import virDomain
from xvirt.compat._errors import libvirtError, note
from xvirt.connection import Connection, Domain
from xvirt.errors import XvirtError
from xvirt.libvirt_api.binding import real_libvirt

__all__ = ["LibvirtConnect", "LibvirtDomain"]

#: virConnect methods the face answers through xvirt (the accelerated ones), or
#: through wrappers that hand libvirt's domains back as the face's (events).
CONNECT_OWN = frozenset({
    "listDomainsID", "numOfDomains", "listAllDomains", "lookupByID", "lookupByName",
    "lookupByUUID", "lookupByUUIDString", "close",
    "registerCloseCallback", "unregisterCloseCallback",
    "domainEventRegisterAny", "domainEventDeregisterAny",
    "domainEventRegister", "domainEventDeregister",
})
#: libvirt handles a connection keeps for its domains' passed-through calls, at most.
_HANDLES_HELD = 4096
#: virDomain methods the face answers itself: its identity, and ``info()``.
DOMAIN_OWN = frozenset({"info", "ID", "name", "UUID", "UUIDString", "connect"})


class LibvirtConnect(virConnect):
    """``virConnect`` over a ``libvirt:`` URI (see the module's docstring)."""

    def __init__(self, xconn: Connection, uri: str) -> None:
        super().__init__(xconn, uri)
        self._native = None  # libvirt itself is this connection's (no second one)
        self._lv = real_libvirt()
        # uuid -> (libvirt's connection, libvirt's handle of that UUID on it). Held here,
        # not by the face's domains, so that close() lets go of every one: a handle holds
        # its connection open, and libvirt closes it only when the last one goes.
        self._real_handles: dict[str, tuple[Any, Any]] = {}
        # domainEventRegister's callbacks -> the relay registered for each with libvirt
        self._relays: dict[Any, Callable[..., object]] = {}
        self._relays_lock = threading.Lock()

    @property
    def _domain_class(self) -> type[LibvirtDomain]:
        """What ``virDomain(self, ...)`` makes (see virDomain.__new__)."""
        return LibvirtDomain

    def _real(self) -> Any:
        """libvirt's connection under this one (a new object after a reconnection)."""
        try:
            return self._xvirt.libvirt_connection()
        except XvirtError as exc:
            raise self._translate(exc, "virConnect") from None

    @property
    def _o(self) -> Any:
        """libvirt's connection pointer, as the companion modules (libvirt_qemu) use it."""
        return self._real()._o

    def _adopt(self, obj: Any) -> LibvirtDomain:
        """The face's domain for libvirt's (a ``virDomain`` or the bare pointer)."""
        lv = self._lv
        dom = obj if isinstance(obj, lv.virDomain) else lv.virDomain(self._real(), _obj=obj)
        uuid = dom.UUIDString()
        self._hold(uuid, dom.connect(), dom)
        return LibvirtDomain(self, Domain(self._xvirt, uuid), name=dom.name())

    def _hold(self, uuid: str, conn: Any, dom: Any) -> None:
        handles = self._real_handles
        if len(handles) >= _HANDLES_HELD and uuid not in handles:
            handles.clear()  # bounded (C7): the ones still wanted are looked up again
        handles[uuid] = (conn, dom)

    def close(self) -> int:
        self._real_handles.clear()
        return super().close()

    def _to_face(self, value: Any) -> Any:
        """What libvirt answered, with its domains (alone or in a list) as the face's."""
        lv = self._lv
        if isinstance(value, lv.virDomain):
            return self._adopt(value)
        if isinstance(value, lv.virConnect):
            return self
        if isinstance(value, list) and value:
            first = value[0]
            if isinstance(first, lv.virDomain):
                return [self._adopt(d) if isinstance(d, lv.virDomain) else d for d in value]
            if isinstance(first, tuple) and first and isinstance(first[0], lv.virDomain):
                return [(self._adopt(t[0]), *t[1:]) for t in value]  # getAllDomainStats
        return value

    def _passed(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            result = getattr(self._real(), name)(*_to_libvirt(args), **kwargs)
        except libvirtError as exc:
            raise note(exc) from None
        return self._to_face(result)

    # -- events of every ID, with the face's objects -------------------------------------

    def _relay(self, cb: Callable[..., object]) -> Callable[..., object]:
        """``cb`` as libvirt calls it, given this connection and the face's domain."""
        def relay(_conn: Any, dom: Any, *rest: Any) -> object:
            return cb(self, self._adopt(dom), *rest)
        return relay

    def domainEventRegisterAny(self, dom: virDomain | None, eventID: int,
                               cb: Callable[..., object], opaque: Any) -> int:
        target = None if dom is None else _to_libvirt((dom,))[0]
        try:
            result: int = self._real().domainEventRegisterAny(target, eventID,
                                                              self._relay(cb), opaque)
        except libvirtError as exc:
            raise note(exc) from None
        return result

    def domainEventDeregisterAny(self, callbackID: int) -> None:
        try:
            self._real().domainEventDeregisterAny(callbackID)
        except libvirtError as exc:
            raise note(exc) from None

    def domainEventRegister(self, cb: Callable[..., object], opaque: Any) -> None:
        with self._relays_lock:
            relay = self._relays.setdefault(cb, self._relay(cb))
        try:
            self._real().domainEventRegister(relay, opaque)
        except libvirtError as exc:
            raise note(exc) from None

    def domainEventDeregister(self, cb: Callable[..., object]) -> None:
        with self._relays_lock:
            relay = self._relays.pop(cb, cb)
        try:
            self._real().domainEventDeregister(relay)
        except libvirtError as exc:
            raise note(exc) from None


class LibvirtDomain(virDomain):
    """``virDomain`` over a ``libvirt:`` URI (see the module's docstring)."""

    _conn: LibvirtConnect

    def _real_dom(self) -> Any:
        """libvirt's handle of this domain, on the connection under the face's (looked
        up by UUID once per connection: libvirt's handles are by UUID too)."""
        face = self._conn
        conn = face._real()
        held = face._real_handles.get(self._uuid)
        if held is not None and held[0] is conn:
            return held[1]
        try:
            dom = conn.lookupByUUIDString(self._uuid)
        except libvirtError as exc:
            raise note(exc) from None
        face._hold(self._uuid, conn, dom)
        return dom

    @property
    def _o(self) -> Any:
        """libvirt's domain pointer, as the companion modules (libvirt_qemu) use it."""
        return self._real_dom()._o

    def _passed(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            result = getattr(self._real_dom(), name)(*_to_libvirt(args), **kwargs)
        except libvirtError as exc:
            raise note(exc) from None
        return self._conn._to_face(result)


def _to_libvirt(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Arguments with the face's domains (alone or in a list) as libvirt's."""
    if not any(isinstance(a, (virDomain, list)) for a in args):
        return args
    return tuple(_one_to_libvirt(a) for a in args)


def _one_to_libvirt(arg: Any) -> Any:
    if isinstance(arg, LibvirtDomain):
        return arg._real_dom()
    if isinstance(arg, list) and any(isinstance(a, LibvirtDomain) for a in arg):
        return [a._real_dom() if isinstance(a, LibvirtDomain) else a for a in arg]
    return arg


def _forwarder(name: str, real: Any) -> Callable[..., Any]:
    """A method that calls libvirt's ``name`` (keeping its docstring and signature)."""
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._passed(name, args, kwargs)
    functools.update_wrapper(method, real)
    return method


def _public_methods(cls: type) -> list[tuple[str, Any]]:
    return [(n, m) for n, m in vars(cls).items()
            if not n.startswith("_") and inspect.isfunction(m)]


def _install() -> None:
    """Give both classes libvirt's every other method (done once, at import: the
    accelerated methods stay plain attribute lookups)."""
    lv = real_libvirt()
    for name, real in _public_methods(lv.virConnect):
        if name not in CONNECT_OWN:
            setattr(LibvirtConnect, name, _forwarder(name, real))
    for name, real in _public_methods(lv.virDomain):
        if name not in DOMAIN_OWN:
            setattr(LibvirtDomain, name, _forwarder(name, real))


_install()
# A script that prints its objects' types sees libvirt's names, as on libvirt-python.
for _cls, _name in ((LibvirtConnect, "virConnect"), (LibvirtDomain, "virDomain")):
    _cls.__name__ = _cls.__qualname__ = _name
    _cls.__module__ = "libvirt"
