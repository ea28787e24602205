#!/usr/bin/env python3
"""A domain's configuration, as a provisioning script reads and changes it.

    domain_config.py URI

XMLDesc of a created domain parsed for name, UUID, memory, vCPUs, OS, disk and NIC
(and fed back to defineXML); vcpus, vcpusFlags and setVcpusFlags live and in the
persistent configuration; the scheduler's type and parameters; metadata and
setMetadata (an element in a namespace, the title, the description).
"""
import os
import xml.etree.ElementTree as ET

import libvirt
from _common import (
    PREFIX,
    UUID_HEAD,
    domain_kind,
    domain_xml,
    forget,
    make_disk,
    quiet,
    remove,
    say,
    uri_from_argv,
    workdir,
)

SCRIPT = "config"
NAME = f"{PREFIX}-{SCRIPT}-guest"
UUID = UUID_HEAD + "00000000d001"
DEFINED = f"{PREFIX}-{SCRIPT}-defined"
DEFINED_UUID = UUID_HEAD + "00000000d002"
NS = "http://xvirt.example/face-scripts"

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)


def summary(dom, flags=0):
    """What a provisioning script reads back from XMLDesc: no addresses, aliases or
    paths of the host's choosing."""
    root = ET.fromstring(dom.XMLDesc(flags))
    memory, current, vcpu = root.find("memory"), root.find("currentMemory"), root.find("vcpu")
    disks = root.findall("devices/disk")
    nics = root.findall("devices/interface")
    return {
        "type is the one asked for": root.get("type") == kind,
        "id given": root.get("id") is not None,
        "name": root.findtext("name"),
        "uuid": root.findtext("uuid"),
        "memory": (memory.get("unit"), memory.text),
        "currentMemory": (current.get("unit"), current.text),
        "vcpu": (vcpu.text, vcpu.get("current")),
        "os type": root.findtext("os/type"),
        "disks": [(d.get("type"), d.get("device"),
                   os.path.basename(d.find("source").get("file"))) for d in disks],
        "nic macs": [n.find("mac").get("address") for n in nics],
    }


def show(label, dom, flags=0):
    for key, value in summary(dom, flags).items():
        print(f"{label} XMLDesc {key}: {value}", flush=True)


try:
    xml = domain_xml(kind, NAME, UUID, make_disk(files, NAME), mac_tail="d1")
    dom = conn.createXML(xml, 0)
    show("created", dom)
    show("created inactive", dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
    say("the created XML's disk target", lambda: [t.get("dev") for t in ET.fromstring(
        dom.XMLDesc(0)).iter("target") if t.get("dev") in ("vda", "xvda")])

    say("maxVcpus", dom.maxVcpus)
    say("vcpus count", lambda: len(dom.vcpus()[0]))
    say("vcpus numbers", lambda: [v[0] for v in dom.vcpus()[0]])
    # running or blocked is the hypervisor's moment-to-moment view: only its range is stable
    say("vcpus states are virVcpuState values", lambda: all(
        v[1] in (libvirt.VIR_VCPU_OFFLINE, libvirt.VIR_VCPU_RUNNING, libvirt.VIR_VCPU_BLOCKED)
        for v in dom.vcpus()[0]))
    say("vcpusFlags(0)", lambda: dom.vcpusFlags(0))
    say("vcpusFlags(LIVE)", lambda: dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE))
    say("vcpusFlags(MAXIMUM)", lambda: dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM))
    say("setVcpusFlags(2, LIVE)", lambda: dom.setVcpusFlags(2, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    say("vcpusFlags after", lambda: dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE))
    say("info vcpus after", lambda: dom.info()[3])
    say("setVcpusFlags(3, LIVE) beyond the maximum",
        lambda: dom.setVcpusFlags(3, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    say("setVcpusFlags(2, CONFIG) of a transient domain",
        lambda: dom.setVcpusFlags(2, libvirt.VIR_DOMAIN_AFFECT_CONFIG))

    say("schedulerType", dom.schedulerType)
    say("schedulerParameters", lambda: sorted(dom.schedulerParameters().items()))
    say("schedulerParameters are ints", lambda: all(
        isinstance(v, int) for v in dom.schedulerParameters().values()))
    say("setSchedulerParameters weight", lambda: dom.setSchedulerParameters({"weight": 100}))

    say("metadata before", lambda: dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0))
    say("setMetadata element", lambda: dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<fav colour='blue'>1</fav>", "x", NS, 0))
    say("metadata element", lambda: dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0))
    say("metadata of another namespace", lambda: dom.metadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS + "/other", 0))
    say("setMetadata title", lambda: dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_TITLE, "Face script guest", None, None, 0))
    say("metadata title", lambda: dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0))
    say("metadata description", lambda: dom.metadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, 0))
    say("XMLDesc title", lambda: ET.fromstring(dom.XMLDesc(0)).findtext("title"))
    say("XMLDesc metadata", lambda: [(e.tag, e.text) for e in ET.fromstring(
        dom.XMLDesc(0)).find("metadata")])
    say("setMetadata element removed", lambda: dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, NS, 0))
    say("metadata element after removal", lambda: dom.metadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0))
    say("destroy", dom.destroy)

    # The XML read back round-trips: defined from it, the same domain comes back.
    defined = conn.defineXML(xml.replace(NAME, DEFINED).replace(UUID, DEFINED_UUID))
    show("defined", defined)
    say("defineXML of its own XMLDesc", lambda: conn.defineXML(defined.XMLDesc(0)).UUIDString())
    say("vcpusFlags(CONFIG)", lambda: defined.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    say("vcpusFlags(CONFIG|MAXIMUM)", lambda: defined.vcpusFlags(
        libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM))
    say("setVcpusFlags(2, CONFIG)", lambda: defined.setVcpusFlags(
        2, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    say("vcpusFlags(CONFIG) after", lambda: defined.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    say("XMLDesc vcpu after", lambda: summary(defined)["vcpu"])
    say("setVcpusFlags(2, LIVE) of an inactive domain", lambda: defined.setVcpusFlags(
        2, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    say("setMetadata description, config", lambda: defined.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "kept", None, None,
        libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    say("metadata description, config", lambda: defined.metadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
    say("undefine", defined.undefine)
finally:
    forget(conn, SCRIPT)
    remove(files)
say("close", lambda: conn.close() >= 0)
