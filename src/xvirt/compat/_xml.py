"""libvirt's domain XML: written for one domain with ElementTree (never by pasting
strings, so names and paths cannot break the document), and read back for
``defineXML`` on xvirt's own hosts, as strictly as libvirt reads it.

The reader is the face's own, not the libvirt driver's ``config_from_xml``: the
face may not import a driver (tests/test_layers.py), and it must refuse what
libvirt refuses, with libvirt's codes, where the driver reads libvirt's own
output leniently.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import cast

from xvirt.compat import _constants as c
from xvirt.compat import _uuid
from xvirt.compat._errors import error, raw_error
from xvirt.model import (
    DomainMetadata,
    DomainSettings,
    HostCapabilities,
    Identity,
    MetadataElement,
    MetadataKind,
)
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

__all__ = ["DefinedXml", "capabilities_xml", "domain_xml", "metadata_element",
           "parse_domain_xml"]

# The bus a disk's target name implies, as libvirt's XML names it.
_BUSES = (("xvd", "xen"), ("vd", "virtio"), ("sd", "scsi"), ("hd", "ide"))


def domain_xml(hv_type: str, ident: Identity, config: DomainConfig, *, inactive: bool,
               settings: DomainSettings | None = None) -> str:
    """``<domain type=...>`` with name, UUID, title, description, metadata, memory,
    vCPUs (``current=`` when fewer than the maximum are online), OS type and devices,
    in libvirt's order; ``inactive`` (VIR_DOMAIN_XML_INACTIVE) leaves out the running
    ID. What :func:`parse_domain_xml` reads back is what was written."""
    root = ET.Element("domain", {"type": hv_type})
    if not inactive and ident.id >= 0:
        root.set("id", str(ident.id))
    ET.SubElement(root, "name").text = ident.name
    ET.SubElement(root, "uuid").text = ident.uuid
    most = config.vcpus
    if settings is not None:
        meta = settings.metadata
        if meta.title is not None:
            ET.SubElement(root, "title").text = meta.title
        if meta.description is not None:
            ET.SubElement(root, "description").text = meta.description
        if meta.elements:
            holder = ET.SubElement(root, "metadata")
            for element in meta.elements:
                holder.append(_namespaced(element))
        most = max(settings.max_vcpus, config.vcpus)
    ET.SubElement(root, "memory", unit="KiB").text = str(config.max_memory_kib)
    ET.SubElement(root, "currentMemory", unit="KiB").text = str(config.memory_kib)
    vcpu = ET.SubElement(root, "vcpu", placement="static")
    vcpu.text = str(most)
    if config.vcpus != most:
        vcpu.set("current", str(config.vcpus))
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type").text = config.os_type
    devices = ET.SubElement(root, "devices")
    for disk in config.disks:
        devices.append(_disk(disk))
    running = not inactive and ident.id >= 0
    for n, nic in enumerate(config.nics):
        # The host-side device of a running domain's NIC, named as Xen names it (the
        # name interfaceStats and the statistics give it).
        devices.append(_nic(nic, f"vif{ident.id}.{n}" if running else None))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _namespaced(element: MetadataElement) -> ET.Element:
    """A metadata element as libvirt writes it in a domain's XML: its root in its
    namespace, with the key as the prefix (``<app:foo xmlns:app="URI">``)."""
    node = ET.fromstring(element.xml)  # the host keeps what metadata_element made
    inside = f"{{{element.uri}}}"
    for part in node.iter():  # its descendants in the same namespace: the same prefix
        if part is node or part.tag.startswith(inside):
            part.tag = f"{element.key}:{_local(part.tag)}"
    node.attrib = {f"xmlns:{element.key}": element.uri, **node.attrib}
    return node


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


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


def _nic(nic: NicConfig, target: str | None) -> ET.Element:
    el = ET.Element("interface", type="bridge" if nic.bridge else "ethernet")
    ET.SubElement(el, "mac", address=nic.mac)
    if nic.bridge:
        ET.SubElement(el, "source", bridge=nic.bridge)
    if target is not None:
        ET.SubElement(el, "target", dev=target)
    return el


# -- reading (defineXML) ---------------------------------------------------------------------

#: virDomainVirtType and virDomainOSType as libvirt 9.0 spells them.
_VIRT_TYPES = frozenset({"none", "qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test",
                         "vmware", "hyperv", "vbox", "phyp", "parallels", "bhyve", "vz",
                         "hvf"})
_OS_TYPES = frozenset({"hvm", "xen", "linux", "exe", "uml", "xenpvh"})
#: What a Xen host runs, by libvirt's OS type -> xvirt's (xend's image kinds: a
#: paravirtualised guest is "linux", libvirt's old alias of "xen").
_XEN_OS_TYPES = {"hvm": "hvm", "xen": "linux", "linux": "linux"}
#: strtoull as virStrToLong_ullp takes it: leading blanks and a sign, nothing after.
_UNSIGNED = re.compile(r"[ \t\n\v\f\r]*\+?[0-9]+")
_MAC = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}")
_MAX_BYTES = 2**63 - 1  # libvirt's memory values are unsigned long long bytes, at most LLONG_MAX
_XEN_MAC_PREFIX = bytes((0x00, 0x16, 0x3E))  # libxl's prefix for the MACs it makes
_ELEMENT = MetadataKind.ELEMENT


@dataclass(frozen=True, slots=True)
class DefinedXml:
    """What ``defineXML`` takes from a domain XML: the name, the UUID if given (else the
    host makes one), and the configuration."""

    name: str
    uuid: str | None
    config: DomainConfig
    #: ``<vcpu>``: the most vCPUs it may bring online (``config.vcpus``, its ``current=``,
    #: are those online).
    max_vcpus: int | None = None
    metadata: DomainMetadata = field(default_factory=DomainMetadata)


def parse_domain_xml(text: str, hv_type: str) -> DefinedXml:
    """Read a domain XML for a host whose domain type is ``hv_type`` (``xen``), in
    libvirt's order of checks, refusing with libvirt's codes and messages.

    libvirt's post-parse rules apply: a missing, zero or too large
    ``<currentMemory>`` is ``<memory>``; ``<vcpu current=N>`` is the vCPU count the
    domain gets (xvirt keeps one count); an interface without a MAC gets one in Xen's
    prefix; a CD-ROM is read-only. ``<title>`` (one line), ``<description>`` and the
    namespaced elements of ``<metadata>`` (each with the prefix it is written with)
    are kept; blank text between a metadata element's children is not."""
    root, prefixes = _parse(text)
    name = _name(root)
    uuid = _uuid_of(root)
    virt = root.get("type")
    if virt is None:
        raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_DOMAIN, "missing domain type attribute")
    if virt not in _VIRT_TYPES:
        raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN,
                    f"invalid domain type {virt}")
    os_type = root.findtext("os/type") or ""
    if not os_type:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN, "an os <type> must be specified")
    if os_type not in _OS_TYPES:
        raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN,
                    f"unknown OS type '{os_type}'")
    max_kib = _memory(root, "memory") or 0
    if not max_kib:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN, "Memory size must be specified "
                    "via <memory> or in the <numa> configuration")
    current_kib = _memory(root, "currentMemory")
    vcpus, most = _vcpus(root)
    nics = tuple(_read_nic(n) for n in root.iterfind("devices/interface"))
    if virt != hv_type or os_type not in _XEN_OS_TYPES:
        raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN,
                    f"this host runs domains of type '{hv_type}' with OS type "
                    f"{', '.join(repr(t) for t in _XEN_OS_TYPES)}, not type '{virt}' with "
                    f"OS type '{os_type}'")
    if "/" in name:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN, f"name {name} cannot contain '/'")
    disks = tuple(_read_disk(d) for d in root.iterfind("devices/disk"))
    if not current_kib or current_kib > max_kib:
        current_kib = max_kib
    metadata = _metadata(root, prefixes)
    return DefinedXml(name, uuid, DomainConfig(current_kib, max_kib, vcpus,
                                               _XEN_OS_TYPES[os_type], disks, nics),
                      most, metadata)


def _metadata(root: ET.Element, prefixes: _Prefixes) -> DomainMetadata:
    """Title, description and metadata elements (those in a namespace: the API reaches
    no other), as libvirt keeps them."""
    title = root.findtext("title")
    if title is not None and "\n" in title:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN,
                    "Domain title can't contain newlines")
    meta = DomainMetadata(title or None, root.findtext("description") or None)
    holder = root.find("metadata")
    for n, node in enumerate(holder if holder is not None else [], 1):
        uri = node.tag[1:].partition("}")[0] if node.tag.startswith("{") else None
        if uri is None or meta.get(_ELEMENT, uri) is not None:
            continue  # no namespace, or a second of it: virDomainGetMetadata finds the first
        declared, first = prefixes
        key = declared.get(id(node), {}).get(uri) or first.get(uri) or f"ns{n}"
        meta = meta.replaced(_ELEMENT, _canonical(node), key=key, uri=uri)
    return meta


def metadata_element(text: str) -> str:
    """The XML ``virDomainSetMetadata`` is given for an element, as libvirt keeps it:
    one element, parsed (libvirt's XML errors), its root out of any namespace (the URI
    given with it is its namespace), its children indented two spaces a level, as libvirt
    gives it back (blank text between them is layout, not content)."""
    try:
        node = ET.fromstring(text)
    except ET.ParseError as exc:
        raise _xml_detail(exc, text, "metadata_xml") from None
    return _canonical(node)


def _canonical(node: ET.Element) -> str:
    copy = ET.fromstring(ET.tostring(node, encoding="unicode"))
    copy.tag = _local(copy.tag)
    for element in copy.iter():
        if element.text is not None and not element.text.strip() and len(element):
            element.text = None
        if element is not copy and element.tail is not None and not element.tail.strip():
            element.tail = None
    copy.tail = None
    ET.indent(copy, space="  ")  # as libvirt writes it back: children two spaces in
    return ET.tostring(copy, encoding="unicode")


#: The namespace prefixes of a document: those each element declares (by the element's
#: id), and, for a namespace no element in question declares, the first declared anywhere.
_Prefixes = tuple[dict[int, dict[str, str]], dict[str, str]]


def _parse(text: str) -> tuple[ET.Element, _Prefixes]:
    """The document's root, and its namespace prefixes (``_Prefixes``): a metadata
    element keeps the prefix it is written with (libvirt's key)."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start-ns", "start"))
    declared: dict[int, dict[str, str]] = {}
    first: dict[str, str] = {}
    pending: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError as exc:
        raise _xml_detail(exc, text, "domain_definition") from None
    for found in parser.read_events():
        event, item = cast(tuple[str, object], found)
        if event == "start-ns":  # declared by the element whose start comes next
            prefix, uri = cast(tuple[str, str], item)
            pending.setdefault(uri, prefix)
            first.setdefault(uri, prefix)
        elif event == "start":
            element = cast(ET.Element, item)
            if root is None:
                root = element
            if pending:
                declared[id(element)], pending = pending, {}
    assert root is not None, "a document that parsed has a root"
    if root.tag != "domain":
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_XML,
                    f"expecting root element of 'domain', not '{root.tag}'")
    return root, (declared, first)


def _xml_detail(exc: ET.ParseError, text: str, what: str) -> Exception:
    """libvirt's report of XML it cannot parse: the line, and a caret under the column."""
    line, column = exc.position
    reason = re.sub(r": line \d+, column \d+$", "", str(exc))
    lines = text.splitlines() or ["(null)"]
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return error(c.VIR_ERR_XML_DETAIL, c.VIR_FROM_DOMAIN,
                 f"({what}):{line}: {reason}\n{shown}\n{'-' * column}^")


def _name(root: ET.Element) -> str:
    name = root.findtext("name") or ""
    if not name:
        raise raw_error(c.VIR_ERR_NO_NAME, c.VIR_FROM_DOMAIN, "missing name information")
    bad = next((ch for ch in name if ord(ch) < 32 or ch == "\x7f"), None)
    if bad is not None:
        raise error(c.VIR_ERR_XML_DETAIL, c.VIR_FROM_XML, f"invalid char in name: {bad}")
    return name


def _uuid_of(root: ET.Element) -> str | None:
    text = root.findtext("uuid")
    if text is None:
        return None
    parsed = _uuid.parse(text)
    if parsed is None:
        raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_DOMAIN, "malformed uuid element")
    return parsed


def _unsigned(text: str) -> int | None:
    return int(text) if _UNSIGNED.fullmatch(text) else None


def _memory(root: ET.Element, tag: str) -> int | None:
    """``<tag unit=...>`` in KiB, rounded up as libvirt rounds (None: absent)."""
    node = root.find(tag)
    if node is None:
        return None
    text = node.text or ""
    value = _unsigned(text)
    if value is None:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_XML,
                    f"Invalid value '{text}' for element or attribute './{tag}[1]'")
    scale = _scale(node.get("unit"))
    total = value * scale
    if total > _MAX_BYTES:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_XML,
                    f"Invalid value '{text}' for element or attribute './{tag}[1]'")
    return -(-total // 1024)


def _scale(unit: str | None) -> int:
    """Bytes per unit, as virScaleInteger reads a suffix (KiB when none)."""
    if not unit:
        return 1024
    if unit.lower() in ("b", "byte", "bytes"):
        return 1
    tail = unit[1:].lower()
    base = 1024 if tail in ("", "ib") else 1000 if tail == "b" else 0
    power = "kmgtpe".find(unit[0].lower()) + 1
    if not base or not power:
        raise error(c.VIR_ERR_INVALID_ARG, c.VIR_FROM_NONE, f"unknown suffix '{unit}'")
    return int(base**power)


def _vcpus(root: ET.Element) -> tuple[int, int]:
    """(online, maximum): ``<vcpu current='N'>MAX</vcpu>``, 1 without one."""
    node = root.find("vcpu")
    if node is None:
        return 1, 1
    maximum = _unsigned(node.text or "")
    if maximum is None:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN,
                    "maximum vcpus count must be an integer")
    current_text = node.get("current")
    current = maximum if current_text is None else _unsigned(current_text)
    if current is None:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN,
                    "current vcpus count must be an integer")
    if current > maximum:
        raise error(c.VIR_ERR_CONFIG_UNSUPPORTED, c.VIR_FROM_DOMAIN,
                    "maximum vCPU count must not be less than current vCPU count")
    if current == 0:
        raise error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_DOMAIN,
                    "CPU IDs in <numa> exceed the <vcpu> count")
    return current, maximum


def _read_nic(node: ET.Element) -> NicConfig:
    kind = node.get("type")
    source = node.find("source")
    if kind == "bridge" and source is None:
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN,
                    "interface type='bridge' requires a 'source' element")
    mac_node = node.find("mac")
    mac = None if mac_node is None else mac_node.get("address")
    if mac is None:
        mac = (_XEN_MAC_PREFIX + secrets.token_bytes(3)).hex(":")
    elif not _MAC.fullmatch(mac):
        raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN, f"unable to parse mac address '{mac}'")
    else:
        given, mac = mac, ":".join(f"{int(part, 16):02x}" for part in mac.split(":"))
        if int(mac[:2], 16) & 1:
            raise error(c.VIR_ERR_XML_ERROR, c.VIR_FROM_DOMAIN,
                        f"expected unicast mac address, found multicast '{given}'")
    bridge = None if source is None else (source.get("bridge") or source.get("network"))
    return NicConfig(mac, bridge)


def _read_disk(node: ET.Element) -> DiskConfig:
    source = node.find("source")
    path = "" if source is None else (
        source.get("file") or source.get("dev") or source.get("name") or "")
    target = node.find("target")
    dev = None if target is None else target.get("dev")
    if not dev:
        if not path:
            raise raw_error(c.VIR_ERR_NO_TARGET, c.VIR_FROM_DOMAIN, "missing target information")
        raise error(c.VIR_ERR_NO_TARGET, c.VIR_FROM_DOMAIN, f"device {path}")
    readonly = node.find("readonly") is not None or node.get("device") == "cdrom"
    return DiskConfig(path, dev, readonly)



# -- the host's capabilities ------------------------------------------------------------------

#: What libvirt's Xen driver (libxl) names for each kind of guest.
_EMULATOR = "/usr/lib/xen/bin/qemu-system-i386"
_HVM_LOADER = "/usr/lib/xen/boot/hvmloader"


def capabilities_xml(caps: HostCapabilities) -> str:
    """``<capabilities>`` as libvirt's Xen driver writes it: the host's CPU (arch and
    topology from the node's facts), its NUMA cells and their CPUs, the migration
    transport, and one ``<guest>`` per OS type and architecture Xen offers."""
    h = caps.host
    root = ET.Element("capabilities")
    host = ET.SubElement(root, "host")
    cpu = ET.SubElement(host, "cpu")
    ET.SubElement(cpu, "arch").text = h.arch
    ET.SubElement(cpu, "topology", sockets=str(h.sockets_per_node), dies="1",
                  cores=str(h.cores_per_socket), threads=str(h.threads_per_core))
    ET.SubElement(host, "power_management")
    migration = ET.SubElement(host, "migration_features")
    ET.SubElement(migration, "live")
    transports = ET.SubElement(migration, "uri_transports")
    ET.SubElement(transports, "uri_transport").text = "xenmigr"
    topology = ET.SubElement(host, "topology")
    nodes = max(1, h.nodes)
    cells = ET.SubElement(topology, "cells", num=str(nodes))
    per_node = max(1, h.cpus // nodes)
    threads = max(1, h.threads_per_core)
    for n in range(nodes):
        cell = ET.SubElement(cells, "cell", id=str(n))
        ET.SubElement(cell, "memory", unit="KiB").text = str(h.memory_kib // nodes)
        ids = range(n * per_node, min(h.cpus, (n + 1) * per_node))
        cpus = ET.SubElement(cell, "cpus", num=str(len(ids)))
        for i in ids:
            core = i // threads
            first = core * threads
            siblings = f"{first}-{first + threads - 1}" if threads > 1 else str(first)
            ET.SubElement(cpus, "cpu", id=str(i), socket_id=str(n), die_id="0",
                          core_id=str(core % max(1, h.cores_per_socket)), siblings=siblings)
    for guest in caps.guests:
        node = ET.SubElement(root, "guest")
        ET.SubElement(node, "os_type").text = guest.os_type
        arch = ET.SubElement(node, "arch", name=guest.arch)
        ET.SubElement(arch, "wordsize").text = str(guest.wordsize)
        ET.SubElement(arch, "emulator").text = _EMULATOR
        if guest.os_type == "hvm":
            ET.SubElement(arch, "loader").text = _HVM_LOADER
        ET.SubElement(arch, "machine").text = "xenfv" if guest.os_type == "hvm" else "xenpv"
        ET.SubElement(arch, "domain", type="xen")
        features = ET.SubElement(node, "features")
        if guest.pae:
            ET.SubElement(features, "pae")
        if guest.nonpae:
            ET.SubElement(features, "nonpae")
        if guest.os_type == "hvm":
            ET.SubElement(features, "acpi", default="on", toggle="yes")
            ET.SubElement(features, "apic", default="on", toggle="no")
            ET.SubElement(features, "hap", default="on", toggle="yes")
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"
