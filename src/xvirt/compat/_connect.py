"""virConnect: one xvirt Connection behind libvirt-python's connection object.

Every call maps onto the public xvirt API with the same cost: the 2006 loop
(listDomainsID, then lookupByID and info per ID) makes exactly the plane
calls the same loop makes natively. ``_xvirt`` is the xvirt connection.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from xvirt.compat import _constants as c
from xvirt.compat import _uuid
from xvirt.compat._callbacks import Callback, Callbacks, EventSource
from xvirt.compat._domain import STATES, check_flags, virDomain
from xvirt.compat._errors import arg_error, error, libvirtError
from xvirt.compat._events import EVENT_IDS, LIFECYCLE, LOOP, Pump, event_args, guarded
from xvirt.compat._listing import (
    LIST_FLAGS,
    STATE_BITS,
    STATS_FILTERS,
    STATS_FLAGS,
    Candidate,
    keep,
    restricts_persistence,
)
from xvirt.compat._paths import image_name
from xvirt.compat._reasons import Reasons, reason_for
from xvirt.compat._stats import SUPPORTED_STATS, groups_of, stats_record
from xvirt.compat._translate import api, backend_for, not_found, translate
from xvirt.compat._unsupported import unsupported
from xvirt.compat._xml import DefinedXml, capabilities_xml, parse_domain_xml
from xvirt.connection import Connection, Domain
from xvirt.errors import InvalidArgumentError, NoDomainError, OperationFailedError, XvirtError
from xvirt.model import DomainEvent, DomainState, EventKind
from xvirt.stats import DomainStats, StatGroup

__all__ = ["LIB_VERSION", "virConnect"]

#: The libvirt version whose Python API the face follows (virGetVersion's encoding).
LIB_VERSION = 9_000_000
_INT_MAX = 2**31 - 1
_UINT_MAX = 2**32 - 1
#: VIR_NODE_MEMORY_STATS_ALL_CELLS and VIR_NODE_CPU_STATS_ALL_CPUS: the whole node.
_ALL = -1
#: What libvirt's Xen driver takes in virDomainCreateXML: PAUSED and VALIDATE (xvirt's
#: hosts read the XML strictly whatever the flags).
_CREATE_FLAGS = c.VIR_DOMAIN_START_PAUSED | c.VIR_DOMAIN_START_VALIDATE
_DEFINED_REMEMBERED = 4096  # definitions remembered to tell DEFINED_UPDATED from _ADDED


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
        #: Why domains are in their states, on xvirt's own hosts, whose event log is the
        #: host's own record (_reasons.py). Over libvirt the face's subclass asks libvirt
        #: (_passthrough.py), and this class's answer would be UNKNOWN.
        self._reasons = None if self._backend.libvirt else Reasons(xconn)
        # UUIDs whose definition this connection knows to exist: a DEFINED event for one
        # replaced it (libvirt's DEFINED_UPDATED), for any other it added one.
        self._defined_lock = threading.Lock()
        self._defined: OrderedDict[str, None] = OrderedDict()

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

    def _watch(self) -> None:
        """Before an action: follow the host's events, so the reasons state() gives
        include the change the action makes (not needed where libvirt says them)."""
        if self._reasons is not None:
            self._reasons.watch()

    def _reason(self, uuid: str, state: DomainState) -> int:
        if self._reasons is None:
            return reason_for(state, None)
        return self._reasons.reason(uuid, state)

    def _persistent(self, dom: Domain) -> bool | None:
        """Whether ``dom`` has a definition (one control request); None once gone."""
        try:
            return dom.persistent
        except NoDomainError:
            return None

    def _remember_defined(self, uuid: str, defined: bool) -> bool:
        """Record whether ``uuid`` has a definition; True if it had one already."""
        with self._defined_lock:
            had = uuid in self._defined
            if defined:
                self._defined[uuid] = None
                self._defined.move_to_end(uuid)
                while len(self._defined) > _DEFINED_REMEMBERED:
                    self._defined.popitem(last=False)
            else:
                self._defined.pop(uuid, None)
            return had

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

    @api("virConnectGetCapabilities")
    def getCapabilities(self) -> str:
        """The host's capabilities XML, as libvirt's Xen driver writes it: the host's
        CPU and NUMA topology from its node facts, a guest per OS type (``xen``,
        ``hvm``) and architecture Xen's ``xen_caps`` offers. One control request."""
        return capabilities_xml(self._open("virConnectGetCapabilities").capabilities())

    @api("virNodeGetMemoryStats")
    def getMemoryStats(self, cellNum: int, flags: int = 0) -> dict[str, int]:
        """``{total, free, buffers, cached}`` in KiB, of NUMA cell ``cellNum`` or of the
        whole node (VIR_NODE_MEMORY_STATS_ALL_CELLS), in libvirt's order."""
        func = "virNodeGetMemoryStats"
        cell = self._node_index(cellNum, flags, func, "cellNum")
        mem = self._open(func).node_memory_stats(cell)
        return {"total": mem.total_kib, "free": mem.free_kib, "buffers": mem.buffers_kib,
                "cached": mem.cached_kib}

    @api("virNodeGetCPUStats")
    def getCPUStats(self, cpuNum: int, flags: int = 0) -> dict[str, int]:
        """``{kernel, user, idle, iowait}`` in ns since the host booted, of CPU
        ``cpuNum`` or of all of them summed (VIR_NODE_CPU_STATS_ALL_CPUS), in libvirt's
        order (Linux's)."""
        func = "virNodeGetCPUStats"
        cpu = self._node_index(cpuNum, flags, func, "cpuNum")
        stats = self._open(func).node_cpu_stats(cpu)
        return {"kernel": stats.kernel_ns, "user": stats.user_ns, "idle": stats.idle_ns,
                "iowait": stats.iowait_ns}

    def _node_index(self, value: object, flags: object, func: str, param: str) -> int | None:
        """A cell's or a CPU's number as the binding and libvirt check it: an int, -1
        (every one: None) or one >= 0; no flags."""
        if not isinstance(value, int):
            raise TypeError(f"an integer is required for {param}, not {type(value).__name__}")
        self._flags(flags, 0, func)
        if value < 0 and value != _ALL:
            raise arg_error(func, param,
                            f"{param} in {func} only accepts -1 as a negative value")
        return None if value == _ALL else value

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
        """At interpreter exit (a finalizer of the script's that closes), only the xvirt
        connection is closed, which waits on no lock: the callbacks' lock may be held
        for good by the event loop's thread, which the exit stopped, and the end of the
        process ends the rest."""
        if sys.is_finalizing():
            self._xvirt.close(wait=False)
            return 0
        self._callbacks.clear()
        self._xvirt.close()
        return 0

    def __enter__(self) -> virConnect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        """A connection the script dropped unclosed: its xvirt connection is closed, which
        never waits on a lock another thread may hold (scripts hung here at exit, issue
        18; see xvirt/drivers/closing.py)."""
        xconn = self.__dict__.get("_xvirt")
        if xconn is not None and not xconn.closed:
            with contextlib.suppress(Exception):  # never raise from a finalizer
                xconn.close(wait=False)

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

    # -- defining -----------------------------------------------------------------------

    @api("virDomainDefineXML")
    def defineXML(self, xml: str) -> virDomain:
        """Define (or redefine) a domain from its XML, without starting it. Over a
        ``libvirt:`` URI libvirt itself reads the XML; on xvirt's hosts the face reads
        name, UUID, memory, currentMemory, vCPUs, OS type, disks and interfaces, as
        libvirt reads them, and refuses with libvirt's codes."""
        return self._define(xml, None, "virDomainDefineXML")

    @api("virDomainDefineXMLFlags")
    def defineXMLFlags(self, xml: str, flags: int = 0) -> virDomain:
        """defineXML with flags: VIR_DOMAIN_DEFINE_VALIDATE, which xvirt's hosts always
        do (the face reads the XML strictly); libvirt's own over a ``libvirt:`` URI."""
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        return self._define(xml, flags, "virDomainDefineXMLFlags")

    def _define(self, xml: object, flags: int | None, func: str) -> virDomain:
        if xml is not None and not isinstance(xml, str):
            raise TypeError(f"{func}() argument 2 must be str or None, not {type(xml).__name__}")
        xconn = self._open(func)
        if xconn.readonly:  # libvirt checks it before the argument
            raise error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                        f"read only access prevents {func}")
        text = _text_arg(xml, func, "xml")
        self._flags(flags or 0, c.VIR_DOMAIN_DEFINE_VALIDATE, func)
        parsed = parse_domain_xml(text, self._hypervisor_type())
        if parsed.uuid is not None:
            self._check_redefinition(parsed)
        self._watch()
        try:
            dom = xconn.define(parsed.name, parsed.config, uuid=parsed.uuid,
                               max_vcpus=parsed.max_vcpus, metadata=parsed.metadata)
        except InvalidArgumentError as exc:  # what this host cannot run
            raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN, exc.message) from None
        except OperationFailedError:
            holder = self._holder(parsed.name)
            if holder is None or holder == parsed.uuid:
                raise
            raise error(c.VIR_ERR_OPERATION_FAILED, c.VIR_FROM_DOMAIN,
                        f"domain '{parsed.name}' already exists with uuid {holder}") from None
        return virDomain(self, dom, name=parsed.name)

    @api("virDomainCreateXML")
    def createXML(self, xmlDesc: str, flags: int = 0) -> virDomain:
        """Start a transient domain from its XML at once (VIR_DOMAIN_START_PAUSED: paused).
        The XML is read as ``defineXML`` reads it (name, UUID, memory, vCPUs, OS type,
        disks, interfaces, title, description, metadata); ``XMLDesc`` gives it back."""
        return self._create(xmlDesc, flags, "virDomainCreateXML")

    @api("virDomainCreateXML")
    def createLinux(self, xmlDesc: str, flags: int = 0) -> virDomain:
        """libvirt's old name of ``createXML`` (its C function calls createXML)."""
        return self._create(xmlDesc, flags, "virDomainCreateXML")

    def _create(self, xml: object, flags: object, func: str) -> virDomain:
        if xml is not None and not isinstance(xml, str):
            raise TypeError(f"{func}() argument 2 must be str or None, not {type(xml).__name__}")
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        xconn = self._open(func)
        text = _text_arg(xml, func, "xmlDesc")  # libvirt checks it before read-only access
        if xconn.readonly:
            raise error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                        f"read only access prevents {func}")
        self._flags(flags, _CREATE_FLAGS, func)
        parsed = parse_domain_xml(text, self._hypervisor_type())
        self._check_free(parsed)
        self._watch()
        try:
            dom = xconn.create(parsed.name, parsed.config, uuid=parsed.uuid,
                               max_vcpus=parsed.max_vcpus, metadata=parsed.metadata,
                               paused=bool(flags & c.VIR_DOMAIN_START_PAUSED))
        except InvalidArgumentError as exc:  # what this host cannot run
            raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN, exc.message) from None
        except OperationFailedError:
            self._check_free(parsed)  # taken meanwhile: libvirt's words for it
            raise
        return virDomain(self, dom, name=parsed.name)

    def _check_free(self, parsed: DefinedXml) -> None:
        """libvirt's refusals of a new domain whose name or UUID another holds: a name
        held by another UUID, a UUID held under another name, a domain already running."""
        holder = self._holder(parsed.name)
        if holder is not None and holder != parsed.uuid:
            raise error(c.VIR_ERR_OPERATION_FAILED, c.VIR_FROM_DOMAIN,
                        f"domain '{parsed.name}' already exists with uuid {holder}")
        if parsed.uuid is None:
            return
        try:
            ident = self._xvirt.lookup_by_uuid(parsed.uuid).identity()
        except NoDomainError:
            return
        if ident.name != parsed.name:
            raise error(c.VIR_ERR_OPERATION_FAILED, c.VIR_FROM_DOMAIN,
                        f"domain '{ident.name}' is already defined with uuid {parsed.uuid}")
        if ident.id >= 0:
            raise error(c.VIR_ERR_OPERATION_INVALID, c.VIR_FROM_DOMAIN,
                        f"domain '{ident.name}' is already active")

    def _check_redefinition(self, parsed: DefinedXml) -> None:
        """libvirt keeps a known UUID's name: defining it under another is refused (an
        xvirt host would rename a shut-off domain)."""
        assert parsed.uuid is not None
        try:
            name = self._xvirt.lookup_by_uuid(parsed.uuid).name
        except NoDomainError:
            return
        if name != parsed.name:
            raise error(c.VIR_ERR_OPERATION_FAILED, c.VIR_FROM_DOMAIN,
                        f"domain '{name}' is already defined with uuid {parsed.uuid}")

    def _holder(self, name: str) -> str | None:
        """The UUID of the domain named ``name``, if any (after a refused define)."""
        try:
            return self._xvirt.lookup_by_name(name).uuid
        except XvirtError:
            return None

    @api("virConnectListAllDomains")
    def listAllDomains(self, flags: int = 0) -> list[virDomain]:
        """Running domains (one data-plane snapshot, or one sample when a state filter
        needs their states), then the shut-off ones (one control request), filtered as
        libvirt filters: each group of flags restricts only when one of its bits is set.
        A persistence filter asks each running domain whether it has a definition (one
        control request each: the data plane does not know)."""
        flags = self._flags(flags, LIST_FLAGS, "virConnectListAllDomains")
        found: list[virDomain] = []
        running: set[str] = set()
        if any(keep(flags & ~STATE_BITS, Candidate(active=True, persistent=p, state=None))
               for p in (True, False)):
            for dom, name, state in self._running(bool(flags & STATE_BITS)):
                if self._keeps(flags, dom, state):
                    found.append(virDomain(self, dom, name=name))
                    running.add(dom.uuid)
        if keep(flags, Candidate(active=False, persistent=True, state=c.VIR_DOMAIN_SHUTOFF)):
            found += [virDomain(self, Domain(self._xvirt, d.uuid), name=d.name)
                      for d in self._xvirt.list_defined() if d.uuid not in running]
        return found

    def _running(self, states: bool) -> Iterable[tuple[Domain, str | None, int | None]]:
        """Every running domain with its libvirt state (from one sample) if ``states``,
        else from one snapshot, without."""
        if states:
            return [(Domain(self._xvirt, s.identity.uuid), s.identity.name,
                     STATES[s.info.state]) for s in self._xvirt.sample()]
        return [(d, None, None) for d in self._xvirt.list_domains()]

    def _keeps(self, flags: int, dom: Domain, state: int | None) -> bool:
        """Whether the running ``dom`` passes ``flags`` (its persistence asked only when
        a filter needs it; one that went meanwhile does not pass)."""
        persistent: bool | None = True
        if restricts_persistence(flags):
            persistent = self._persistent(dom)
        return persistent is not None and keep(
            flags, Candidate(active=True, persistent=persistent, state=state))

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
        image = image_name(frm, xconn.image_dir, func, "from")
        self._watch()
        xconn.restore(image)
        return 0

    # -- bulk statistics ----------------------------------------------------------------------

    @api("virConnectGetAllDomainStats")
    def getAllDomainStats(self, stats: int = 0, flags: int = 0) -> list[tuple[virDomain,
                                                                           dict[str, Any]]]:
        """A record per live domain (in ID order) of the groups ``stats`` asks (0: every
        group a Xen host has), all from ONE data call (``Connection.domain_stats``). A
        domain that did not answer a group in time has none of its keys, as libvirt's
        NOWAIT leaves them out; the filters as listAllDomains' (a state filter passes no
        domain whose state did not come; a persistence filter asks each domain)."""
        func = "virConnectGetAllDomainStats"
        flags = self._flags(flags, STATS_FLAGS, func)
        bits = self._groups(stats, flags, func)
        filters = flags & STATS_FILTERS
        found = self._open(func).domain_stats(self._asked(bits, filters))
        reasons = self._stats_reasons(bits)
        out = []
        for s in found:
            state = None if s.state is None else STATES[s.state]
            dom = Domain(self._xvirt, s.uuid)
            if filters & STATE_BITS and state is None:
                continue  # its state did not come: no state filter can keep it
            if filters and not self._keeps(filters, dom, state):
                continue
            out.append((virDomain(self, dom, name=s.name), self._record(bits, s, reasons)))
        return out

    def _groups(self, stats: object, flags: int, func: str) -> int:
        """The stats bits served: the groups a Xen host has among those asked (0: all of
        them); with ENFORCE_STATS, asking for another is refused, as libvirt refuses it."""
        if not isinstance(stats, int):
            raise TypeError(f"an integer is required for stats, not {type(stats).__name__}")
        stats &= _UINT_MAX  # the binding's unsigned int
        extra = stats & ~SUPPORTED_STATS
        if extra and flags & c.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS:
            raise error(c.VIR_ERR_ARGUMENT_UNSUPPORTED, self._backend.error_domain,
                        f"Stats types bits 0x{extra:x} are not supported by this daemon")
        return stats & SUPPORTED_STATS if stats else SUPPORTED_STATS

    @staticmethod
    def _asked(bits: int, filters: int) -> frozenset[StatGroup]:
        """The groups to ask the host for: those ``bits`` name, and the state when a
        filter needs it."""
        groups = groups_of(bits)
        return groups | {StatGroup.STATE} if filters & STATE_BITS else groups

    def _record(self, bits: int, found: DomainStats,
                reasons: Callable[[str, DomainState], int]) -> dict[str, Any]:
        state = None if found.state is None else STATES[found.state]
        reason = 0 if found.state is None else reasons(found.uuid, found.state)
        return stats_record(bits, found, state, reason)

    def _stats_reasons(self, bits: int) -> Callable[[str, DomainState], int]:
        """State reasons for a bulk answer, asked once: libvirt's over a ``libvirt:``
        URI (one call; a domain it does not list reads UNKNOWN), else this connection's
        (_reasons.py). Nothing is asked when the state group is not."""
        if not bits & c.VIR_DOMAIN_STATS_STATE:
            return lambda _uuid, _state: 0
        seen = {} if self._reasons is None else self._reasons.reasons()
        return lambda uuid, state: reason_for(state, seen.get(uuid))

    @api("virDomainListGetStats")
    def domainListGetStats(self, doms: Sequence[virDomain], stats: int = 0,
                           flags: int = 0) -> list[tuple[virDomain, dict[str, Any]]]:
        """Records for ``doms`` still running, in their order, from ONE data call; a
        domain gone (or shut off) is skipped, as libvirt skips missing ones."""
        func = "virDomainListGetStats"
        if isinstance(doms, Sequence) and not doms:  # libvirt's first check
            raise error(c.VIR_ERR_INVALID_ARG, c.VIR_FROM_DOMAIN,
                        f"doms array in {func} must contain at least one domain")
        allowed = STATS_FLAGS & ~STATS_FILTERS
        flags = self._flags(flags, allowed, func)
        bits = self._groups(stats, flags, func)
        for d in doms:
            if not isinstance(d, virDomain):
                raise arg_error(func, "doms", "domain list contains non-domain elements")
            if d._conn is not self:
                raise arg_error(func, "doms",
                                "domains from different connections are not allowed")
        found = self._open(func).domain_stats(groups_of(bits), [d._dom for d in doms])
        by_uuid = {s.uuid: s for s in found}
        reasons = self._stats_reasons(bits)
        return [(d, self._record(bits, by_uuid[d._uuid], reasons))
                for d in doms if d._uuid in by_uuid]

    # -- events -------------------------------------------------------------------------------

    def _subscribe(self, entry: Callback, func: str, *, legacy: bool = False) -> int:
        self._open(func)
        if not LOOP.registered:  # libvirt refuses too: nothing would ever deliver them
            raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_NONE,
                        "could not initialize domain event timer")
        if legacy:
            self._callbacks.add_legacy(entry, self._event_source)
            return 0
        return self._callbacks.add(entry, self._event_source)

    def _event_source(self, deliver: Callable[[Any], None]) -> EventSource:
        """libvirt's own events over a ``libvirt:`` URI (exact details); elsewhere a
        pump on xvirt's event stream, with the shut-off domains noted as defined first
        (one control request), so that redefining one is DEFINED_UPDATED."""
        for d in self._xvirt.list_defined():
            self._remember_defined(d.uuid, True)
        return Pump(self._xvirt.events(timeout=Pump.POLL_S, kinds=EventKind), deliver, LOOP)

    @api("virConnectDomainEventRegisterAny")
    def domainEventRegisterAny(self, dom: virDomain | None, eventID: int,
                               cb: Callable[..., object], opaque: Any) -> int:
        """Any domain event ID (0 .. VIR_DOMAIN_EVENT_ID_LAST - 1): ``cb(conn, dom, ...,
        opaque)`` with that ID's arguments, called from inside virEventRunDefaultImpl().
        xvirt's hosts produce lifecycle, REBOOT and METADATA_CHANGE events; a callback
        for another ID is registered and never called, as on a libvirt driver that has
        no such event."""
        func = "virConnectDomainEventRegisterAny"
        if not isinstance(eventID, int):
            raise TypeError(f"an integer is required for eventID, not {type(eventID).__name__}")
        if not 0 <= eventID < EVENT_IDS:
            raise arg_error(func, "eventID",
                            f"eventID in {func} must be less than {EVENT_IDS}")
        if dom is not None and not isinstance(dom, virDomain):
            raise TypeError("dom must be a virDomain or None")
        uuid = None if dom is None else dom._uuid
        return self._subscribe(Callback(cb, opaque, uuid, eventID), func)

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
        """On the loop's thread: one virDomain, every callback that wants the event,
        each with the arguments of the event ID it was registered for. A reboot is
        what libvirt's Xen driver (libxl) reports for one: the domain stopped
        (SHUTDOWN) and started again (BOOTED)."""
        lifecycles: list[tuple[object, ...]]
        if event.kind is EventKind.REBOOTED:
            lifecycles = [(c.VIR_DOMAIN_EVENT_STOPPED, c.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN),
                          (c.VIR_DOMAIN_EVENT_STARTED, c.VIR_DOMAIN_EVENT_STARTED_BOOTED)]
        else:
            one = LIFECYCLE.get(event.kind)
            if event.kind is EventKind.DEFINED and self._remember_defined(event.uuid, True):
                # its definition was replaced
                one = (c.VIR_DOMAIN_EVENT_DEFINED, c.VIR_DOMAIN_EVENT_DEFINED_UPDATED)
            elif event.kind is EventKind.UNDEFINED:
                self._remember_defined(event.uuid, False)
            lifecycles = [] if one is None else [one]
        calls: list[tuple[Callback, tuple[object, ...]]] = []
        for entry in wanted:
            if entry.event_id == c.VIR_DOMAIN_EVENT_ID_LIFECYCLE:
                calls += [(entry, args) for args in lifecycles]
                continue
            args = event_args(entry.event_id, event)
            if args is not None:
                calls.append((entry, args))
        if not calls:
            return
        dom = virDomain(self, Domain(self._xvirt, event.uuid), name=event.name)
        for entry, args in calls:  # one failing callback does not starve the others
            guarded(functools.partial(entry.cb, self, dom, *args, entry.opaque))



