#!/usr/bin/env python3
"""Errors, as a careful script inspects them.

    errors.py URI

Lookups of domains that do not exist (by ID, name, UUID string, raw UUID, and a UUID
that is not one), each printed as code, error domain and message; what libvirtError and
the last-error functions carry; and the refusals of a read-only connection, which
libvirt makes before the driver is asked (so the domain the script defines is never
started).
"""
import os

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

SCRIPT = "errors"
NAME = f"{PREFIX}-{SCRIPT}-defined"
UUID = UUID_HEAD + "00000000f001"
MISSING_UUID = UUID_HEAD + "00000000f0ff"


def full(label, call):
    """``label: code domain message`` of the error ``call`` raises."""
    try:
        value = call()
    except libvirt.libvirtError as e:
        print(f"{label}: {e.get_error_code()} {e.get_error_domain()} {e.get_error_message()}",
              flush=True)
        return e
    print(f"{label}: no error: {value}", flush=True)
    return None


uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)
try:
    e = full("lookupByID(9999)", lambda: conn.lookupByID(9999))
    say("str(e) is the message", lambda: str(e) == e.get_error_message())
    say("get_error_level", e.get_error_level)
    say("isinstance Exception", lambda: isinstance(e, Exception))
    say("virGetLastErrorCode", libvirt.virGetLastErrorCode)
    say("virGetLastError code", lambda: libvirt.virGetLastError()[0])
    say("virResetLastError", libvirt.virResetLastError)
    say("virGetLastError after reset", libvirt.virGetLastError)
    say("virGetLastErrorCode after reset", libvirt.virGetLastErrorCode)
    full("lookupByName", lambda: conn.lookupByName(f"{PREFIX}-{SCRIPT}-missing"))
    full("lookupByUUIDString", lambda: conn.lookupByUUIDString(MISSING_UUID))
    full("lookupByUUID", lambda: conn.lookupByUUID(bytes.fromhex(MISSING_UUID.replace("-", ""))))
    full("lookupByUUIDString('not-a-uuid')", lambda: conn.lookupByUUIDString("not-a-uuid"))
    # the message names the driver's own function: only the code is libvirt's
    say("listAllDomains(unknown flag)", lambda: conn.listAllDomains(1 << 30))

    defined = conn.defineXML(domain_xml(kind, NAME, UUID, make_disk(files, NAME), mac_tail="f1"))
    image = os.path.join(files, "missing.save")
    ro = libvirt.openReadOnly(uri)
    say("read-only lookupByName", lambda: ro.lookupByName(NAME).UUIDString())
    say("read-only listAllDomains", lambda: [d.name() for d in ro.listAllDomains(0)
                                             if d.name() == NAME])
    say("read-only info", lambda: ro.lookupByName(NAME).info()[:4])
    full("read-only createXML", lambda: ro.createXML(domain_xml(
        kind, NAME + "-2", UUID_HEAD + "00000000f002", make_disk(files, NAME + "-2")), 0))
    full("read-only defineXML", lambda: ro.defineXML(domain_xml(
        kind, NAME + "-3", UUID_HEAD + "00000000f003", make_disk(files, NAME + "-3"))))
    full("read-only create", lambda: ro.lookupByName(NAME).create())
    full("read-only destroy", lambda: ro.lookupByName(NAME).destroy())
    full("read-only suspend", lambda: ro.lookupByName(NAME).suspend())
    full("read-only undefine", lambda: ro.lookupByName(NAME).undefine())
    full("read-only restore", lambda: ro.restore(image))
    say("read-only close", lambda: ro.close() >= 0)
    say("the defined domain is untouched", lambda: (defined.isActive(), defined.isPersistent()))
    say("no other domain was made", lambda: sorted(
        d.name() for d in conn.listAllDomains(0) if d.name().startswith(NAME)))
    say("undefine", defined.undefine)
    full("undefine again", defined.undefine)
finally:
    forget(conn, SCRIPT)
    remove(files)
say("close", lambda: conn.close() >= 0)
