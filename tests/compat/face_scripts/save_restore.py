#!/usr/bin/env python3
"""Save a running domain to a file and restore it, as a backup script does.

    save_restore.py URI [IMAGE_DIR]

The image goes to a temporary directory the script makes, or to IMAGE_DIR when given
(a host daemon saves only into its own directory, for it acts for other users). The
saved domain is gone until restored; restored, it has its name and UUID back, a new ID,
and the image is still there (libvirt and xm keep it).
"""
import os
import sys

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

SCRIPT = "save"
NAME = f"{PREFIX}-{SCRIPT}-guest"
UUID = UUID_HEAD + "00000000c001"

uri = uri_from_argv()
quiet()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
files = workdir(SCRIPT)
image = os.path.join(sys.argv[2] if len(sys.argv) > 2 else files, f"{NAME}.save")
try:
    dom = conn.createXML(domain_xml(kind, NAME, UUID, make_disk(files, NAME), mac_tail="c1"), 0)
    first_id = dom.ID()
    running = conn.numOfDomains()
    say("created", lambda: dom.info()[:4])
    say("save", lambda: dom.save(image))
    say("image exists after save", lambda: os.path.exists(image))
    say("lookupByName while saved", lambda: conn.lookupByName(NAME).name())
    say("lookupByUUIDString while saved", lambda: conn.lookupByUUIDString(UUID).name())
    say("numOfDomains fell by", lambda: running - conn.numOfDomains())
    say("saved handle state", dom.state)
    say("restore", lambda: conn.restore(image))
    say("image exists after restore", lambda: os.path.exists(image))
    back = conn.lookupByName(NAME)
    say("restored UUID", back.UUIDString)
    say("restored lookupByUUIDString", lambda: conn.lookupByUUIDString(UUID).name())
    say("restored state", back.state)
    say("restored info", lambda: back.info()[:4])
    say("restored isActive", back.isActive)
    say("restored isPersistent", back.isPersistent)
    say("restored has a new ID", lambda: back.ID() > 0 and back.ID() != first_id)
    say("lookupByID of the new ID", lambda: conn.lookupByID(back.ID()).name())
    say("the old handle follows", lambda: (dom.isActive(), dom.state()))
    say("restore again while running", lambda: conn.restore(image))
    say("destroy", back.destroy)
    say("restore the kept image", lambda: conn.restore(image))
    say("restored again", lambda: conn.lookupByName(NAME).state())
    say("destroy again", lambda: conn.lookupByName(NAME).destroy())
    say("image exists at the end", lambda: os.path.exists(image))
finally:
    forget(conn, SCRIPT)
    if os.path.exists(image):
        os.remove(image)
    remove(files)
say("close", lambda: conn.close() >= 0)
