"""Domain XML (libvirt's configuration format) -> DomainConfig."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xvirt.errors import ProtocolError
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

__all__ = ["config_from_xml", "uuid_from_xml"]

_UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
          "m": 1024, "mib": 1024, "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2,
          "gb": 1000**3 / 1024, "t": 1024**3, "tib": 1024**3, "tb": 1000**4 / 1024}


def _parse(text: str, uri: str) -> ET.Element:
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
    root = _parse(text, uri)
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
    uuid = (_parse(text, uri).findtext("uuid") or "").strip()
    if not uuid:
        raise ProtocolError("domain XML has no <uuid>", uri=uri)
    return uuid
