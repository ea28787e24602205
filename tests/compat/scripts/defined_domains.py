#!/usr/bin/env python3
"""Define a domain, look at it shut off, start it, stop it and undefine it, printing
every answer and every lifecycle event, as a libvirt-python user writes it.

    defined_domains.py URI

Run with real libvirt-python on test:///default and through ``xvirt compat`` on
xvirt's hosts; tests/compat/test_defined.py compares the outputs line for line.
``lifecycle(libvirt, conn)`` is also called in-process by the tests.
"""
import sys
import threading
import xml.etree.ElementTree as ET

NAME = "xvirt-defined"
UUID = "5ca1ab1e-0000-4000-8000-00000000d001"
XML = """<domain type='{type}'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>512</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu>2</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/xen/images/{name}.img'/>
      <target dev='xvda'/>
    </disk>
    <interface type='bridge'>
      <mac address='00:16:3e:00:d0:01'/>
      <source bridge='xenbr0'/>
    </interface>
  </devices>
</domain>
"""
# The filters of listAllDomains, one at a time and as scripts combine them.
FILTERS = ("ACTIVE", "INACTIVE", "PERSISTENT", "TRANSIENT", "RUNNING", "PAUSED", "SHUTOFF",
           "OTHER", "INACTIVE|PERSISTENT", "ACTIVE|INACTIVE", "RUNNING|SHUTOFF",
           "ACTIVE|SHUTOFF", "TRANSIENT|SHUTOFF")


def describe(libvirt, e):
    """An error as the scripts print it: code, then where and what when libvirt says
    it the same way whatever the driver (its own error domain varies)."""
    code, where, message = e.get_error_code(), e.get_error_domain(), e.get_error_message()
    if where in (libvirt.VIR_FROM_DOMAIN, libvirt.VIR_FROM_XML) and code != \
            libvirt.VIR_ERR_XML_DETAIL:  # libxml2's wording of a parse error is its own
        return f"error {code} {where} {message}"
    if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_FAILED):
        return f"error {code} {message}"
    return f"error {code}"


def lifecycle(libvirt, conn):
    out = []

    def say(label, call):
        try:
            value = call()
        except libvirt.libvirtError as e:
            value = describe(libvirt, e)
        out.append(f"{label}: {value}")

    def listed(flags):
        value = 0
        for part in flags.split("|"):
            value |= getattr(libvirt, "VIR_CONNECT_LIST_DOMAINS_" + part)
        return NAME in [d.name() for d in conn.listAllDomains(value)]

    def xml_summary(dom):
        root = ET.fromstring(dom.XMLDesc(0))
        return (root.get("id"), root.findtext("name"), root.findtext("uuid"),
                root.findtext("memory"), root.findtext("currentMemory"), root.findtext("vcpu"))

    def lookup_code(name):
        """A lookup's error code (drivers word a missed lookup differently)."""
        try:
            return conn.lookupByName(name).name()
        except libvirt.libvirtError as e:
            return f"error {e.get_error_code()}"

    xml = XML.format(type=conn.getType().lower(), name=NAME, uuid=UUID)
    dom = conn.defineXML(xml)
    say("defined", lambda: (dom.name(), dom.UUIDString(), dom.ID()))
    say("isActive", dom.isActive)
    say("isPersistent", dom.isPersistent)
    say("info", lambda: dom.info()[:4])
    say("state", dom.state)
    say("state(0)", lambda: dom.state(0))
    say("maxMemory", dom.maxMemory)
    say("maxVcpus", dom.maxVcpus)
    say("XMLDesc", lambda: xml_summary(dom))
    say("lookupByName", lambda: conn.lookupByName(NAME).UUIDString())
    say("lookupByUUIDString", lambda: conn.lookupByUUIDString(UUID).name())
    say("lookupByUUID", lambda: conn.lookupByUUID(bytes.fromhex(UUID.replace("-", ""))).ID())
    say("listDefinedDomains", lambda: NAME in conn.listDefinedDomains())
    say("numOfDefinedDomains", lambda: conn.numOfDefinedDomains() == len(
        conn.listDefinedDomains()))
    say("listDomainsID", lambda: dom.ID() in conn.listDomainsID())
    for flags in FILTERS:
        say(f"listAllDomains({flags})", lambda flags=flags: listed(flags))
    say("suspend shut off", dom.suspend)
    say("resume shut off", dom.resume)
    say("shutdown shut off", dom.shutdown)
    say("destroy shut off", dom.destroy)
    say("reboot shut off", lambda: dom.reboot(0))
    say("save shut off", lambda: dom.save(f"/nonexistent/{NAME}.img"))
    say("redefine", lambda: conn.defineXML(xml).UUIDString())
    say("redefine renamed", lambda: conn.defineXML(xml.replace(NAME, NAME + "-2")))
    say("create", dom.create)
    say("running", lambda: (dom.isActive(), dom.ID() > 0, dom.state(), dom.info()[:4]))
    say("running XMLDesc has an id", lambda: xml_summary(dom)[0] == str(dom.ID()))
    for flags in FILTERS:
        say(f"listAllDomains({flags}) running", lambda flags=flags: listed(flags))
    say("create running", dom.create)
    say("suspend", dom.suspend)
    say("paused", dom.state)
    say("resume", dom.resume)
    say("unpaused", dom.state)
    say("destroy", dom.destroy)
    say("destroyed", lambda: (dom.state(), dom.ID(), dom.isActive(), dom.isPersistent()))
    say("create again", dom.create)
    say("shutdown", dom.shutdown)
    say("shut down", dom.state)
    say("undefine", dom.undefine)
    say("undefined state", dom.state)
    say("undefined info", dom.info)
    say("undefine again", dom.undefine)
    say("lookupByName undefined", lambda: lookup_code(NAME))
    return out


def main(uri):
    import libvirt

    names = ("Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped")
    events = []
    expected = 9  # what the lifecycle makes happen
    done = threading.Event()

    def on_event(conn, dom, event, detail, opaque):
        events.append(f"event {dom.name()} {names[event]} {detail}")
        if len(events) >= expected:
            done.set()

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=loop, daemon=True).start()
    conn = libvirt.open(uri)
    callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                           on_event, None)
    for line in lifecycle(libvirt, conn):
        print(line)
    if not done.wait(30):
        print("timed out waiting for events")
    conn.domainEventDeregisterAny(callback)
    for line in events:
        print(line)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
