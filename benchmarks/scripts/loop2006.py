"""The 2006 monitoring loop, as libvirt-python users write it.

    python loop2006.py URI SAMPLES

Lists the running domains, looks each one up by ID and reads its info, SAMPLES
times; prints one JSON line with the seconds each sample took. Imports nothing
but libvirt: under `xvirt compat` that is xvirt's compatible face.
"""

import json
import sys
import time

import libvirt

uri, samples = sys.argv[1], int(sys.argv[2])
conn = libvirt.openReadOnly(uri)
if conn is None:
    sys.exit(f"failed to open {uri}")
seconds = []
count = 0
for _ in range(samples):
    start = time.perf_counter()
    count = 0
    for domid in conn.listDomainsID():
        dom = conn.lookupByID(domid)
        state, max_mem, mem, vcpus, cpu_time = dom.info()
        count += 1
    seconds.append(time.perf_counter() - start)
conn.close()
print(json.dumps({"domains": count, "seconds": seconds}))
