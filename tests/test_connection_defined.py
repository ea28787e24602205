"""Domains defined but not running, through the public API: found by name and UUID,
shut off with no ID, started, stopped back to shut off, undefined (issue 17, item 2).

The embedded host is the reference; the drivers' own tests and the conformance kit
check the same on the daemon and on libvirt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import xvirt
from xvirt.clock import ManualClock
from xvirt.drivers.embedded import EmbeddedDriver
from xvirt.planes import Definition

CONFIG = xvirt.DomainConfig(memory_kib=131072, max_memory_kib=262144, vcpus=2)


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    return sim_host


@pytest.fixture
def conn(host: xvirt.sim.Host) -> Iterator[xvirt.Connection]:
    with xvirt.open(host.uri) as c:
        yield c


def test_a_defined_domain_is_found_shut_off_with_no_id(host: xvirt.sim.Host,
                                                        conn: xvirt.Connection) -> None:
    spare = host.define("spare", memory_kib=131072, max_memory_kib=262144, vcpus=2)
    for dom in (conn.lookup_by_name("spare"), conn.lookup_by_uuid(spare.uuid)):
        assert (dom.uuid, dom.name, dom.id) == (spare.uuid, "spare", None)
        assert dom.identity() == xvirt.Identity(spare.uuid, "spare", -1)
        assert dom.info() == xvirt.DomainInfo(xvirt.DomainState.SHUTOFF, 131072, 262144, 2, 0)
        assert dom.persistent
        assert dom.config().vcpus == 2


def test_lookups_by_id_and_listings_of_running_domains_never_show_it(
        host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    host.define("spare")
    assert conn.list_domain_ids() == [0]
    assert [s.identity.name for s in conn.sample()] == ["Domain-0"]
    for domid in range(1, 8):
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(domid)


def test_list_defined_is_by_name_with_configurations(host: xvirt.sim.Host,
                                                     conn: xvirt.Connection) -> None:
    b = host.define("b", memory_kib=65536, vcpus=1)
    a = host.define("a", memory_kib=131072, vcpus=2)
    host.create("running")
    found = conn.list_defined()
    assert [(d.uuid, d.name, d.id, d.persistent) for d in found] == [
        (a.uuid, "a", None, True), (b.uuid, "b", None, True)]
    assert [d.info().memory_kib for d in found] == [131072, 65536]
    assert conn.defined_names() == ["a", "b"]


def test_start_gives_an_id_and_the_handle_follows(host: xvirt.sim.Host,
                                                  conn: xvirt.Connection) -> None:
    spare = host.define("spare", memory_kib=131072, vcpus=1)
    dom = conn.lookup_by_name("spare")
    dom.start()
    (rec,) = [r for r in host.domains() if r.uuid == spare.uuid]
    assert dom.id == rec.id > 0
    assert dom.info().state is xvirt.DomainState.RUNNING
    assert conn.lookup_by_id(rec.id) == dom
    assert conn.list_defined() == []
    with pytest.raises(xvirt.OperationFailedError):
        dom.start()  # already running


@pytest.mark.parametrize("stop", ["destroy", "shutdown", "save"])
def test_a_persistent_domain_that_stops_is_shut_off_not_gone(
        host: xvirt.sim.Host, conn: xvirt.Connection, stop: str) -> None:
    spare = host.define("spare")
    dom = conn.lookup_by_uuid(spare.uuid)
    dom.start()
    assert dom.id is not None
    if stop == "save":
        dom.save("spare.img")
    else:
        getattr(dom, stop)()
    assert dom.id is None
    assert dom.info().state is xvirt.DomainState.SHUTOFF
    assert conn.lookup_by_name("spare") == dom


def test_a_transient_domain_that_stops_is_gone(host: xvirt.sim.Host,
                                               conn: xvirt.Connection) -> None:
    rec = host.create("once")
    dom = conn.lookup_by_id(rec.id)
    assert not dom.persistent
    dom.destroy()
    for call in (lambda: dom.info(), lambda: dom.id, lambda: dom.persistent,
                 lambda: conn.lookup_by_name("once")):
        with pytest.raises(xvirt.NoDomainError):
            call()


def test_undefine_removes_a_shut_off_domain_and_refuses_a_running_one(
        host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    dom = conn.define("spare", CONFIG)
    dom.start()
    with pytest.raises(xvirt.OperationFailedError):
        dom.undefine()
    dom.destroy()
    dom.undefine()
    for call in (lambda: dom.info(), lambda: conn.lookup_by_name("spare"),
                 lambda: conn.lookup_by_uuid(dom.uuid)):
        with pytest.raises(xvirt.NoDomainError):
            call()
    with pytest.raises(xvirt.NoDomainError):
        dom.undefine()


def test_define_through_the_connection(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    wanted = "6f1d1c6e-8f27-4c51-9d0b-4a9e0d8f2b31"
    dom = conn.define("spare", CONFIG, uuid=wanted.upper())
    assert dom.uuid == wanted
    assert [d.uuid for d in host.defined_domains()] == [wanted]
    assert dom.info() == xvirt.DomainInfo(xvirt.DomainState.SHUTOFF, 131072, 262144, 2, 0)
    again = conn.define("spare", xvirt.DomainConfig(65536, 65536, 1), uuid=wanted)
    assert again == dom and dom.info().vcpus == 1  # the definition is replaced
    with pytest.raises(xvirt.OperationFailedError):
        conn.define("spare", CONFIG)  # the name is another UUID's


@pytest.mark.parametrize("call, words", [
    (lambda c: c.define("", CONFIG), "name"),
    (lambda c: c.define("ok", {"memory_kib": 1}), "DomainConfig"),
    (lambda c: c.define("ok", CONFIG, uuid="not-a-uuid"), "UUID"),
])
def test_define_explains_bad_input(conn: xvirt.Connection, call: object, words: str) -> None:
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        call(conn)  # type: ignore[operator]
    assert words.lower() in str(info.value).lower()
    assert info.value.op == "define"


def test_read_only_refuses_before_asking_the_host(host: xvirt.sim.Host) -> None:
    spare = host.define("spare")
    with xvirt.open(host.uri, readonly=True) as ro:
        dom = ro.lookup_by_uuid(spare.uuid)
        before = ro.stats().control_requests
        for call in (dom.start, dom.undefine, lambda: ro.define("x", CONFIG)):
            with pytest.raises(xvirt.ReadOnlyError):
                call()
        assert ro.stats().control_requests == before
    assert [d.uuid for d in host.defined_domains()] == [spare.uuid]
    assert [r.id for r in host.domains()] == [0]


def test_a_monitoring_loop_pays_nothing_for_defined_domains(host: xvirt.sim.Host,
                                                            conn: xvirt.Connection) -> None:
    """C5: with defined domains on the host, steady-state samples and lookups of the
    running ones make no control-plane request."""
    for i in range(3):
        host.define(f"spare{i}")
        host.create(f"g{i}")
    conn.sample()
    before = conn.stats().control_requests
    for _ in range(3):
        for domid in conn.list_domain_ids():
            conn.lookup_by_id(domid).info()
        conn.sample()
    assert conn.stats().control_requests == before


def test_a_defined_domain_costs_one_request_to_find(host: xvirt.sim.Host,
                                                    conn: xvirt.Connection) -> None:
    """The cache has no such UUID (one data-plane answer says so), then one
    control-plane request finds the definition; nothing about it is cached."""
    spare = host.define("spare")
    conn.sample()
    for _ in range(2):
        before = conn.stats().control_requests
        assert conn.lookup_by_uuid(spare.uuid).uuid == spare.uuid
        assert conn.stats().control_requests == before + 1


class _StartsWhileAsked(EmbeddedDriver):
    """Starts the domain just after the data plane said it is not running: the race
    between the two planes that ``_live_or_defined`` must survive (C2)."""

    sim: xvirt.sim.Host
    pending: list[str]

    def find(self, *, uuid: str | None = None, name: str | None = None) -> Definition | None:
        if self.pending:
            self.sim.start(self.pending.pop())
        return super().find(uuid=uuid, name=name)


def test_a_domain_started_between_the_planes_is_found_running(host: xvirt.sim.Host) -> None:
    spare = host.define("spare")
    driver = _StartsWhileAsked(xvirt.sim._model_of(host), uri=host.uri)
    driver.sim, driver.pending = host, [spare.uuid]
    conn = xvirt.Connection(driver)
    try:
        dom = conn.lookup_by_name("spare")
        assert dom.uuid == spare.uuid
        assert dom.id is not None and dom.info().state is xvirt.DomainState.RUNNING
    finally:
        conn.close()


def test_events_name_defined_and_undefined_domains(host: xvirt.sim.Host,
                                                   conn: xvirt.Connection,
                                                   clock: ManualClock) -> None:
    stream = conn.events(timeout=0)
    spare = host.define("spare")
    started = host.start(spare.uuid)
    host.destroy(started.id)
    host.undefine(spare.uuid)
    got = [(e.kind, e.id, e.name) for e in stream]
    assert got == [
        (xvirt.EventKind.DEFINED, None, "spare"),
        (xvirt.EventKind.STARTED, started.id, "spare"),
        (xvirt.EventKind.DESTROYED, started.id, "spare"),
        (xvirt.EventKind.UNDEFINED, None, "spare"),
    ]


def test_rename_of_a_shut_off_domain_defines_it_again(
        host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    """A Xen host renames running domains (``xm rename``); a defined, shut-off one is
    defined again under the new name: its UUID, configuration and vCPUs kept."""
    spare = host.define("spare", memory_kib=131072, vcpus=2)
    dom = conn.lookup_by_name("spare")
    before = (dom.config(), dom.settings(xvirt.Affect.CONFIG))
    dom.rename("other")
    assert (dom.name, dom.uuid, dom.id) == ("other", spare.uuid, None)
    assert (dom.config(), dom.settings(xvirt.Affect.CONFIG)) == before
    assert conn.defined_names() == ["other"]
    dom.start()
    dom.rename("again")
    assert (dom.name, dom.uuid) == ("again", spare.uuid)


def test_rename_of_a_shut_off_domain_on_libvirt() -> None:
    """libvirt renames only domains that are shut off: by UUID, as virsh's domrename."""
    from xvirt.libvirt_api.binding import real_libvirt
    from xvirt.testing.libvirt_target import guest_xml

    lv = real_libvirt()
    admin = lv.open("test:///default")
    uuid = "00000000-0000-4000-8000-00000000d0d0"
    admin.defineXML(guest_xml("to-rename", uuid, memory_kib=65536, vcpus=1))
    try:
        with xvirt.open("libvirt:test:///default") as c:
            dom = c.lookup_by_uuid(uuid)
            dom.rename("renamed")
            assert admin.lookupByUUIDString(uuid).name() == "renamed" == dom.name
            dom.start()
            with pytest.raises(xvirt.OperationFailedError):
                dom.rename("again")
            assert dom.name == "renamed"
            admin.lookupByUUIDString(uuid).destroy()
    finally:
        admin.lookupByUUIDString(uuid).undefine()
        admin.close()
