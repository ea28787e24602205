"""virDomain: one domain, by UUID, over xvirt's Domain handle (C3: it follows the
domain across ID changes, and through being shut off and started again).

``name()`` and ``ID()`` are current; a domain that is defined and shut off has
ID -1 and ``isActive()`` 0, and answers ``info()``, ``state()``, ``XMLDesc()`` from
its definition. Once the domain is gone ``name()`` still answers with the last
name known, ``ID()`` is -1 and ``isActive()`` 0.

Calls that need a running domain refuse a shut-off one as libvirt's drivers do
(``virDomainObjCheckActive``: VIR_ERR_OPERATION_INVALID, "domain is not running");
over a ``libvirt:`` URI libvirt itself answers them (see _native.py), and also
``state()``, ``create()`` and ``undefine()``, whose reasons, flags and semantics
xvirt's API does not carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from xvirt.compat import _constants as c
from xvirt.compat._errors import arg_error, error, libvirtError
from xvirt.compat._paths import image_name
from xvirt.compat._translate import api, not_found, translate
from xvirt.compat._unsupported import unsupported
from xvirt.compat._xml import domain_xml
from xvirt.connection import Domain
from xvirt.errors import ConnectionClosedError, NoDomainError, OperationFailedError, XvirtError
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF
from xvirt.model import DomainInfo, DomainState

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

    @property
    def _on_libvirt(self) -> bool:
        """Whether libvirt itself answers what xvirt's API does not carry (_native.py)."""
        return self._conn._native is not None

    def _native(self, call: Callable[[Any], T], *, read: bool = False) -> T:
        """``call(handle)`` on libvirt's own handle of this domain (``_on_libvirt``
        only; a ``read`` survives a reconnection). A domain libvirt no longer has is
        reported as a call on a gone handle is, with its UUID and name."""
        native = self._conn._native
        assert native is not None, "only over a libvirt: URI with a second connection"
        uuid = self._uuid
        try:
            return native.call(lambda conn: call(conn.lookupByUUIDString(uuid)), retry=read)
        except libvirtError as exc:
            if exc.get_error_code() != c.VIR_ERR_NO_DOMAIN:
                raise
        raise not_found(self._conn._backend, "uuid", uuid, self._name)

    def _not_running(self) -> libvirtError:
        """virDomainObjCheckActive's refusal, which every libvirt driver gives for a call
        that needs a running domain (the test driver's own for a few: see _native.py)."""
        return error(c.VIR_ERR_OPERATION_INVALID, c.VIR_FROM_DOMAIN, "domain is not running")

    def _act(self, func: str, act: Callable[[Domain], object],
             native: Callable[[Any], object]) -> int:
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
            if not self._on_libvirt:
                raise self._not_running() from None
            self._native(native)
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
        if self._on_libvirt:
            answer = self._native(lambda d: d.state(0), read=True)
            return [int(answer[0]), int(answer[1])]
        state = self._dom.info().state
        return [STATES[state], self._conn._reason(self._uuid, state)]

    @api("virDomainIsActive")
    def isActive(self) -> int:
        """1 while the domain runs; 0 when it is defined and shut off, or gone."""
        try:
            ident = self._dom.identity()
        except NoDomainError:
            return 0
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
        """The running domain's vCPUs: libvirt refuses a shut-off domain (it asks the
        live configuration)."""
        info = self._dom.info()
        if info.state is DomainState.SHUTOFF:
            raise self._not_running()
        return info.vcpus

    @api("virDomainGetOSType")
    def OSType(self) -> str:
        return self._dom.config().os_type

    @api("virDomainGetXMLDesc")
    def XMLDesc(self, flags: int = 0) -> str:
        """A shut-off domain's XML is its definition's, without an ``id``."""
        flags = self._flags(flags, _XML_FLAGS, "virDomainGetXMLDesc")
        dom = self._dom
        ident = dom.identity()
        self._name = ident.name
        return domain_xml(self._conn._hypervisor_type(), ident, dom.config(),
                          inactive=bool(flags & c.VIR_DOMAIN_XML_INACTIVE))

    # -- actions ----------------------------------------------------------------------------

    @api("virDomainSuspend")
    def suspend(self) -> int:
        return self._act("virDomainSuspend", Domain.pause, lambda d: d.suspend())

    @api("virDomainResume")
    def resume(self) -> int:
        return self._act("virDomainResume", Domain.resume, lambda d: d.resume())

    @api("virDomainShutdown")
    def shutdown(self) -> int:
        return self._act("virDomainShutdown", Domain.shutdown, lambda d: d.shutdown())

    @api("virDomainShutdownFlags")
    def shutdownFlags(self, flags: int = 0) -> int:
        self._flags(flags, _SHUTDOWN_FLAGS, "virDomainShutdownFlags")
        return self._act("virDomainShutdownFlags", Domain.shutdown,
                         lambda d: d.shutdownFlags(flags))

    @api("virDomainReboot")
    def reboot(self, flags: int = 0) -> int:
        self._flags(flags, _REBOOT_FLAGS, "virDomainReboot")
        return self._act("virDomainReboot", Domain.reboot, lambda d: d.reboot(flags))

    @api("virDomainDestroy")
    def destroy(self) -> int:
        return self._act("virDomainDestroy", Domain.destroy, lambda d: d.destroy())

    @api("virDomainDestroyFlags")
    def destroyFlags(self, flags: int = 0) -> int:
        self._flags(flags, c.VIR_DOMAIN_DESTROY_GRACEFUL, "virDomainDestroyFlags")
        return self._act("virDomainDestroyFlags", Domain.destroy,
                         lambda d: d.destroyFlags(flags))

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
        if self._on_libvirt:
            return int(self._native(lambda d: d.createWithFlags(flags)))
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
        if self._on_libvirt:
            return int(self._native(lambda d: d.undefineFlags(flags)))
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
        return self._act(func, lambda d: d.save(image), lambda d: d.save(to))

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
            if self._on_libvirt:
                self._native(lambda d: d.rename(new_name, 0))
            else:
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


def _no_dxml(func: str) -> NoReturn:
    raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                f"{func} with an XML override (xvirt images keep their configuration)")
