#!/usr/bin/env python3
"""Listing and lookups, as an inventory script does them.

    listing.py URI

One running transient domain (made with createXML) and one defined, inactive domain:
counts before and after, lookups by ID, name, UUID string and raw UUID, and
listAllDomains with each filter as the domain is paused, resumed and made persistent.
Only the script's own domains are printed (what else a host holds is the host's).
"""
import libvirt
from _common import (
    PREFIX,
    UUID_HEAD,
    domain_kind,
    domain_xml,
    forget,
    make_disk,
    mine,
    quiet,
    remove,
    say,
    uri_from_argv,
    workdir,
)

SCRIPT = "listing"
RUNNING = f"{PREFIX}-{SCRIPT}-running"
DEFINED = f"{PREFIX}-{SCRIPT}-defined"
RUNNING_UUID = UUID_HEAD + "00000000a001"
DEFINED_UUID = UUID_HEAD + "00000000a002"
FILTERS = ("0", "ACTIVE", "INACTIVE", "PERSISTENT", "TRANSIENT", "RUNNING", "PAUSED", "SHUTOFF",
           "OTHER", "ACTIVE|PERSISTENT", "INACTIVE|PERSISTENT", "RUNNING|SHUTOFF")

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)


def flags_of(spec):
    value = 0
    for part in spec.split("|"):
        if part != "0":
            value |= getattr(libvirt, "VIR_CONNECT_LIST_DOMAINS_" + part)
    return value


def filters(stage):
    for spec in FILTERS:
        say(f"{stage} listAllDomains({spec})",
            lambda spec=spec: mine(conn.listAllDomains(flags_of(spec)), SCRIPT))


try:
    say("numOfDomains = len(listDomainsID)",
        lambda: conn.numOfDomains() == len(conn.listDomainsID()))
    active_before = conn.numOfDomains()
    defined_before = conn.numOfDefinedDomains()
    running = conn.createXML(domain_xml(kind, RUNNING, RUNNING_UUID,
                                        make_disk(files, RUNNING), mac_tail="a1"), 0)
    defined = conn.defineXML(domain_xml(kind, DEFINED, DEFINED_UUID,
                                        make_disk(files, DEFINED), mac_tail="a2"))
    say("numOfDomains grew by", lambda: conn.numOfDomains() - active_before)
    say("numOfDefinedDomains grew by", lambda: conn.numOfDefinedDomains() - defined_before)
    say("listDomainsID has the running one", lambda: running.ID() in conn.listDomainsID())
    say("listDomainsID sorted unique", lambda: len(set(conn.listDomainsID())) == len(
        conn.listDomainsID()))
    say("listDefinedDomains", lambda: sorted(n for n in conn.listDefinedDomains()
                                            if n.startswith(f"{PREFIX}-{SCRIPT}-")))
    say("running ID positive", lambda: running.ID() > 0)
    say("defined ID", defined.ID)
    say("lookupByID", lambda: conn.lookupByID(running.ID()).name())
    say("lookupByID UUID", lambda: conn.lookupByID(running.ID()).UUIDString())
    say("lookupByName running", lambda: conn.lookupByName(RUNNING).UUIDString())
    say("lookupByName defined", lambda: conn.lookupByName(DEFINED).UUIDString())
    say("lookupByUUIDString running", lambda: conn.lookupByUUIDString(RUNNING_UUID).name())
    say("lookupByUUIDString defined", lambda: conn.lookupByUUIDString(DEFINED_UUID).name())
    say("lookupByUUIDString upper case", lambda: conn.lookupByUUIDString(
        RUNNING_UUID.upper()).name())
    raw = bytes.fromhex(RUNNING_UUID.replace("-", ""))
    say("lookupByUUID", lambda: conn.lookupByUUID(raw).name())
    say("UUID bytes", lambda: conn.lookupByName(RUNNING).UUID() == raw)
    say("lookupByUUID defined ID", lambda: conn.lookupByUUID(
        bytes.fromhex(DEFINED_UUID.replace("-", ""))).ID())
    say("lookups agree on ID", lambda: conn.lookupByName(RUNNING).ID() == conn.lookupByUUIDString(
        RUNNING_UUID).ID() == running.ID())
    say("isActive running, defined", lambda: (running.isActive(), defined.isActive()))
    say("isPersistent running, defined", lambda: (running.isPersistent(),
                                                  defined.isPersistent()))
    filters("running")
    say("suspend", running.suspend)
    filters("paused")
    say("resume", running.resume)
    say("defineXML of the running one", lambda: conn.defineXML(running.XMLDesc(0)).name())
    say("isPersistent now", running.isPersistent)
    filters("persistent")
    say("numOfDefinedDomains grew by, at the end", lambda: conn.numOfDefinedDomains()
        - defined_before)
    say("destroy", running.destroy)
    say("destroyed persistent is defined", lambda: RUNNING in conn.listDefinedDomains())
    filters("destroyed")
    say("undefine running", running.undefine)
    say("undefine defined", defined.undefine)
    say("left", lambda: mine(conn.listAllDomains(0), SCRIPT))
finally:
    forget(conn, SCRIPT)
    remove(files)
say("close", lambda: conn.close() >= 0)
