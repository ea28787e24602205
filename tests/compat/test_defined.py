"""Defined (inactive, shut-off) domains through the face, side by side with real
libvirt-python on libvirt's test driver (test:///default, and a private libvirtd).

The same libvirt-python code (scripts/defined_domains.py: define, look at the
domain shut off, start, pause, stop and undefine it, with every answer printed)
runs on real libvirt-python and through the face on an embedded host, on a host
daemon, and on xvirt's libvirt driver; the answers must agree line for line. The
one documented difference: libvirt's test driver alone reports a few refusals as
VIR_ERR_INTERNAL_ERROR, which libvirt's Xen driver (libxl), like qemu, reports as
VIR_ERR_OPERATION_INVALID, and xvirt's Xen hosts answer as libxl does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._reasons import Reasons, reason_for
from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF
from xvirt.model import DomainState, EventKind
from xvirt.testing.daemon import DaemonProcess
from xvirt.testing.libvirtd import LibvirtdProcess

from .helpers import err

SCRIPT = Path(__file__).resolve().parent / "scripts" / "defined_domains.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("defined_domains", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()

NOT_RUNNING = "error 55 20 Requested operation is not valid: domain is not running"
#: What libvirt's Xen driver (libxl) answers where the test driver says "internal error".
XEN_ANSWERS = {
    "suspend shut off": NOT_RUNNING,
    "resume shut off": NOT_RUNNING,
    "shutdown shut off": NOT_RUNNING,
    "create running": "error 55",  # "Domain is already running", in the driver's domain
}


def as_on_xen(reference: list[str]) -> list[str]:
    """Real libvirt-python's lines with the test driver's quirks answered as libxl does."""
    out = []
    for line in reference:
        label, _, _ = line.partition(": ")
        out.append(f"{label}: {XEN_ANSWERS[label]}" if label in XEN_ANSWERS else line)
    return out


@pytest.fixture(scope="module")
def real() -> Any:
    """The real binding, its errors silenced and its event loop running (as xvirt's
    libvirt driver leaves it)."""
    lv = real_libvirt()
    ensure_event_loop(lv)
    return lv


def _forget(conn: Any, lv: Any) -> None:
    """Leave no domain of the script's behind (a failed run may have)."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(script.NAME) or dom.UUIDString() == script.UUID:
            with contextlib.suppress(lv.libvirtError):
                dom.destroy()
            with contextlib.suppress(lv.libvirtError):
                dom.undefine()


@contextlib.contextmanager
def real_conn(real: Any, uri: str) -> Iterator[Any]:
    conn = real.open(uri)
    _forget(conn, real)
    try:
        yield conn
    finally:
        _forget(conn, real)
        conn.close()


@pytest.fixture(scope="module")
def reference(real: Any) -> list[str]:
    """The script's lines on real libvirt-python, test:///default."""
    with real_conn(real, "test:///default") as conn:
        return list(script.lifecycle(real, conn))


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_module_daemon(tcp=False)


def through_face(uri: str) -> list[str]:
    conn = face.open(uri)
    try:
        return list(script.lifecycle(face, conn))
    finally:
        conn.close()


# -- the lifecycle, side by side --------------------------------------------------------------


def test_the_reference_is_what_libvirt_says(reference: list[str]) -> None:
    """The lines hold what the brief asks of the face (read on real libvirt itself)."""
    assert "isActive: 0" in reference and "isPersistent: 1" in reference
    assert "info: [5, 524288, 262144, 2]" in reference
    assert "state: [5, 0]" in reference  # defined, never run: SHUTOFF_UNKNOWN
    assert "running: (1, True, [1, 1], [1, 524288, 262144, 2])" in reference  # BOOTED
    start = reference.index("suspend: 0")
    assert reference[start:start + 4] == [
        "suspend: 0", "paused: [3, 1]", "resume: 0", "unpaused: [1, 5]"]
    assert "destroyed: ([5, 2], -1, 0, 1)" in reference and "shut down: [5, 1]" in reference
    assert f"destroy shut off: {NOT_RUNNING}" in reference
    assert "suspend shut off: error 1" in reference  # the test driver's own word


def test_an_embedded_host_answers_as_libvirt(host: xvirt.sim.Host,
                                             reference: list[str]) -> None:
    assert through_face(host.uri) == as_on_xen(reference)
    assert [d.name for d in host.domains()] == ["Domain-0"]
    assert xvirt.sim._model_of(host).defined()[2] == ()


def test_a_daemon_answers_as_libvirt(daemon: DaemonProcess, reference: list[str]) -> None:
    assert through_face(daemon.unix_uri) == as_on_xen(reference)


def test_the_libvirt_driver_answers_as_libvirt_itself(reference: list[str]) -> None:
    """Over test:///default libvirt answers what xvirt's API does not carry (state
    reasons, defineXML, create, undefine, refusals): exactly, quirks included."""
    assert through_face("test:///default") == reference


def test_a_private_libvirtd_answers_the_same_through_the_face(real: Any) -> None:
    with LibvirtdProcess() as d:
        with real_conn(real, d.uri) as conn:
            expected = list(script.lifecycle(real, conn))
        assert through_face(d.uri) == expected


def without_reasons(lines: list[str]) -> list[str]:
    """The lines with every state's reason UNKNOWN (0)."""
    stated = ("state", "state(0)", "running", "paused", "unpaused", "destroyed", "shut down")
    return [re.sub(r"\[(\d), \d+\]", r"[\1, 0]", line, count=1)
            if line.partition(": ")[0] in stated else line for line in lines]


def test_a_private_test_host_answers_as_libvirt(tmp_path: Path, real: Any) -> None:
    """test://<file> gives each connection a host of its own: the face's libvirt calls go
    to the connection under its own, so even there libvirt answers them, reasons and
    refusals included."""
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    uri = f"test://{node}"
    with real_conn(real, uri) as conn:
        expected = list(script.lifecycle(real, conn))
    conn = face.open(uri)
    try:
        got = list(script.lifecycle(face, conn))
    finally:
        conn.close()
    assert got == expected
    assert any(line.startswith("shut down: [5, ") and line != "shut down: [5, 0]"
               for line in got), got


# -- the script, unmodified, through `xvirt compat` ---------------------------------------------


def run_script(uri: str, *, compat: bool) -> list[str]:
    argv = [sys.executable, str(SCRIPT), uri]
    if compat:
        argv = [sys.executable, "-m", "xvirt", "compat", "--", *argv]
    env = dict(os.environ)
    env.pop("LIBVIRT_DEFAULT_URI", None)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


def test_the_script_agrees_everywhere_events_included(daemon: DaemonProcess) -> None:
    real_lines = run_script("test:///default", compat=False)
    events = [line for line in real_lines if line.startswith("event ")]
    assert events == [f"event {script.NAME} {e}" for e in (
        "Defined 0", "Defined 1", "Started 0", "Suspended 0", "Resumed 0", "Stopped 1",
        "Started 0", "Stopped 0", "Undefined 0")]  # ADDED, UPDATED, BOOTED ... REMOVED
    assert run_script("test:///default", compat=True) == real_lines
    xen = as_on_xen(real_lines)
    assert run_script("sim:///defined-script?guests=0", compat=True) == xen
    assert run_script(daemon.unix_uri, compat=True) == xen


# -- defineXML: what libvirt takes and refuses ------------------------------------------------

GOOD = "<name>{n}</name><memory>1024</memory><os><type>hvm</type></os>"
BAD_XML = [
    "<domain",
    "",
    "<domain type='{t}'><name>a</name><memory>1</memory><os><type>hvm</type></os></domain><x/>",
    "<notdomain/>",
    "<domain type='{t}'><memory>1024</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name></name><memory>1024</memory><os><type>hvm</type></os></domain>",
    "<domain><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>",
    "<domain type='bogus'><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type></type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type>bogus</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type> hvm </type></os></domain>",
    "<domain type='{t}'><name>a</name><uuid>xyz</uuid><memory>1024</memory>"
    "<os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a/b</name><memory>1024</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a&#10;b</name><memory>1024</memory><os><type>hvm</type></os>"
    "</domain>",
    "<domain type='{t}'><name>a</name><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>0</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>abc</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>-5</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory> 5 </memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>0x5</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>+0</memory><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory unit='xx'>1</memory><os><type>hvm</type></os>"
    "</domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><vcpu>abc</vcpu>"
    "<os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><vcpu current='8'>4</vcpu>"
    "<os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><vcpu>0</vcpu>"
    "<os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type>hvm</type></os>"
    "<devices><disk type='file'><source file='/x.img'/></disk></devices></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type>hvm</type></os>"
    "<devices><interface type='bridge'><mac address='00:16:3e:00:00:01'/></interface>"
    "</devices></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type>hvm</type></os>"
    "<devices><interface type='bridge'><mac address='zz'/><source bridge='br0'/>"
    "</interface></devices></domain>",
    "<domain type='{t}'><name>a</name><memory>1024</memory><os><type>hvm</type></os>"
    "<devices><interface type='bridge'><mac address='01:00:00:00:00:01'/>"
    "<source bridge='br0'/></interface></devices></domain>",
    # several faults: the first libvirt checks is reported
    "<domain><memory>1024</memory></domain>",
    "<domain type='{t}'><name>a</name><uuid>x</uuid></domain>",
    "<domain type='{t}'><name>a/b</name><os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a</name><memory>x</memory><vcpu>x</vcpu>"
    "<os><type>hvm</type></os></domain>",
    "<domain type='{t}'><name>a/b</name><memory>1</memory><os><type>hvm</type></os>"
    "<devices><disk type='file'><source file='/x'/></disk></devices></domain>",
]


def _refusal(call: Callable[[], object], lv: Any) -> tuple[int, int, str | None]:
    try:
        call()
    except lv.libvirtError as e:
        code, where = e.get_error_code(), e.get_error_domain()
        # libxml2 and expat word a malformed document each their own way
        message = None if code == lv.VIR_ERR_XML_DETAIL and where == lv.VIR_FROM_DOMAIN \
            else e.get_error_message()
        return code, where, message
    raise AssertionError("accepted")


@pytest.mark.parametrize("xml", BAD_XML)
def test_bad_xml_is_refused_as_libvirt_refuses_it(real: Any, host: xvirt.sim.Host,
                                                  conn: face.virConnect, xml: str) -> None:
    with real_conn(real, "test:///default") as lv:
        want = _refusal(lambda: lv.defineXML(xml.format(t="test")), real)
    got = _refusal(lambda: conn.defineXML(xml.format(t="xen")), face)
    assert got == want
    assert xvirt.sim._model_of(host).defined()[2] == () and len(host.domains()) == 1


@pytest.mark.parametrize(("body", "info"), [
    (GOOD, [5, 1024, 1024, 1]),
    ("<name>{n}</name><memory unit='b'>1000</memory><os><type>hvm</type></os>", [5, 1, 1, 1]),
    ("<name>{n}</name><memory unit='bytes'>2049</memory><os><type>hvm</type></os>",
     [5, 3, 3, 1]),
    ("<name>{n}</name><memory unit='GB'>1</memory><os><type>hvm</type></os>",
     [5, 976563, 976563, 1]),
    ("<name>{n}</name><memory unit='MiB'>512</memory><currentMemory unit='M'>256"
     "</currentMemory><os><type>hvm</type></os>", [5, 524288, 262144, 1]),
    ("<name>{n}</name><memory unit='k'>+2048</memory><os><type>hvm</type></os>",
     [5, 2048, 2048, 1]),
    ("<name>{n}</name><memory>1024</memory><currentMemory>4096</currentMemory>"
     "<os><type>hvm</type></os>", [5, 1024, 1024, 1]),
    ("<name>{n}</name><memory>1024</memory><currentMemory>0</currentMemory>"
     "<os><type>hvm</type></os>", [5, 1024, 1024, 1]),
    ("<name>{n}</name><memory>1024</memory><vcpu current='2'>4</vcpu>"
     "<os><type>hvm</type></os>", [5, 1024, 1024, 2]),
    ("<name>{n}</name><memory> 2048</memory><vcpu>\t003</vcpu><os><type>hvm</type></os>",
     [5, 2048, 2048, 3]),
    ("<name> {n} </name><uuid> 5ca1ab1e000040008000-00000000d0ff </uuid><memory>1024"
     "</memory><os><type>hvm</type></os>", [5, 1024, 1024, 1]),
])
def test_good_xml_means_what_it_means_to_libvirt(real: Any, conn: face.virConnect,
                                                 body: str, info: list[int]) -> None:
    name = script.NAME + "-xml"

    def define(c: Any, kind: str) -> list[Any]:
        d = c.defineXML(f"<domain type='{kind}'>{body.format(n=name)}</domain>")
        try:
            return [d.name(), d.info()[:4], d.state(), d.isActive(), d.isPersistent()]
        finally:
            d.undefine()

    with real_conn(real, "test:///default") as lv:
        want = define(lv, "test")
    assert want[1] == info
    assert define(conn, "xen") == want


def test_xml_devices_become_the_domains_devices(host: xvirt.sim.Host,
                                                conn: face.virConnect) -> None:
    d = conn.defineXML(script.XML.format(type="xen", name="dev", uuid=script.UUID).replace(
        "</devices>", "<disk type='block' device='cdrom'><source dev='/dev/sr0'/>"
        "<target dev='hdc'/></disk><interface type='network'><source network='lan'/>"
        "</interface></devices>"))
    with xvirt.open(host.uri) as native:
        config = native.lookup_by_uuid(script.UUID).config()
    assert (config.memory_kib, config.max_memory_kib, config.vcpus, config.os_type) == (
        262144, 524288, 2, "hvm")
    assert [(k.source, k.target, k.readonly) for k in config.disks] == [
        ("/var/lib/xen/images/dev.img", "xvda", False), ("/dev/sr0", "hdc", True)]
    assert [n.bridge for n in config.nics] == ["xenbr0", "lan"]
    assert config.nics[0].mac == "00:16:3e:00:d0:01"
    assert config.nics[1].mac.startswith("00:16:3e:")  # made up, in Xen's prefix
    root = ET.fromstring(d.XMLDesc())
    assert root.get("id") is None and [t.get("dev") for t in root.iterfind(
        "devices/disk/target")] == ["xvda", "hdc"]


def test_xml_a_xen_host_cannot_run_is_refused_as_unsupported(conn: face.virConnect) -> None:
    for kind, os_type in (("kvm", "hvm"), ("xen", "exe")):
        code, where, message = err(lambda k=kind, o=os_type: conn.defineXML(
            f"<domain type='{k}'><name>a</name><memory>1</memory><os><type>{o}</type></os>"
            "</domain>"))
        assert (code, where) == (face.VIR_ERR_CONFIG_UNSUPPORTED, face.VIR_FROM_DOMAIN)
    bad_target = script.XML.format(type="xen", name="t", uuid=script.UUID).replace(
        "xvda", "vda")
    code, where, message = err(lambda: conn.defineXML(bad_target))
    assert (code, where) == (face.VIR_ERR_CONFIG_UNSUPPORTED, face.VIR_FROM_DOMAIN)
    assert message is not None and "'vda'" in message
    assert conn.listDefinedDomains() == []


def test_define_xml_arguments_and_access(host: xvirt.sim.Host, conn: face.virConnect,
                                         ro: face.virConnect) -> None:
    with pytest.raises(TypeError):
        conn.defineXML(5)  # type: ignore[arg-type]
    assert err(lambda: conn.defineXML(None)) == (  # type: ignore[arg-type]
        8, 20, "xml in virDomainDefineXML must not be NULL")
    assert err(lambda: ro.defineXML(None)) == (  # type: ignore[arg-type]
        face.VIR_ERR_OPERATION_DENIED, 20,
        "operation forbidden: read only access prevents virDomainDefineXML")
    assert conn.listDefinedDomains() == []
    assert not [e for e in host.journal() if e.op == "define"]  # the host was not asked


def test_names_are_unique_among_running_and_defined_domains(
        host: xvirt.sim.Host, conn: face.virConnect) -> None:
    web = host.create("web")
    xml = script.XML.format(type="xen", name="web", uuid=script.UUID)
    assert err(lambda: conn.defineXML(xml)) == (
        9, 20, f"operation failed: domain 'web' already exists with uuid {web.uuid}")
    running = script.XML.format(type="xen", name="web", uuid=web.uuid)
    d = conn.defineXML(running)  # a running transient domain made persistent, as libvirt
    assert (d.ID(), d.isActive(), d.isPersistent(), d.state()) == (web.id, 1, 1, [1, 0])
    assert err(lambda: conn.defineXML(running.replace("<name>web", "<name>www"))) == (
        9, 20, f"operation failed: domain 'web' is already defined with uuid {web.uuid}")


# -- running and defined domains on an xvirt host ----------------------------------------------


def test_transient_and_persistent_running_domains(host: xvirt.sim.Host,
                                                  conn: face.virConnect) -> None:
    transient = host.create("transient")
    managed = host.define("managed", memory_kib=65536)
    started = host.start(managed.uuid)
    host.define("idle", memory_kib=65536)
    t, m, i = (conn.lookupByName(n) for n in ("transient", "managed", "idle"))
    assert [(d.isActive(), d.isPersistent(), d.ID()) for d in (t, m, i)] == [
        (1, 0, transient.id), (1, 1, started.id), (0, 1, -1)]
    L = face

    def names(flags: int) -> set[str]:
        return {d.name() for d in conn.listAllDomains(flags)}

    assert names(L.VIR_CONNECT_LIST_DOMAINS_PERSISTENT) == {"managed", "idle"}
    assert names(L.VIR_CONNECT_LIST_DOMAINS_TRANSIENT) == {"Domain-0", "transient"}
    assert names(L.VIR_CONNECT_LIST_DOMAINS_PERSISTENT | L.VIR_CONNECT_LIST_DOMAINS_ACTIVE) \
        == {"managed"}
    assert conn.listDefinedDomains() == ["idle"] and conn.numOfDefinedDomains() == 1
    host.destroy(transient.id)  # a transient domain that stops is gone ...
    assert err(t.isPersistent)[0] == face.VIR_ERR_NO_DOMAIN
    host.destroy(started.id)  # ... a persistent one is shut off
    assert (m.isActive(), m.isPersistent(), m.ID(), m.info()[0]) == (0, 1, -1, 5)
    assert sorted(conn.listDefinedDomains()) == ["idle", "managed"]


def test_a_running_domain_cannot_be_undefined_on_a_xen_host(host: xvirt.sim.Host,
                                                            conn: face.virConnect) -> None:
    """xend's delete refuses a running domain (libvirt would leave it transient)."""
    d = conn.defineXML(script.XML.format(type="xen", name="keep", uuid=script.UUID))
    d.create()
    code, where, _ = err(d.undefine)
    assert (code, where) == (face.VIR_ERR_OPERATION_INVALID, face.VIR_FROM_XEN)
    assert (d.isActive(), d.isPersistent()) == (1, 1)
    assert err(lambda: d.undefineFlags(1 << 10))[:2] == (8, face.VIR_FROM_XEN)
    assert err(lambda: d.createWithFlags(face.VIR_DOMAIN_START_PAUSED))[:2] == (
        8, face.VIR_FROM_XEN)  # xvirt's hosts cannot start a domain paused
    d.destroy()
    assert d.undefineFlags(face.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                           | face.VIR_DOMAIN_UNDEFINE_NVRAM) == 0
    assert conn.listDefinedDomains() == []


def test_a_shut_off_domain_is_renamed_as_libvirt_renames_it(host: xvirt.sim.Host,
                                                            conn: face.virConnect) -> None:
    d = conn.defineXML(script.XML.format(type="xen", name="old", uuid=script.UUID))
    assert d.rename("new", 0) == 0
    assert (d.name(), conn.listDefinedDomains(), conn.lookupByName("new") == d) == (
        "new", ["new"], True)
    assert err(lambda: conn.lookupByName("old"))[0] == face.VIR_ERR_NO_DOMAIN
    assert d.info()[1:3] == [524288, 262144]  # the definition is kept, under its new name


def test_saving_a_shut_off_domain_is_refused_wherever_the_path_is(
        host: xvirt.sim.Host, conn: face.virConnect) -> None:
    d = conn.defineXML(script.XML.format(type="xen", name="s", uuid=script.UUID))
    inside = os.path.join(host.image_dir, "s.img")
    for path in (inside, "/elsewhere/s.img"):
        assert err(lambda p=path: d.save(p)) == (
            55, 20, "Requested operation is not valid: domain is not running")
    assert host.images() == []


# -- state reasons on xvirt's hosts ---------------------------------------------------------


def test_reasons_need_the_change_seen(host: xvirt.sim.Host, conn: face.virConnect) -> None:
    """Changes made before the connection acted are UNKNOWN (as libvirt after a
    restart); once it acts, every change is seen, whoever makes it."""
    a, b = host.create("a"), host.create("b")
    host.pause(a.id)
    da, db = conn.lookupByName("a"), conn.lookupByName("b")
    assert (da.state(), db.state()) == ([3, 0], [1, 0])  # PAUSED_UNKNOWN, RUNNING_UNKNOWN
    before = conn._xvirt.stats().event_requests
    da.state()
    assert conn._xvirt.stats().event_requests == before  # nothing watched: nothing asked
    da.resume()  # the connection acts: from now on it follows the host's events
    host.pause(b.id)  # someone else's change, seen too
    assert (da.state(), db.state()) == ([1, 5], [3, 1])
    stats = {d.name(): r["state.reason"] for d, r in conn.getAllDomainStats()}
    assert (stats["a"], stats["b"]) == (5, 1)
    moved = host.migrate(b.id)  # it runs on after a (local) migration
    assert db.state() == [1, 2]  # RUNNING_MIGRATED
    host.save(moved.id, "b.img")
    host.restore("b.img")
    assert db.state() == [1, 3]  # RUNNING_RESTORED
    host.crash(conn.lookupByName("b").ID())
    assert db.state() == [face.VIR_DOMAIN_CRASHED, face.VIR_DOMAIN_CRASHED_PANICKED]


@given(state=st.sampled_from(list(DomainState)),
       last=st.none() | st.sampled_from(list(EventKind)))
def test_every_reason_is_one_libvirt_has_for_the_state(state: DomainState,
                                                       last: EventKind | None) -> None:
    lv = real_libvirt()
    prefixes = {lv.VIR_DOMAIN_RUNNING: "VIR_DOMAIN_RUNNING_", lv.VIR_DOMAIN_PAUSED:
                "VIR_DOMAIN_PAUSED_", lv.VIR_DOMAIN_SHUTOFF: "VIR_DOMAIN_SHUTOFF_",
                lv.VIR_DOMAIN_CRASHED: "VIR_DOMAIN_CRASHED_", lv.VIR_DOMAIN_BLOCKED:
                "VIR_DOMAIN_BLOCKED_", lv.VIR_DOMAIN_SHUTDOWN: "VIR_DOMAIN_SHUTDOWN_"}
    prefix = prefixes[LIBVIRT_STATE_OF[state]]
    valid = {getattr(lv, n) for n in dir(lv) if n.startswith(prefix)
             and not n.endswith("_LAST") and isinstance(getattr(lv, n), int)}
    reason = reason_for(state, last)
    assert reason in valid
    if last is None and state is not DomainState.SHUTDOWN:
        assert reason == 0  # nothing seen: *_UNKNOWN


def test_the_reasons_kept_are_bounded(host: xvirt.sim.Host, monkeypatch: pytest.MonkeyPatch,
                                      ) -> None:
    monkeypatch.setattr(Reasons, "CAPACITY", 3)
    with xvirt.open(host.uri) as x:
        reasons = Reasons(x)
        reasons.watch()
        recs = [host.create(f"g{i}") for i in range(5)]
        kept = reasons.reasons()
        assert list(kept) == [r.uuid for r in recs[-3:]]
        assert reasons.reason(recs[0].uuid, DomainState.RUNNING) == 0  # forgotten: UNKNOWN
        assert reasons.reason(recs[4].uuid, DomainState.RUNNING) == 1


# -- listAllDomains: libvirt's filter semantics, side by side -----------------------------------

FILTER_BITS = ("ACTIVE", "INACTIVE", "PERSISTENT", "TRANSIENT", "RUNNING", "PAUSED",
               "SHUTOFF", "OTHER")
ROLES = ("running-persistent", "running-transient", "paused-persistent", "shutoff")


@pytest.fixture(scope="module")
def populations(real: Any, make_module_sim_host: Callable[..., xvirt.sim.Host]
                ) -> Iterator[tuple[Any, face.virConnect, face.virConnect]]:
    """The same four roles on real test:///default, an embedded host and (through the
    face) test:///default: a domain named after its role in each."""
    host = make_module_sim_host()
    base = script.NAME + "-"
    uuids = [script.UUID[:-2] + tail for tail in ("a1", "a2", "a3", "a4")]
    for role, uuid in zip(ROLES, uuids, strict=True):
        if role == "running-transient":
            host.create(base + role, uuid=uuid)
            continue
        host.define(base + role, uuid=uuid, memory_kib=262144, max_memory_kib=524288,
                    vcpus=2, os_type="hvm")
        if role != "shutoff":
            started = host.start(uuid)
            if role.startswith("paused"):
                host.pause(started.id)
    lv = real.open("test:///default")
    _forget(lv, real)
    for role, uuid in zip(ROLES, uuids, strict=True):
        xml = script.XML.format(type="test", name=base + role, uuid=uuid)
        if role == "running-transient":
            lv.createXML(xml, 0)
            continue
        dom = lv.defineXML(xml)
        if role != "shutoff":
            dom.create()
            if role.startswith("paused"):
                dom.suspend()
    sim, through = face.open(host.uri), face.open("test:///default")
    yield lv, sim, through
    sim.close()
    through.close()
    _forget(lv, real)
    lv.close()


def _roles(doms: list[Any]) -> set[str]:
    base = script.NAME + "-"
    return {d.name()[len(base):] for d in doms if d.name().startswith(base)}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.sets(st.sampled_from(FILTER_BITS)))
def test_list_all_domains_filters_as_libvirt(
        populations: tuple[Any, face.virConnect, face.virConnect], chosen: set[str]) -> None:
    lv, sim, through = populations
    flags = sum(getattr(face, "VIR_CONNECT_LIST_DOMAINS_" + b) for b in chosen)
    want = _roles(lv.listAllDomains(flags))
    assert _roles(sim.listAllDomains(flags)) == want, sorted(chosen)
    assert _roles(through.listAllDomains(flags)) == want, sorted(chosen)


def test_listing_costs(host: xvirt.sim.Host, conn: face.virConnect) -> None:
    """listAllDomains(0) is one data-plane snapshot and one control request (the
    shut-off domains); a persistence filter asks each running domain once more."""
    for i in range(3):
        host.create(f"r{i}")
    host.define("off")
    before = conn._xvirt.stats()
    found = conn.listAllDomains(0)
    after = conn._xvirt.stats()
    assert (after.data_calls - before.data_calls,
            after.control_requests - before.control_requests) == (1, 1)
    assert {d.name() for d in found} == {"Domain-0", "r0", "r1", "r2", "off"}
    after = conn._xvirt.stats()
    assert len(conn.listAllDomains(face.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)) == 1
    last = conn._xvirt.stats()
    assert last.control_requests - after.control_requests == 4 + 1  # 4 running, 1 list


def test_define_xml_flags(real: Any, conn: face.virConnect) -> None:
    d = conn.defineXMLFlags(script.XML.format(type="xen", name="v", uuid=script.UUID),
                            face.VIR_DOMAIN_DEFINE_VALIDATE)
    assert (d.name(), d.isActive(), d.state()) == ("v", 0, [5, 0])
    assert err(lambda: conn.defineXMLFlags("<domain/>", 2)) == (
        8, face.VIR_FROM_XEN, "unsupported flags (0x2) in function virDomainDefineXMLFlags")
    with pytest.raises(TypeError):
        conn.defineXMLFlags("<domain/>", "0")  # type: ignore[arg-type]
    xml = script.XML.format(type="test", name=script.NAME, uuid=script.UUID)
    through = face.open("test:///default")
    try:
        for flags in (0, face.VIR_DOMAIN_DEFINE_VALIDATE):
            with real_conn(real, "test:///default") as lv:
                want = lv.defineXMLFlags(xml, flags).UUIDString()
                want_bad = _refusal(lambda f=flags: lv.defineXMLFlags("<domain/>", f), real)
            got = through.defineXMLFlags(xml, flags)
            assert got.UUIDString() == want and got.undefine() == 0
            assert _refusal(lambda f=flags: through.defineXMLFlags("<domain/>", f),
                            face) == want_bad
    finally:
        through.close()


UNITS = ("", "b", "bytes", "k", "KiB", "KB", "m", "MiB", "MB", "g", "GiB", "GB", "T", "TiB")


@pytest.fixture(scope="module")
def sizes_host(make_module_sim_host: Callable[..., xvirt.sim.Host]) -> Iterator[face.virConnect]:
    conn = face.open(make_module_sim_host().uri)
    yield conn
    conn.close()


@settings(max_examples=40, deadline=None)
@given(maximum=st.tuples(st.integers(1, 4096), st.sampled_from(UNITS)),
       current=st.none() | st.tuples(st.integers(0, 2**22), st.sampled_from(UNITS)),
       vcpus=st.tuples(st.integers(1, 64), st.none() | st.integers(1, 64)))
def test_sizes_read_as_libvirt_reads_them(real: Any, sizes_host: face.virConnect,
                                          maximum: tuple[int, str],
                                          current: tuple[int, str] | None,
                                          vcpus: tuple[int, int | None]) -> None:
    """Memory in any unit (rounded up to KiB), currentMemory clamped to memory, vCPUs
    with or without ``current``: what real libvirt makes of them, or the same refusal."""
    def element(tag: str, value: int, unit: str) -> str:
        return f"<{tag}{f' unit={unit!r}' if unit else ''}>{value}</{tag}>"

    body = element("memory", *maximum) + (element("currentMemory", *current) if current
                                          else "")
    body += f"<vcpu{'' if vcpus[1] is None else f' current={str(vcpus[1])!r}'}>{vcpus[0]}</vcpu>"
    body += "<os><type>hvm</type></os>"

    def answer(conn: Any, lv: Any, kind: str) -> object:
        try:
            d = conn.defineXML(f"<domain type='{kind}'><name>{script.NAME}-sizes</name>"
                               f"{body}</domain>")
        except lv.libvirtError as e:
            return e.get_error_code(), e.get_error_domain(), e.get_error_message()
        try:
            return d.info()[:4]
        finally:
            d.undefine()

    with real_conn(real, "test:///default") as lv:
        want = answer(lv, real, "test")
    assert answer(sizes_host, face, "xen") == want


def test_the_face_on_libvirt_opens_no_second_connection() -> None:
    """Monitoring through the face on libvirt costs one libvirt connection; the calls
    it passes to libvirt go on the one under xvirt's (no second connection)."""
    conn = face.open("test:///default")
    try:
        for domid in conn.listDomainsID():
            conn.lookupByID(domid).info()
        conn.listAllDomains(0)
        dom = conn.lookupByName("test")
        assert dom.state() == [face.VIR_DOMAIN_RUNNING, 0]  # libvirt's test driver says 0
        assert dom._real_dom().connect() is conn._xvirt.libvirt_connection()
    finally:
        conn.close()
