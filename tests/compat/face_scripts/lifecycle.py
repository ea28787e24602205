#!/usr/bin/env python3
"""A domain's life, as an operator's script drives it.

    lifecycle.py URI

A transient domain made with createXML, and a persistent one made with defineXML and
started with create(): info() (all but the CPU time), state() with its reason, isActive,
isPersistent, and suspend, resume, shutdown, destroy, create and undefine. A guest that
ignores the shutdown request (QEMU guests here run no OS) stays running: that is what
the host says, printed as it says it.
"""
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

SCRIPT = "lifecycle"
TRANSIENT = f"{PREFIX}-{SCRIPT}-transient"
PERSISTENT = f"{PREFIX}-{SCRIPT}-persistent"
TRANSIENT_UUID = UUID_HEAD + "00000000b001"
PERSISTENT_UUID = UUID_HEAD + "00000000b002"

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)


def looks(label, dom):
    say(f"{label} info", lambda: dom.info()[:4])
    say(f"{label} state", dom.state)
    say(f"{label} state(0)", lambda: dom.state(0))
    say(f"{label} isActive", dom.isActive)
    say(f"{label} has an ID", lambda: dom.ID() > 0)


try:
    dom = conn.createXML(domain_xml(kind, TRANSIENT, TRANSIENT_UUID,
                                    make_disk(files, TRANSIENT), mac_tail="b1"), 0)
    say("createXML", dom.name)
    say("isPersistent", dom.isPersistent)
    say("maxMemory", dom.maxMemory)
    say("maxVcpus", dom.maxVcpus)
    looks("created", dom)
    say("suspend", dom.suspend)
    looks("suspended", dom)
    say("resume", dom.resume)
    looks("resumed", dom)
    say("shutdown", dom.shutdown)
    looks("shut down", dom)
    say("destroy", dom.destroy)
    say("lookupByName after destroy", lambda: conn.lookupByName(TRANSIENT).name())

    dom = conn.defineXML(domain_xml(kind, PERSISTENT, PERSISTENT_UUID,
                                    make_disk(files, PERSISTENT), mac_tail="b2"))
    say("defineXML", dom.name)
    say("defined isPersistent", dom.isPersistent)
    say("defined ID", dom.ID)
    looks("defined", dom)
    say("create", dom.create)
    looks("started", dom)
    say("suspend", dom.suspend)
    looks("suspended", dom)
    say("resume", dom.resume)
    say("shutdown", dom.shutdown)
    looks("shut down", dom)
    say("destroy", dom.destroy)
    looks("destroyed", dom)
    say("destroyed ID", dom.ID)
    say("destroyed isPersistent", dom.isPersistent)
    say("undefine", dom.undefine)
    say("undefined state", dom.state)
    say("lookupByName after undefine", lambda: conn.lookupByName(PERSISTENT).name())
finally:
    forget(conn, SCRIPT)
    remove(files)
say("close", lambda: conn.close() >= 0)
