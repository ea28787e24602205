#!/usr/bin/env python3
"""Print lifecycle events, in the manner of libvirt-python's examples/event-test.py.

    event_printer.py URI NAME

Runs libvirt's default event loop in a thread, registers a lifecycle callback,
then suspends and resumes domain NAME and prints the events that arrive.
"""
import sys
import threading
import time

import libvirt

EVENTS = ("Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped",
          "Shutdown", "PMSuspended", "Crashed")
DETAILS = {
    3: ("Paused", "Migrated", "IOError", "Watchdog", "Restored", "Snapshot", "API error"),
    4: ("Unpaused", "Migrated", "Snapshot"),
}

received = []
done = threading.Event()


def lifecycle(conn, dom, event, detail, opaque):
    text = DETAILS.get(event, ())[detail] if detail < len(DETAILS.get(event, ())) else detail
    received.append("%s %s %s" % (dom.name(), EVENTS[event], text))
    if len(received) >= 2:
        done.set()


def loop():
    while True:
        libvirt.virEventRunDefaultImpl()


libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=loop, daemon=True).start()

uri, name = sys.argv[1:]
conn = libvirt.open(uri)
cb = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)
dom = conn.lookupByName(name)
dom.suspend()
dom.resume()
if not done.wait(10):
    print("timed out; got %r" % received)
    sys.exit(1)
conn.domainEventDeregisterAny(cb)
for line in received:
    print(line)
conn.close()
time.sleep(0)
