"""The conformance kit's target on real libvirt: its test driver, in this process
(``test:///default``) or inside a libvirtd (``test+unix:///default``).

The outside world acts through a libvirt connection of its own, in libvirt's
terms, mapped onto the kit's Xen vocabulary:

* ``create`` makes a transient guest (``createXML``), ``define`` a persistent
  one (``defineXML``), ``start`` boots it (``create``) and ``undefine`` removes
  an inactive one; a persistent guest that stops stays defined, shut off, as
  xend's managed domains do (libvirt keeps its inactive definition);
* ``undefine`` of a running guest is refused, as xend's ``delete`` is (libvirt
  would make it transient);
* a reboot or migration (a new ID, same UUID and name) is a stop and start
  for a persistent guest and a save and restore for a transient one: libvirt's
  own reboot keeps the ID;
* a host reboot is a libvirtd restart, available only when a libvirtd serves
  the host; the test driver's state dies with it, so the target defines again
  what was defined before (a host keeps its definitions on disk).

libvirt's test driver cannot crash a guest or rename a running one as Xen can,
and libvirt refuses a new name for a UUID it has defined (xend takes it), so
the target leaves those out (``capabilities``).
libvirt keeps no journal of who did what; the kit checks C4 by comparing the
other domains before and after each client action instead.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import uuid as _uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, TypeVar

import xvirt
from xvirt.connection import Connection
from xvirt.drivers.libvirt import default_image_dir, domain_state
from xvirt.drivers.libvirt_errors import translate
from xvirt.errors import OperationFailedError
from xvirt.host.hypervisor import DomainRecord, JournalEntry
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_LIST_DOMAINS_ACTIVE,
    VIR_CONNECT_LIST_DOMAINS_INACTIVE,
    VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
    VIR_DOMAIN_PAUSED,
    VIR_DOMAIN_XML_INACTIVE,
)
from xvirt.planes import Definition, DomainConfig

__all__ = ["LibvirtHost", "LibvirtTarget", "start_guest"]

_DEFAULT = "test"  # the test driver's own guest, back after every libvirtd restart
#: The default guest's definition per URI, as first seen: a history may undefine it,
#: and the next one (on a libvirtd whose state lives on) starts from it again.
_DEFAULT_XML: dict[str, str] = {}


def start_guest(conn: Any, xml: str, *, persistent: bool) -> Any:
    """Start a guest from ``xml``: defined first and then started (persistent, as a
    managed domain), or created transient."""
    if persistent:
        dom = conn.defineXML(xml)
        dom.create()
        return dom
    return conn.createXML(xml, 0)


def guest_xml(name: str, uuid: str, *, memory_kib: int, vcpus: int) -> str:
    """A small guest in libvirt's format, with one disk and one interface."""
    dom = ET.Element("domain", type="test")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "uuid").text = uuid
    ET.SubElement(dom, "memory", unit="KiB").text = str(memory_kib)
    ET.SubElement(dom, "vcpu").text = str(vcpus)
    ET.SubElement(ET.SubElement(dom, "os"), "type").text = "hvm"
    devices = ET.SubElement(dom, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "source", file=f"/var/lib/xvirt/{name}.img")
    ET.SubElement(disk, "target", dev="xvda", bus="xen")
    nic = ET.SubElement(devices, "interface", type="bridge")
    ET.SubElement(nic, "mac", address="00:16:3e:" + ":".join(uuid[i:i + 2] for i in (0, 2, 4)))
    ET.SubElement(nic, "source", bridge="xenbr0")
    return ET.tostring(dom, encoding="unicode")


F = TypeVar("F", bound=Callable[..., Any])


def _refusals(method: F) -> F:
    """libvirt refusing an action is the host refusing it: the kit expects xvirt's
    errors (OperationFailedError, NoDomainError) for what its model predicts."""
    @functools.wraps(method)
    def wrapper(self: LibvirtHost, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self._lv.libvirtError as exc:
            raise translate(exc, uri=self._uri, op=method.__name__.strip("_")) from None
    return wrapper  # type: ignore[return-value]


class LibvirtHost:
    """HostControl over a libvirt connection of the target's own."""

    def __init__(self, target_uri: str, image_dir: str,
                 restart: Callable[[], None] | None = None, *, conn: Any = None) -> None:
        """``conn``: a connection to use instead of opening one (the caller's: not closed
        here); the QEMU target passes its harness's, as libvirt allows a process only a
        few opens of an embedded driver."""
        self._lv: Any = real_libvirt()
        self._uri = target_uri
        self._image_dir = image_dir
        self._restart = restart
        self._boots = 1
        self._moves = itertools.count(1)
        # UUIDs from a counter, not at random: hypothesis replays a history and
        # must see the same host (it orders guests by UUID when it draws one).
        self._uuids = itertools.count(1)
        self._highest = 1
        self._owns_conn = conn is None
        self._conn = self._lv.open(target_uri) if conn is None else conn
        self._pristine()

    def _pristine(self) -> None:
        """Only the default guest, running, and started last of all: a history then
        meets the same order of IDs whether or not the test driver's state outlived
        the previous history (hypothesis replays histories and needs that)."""
        for dom in self._conn.listAllDomains(0):
            with contextlib.suppress(self._lv.libvirtError):
                if dom.isActive():
                    dom.destroy()
                if dom.name() != _DEFAULT and dom.isPersistent():
                    dom.undefine()
        try:
            default = self._conn.lookupByName(_DEFAULT)
            _DEFAULT_XML.setdefault(self._uri, default.XMLDesc(VIR_DOMAIN_XML_INACTIVE))
        except self._lv.libvirtError:  # a history undefined it
            default = self._conn.defineXML(_DEFAULT_XML[self._uri])
        default.create()

    # -- truth ---------------------------------------------------------------------------

    @property
    def boot_id(self) -> str:
        return f"{self._uri}#{self._boots}"

    @property
    def max_domid(self) -> int:
        """libvirt never reuses an ID: the kit's lookups cover every ID handed out."""
        return self._highest + 2

    def domains(self) -> list[DomainRecord]:
        records = []
        for dom in self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            state, max_kib, kib, vcpus, cpu = dom.info()
            live = domain_state(state)
            if live is None:
                continue
            self._highest = max(self._highest, dom.ID())
            records.append(DomainRecord(dom.ID(), dom.UUIDString(), dom.name(), live, kib,
                                        max_kib, vcpus, cpu))
        return sorted(records, key=lambda r: r.id)

    def defined_domains(self) -> list[Definition]:
        """The inactive domains (every one is persistent: a transient one that stops is
        gone), by name, with the figures libvirt keeps for them."""
        found = []
        for dom in self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_INACTIVE):
            _, max_kib, kib, vcpus, _ = dom.info()
            found.append(Definition(dom.UUIDString(), dom.name(), None, True,
                                    DomainConfig(kib, max_kib, vcpus, dom.OSType())))
        return sorted(found, key=lambda d: (d.name, d.uuid))

    def journal(self) -> list[JournalEntry]:
        return []  # libvirt keeps none; the kit compares the other domains instead

    def _record(self, dom: Any) -> DomainRecord:
        return next(r for r in self.domains() if r.uuid == dom.UUIDString())

    def _new_uuid(self) -> str:
        return str(_uuid.UUID(int=(0x7E57 << 112) | next(self._uuids)))

    def _xml(self, name: str, uuid: str, *, memory_kib: int, vcpus: int) -> str:
        """A new guest of this host's kind."""
        return guest_xml(name, uuid, memory_kib=memory_kib, vcpus=vcpus)

    # -- the outside world's actions ---------------------------------------------------------

    @_refusals
    def create(self, name: str, *, memory_kib: int = 262144, vcpus: int = 1) -> DomainRecord:
        """A transient guest (``createXML``): gone when it stops."""
        xml = self._xml(name, self._new_uuid(), memory_kib=memory_kib, vcpus=vcpus)
        return self._record(start_guest(self._conn, xml, persistent=False))

    @_refusals
    def define(self, name: str, *, memory_kib: int = 262144, vcpus: int = 1,
               uuid: str | None = None) -> Definition:
        """``defineXML``: a new persistent guest, the definition of ``uuid`` replaced, or
        (``uuid`` running) that guest made persistent. libvirt refuses a name another
        UUID holds, and a new name for a UUID it knows."""
        xml = self._xml(name, uuid or self._new_uuid(), memory_kib=memory_kib, vcpus=vcpus)
        dom = self._conn.defineXML(xml)
        _, max_kib, kib, vcpus, _ = dom.info()
        return Definition(dom.UUIDString(), dom.name(), dom.ID() if dom.isActive() else None,
                          True, DomainConfig(kib, max_kib, vcpus, dom.OSType()))

    @_refusals
    def start(self, uuid: str) -> DomainRecord:
        """``create()`` of the inactive guest: libvirt refuses a running one."""
        dom = self._conn.lookupByUUIDString(uuid)
        dom.create()
        return self._record(dom)

    @_refusals
    def undefine(self, uuid: str) -> None:
        """``undefine()`` of an inactive guest; a running one is refused here (libvirt
        would make it transient, xend refuses it)."""
        dom = self._conn.lookupByUUIDString(uuid)
        if dom.isActive():
            raise OperationFailedError(f"domain {dom.name()!r} is running: only a domain "
                                       "that is shut off can be undefined", uri=self._uri,
                                       op="undefine", uuid=uuid, domid=dom.ID())
        dom.undefine()

    @_refusals
    def destroy(self, domid: int) -> None:
        self._conn.lookupByID(domid).destroy()

    @_refusals
    def shutdown(self, domid: int) -> None:
        self._conn.lookupByID(domid).shutdown()

    @_refusals
    def pause(self, domid: int) -> None:
        """Refused unless the guest runs, as Xen refuses it (QEMU's libvirt accepts a
        pause of a paused guest and does nothing)."""
        dom = self._conn.lookupByID(domid)
        if dom.info()[0] == VIR_DOMAIN_PAUSED:
            raise OperationFailedError(f"domain {dom.name()!r} is paused, not running",
                                       uri=self._uri, op="pause", domid=domid,
                                       uuid=dom.UUIDString())
        dom.suspend()

    @_refusals
    def resume(self, domid: int) -> None:
        self._conn.lookupByID(domid).resume()

    def crash(self, domid: int) -> None:
        raise NotImplementedError("libvirt's test driver cannot crash a guest")

    def rename(self, domid: int, new_name: str) -> None:
        raise NotImplementedError("libvirt renames only inactive domains")

    @_refusals
    def _move(self, domid: int) -> DomainRecord:
        dom = self._conn.lookupByID(domid)
        uuid = dom.UUIDString()
        if dom.isPersistent():
            dom.destroy()
            dom.create()
        else:
            path = os.path.join(self._image_dir, f".move-{next(self._moves)}")
            os.makedirs(self._image_dir, exist_ok=True)
            dom.save(path)
            self._restore(path, uuid)
            os.unlink(path)
        return self._record(self._conn.lookupByUUIDString(uuid))

    def _restore(self, path: str, uuid: str) -> None:
        """Restore running, as Xen does: QEMU brings a guest saved paused back paused
        (the test driver takes no ``VIR_DOMAIN_SAVE_RUNNING``), so resume it."""
        self._conn.restore(path)
        dom = self._conn.lookupByUUIDString(uuid)
        if dom.info()[0] == VIR_DOMAIN_PAUSED:
            dom.resume()

    def reboot(self, domid: int) -> DomainRecord:
        return self._move(domid)

    def migrate(self, domid: int) -> DomainRecord:
        return self._move(domid)

    @_refusals
    def save(self, domid: int, image: str) -> None:
        os.makedirs(self._image_dir, exist_ok=True)
        self._conn.lookupByID(domid).save(os.path.join(self._image_dir, image))

    @_refusals
    def restore(self, image: str) -> DomainRecord:
        path = os.path.join(self._image_dir, image)
        xml = self._conn.saveImageGetXMLDesc(path, 0)
        uuid = ET.fromstring(xml).findtext("uuid") or ""
        self._restore(path, uuid)
        return self._record(self._conn.lookupByUUIDString(uuid))

    def reboot_host(self) -> None:
        """A libvirtd restart: no guest runs after it, and every definition is as it was
        (the test driver forgets them: defined again from their XML)."""
        if self._restart is None:
            raise NotImplementedError("only a libvirtd-served host can be rebooted")
        kept = {dom.UUIDString(): dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE) for dom in
                self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_PERSISTENT)}
        self._conn.close()
        self._restart()
        self._boots += 1
        self._conn, self._owns_conn = self._lv.open(self._uri), True
        self._pristine()
        self._conn.lookupByName(_DEFAULT).destroy()  # a booted host has no guests yet
        for dom in self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
            if dom.UUIDString() not in kept:  # the test driver's own, undefined before
                dom.undefine()
        for xml in kept.values():
            self._conn.defineXML(xml)

    def restart_daemon(self) -> None:
        raise NotImplementedError("a libvirtd restart loses the test driver's state")

    def close(self) -> None:
        if self._owns_conn:
            with contextlib.suppress(self._lv.libvirtError):
                self._conn.close()


class LibvirtTarget:
    """libvirt's test driver, reached through xvirt's libvirt driver.

    ``restart`` (a libvirtd restart) makes host reboots possible."""

    def __init__(self, target_uri: str = "test:///default", *,
                 restart: Callable[[], None] | None = None) -> None:
        self.uri = f"libvirt:{target_uri}"
        self.host = LibvirtHost(target_uri, default_image_dir(), restart)
        self.capabilities = frozenset(
            {"shutdown_paused", "defined"} | ({"reboot_host"} if restart is not None else set()))

    def connect(self, *, readonly: bool = False) -> Connection:
        return xvirt.open(self.uri, readonly=readonly)

    def close(self) -> None:
        self.host.close()
        # A domain object left in a reference cycle keeps its connection, and with it
        # the test driver's state, alive: the next history must start pristine.
        gc.collect()
