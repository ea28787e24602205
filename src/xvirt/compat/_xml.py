"""The libvirt domain XML of one domain, built with ElementTree (never by pasting
strings, so names and paths cannot break the document)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xvirt.model import Identity
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

__all__ = ["domain_xml"]

# The bus a disk's target name implies, as libvirt's XML names it.
_BUSES = (("xvd", "xen"), ("vd", "virtio"), ("sd", "scsi"), ("hd", "ide"))


def domain_xml(hv_type: str, ident: Identity, config: DomainConfig, *, inactive: bool) -> str:
    """``<domain type=...>`` with name, UUID, memory, vCPUs, OS type and devices;
    ``inactive`` (VIR_DOMAIN_XML_INACTIVE) leaves out the running ID."""
    root = ET.Element("domain", {"type": hv_type})
    if not inactive and ident.id >= 0:
        root.set("id", str(ident.id))
    ET.SubElement(root, "name").text = ident.name
    ET.SubElement(root, "uuid").text = ident.uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(config.max_memory_kib)
    ET.SubElement(root, "currentMemory", unit="KiB").text = str(config.memory_kib)
    ET.SubElement(root, "vcpu", placement="static").text = str(config.vcpus)
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type").text = config.os_type
    devices = ET.SubElement(root, "devices")
    for disk in config.disks:
        devices.append(_disk(disk))
    for nic in config.nics:
        devices.append(_nic(nic))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _disk(disk: DiskConfig) -> ET.Element:
    el = ET.Element("disk", type="file", device="disk")
    ET.SubElement(el, "source", file=disk.source)
    target = ET.SubElement(el, "target", dev=disk.target)
    bus = next((b for prefix, b in _BUSES if disk.target.startswith(prefix)), None)
    if bus is not None:
        target.set("bus", bus)
    if disk.readonly:
        ET.SubElement(el, "readonly")
    return el


def _nic(nic: NicConfig) -> ET.Element:
    el = ET.Element("interface", type="bridge" if nic.bridge else "ethernet")
    ET.SubElement(el, "mac", address=nic.mac)
    if nic.bridge:
        ET.SubElement(el, "source", bridge=nic.bridge)
    return el
