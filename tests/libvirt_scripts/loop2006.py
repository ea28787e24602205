#!/usr/bin/env python3
"""The monitoring loop of the 2006 mail: list, look up by ID, read info; SAMPLES times.

    loop2006.py URI SAMPLES
"""
import sys

import libvirt

uri, samples = sys.argv[1], int(sys.argv[2])
conn = libvirt.openReadOnly(uri)
if conn is None:
    print("Failed to open connection to %s" % uri, file=sys.stderr)
    sys.exit(1)
for sample in range(samples):
    for domid in conn.listDomainsID():
        dom = conn.lookupByID(domid)
        state, maxmem, mem, vcpus, cputime = dom.info()
        print("%d %s %s state=%d mem=%d maxmem=%d vcpus=%d" % (
            sample, dom.name(), dom.UUIDString(), state, mem, maxmem, vcpus))
try:
    conn.lookupByID(4000)
except libvirt.libvirtError as e:
    print("lookupByID(4000): code %d" % e.get_error_code())
try:
    conn.lookupByUUIDString("not-a-uuid")
except libvirt.libvirtError as e:
    print("lookupByUUIDString('not-a-uuid'): code %d" % e.get_error_code())
conn.close()
