"""The conformance kit's target on real libvirt: its test driver, in this process
(``test:///default``) or inside a libvirtd (``test+unix:///default``).

The outside world acts through a libvirt connection of its own, in libvirt's
terms, mapped onto the kit's Xen vocabulary:

* guests are created transient and persistent in turn;
* a reboot or migration (a new ID, same UUID and name) is a stop and start
  for a persistent guest and a save and restore for a transient one: libvirt's
  own reboot keeps the ID;
* a guest that stops leaves no inactive definition behind, so its name is
  free again as on a Xen host;
* a host reboot is a libvirtd restart (the test driver's state dies with it),
  available only when a libvirtd serves the host.

libvirt's test driver cannot crash a guest or rename a running one as Xen can,
so the target leaves those out (``capabilities``).
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
from xvirt.host.hypervisor import DomainRecord, JournalEntry
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_LIST_DOMAINS_ACTIVE,
    VIR_CONNECT_LIST_DOMAINS_INACTIVE,
)

__all__ = ["LibvirtHost", "LibvirtTarget", "start_guest"]

_DEFAULT = "test"  # the test driver's own guest, back after every libvirtd restart


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
        self._persistent = itertools.cycle([False, True])
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
        self._conn.lookupByName(_DEFAULT).create()

    # -- truth ---------------------------------------------------------------------------

    @property
    def boot_id(self) -> str:
        return f"{self._uri}#{self._boots}"

    @property
    def max_domid(self) -> int:
        """libvirt never reuses an ID: the kit's lookups cover every ID handed out."""
        return self._highest + 2

    def domains(self) -> list[DomainRecord]:
        self._tidy()
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

    def _tidy(self) -> None:
        """Drop the definitions guests stopped by the client left (destroy, shutdown
        or save of a persistent guest): on a Xen host a name is held only while its
        domain lives, and the kit restores images under names such a definition
        would hold. Run with every look at the truth, so after every step."""
        for dom in self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_INACTIVE):
            with contextlib.suppress(self._lv.libvirtError):
                if dom.name() != _DEFAULT and dom.isPersistent() and not dom.isActive():
                    dom.undefine()

    def journal(self) -> list[JournalEntry]:
        return []  # libvirt keeps none; the kit compares the other domains instead

    def _record(self, dom: Any) -> DomainRecord:
        return next(r for r in self.domains() if r.uuid == dom.UUIDString())

    def _free_name(self, name: str) -> None:
        """A guest stopped by the client may have left its definition: drop it."""
        try:
            dom = self._conn.lookupByName(name)
        except self._lv.libvirtError:
            return
        if not dom.isActive() and dom.isPersistent():
            dom.undefine()

    def _finish(self, dom: Any) -> None:
        """Drop the definition a stopped persistent guest leaves (a transient one is gone)."""
        try:
            if dom.name() != _DEFAULT and dom.isPersistent() and not dom.isActive():
                dom.undefine()
        except self._lv.libvirtError:
            pass

    # -- the outside world's actions ---------------------------------------------------------

    @_refusals
    def create(self, name: str, *, memory_kib: int = 262144, vcpus: int = 1) -> DomainRecord:
        self._free_name(name)
        uuid = str(_uuid.UUID(int=(0x7E57 << 112) | next(self._uuids)))
        xml = guest_xml(name, uuid, memory_kib=memory_kib, vcpus=vcpus)
        return self._record(start_guest(self._conn, xml, persistent=next(self._persistent)))

    @_refusals
    def destroy(self, domid: int) -> None:
        dom = self._conn.lookupByID(domid)
        dom.destroy()
        self._finish(dom)

    @_refusals
    def shutdown(self, domid: int) -> None:
        dom = self._conn.lookupByID(domid)
        dom.shutdown()
        self._finish(dom)

    @_refusals
    def pause(self, domid: int) -> None:
        self._conn.lookupByID(domid).suspend()

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
            self._conn.restore(path)
            os.unlink(path)
        return self._record(self._conn.lookupByUUIDString(uuid))

    def reboot(self, domid: int) -> DomainRecord:
        return self._move(domid)

    def migrate(self, domid: int) -> DomainRecord:
        return self._move(domid)

    @_refusals
    def save(self, domid: int, image: str) -> None:
        os.makedirs(self._image_dir, exist_ok=True)
        dom = self._conn.lookupByID(domid)
        dom.save(os.path.join(self._image_dir, image))
        self._finish(dom)

    @_refusals
    def restore(self, image: str) -> DomainRecord:
        path = os.path.join(self._image_dir, image)
        xml = self._conn.saveImageGetXMLDesc(path, 0)
        uuid = ET.fromstring(xml).findtext("uuid") or ""
        self._conn.restore(path)
        return self._record(self._conn.lookupByUUIDString(uuid))

    def reboot_host(self) -> None:
        if self._restart is None:
            raise NotImplementedError("only a libvirtd-served host can be rebooted")
        self._conn.close()
        self._restart()
        self._boots += 1
        self._conn, self._owns_conn = self._lv.open(self._uri), True
        self._pristine()
        self._conn.lookupByName(_DEFAULT).destroy()  # a booted host has no guests yet

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
            {"shutdown_paused"} | ({"reboot_host"} if restart is not None else set()))

    def connect(self, *, readonly: bool = False) -> Connection:
        return xvirt.open(self.uri, readonly=readonly)

    def close(self) -> None:
        self.host.close()
        # A domain object left in a reference cycle keeps its connection, and with it
        # the test driver's state, alive: the next history must start pristine.
        gc.collect()
