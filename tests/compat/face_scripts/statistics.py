#!/usr/bin/env python3
"""A running domain's statistics, as a monitoring script reads them.

    statistics.py URI

A transient domain with one disk and one NIC: blockStats by the disk's target and by its
source path (both read from XMLDesc), blockStatsFlags, blockInfo, interfaceStats by the
NIC's MAC, memoryStats, getCPUStats (total and per CPU), and the bulk calls
getAllDomainStats and domainListGetStats, group by group. Counters move between two
calls, so what is printed is each answer's shape: its type, its length, its keys (a
device's or vCPU's number written <n>) and whether its figures are ints; and the errors
of a disk or NIC the domain does not have, and of a domain that is gone.
"""
import re
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

SCRIPT = "statistics"
NAME = f"{PREFIX}-{SCRIPT}-guest"
UUID = UUID_HEAD + "000000005701"
GROUPS = (("state", libvirt.VIR_DOMAIN_STATS_STATE),
          ("cpu", libvirt.VIR_DOMAIN_STATS_CPU_TOTAL),
          ("balloon", libvirt.VIR_DOMAIN_STATS_BALLOON),
          ("vcpu", libvirt.VIR_DOMAIN_STATS_VCPU),
          ("net", libvirt.VIR_DOMAIN_STATS_INTERFACE),
          ("block", libvirt.VIR_DOMAIN_STATS_BLOCK))

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)


def shape(value):
    """A tuple's or list's type, length, and whether every figure is an int."""
    return type(value).__name__, len(value), all(isinstance(v, int) for v in value)


def typed(record):
    """Every key's value is a str (a device's name or path) or an int, as libvirt's."""
    return all(isinstance(v, str if re.search(r"\.(name|path)$", k) else int)
               for k, v in record.items())


def patterns(keys):
    return sorted({re.sub(r"^(vcpu|net|block)\.\d+\.", r"\1.<n>.", k) for k in keys})


def record_of(dom, stats):
    (found,) = [r for d, r in conn.domainListGetStats([dom], stats) if d.name() == NAME]
    return found


try:
    dom = conn.createXML(domain_xml(kind, NAME, UUID, make_disk(files, NAME),
                                    mac_tail="57"), 0)
    devices = ET.fromstring(dom.XMLDesc(0)).find("devices")
    disk = devices.find("disk")
    target, source = disk.find("target").get("dev"), disk.find("source").get("file")
    mac = devices.find("interface/mac").get("address")

    say("blockStats by target", lambda: shape(dom.blockStats(target)))
    say("blockStats by source path", lambda: shape(dom.blockStats(source)))
    say("blockStats of a disk it has not", lambda: dom.blockStats("nodisk"))
    say("blockStats of NULL", lambda: dom.blockStats(None))
    say("blockStatsFlags keys", lambda: sorted(dom.blockStatsFlags(target)))
    say("blockInfo", lambda: shape(dom.blockInfo(target)))
    say("blockInfo of a disk it has not", lambda: dom.blockInfo("nodisk"))
    say("interfaceStats by MAC", lambda: shape(dom.interfaceStats(mac)))
    say("interfaceStats of an interface it has not", lambda: dom.interfaceStats("nonic0"))
    say("memoryStats keys", lambda: sorted(dom.memoryStats()))
    say("memoryStats values are ints", lambda: all(
        isinstance(v, int) for v in dom.memoryStats().values()))
    say("getCPUStats(True)", lambda: [sorted(e) for e in dom.getCPUStats(True)])
    say("getCPUStats(True) values are ints", lambda: all(
        isinstance(v, int) for v in dom.getCPUStats(True)[0].values()))
    say("getCPUStats(False) keys", lambda: sorted({k for e in dom.getCPUStats(False)
                                                   for k in e}))
    say("getCPUStats(False) has one entry per host CPU", lambda: len(
        dom.getCPUStats(False)) == conn.getInfo()[2])

    say("getAllDomainStats groups", lambda: sorted({k.partition(".")[0] for d, r in
                                                    conn.getAllDomainStats() if d.name() == NAME
                                                    for k in r}))
    say("getAllDomainStats keys are typed", lambda: all(
        typed(r) for _d, r in conn.getAllDomainStats()))
    for group, bit in GROUPS:
        say(f"domainListGetStats({group}) keys",
            lambda bit=bit: patterns(record_of(dom, bit)))
    say("getAllDomainStats(a group no libvirt has, ENFORCE_STATS)",
        lambda: conn.getAllDomainStats(
            1 << 20, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS))

    say("destroy", dom.destroy)
    say("blockStats of a gone domain", lambda: dom.blockStats(target))
    say("memoryStats of a gone domain", dom.memoryStats)
finally:
    forget(conn, SCRIPT)
    remove(files)
say("close", lambda: conn.close() >= 0)
