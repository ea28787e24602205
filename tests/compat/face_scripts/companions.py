#!/usr/bin/env python3
"""The modules that ship with libvirt-python beside ``libvirt``, as scripts use them.

    companions.py URI

``libvirt_qemu`` (QEMU monitor and guest agent commands), ``libvirt_lxc`` (container
namespaces) and ``libvirtaio`` (libvirt's events on an asyncio loop): each imports
``libvirt`` itself, so each must work with whatever ``libvirt`` is. A domain's
lifecycle events are received on asyncio's loop through libvirtaio.
"""
import asyncio
import json

import libvirt
import libvirt_lxc
import libvirt_qemu
import libvirtaio
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

SCRIPT = "companions"
NAME = f"{PREFIX}-{SCRIPT}-guest"
UUID = UUID_HEAD + "00000000c0c0"
EVENTS = ("Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped", "Shutdown",
          "PMSuspended", "Crashed")
WAIT_S = 15

say("libvirt_qemu's libvirt is this libvirt", lambda: libvirt_qemu.libvirt is libvirt)
say("libvirt_lxc's libvirt is this libvirt", lambda: libvirt_lxc.libvirt is libvirt)
say("libvirtaio's libvirt is this libvirt", lambda: libvirtaio.libvirt is libvirt)


def monitor_status(dom):
    """query-status through the QEMU monitor: the answer's id is libvirt's own counter."""
    answer = json.loads(libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-status"}', 0))
    return answer["return"]["status"], answer["return"]["running"]


async def main(uri):
    loop = asyncio.get_running_loop()
    say("virEventRegisterAsyncIOImpl", lambda: type(
        libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)).__name__)
    conn = libvirt.open(uri)
    forget(conn, SCRIPT)
    kind = domain_kind(conn)
    files = workdir(SCRIPT)
    events = asyncio.Queue()

    def lifecycle(_conn, dom, event, detail, _opaque):
        loop.call_soon_threadsafe(events.put_nowait, f"{dom.name()} {EVENTS[event]} {detail}")

    callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                           lifecycle, None)
    try:
        dom = conn.createXML(domain_xml(kind, NAME, UUID, make_disk(files, NAME), mac_tail="c0"), 0)
        say("qemuMonitorCommand query-status", lambda: monitor_status(dom))
        say("qemuAgentCommand guest-ping", lambda: libvirt_qemu.qemuAgentCommand(
            dom, '{"execute": "guest-ping"}', 1, 0))
        say("lxcOpenNamespace", lambda: libvirt_lxc.lxcOpenNamespace(dom, 0))
        say("destroy", dom.destroy)
        while True:  # up to the domain's Stopped, the last event the script causes
            try:
                line = await asyncio.wait_for(events.get(), WAIT_S)
            except TimeoutError:
                print("event on the asyncio loop: no Stopped within the wait", flush=True)
                break
            print(f"event on the asyncio loop: {line}", flush=True)
            if f" {EVENTS[libvirt.VIR_DOMAIN_EVENT_STOPPED]} " in line:
                break
    finally:
        forget(conn, SCRIPT)
        remove(files)
    say("domainEventDeregisterAny", lambda: conn.domainEventDeregisterAny(callback))
    say("close", lambda: conn.close() >= 0)


uri = uri_from_argv()
quiet()
asyncio.run(main(uri))
