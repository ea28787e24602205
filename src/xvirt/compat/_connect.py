"""virConnect: one xvirt Connection behind libvirt-python's connection object.

Every call maps onto the public xvirt API with the same cost: the 2006 loop
(listDomainsID, then lookupByID and info per ID) makes exactly the plane
calls the same loop makes natively. ``_xvirt`` is the xvirt connection.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from xvirt.compat import _constants as c
from xvirt.compat import _uuid
from xvirt.compat._callbacks import Callback, Callbacks
from xvirt.compat._domain import STATES, check_flags, virDomain
from xvirt.compat._errors import arg_error, error, libvirtError
from xvirt.compat._events import LIFECYCLE, LOOP, Pump, guarded
from xvirt.compat._listing import (
    LIST_FLAGS,
    STATE_BITS,
    STATS_FILTERS,
    STATS_FLAGS,
    SUPPORTED_STATS,
    Candidate,
    keep,
    stats_record,
)
from xvirt.compat._paths import image_name
from xvirt.compat._translate import api, backend_for, not_found, translate
from xvirt.compat._unsupported import unsupported
from xvirt.connection import Connection, Domain
from xvirt.errors import InvalidArgumentError, NoDomainError, XvirtError
from xvirt.model import DomainEvent

__all__ = ["LIB_VERSION", "virConnect"]

#: The libvirt version whose Python API the face follows (virGetVersion's encoding).
LIB_VERSION = 9_000_000
_INT_MAX = 2**31 - 1
_EVENT_IDS = 27  # VIR_DOMAIN_EVENT_ID_LAST in libvirt 9.0.0


def _version_number(text: str) -> int:
    """"4.17.0-xvirt-sim" -> 4017000, libvirt's major*1e6 + minor*1e3 + micro."""
    m = re.match(r"(\d{1,6})(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?", text.strip())
    if m is None:
        return 0
    major, minor, micro = (int(g) if g else 0 for g in m.groups())
    return major * 1_000_000 + minor * 1000 + micro


def _text_arg(value: object, func: str, param: str) -> str:
    """A ``char *`` argument as the binding takes it: None is libvirt's NULL check,
    a non-str TypeError, a lone surrogate UnicodeEncodeError, a NUL ValueError."""
    if value is None:
        raise arg_error(func, param, f"{param} in {func} must not be NULL")
    if not isinstance(value, str):
        raise TypeError(f"{func}() argument 2 must be str or None, not {type(value).__name__}")
    value.encode("utf-8")  # as the binding converts it: a lone surrogate fails first
    if "\x00" in value:
        raise ValueError("embedded null character")
    return value


class virConnect:
    """libvirt-python's connection object, served by xvirt."""

    def __init__(self, xconn: Connection, uri: str) -> None:
        self._xvirt = xconn
        self._uri = uri
        self._backend = backend_for(xconn.uri)
        self._hv_type: str | None = None
        self._callbacks = Callbacks(self._deliver)
        self._close_callback: tuple[Callable[..., object], Any] | None = None

    # -- plumbing ---------------------------------------------------------------------

    def _translate(self, exc: XvirtError, func: str) -> libvirtError:
        return translate(exc, self._backend, func)

    def _open(self, func: str) -> Connection:
        """For calls that need no host answer: a closed connection still fails."""
        if self._xvirt.closed:
            raise error(c.VIR_ERR_INVALID_CONN, c.VIR_FROM_DOMAIN, func)
        return self._xvirt

    def _flags(self, flags: object, allowed: int, func: str) -> int:
        return check_flags(flags, allowed, func, self._backend.error_domain)

    def _hypervisor_type(self) -> str:
        """libvirt's domain type attribute: the hypervisor's name in lower case."""
        return self.getType().lower()

    def __getattr__(self, name: str) -> object:
        return unsupported("virConnect", name)

    # -- the host -----------------------------------------------------------------------

    @api("virConnectGetURI")
    def getURI(self) -> str:
        self._open("virConnectGetURI")
        return self._uri

    @api("virConnectGetType")
    def getType(self) -> str:
        if self._hv_type is None:
            self._hv_type = self._open("virConnectGetType").host_info().hypervisor
        return self._hv_type

    @api("virConnectGetVersion")
    def getVersion(self) -> int:
        return _version_number(self._open("virConnectGetVersion").host_info().version)

    @api("virConnectGetLibVersion")
    def getLibVersion(self) -> int:
        self._open("virConnectGetLibVersion")
        return LIB_VERSION

    @api("virConnectGetHostname")
    def getHostname(self) -> str:
        return self._open("virConnectGetHostname").host_info().hostname

    @api("virNodeGetInfo")
    def getInfo(self) -> list[Any]:
        """libvirt's 8-list: model, memory MiB, cpus, MHz, nodes, sockets, cores, threads."""
        h = self._open("virNodeGetInfo").host_info()
        return [h.arch, h.memory_kib // 1024, h.cpus, h.cpu_mhz, h.nodes, h.sockets_per_node,
                h.cores_per_socket, h.threads_per_core]

    @api("virNodeGetFreeMemory")
    def getFreeMemory(self) -> int:
        return self._open("virNodeGetFreeMemory").host_info().free_memory_kib * 1024

    @api("virConnectIsAlive")
    def isAlive(self) -> int:
        self._open("virConnectIsAlive")
        return 1

    @api("virConnectSetKeepAlive")
    def setKeepAlive(self, interval: int, count: int) -> int:
        """Accepted: xvirt's drivers watch their own peers (C8)."""
        self._open("virConnectSetKeepAlive")
        return 0

    @api("virConnectRegisterCloseCallback")
    def registerCloseCallback(self, cb: Callable[..., object], opaque: Any) -> int:
        """Kept, never called: xvirt re-establishes lost connections itself (C8) and
        reports a host that stays away as errors of the calls."""
        self._open("virConnectRegisterCloseCallback")
        self._close_callback = (cb, opaque)
        return 0

    @api("virConnectUnregisterCloseCallback")
    def unregisterCloseCallback(self) -> None:
        self._open("virConnectUnregisterCloseCallback")
        self._close_callback = None

    @api("virConnectClose")
    def close(self) -> int:
        self._callbacks.clear()
        self._xvirt.close()
        return 0

    def __enter__(self) -> virConnect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        xconn = self.__dict__.get("_xvirt")
        if xconn is not None and not xconn.closed:
            with contextlib.suppress(Exception):  # never raise from a finalizer
                xconn.close()

    # -- listing ------------------------------------------------------------------------

    @api("virConnectListDomains")
    def listDomainsID(self) -> list[int]:
        return self._xvirt.list_domain_ids()

    @api("virConnectNumOfDomains")
    def numOfDomains(self) -> int:
        return len(self._xvirt.list_domain_ids())

    @api("virConnectListDefinedDomains")
    def listDefinedDomains(self) -> list[str]:
        return self._xvirt.defined_names()

    @api("virConnectNumOfDefinedDomains")
    def numOfDefinedDomains(self) -> int:
        return len(self._xvirt.defined_names())

    @api("virConnectListAllDomains")
    def listAllDomains(self, flags: int = 0) -> list[virDomain]:
        flags = self._flags(flags, LIST_FLAGS, "virConnectListAllDomains")
        persistent = not self._backend.xen
        found: list[virDomain] = []
        if keep(flags & ~STATE_BITS, Candidate(active=True, persistent=persistent, state=None)):
            if flags & STATE_BITS:  # states need runtime figures: one sample
                found += [virDomain(self, Domain(self._xvirt, s.identity.uuid),
                                    name=s.identity.name)
                          for s in self._xvirt.sample()
                          if keep(flags, Candidate(active=True, persistent=persistent,
                                                   state=STATES[s.info.state]))]
            else:  # one data-plane snapshot
                found += [virDomain(self, d) for d in self._xvirt.list_domains()]
        if keep(flags, Candidate(active=False, persistent=True, state=c.VIR_DOMAIN_SHUTOFF)):
            found += [virDomain(self, None, name=n) for n in self._xvirt.defined_names()]
        return found

    # -- lookups ------------------------------------------------------------------------

    @api("virDomainLookupByID")
    def lookupByID(self, id: int) -> virDomain:
        if type(id) is int and 0 <= id <= _INT_MAX:  # the monitoring loop's path
            try:
                return virDomain(self, self._xvirt.lookup_by_id(id))
            except (NoDomainError, InvalidArgumentError):  # out of Xen's range: none
                raise not_found(self._backend, "id", id, lookup=True) from None
        if not isinstance(id, int):
            raise TypeError(f"'{type(id).__name__}' object cannot be interpreted as an integer")
        if id > _INT_MAX or id < -_INT_MAX - 1:
            raise OverflowError("signed integer is greater than maximum" if id > 0
                                else "signed integer is less than minimum")
        if id < 0:
            raise arg_error("virDomainLookupByID", "id",
                            "id in virDomainLookupByID must be zero or greater")
        try:
            return virDomain(self, self._xvirt.lookup_by_id(int(id)))
        except (NoDomainError, InvalidArgumentError):  # out of Xen's range: no such domain
            raise not_found(self._backend, "id", int(id), lookup=True) from None

    @api("virDomainLookupByName")
    def lookupByName(self, name: str) -> virDomain:
        name = _text_arg(name, "virDomainLookupByName", "name")
        try:
            return virDomain(self, self._xvirt.lookup_by_name(name), name=name)
        except (NoDomainError, InvalidArgumentError):  # a name no domain can have
            raise not_found(self._backend, "name", name, lookup=True) from None

    @api("virDomainLookupByUUIDString")
    def lookupByUUIDString(self, uuidstr: str) -> virDomain:
        text = _text_arg(uuidstr, "virDomainLookupByUUIDString", "uuidstr")
        uuid = _uuid.parse(text)
        if uuid is None:
            raise arg_error("virDomainLookupByUUIDString", "uuidstr", "Invalid UUID")
        return self._by_uuid(uuid)

    @api("virDomainLookupByUUID")
    def lookupByUUID(self, uuid: bytes) -> virDomain:
        raw = uuid.encode("utf-8") if isinstance(uuid, str) else uuid
        if not isinstance(raw, bytes):
            raise TypeError(f"a bytes-like object is required, not '{type(uuid).__name__}'")
        if len(raw) != 16:
            raise arg_error("virDomainLookupByUUID", "uuid", "Invalid UUID")
        h = raw.hex()
        return self._by_uuid(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")

    def _by_uuid(self, uuid: str) -> virDomain:
        try:
            return virDomain(self, self._xvirt.lookup_by_uuid(uuid))
        except NoDomainError:
            raise not_found(self._backend, "uuid", uuid, lookup=True) from None

    # -- save images ------------------------------------------------------------------------

    @api("virDomainRestore")
    def restore(self, frm: str) -> int:
        return self._restore(frm, "virDomainRestore")

    @api("virDomainRestoreFlags")
    def restoreFlags(self, frm: str, dxml: str | None = None, flags: int = 0) -> int:
        self._flags(flags, 0, "virDomainRestoreFlags")
        if dxml is not None:
            raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                        "virDomainRestoreFlags with an XML override (xvirt images keep "
                        "their configuration)")
        return self._restore(frm, "virDomainRestoreFlags")

    def _restore(self, frm: object, func: str) -> int:
        xconn = self._open(func)
        if xconn.readonly:
            raise error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                        f"read only access prevents {func}")
        xconn.restore(image_name(frm, xconn.image_dir, func, "from"))
        return 0

    # -- bulk statistics ----------------------------------------------------------------------

    def _groups(self, stats: object, flags: int, func: str) -> int:
        if not isinstance(stats, int):
            raise TypeError(f"an integer is required for stats, not {type(stats).__name__}")
        extra = stats & ~SUPPORTED_STATS
        if extra and flags & c.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS:
            raise error(c.VIR_ERR_ARGUMENT_UNSUPPORTED, self._backend.error_domain,
                        f"Stats types bits 0x{extra:x} are not supported by this daemon")
        return stats & SUPPORTED_STATS if stats else SUPPORTED_STATS

    @api("virConnectGetAllDomainStats")
    def getAllDomainStats(self, stats: int = 0, flags: int = 0) -> list[tuple[virDomain,
                                                                           dict[str, Any]]]:
        """One record per live domain, all from ONE ``sample()``."""
        flags = self._flags(flags, STATS_FLAGS, "virConnectGetAllDomainStats")
        groups = self._groups(stats, flags, "virConnectGetAllDomainStats")
        persistent = not self._backend.xen
        out = []
        for s in self._xvirt.sample():
            state = STATES[s.info.state]
            if keep(flags & STATS_FILTERS, Candidate(active=True, persistent=persistent,
                                                     state=state)):
                dom = virDomain(self, Domain(self._xvirt, s.identity.uuid), name=s.identity.name)
                out.append((dom, stats_record(groups, state, s.info)))
        return out

    @api("virDomainListGetStats")
    def domainListGetStats(self, doms: Sequence[virDomain], stats: int = 0,
                           flags: int = 0) -> list[tuple[virDomain, dict[str, Any]]]:
        """Records for ``doms`` still alive, in their order, from ONE ``sample()``."""
        allowed = STATS_FLAGS & ~STATS_FILTERS
        flags = self._flags(flags, allowed, "virDomainListGetStats")
        groups = self._groups(stats, flags, "virDomainListGetStats")
        for d in doms:
            if not isinstance(d, virDomain):
                raise arg_error("virDomainListGetStats", "doms",
                                "domain list contains non-domain elements")
            if d._conn is not self:
                raise arg_error("virDomainListGetStats", "doms",
                                "domains from different connections are not allowed")
        by_uuid = {s.identity.uuid: s for s in self._xvirt.sample()}
        out = []
        for d in doms:
            s = by_uuid.get(d._uuid or "")
            if s is not None:  # gone (or inactive): skipped, as libvirt skips missing ones
                out.append((d, stats_record(groups, STATES[s.info.state], s.info)))
        return out

    # -- events -------------------------------------------------------------------------------

    def _subscribe(self, entry: Callback, func: str, *, legacy: bool = False) -> int:
        xconn = self._open(func)
        if not LOOP.registered:  # libvirt refuses too: nothing would ever deliver them
            raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_NONE,
                        "could not initialize domain event timer")
        stream = functools.partial(xconn.events, timeout=Pump.POLL_S)
        if legacy:
            self._callbacks.add_legacy(entry, stream)
            return 0
        return self._callbacks.add(entry, stream)

    @api("virConnectDomainEventRegisterAny")
    def domainEventRegisterAny(self, dom: virDomain | None, eventID: int,
                               cb: Callable[..., object], opaque: Any) -> int:
        """Lifecycle events only: ``cb(conn, dom, event, detail, opaque)``, called from
        inside virEventRunDefaultImpl()."""
        func = "virConnectDomainEventRegisterAny"
        if not isinstance(eventID, int):
            raise TypeError(f"an integer is required for eventID, not {type(eventID).__name__}")
        if not 0 <= eventID < _EVENT_IDS:
            raise arg_error(func, "eventID",
                            f"eventID in {func} must be less than {_EVENT_IDS}")
        if eventID != c.VIR_DOMAIN_EVENT_ID_LIFECYCLE:
            raise error(c.VIR_ERR_NO_SUPPORT, self._backend.error_domain,
                        f"{func} for event ID {eventID} (xvirt delivers lifecycle events only)")
        if dom is not None and not isinstance(dom, virDomain):
            raise TypeError("dom must be a virDomain or None")
        uuid = None if dom is None else dom._uuid_or_fail(func)
        return self._subscribe(Callback(cb, opaque, uuid), func)

    @api("virConnectDomainEventDeregisterAny")
    def domainEventDeregisterAny(self, callbackID: int) -> None:
        func = "virConnectDomainEventDeregisterAny"
        self._open(func)
        if not self._callbacks.remove(callbackID):
            raise arg_error(func, "callbackID", f"callback ID {callbackID} not registered")

    @api("virConnectDomainEventRegister")
    def domainEventRegister(self, cb: Callable[..., object], opaque: Any) -> None:
        """The old API: ``cb(conn, dom, event, detail, opaque)`` for every lifecycle event."""
        known = self._callbacks.legacy(cb)
        if known is not None:
            known.opaque = opaque
            return
        self._subscribe(Callback(cb, opaque, None), "virConnectDomainEventRegister",
                        legacy=True)

    @api("virConnectDomainEventDeregister")
    def domainEventDeregister(self, cb: Callable[..., object]) -> None:
        self._callbacks.remove_legacy(cb)

    def _deliver(self, event: DomainEvent, wanted: list[Callback]) -> None:
        """On the loop's thread: one virDomain, every callback that wants the event."""
        kind, detail = LIFECYCLE[event.kind]
        dom = virDomain(self, Domain(self._xvirt, event.uuid), name=event.name)
        for entry in wanted:  # one failing callback does not starve the others
            guarded(functools.partial(entry.cb, self, dom, kind, detail, entry.opaque))
