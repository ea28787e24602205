"""Time ``libvirt.open(URI)`` as a libvirt-python script does it.

    python open_once.py URI REPEATS

Imports nothing but libvirt (under `xvirt compat`, xvirt's face), then opens and
closes URI REPEATS times; prints one JSON line: the seconds ``import libvirt``
took, those of the first open in this process, and those of each later one.
"""

import json
import sys
import time

started = time.perf_counter()
import libvirt  # noqa: E402 - its cost is measured too

imported = time.perf_counter() - started
uri, repeats = sys.argv[1], int(sys.argv[2])
seconds = []
for _ in range(repeats):
    start = time.perf_counter()
    conn = libvirt.open(uri)
    seconds.append(time.perf_counter() - start)
    conn.close()
print(json.dumps({"import": imported, "first": seconds[0], "later": seconds[1:]}))
