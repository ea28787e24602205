#!/usr/bin/env python3
"""Domain events, in the manner of libvirt-python's examples/event-test.py.

    events.py URI

libvirt's default event loop runs on a thread; callbacks for the lifecycle, REBOOT and
agent-lifecycle events are registered for every domain; the script then creates,
pauses, resumes, reboots (but on QEMU, whose guests here run no OS), resets and destroys
a domain, defines and undefines another, waits until the last of those events arrives,
deregisters, and prints what each callback received, in the order it came (one
connection delivers one event's callbacks in order). A second, read-only connection is
left open at exit, as scripts often leave one.
"""
import threading

import libvirt
from _common import (
    PREFIX,
    UUID_HEAD,
    domain_kind,
    domain_xml,
    forget,
    is_qemu,
    make_disk,
    quiet,
    remove,
    say,
    start_default_loop,
    uri_from_argv,
    workdir,
)

SCRIPT = "events"
RUNNING = f"{PREFIX}-{SCRIPT}-running"
DEFINED = f"{PREFIX}-{SCRIPT}-defined"
RUNNING_UUID = UUID_HEAD + "00000000e001"
DEFINED_UUID = UUID_HEAD + "00000000e002"
EVENTS = ("Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped", "Shutdown",
          "PMSuspended", "Crashed")
WAIT_S = 15
#: How long the script gives a reset's REBOOT event (QEMU resets the guest, and says so,
#: after the call returns; a driver that sends none costs the script this wait).
REBOOT_WAIT_S = 3

received = {"lifecycle": [], "reboot": [], "agent": []}  # each callback's, in its order
lock = threading.Lock()
last = threading.Event()  # the defined domain's UNDEFINED: nothing the script does follows
rebooted = threading.Event()


def lifecycle(conn, dom, event, detail, opaque):
    if event == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN and \
            detail == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN_HOST:
        # QEMU says so when destroy's signal reaches it; libvirt passes that on or not,
        # as the domain's teardown and QEMU's notice race: not the script's to print
        return
    with lock:
        received[opaque].append(f"{dom.name()} {EVENTS[event]} {detail}")
    if dom.name() == DEFINED and event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
        last.set()


def reboot(conn, dom, opaque):
    with lock:
        received[opaque].append(dom.name())
    rebooted.set()


def agent(conn, dom, state, reason, opaque):
    with lock:
        received[opaque].append(f"{dom.name()} {state} {reason}")


uri = uri_from_argv()
quiet()
start_default_loop()
conn = libvirt.open(uri)
forget(conn, SCRIPT)
kind = domain_kind(conn)
callbacks = {
    "lifecycle": conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                             lifecycle, "lifecycle"),
    "reboot": conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
                                          reboot, "reboot"),
    "agent": conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                         agent, "agent"),
}
say("callback IDs are distinct ints", lambda: len(set(callbacks.values())) == 3 and all(
    isinstance(i, int) and i >= 0 for i in callbacks.values()))
files = workdir(SCRIPT)
try:
    dom = conn.createXML(domain_xml(kind, RUNNING, RUNNING_UUID, make_disk(files, RUNNING),
                                    mac_tail="e1"), 0)
    # A second connection the script never closes, as many scripts leave one: the process
    # must still exit (its event loop thread running) when the script ends.
    watcher = libvirt.openReadOnly(uri)
    say("a second connection, left open", lambda: watcher.lookupByName(RUNNING).ID() > 0)
    say("suspend", dom.suspend)
    say("resume", dom.resume)
    if is_qemu(kind):
        # a guest without an OS never answers the ACPI request, and libvirt then turns
        # the destroy's shutdown notice into a reset of its own: an extra REBOOT, or not
        print("reboot: not asked of a QEMU guest without an OS", flush=True)
    else:
        say("reboot", lambda: dom.reboot(0))
    say("reset", lambda: dom.reset(0))
    say("a REBOOT event came", lambda: rebooted.wait(REBOOT_WAIT_S))
    say("destroy", dom.destroy)
    defined = conn.defineXML(domain_xml(kind, DEFINED, DEFINED_UUID,
                                        make_disk(files, DEFINED), mac_tail="e2"))
    say("undefine", defined.undefine)
    say("the last event came", lambda: last.wait(WAIT_S))
finally:
    forget(conn, SCRIPT)
    remove(files)
for kind_, callback_id in callbacks.items():
    say(f"domainEventDeregisterAny {kind_}", lambda i=callback_id: conn.domainEventDeregisterAny(i))
say("deregister again", lambda: conn.domainEventDeregisterAny(callbacks["lifecycle"]))
with lock:  # callbacks of different events may run in either order: each one's, in order
    # A QEMU guest without an OS may reset itself again after the script's reset (one
    # REBOOT event or two, on libvirt-python too): which domains rebooted is what counts.
    received["reboot"] = list(dict.fromkeys(received["reboot"]))
    for kind_, lines in received.items():
        for line in lines:
            print(f"event: {kind_} {line}")
say("close", lambda: conn.close() >= 0)
