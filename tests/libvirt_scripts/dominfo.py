#!/usr/bin/env python3
"""Print information about a domain, as libvirt-python's examples/dominfo.py does.

    dominfo.py URI NAME
"""
import sys
from xml.dom import minidom

import libvirt


def print_section(title):
    print("\n%s" % title)
    print("=" * 60)


def print_entry(key, value):
    print("%-10s %-10s" % (key, value))


def print_xml(key, ctx, path):
    res = ctx.getElementsByTagName(path)
    if not res:
        return None
    value = res[0].firstChild.data if res[0].firstChild else ""
    print_entry(key, value)
    return value


if len(sys.argv) != 3:
    print("Usage: %s URI DOMAIN" % sys.argv[0])
    sys.exit(2)
uri, name = sys.argv[1:]

try:
    conn = libvirt.openReadOnly(uri)
except libvirt.libvirtError:
    print("Failed to open connection to the hypervisor")
    sys.exit(1)

try:
    dom = conn.lookupByName(name)
except libvirt.libvirtError as e:
    print("Domain %s is not running (error %d)" % (name, e.get_error_code()))
    sys.exit(0)

info = dom.info()
print_section("Domain info")
print_entry("State:", info[0])
print_entry("MaxMem:", info[1])
print_entry("UsedMem:", info[2])
print_entry("VCPUs:", info[3])

xmldesc = dom.XMLDesc(0)
doc = minidom.parseString(xmldesc)
print_section("Kernel")
print_xml("Name:", doc, "name")
print_xml("UUID:", doc, "uuid")
print_xml("Memory:", doc, "memory")
print_xml("VCPU:", doc, "vcpu")
print_xml("Type:", doc, "type")

print_section("Devices")
for disk in doc.getElementsByTagName("disk"):
    source = disk.getElementsByTagName("source")
    target = disk.getElementsByTagName("target")
    src = source[0].getAttribute("file") or source[0].getAttribute("dev") if source else ""
    print_entry("disk", "%s -> %s" % (src, target[0].getAttribute("dev") if target else ""))
for nic in doc.getElementsByTagName("interface"):
    mac = nic.getElementsByTagName("mac")
    bridge = nic.getElementsByTagName("source")
    print_entry("interface", "%s on %s" % (
        mac[0].getAttribute("address") if mac else "",
        (bridge[0].getAttribute("bridge") or bridge[0].getAttribute("network")) if bridge else ""))
conn.close()
