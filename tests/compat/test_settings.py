"""What a Xen host answers through the libvirt face (issue 18, item 2), on the embedded
host and through a daemon: createXML/createLinux, XMLDesc that round-trips, defineXML
with a vCPU maximum and metadata, getCapabilities, node memory and CPU statistics,
vcpus/vcpusFlags/setVcpus(Flags), the credit scheduler, metadata/setMetadata; and the
same calls' shapes and argument errors beside real libvirt-python on test:///default."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.daemon import DaemonProcess

from .helpers import err

NS = "http://example.org/app"
ELEMENT, TITLE, DESCRIPTION = 2, 1, 0  # VIR_DOMAIN_METADATA_*
LIVE, CONFIG, MAXIMUM = 1, 2, 4  # VIR_DOMAIN_AFFECT_LIVE, _CONFIG, VIR_DOMAIN_VCPU_MAXIMUM
ALL = -1  # VIR_NODE_MEMORY_STATS_ALL_CELLS, VIR_NODE_CPU_STATS_ALL_CPUS


def xml(name: str, uuid: str, kind: str = "xen", *, vcpus: str = "<vcpu current='1'>2</vcpu>",
        extra: str = "", devices: str = "") -> str:
    return (f"<domain type='{kind}'><name>{name}</name><uuid>{uuid}</uuid>{extra}"
            f"<memory unit='MiB'>64</memory>{vcpus}<os><type>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


DEVICES = ("<disk type='file' device='disk'><source file='/srv/g.img'/><target dev='xvda'/>"
           "</disk><interface type='bridge'><mac address='00:16:3e:fa:ce:01'/>"
           "<source bridge='xenbr0'/></interface>")
META = ("<title>Front end</title><description>serves\nthe web</description><metadata>"
        f"<app:role xmlns:app='{NS}' tier='front'><app:x/>  <plain>t</plain></app:role>"
        "<nons/></metadata>")


@pytest.fixture(scope="module")
def shared_daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_module_daemon()


@pytest.fixture(params=["sim", "daemon"])
def xc(request: pytest.FixtureRequest) -> Iterator[face.virConnect]:
    """The face on an embedded host, or on a daemon (shared by the module: the tests
    remove what they make)."""
    if request.param == "sim":
        host: xvirt.sim.Host = request.getfixturevalue("host")
        uri = host.uri
    else:
        uri = request.getfixturevalue("shared_daemon").unix_uri
    c = face.open(uri)
    yield c
    for dom in c.listAllDomains(0):
        if dom.name().startswith("t-"):
            for step in (dom.destroy, dom.undefine):
                with contextlib.suppress(face.libvirtError):
                    step()
    c.close()


@pytest.fixture
def lv() -> Iterator[Any]:
    """Real libvirt-python on its test driver (a private one for each test)."""
    lvm = real_libvirt()
    lvm.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = lvm.open("test:///default")
    yield conn
    for dom in conn.listAllDomains(0):
        if dom.name().startswith("t-"):
            for step in (dom.destroy, dom.undefine):
                with contextlib.suppress(lvm.libvirtError):
                    step()
    conn.close()


def _lv_err(call: Callable[[], object]) -> tuple[int, int, str]:
    lvm = real_libvirt()
    with pytest.raises(lvm.libvirtError) as info:
        call()
    e = info.value
    return e.get_error_code(), e.get_error_domain(), e.get_error_message()


# -- createXML, XMLDesc, defineXML -----------------------------------------------------------


def test_create_xml_starts_a_transient_domain_that_xml_desc_gives_back(
        xc: face.virConnect) -> None:
    text = xml("t-web", "5ca1ab1e-0000-4000-8000-000000000101", extra=META, devices=DEVICES)
    dom = xc.createXML(text, 0)
    assert dom.ID() > 0 and dom.isActive() == 1 and dom.isPersistent() == 0
    assert dom.info()[:4] == [face.VIR_DOMAIN_RUNNING, 65536, 65536, 1]
    root = ET.fromstring(dom.XMLDesc(0))
    assert (root.get("type"), root.get("id"), root.findtext("name")) == (
        "xen", str(dom.ID()), "t-web")
    assert (root.findtext("title"), root.findtext("description")) == (
        "Front end", "serves\nthe web")
    vcpu = root.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("2", "1")
    metadata = root.find("metadata")
    assert metadata is not None
    assert [e.tag for e in metadata] == [f"{{{NS}}}role"]  # no namespace: not kept (libvirt)
    element = dom.metadata(ELEMENT, NS, 0)
    parsed = ET.fromstring(element)  # out of its namespace, as libvirt gives it
    assert (parsed.tag, parsed.get("tier"), parsed.findtext("plain")) == ("role", "front", "t")
    # what XMLDesc gives, createXML takes back: the same domain, the same XML
    first = dom.XMLDesc(0)
    dom.destroy()
    again = xc.createXML(first, 0)
    assert again.UUIDString() == dom.UUIDString()
    assert again.metadata(ELEMENT, NS, 0) == element
    assert _without_id(again.XMLDesc(0)) == _without_id(first)
    inactive = ET.fromstring(again.XMLDesc(face.VIR_DOMAIN_XML_INACTIVE))
    assert inactive.get("id") is None
    again.destroy()
    assert err(lambda: xc.lookupByName("t-web"))[0] == face.VIR_ERR_NO_DOMAIN


def _without_id(text: str) -> str:
    """The XML without what depends on the running ID: the ID, and each NIC's vif name."""
    root = ET.fromstring(text)
    root.attrib.pop("id", None)
    for nic in root.iterfind("devices/interface"):
        for target in nic.findall("target"):
            nic.remove(target)
    return ET.tostring(root, encoding="unicode")


def test_create_linux_and_paused(xc: face.virConnect) -> None:
    dom = xc.createLinux(xml("t-old", "5ca1ab1e-0000-4000-8000-000000000102"), 0)
    assert dom.state()[0] == face.VIR_DOMAIN_RUNNING
    paused = xc.createXML(xml("t-paused", "5ca1ab1e-0000-4000-8000-000000000103"),
                          face.VIR_DOMAIN_START_PAUSED)
    assert paused.state() == [face.VIR_DOMAIN_PAUSED, face.VIR_DOMAIN_PAUSED_USER]
    code, _domain, message = err(lambda: xc.createXML(
        xml("t-x", "5ca1ab1e-0000-4000-8000-000000000104"), 4))  # the driver's domain
    assert (code, message) == (8, "unsupported flags (0x4) in function virDomainCreateXML")


def test_create_xml_refuses_as_libvirt_does(xc: face.virConnect, lv: Any) -> None:
    """Names and UUIDs held by another domain, a running one again, bad XML: libvirt's
    codes and words (the reference is the test driver's: it reads the XML the same)."""
    u1, u2 = "5ca1ab1e-0000-4000-8000-000000000201", "5ca1ab1e-0000-4000-8000-000000000202"
    for conn, kind in ((xc, "xen"), (lv, "test")):
        conn.createXML(xml("t-a", u1, kind), 0)
    for conn, kind in ((xc, "xen"), (lv, "test")):
        got = (_lv_err if conn is lv else err)

        def create(name: str, uuid: str, conn: Any = conn, kind: str = kind,
                   **more: str) -> Callable[[], object]:
            return lambda: conn.createXML(xml(name, uuid, kind, **more), 0)

        assert got(create("t-a", u2)) == (
            9, 20, f"operation failed: domain 't-a' already exists with uuid {u1}")
        assert got(create("t-b", u1)) == (
            9, 20, f"operation failed: domain 't-a' is already defined with uuid {u1}")
        assert got(create("t-a", u1)) == (
            55, 20, "Requested operation is not valid: domain 't-a' is already active")
        assert got(create("t-c", u2, extra="<title>a\nb</title>")) == (
            27, 20, "XML error: Domain title can't contain newlines")
        assert got(create("t-c", u2, vcpus="<vcpu current='3'>2</vcpu>")) == (
            67, 20, "unsupported configuration: maximum vCPU count must not be less than "
                    "current vCPU count")
    with pytest.raises(TypeError):
        xc.createXML(xml("t-c", u2), "0")  # type: ignore[arg-type]


def test_define_xml_keeps_the_maximum_and_metadata(xc: face.virConnect) -> None:
    text = xml("t-def", "5ca1ab1e-0000-4000-8000-000000000301", extra=META, devices=DEVICES)
    dom = xc.defineXML(text)
    assert (dom.vcpusFlags(CONFIG), dom.vcpusFlags(CONFIG | MAXIMUM)) == (1, 2)
    assert dom.metadata(TITLE, None, 0) == "Front end"
    first = dom.XMLDesc(0)
    assert xc.defineXML(first).UUIDString() == dom.UUIDString()  # its own XML back
    assert dom.XMLDesc(0) == first
    assert dom.create() == 0
    assert (dom.vcpusFlags(0), dom.maxVcpus(), dom.info()[3]) == (1, 2, 1)
    assert dom.destroy() == 0 and dom.undefine() == 0


# -- the node ---------------------------------------------------------------------------------


def test_capabilities(xc: face.virConnect, lv: Any) -> None:
    root = ET.fromstring(xc.getCapabilities())
    info = xc.getInfo()
    assert root.tag == "capabilities" and root.findtext("host/cpu/arch") == info[0]
    topology = root.find("host/cpu/topology")
    assert topology is not None and [int(topology.get(k, 0)) for k in (
        "sockets", "cores", "threads")] == info[5:8]
    cells = root.find("host/topology/cells")
    assert cells is not None and int(cells.get("num", 0)) == info[4]
    assert len(root.findall("host/topology/cells/cell/cpus/cpu")) == info[2]
    guests = {(g.findtext("os_type"), g.find("arch").get("name"))  # type: ignore[union-attr]
              for g in root.findall("guest")}
    assert guests == {("xen", "x86_64"), ("xen", "i686"), ("hvm", "i686"), ("hvm", "x86_64")}
    assert {d.get("type") for d in root.iter("domain")} == {"xen"}
    # the shape libvirt's test driver has: the same elements where a script reads them
    reference = ET.fromstring(lv.getCapabilities())
    for path in ("host/cpu/arch", "host/topology/cells/cell/cpus/cpu", "guest/os_type",
                 "guest/arch/wordsize", "guest/arch/emulator", "guest/arch/domain"):
        assert (root.find(path) is None) == (reference.find(path) is None), path


def test_node_statistics_as_libvirt_gives_them(xc: face.virConnect, lv: Any) -> None:
    mem = xc.getMemoryStats(ALL)
    assert list(mem) == ["total", "free", "buffers", "cached"]  # Linux's order, libvirt's
    assert all(type(v) is int for v in mem.values())
    assert mem["total"] == xc.getInfo()[1] * 1024 and mem["free"] * 1024 == xc.getFreeMemory()
    assert xc.getMemoryStats(0, 0)["total"] == mem["total"]
    cpu = xc.getCPUStats(ALL, 0)
    reference = lv.getCPUStats(ALL, 0)
    assert sorted(cpu) == sorted(reference) and list(cpu) == ["kernel", "user", "idle", "iowait"]
    assert {type(v) for v in cpu.values()} == {type(v) for v in reference.values()} == {int}
    assert sorted(xc.getCPUStats(0)) == sorted(cpu)
    # the generic checks, word for word
    assert err(lambda: xc.getCPUStats(-2)) == _lv_err(lambda: lv.getCPUStats(-2)) == (
        8, 20, "cpuNum in virNodeGetCPUStats only accepts -1 as a negative value")
    assert err(lambda: xc.getMemoryStats(-2))[:2] == (8, 20)
    assert err(lambda: xc.getCPUStats(xc.getInfo()[2]))[0] == 8
    assert err(lambda: xc.getMemoryStats(1))[0] == 8
    assert err(lambda: xc.getCPUStats(ALL, 1))[0] == 8
    with pytest.raises(TypeError):
        xc.getCPUStats("0")  # type: ignore[arg-type]


# -- vCPUs ------------------------------------------------------------------------------------


def test_vcpus_as_libvirt_gives_them(xc: face.virConnect, lv: Any) -> None:
    dom = xc.createXML(xml("t-v", "5ca1ab1e-0000-4000-8000-000000000401"), 0)
    ref = lv.createXML(xml("t-v", "5ca1ab1e-0000-4000-8000-000000000401", "test"), 0)
    for d in (dom, ref):
        info, maps = d.vcpus()
        assert isinstance(info, list) and isinstance(maps, list) and len(info) == len(maps) == 1
        number, state, cpu_time, cpu = info[0]
        assert (number, type(state), type(cpu_time), type(cpu)) == (0, int, int, int)
        assert isinstance(maps[0], tuple) and all(type(b) is bool for b in maps[0])
        assert (d.vcpusFlags(0), d.vcpusFlags(LIVE), d.vcpusFlags(MAXIMUM), d.maxVcpus()) == (
            1, 1, 2, 2)
        assert d.setVcpusFlags(2, LIVE) == 0
        assert (d.vcpusFlags(LIVE), d.info()[3], len(d.vcpus()[0])) == (2, 2, 2)
        assert d.setVcpus(1) == 0 and d.info()[3] == 1
    assert len(dom.vcpus()[1][0]) == xc.getInfo()[2]  # one flag per host CPU
    # the generic checks, word for word; the host's refusals, code for code
    for call in (lambda d: d.setVcpusFlags(0, 0), lambda d: d.setVcpus(0),
                 lambda d: d.setVcpusFlags(2, MAXIMUM),
                 lambda d: d.setVcpusFlags(2, MAXIMUM | LIVE),
                 lambda d: d.vcpusFlags(LIVE | CONFIG)):
        assert err(partial(call, dom)) == _lv_err(partial(call, ref))
    for call in (lambda d: d.setVcpusFlags(3, LIVE), lambda d: d.setVcpusFlags(1, CONFIG),
                 lambda d: d.vcpusFlags(CONFIG)):
        assert err(partial(call, dom))[0] == _lv_err(partial(call, ref))[0]
    assert err(lambda: dom.vcpusFlags(face.VIR_DOMAIN_VCPU_GUEST))[0] == 8
    with pytest.raises(TypeError):
        dom.setVcpus("2")  # type: ignore[arg-type]
    dom.destroy()


def test_a_shut_off_domain_has_no_live_vcpus(xc: face.virConnect) -> None:
    dom = xc.defineXML(xml("t-off", "5ca1ab1e-0000-4000-8000-000000000402"))
    for call in (dom.vcpus, dom.maxVcpus, lambda: dom.vcpusFlags(LIVE), lambda: dom.setVcpus(1),
                 dom.schedulerParameters):
        assert err(call) == (55, 20, "Requested operation is not valid: domain is not running")
    assert dom.setVcpusFlags(2, CONFIG) == 0 and dom.vcpusFlags(0) == 2
    assert dom.setVcpusFlags(4, CONFIG | MAXIMUM) == 0 and dom.vcpusFlags(MAXIMUM) == 4
    assert dom.schedulerType() == ("credit", 2)
    assert dom.undefine() == 0


# -- the credit scheduler -----------------------------------------------------------------------


def test_the_credit_scheduler(xc: face.virConnect, lv: Any) -> None:
    dom = xc.createXML(xml("t-s", "5ca1ab1e-0000-4000-8000-000000000501"), 0)
    ref = lv.lookupByName("test")
    assert dom.schedulerType() == ("credit", 2)
    assert type(ref.schedulerType()) is type(dom.schedulerType())
    params = dom.schedulerParameters()
    assert params == dom.schedulerParametersFlags(0) == {"weight": 256, "cap": 0}
    assert {type(v) for v in params.values()} == {type(v) for v in
                                                 ref.schedulerParameters().values()} == {int}
    assert dom.setSchedulerParameters({"weight": 512}) == 0
    assert dom.setSchedulerParametersFlags({"cap": 50}, 0) == 0
    assert dom.schedulerParameters() == {"weight": 512, "cap": 50}
    # the binding's own checks, as real libvirt-python makes them
    for bad in ({"foo": 1}, {}, {"weight": "x"}, {"weight": -1}, {"weight": 2**40}):
        with pytest.raises(Exception) as ours:
            dom.setSchedulerParameters(bad)
        with pytest.raises(Exception) as theirs:
            ref.setSchedulerParameters(bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
    for bad in ({"weight": 0}, {"weight": 65536}, {"cap": 201}):  # xend's: 100 x 2 vCPUs
        assert err(partial(dom.setSchedulerParameters, bad))[0] == face.VIR_ERR_INVALID_ARG
    assert dom.schedulerParameters() == {"weight": 512, "cap": 50}
    assert err(lambda: dom.schedulerParametersFlags(LIVE))[0] == 8
    dom.destroy()


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_as_libvirt_keeps_it(xc: face.virConnect, lv: Any) -> None:
    dom = xc.createXML(xml("t-m", "5ca1ab1e-0000-4000-8000-000000000601"), 0)
    ref = lv.createXML(xml("t-m", "5ca1ab1e-0000-4000-8000-000000000601", "test"), 0)
    for d, got in ((dom, err), (ref, _lv_err)):
        assert got(partial(d.metadata, ELEMENT, NS, 0)) == (
            80, 20, "metadata not found: Requested metadata element is not present")
        assert d.setMetadata(ELEMENT, "<fav colour='blue'>1</fav>", "x", NS, 0) == 0
        assert d.metadata(ELEMENT, NS, 0) == '<fav colour="blue">1</fav>'
        assert d.setMetadata(TITLE, "A title", None, None, 0) == 0
        assert d.setMetadata(DESCRIPTION, "two\nlines", None, None, LIVE) == 0
        assert (d.metadata(TITLE, None, 0), d.metadata(DESCRIPTION, None, LIVE)) == (
            "A title", "two\nlines")
        root = ET.fromstring(d.XMLDesc(0))
        assert (root.findtext("title"), root.findtext("description")) == ("A title", "two\nlines")
        meta = root.find("metadata")
        assert meta is not None and [(e.tag, e.get("colour"), e.text) for e in meta] == [
            (f"{{{NS}}}fav", "blue", "1")]
        assert d.setMetadata(ELEMENT, None, None, NS, 0) == 0
        assert list(ET.fromstring(d.XMLDesc(0)).iterfind("metadata/*")) == []
        assert d.setMetadata(TITLE, "", None, None, 0) == 0
        assert got(partial(d.metadata, TITLE, None, 0))[0] == 80
    # the generic checks and their words, and the host's refusals, as libvirt's
    calls: list[Callable[[Any], object]] = [
        lambda d: d.metadata(ELEMENT, None, 0), lambda d: d.metadata(TITLE, NS, 0),
        lambda d: d.metadata(7, None, 0), lambda d: d.metadata(TITLE, None, LIVE | CONFIG),
        lambda d: d.setMetadata(TITLE, "a\nb", None, None, 0),
        lambda d: d.setMetadata(TITLE, "x", "k", None, 0),
        lambda d: d.setMetadata(DESCRIPTION, "x", None, NS, 0),
        lambda d: d.setMetadata(ELEMENT, "<a/>", None, NS, 0),
        lambda d: d.setMetadata(ELEMENT, "<a/>", "k", None, 0),
        lambda d: d.setMetadata(ELEMENT, "<a/>", "1bad", NS, 0),
        lambda d: d.setMetadata(ELEMENT, "<a/>", "a:b", NS, 0),
        lambda d: d.setMetadata(7, "x", None, None, 0),
        lambda d: d.setMetadata(TITLE, "x", None, None, CONFIG),  # transient: no definition
        lambda d: d.metadata(TITLE, None, CONFIG),
    ]
    for call in calls:
        assert err(partial(call, dom)) == _lv_err(partial(call, ref))
    for bad in ("<foo", "<foo/><bar/>"):  # libxml2 and expat word it apart: the code agrees
        ours, theirs = err(partial(dom.setMetadata, ELEMENT, bad, "k", NS, 0)), _lv_err(
            partial(ref.setMetadata, ELEMENT, bad, "k", NS, 0))
        assert ours[:2] == theirs[:2] and ours[2].startswith("(metadata_xml):1: ")
    dom.destroy()


def test_metadata_of_a_definition(xc: face.virConnect) -> None:
    dom = xc.defineXML(xml("t-md", "5ca1ab1e-0000-4000-8000-000000000602"))
    assert dom.setMetadata(DESCRIPTION, "kept", None, None, CONFIG) == 0
    assert dom.metadata(DESCRIPTION, None, CONFIG) == dom.metadata(DESCRIPTION, None, 0) == "kept"
    assert err(lambda: dom.setMetadata(TITLE, "x", None, None, LIVE)) == (
        55, 20, "Requested operation is not valid: domain is not running")
    assert dom.create() == 0
    assert dom.setMetadata(TITLE, "live only", None, None, 0) == 0
    assert err(lambda: dom.metadata(TITLE, None, CONFIG))[0] == 80
    assert dom.metadata(TITLE, None, LIVE) == "live only"
    dom.destroy()
    assert dom.undefine() == 0


def test_read_only_connections_read(xc: face.virConnect) -> None:
    dom = xc.createXML(xml("t-ro", "5ca1ab1e-0000-4000-8000-000000000701"), 0)
    ro = face.openReadOnly(xc.getURI())
    try:
        d = ro.lookupByName("t-ro")
        assert (d.vcpus()[0][0][0], d.vcpusFlags(0), d.schedulerParameters()["weight"]) == (
            0, 1, 256)
        assert ro.getCapabilities() and ro.getMemoryStats(ALL)["total"] > 0
        assert err(lambda: d.metadata(TITLE, None, 0))[0] == 80
    finally:
        ro.close()
    dom.destroy()
