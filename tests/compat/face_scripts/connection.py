#!/usr/bin/env python3
"""Connection information, as a monitoring script reads it.

    connection.py URI

The driver's name, libvirt's version, the host's capabilities (a few stable fields,
checked against getInfo), node information and node memory and CPU statistics (their
keys: the figures move).
"""
import xml.etree.ElementTree as ET

import libvirt
from _common import domain_kind, quiet, say, uri_from_argv

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
say("getType", conn.getType)
say("getURI is the URI opened", lambda: conn.getURI() == uri)
say("getVersion type", lambda: type(conn.getVersion()).__name__)
say("getLibVersion", conn.getLibVersion)
say("libvirt.getVersion", libvirt.getVersion)
say("isAlive", conn.isAlive)


def answer(call):
    """``call()``, or None where it raises libvirtError (``say`` printed the error)."""
    try:
        return call()
    except libvirt.libvirtError:
        return None


say("getInfo types", lambda: [type(v).__name__ for v in conn.getInfo()])
info = answer(conn.getInfo)
if info is not None:
    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = info
    say("getInfo cpus = nodes*sockets*cores*threads",
        lambda: cpus == nodes * sockets * cores * threads)
    say("getInfo memory and MHz positive", lambda: memory_mib > 0 and mhz > 0)

say("getCapabilities root", lambda: ET.fromstring(conn.getCapabilities()).tag)
caps = answer(lambda: ET.fromstring(conn.getCapabilities()))
if caps is not None:
    host_arch = caps.findtext("host/cpu/arch")
    guests = caps.findall("guest")
    say("host arch given", lambda: bool(host_arch))
    say("getInfo model is the host arch", lambda: info is not None and info[0] == host_arch)
    say("guests offered", lambda: len(guests) > 0)
    say("guest os type hvm offered", lambda: "hvm" in {g.findtext("os_type") for g in guests})
    say("every guest names arch and domain type", lambda: all(
        g.find("arch") is not None and g.find("arch").get("name")
        and g.find("arch/domain") is not None and g.find("arch/domain").get("type")
        for g in guests))
    say("the host arch has a guest", lambda: host_arch in {
        g.find("arch").get("name") for g in guests})
    say("this driver's domain type offered", lambda: domain_kind(conn) in {
        d.get("type") for d in caps.iter("domain")})
    say("topology cells = getInfo nodes", lambda: info is not None and int(
        caps.find("host/topology/cells").get("num")) == info[4])

say("getFreeMemory positive", lambda: conn.getFreeMemory() > 0)
say("getMemoryStats keys", lambda: sorted(conn.getMemoryStats(
    libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)))
say("getMemoryStats values are ints", lambda: all(isinstance(v, int) for v in conn.getMemoryStats(
    libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS).values()))
say("getCPUStats keys", lambda: sorted(conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)))
say("getCPUStats values are ints", lambda: all(isinstance(v, int) for v in conn.getCPUStats(
    libvirt.VIR_NODE_CPU_STATS_ALL_CPUS).values()))
say("getCPUStats of cpu 0 keys", lambda: sorted(conn.getCPUStats(0)))
say("close", lambda: conn.close() >= 0)
