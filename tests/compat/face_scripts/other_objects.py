#!/usr/bin/env python3
"""What a host has besides domains: networks, storage pools and volumes, interfaces,
node devices, secrets and network filters, as an inventory script lists them.

    other_objects.py URI

Where the driver has none of a kind it says so with VIR_ERR_NO_SUPPORT (error 3), as
libvirt's own drivers do. A domain whose NIC is on the host's first network shows that
network back in its XML.
"""
import xml.etree.ElementTree as ET

import libvirt
from _common import PREFIX, UUID_HEAD, domain_kind, forget, quiet, say, uri_from_argv

SCRIPT = "objects"
NIC_DOMAIN = f"{PREFIX}-{SCRIPT}-on-a-network"
NIC_UUID = UUID_HEAD + "0000000000b1"

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)


def names(objects):
    return sorted(o.name() for o in objects)


def first_network():
    return conn.networkLookupByName(sorted(conn.listNetworks())[0])


def first_pool():
    return conn.storagePoolLookupByName(sorted(conn.listStoragePools())[0])


say("numOfNetworks", conn.numOfNetworks)
say("listNetworks", lambda: sorted(conn.listNetworks()))
say("listDefinedNetworks", lambda: sorted(conn.listDefinedNetworks()))
say("listAllNetworks", lambda: names(conn.listAllNetworks(0)))
say("network isActive, isPersistent", lambda: (first_network().isActive(),
                                               first_network().isPersistent()))
say("network bridgeName", lambda: first_network().bridgeName())
say("network XMLDesc name", lambda: ET.fromstring(first_network().XMLDesc(0)).findtext("name"))
say("networkLookupByName missing", lambda: conn.networkLookupByName(f"{PREFIX}-missing"))

say("numOfStoragePools", conn.numOfStoragePools)
say("listStoragePools", lambda: sorted(conn.listStoragePools()))
say("listAllStoragePools", lambda: names(conn.listAllStoragePools(0)))
say("pool info state", lambda: first_pool().info()[0])
say("pool listVolumes", lambda: sorted(first_pool().listVolumes()))
say("pool listAllVolumes", lambda: names(first_pool().listAllVolumes(0)))
say("storagePoolLookupByName missing", lambda: conn.storagePoolLookupByName(f"{PREFIX}-missing"))

say("listInterfaces", lambda: sorted(conn.listInterfaces()))
say("listAllInterfaces", lambda: names(conn.listAllInterfaces(0)))
say("listDevices", lambda: sorted(conn.listDevices(None, 0)))
say("listAllDevices", lambda: names(conn.listAllDevices(0)))
say("listSecrets", lambda: sorted(conn.listSecrets()))
say("listNWFilters", lambda: sorted(conn.listNWFilters()))


def domain_on_a_network():
    """Define a domain on the host's first network: its XML names the network."""
    network = sorted(conn.listNetworks())
    if not network:
        return "no network"
    xml = (f"<domain type='{domain_kind(conn)}'><name>{NIC_DOMAIN}</name><uuid>{NIC_UUID}</uuid>"
           "<memory unit='MiB'>128</memory><os><type>hvm</type></os><devices>"
           f"<interface type='network'><source network='{network[0]}'/></interface>"
           "</devices></domain>")
    dom = conn.defineXML(xml)
    try:
        nic = ET.fromstring(dom.XMLDesc(0)).find("devices/interface")
        return nic.get("type"), nic.find("source").get("network")
    finally:
        dom.undefine()


say("a domain's NIC on a network", domain_on_a_network)
forget(conn, SCRIPT)
say("close", lambda: conn.close() >= 0)
