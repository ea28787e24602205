"""virDomain: one domain, by UUID, over xvirt's Domain handle (C3: it follows the
domain across ID changes, and through being shut off and started again).

``name()`` and ``ID()`` are current; a domain that is defined and shut off has
ID -1 and ``isActive()`` 0, and answers ``info()``, ``state()``, ``XMLDesc()`` from
its definition. Once the domain is gone ``name()`` still answers with the last
name known and ``ID()`` is -1; the other calls say VIR_ERR_NO_DOMAIN, as libvirt.

Calls that need a running domain refuse a shut-off one as libvirt's drivers do
(``virDomainObjCheckActive``: VIR_ERR_OPERATION_INVALID, "domain is not running").
Over a ``libvirt:`` URI the face's subclass passes every call it does not accelerate
to libvirt itself (_passthrough.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from xvirt.compat import _constants as c
from xvirt.compat._errors import arg_error, error, libvirtError, raw_error
from xvirt.compat._paths import image_name
from xvirt.compat._stats import (
    block_info,
    block_params,
    block_tuple,
    cpu_total,
    find_disk,
    find_nic,
    interface_tuple,
    memory_stats,
    per_cpu,
)
from xvirt.compat._translate import api, translate
from xvirt.compat._unsupported import unsupported
from xvirt.compat._xml import domain_xml, metadata_element
from xvirt.connection import Domain
from xvirt.errors import ConnectionClosedError, NoDomainError, OperationFailedError, XvirtError
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF
from xvirt.model import Affect, DomainInfo, MetadataKind
from xvirt.stats import BlockStats, DomainStats, StatGroup

if TYPE_CHECKING:
    from xvirt.compat._connect import virConnect

__all__ = ["STATES", "check_flags", "virDomain"]

#: Xen's state flags as libvirt's virDomainState (xvirt.libvirt_api.states).
STATES = LIBVIRT_STATE_OF

_XML_FLAGS = (c.VIR_DOMAIN_XML_SECURE | c.VIR_DOMAIN_XML_INACTIVE
              | c.VIR_DOMAIN_XML_UPDATE_CPU | c.VIR_DOMAIN_XML_MIGRATABLE)
_SHUTDOWN_FLAGS = (c.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN | c.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
                   | c.VIR_DOMAIN_SHUTDOWN_INITCTL | c.VIR_DOMAIN_SHUTDOWN_SIGNAL
                   | c.VIR_DOMAIN_SHUTDOWN_PARAVIRT)
_REBOOT_FLAGS = (c.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN | c.VIR_DOMAIN_REBOOT_GUEST_AGENT
                 | c.VIR_DOMAIN_REBOOT_INITCTL | c.VIR_DOMAIN_REBOOT_SIGNAL
                 | c.VIR_DOMAIN_REBOOT_PARAVIRT)
#: What libvirt's Xen driver (libxl) takes in virDomainUndefineFlags: there is never a
#: managed save image or NVRAM to remove or keep on xvirt's hosts, so they change nothing.
_UNDEFINE_FLAGS = (c.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | c.VIR_DOMAIN_UNDEFINE_NVRAM
                   | c.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
_AFFECT = c.VIR_DOMAIN_AFFECT_LIVE | c.VIR_DOMAIN_AFFECT_CONFIG
#: What libvirt's Xen driver takes in virDomain{Get,Set}VcpusFlags.
_VCPU_FLAGS = _AFFECT | c.VIR_DOMAIN_VCPU_MAXIMUM
#: The scheduler parameters libvirt-python converts, and how many each scheduler has.
_SCHED_PARAMS = ("weight", "cap")
_SCHED_NPARAMS = {"credit": 2, "credit2": 1, "sedf": 5, "rtds": 2, "arinc653": 0}
_UINT_MAX = 2**32 - 1
_NO_METADATA = "metadata not found: Requested metadata element is not present"
#: An XML name without a colon, as libxml2's xmlValidateNCName checks a namespace prefix.
_NCNAME = re.compile(r"[A-Za-z_][\w.-]*")

T = TypeVar("T")


def check_flags(flags: object, allowed: int, func: str, domain: int) -> int:
    """``flags`` as libvirt checks them: an int (else TypeError), no unknown bit."""
    if not isinstance(flags, int):
        raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
    if flags < 0 or flags & ~allowed:
        raise arg_error(func, "flags", f"unsupported flags (0x{flags & ~allowed:x}) in "
                        f"function {func}", domain=domain)
    return flags


def info_list(info: DomainInfo) -> list[int]:
    """libvirt's 5-list: state, maxMem KiB, memory KiB, nrVirtCpu, cpuTime ns."""
    return [STATES[info.state], info.max_memory_kib, info.memory_kib, info.vcpus,
            info.cpu_time_ns]


class virDomain:
    """libvirt-python's domain object, served by xvirt."""

    def __new__(cls, conn: virConnect, _obj: Any, *, name: str | None = None) -> virDomain:
        """``virDomain(conn, _obj=pointer)``, as the companion modules (libvirt_qemu) make
        one from libvirt's pointer: the face's domain for it, on a ``libvirt:`` URI."""
        if isinstance(_obj, Domain):
            # the connection's own kind of domain (the pass-through one on libvirt:)
            kind: type[virDomain] = getattr(conn, "_domain_class", cls)
            return super().__new__(kind if issubclass(kind, cls) else cls)
        adopt = getattr(conn, "_adopt", None)
        if adopt is None:
            raise TypeError("virDomain() takes a domain of the face's own connection")
        adopted: virDomain = adopt(_obj)
        return adopted

    def __init__(self, conn: virConnect, _obj: Domain, *, name: str | None = None) -> None:
        if not isinstance(_obj, Domain):
            return  # made by __new__ from libvirt's pointer
        self._conn = conn
        self._dom = _obj
        self._uuid = _obj.uuid
        self._name = name

    # -- plumbing ---------------------------------------------------------------------

    def _translate(self, exc: XvirtError, func: str) -> libvirtError:
        return translate(exc, self._conn._backend, func, uuid=self._uuid, name=self._name)

    def _flags(self, flags: object, allowed: int, func: str) -> int:
        return check_flags(flags, allowed, func, self._conn._backend.error_domain)

    def _writable(self, func: str) -> Domain:
        """Read-only first, as libvirt checks it before anything else."""
        if self._conn._xvirt.readonly:
            raise error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                        f"read only access prevents {func}")
        return self._dom

    def _not_running(self) -> libvirtError:
        """virDomainObjCheckActive's refusal, which every libvirt driver gives for a call
        that needs a running domain."""
        return error(c.VIR_ERR_OPERATION_INVALID, c.VIR_FROM_DOMAIN, "domain is not running")

    def _act(self, func: str, act: Callable[[Domain], object]) -> int:
        """An action on a running domain: through xvirt, refused (as libvirt refuses it)
        when the domain is defined and shut off, gone (NO_DOMAIN) when it is not."""
        dom = self._writable(func)
        self._conn._watch()
        try:
            act(dom)
        except NoDomainError:
            # Not live when the host was asked. Defined after all (or again)? Then it was
            # shut off at that instant. identity() raises NoDomainError when it is gone.
            self._name = dom.identity().name
            raise self._not_running() from None
        return 0

    def __getattr__(self, name: str) -> object:
        return unsupported("virDomain", name)

    # -- identity -------------------------------------------------------------------------

    @api("virDomainGetName")
    def name(self) -> str:
        try:
            self._name = self._dom.name
        except (NoDomainError, ConnectionClosedError):
            if self._name is None:
                raise
        return self._name

    @api("virDomainGetID")
    def ID(self) -> int:
        try:
            ident = self._dom.identity()
        except NoDomainError:
            return -1
        self._name = ident.name  # remembered for name() once the domain is gone
        return ident.id

    def UUID(self) -> bytes:
        return bytes.fromhex(self._uuid.replace("-", ""))

    def UUIDString(self) -> str:
        return self._uuid

    def connect(self) -> virConnect:
        return self._conn

    # -- state ------------------------------------------------------------------------------

    @api("virDomainGetInfo")
    def info(self) -> list[int]:
        return info_list(self._dom.info())

    @api("virDomainGetState")
    def state(self, flags: int = 0) -> list[int]:
        """``[state, reason]``: libvirt's own over a ``libvirt:`` URI; on xvirt's hosts
        the reason libvirt's drivers give for the last change this connection saw
        (see _reasons.py)."""
        self._flags(flags, 0, "virDomainGetState")
        state = self._dom.info().state
        return [STATES[state], self._conn._reason(self._uuid, state)]

    @api("virDomainIsActive")
    def isActive(self) -> int:
        """1 while the domain runs; 0 when it is defined and shut off; a domain that is
        gone (a transient one stopped or saved) is VIR_ERR_NO_DOMAIN, as libvirt."""
        ident = self._dom.identity()
        self._name = ident.name
        return 1 if ident.id >= 0 else 0

    @api("virDomainIsPersistent")
    def isPersistent(self) -> int:
        """Whether the domain has a definition that outlives it (one control request)."""
        return 1 if self._dom.persistent else 0

    @api("virDomainIsUpdated")
    def isUpdated(self) -> int:
        self._dom.identity()
        return 0

    @api("virDomainGetAutostart")
    def autostart(self) -> int:
        return 0

    @api("virDomainHasManagedSaveImage")
    def hasManagedSaveImage(self, flags: int = 0) -> int:
        self._flags(flags, 0, "virDomainHasManagedSaveImage")
        return 0

    @api("virDomainGetMaxMemory")
    def maxMemory(self) -> int:
        return self._dom.info().max_memory_kib

    @api("virDomainGetMaxVcpus")
    def maxVcpus(self) -> int:
        """The most vCPUs the running domain may bring online: libvirt refuses a
        shut-off domain (it asks the live configuration)."""
        return self._settings(lambda d: d.settings(
            Affect.LIVE).max_vcpus)

    def _settings(self, call: Callable[[Domain], T]) -> T:
        """``call`` on xvirt's handle; the host's refusal of a domain in the wrong state
        (not running, transient: OperationFailedError) as libvirt's domain checks word
        it (VIR_ERR_OPERATION_INVALID, VIR_FROM_DOMAIN)."""
        try:
            return call(self._dom)
        except OperationFailedError as exc:
            if "not running" in exc.message and self._dom.identity().id < 0:
                raise self._not_running() from None
            raise error(c.VIR_ERR_OPERATION_INVALID, c.VIR_FROM_DOMAIN, exc.message) from None

    # -- vCPUs ------------------------------------------------------------------------------

    @api("virDomainGetVcpus")
    def vcpus(self) -> tuple[list[tuple[int, int, int, int]], list[tuple[bool, ...]]]:
        """``([(number, state, cpuTime ns, cpu)], [cpumap])`` of the running domain's
        online vCPUs, as libvirt-python gives them (the cpumap one flag per host CPU):
        one control request; each time is the one ``Domain.stats()`` gives the vCPU at
        the same instant (``vcpu.<n>.time``)."""
        found = self._settings(Domain.vcpu_info)
        return ([(v.number, v.state.value, v.cpu_time_ns, v.cpu) for v in found],
                [v.affinity for v in found])

    @api("virDomainGetVcpusFlags")
    def vcpusFlags(self, flags: int = 0) -> int:
        """Online vCPUs, or (VIR_DOMAIN_VCPU_MAXIMUM) the most, of the running domain
        (AFFECT_LIVE) or its definition (AFFECT_CONFIG); AFFECT_CURRENT: whichever the
        domain has now."""
        func = "virDomainGetVcpusFlags"
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        self._exclusive(flags, func)
        self._flags(flags, _VCPU_FLAGS, func)
        settings = self._settings(lambda d: d.settings(_affect(flags)))
        return settings.max_vcpus if flags & c.VIR_DOMAIN_VCPU_MAXIMUM else settings.vcpus

    @api("virDomainSetVcpus")
    def setVcpus(self, nvcpus: int) -> int:
        """Bring ``nvcpus`` vCPUs online in the running domain (libvirt's Xen driver:
        the live domain only), up to its maximum."""
        return self._set_vcpus(nvcpus, c.VIR_DOMAIN_AFFECT_LIVE, "virDomainSetVcpus")

    @api("virDomainSetVcpusFlags")
    def setVcpusFlags(self, nvcpus: int, flags: int = 0) -> int:
        """Online vCPUs of the running domain, its definition or both; with
        VIR_DOMAIN_VCPU_MAXIMUM (and AFFECT_CONFIG) the definition's maximum."""
        return self._set_vcpus(nvcpus, flags, "virDomainSetVcpusFlags")

    def _set_vcpus(self, nvcpus: object, flags: object, func: str) -> int:
        for value, what in ((nvcpus, "nvcpus"), (flags, "flags")):
            if not isinstance(value, int):
                raise TypeError(f"an integer is required for {what}, not "
                                f"{type(value).__name__}")
        assert isinstance(nvcpus, int) and isinstance(flags, int)
        if nvcpus < 0 or nvcpus > _UINT_MAX:
            raise OverflowError("Python int too large to convert to C unsigned int")
        dom = self._writable(func)
        if flags & c.VIR_DOMAIN_VCPU_MAXIMUM and not flags & c.VIR_DOMAIN_AFFECT_CONFIG:
            raise arg_error(func, "flags", "Flag 'VIR_DOMAIN_AFFECT_CONFIG' is required by "
                            "flag 'VIR_DOMAIN_VCPU_MAXIMUM'")
        if nvcpus == 0:
            raise arg_error(func, "nvcpus", f"nvcpus in {func} must not be zero")
        self._flags(flags, _VCPU_FLAGS, func)
        self._settings(lambda d: dom.set_vcpus(
            nvcpus, affect=_affect(flags), maximum=bool(flags & c.VIR_DOMAIN_VCPU_MAXIMUM)))
        return 0

    def _exclusive(self, flags: int, func: str) -> None:
        if flags & _AFFECT == _AFFECT:
            raise arg_error(func, "flags", "Flags 'VIR_DOMAIN_AFFECT_LIVE' and "
                            "'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive")

    # -- statistics (_stats.py has libvirt's shapes) ---------------------------------------------

    def _stats(self, group: StatGroup, func: str) -> DomainStats:
        """``group`` of the running domain: one data call (``Domain.stats``). A domain
        shut off is refused as libvirt refuses it (not running), one gone is NO_DOMAIN;
        a group the domain did not answer within the call's deadline is a timeout, as
        libvirt's when a guest holds its job."""
        dom = self._dom
        try:
            found = dom.stats((group,))
        except NoDomainError:
            self._name = dom.identity().name  # NoDomainError (NO_DOMAIN) when it is gone
            raise self._not_running() from None
        self._name = found.name
        if group in found.missing:
            raise raw_error(c.VIR_ERR_OPERATION_TIMEOUT, self._conn._backend.error_domain,
                            f"Timed out during operation: {func}: domain '{found.name}' "
                            f"did not answer its {group.value} statistics")
        return found

    def _disk(self, path: str, func: str, missing: str) -> BlockStats:
        """The running domain's disk ``path`` names (see _stats.find_disk); ``missing``
        is libvirt's wording for a path no disk has (its ``%s`` the path)."""
        blocks = self._stats(StatGroup.BLOCK, func).blocks or ()
        disk = find_disk(blocks, path)
        if disk is None:
            raise error(c.VIR_ERR_INVALID_ARG, self._conn._backend.error_domain,
                        missing % path)
        return disk

    @api("virDomainBlockStats")
    def blockStats(self, path: str) -> tuple[int, int, int, int, int]:
        """``(rd_req, rd_bytes, wr_req, wr_bytes, errs)`` of the disk ``path`` names (its
        target, its source path, or "" for every disk summed)."""
        func = "virDomainBlockStats"
        return block_tuple(self._disk(_path_arg(path, func, "disk"), func,
                                      "invalid path: %s"))

    @api("virDomainBlockStatsFlags")
    def blockStatsFlags(self, path: str, flags: int = 0) -> dict[str, int]:
        """The figures the host reports of the disk ``path`` names, under libvirt's
        typed-parameter names (``rd_operations``, ``wr_bytes``, ``errs``...)."""
        func = "virDomainBlockStatsFlags"
        path = _path_arg(path, func, "disk")
        self._flags(_uint(flags), c.VIR_TYPED_PARAM_STRING_OKAY, func)
        return block_params(self._disk(path, func, "invalid path: %s"))

    @api("virDomainGetBlockInfo")
    def blockInfo(self, path: str, flags: int = 0) -> list[int]:
        """``[capacity, allocation, physical]`` of the disk ``path`` names; NO_SUPPORT
        where the host does not report its disks' sizes (as libvirt's Xen driver, which
        has no virDomainGetBlockInfo)."""
        func = "virDomainGetBlockInfo"
        path = _path_arg(path, func, "disk")
        self._flags(_uint(flags), 0, func)
        disk = self._disk(path, func, "invalid path %s not assigned to domain")
        sizes = block_info(disk)
        if sizes is None:
            raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                        f"{func} (the host does not report the size of disk '{disk.name}')")
        return sizes

    @api("virDomainInterfaceStats")
    def interfaceStats(self, path: str) -> tuple[int, int, int, int, int, int, int, int]:
        """``(rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs,
        tx_drop)`` of the NIC ``path`` names (its host-side device, ``vif3.0``, or its
        MAC), as the guest sees its traffic."""
        func = "virDomainInterfaceStats"
        device = _path_arg(path, func, "device")
        nic = find_nic(self._stats(StatGroup.NET, func).nets or (), device)
        if nic is None:
            raise error(c.VIR_ERR_INVALID_ARG, c.VIR_FROM_DOMAIN,
                        f"'{device}' is not a known interface")
        return interface_tuple(nic)

    @api("virDomainMemoryStats")
    def memoryStats(self) -> dict[str, int]:
        """``{'actual': KiB, ...}``: the balloon's size and the guest's figures its
        balloon driver reports (a Xen guest's: none)."""
        balloon = self._stats(StatGroup.BALLOON, "virDomainMemoryStats").balloon
        assert balloon is not None  # an answered group
        return memory_stats(balloon)

    @api("virDomainGetCPUStats")
    def getCPUStats(self, total: object, flags: int = 0) -> list[dict[str, int]]:
        """``total`` (any object, taken for its truth as the binding does): the domain's
        CPU time, ``[{'cpu_time', 'user_time', 'system_time'}]``, from one data call.
        Otherwise one ``{'cpu_time'}`` per host CPU: the time the domain's vCPUs spent
        on it (one control request, as ``vcpus()``)."""
        func = "virDomainGetCPUStats"
        whole = bool(total)
        self._flags(_uint(flags), c.VIR_TYPED_PARAM_STRING_OKAY, func)
        if whole:
            cpu = self._stats(StatGroup.CPU, func).cpu
            assert cpu is not None  # an answered group
            return cpu_total(cpu)
        found = self._settings(Domain.vcpu_info)
        cpus = len(found[0].affinity) if found else self._conn._xvirt.host_info().cpus
        return per_cpu(found, cpus)

    # -- the credit scheduler -----------------------------------------------------------------

    @api("virDomainGetSchedulerType")
    def schedulerType(self) -> tuple[str, int]:
        """``(scheduler, its number of parameters)``: ``('credit', 2)`` on xvirt's hosts."""
        self._dom.identity()  # a domain that is gone is NO_DOMAIN, as libvirt says it
        name = self._conn._xvirt.capabilities().scheduler
        return name, _SCHED_NPARAMS.get(name, 0)

    @api("virDomainGetSchedulerParameters")
    def schedulerParameters(self) -> dict[str, int]:
        """The running domain's credit scheduler share: ``{'weight': W, 'cap': C}``."""
        return self._sched()

    @api("virDomainGetSchedulerParametersFlags")
    def schedulerParametersFlags(self, flags: int = 0) -> dict[str, int]:
        """:meth:`schedulerParameters`; libvirt's Xen driver takes no flags (only the
        binding's own VIR_TYPED_PARAM_STRING_OKAY, which it ignores: it has no strings)."""
        func = "virDomainGetSchedulerParametersFlags"
        self._flags(flags, c.VIR_TYPED_PARAM_STRING_OKAY, func)
        return self._sched()

    def _sched(self) -> dict[str, int]:
        params = self._settings(Domain.scheduler)
        return {"weight": params.weight, "cap": params.cap}

    @api("virDomainSetSchedulerParameters")
    def setSchedulerParameters(self, params: dict[str, int]) -> int:
        """Change the running domain's ``weight`` (1..65535) and ``cap`` (0..100 per
        vCPU of its maximum), as xend's ``domain_sched_credit_set``; a key left out is
        kept. The binding's checks come first (a dict, known keys, unsigned ints)."""
        return self._set_sched(params, 0, "virDomainSetSchedulerParameters")

    @api("virDomainSetSchedulerParametersFlags")
    def setSchedulerParametersFlags(self, params: dict[str, int], flags: int = 0) -> int:
        return self._set_sched(params, flags, "virDomainSetSchedulerParametersFlags")

    def _set_sched(self, params: object, flags: object, func: str) -> int:
        if not isinstance(params, dict):
            raise TypeError("params must be a dictionary")
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        if not params:
            raise LookupError("Need non-empty dictionary to set attributes")
        dom = self._writable(func)
        self._sched()  # the binding reads the parameters' types first
        for key, value in params.items():
            if key not in _SCHED_PARAMS:
                raise LookupError(f'Attribute name "{key}" could not be recognized')
            if not isinstance(value, int):
                raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as "
                                "an integer")
            if not 0 <= value <= _UINT_MAX:
                raise OverflowError("Python int too large to convert to C unsigned int")
        self._flags(flags, 0, func)
        self._settings(lambda d: dom.set_scheduler(
            weight=params.get("weight"), cap=params.get("cap")))
        return 0

    # -- metadata ---------------------------------------------------------------------------

    @api("virDomainGetMetadata")
    def metadata(self, type: int, uri: str | None, flags: int = 0) -> str:
        """The title, the description or (VIR_DOMAIN_METADATA_ELEMENT) the element of
        namespace ``uri``, of the running domain or its definition (``flags``);
        VIR_ERR_NO_DOMAIN_METADATA when there is none, as libvirt."""
        func = "virDomainGetMetadata"
        _integers(type, flags)
        kind = _metadata_kind(type)
        self._exclusive(flags, func)
        self._uri_rule(kind, uri, func)
        self._flags(flags, _AFFECT, func)
        value = self._settings(lambda d: d.metadata(kind, uri, affect=_affect(flags)))
        if value is None:
            raise raw_error(c.VIR_ERR_NO_DOMAIN_METADATA, c.VIR_FROM_DOMAIN, _NO_METADATA)
        return value

    @api("virDomainSetMetadata")
    def setMetadata(self, type: int, metadata: str | None, key: str | None, uri: str | None,
                    flags: int = 0) -> int:
        """Set, or (None, "") remove, the title (one line), the description, or the
        element of namespace ``uri`` written with prefix ``key``; kept with the domain,
        shown in ``XMLDesc``, reported as a METADATA_CHANGE event."""
        func = "virDomainSetMetadata"
        for value, what in ((metadata, "metadata"), (key, "key"), (uri, "uri")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{func}() argument {what} must be str or None, not "
                                f"{value.__class__.__name__}")
        _integers(type, flags)
        dom = self._writable(func)  # libvirt checks access first
        kind = _metadata_kind(type)
        if kind is MetadataKind.TITLE and metadata is not None and "\n" in metadata:
            raise arg_error(func, "metadata", "metadata title can't contain newlines")
        self._uri_rule(kind, uri, func)
        if kind is MetadataKind.ELEMENT:
            if metadata and key is None:
                raise arg_error(func, "key", f"key in {func} must not be NULL")
        elif key is not None:
            raise arg_error(func, "key", f"key in {func} must be NULL")
        self._flags(flags, _AFFECT, func)
        if kind is MetadataKind.ELEMENT and metadata:
            metadata = metadata_element(metadata)
            if key is None or not _NCNAME.fullmatch(key):
                raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_XML,
                            "failed to validate prefix for a new XML namespace")
        self._conn._watch()
        self._settings(lambda d: dom.set_metadata(
            kind, metadata or None, key=key if metadata else None, uri=uri,
            affect=_affect(flags)))
        return 0

    @staticmethod
    def _uri_rule(kind: MetadataKind, uri: object, func: str) -> None:
        if kind is MetadataKind.ELEMENT and uri is None:
            raise arg_error(func, "uri", f"uri in {func} must not be NULL")
        if kind is not MetadataKind.ELEMENT and uri is not None:
            raise arg_error(func, "uri", f"uri in {func} must be NULL")

    @api("virDomainGetOSType")
    def OSType(self) -> str:
        return self._dom.config().os_type

    @api("virDomainGetXMLDesc")
    def XMLDesc(self, flags: int = 0) -> str:
        """The domain's XML, which ``createXML`` and ``defineXML`` take back: name,
        UUID, title, description, metadata, memory, vCPUs (``current=``), OS type,
        disks and interfaces. A shut-off domain's is its definition's, without an
        ``id``. Two control requests (configuration, settings)."""
        flags = self._flags(flags, _XML_FLAGS, "virDomainGetXMLDesc")
        dom = self._dom
        ident = dom.identity()
        self._name = ident.name
        return domain_xml(self._conn._hypervisor_type(), ident, dom.config(),
                          inactive=bool(flags & c.VIR_DOMAIN_XML_INACTIVE),
                          settings=dom.settings())

    # -- actions ----------------------------------------------------------------------------

    @api("virDomainSuspend")
    def suspend(self) -> int:
        return self._act("virDomainSuspend", Domain.pause)

    @api("virDomainResume")
    def resume(self) -> int:
        return self._act("virDomainResume", Domain.resume)

    @api("virDomainShutdown")
    def shutdown(self) -> int:
        return self._act("virDomainShutdown", Domain.shutdown)

    @api("virDomainShutdownFlags")
    def shutdownFlags(self, flags: int = 0) -> int:
        self._flags(flags, _SHUTDOWN_FLAGS, "virDomainShutdownFlags")
        return self._act("virDomainShutdownFlags", Domain.shutdown)

    @api("virDomainReboot")
    def reboot(self, flags: int = 0) -> int:
        self._flags(flags, _REBOOT_FLAGS, "virDomainReboot")
        return self._act("virDomainReboot", Domain.reboot)

    @api("virDomainDestroy")
    def destroy(self) -> int:
        return self._act("virDomainDestroy", Domain.destroy)

    @api("virDomainDestroyFlags")
    def destroyFlags(self, flags: int = 0) -> int:
        self._flags(flags, c.VIR_DOMAIN_DESTROY_GRACEFUL, "virDomainDestroyFlags")
        return self._act("virDomainDestroyFlags", Domain.destroy)

    @api("virDomainCreate")
    def create(self) -> int:
        return self._create(0, "virDomainCreate")

    @api("virDomainCreateWithFlags")
    def createWithFlags(self, flags: int = 0) -> int:
        return self._create(flags, "virDomainCreateWithFlags")

    def _create(self, flags: object, func: str) -> int:
        """Start a shut-off domain: it gets an ID. libvirt's flags (start paused...)
        over a ``libvirt:`` URI; xvirt's hosts take none."""
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        dom = self._writable(func)
        self._flags(flags, 0, func)
        self._conn._watch()
        try:
            dom.start()
        except OperationFailedError:
            if dom.identity().id < 0:
                raise
            # libxl's refusal (the test driver says it as an internal error)
            raise error(c.VIR_ERR_OPERATION_INVALID, self._conn._backend.error_domain,
                        "Domain is already running") from None
        return 0

    @api("virDomainUndefine")
    def undefine(self) -> int:
        return self._undefine(0, "virDomainUndefine")

    @api("virDomainUndefineFlags")
    def undefineFlags(self, flags: int = 0) -> int:
        return self._undefine(flags, "virDomainUndefineFlags")

    def _undefine(self, flags: object, func: str) -> int:
        """Remove the domain's definition. libvirt undefines a running domain too (it
        becomes transient); xvirt's hosts refuse it, as xend's ``delete`` did."""
        if not isinstance(flags, int):
            raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
        dom = self._writable(func)
        self._flags(flags, _UNDEFINE_FLAGS, func)
        dom.undefine()
        return 0

    @api("virDomainSave")
    def save(self, to: str) -> int:
        return self._save(to, "virDomainSave")

    @api("virDomainSaveFlags")
    def saveFlags(self, to: str, dxml: str | None = None, flags: int = 0) -> int:
        self._flags(flags, 0, "virDomainSaveFlags")
        if dxml is not None:
            _no_dxml("virDomainSaveFlags")
        return self._save(to, "virDomainSaveFlags")

    def _save(self, to: object, func: str) -> int:
        dom = self._writable(func)
        try:
            image = image_name(to, self._conn._xvirt.image_dir, func, "to")
        except libvirtError:
            # libvirt finds the domain shut off before it looks at the path (and the
            # path is never handed to anyone: it may lead anywhere)
            if dom.identity().id >= 0:
                raise
            raise self._not_running() from None
        return self._act(func, lambda d: d.save(image))

    @api("virDomainRename")
    def rename(self, new_name: str, flags: int = 0) -> int:
        self._flags(flags, 0, "virDomainRename")
        if new_name is None:
            raise arg_error("virDomainRename", "new_name",
                            "new_name in virDomainRename must not be NULL")
        dom = self._writable("virDomainRename")
        self._conn._watch()
        try:
            dom.rename(new_name)
        except NoDomainError:
            # Shut off: libvirt renames exactly such domains (and refuses running ones).
            self._rename_defined(dom, new_name)
        self._name = new_name
        return 0

    def _rename_defined(self, dom: Domain, new_name: str) -> None:
        """A shut-off domain renamed on an xvirt host: its definition, defined again
        under the new name (the host keeps the UUID; a running domain is refused)."""
        config = dom.config()
        self._conn._xvirt.define(new_name, config, uuid=self._uuid)

    # -- identity of the Python object ----------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, virDomain):
            return NotImplemented
        return self._uuid == other._uuid

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        return f"<xvirt.compat.libvirt.virDomain {self._uuid}>"


def _path_arg(value: object, func: str, param: str) -> str:
    """A disk or device name as the binding takes it (``z``: str or None) and libvirt
    checks it: None is libvirt's NULL check, anything but str a TypeError, a NUL a
    ValueError, a lone surrogate UnicodeEncodeError."""
    if value is None:
        raise arg_error(func, param, f"{param} in {func} must not be NULL")
    if not isinstance(value, str):
        raise TypeError(f"{func}() argument 2 must be str or None, not "
                        f"{type(value).__name__}")
    value.encode("utf-8")
    if "\x00" in value:
        raise ValueError("embedded null character")
    return value


def _uint(flags: object) -> int:
    """``flags`` as the binding converts an unsigned int: an int (else TypeError), its
    low 32 bits (-1 is 0xffffffff, as libvirt then reports it)."""
    if not isinstance(flags, int):
        raise TypeError(f"'{type(flags).__name__}' object cannot be interpreted as an integer")
    return flags & _UINT_MAX


def _integers(type_: object, flags: object) -> None:
    """``type`` and ``flags`` as the binding converts them: ints, or TypeError."""
    for value, what in ((type_, "type"), (flags, "flags")):
        if not isinstance(value, int):
            raise TypeError(f"an integer is required for {what}, not {type(value).__name__}")


def _metadata_kind(type_: object) -> MetadataKind:
    try:
        return MetadataKind(type_)
    except ValueError:
        raise error(c.VIR_ERR_INVALID_ARG, c.VIR_FROM_DOMAIN,
                    f"unknown metadata type '{type_}'") from None


def _affect(flags: int) -> Affect:
    """libvirt's VIR_DOMAIN_AFFECT_* bits as xvirt's Affect (the same numbers)."""
    return Affect(flags & _AFFECT)


def _no_dxml(func: str) -> NoReturn:
    raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                f"{func} with an XML override (xvirt images keep their configuration)")
