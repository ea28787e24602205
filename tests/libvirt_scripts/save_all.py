#!/usr/bin/env python3
"""Save every running guest into DIR, then restore them all: a host-maintenance script.

    save_all.py URI DIR
"""
import os
import sys

import libvirt

uri, directory = sys.argv[1:]
conn = libvirt.open(uri)
saved = []
for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
    if dom.ID() == 0:
        continue  # Domain-0 on a Xen host is never saved
    path = os.path.join(directory, dom.name() + ".save")
    dom.save(path)
    saved.append((dom.name(), dom.UUIDString(), path))
    print("saved %s" % dom.name())
print("running after save: %d guests" % len([i for i in conn.listDomainsID() if i != 0]))
for name, uuid, path in sorted(saved):
    conn.restore(path)
    dom = conn.lookupByName(name)
    print("restored %s same-uuid=%s active=%d" % (name, dom.UUIDString() == uuid, dom.isActive()))
first = [i for i in conn.listDomainsID() if i != 0][0]
try:
    conn.lookupByID(first).save("/nonexistent-dir/escape.save")
    print("save outside the directory: accepted")
except libvirt.libvirtError as e:
    print("save outside the directory: refused")
conn.close()
