"""Domain XML (libvirt's configuration format) <-> DomainConfig, and the host's
capabilities XML, which says what domain XML this host accepts.

XML is built with ``xml.etree`` only, never pasted from strings: a name or a path
holding ``<``, ``&`` or quotes is escaped as any XML writer (libvirt's own
included) escapes it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from xvirt.drivers.base import sendable
from xvirt.errors import InvalidArgumentError, ProtocolError
from xvirt.model import parse_uuid
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

__all__ = ["GuestKind", "check_definition", "choose_guest", "config_from_xml", "domain_xml",
           "guest_kinds", "parse_domain", "uuid_from_xml"]

_UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
          "m": 1024, "mib": 1024, "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2,
          "gb": 1000**3 / 1024, "t": 1024**3, "tib": 1024**3, "tb": 1000**4 / 1024}


def parse_domain(text: str, uri: str) -> ET.Element:
    """The root of a domain XML from libvirt; ProtocolError when it is not one."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ProtocolError(f"malformed domain XML from libvirt: {exc}", uri=uri) from None
    if root.tag != "domain":
        raise ProtocolError(f"expected <domain> XML from libvirt, got <{root.tag}>", uri=uri)
    return root


def _kib(root: ET.Element, tag: str, uri: str) -> int | None:
    node = root.find(tag)
    if node is None:
        return None
    unit = (node.get("unit") or "KiB").lower()
    try:
        return int(int((node.text or "").strip()) * _UNITS[unit])
    except (ValueError, KeyError):
        raise ProtocolError(
            f"domain XML has <{tag}> {node.text!r} in unit {unit!r}, not a size", uri=uri
        ) from None


def config_from_xml(text: str, *, uri: str) -> DomainConfig:
    root = parse_domain(text, uri)
    max_kib = _kib(root, "memory", uri)
    current_kib = _kib(root, "currentMemory", uri)
    if max_kib is None:
        raise ProtocolError("domain XML has no <memory>", uri=uri)
    try:
        vcpus = int((root.findtext("vcpu") or "1").strip())
    except ValueError:
        raise ProtocolError(f"domain XML has <vcpu> {root.findtext('vcpu')!r}", uri=uri) from None
    disks = []
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        if target is None or not target.get("dev"):
            continue  # a disk without a guest device is not one the guest sees
        path = "" if source is None else (
            source.get("file") or source.get("dev") or source.get("name") or "")
        disks.append(DiskConfig(path, target.get("dev", ""), disk.find("readonly") is not None))
    nics = []
    for nic in root.iterfind("devices/interface"):
        mac = nic.find("mac")
        source = nic.find("source")
        bridge = None if source is None else (source.get("bridge") or source.get("network"))
        nics.append(NicConfig("" if mac is None else mac.get("address", ""), bridge))
    return DomainConfig(
        memory_kib=current_kib if current_kib is not None else max_kib,
        max_memory_kib=max_kib,
        vcpus=vcpus,
        os_type=(root.findtext("os/type") or "linux").strip(),
        disks=tuple(disks),
        nics=tuple(nics),
    )


def uuid_from_xml(text: str, *, uri: str) -> str:
    uuid = (parse_domain(text, uri).findtext("uuid") or "").strip()
    if not uuid:
        raise ProtocolError("domain XML has no <uuid>", uri=uri)
    return uuid


# -- capabilities -> the kind of guest to define --------------------------------------------


@dataclass(frozen=True, slots=True)
class GuestKind:
    """One way this host runs guests, from its capabilities: a ``<guest>``'s OS type and
    arch, one of its ``<domain>`` types, and the emulator for that type (if any)."""

    os_type: str
    arch: str
    domain_type: str
    emulator: str | None = None


def _caps_root(text: str, uri: str) -> ET.Element:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ProtocolError(f"malformed capabilities XML from libvirt: {exc}", uri=uri) from None
    if root.tag != "capabilities":
        raise ProtocolError(f"expected <capabilities> XML from libvirt, got <{root.tag}>",
                            uri=uri)
    return root


def guest_kinds(caps: str, *, uri: str) -> tuple[tuple[GuestKind, ...], str | None]:
    """Every guest kind the capabilities offer, in their order, and the host's arch."""
    root = _caps_root(caps, uri)
    kinds = []
    for guest in root.iterfind("guest"):
        os_type = (guest.findtext("os_type") or "").strip()
        for arch in guest.iterfind("arch"):
            default = (arch.findtext("emulator") or "").strip() or None
            for domain in arch.iterfind("domain"):
                kind = domain.get("type")
                if os_type and arch.get("name") and kind:
                    own = (domain.findtext("emulator") or "").strip() or None
                    kinds.append(GuestKind(os_type, arch.get("name", ""), kind, own or default))
    host_arch = (root.findtext("host/cpu/arch") or "").strip() or None
    return tuple(kinds), host_arch


# xvirt's OS types are xend's: "linux" is a paravirtualised guest, which libvirt calls
# "xen" (Xen runs it so); a host that runs no PV guest (QEMU: full virtualisation only)
# runs it as "hvm", booting from its disk as any PC does.
_OS_TYPES = {"linux": ("linux", "xen", "hvm"), "xen": ("xen", "hvm")}


def choose_guest(caps: str, os_type: str, *, uri: str, name: str | None = None) -> GuestKind:
    """The guest kind to define a domain of ``os_type`` as: the first OS type of its
    preferences (see ``_OS_TYPES``) the host offers, on the host's own arch where it is
    offered, as ``kvm`` where offered (QEMU lists ``qemu``, TCG, and ``kvm`` where
    QEMU may use /dev/kvm), else the first domain type offered (``test``, ``xen``...)."""
    kinds, host_arch = guest_kinds(caps, uri=uri)
    for wanted in _OS_TYPES.get(os_type, (os_type,)):
        offered = [k for k in kinds if k.os_type == wanted]
        if not offered:
            continue
        arch = host_arch if any(k.arch == host_arch for k in offered) else offered[0].arch
        on_arch = [k for k in offered if k.arch == arch]
        return next((k for k in on_arch if k.domain_type == "kvm"), on_arch[0])
    have = sorted({k.os_type for k in kinds})
    raise InvalidArgumentError(
        f"cannot define a guest of OS type {os_type!r}: this host runs {have}",
        uri=uri, op="define", name=name)


# -- DomainConfig -> domain XML ---------------------------------------------------------------

# What XML 1.0 cannot carry, escaped or not (libxml2 refuses it; libvirt's own writer
# drops it silently, which would define the domain under another name). In an
# element's text a carriage return also cannot travel: the parser reads it back as a
# newline (ElementTree writes it as a reference in attributes only).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NOT_XML_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def _text(value: object, what: str, *, uri: str, name: str | None,
          element: bool = False) -> str:
    """``value``, if it is a string libvirt can receive in its XML, as an element's
    text (``element``) or as an attribute."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, not {value!r}", uri=uri,
                                   op="define", name=name)
    if not sendable(value) or (_NOT_XML_TEXT if element else _NOT_XML).search(value):
        shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InvalidArgumentError(
            f"{what} {shown!r} holds a character XML cannot carry (a control character or a "
            "lone surrogate), so libvirt cannot be sent it", uri=uri, op="define", name=name)
    return value


def _count(value: object, what: str, *, uri: str, name: str | None, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidArgumentError(f"{what} must be an integer of at least {least}, not "
                                   f"{value!r}", uri=uri, op="define", name=name)
    return value


def check_definition(name: str, config: DomainConfig, uuid: str | None, *,
                     uri: str) -> str | None:
    """Refuse (InvalidArgumentError) what cannot go into domain XML, or what libvirt
    would change silently rather than refuse: it clamps a current memory above the
    maximum and drops control characters. Returns the UUID in canonical form. libvirt
    checks the rest itself (a '/' or a newline in a name, a malformed MAC...)."""
    shown = name if isinstance(name, str) and sendable(name) else None
    _text(name, "the name", uri=uri, name=shown, element=True)
    if not name:
        raise InvalidArgumentError("a domain needs a name", uri=uri, op="define")
    canonical = None
    if uuid is not None:
        try:
            canonical = parse_uuid(uuid)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(exc.message, uri=uri, op="define", name=name,
                                       uuid=exc.uuid) from None
    if not isinstance(config, DomainConfig):
        raise InvalidArgumentError(f"a configuration is a DomainConfig, not {config!r}",
                                   uri=uri, op="define", name=name)
    memory = _count(config.memory_kib, "memory_kib", uri=uri, name=name)
    max_memory = _count(config.max_memory_kib, "max_memory_kib", uri=uri, name=name)
    if memory > max_memory:
        raise InvalidArgumentError(
            f"memory_kib {memory} is above max_memory_kib {max_memory}", uri=uri,
            op="define", name=name)
    _count(config.vcpus, "vcpus", uri=uri, name=name)
    _text(config.os_type, "the OS type", uri=uri, name=name, element=True)
    for disk in config.disks:
        if not isinstance(disk, DiskConfig) or not isinstance(disk.readonly, bool):
            raise InvalidArgumentError(f"a disk is a DiskConfig, not {disk!r}", uri=uri,
                                       op="define", name=name)
        for value, what in ((disk.source, "a disk's source"), (disk.target, "a disk's target")):
            if not _text(value, what, uri=uri, name=name):
                raise InvalidArgumentError(f"{what} is empty", uri=uri, op="define", name=name)
    for nic in config.nics:
        if not isinstance(nic, NicConfig):
            raise InvalidArgumentError(f"an interface is a NicConfig, not {nic!r}", uri=uri,
                                       op="define", name=name)
        _text(nic.mac, "a MAC address", uri=uri, name=name)  # empty: libvirt makes one
        if nic.bridge is not None and not _text(nic.bridge, "a bridge", uri=uri, name=name):
            raise InvalidArgumentError("a bridge's name is empty (None: no bridge)", uri=uri,
                                       op="define", name=name)
    return canonical


def domain_xml(name: str, config: DomainConfig, uuid: str | None, guest: GuestKind, *,
               uri: str) -> str:
    """The domain XML that defines ``name`` with ``config`` as a ``guest``: memory,
    vCPUs, OS type, disks and NICs, nothing else (libvirt fills its defaults: machine
    type, boot from the first disk, clock, on_poweroff/on_reboot). Without a UUID
    libvirt makes one. Checked first (:func:`check_definition`)."""
    uuid = check_definition(name, config, uuid, uri=uri)
    dom = ET.Element("domain", type=guest.domain_type)
    ET.SubElement(dom, "name").text = name
    if uuid is not None:
        ET.SubElement(dom, "uuid").text = uuid
    ET.SubElement(dom, "memory", unit="KiB").text = str(config.max_memory_kib)
    ET.SubElement(dom, "currentMemory", unit="KiB").text = str(config.memory_kib)
    ET.SubElement(dom, "vcpu").text = str(config.vcpus)
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch=guest.arch).text = guest.os_type
    devices = ET.SubElement(dom, "devices")
    if guest.emulator is not None:
        ET.SubElement(devices, "emulator").text = guest.emulator
    for disk in config.disks:
        block = disk.source.startswith("/dev/")
        node = ET.SubElement(devices, "disk", type="block" if block else "file",
                             device="disk")
        ET.SubElement(node, "source", {"dev" if block else "file": disk.source})
        # No bus: libvirt takes it from the target's prefix (vd virtio, sd scsi, hd ide,
        # xvd xen) and refuses one its hypervisor lacks.
        ET.SubElement(node, "target", dev=disk.target)
        if disk.readonly:
            ET.SubElement(node, "readonly")
    for nic in config.nics:
        mac = nic.mac
        if nic.bridge is not None:
            node = ET.SubElement(devices, "interface", type="bridge")
        else:  # no bridge: QEMU's own user-mode network (Xen has none: a routed vif)
            node = ET.SubElement(devices, "interface",
                                 type="ethernet" if guest.domain_type == "xen" else "user")
        if mac:  # none: libvirt makes one
            ET.SubElement(node, "mac", address=mac)
        if nic.bridge is not None:
            ET.SubElement(node, "source", bridge=nic.bridge)
    return ET.tostring(dom, encoding="unicode")
