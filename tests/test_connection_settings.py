"""What a Xen host answers beyond identity and lifecycle, through the public API, on the
embedded host and through a daemon alike (issue 18): transient domains created at once,
definitions with a vCPU maximum and metadata, online vCPUs, the credit scheduler,
metadata and its events, the node's statistics and capabilities. Each is one
control-plane request, acts by UUID, and what a daemon keeps survives its restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import xvirt
from xvirt.clock import ManualClock
from xvirt.drivers.base import Driver
from xvirt.errors import (
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ReadOnlyError,
    UnsupportedError,
)
from xvirt.model import (
    Affect,
    DomainMetadata,
    DomainSettings,
    EventKind,
    MetadataElement,
    MetadataKind,
    NodeCpuStats,
    SchedulerParams,
    VcpuState,
)
from xvirt.planes import DiskConfig, NicConfig
from xvirt.testing.daemon import DaemonProcess

NS = "http://example.org/app"
META = DomainMetadata("Web", "the web server\nsecond line",
                      (MetadataElement(NS, "app", "<role tier=\"front\"/>"),))
CONFIG = xvirt.DomainConfig(131072, 262144, 1, "hvm", (DiskConfig("/srv/web.img", "xvda"),),
                            (NicConfig("00:16:3e:00:00:01", "xenbr0"),))


@pytest.fixture(scope="module")
def shared_daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_module_daemon()


@pytest.fixture(params=["sim", "daemon"])
def uri(request: pytest.FixtureRequest) -> str:
    """An empty embedded host, or a host daemon (shared by the module: each test names
    its domains after itself)."""
    if request.param == "sim":
        host: xvirt.sim.Host = request.getfixturevalue("sim_host")
        return host.uri
    daemon: DaemonProcess = request.getfixturevalue("shared_daemon")
    return daemon.unix_uri


@pytest.fixture
def conn(uri: str) -> Iterator[xvirt.Connection]:
    with xvirt.open(uri) as c:
        yield c


def _name(request: pytest.FixtureRequest, what: str) -> str:
    return f"{request.node.originalname[:40]}-{what}"


def _cost(conn: xvirt.Connection, call: Callable[[], object]) -> int:
    before = conn.stats().control_requests
    call()
    return conn.stats().control_requests - before


def test_create_starts_a_transient_domain_at_once(conn: xvirt.Connection,
                                                  request: pytest.FixtureRequest) -> None:
    name = _name(request, "web")
    dom = conn.create(name, CONFIG, max_vcpus=4, metadata=META)
    assert dom.id is not None and dom.name == name and not dom.persistent
    assert dom.info().state in (xvirt.DomainState.RUNNING, xvirt.DomainState.BLOCKED)
    assert dom.config() == CONFIG  # exactly what was asked: no default devices added
    assert dom.settings() == DomainSettings(1, 4, META)
    with pytest.raises(OperationFailedError):
        conn.create(name, CONFIG)  # a name another domain holds
    paused = conn.create(_name(request, "paused"), xvirt.DomainConfig(65536, 65536, 1),
                         paused=True)
    assert paused.info().state is xvirt.DomainState.PAUSED
    assert paused.settings() == DomainSettings(1, 1, DomainMetadata())
    for d in (dom, paused):
        d.destroy()
    with pytest.raises(NoDomainError):
        dom.settings()  # transient: gone once stopped


def test_a_definition_keeps_its_maximum_and_metadata(conn: xvirt.Connection,
                                                     request: pytest.FixtureRequest) -> None:
    dom = conn.define(_name(request, "m"), CONFIG, max_vcpus=2, metadata=META)
    try:
        assert dom.id is None and dom.settings() == DomainSettings(1, 2, META)
        dom.set_vcpus(4, affect=Affect.CONFIG, maximum=True)
        dom.set_vcpus(3)  # CURRENT of a shut-off domain: its definition
        dom.start()
        assert dom.info().vcpus == 3 and dom.settings() == DomainSettings(3, 4, META)
        dom.set_vcpus(1)  # the running domain only
        assert (dom.settings().vcpus, dom.settings(Affect.CONFIG).vcpus) == (1, 3)
        with pytest.raises(InvalidArgumentError):
            dom.set_vcpus(4, maximum=True)  # a running domain's maximum is fixed
        dom.destroy()
        assert dom.settings() == DomainSettings(3, 4, META)
    finally:
        dom.undefine()


def test_vcpus_come_online_up_to_the_maximum(conn: xvirt.Connection,
                                             request: pytest.FixtureRequest) -> None:
    dom = conn.create(_name(request, "g"), xvirt.DomainConfig(65536, 65536, 1), max_vcpus=3)
    try:
        assert _cost(conn, lambda: dom.set_vcpus(3)) == 1
        assert dom.info().vcpus == 3  # the data plane sees it at once
        info = dom.vcpu_info()
        assert [v.number for v in info] == [0, 1, 2]
        assert {v.state for v in info} <= {VcpuState.RUNNING, VcpuState.BLOCKED}
        assert all(len(v.affinity) == conn.host_info().cpus for v in info)
        with pytest.raises(InvalidArgumentError):
            dom.set_vcpus(4)
        with pytest.raises(OperationFailedError, match="transient"):
            dom.set_vcpus(2, affect=Affect.CONFIG)
        with pytest.raises(InvalidArgumentError):
            dom.set_vcpus(True)  # type: ignore[arg-type]
        dom.pause()
        assert {v.state for v in dom.vcpu_info()} == {VcpuState.OFFLINE}  # as libxl reads it
    finally:
        dom.destroy()


def test_the_credit_scheduler(conn: xvirt.Connection, request: pytest.FixtureRequest) -> None:
    dom = conn.create(_name(request, "g"), xvirt.DomainConfig(65536, 65536, 2))
    try:
        assert _cost(conn, dom.scheduler) == 1
        assert dom.scheduler() == SchedulerParams(256, 0)
        assert dom.set_scheduler(weight=512, cap=150) == SchedulerParams(512, 150)
        assert dom.set_scheduler(cap=0) == SchedulerParams(512, 0)
        for weight, cap in ((0, None), (65536, None), (None, 201)):
            with pytest.raises(InvalidArgumentError):
                dom.set_scheduler(weight=weight, cap=cap)
        dom.reboot()  # a new ID; the handle, and the share, follow the UUID
        assert dom.scheduler() == SchedulerParams(512, 0)
    finally:
        dom.destroy()


def test_metadata_and_its_events(conn: xvirt.Connection, request: pytest.FixtureRequest) -> None:
    dom = conn.create(_name(request, "g"), xvirt.DomainConfig(65536, 65536, 1))
    everything = conn.events(timeout=5, kinds=EventKind)
    lifecycle = conn.events(timeout=0)
    try:
        assert dom.metadata(MetadataKind.TITLE) is None
        dom.set_metadata(MetadataKind.TITLE, "Web")
        dom.set_metadata(MetadataKind.ELEMENT, "<a/>", key="app", uri=NS)
        assert (dom.metadata(MetadataKind.TITLE), dom.metadata(MetadataKind.ELEMENT, NS)) == (
            "Web", "<a/>")
        assert dom.metadata(MetadataKind.ELEMENT, NS + "/other") is None
        got = [next(everything), next(everything)]
        assert [(e.kind, e.uuid, e.id, e.name, e.uri) for e in got] == [
            (EventKind.TITLE_CHANGED, dom.uuid, dom.id, dom.name, None),
            (EventKind.METADATA_CHANGED, dom.uuid, dom.id, dom.name, NS)]
        assert list(lifecycle) == []  # not lifecycle changes: only when asked for
        with pytest.raises(InvalidArgumentError):
            dom.set_metadata(MetadataKind.TITLE, "two\nlines")
        with pytest.raises(InvalidArgumentError):
            dom.metadata(7)  # type: ignore[arg-type]
    finally:
        dom.destroy()


def test_the_node(conn: xvirt.Connection) -> None:
    info = conn.host_info()
    caps = conn.capabilities()
    assert (caps.host.cpus, caps.host.arch, caps.scheduler) == (info.cpus, info.arch, "credit")
    assert {(g.os_type, g.arch) for g in caps.guests} >= {("xen", "x86_64"), ("hvm", "x86_64")}
    mem = conn.node_memory_stats()
    assert mem.total_kib == info.memory_kib and mem.free_kib <= mem.total_kib
    assert conn.node_memory_stats(0).total_kib == info.memory_kib
    first = conn.node_cpu_stats()
    per_cpu = [conn.node_cpu_stats(i) for i in range(info.cpus)]
    later = conn.node_cpu_stats()
    assert all(getattr(later, f) >= getattr(first, f) for f in NodeCpuStats.__slots__)
    assert all(0 <= s.idle_ns <= later.idle_ns for s in per_cpu)  # one CPU: its share
    for bad in (-1, info.cpus, "0", True):
        with pytest.raises(InvalidArgumentError):
            conn.node_cpu_stats(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        conn.node_memory_stats(1)
    assert _cost(conn, conn.node_memory_stats) == _cost(conn, conn.capabilities) == 1


def test_a_read_only_connection_changes_nothing_and_asks_nothing(
        uri: str, conn: xvirt.Connection, request: pytest.FixtureRequest) -> None:
    dom = conn.create(_name(request, "g"), xvirt.DomainConfig(65536, 65536, 1), max_vcpus=2)
    try:
        with xvirt.open(uri, readonly=True) as ro:
            handle = ro.lookup_by_uuid(dom.uuid)
            assert handle.settings() == dom.settings()  # reads are allowed
            before = ro.stats().control_requests
            for call in (lambda: handle.set_vcpus(2), lambda: handle.set_scheduler(weight=1),
                         lambda: handle.set_metadata(MetadataKind.TITLE, "x"),
                         lambda: ro.create("x", CONFIG), lambda: ro.define("x", CONFIG,
                                                                          max_vcpus=2)):
                with pytest.raises(ReadOnlyError):
                    call()
            assert ro.stats().control_requests == before
        assert dom.settings() == DomainSettings(1, 2, DomainMetadata())
    finally:
        dom.destroy()


def test_arguments_are_checked_before_anything_is_asked(conn: xvirt.Connection) -> None:
    before = conn.stats().control_requests
    for call in (lambda: conn.create("x", "not a config"),  # type: ignore[arg-type]
                 lambda: conn.create("x", CONFIG, max_vcpus="2"),  # type: ignore[arg-type]
                 lambda: conn.create("x", CONFIG, metadata={"title": "x"}),  # type: ignore[arg-type]
                 lambda: conn.create("x", CONFIG, paused=1),  # type: ignore[arg-type]
                 lambda: conn.define("x", CONFIG, uuid="nope"),
                 lambda: conn.events(kinds=["created"])):  # type: ignore[list-item]
        with pytest.raises(InvalidArgumentError):
            call()
    assert conn.stats().control_requests == before


def test_what_a_daemon_keeps_survives_its_restart(make_daemon: Callable[..., DaemonProcess]
                                                  ) -> None:
    daemon = make_daemon()
    with xvirt.open(daemon.unix_uri) as conn:
        dom = conn.create("kept", CONFIG, max_vcpus=4, metadata=META)
        dom.set_vcpus(3)
        dom.set_scheduler(weight=1000, cap=300)
        spare = conn.define("spare", CONFIG, max_vcpus=8,
                            metadata=META.replaced(MetadataKind.TITLE, None))
        spare.set_vcpus(2, affect=Affect.CONFIG)
        daemon.restart()
        assert dom.settings() == DomainSettings(3, 4, META)
        assert dom.scheduler() == SchedulerParams(1000, 300)
        assert dom.info().vcpus == 3
        assert spare.settings() == DomainSettings(2, 8, META.replaced(MetadataKind.TITLE, None))


def test_a_driver_without_them_refuses_naming_the_operation(sim_host: xvirt.sim.Host) -> None:
    """The driver interface's defaults (the libvirt driver keeps them: the libvirt face
    passes these calls to libvirt itself): UnsupportedError naming each operation."""
    from xvirt.drivers.embedded import EmbeddedDriver

    class Bare(EmbeddedDriver):
        pass

    for name in ("create", "capabilities", "node_memory_stats", "node_cpu_stats",
                 "domain_settings", "set_vcpus", "vcpu_info", "scheduler", "set_scheduler",
                 "set_metadata", "define_domain"):
        setattr(Bare, name, getattr(Driver, name))
    drv = Bare(xvirt.sim._model_of(sim_host), uri=sim_host.uri)
    conn = xvirt.Connection(drv)
    dom = conn.lookup_by_id(0)
    for op, call in (
            ("create", lambda: conn.create("x", CONFIG)),
            ("capabilities", conn.capabilities), ("node_memory_stats", conn.node_memory_stats),
            ("node_cpu_stats", conn.node_cpu_stats), ("domain_settings", dom.settings),
            ("set_vcpus", lambda: dom.set_vcpus(1)), ("vcpu_info", dom.vcpu_info),
            ("scheduler", dom.scheduler), ("set_scheduler", lambda: dom.set_scheduler(cap=0)),
            ("set_metadata", lambda: dom.set_metadata(MetadataKind.TITLE, "x"))):
        with pytest.raises(UnsupportedError, match=op) as info:
            call()
        assert (info.value.op, info.value.uri) == (op, sim_host.uri)
    with pytest.raises(UnsupportedError, match="vCPU maximum or metadata"):
        conn.define("x", CONFIG, max_vcpus=2)
    assert conn.define("plain", CONFIG).persistent  # without extras: define() itself


def test_a_handle_acts_on_its_uuid_when_another_holds_its_old_id(
        make_sim_host: Callable[..., xvirt.sim.Host], clock: ManualClock) -> None:
    """C4: these calls name the domain by UUID, so the domain that took over its old ID
    is never touched."""
    host = make_sim_host(clock=clock, max_domid=2)
    with xvirt.open(host.uri) as conn:
        a = conn.create("a", xvirt.DomainConfig(65536, 65536, 1), max_vcpus=2)
        assert a.id == 1
        filler = host.create("filler")
        host.save(1, "a.img")
        intruder = host.create("intruder")  # the only free ID: a's
        host.destroy(filler.id)
        host.restore("a.img")
        assert (intruder.id, a.id) == (1, 2)
        a.set_vcpus(2)
        a.set_scheduler(weight=7)
        a.set_metadata(MetadataKind.TITLE, "mine")
        truth = {d.name: d.vcpus for d in host.domains()}
        assert (truth["a"], truth["intruder"]) == (2, 1)
        other = conn.lookup_by_id(1)
        assert other.scheduler() == SchedulerParams() and other.settings().metadata == (
            DomainMetadata())
