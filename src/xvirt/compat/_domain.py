"""virDomain: one domain, by UUID, over xvirt's Domain handle (C3: it follows the
domain across ID changes).

``name()`` and ``ID()`` are current; once the domain is gone ``name()`` still
answers with the last name known, ``ID()`` is -1 and ``isActive()`` 0, as a
libvirt handle on a domain that stopped. Handles on inactive domains (from
``listAllDomains``) know only their name: xvirt's hosts report live domains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from xvirt.compat import _constants as c
from xvirt.compat._errors import arg_error, error, libvirtError
from xvirt.compat._paths import image_name
from xvirt.compat._translate import api, translate
from xvirt.compat._unsupported import unsupported
from xvirt.compat._xml import domain_xml
from xvirt.connection import Domain
from xvirt.errors import ConnectionClosedError, NoDomainError, XvirtError
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF
from xvirt.model import DomainInfo

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

    def __init__(self, conn: virConnect, _obj: Domain | None = None, *,
                 name: str | None = None) -> None:
        self._conn = conn
        self._dom = _obj
        self._uuid = None if _obj is None else _obj.uuid
        self._name = name

    # -- plumbing ---------------------------------------------------------------------

    def _translate(self, exc: XvirtError, func: str) -> libvirtError:
        return translate(exc, self._conn._backend, func, uuid=self._uuid, name=self._name)

    def _live(self) -> Domain:
        if self._dom is None:
            raise error(c.VIR_ERR_OPERATION_INVALID, self._conn._backend.error_domain,
                        f"domain '{self._name}' is not running (xvirt knows only the name "
                        "of an inactive domain)")
        return self._dom

    def _flags(self, flags: object, allowed: int, func: str) -> int:
        return check_flags(flags, allowed, func, self._conn._backend.error_domain)

    def _writable(self, func: str) -> Domain:
        """Read-only first, as libvirt checks it before anything else."""
        if self._conn._xvirt.readonly:
            raise error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                        f"read only access prevents {func}")
        return self._live()

    def __getattr__(self, name: str) -> object:
        return unsupported("virDomain", name)

    # -- identity -------------------------------------------------------------------------

    @api("virDomainGetName")
    def name(self) -> str:
        if self._dom is None:
            return self._name or ""
        try:
            self._name = self._dom.name
        except (NoDomainError, ConnectionClosedError):
            if self._name is None:
                raise
        return self._name

    @api("virDomainGetID")
    def ID(self) -> int:
        if self._dom is None:
            return -1
        try:
            ident = self._dom.identity()
        except NoDomainError:
            return -1
        self._name = ident.name  # remembered for name() once the domain is gone
        return ident.id

    def _uuid_or_fail(self, func: str) -> str:
        if self._uuid is None:
            raise error(c.VIR_ERR_NO_SUPPORT, self._conn._backend.error_domain,
                        f"{func}: xvirt knows only the name of inactive domain '{self._name}'")
        return self._uuid

    def UUID(self) -> bytes:
        return bytes.fromhex(self._uuid_or_fail("virDomainGetUUID").replace("-", ""))

    def UUIDString(self) -> str:
        return self._uuid_or_fail("virDomainGetUUIDString")

    def connect(self) -> virConnect:
        return self._conn

    # -- state ------------------------------------------------------------------------------

    @api("virDomainGetInfo")
    def info(self) -> list[int]:
        return info_list(self._live().info())

    @api("virDomainGetState")
    def state(self, flags: int = 0) -> list[int]:
        self._flags(flags, 0, "virDomainGetState")
        if self._dom is None:
            return [c.VIR_DOMAIN_SHUTOFF, c.VIR_DOMAIN_SHUTOFF_UNKNOWN]
        return [STATES[self._dom.info().state], 0]  # xvirt does not know reasons: UNKNOWN

    @api("virDomainIsActive")
    def isActive(self) -> int:
        if self._dom is None:
            return 0
        try:
            self._name = self._dom.identity().name
        except NoDomainError:
            return 0
        return 1

    @api("virDomainIsPersistent")
    def isPersistent(self) -> int:
        """Xen hosts keep no definitions (domains are xm-created, transient);
        over libvirt, active domains are taken as persistent (xvirt cannot tell)."""
        if self._dom is None:
            return 1
        self._dom.identity()
        return 0 if self._conn._backend.xen else 1

    @api("virDomainIsUpdated")
    def isUpdated(self) -> int:
        self._live().identity()
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
        return self._live().info().max_memory_kib

    @api("virDomainGetMaxVcpus")
    def maxVcpus(self) -> int:
        return self._live().info().vcpus

    @api("virDomainGetOSType")
    def OSType(self) -> str:
        return self._live().config().os_type

    @api("virDomainGetXMLDesc")
    def XMLDesc(self, flags: int = 0) -> str:
        flags = self._flags(flags, _XML_FLAGS, "virDomainGetXMLDesc")
        dom = self._live()
        ident = dom.identity()
        self._name = ident.name
        return domain_xml(self._conn._hypervisor_type(), ident, dom.config(),
                          inactive=bool(flags & c.VIR_DOMAIN_XML_INACTIVE))

    # -- actions ----------------------------------------------------------------------------

    @api("virDomainSuspend")
    def suspend(self) -> int:
        self._writable("virDomainSuspend").pause()
        return 0

    @api("virDomainResume")
    def resume(self) -> int:
        self._writable("virDomainResume").resume()
        return 0

    @api("virDomainShutdown")
    def shutdown(self) -> int:
        self._writable("virDomainShutdown").shutdown()
        return 0

    @api("virDomainShutdownFlags")
    def shutdownFlags(self, flags: int = 0) -> int:
        self._flags(flags, _SHUTDOWN_FLAGS, "virDomainShutdownFlags")
        self._writable("virDomainShutdownFlags").shutdown()
        return 0

    @api("virDomainReboot")
    def reboot(self, flags: int = 0) -> int:
        self._flags(flags, _REBOOT_FLAGS, "virDomainReboot")
        self._writable("virDomainReboot").reboot()
        return 0

    @api("virDomainDestroy")
    def destroy(self) -> int:
        self._writable("virDomainDestroy").destroy()
        return 0

    @api("virDomainDestroyFlags")
    def destroyFlags(self, flags: int = 0) -> int:
        self._flags(flags, c.VIR_DOMAIN_DESTROY_GRACEFUL, "virDomainDestroyFlags")
        self._writable("virDomainDestroyFlags").destroy()
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
        dom.save(image_name(to, self._conn._xvirt.image_dir, func, "to"))
        return 0

    @api("virDomainRename")
    def rename(self, new_name: str, flags: int = 0) -> int:
        self._flags(flags, 0, "virDomainRename")
        if new_name is None:
            raise arg_error("virDomainRename", "new_name",
                            "new_name in virDomainRename must not be NULL")
        self._writable("virDomainRename").rename(new_name)
        self._name = new_name
        return 0

    # -- identity of the Python object ----------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, virDomain):
            return NotImplemented
        if self._uuid is None or other._uuid is None:
            return self._uuid is other._uuid and self._name == other._name
        return self._uuid == other._uuid

    def __hash__(self) -> int:
        return hash(self._uuid if self._uuid is not None else self._name)

    def __repr__(self) -> str:
        return f"<xvirt.compat.libvirt.virDomain {self._uuid or self._name}>"


def _no_dxml(func: str) -> NoReturn:
    raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                f"{func} with an XML override (xvirt images keep their configuration)")
