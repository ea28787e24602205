"""virDomain over an embedded host: every call, its values and its errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.clock import ManualClock
from xvirt.planes import DiskConfig, NicConfig

from .helpers import err


@pytest.fixture
def web(host: xvirt.sim.Host) -> xvirt.sim.DomainRecord:
    return host.create("web", memory_kib=262144, max_memory_kib=524288, vcpus=2,
                       os_type="linux",
                       disks=[DiskConfig("/img/web.img", "xvda"),
                              DiskConfig("/img/tools.iso", "xvdc", readonly=True)],
                       nics=[NicConfig("00:16:3e:00:00:01", "xenbr0")])


def test_identity_and_figures(host: xvirt.sim.Host, conn: face.virConnect,
                              web: xvirt.sim.DomainRecord, clock: ManualClock) -> None:
    clock.advance(2.0)
    d = conn.lookupByName("web")
    truth = host.domain(web.id)
    assert (d.name(), d.ID(), d.UUIDString()) == ("web", web.id, web.uuid)
    assert d.UUID() == bytes.fromhex(web.uuid.replace("-", ""))
    assert d.info() == [face.VIR_DOMAIN_RUNNING, 524288, 262144, 2, truth.cpu_time_ns]
    assert d.state() == d.state(0) == [face.VIR_DOMAIN_RUNNING, 0]
    assert (d.isActive(), d.isPersistent(), d.isUpdated()) == (1, 0, 0)
    assert (d.maxMemory(), d.maxVcpus(), d.OSType()) == (524288, 2, "linux")
    assert (d.autostart(), d.hasManagedSaveImage()) == (0, 0)
    assert d.connect() is conn


@pytest.mark.parametrize(("act", "state"), [
    (lambda h, i: h.set_blocked(i), face.VIR_DOMAIN_BLOCKED),
    (lambda h, i: h.pause(i), face.VIR_DOMAIN_PAUSED),
    (lambda h, i: h.crash(i), face.VIR_DOMAIN_CRASHED),
])
def test_states(host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
                act: Any, state: int) -> None:
    act(host, web.id)
    d = conn.lookupByID(web.id)
    assert d.state() == [state, 0]
    assert d.info()[0] == state


def test_a_handle_follows_its_domain_and_outlives_it(host: xvirt.sim.Host,
                                                     conn: face.virConnect,
                                                     web: xvirt.sim.DomainRecord) -> None:
    d = conn.lookupByID(web.id)
    moved = host.reboot(web.id)
    assert d.ID() == moved.id != web.id  # C3: the handle follows the UUID
    host.destroy(moved.id)
    assert (d.ID(), d.name(), d.UUIDString()) == (-1, "web", web.uuid)
    assert err(d.isActive)[0] == face.VIR_ERR_NO_DOMAIN  # gone, as libvirt says
    assert err(d.info) == (42, face.VIR_FROM_XEN, "Domain not found: no domain with matching "
                                                  f"uuid '{web.uuid}' (web)")
    assert err(d.suspend)[0] == 42


def test_actions(host: xvirt.sim.Host, conn: face.virConnect,
                 web: xvirt.sim.DomainRecord) -> None:
    d = conn.lookupByName("web")
    assert d.suspend() == 0
    assert host.domain(d.ID()).state is xvirt.DomainState.PAUSED
    assert d.resume() == 0
    assert host.domain(d.ID()).state is xvirt.DomainState.RUNNING
    old = d.ID()
    assert d.reboot(0) == 0 and d.ID() != old
    assert d.rename("www") == 0
    assert (d.name(), conn.lookupByName("www") == d) == ("www", True)
    assert d.shutdownFlags(face.VIR_DOMAIN_SHUTDOWN_PARAVIRT) == 0
    assert err(d.isActive)[0] == face.VIR_ERR_NO_DOMAIN  # a transient domain, gone
    other = conn.lookupByID(host.create("other").id)
    assert other.destroyFlags() == 0 and err(other.isActive)[0] == face.VIR_ERR_NO_DOMAIN
    third = conn.lookupByID(host.create("third").id)
    assert third.shutdown() == 0 and third.destroy.__name__ == "destroy"
    fourth = conn.lookupByID(host.create("fourth").id)
    assert fourth.destroy() == 0
    assert {r.name for r in host.domains()} == {"Domain-0"}


def test_refused_actions(host: xvirt.sim.Host, conn: face.virConnect,
                         web: xvirt.sim.DomainRecord) -> None:
    d = conn.lookupByName("web")
    code, domain, message = err(d.resume)  # not paused
    assert (code, domain) == (face.VIR_ERR_OPERATION_INVALID, face.VIR_FROM_XEN)
    assert message is not None and message.startswith("Requested operation is not valid: ")
    assert err(lambda: d.reboot(1 << 20)) == (
        8, face.VIR_FROM_XEN, "unsupported flags (0x100000) in function virDomainReboot")
    assert err(lambda: d.state(1))[0] == 8
    assert err(lambda: d.rename("bad/name"))[:2] == (8, face.VIR_FROM_XEN)
    assert err(lambda: d.rename(None))[:2] == (8, 20)  # type: ignore[arg-type]
    assert err(conn.lookupByID(0).destroy)[0] == face.VIR_ERR_OPERATION_INVALID
    with pytest.raises(TypeError):
        d.reboot("0")  # type: ignore[arg-type]
    assert host.domain(web.id).state is xvirt.DomainState.RUNNING


@pytest.mark.parametrize(("call", "func"), [
    (lambda d: d.suspend(), "virDomainSuspend"),
    (lambda d: d.resume(), "virDomainResume"),
    (lambda d: d.shutdown(), "virDomainShutdown"),
    (lambda d: d.shutdownFlags(0), "virDomainShutdownFlags"),
    (lambda d: d.reboot(0), "virDomainReboot"),
    (lambda d: d.destroy(), "virDomainDestroy"),
    (lambda d: d.destroyFlags(0), "virDomainDestroyFlags"),
    (lambda d: d.save("/nowhere/x.img"), "virDomainSave"),
    (lambda d: d.saveFlags("/nowhere/x.img", None, 0), "virDomainSaveFlags"),
    (lambda d: d.rename("x"), "virDomainRename"),
])
def test_read_only_refuses_every_mutation(host: xvirt.sim.Host, ro: face.virConnect,
                                          web: xvirt.sim.DomainRecord, call: Any,
                                          func: str) -> None:
    journal = host.journal()
    d = ro.lookupByName("web")
    e = err(lambda: call(d))
    assert e == (29, 20, f"operation forbidden: read only access prevents {func}")
    assert host.journal() == journal  # the host was not even asked
    assert d.info()[0] == face.VIR_DOMAIN_RUNNING  # reads are fine


def test_equality_is_by_uuid(host: xvirt.sim.Host, conn: face.virConnect,
                             web: xvirt.sim.DomainRecord) -> None:
    a, b = conn.lookupByID(web.id), conn.lookupByName("web")
    c = conn.lookupByID(0)
    assert a == b and hash(a) == hash(b) and a != c
    assert len({a, b, c}) == 2
    assert a != "web"


def test_xml_description(host: xvirt.sim.Host, conn: face.virConnect,
                         web: xvirt.sim.DomainRecord) -> None:
    d = conn.lookupByName("web")
    root = ET.fromstring(d.XMLDesc())
    assert (root.tag, root.get("type"), root.get("id")) == ("domain", "xen", str(web.id))
    assert (root.findtext("name"), root.findtext("uuid")) == ("web", web.uuid)
    assert [(e.text, e.get("unit")) for e in (root.find("memory"), root.find("currentMemory"))
            if e is not None] == [("524288", "KiB"), ("262144", "KiB")]
    assert (root.findtext("vcpu"), root.findtext("os/type")) == ("2", "linux")
    disks = root.findall("devices/disk")
    assert [(x.get("type"), x.get("device")) for x in disks] == [("file", "disk")] * 2
    assert [x.find("source").get("file") for x in disks] == ["/img/web.img", "/img/tools.iso"]  # type: ignore[union-attr]
    assert [(x.find("target").get("dev"), x.find("target").get("bus"))  # type: ignore[union-attr]
            for x in disks] == [("xvda", "xen"), ("xvdc", "xen")]
    assert [x.find("readonly") is not None for x in disks] == [False, True]
    nics = root.findall("devices/interface")
    assert [(n.get("type"), n.find("mac").get("address"), n.find("source").get("bridge"))  # type: ignore[union-attr]
            for n in nics] == [("bridge", "00:16:3e:00:00:01", "xenbr0")]
    inactive = ET.fromstring(d.XMLDesc(face.VIR_DOMAIN_XML_INACTIVE | face.VIR_DOMAIN_XML_SECURE))
    assert inactive.get("id") is None and inactive.findtext("name") == "web"
    assert err(lambda: d.XMLDesc(1 << 20))[0] == 8


def test_xml_survives_hostile_names(host: xvirt.sim.Host, conn: face.virConnect) -> None:
    name = "<a&b>'\"]]>"
    host.create(name, disks=[DiskConfig("/img/<&>\".img", "xvda")])
    root = ET.fromstring(conn.lookupByName(name).XMLDesc())
    assert root.findtext("name") == name
    assert root.find("devices/disk/source").get("file") == "/img/<&>\".img"  # type: ignore[union-attr]
