"""Domain statistics through the libvirt driver (issue 19), on libvirt's test driver
(``test:///default``, in this process, and behind a private libvirtd), and libvirt's
keys read into xvirt's types (``drivers/libvirt_stats.py``) from records captured on
real QEMU (libvirt 9.0: TCG behind a session libvirtd, KVM on the embedded driver).

libvirt 9.0's test driver fills the state group only: its ``getAllDomainStats`` answers
``state.state`` and ``state.reason`` whatever groups are asked, and answers the
per-domain calls (``getCPUStats``, ``memoryStats``, ``vcpus``, ``blockStats``,
``blockInfo``, ``interfaceStats``), which the driver asks for the other groups there
(``BULK_GROUPS``); the tests below pin both against libvirt-python's own answers.
QEMU's bulk figures are checked on real guests in test_libvirt_stats_qemu.py.

A guest that does not answer is made by holding a statistics call on an event the
test releases; the driver is given a short timeout (0.2 s), which the held call
outlasts. No assertion is about time: a caller that does not come back within
LIVENESS_S is a hang.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xvirt
from tests.threads import in_thread
from xvirt.drivers import libvirt as driver_module
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_stats import (
    BULK_GROUPS,
    GROUP_BITS,
    JOB_MARKS,
    Lane,
    Lanes,
    nic_sources,
    stats_bits,
    stats_from_record,
)
from xvirt.errors import InvalidArgumentError, NoDomainError, ProtocolError
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
    VIR_DOMAIN_STATS_STATE,
)
from xvirt.model import DomainState, VcpuState
from xvirt.stats import (
    ALL_GROUPS,
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainStats,
    NetStats,
    StatGroup,
    VcpuStats,
)
from xvirt.testing.libvirt_target import guest_xml
from xvirt.testing.libvirtd import LibvirtdProcess

URI = "libvirt:test:///default"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the default host's own "test"
GUESTS = 4
HUNG = "s1"
LIVENESS_S = 30.0
FLAGS = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
ALL_BITS = stats_bits(ALL_GROUPS)
STATE = frozenset({StatGroup.STATE})


def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{0x5700 + i:012x}"


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's connection, with transient guests s0..s3 running."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    lv = real_libvirt()
    conn = lv.open("test:///default")
    doms = [conn.createXML(guest_xml(f"s{i}", uuid_of(i), memory_kib=65536, vcpus=1), 0)
            for i in range(GUESTS)]
    yield conn
    for dom in doms:
        with contextlib.suppress(lv.libvirtError):
            dom.destroy()
    conn.close()


@pytest.fixture
def driver(admin: Any) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(URI, "test:///default", timeout=0.2)
    yield d
    d.close()


def live_uuids(admin: Any) -> set[str]:
    lv = real_libvirt()
    return {d.UUIDString() for d in admin.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}


def calls(driver: LibvirtDriver, fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()``, and the data-plane calls it made (no control-plane call allowed)."""
    data, control = driver.counters.data_calls, driver.counters.control_requests
    value = fn()
    assert driver.counters.control_requests == control
    return value, driver.counters.data_calls - data


# -- libvirt's test driver, field by field against libvirt-python ------------------------


def test_the_test_driver_fills_the_state_group_only_as_libvirt_python_says(
        admin: Any, driver: LibvirtDriver) -> None:
    theirs = admin.getAllDomainStats(ALL_BITS, FLAGS)
    assert {d.UUIDString() for d, _ in theirs} == live_uuids(admin)
    for _, record in theirs:
        # libvirt 9.0's test driver: the state group, whatever was asked.
        assert set(record) == {"state.state", "state.reason"}
    for group, bit in GROUP_BITS.items():
        (_, record), *_ = admin.domainListGetStats([admin.lookupByUUIDString(TEST_UUID)],
                                                   bit, FLAGS)
        assert bool(record) == (group is StatGroup.STATE)
    assert BULK_GROUPS["test"] == STATE


def test_the_other_groups_are_read_per_domain_as_libvirt_python_reads_them(
        admin: Any, driver: LibvirtDriver) -> None:
    """The test driver's counters follow the wall clock: each figure of ours lies
    between libvirt-python's reading before the call and its reading after."""
    dom = admin.lookupByUUIDString(TEST_UUID)

    def read() -> dict[str, Any]:
        return {"cpu": dom.getCPUStats(True)[0], "memory": dom.memoryStats(),
                "info": dom.info(), "vcpu0": dom.vcpus()[0][0],
                "block": dom.blockStats("vda"), "capacity": dom.blockInfo("vda"),
                "net": dom.interfaceStats("testnet0")}

    before = read()
    ours = {s.uuid: s for s in driver.domain_stats(ALL_GROUPS)}
    after = read()
    assert set(ours) == live_uuids(admin)
    mine = ours[TEST_UUID]
    assert mine.missing == frozenset() and mine.state is DomainState.RUNNING

    def between(value: int | None, key: str, index: int | str) -> None:
        assert value is not None
        assert before[key][index] <= value <= after[key][index], (key, index)

    assert mine.cpu is not None
    between(mine.cpu.time_ns, "cpu", "cpu_time")
    assert (mine.cpu.user_ns, mine.cpu.system_ns) in {
        (r["cpu"].get("user_time"), r["cpu"].get("system_time")) for r in (before, after)}
    assert mine.balloon is not None
    assert (mine.balloon.current_kib, mine.balloon.maximum_kib) == (
        before["memory"]["actual"], before["info"][1])
    assert mine.balloon.rss_kib == before["memory"]["rss"]
    assert mine.balloon.unused_kib == before["memory"]["unused"]
    assert mine.vcpus is not None and [v.number for v in mine.vcpus] == [0, 1]
    for vcpu in mine.vcpus:
        assert vcpu.state is VcpuState.RUNNING
        between(vcpu.time_ns, "vcpu0", 2)  # both vCPUs share one clock-driven figure
    assert mine.blocks is not None
    (disk,) = mine.blocks
    assert (disk.name, disk.path) == ("vda", "/guest/diskimage1")
    for index, figure in enumerate((disk.rd_reqs, disk.rd_bytes, disk.wr_reqs,
                                    disk.wr_bytes, disk.errors)):
        between(figure, "block", index)
    assert (disk.capacity_bytes, disk.allocation_bytes, disk.physical_bytes) == tuple(
        before["capacity"])
    assert (disk.rd_time_ns, disk.wr_time_ns, disk.fl_reqs) == (None, None, None)
    assert mine.nets is not None
    (nic,) = mine.nets
    assert (nic.name, nic.mac, nic.bridge) == ("testnet0", "aa:bb:cc:dd:ee:ff", None)
    for index, figure in enumerate((nic.rx_bytes, nic.rx_packets, nic.rx_errs, nic.rx_drop,
                                    nic.tx_bytes, nic.tx_packets, nic.tx_errs, nic.tx_drop)):
        between(figure, "net", index)


def test_the_per_domain_calls_are_counted_exactly(admin: Any, driver: LibvirtDriver) -> None:
    """Per live domain: getCPUStats; info and memoryStats; vcpus and vcpusFlags; one
    XMLDesc for the disks and NICs, then blockStats and blockInfo per disk and
    interfaceStats per NIC; plus the net group's XMLDesc (NIC sources) the first time."""
    devices = {}
    for dom in admin.listAllDomains(real_libvirt().VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        xml = dom.XMLDesc(0)
        devices[dom.UUIDString()] = (xml.count("<disk "), xml.count("<interface "))
    per_domain = {u: 1 + 2 + 2 + 1 + 2 * disks + nics for u, (disks, nics) in devices.items()}
    first_nic_reads = sum(1 for _, nics in devices.values() if nics)
    _, n = calls(driver, lambda: driver.domain_stats(ALL_GROUPS))
    assert n == 1 + sum(per_domain.values()) + first_nic_reads
    _, n = calls(driver, lambda: driver.domain_stats(ALL_GROUPS))
    assert n == 1 + sum(per_domain.values())
    _, n = calls(driver, lambda: driver.domain_stats(frozenset({StatGroup.CPU})))
    assert n == 1 + len(devices)
    _, n = calls(driver, lambda: driver.domain_stats(STATE))
    assert n == 1


def test_a_paused_domain_is_paused_in_the_state_group(admin: Any,
                                                      driver: LibvirtDriver) -> None:
    admin.lookupByName("s2").suspend()
    (mine,) = driver.domain_stats(STATE, [uuid_of(2)])
    assert mine.state is DomainState.PAUSED and not mine.missing


def test_one_data_call_per_domain_stats(admin: Any, driver: LibvirtDriver) -> None:
    live = live_uuids(admin)
    found, n = calls(driver, lambda: driver.domain_stats(STATE))
    assert n == 1 and {s.uuid for s in found} == live
    driver.census()  # the driver now holds a handle on every live domain
    for asked in ([uuid_of(0)], [uuid_of(1), uuid_of(3)], sorted(live)):
        for _ in range(3):
            found, n = calls(driver, partial(driver.domain_stats, STATE, asked))
            assert n == 1 and sorted(s.uuid for s in found) == sorted(asked)
    # A UUID asked whose handle is not held is looked up once (an observation).
    fresh = LibvirtDriver(URI, "test:///default")
    try:
        _, n = calls(fresh, lambda: fresh.domain_stats(STATE, [uuid_of(2)]))
        assert n == 2
        _, n = calls(fresh, lambda: fresh.domain_stats(STATE, [uuid_of(2)]))
        assert n == 1
    finally:
        fresh.close()


@settings(max_examples=40, deadline=None)
@given(groups=st.frozensets(st.sampled_from(StatGroup)),
       some=st.sets(st.integers(0, GUESTS - 1)))
def test_groups_not_asked_are_none_and_the_rest_answered_or_missing(
        groups: frozenset[StatGroup], some: set[int]) -> None:
    lv = real_libvirt()
    admin = lv.open("test:///default")  # keeps the default host's state alive
    d = LibvirtDriver(URI, "test:///default")
    try:
        asked = [TEST_UUID] + [uuid_of(i) for i in some]  # s<i> are not running here
        live = live_uuids(admin)
        for stats, expected in ((d.domain_stats(groups), live),
                                (d.domain_stats(groups, asked), live & set(asked))):
            assert {s.uuid for s in stats} == expected  # live domains only
            (s,) = [s for s in stats if s.uuid == TEST_UUID]
            values = {StatGroup.STATE: s.state, StatGroup.CPU: s.cpu,
                      StatGroup.BALLOON: s.balloon, StatGroup.VCPU: s.vcpus,
                      StatGroup.BLOCK: s.blocks, StatGroup.NET: s.nets}
            assert s.missing <= groups
            for group, value in values.items():
                assert (value is None) == (group not in groups or group in s.missing)
            assert s.missing == frozenset()  # the test driver: state, the rest per domain
    finally:
        d.close()
        admin.close()


def test_a_domain_gone_before_the_call_is_left_out(admin: Any,
                                                   driver: LibvirtDriver) -> None:
    driver.census()  # handles held on every guest, s3's included
    with driver._lock:  # the driver applies the destroy event only after the call
        admin.lookupByName("s3").destroy()
        found, n = calls(driver,
                         lambda: driver.domain_stats(STATE, [uuid_of(0), uuid_of(3)]))
    assert [s.uuid for s in found] == [uuid_of(0)] and n == 1
    assert uuid_of(3) not in {s.uuid for s in driver.domain_stats(STATE)}
    # Its handle still held: the one call says it is not there.
    found, n = calls(driver, lambda: driver.domain_stats(STATE, [uuid_of(3)]))
    assert found == [] and n == 1
    # Not held (a driver that never saw it): looked up, an observation; no stats call.
    fresh = LibvirtDriver(URI, "test:///default")
    try:
        found, n = calls(fresh, lambda: fresh.domain_stats(STATE, [uuid_of(3)]))
        assert found == [] and n == 1
    finally:
        fresh.close()


@pytest.mark.parametrize("every", [True, False], ids=["getAllDomainStats", "domainListGetStats"])
def test_a_domain_destroyed_between_listing_and_the_call_is_left_out(
        admin: Any, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch,
        every: bool) -> None:
    lv = real_libvirt()
    driver.census()
    method = "getAllDomainStats" if every else "domainListGetStats"
    real = getattr(lv.virConnect, method)

    def destroyed_first(self: Any, *args: Any) -> Any:
        with contextlib.suppress(lv.libvirtError):
            admin.lookupByName("s2").destroy()
        return real(self, *args)

    monkeypatch.setattr(lv.virConnect, method, destroyed_first)
    asked = None if every else [uuid_of(1), uuid_of(2)]
    found, n = calls(driver, lambda: driver.domain_stats(STATE, asked))
    assert n == 1 and uuid_of(2) not in {s.uuid for s in found}
    assert uuid_of(1) in {s.uuid for s in found}


def test_an_unknown_group_or_uuid_is_refused_before_any_call(driver: LibvirtDriver) -> None:
    unknown: list[Any] = [{"disk"}, {StatGroup.STATE, "cpu-total"}, {3}]
    for groups in unknown:
        with pytest.raises(InvalidArgumentError) as err:
            driver.domain_stats(frozenset(groups))
        assert err.value.op == "domain_stats" and err.value.uri == URI
    with pytest.raises(InvalidArgumentError):
        driver.domain_stats(STATE, ["not-a-uuid"])
    assert driver.counters.data_calls == 0
    # Names are taken as the public API takes them.
    assert driver.domain_stats(frozenset({"state"}))  # type: ignore[arg-type]
    assert driver.domain_stats(STATE, []) == []


# -- a call that does not answer in time -------------------------------------------------


@contextlib.contextmanager
def held_stats(monkeypatch: pytest.MonkeyPatch, hung: str | None = HUNG
               ) -> Iterator[threading.Event]:
    """Every ``getAllDomainStats``, and ``domainListGetStats`` naming guest HUNG, held
    until the yielded event is set (on the way out in any case): a guest whose QEMU is
    stopped, whose job libvirt takes and then waits on its monitor."""
    lv = real_libvirt()
    release = threading.Event()
    real_all, real_list = lv.virConnect.getAllDomainStats, lv.virConnect.domainListGetStats

    def get_all(self: Any, stats: int, flags: int = 0) -> Any:
        release.wait(LIVENESS_S)
        return real_all(self, stats, flags)

    def list_get(self: Any, doms: Any, stats: int, flags: int = 0) -> Any:
        if any(d.name() == hung for d in doms):
            release.wait(LIVENESS_S)
        return real_list(self, doms, stats, flags)

    monkeypatch.setattr(lv.virConnect, "getAllDomainStats", get_all)
    monkeypatch.setattr(lv.virConnect, "domainListGetStats", list_get)
    try:
        yield release
    finally:
        release.set()


def answered_within_liveness(fn: Callable[[], Any]) -> Any:
    thread, result = in_thread(fn)
    thread.join(LIVENESS_S)
    assert not thread.is_alive(), "domain_stats waited for the guest that does not answer"
    assert not isinstance(result[0], BaseException), result
    return result[0]


@pytest.mark.parametrize("asked", ["all", "list"])
def test_a_call_that_does_not_answer_in_time_is_made_for_each_domain(
        admin: Any, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch,
        asked: str) -> None:
    driver.census()
    live = live_uuids(admin)
    uuids = None if asked == "all" else sorted(live)
    with held_stats(monkeypatch):
        found, n = calls(driver, lambda: answered_within_liveness(
            lambda: driver.domain_stats(STATE, uuids)))
    # The held call, then (for "every domain") a census, then one call a domain.
    assert n == 1 + (asked == "all") + len(live)
    by_name = {s.name: s for s in found}
    assert set(by_name) == {"test", "s0", "s1", "s2", "s3"}
    stuck = by_name.pop(HUNG)
    assert stuck == DomainStats(uuid_of(1), HUNG, stuck.id, missing=STATE)
    assert stuck.id == admin.lookupByName(HUNG).ID()
    for s in by_name.values():
        assert s.state is DomainState.RUNNING and not s.missing
    assert driver._stats_lanes is not None and driver._stats_lanes.abandoned == 2
    # Released: the next call answers for every domain at once.
    found, n = calls(driver, lambda: driver.domain_stats(STATE, uuids))
    assert n == 1 and all(not s.missing for s in found) and len(found) == len(live)


def test_a_domain_gone_while_the_call_was_held_is_left_out(
        admin: Any, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    driver.census()
    lv = real_libvirt()
    with held_stats(monkeypatch, hung=None):
        real_list = lv.virConnect.domainListGetStats

        def gone_first(self: Any, doms: Any, stats: int, flags: int = 0) -> Any:
            with contextlib.suppress(lv.libvirtError):
                admin.lookupByName("s0").destroy()
            return real_list(self, doms, stats, flags)

        monkeypatch.setattr(lv.virConnect, "domainListGetStats", gone_first)
        found = answered_within_liveness(lambda: driver.domain_stats(STATE))
    assert {s.name for s in found} == {"test", "s1", "s2", "s3"}


def test_refused_nowait_is_asked_again_without_it_and_remembered(
        admin: Any, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt before 4.5 refuses NOWAIT as an unknown flag (an invalid argument)."""
    lv = real_libvirt()
    real = lv.virConnect.getAllDomainStats
    seen: list[int] = []

    def old_libvirt(self: Any, stats: int, flags: int = 0) -> Any:
        seen.append(flags)
        if flags & VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT:
            return real(self, stats, 1 << 27)  # libvirt's own "unsupported flags" (8)
        return real(self, stats, flags)

    monkeypatch.setattr(lv.virConnect, "getAllDomainStats", old_libvirt)
    found, n = calls(driver, lambda: driver.domain_stats(STATE))
    assert n == 2 and {s.uuid for s in found} == live_uuids(admin)
    _, n = calls(driver, lambda: driver.domain_stats(STATE))
    assert n == 1
    assert seen == [FLAGS, VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
                    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE]


def test_a_closed_driver_refuses_and_its_lanes_leave(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "_STATS_POLL_S", 0.01)
    d = LibvirtDriver(URI, "test:///default")
    assert d.domain_stats(STATE)
    assert d._stats_lanes is not None
    threads = [lane._thread for lane in d._stats_lanes._idle]
    assert threads
    d.close()
    with pytest.raises(xvirt.HostUnreachableError):
        d.domain_stats(STATE)
    for thread in threads:
        thread.join(LIVENESS_S)
        assert not thread.is_alive()


# -- NICs: MAC and bridge from the XML, read once per domain ------------------------------

BRIDGED = "00000000-0000-4000-8000-0000000057b0"
BRIDGED_XML = f"""<domain type='test'>
  <name>sb</name><uuid>{BRIDGED}</uuid><memory>65536</memory><vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:57:b0:01'/><source bridge='br-xvirt'/><target dev='xvbr57'/>
    </interface>
    <interface type='user'><mac address='52:54:00:57:b0:02'/></interface>
  </devices>
</domain>"""


def with_net_figures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The test driver's records with what QEMU adds for a NIC with a host-side device,
    named as each domain's XML names its first one (a user-mode NIC as well, counted and
    nameless as QEMU reports it); the list gets every XMLDesc made."""
    lv = real_libvirt()
    real_all, real_xml = lv.virConnect.getAllDomainStats, lv.virDomain.XMLDesc
    read: list[str] = []

    def get_all(self: Any, stats: int, flags: int = 0) -> Any:
        found = real_all(self, stats, flags)
        for dom, record in found:
            devs = list(nic_sources(real_xml(dom, 0), uri=URI))
            record["net.count"] = len(devs) + 1
            for n, dev in enumerate(devs):
                record[f"net.{n}.name"] = dev
                for key in ("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes",
                            "tx.pkts", "tx.errs", "tx.drop"):
                    record[f"net.{n}.{key}"] = 7
        return found

    def xml_desc(self: Any, flags: int = 0) -> Any:
        read.append(self.name())
        return real_xml(self, flags)

    monkeypatch.setattr(lv.virConnect, "getAllDomainStats", get_all)
    monkeypatch.setattr(lv.virDomain, "XMLDesc", xml_desc)
    return read


def test_mac_and_bridge_come_from_the_xml_once_per_domain_and_are_pruned(
        admin: Any, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    bridged = admin.createXML(BRIDGED_XML, 0)
    live = live_uuids(admin)
    read = with_net_figures(monkeypatch)
    net = frozenset({StatGroup.NET})
    found, n = calls(driver, lambda: driver.domain_stats(net))
    nets = {s.name: s.nets for s in found}
    # One call, then one XMLDesc per domain: the test driver names every running
    # domain's NICs (testnet0, testnet1...) where the XML does not.
    assert n == 1 + len(live) and sorted(read) == sorted(nets)
    figures = (7,) * 8
    assert nets["sb"] == (NetStats("xvbr57", "52:54:00:57:b0:01", "br-xvirt", *figures),
                          NetStats("testnet0", "52:54:00:57:b0:02", None, *figures))
    assert nets["s1"] == (NetStats("testnet0", "00:16:3e:00:00:00", "xenbr0", *figures),)
    # libvirt's test host: a 'network' interface, whose XML here names no bridge.
    assert nets["test"] == (NetStats("testnet0", "aa:bb:cc:dd:ee:ff", None, *figures),)
    read.clear()
    _, n = calls(driver, lambda: driver.domain_stats(net))
    assert n == 1 and read == []
    assert set(driver._nics) == live
    bridged.destroy()
    _, n = calls(driver, lambda: driver.domain_stats(net))
    assert n == 1 and set(driver._nics) == live - {BRIDGED}  # C7: the gone domain's dropped
    # Another ID for a UUID (a restart): its XML is read again.
    driver._nics[uuid_of(1)] = (-7, driver._nics[uuid_of(1)][1])
    _, n = calls(driver, lambda: driver.domain_stats(net))
    assert n == 2 and read == ["s1"]


# -- through the public API ------------------------------------------------------------------


def test_connection_domain_stats_domain_stats_and_survey_end_to_end(admin: Any) -> None:
    with xvirt.open(URI) as conn:
        live = live_uuids(admin)
        before = conn.stats().data_calls
        found = conn.domain_stats(["state"])
        assert conn.stats().data_calls - before == 1
        assert [s.id for s in found] == sorted(s.id for s in found if s.id is not None)
        assert {s.uuid for s in found} == live
        found = conn.domain_stats()
        assert {s.uuid for s in found} == live
        assert all(s.missing == frozenset() for s in found)
        assert all(s.state is DomainState.RUNNING for s in found)

        dom = conn.lookup_by_name("s2")
        before = conn.stats().data_calls
        mine = dom.stats(["state", "cpu"])
        assert conn.stats().data_calls - before == 1 + 1  # the bulk call, getCPUStats
        assert (mine.uuid, mine.name, mine.id) == (uuid_of(2), "s2", dom.id)
        assert mine.state is DomainState.RUNNING and mine.missing == frozenset()
        assert mine.cpu is not None
        assert mine.blocks is None and mine.balloon is None
        chosen = conn.domain_stats(["state"], [dom, conn.lookup_by_name("s0")])
        assert [s.name for s in chosen] == ["s0", "s2"]  # in ID order

        survey = conn.survey()
        assert all(s.stats is None for s in survey.samples)
        before = conn.stats().data_calls
        plain = conn.survey()
        cost = conn.stats().data_calls - before
        before = conn.stats().data_calls
        survey = conn.survey([StatGroup.STATE])
        assert conn.stats().data_calls - before == cost + 1  # one more call, no more
        survey = conn.survey([StatGroup.STATE, "block"])
        assert {s.identity.uuid for s in survey.samples} == live
        for sample in survey.samples:
            assert sample.stats is not None and sample.stats.uuid == sample.identity.uuid
            assert sample.stats.state is DomainState.RUNNING
            assert sample.stats.missing == frozenset() and sample.stats.blocks is not None
        assert len(plain.samples) == len(survey.samples)
        with pytest.raises(InvalidArgumentError):
            conn.survey(["disks"])

        admin.lookupByName("s2").destroy()
        with pytest.raises(NoDomainError):
            dom.stats()


# -- the same through a daemon: lanes with connections of their own ----------------------


def test_through_a_daemon_the_lanes_have_connections_of_their_own(
        libvirtd: LibvirtdProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    lv = real_libvirt()
    admin = lv.open(libvirtd.uri)
    try:
        for i in range(GUESTS):
            admin.createXML(guest_xml(f"s{i}", uuid_of(i), memory_kib=65536, vcpus=1), 0)
        d = LibvirtDriver("libvirt:" + libvirtd.uri, libvirtd.uri, readonly=True,
                          timeout=0.2)
        try:
            live = live_uuids(admin)
            found, n = calls(d, lambda: d.domain_stats(STATE))
            assert n == 1 and {s.uuid for s in found} == live
            assert d._stats_lanes is not None and d._stats_lanes.own_connections
            # One domain by UUID: a lookup on the lane's connection the first time.
            d.census()
            _, n = calls(d, lambda: d.domain_stats(STATE, [uuid_of(0)]))
            assert n == 1 + 1
            _, n = calls(d, lambda: d.domain_stats(STATE, [uuid_of(0)]))
            assert n == 1
            # Every domain the driver knows: getAllDomainStats, no handle needed.
            _, n = calls(d, lambda: d.domain_stats(STATE, sorted(live)))
            assert n == 1
            # A call held past the deadline: every other domain answered on the lanes,
            # each looked up on its lane's connection once.
            with held_stats(monkeypatch):
                found = answered_within_liveness(lambda: d.domain_stats(STATE))
            stuck = [s for s in found if s.missing]
            assert [s.name for s in stuck] == [HUNG] and stuck[0].missing == STATE
            assert {s.uuid for s in found} == live
            # A lane's connection that died is replaced, and the call asked again.
            dead = {id(lane.conn) for lane in d._stats_lanes._idle}
            real_all, real_alive = lv.virConnect.getAllDomainStats, lv.virConnect.isAlive

            def get_all(self: Any, stats: int, flags: int = 0) -> Any:
                if id(self) in dead:
                    raise lv.libvirtError("client socket is closed")
                return real_all(self, stats, flags)

            monkeypatch.setattr(lv.virConnect, "getAllDomainStats", get_all)
            monkeypatch.setattr(lv.virConnect, "isAlive",
                                lambda self: id(self) not in dead and real_alive(self))
            found, n = calls(d, lambda: d.domain_stats(STATE))
            assert n == 2 and {s.uuid for s in found} == live
            assert not any(s.missing for s in found)
        finally:
            d.close()
    finally:
        for dom in admin.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if dom.name() != "test":
                with contextlib.suppress(lv.libvirtError):
                    dom.destroy()
        admin.close()


# -- the lanes ---------------------------------------------------------------------------


def test_a_lane_held_up_holds_up_no_other_job_and_is_left_behind() -> None:
    lanes = Lanes(None, "xvirt-test-lanes")
    release = threading.Event()
    held: list[Lane] = []

    def hangs(lane: Lane) -> str:
        held.append(lane)
        release.wait(LIVENESS_S)
        return "late"

    try:
        def job(i: int) -> Callable[[Lane], str]:
            return lambda _lane: f"job {i}"

        jobs = [job(i) for i in range(6)]
        jobs.insert(1, hangs)
        outcomes = lanes.run(jobs, 0.2, width=3)
        assert outcomes[1] is None
        assert [o.value for o in outcomes if o is not None] == [f"job {i}" for i in range(6)]
        assert lanes.abandoned == 1 and held[0].abandoned
        assert held[0] not in lanes._idle and len(lanes._idle) == 2
        # Kept lanes serve the next call; a failing job's error is handed back.
        threads = {id(lane) for lane in lanes._idle}

        def fails(_lane: Lane) -> None:
            raise ProtocolError("a malformed answer")

        (ok,), (bad,) = lanes.run([lambda lane: id(lane)], 5.0), lanes.run([fails], 5.0)
        assert ok is not None and ok.value in threads
        assert bad is not None and isinstance(bad.error, ProtocolError)
    finally:
        release.set()
        lanes.close()
    assert lanes._idle == []


def test_an_idle_lane_leaves_after_its_idle_time() -> None:
    lanes = Lanes(None, "xvirt-test-idle", idle_s=0.05)
    (out,) = lanes.run([lambda lane: lane], 5.0)
    assert out is not None and isinstance(out.value, Lane)
    out.value._thread.join(LIVENESS_S)
    assert not out.value._thread.is_alive() and lanes._idle == []
    (again,) = lanes.run([lambda lane: lane is out.value], 5.0)  # a new lane
    assert again is not None and again.value is False
    lanes.close()


# -- libvirt's keys -> xvirt's types (records captured on real QEMU, libvirt 9.0) ----------

#: A TCG guest behind a session libvirtd: a virtio disk, a user-mode NIC (no host-side
#: device: counted, nothing else), no guest OS (so no balloon driver figures).
QEMU_TCG = {
    "balloon.current": 32768, "balloon.last-update": 0, "balloon.maximum": 32768,
    "balloon.rss": 40684, "block.0.allocation": 0, "block.0.backingIndex": 1,
    "block.0.capacity": 8388608, "block.0.fl.reqs": 0, "block.0.fl.times": 0,
    "block.0.name": "vda", "block.0.path": "/tmp/xvirt-libvirtd-7lzdace0/images/p000.img",
    "block.0.physical": 4096, "block.0.rd.bytes": 512, "block.0.rd.reqs": 1,
    "block.0.rd.times": 129690, "block.0.wr.bytes": 0, "block.0.wr.reqs": 0,
    "block.0.wr.times": 0, "block.count": 1, "cpu.cache.monitor.count": 0,
    "cpu.haltpoll.fail.time": 0, "cpu.haltpoll.success.time": 0, "cpu.system": 80000000,
    "cpu.time": 260000000, "cpu.user": 180000000, "net.count": 1, "state.reason": 1,
    "state.state": 1, "vcpu.0.delay": 28248590, "vcpu.0.state": 1,
    "vcpu.0.time": 120000000, "vcpu.0.wait": 0, "vcpu.current": 1, "vcpu.maximum": 1,
}
#: The same guest's record while its QEMU was SIGSTOPped and another call held its job:
#: NOWAIT skipped every figure read through the monitor.
QEMU_TCG_SKIPPED = {
    "balloon.current": 32768, "balloon.maximum": 32768, "block.0.backingIndex": 1,
    "block.0.name": "vda", "block.0.path": "/tmp/xvirt-libvirtd-7lzdace0/images/p000.img",
    "block.count": 1, "cpu.cache.monitor.count": 0, "cpu.system": 80000000,
    "cpu.time": 270000000, "cpu.user": 190000000, "net.count": 1, "state.reason": 1,
    "state.state": 1, "vcpu.0.delay": 28256802, "vcpu.0.state": 1,
    "vcpu.0.time": 120000000, "vcpu.0.wait": 0, "vcpu.current": 1, "vcpu.maximum": 1,
}
#: A KVM guest on the embedded driver with a tap NIC (an 'ethernet' interface).
QEMU_KVM_NET = {
    "balloon.current": 32768, "balloon.maximum": 32768, "balloon.rss": 36428,
    "block.count": 0, "cpu.system": 740000000, "cpu.time": 780000000, "cpu.user": 40000000,
    "net.0.name": "xvst0", "net.0.rx.bytes": 90, "net.0.rx.drop": 0, "net.0.rx.errs": 0,
    "net.0.rx.pkts": 1, "net.0.tx.bytes": 0, "net.0.tx.drop": 0, "net.0.tx.errs": 0,
    "net.0.tx.pkts": 0, "net.count": 1, "state.reason": 1, "state.state": 1,
    "vcpu.0.exits.sum": 7887, "vcpu.0.state": 1, "vcpu.0.time": 1310000000,
    "vcpu.current": 1, "vcpu.maximum": 1,
}
QEMU = JOB_MARKS["qemu"]


def state_of(code: int) -> DomainState | None:
    from xvirt.drivers.libvirt import domain_state
    return domain_state(code)


def read(record: dict[str, Any], groups: frozenset[StatGroup] = ALL_GROUPS,
         **options: Any) -> DomainStats | None:
    return stats_from_record("u", "g", 3, record, groups, state_of=state_of, **options)


def test_a_qemu_record_read_field_by_field() -> None:
    got = read(QEMU_TCG, marks=QEMU)
    assert got == DomainStats(
        "u", "g", 3, DomainState.RUNNING,
        cpu=CpuStats(260000000, 180000000, 80000000),
        balloon=BalloonStats(32768, 32768, rss_kib=40684),
        vcpus=(VcpuStats(0, VcpuState.RUNNING, 120000000),),
        blocks=(BlockStats("vda", "/tmp/xvirt-libvirtd-7lzdace0/images/p000.img", 1, 512,
                           129690, 0, 0, 0, fl_reqs=0, fl_time_ns=0, errors=None,
                           capacity_bytes=8388608, allocation_bytes=0,
                           physical_bytes=4096),),
        nets=())  # the user-mode NIC: counted by libvirt, no figures
    kvm = read(QEMU_KVM_NET, marks=QEMU, nics={"xvst0": ("52:54:00:aa:bb:01", None)})
    assert kvm is not None and kvm.blocks == () and not kvm.missing
    assert kvm.nets == (NetStats("xvst0", "52:54:00:aa:bb:01", None, 90, 1, 0, 0, 0, 0, 0, 0),)


def test_a_record_nowait_skipped_has_its_monitor_groups_missing() -> None:
    got = read(QEMU_TCG_SKIPPED, marks=QEMU)
    assert got is not None and got.missing == {StatGroup.BLOCK, StatGroup.BALLOON}
    assert got.blocks is None and got.balloon is None
    # What libvirt reads without the monitor is still served.
    assert got.cpu == CpuStats(270000000, 190000000, 80000000)
    assert got.vcpus == (VcpuStats(0, VcpuState.RUNNING, 120000000),)
    assert got.state is DomainState.RUNNING and got.nets == ()
    # Without QEMU's mark (another hypervisor), the balloon's own figures stand.
    other = read(QEMU_TCG_SKIPPED)
    assert other is not None and other.missing == {StatGroup.BLOCK}
    assert other.balloon == BalloonStats(32768, 32768)


def test_odd_records() -> None:
    # An empty CD-ROM drive: a name and nothing else; a shut-off domain: not live.
    cdrom = {"block.count": 2, "block.0.name": "hdc", **{
        f"block.1.{k}": v for k, v in (("name", "vda"), ("path", "/i"), ("rd.reqs", 1),
                                       ("rd.bytes", 2), ("wr.reqs", 3), ("wr.bytes", 4))}}
    got = read(cdrom, frozenset({StatGroup.BLOCK}))
    assert got is not None and got.blocks == (BlockStats("vda", "/i", 1, 2, None, 3, 4, None),)
    assert read({"state.state": 5}) is None
    # vCPUs numbered with a gap (vCPU 1 unplugged); an unknown vCPU state is no answer.
    vcpus = {"vcpu.current": 2, "vcpu.maximum": 4, "vcpu.0.state": 1, "vcpu.0.time": 5,
             "vcpu.2.state": 2, "vcpu.2.time": 6}
    got = read(vcpus, frozenset({StatGroup.VCPU}))
    assert got is not None and got.vcpus == (VcpuStats(0, VcpuState.RUNNING, 5),
                                             VcpuStats(2, VcpuState.BLOCKED, 6))
    got = read({**vcpus, "vcpu.2.state": 9}, frozenset({StatGroup.VCPU}))
    assert got is not None and got.missing == {StatGroup.VCPU}
    # A NIC with a name and half its counters: not an answer.
    got = read({"net.count": 1, "net.0.name": "vnet0", "net.0.rx.bytes": 1},
               frozenset({StatGroup.NET}))
    assert got is not None and got.missing == {StatGroup.NET}


_COUNTERS = st.integers(0, 2**63)


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], dict[StatGroup, Any]]:
    """A libvirt record with each group present or not, and what it should read as."""
    record: dict[str, Any] = {}
    expected: dict[StatGroup, Any] = {}
    if draw(st.booleans()):
        record["state.state"] = 3
        expected[StatGroup.STATE] = DomainState.PAUSED
    if draw(st.booleans()):
        t, u, s = draw(_COUNTERS), draw(st.none() | _COUNTERS), draw(st.none() | _COUNTERS)
        record.update({"cpu.time": t} | ({} if u is None else {"cpu.user": u})
                      | ({} if s is None else {"cpu.system": s}))
        expected[StatGroup.CPU] = CpuStats(t, u, s)
    if draw(st.booleans()):
        cur, mx, rss = draw(_COUNTERS), draw(_COUNTERS), draw(st.none() | _COUNTERS)
        record.update({"balloon.current": cur, "balloon.maximum": mx}
                      | ({} if rss is None else {"balloon.rss": rss}))
        expected[StatGroup.BALLOON] = BalloonStats(cur, mx, rss_kib=rss)
    if draw(st.booleans()):
        times = draw(st.lists(_COUNTERS, max_size=4))
        record.update({"vcpu.current": len(times), "vcpu.maximum": len(times)})
        for n, t in enumerate(times):
            record.update({f"vcpu.{n}.state": 1, f"vcpu.{n}.time": t})
        expected[StatGroup.VCPU] = tuple(VcpuStats(n, VcpuState.RUNNING, t)
                                         for n, t in enumerate(times))
    if draw(st.booleans()):
        figures = draw(st.lists(st.tuples(*[_COUNTERS] * 4), max_size=3))
        record["block.count"] = len(figures)
        for n, (a, b, c, e) in enumerate(figures):
            record.update({f"block.{n}.name": f"vd{n}", f"block.{n}.path": f"/d{n}",
                           f"block.{n}.rd.reqs": a, f"block.{n}.rd.bytes": b,
                           f"block.{n}.wr.reqs": c, f"block.{n}.wr.bytes": e})
        expected[StatGroup.BLOCK] = tuple(BlockStats(f"vd{n}", f"/d{n}", a, b, None, c, e,
                                                     None) for n, (a, b, c, e) in
                                          enumerate(figures))
    if draw(st.booleans()):
        nics = draw(st.lists(st.tuples(*[_COUNTERS] * 8), max_size=3))
        record["net.count"] = len(nics)
        for n, values in enumerate(nics):
            record[f"net.{n}.name"] = f"vnet{n}"
            for key, value in zip(("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes",
                                   "tx.pkts", "tx.errs", "tx.drop"), values, strict=True):
                record[f"net.{n}.{key}"] = value
        expected[StatGroup.NET] = tuple(NetStats(f"vnet{n}", f"m{n}", None, *values)
                                        for n, values in enumerate(nics))
    return record, expected


@settings(max_examples=200, deadline=None)
@given(drawn=records(), groups=st.frozensets(st.sampled_from(StatGroup)))
def test_every_group_asked_is_read_as_libvirt_gave_it_or_missing(
        drawn: tuple[dict[str, Any], dict[StatGroup, Any]],
        groups: frozenset[StatGroup]) -> None:
    record, expected = drawn
    nics = {f"vnet{n}": (f"m{n}", None) for n in range(3)}
    got = read(record, groups, nics=nics)
    assert got is not None
    values = {StatGroup.STATE: got.state, StatGroup.CPU: got.cpu,
              StatGroup.BALLOON: got.balloon, StatGroup.VCPU: got.vcpus,
              StatGroup.BLOCK: got.blocks, StatGroup.NET: got.nets}
    assert got.missing == {g for g in groups if g not in expected}
    for group, value in values.items():
        assert value == (expected.get(group) if group in groups else None)


def test_stats_bits_and_nic_sources() -> None:
    assert stats_bits(frozenset()) == VIR_DOMAIN_STATS_STATE  # never libvirt's "all"
    assert stats_bits(ALL_GROUPS) == 1 | 2 | 4 | 8 | 16 | 32
    lv = real_libvirt()
    conn = lv.open("test:///default")
    try:
        dom = conn.defineXML(BRIDGED_XML)
        try:
            # libvirt's own rendering of a bridged NIC (the test driver names the
            # other one's device itself).
            assert nic_sources(dom.XMLDesc(0), uri=URI) == {
                "xvbr57": ("52:54:00:57:b0:01", "br-xvirt"),
                "testnet0": ("52:54:00:57:b0:02", None)}
        finally:
            dom.undefine()
        live = conn.lookupByUUIDString(TEST_UUID).XMLDesc(0)
        assert nic_sources(live, uri=URI) == {"testnet0": ("aa:bb:cc:dd:ee:ff", None)}
    finally:
        conn.close()
    # A NIC without a host-side device (QEMU's user-mode networking): nothing to match.
    assert nic_sources(BRIDGED_XML, uri=URI) == {"xvbr57": ("52:54:00:57:b0:01", "br-xvirt")}
    for bad in ("<domain", "<capabilities/>"):
        with pytest.raises(ProtocolError):
            nic_sources(bad, uri=URI)
