"""virConnect over an embedded host: every call, its values and its errors."""

from __future__ import annotations

from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.clock import ManualClock
from xvirt.model import DomainState

from .helpers import err, raised


@pytest.fixture
def guests(host: xvirt.sim.Host) -> dict[str, xvirt.sim.DomainRecord]:
    """web (running), idle (blocked), frozen (paused), broken (crashed)."""
    recs = {n: host.create(n, memory_kib=262144, max_memory_kib=524288, vcpus=2)
            for n in ("web", "idle", "frozen", "broken")}
    host.set_blocked(recs["idle"].id)
    host.pause(recs["frozen"].id)
    host.crash(recs["broken"].id)
    return recs


# -- opening ---------------------------------------------------------------------------------

def test_open_forms(host: xvirt.sim.Host, monkeypatch: pytest.MonkeyPatch) -> None:
    rw = face.open(host.uri)
    assert (rw.getURI(), rw._xvirt.readonly) == (host.uri, False)
    ro = face.openReadOnly(host.uri)
    assert ro._xvirt.readonly
    asked: list[object] = []
    auth = [[face.VIR_CRED_AUTHNAME], lambda creds, data: asked.append(creds) or 0, None]
    assert face.openAuth(host.uri, auth, face.VIR_CONNECT_RO)._xvirt.readonly
    assert not face.openAuth(host.uri, auth, 0)._xvirt.readonly
    assert asked == []  # no credentials needed: the callback is not called
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", host.uri)
    assert face.open().getURI() == host.uri
    assert face.open(None)._xvirt.uri == host.uri


def test_open_refusals() -> None:
    assert err(lambda: face.open("sim:///no-such-host"))[:2] == (38, face.VIR_FROM_RPC)
    code, domain, message = err(lambda: face.open("sim://bad/form"))
    assert (code, domain) == (face.VIR_ERR_NO_CONNECT, face.VIR_FROM_NONE)
    assert message is not None and message.startswith(
        "no connection driver available for sim://bad/form")
    assert err(lambda: face.openAuth("sim:///default", [[], None, None], 1 << 8))[0] == 8
    with pytest.raises(TypeError):
        face.openAuth("sim:///default", "nonsense", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        face.open(5)  # type: ignore[arg-type]


# -- the host -----------------------------------------------------------------------------

def test_host_facts(host: xvirt.sim.Host, conn: face.virConnect) -> None:
    h = xvirt.sim._model_of(host).node_info()
    assert conn.getInfo() == [h.arch, h.memory_kib // 1024, h.cpus, h.cpu_mhz, h.nodes,
                              h.sockets_per_node, h.cores_per_socket, h.threads_per_core]
    assert conn.getHostname() == h.hostname
    assert conn.getType() == "Xen"
    assert conn.getVersion() == 4_017_000  # "4.17.0-xvirt-sim" in libvirt's encoding
    assert conn.getLibVersion() == face.getVersion() == 9_000_000
    assert face.getVersion("Xen") == (9_000_000, 9_000_000)
    assert conn.getFreeMemory() == h.free_memory_kib * 1024
    assert conn.isAlive() == 1
    assert conn.setKeepAlive(5, 3) == 0
    assert conn.registerCloseCallback(lambda *a: None, None) == 0
    assert conn.unregisterCloseCallback() is None


def test_closed_connection(conn: face.virConnect) -> None:
    with conn as c:
        assert c is conn
    assert conn._xvirt.closed
    assert err(conn.getURI) == (6, 20, "invalid connection pointer in virConnectGetURI")
    assert err(conn.listDomainsID) == (6, 20, "invalid connection pointer in virConnectListDomains")
    assert err(conn.isAlive)[0] == 6
    assert err(lambda: conn.lookupByID(0))[0] == 6


def test_close_returns_zero(host: xvirt.sim.Host) -> None:
    assert face.open(host.uri).close() == 0


# -- listing ------------------------------------------------------------------------------

def test_listing(host: xvirt.sim.Host, conn: face.virConnect,
                 guests: dict[str, Any]) -> None:
    ids = sorted(d.id for d in host.domains())
    assert conn.listDomainsID() == ids
    assert conn.numOfDomains() == len(ids)
    assert conn.listDefinedDomains() == []  # a Xen host keeps no inactive domains
    assert conn.numOfDefinedDomains() == 0
    assert [d.name() for d in conn.listAllDomains()] == [d.name for d in
                                                         sorted(host.domains(), key=lambda d: d.id)]


ALL = {"Domain-0", "web", "idle", "frozen", "broken"}
L = face


@pytest.mark.parametrize(("flags", "names"), [
    (0, ALL),
    (L.VIR_CONNECT_LIST_DOMAINS_ACTIVE, ALL),
    (L.VIR_CONNECT_LIST_DOMAINS_INACTIVE, set()),
    (L.VIR_CONNECT_LIST_DOMAINS_ACTIVE | L.VIR_CONNECT_LIST_DOMAINS_INACTIVE, ALL),
    (L.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, set()),  # xm-created domains are transient
    (L.VIR_CONNECT_LIST_DOMAINS_TRANSIENT, ALL),
    (L.VIR_CONNECT_LIST_DOMAINS_RUNNING, {"Domain-0", "web"}),
    (L.VIR_CONNECT_LIST_DOMAINS_PAUSED, {"frozen"}),
    (L.VIR_CONNECT_LIST_DOMAINS_SHUTOFF, set()),
    (L.VIR_CONNECT_LIST_DOMAINS_OTHER, {"idle", "broken"}),  # blocked, crashed
    (L.VIR_CONNECT_LIST_DOMAINS_RUNNING | L.VIR_CONNECT_LIST_DOMAINS_PAUSED,
     {"Domain-0", "web", "frozen"}),
    (L.VIR_CONNECT_LIST_DOMAINS_PAUSED | L.VIR_CONNECT_LIST_DOMAINS_INACTIVE, set()),
    (L.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE, set()),
    (L.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE | L.VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART
     | L.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT | L.VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT, ALL),
    (L.VIR_CONNECT_LIST_DOMAINS_AUTOSTART, set()),
    (L.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT, set()),
])
def test_list_all_domains_filters(conn: face.virConnect, guests: dict[str, Any],
                                  flags: int, names: set[str]) -> None:
    found = conn.listAllDomains(flags)
    assert {d.name() for d in found} == names
    assert all(isinstance(d, face.virDomain) for d in found)


def test_list_all_domains_refuses_unknown_flags(conn: face.virConnect) -> None:
    assert err(lambda: conn.listAllDomains(1 << 30)) == (
        8, face.VIR_FROM_XEN, "unsupported flags (0x40000000) in function virConnectListAllDomains")


# -- lookups ------------------------------------------------------------------------------

def test_lookups_find_the_same_domain(host: xvirt.sim.Host, conn: face.virConnect) -> None:
    rec = host.create("web1", memory_kib=262144)
    by = [conn.lookupByID(rec.id), conn.lookupByName("web1"), conn.lookupByUUIDString(rec.uuid),
          conn.lookupByUUIDString(rec.uuid.upper().replace("-", "")),
          conn.lookupByUUID(bytes.fromhex(rec.uuid.replace("-", "")))]
    assert {(d.UUIDString(), d.name(), d.ID()) for d in by} == {(rec.uuid, "web1", rec.id)}
    assert len(set(by)) == 1


@pytest.mark.parametrize(("call", "expected"), [
    (lambda c: c.lookupByID(999),
     (42, 1, "Domain not found: no domain with matching id 999")),
    (lambda c: c.lookupByID(0x7FF0),  # beyond Xen's IDs: simply no such domain
     (42, 1, "Domain not found: no domain with matching id 32752")),
    (lambda c: c.lookupByID(-1),
     (8, 20, "id in virDomainLookupByID must be zero or greater")),
    (lambda c: c.lookupByName("nope"),
     (42, 1, "Domain not found: no domain with matching name 'nope'")),
    (lambda c: c.lookupByName(""), (42, 1, "Domain not found: no domain with matching name ''")),
    (lambda c: c.lookupByName(None),
     (8, 20, "name in virDomainLookupByName must not be NULL")),
    (lambda c: c.lookupByUUIDString("not-a-uuid"), (8, 20, "Invalid UUID")),
    (lambda c: c.lookupByUUIDString("{" + "0" * 32 + "}"), (8, 20, "Invalid UUID")),
    (lambda c: c.lookupByUUIDString(None),
     (8, 20, "uuidstr in virDomainLookupByUUIDString must not be NULL")),
    (lambda c: c.lookupByUUIDString("00000000-0000-0000-0000-00000000abcd"),
     (42, 1, "Domain not found: no domain with matching uuid "
             "'00000000-0000-0000-0000-00000000abcd'")),
    (lambda c: c.lookupByUUID(b"short"), (8, 20, "Invalid UUID")),
    (lambda c: c.lookupByUUID(bytes(15) + b"\x01"),
     (42, 1, "Domain not found: no domain with matching uuid "
             "'00000000-0000-0000-0000-000000000001'")),
])
def test_lookup_errors(conn: face.virConnect, call: Any, expected: tuple[int, int, str]) -> None:
    assert err(lambda: call(conn)) == expected


@pytest.mark.parametrize(("call", "exc"), [
    (lambda c: c.lookupByID("1"), TypeError),
    (lambda c: c.lookupByID(1.0), TypeError),
    (lambda c: c.lookupByID(2**40), OverflowError),
    (lambda c: c.lookupByName(1), TypeError),
    (lambda c: c.lookupByName("a\x00b"), ValueError),
    (lambda c: c.lookupByUUIDString(1), TypeError),
    (lambda c: c.lookupByUUID(1), TypeError),
])
def test_lookup_argument_types_fail_as_in_the_binding(conn: face.virConnect, call: Any,
                                                      exc: type[Exception]) -> None:
    with pytest.raises(exc):
        call(conn)


# -- bulk statistics ------------------------------------------------------------------------

def test_all_domain_stats_from_one_sample(host: xvirt.sim.Host, conn: face.virConnect,
                                          guests: dict[str, Any], clock: ManualClock) -> None:
    clock.advance(3.0)
    before = conn._xvirt.stats()
    got = conn.getAllDomainStats()
    after = conn._xvirt.stats()
    assert (after.data_calls - before.data_calls, after.control_requests
            - before.control_requests) == (1, 0)
    truth = {r.uuid: r for r in host.domains()}
    states = {DomainState.RUNNING: 1, DomainState.BLOCKED: 2, DomainState.PAUSED: 3,
              DomainState.CRASHED: 6}
    assert len(got) == len(truth)
    for dom, record in got:
        r = truth[dom.UUIDString()]
        # every group a Xen host has (tests/compat/test_stats.py checks the rest)
        assert record.items() >= {
            "state.state": states[r.state], "state.reason": 0, "cpu.time": r.cpu_time_ns,
            "balloon.current": r.memory_kib, "balloon.maximum": r.max_memory_kib,
            "vcpu.current": r.vcpus, "vcpu.maximum": r.vcpus}.items()
        assert {"net.count", "block.count"} <= record.keys()
        assert dom.name() == r.name


def test_stats_groups_and_filters(conn: face.virConnect, guests: dict[str, Any]) -> None:
    only_state = conn.getAllDomainStats(face.VIR_DOMAIN_STATS_STATE)
    assert {tuple(sorted(r)) for _, r in only_state} == {("state.reason", "state.state")}
    balloon = conn.getAllDomainStats(face.VIR_DOMAIN_STATS_BALLOON | face.VIR_DOMAIN_STATS_BLOCK)
    for _, record in balloon:
        assert {k.split(".")[0] for k in record} <= {"balloon", "block"}
        assert {"balloon.current", "balloon.maximum", "block.count"} <= record.keys()
    paused = conn.getAllDomainStats(0, face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED)
    assert [d.name() for d, _ in paused] == ["frozen"]
    assert conn.getAllDomainStats(0, face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE) == []


def test_stats_refusals(conn: face.virConnect) -> None:
    enforce = face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS
    perf = face.VIR_DOMAIN_STATS_PERF  # a group a Xen host does not have
    assert err(lambda: conn.getAllDomainStats(perf, enforce)) == (
        74, 1, "argument unsupported: Stats types bits 0x40 are not supported by this daemon")
    assert err(lambda: conn.getAllDomainStats(0, 1 << 20))[:2] == (8, 1)
    assert err(lambda: conn.domainListGetStats([], 0, face.VIR_CONNECT_LIST_DOMAINS_ACTIVE))[0] == 8


def test_domain_list_stats(host: xvirt.sim.Host, conn: face.virConnect,
                           guests: dict[str, Any]) -> None:
    web, frozen = conn.lookupByName("web"), conn.lookupByName("frozen")
    gone = conn.lookupByName("idle")
    host.destroy(guests["idle"].id)
    got = conn.domainListGetStats([frozen, gone, web], face.VIR_DOMAIN_STATS_STATE)
    assert [(d, r) for d, r in got] == [(frozen, {"state.state": 3, "state.reason": 0}),
                                       (web, {"state.state": 1, "state.reason": 0})]
    assert err(lambda: conn.domainListGetStats([web, "web"]))[0] == 8  # type: ignore[list-item]
    other = face.open(host.uri)
    assert err(lambda: conn.domainListGetStats([other.lookupByName("web")]))[0] == 8


def test_every_error_is_a_libvirterror(conn: face.virConnect) -> None:
    e = raised(lambda: conn.lookupByID(12345))
    assert type(e) is face.libvirtError
    assert e.__cause__ is None and e.__suppress_context__
