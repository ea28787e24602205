"""The face's statistics calls on xvirt's own hosts (issue 19, item 4): blockStats,
blockStatsFlags, blockInfo, interfaceStats, memoryStats, vcpus, getCPUStats,
getAllDomainStats and domainListGetStats, in libvirt-python's shapes.

What is checked: on an embedded host (its clock injected) each call's figures are the
library's ``Domain.stats()`` at the same instant, counters grow with the clock and
never go back, errors are libvirt's (bad path, NULL, shut off, gone, a wedged guest),
and one data call serves a whole getAllDomainStats; on a host daemon (its clock real)
the same for paused guests, whose figures stand still, and for a running one between
two library reads. Every getAllDomainStats key is one libvirt 9.0 documents for its
group (DOC_KEYS, from libvirt's documentation of virConnectGetAllDomainStats), with its
type, and one real QEMU guest under libvirt gives too (QEMU_KEYS, read from libvirt
9.0 on QEMU; re-read where the QEMU harness runs).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
import xvirt.compat.libvirt as face
from xvirt.clock import ManualClock
from xvirt.compat._stats import block_info, find_disk, find_nic
from xvirt.planes import DiskConfig, NicConfig
from xvirt.stats import BlockStats, DomainStats, NetStats, StatGroup
from xvirt.testing.daemon import DaemonProcess
from xvirt.testing.qemu import QEMU_SYSTEM, EmbeddedQemu, QemuError

from .helpers import err

ALL_BITS = (face.VIR_DOMAIN_STATS_STATE | face.VIR_DOMAIN_STATS_CPU_TOTAL
            | face.VIR_DOMAIN_STATS_BALLOON | face.VIR_DOMAIN_STATS_VCPU
            | face.VIR_DOMAIN_STATS_INTERFACE | face.VIR_DOMAIN_STATS_BLOCK)
GROUP_BITS = {
    "state": face.VIR_DOMAIN_STATS_STATE, "cpu": face.VIR_DOMAIN_STATS_CPU_TOTAL,
    "balloon": face.VIR_DOMAIN_STATS_BALLOON, "vcpu": face.VIR_DOMAIN_STATS_VCPU,
    "net": face.VIR_DOMAIN_STATS_INTERFACE, "block": face.VIR_DOMAIN_STATS_BLOCK,
}
_N = r"\d+"
#: Every key libvirt 9.0 documents for each group xvirt's hosts fill (virConnectGet-
#: AllDomainStats), ``<num>`` written \d+, and its type: str for names and paths, int
#: (libvirt's int, unsigned int and unsigned long long) for every other.
DOC_KEYS: dict[str, tuple[str, ...]] = {
    "state": ("state.state", "state.reason"),
    "cpu": ("cpu.time", "cpu.user", "cpu.system", "cpu.haltpoll.success.time",
            "cpu.haltpoll.fail.time", "cpu.cache.monitor.count"),
    "balloon": tuple(f"balloon.{k}" for k in (
        "current", "maximum", "swap_in", "swap_out", "major_fault", "minor_fault",
        "unused", "available", "rss", "usable", "last-update", "disk_caches",
        "hugetlb_pgalloc", "hugetlb_pgfail")),
    "vcpu": ("vcpu.current", "vcpu.maximum", *(f"vcpu.{_N}.{k}" for k in (
        "state", "time", "wait", "halted", "delay"))),
    "net": ("net.count", *(f"net.{_N}.{k}" for k in (
        "name", "rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts",
        "tx.errs", "tx.drop"))),
    "block": ("block.count", *(f"block.{_N}.{k}" for k in (
        "name", "backingIndex", "path", "rd.reqs", "rd.bytes", "rd.times", "wr.reqs",
        "wr.bytes", "wr.times", "fl.reqs", "fl.times", "errors", "allocation", "capacity",
        "physical", "threshold"))),
}
_STRINGS = re.compile(r"(net|block)\.\d+\.(name|path)")
#: The keys libvirt 9.0 gave for a running QEMU guest with one virtio disk and one tap
#: NIC, asked for these six groups (``<num>`` as \d+; KVM's own vcpu.<n>.*.sum/.cur/.max
#: counters left out). tests below re-read them where the QEMU harness runs.
QEMU_KEYS: dict[str, frozenset[str]] = {
    "state": frozenset({"state.state", "state.reason"}),
    "cpu": frozenset({"cpu.time", "cpu.user", "cpu.system", "cpu.cache.monitor.count",
                      "cpu.haltpoll.success.time", "cpu.haltpoll.fail.time"}),
    "balloon": frozenset({"balloon.current", "balloon.maximum", "balloon.last-update",
                          "balloon.rss"}),
    "vcpu": frozenset({"vcpu.current", "vcpu.maximum", f"vcpu.{_N}.state",
                       f"vcpu.{_N}.time", f"vcpu.{_N}.wait", f"vcpu.{_N}.delay"}),
    "net": frozenset({"net.count", *(f"net.{_N}.{k}" for k in (
        "name", "rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts",
        "tx.errs", "tx.drop"))}),
    "block": frozenset({"block.count", *(f"block.{_N}.{k}" for k in (
        "name", "path", "backingIndex", "rd.reqs", "rd.bytes", "rd.times", "wr.reqs",
        "wr.bytes", "wr.times", "fl.reqs", "fl.times", "allocation", "capacity",
        "physical"))}),
}
#: What a Xen host says that a QEMU guest does not: libvirt documents it as Xen's.
XEN_ONLY = frozenset({f"block.{_N}.errors"})
#: What every record of a running domain on xvirt's hosts holds, per group.
REQUIRED = {
    "state": {"state.state", "state.reason"},
    "cpu": {"cpu.time", "cpu.user", "cpu.system"},
    "balloon": {"balloon.current", "balloon.maximum"},
    "vcpu": {"vcpu.current", "vcpu.maximum"},
    "net": {"net.count"},
    "block": {"block.count"},
}
MAC = "00:16:3e:00:00:51"


def pattern_of(key: str) -> str:
    """A key with its device or vCPU number as \\d+ (``block.0.rd.reqs`` ->
    ``block.\\d+.rd.reqs``)."""
    return re.sub(r"^(vcpu|net|block)\.\d+\.", lambda m: f"{m.group(1)}.{_N}.", key)


def group_of(key: str) -> str:
    return key.partition(".")[0]


def documented(key: str) -> bool:
    return pattern_of(key) in DOC_KEYS[group_of(key)]


@pytest.fixture
def guests(host: xvirt.sim.Host, clock: ManualClock) -> dict[str, xvirt.sim.DomainRecord]:
    """web: two disks (one read-only) and two NICs; idle: Xen's default disk and vif;
    frozen: paused. The clock has run 5 s."""
    found = {
        "web": host.create("web", memory_kib=262144, max_memory_kib=524288, vcpus=3,
                           disks=[DiskConfig("/img/web.img", "xvda"),
                                  DiskConfig("/img/tools.iso", "xvdc", readonly=True)],
                           nics=[NicConfig(MAC, "xenbr0"),
                                 NicConfig("00:16:3e:00:00:52", "xenbr1")]),
        "idle": host.create("idle", vcpus=1),
        "frozen": host.create("frozen", vcpus=2),
    }
    clock.advance(5.0)
    host.pause(found["frozen"].id)
    return found


def _truth(conn: face.virConnect, name: str) -> DomainStats:
    return xvirt.Domain(conn._xvirt, conn.lookupByName(name).UUIDString()).stats()


# -- each call's figures are the library's ------------------------------------------------


def test_block_stats_by_target_and_source(conn: face.virConnect,
                                          guests: dict[str, Any]) -> None:
    d = conn.lookupByName("web")
    truth = _truth(conn, "web")
    assert truth.blocks is not None
    for disk in truth.blocks:
        assert disk.path is not None
        want = (disk.rd_reqs, disk.rd_bytes, disk.wr_reqs, disk.wr_bytes, disk.errors)
        assert d.blockStats(disk.name) == d.blockStats(disk.path) == want
        assert all(type(v) is int for v in want)
        params = d.blockStatsFlags(disk.name)
        assert params == d.blockStatsFlags(disk.path, face.VIR_TYPED_PARAM_STRING_OKAY) == {
            "wr_bytes": disk.wr_bytes, "wr_operations": disk.wr_reqs,
            "rd_bytes": disk.rd_bytes, "rd_operations": disk.rd_reqs,
            "flush_operations": disk.fl_reqs, "wr_total_times": disk.wr_time_ns,
            "rd_total_times": disk.rd_time_ns, "flush_total_times": disk.fl_time_ns,
            "errs": disk.errors}
    xvda, xvdc = truth.blocks
    assert xvda.rd_reqs > 0 and xvda.wr_reqs > 0 and xvdc.wr_reqs == 0  # read-only
    # "": every disk summed, as libvirt's Xen driver gives it
    assert d.blockStats("") == tuple(
        a + b for a, b in zip(d.blockStats("xvda"), d.blockStats("xvdc"), strict=True))
    assert xvda.rd_time_ns is not None and xvdc.rd_time_ns is not None
    assert d.blockStatsFlags("")["rd_total_times"] == xvda.rd_time_ns + xvdc.rd_time_ns


def test_interface_stats_by_device_and_mac(conn: face.virConnect,
                                           guests: dict[str, Any]) -> None:
    d = conn.lookupByName("web")
    truth = _truth(conn, "web")
    assert truth.nets is not None and len(truth.nets) == 2
    for nic in truth.nets:
        assert nic.mac is not None
        want = (nic.rx_bytes, nic.rx_packets, nic.rx_errs, nic.rx_drop,
                nic.tx_bytes, nic.tx_packets, nic.tx_errs, nic.tx_drop)
        assert d.interfaceStats(nic.name) == d.interfaceStats(nic.mac) == want
        assert d.interfaceStats(nic.mac.upper()) == want  # virMacAddrParse's case
        assert nic.name.startswith(f"vif{d.ID()}.")
    assert d.interfaceStats(truth.nets[0].name)[0] > 0


def test_memory_stats(conn: face.virConnect, guests: dict[str, Any]) -> None:
    truth = _truth(conn, "web")
    assert truth.balloon is not None
    # a Xen guest's balloon driver reports no more than the balloon's size
    assert conn.lookupByName("web").memoryStats() == {"actual": truth.balloon.current_kib}
    assert truth.balloon.current_kib == 262144


def test_cpu_stats(host: xvirt.sim.Host, conn: face.virConnect,
                   guests: dict[str, Any]) -> None:
    d = conn.lookupByName("web")
    truth = _truth(conn, "web")
    assert truth.cpu is not None and truth.vcpus is not None
    assert d.getCPUStats(True) == d.getCPUStats(1, face.VIR_TYPED_PARAM_STRING_OKAY) == [{
        "cpu_time": truth.cpu.time_ns, "user_time": truth.cpu.user_ns,
        "system_time": truth.cpu.system_ns}]
    assert truth.cpu.time_ns == host.domain(guests["web"].id).cpu_time_ns > 0
    per_cpu = d.getCPUStats(False)
    assert len(per_cpu) == conn.getInfo()[2]  # one per host CPU, as the binding documents
    assert all(list(entry) == ["cpu_time"] for entry in per_cpu)
    assert sum(entry["cpu_time"] for entry in per_cpu) == truth.cpu.time_ns
    on_cpu = [0] * len(per_cpu)
    for number, _state, time_ns, cpu in d.vcpus()[0]:
        on_cpu[cpu] += time_ns
        assert time_ns == truth.vcpus[number].time_ns
    assert [entry["cpu_time"] for entry in per_cpu] == on_cpu


def test_vcpus_times_are_the_stats(conn: face.virConnect, guests: dict[str, Any]) -> None:
    for name in ("web", "idle", "frozen"):
        truth = _truth(conn, name)
        assert truth.vcpus is not None
        assert [(n, s, t) for n, s, t, _cpu in conn.lookupByName(name).vcpus()[0]] == [
            (v.number, v.state.value, v.time_ns) for v in truth.vcpus]


def test_block_info_gives_the_disks_sizes(conn: face.virConnect,
                                         guests: dict[str, Any]) -> None:
    """``[capacity, allocation, physical]`` as the host reports them, after the path
    is checked (by target or source path)."""
    d = conn.lookupByName("web")
    disk, _iso = conn._xvirt.lookup_by_name("web").stats(["block"]).blocks or ()
    assert d.blockInfo("xvda") == [disk.capacity_bytes, disk.allocation_bytes,
                                   disk.physical_bytes]
    assert all(isinstance(x, int) and x > 0 for x in d.blockInfo("xvda"))
    assert err(lambda: d.blockInfo("vdz"))[:3] == (
        8, face.VIR_FROM_XEN, "invalid argument: invalid path vdz not assigned to domain")
    assert err(lambda: d.blockInfo("xvda", 1))[0] == 8


def test_block_info_gives_the_sizes_a_host_reports() -> None:
    sized = BlockStats("xvda", "/img/a", 1, 512, None, 0, 0, None, capacity_bytes=8 << 20,
                       allocation_bytes=4096, physical_bytes=8 << 20)
    assert block_info(sized) == [8 << 20, 4096, 8 << 20]
    assert block_info(BlockStats("xvda", "/img/a", 1, 512, None, 0, 0, None)) is None


def test_disks_and_nics_are_found_as_libvirt_finds_them() -> None:
    """virDomainDiskByName: the target unless the name starts with '/', else the source,
    unambiguous only; virDomainNetFind: a MAC (octets of one or two digits, any case),
    else the device's name."""
    a = BlockStats("xvda", "/img/shared", 1, 512, 10, 2, 8192, 20, errors=None)
    b = BlockStats("xvdb", "/img/shared", 3, 1536, 30, 4, 16384, 40, errors=0)
    c = BlockStats("xvdc", "/img/own", 5, 2560, None, 6, 24576, 60, errors=0)
    assert find_disk([a, b, c], "xvdb") is b
    assert find_disk([a, b, c], "/img/own") is c
    assert find_disk([a, b, c], "/img/shared") is None  # ambiguous
    assert find_disk([a, b, c], "img/own") is None and find_disk([a, b], "xvdz") is None
    total = find_disk([a, b], "")
    assert total is not None
    assert (total.rd_reqs, total.wr_bytes, total.rd_time_ns, total.errors) == (
        4, 24576, 40, None)  # a disk not counting errors: the sum is not reported
    nic = NetStats("vif3.0", "00:16:3e:0a:00:01", "xenbr0", 1, 1, 0, 0, 1, 1, 0, 0)
    assert find_nic([nic], "0:16:3E:A:0:1") is nic and find_nic([nic], "vif3.0") is nic
    assert find_nic([nic], "00:16:3e:0a:00:02") is None and find_nic([nic], "vif3") is None


# -- counters grow with the clock and never go back ---------------------------------------


def _counters(d: face.virDomain) -> list[int]:
    return [*d.blockStats("xvda")[:4], *d.interfaceStats(MAC), d.getCPUStats(True)[0][
        "cpu_time"], *(t for _n, _s, t, _c in d.vcpus()[0])]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.floats(0.0, 50.0), st.sampled_from(
    ["run", "pause", "resume", "block", "unblock"])), min_size=1, max_size=12))
def test_counters_grow_with_the_clock_and_never_go_back(
        make_sim_host: Callable[..., xvirt.sim.Host],
        steps: list[tuple[float, str]]) -> None:
    clock = ManualClock()
    host = make_sim_host(clock=clock)
    rec = host.create("g", vcpus=2, nics=[NicConfig(MAC, "xenbr0")])
    conn = face.open(host.uri)
    try:
        d = conn.lookupByName("g")
        before = _counters(d)
        assert min(before) >= 0
        for seconds, act in steps:
            running = host.domain(rec.id).state is xvirt.DomainState.RUNNING
            clock.advance(seconds)
            now = _counters(d)
            assert all(b <= a for b, a in zip(before, now, strict=True)), (before, now)
            if running and seconds >= 1.0:  # a running guest's CPU time and I/O grow
                assert now[0] > before[0] and now[-1] > before[-1]
            before = now
            state = host.domain(rec.id).state
            if act == "pause" and state is not xvirt.DomainState.PAUSED:
                host.pause(rec.id)
            elif act == "resume" and state is xvirt.DomainState.PAUSED:
                host.resume(rec.id)
            elif act in ("block", "unblock") and state is not xvirt.DomainState.PAUSED:
                host.set_blocked(rec.id, act == "block")
    finally:
        conn.close()


# -- errors as libvirt's --------------------------------------------------------------------


def test_bad_paths_are_invalid_arguments(conn: face.virConnect,
                                         guests: dict[str, Any]) -> None:
    d = conn.lookupByName("web")
    xen = face.VIR_FROM_XEN
    assert err(lambda: d.blockStats("vdz")) == (8, xen, "invalid argument: invalid path: vdz")
    assert err(lambda: d.blockStatsFlags("img/web.img")) == (
        8, xen, "invalid argument: invalid path: img/web.img")
    assert err(lambda: d.interfaceStats("vnet0")) == (
        8, 20, "invalid argument: 'vnet0' is not a known interface")
    assert err(lambda: d.interfaceStats("00:16:3e:00:00:99")) == (
        8, 20, "invalid argument: '00:16:3e:00:00:99' is not a known interface")
    # NULL, as libvirt's own check words it (before it looks for the domain)
    assert err(lambda: d.blockStats(None)) == (  # type: ignore[arg-type]
        8, 20, "disk in virDomainBlockStats must not be NULL")
    assert err(lambda: d.interfaceStats(None)) == (  # type: ignore[arg-type]
        8, 20, "device in virDomainInterfaceStats must not be NULL")
    assert err(lambda: d.blockStatsFlags("xvda", 1)) == (
        8, xen, "unsupported flags (0x1) in function virDomainBlockStatsFlags")
    assert err(lambda: d.getCPUStats(True, -1)) == (
        8, xen, "unsupported flags (0xfffffffb) in function virDomainGetCPUStats")
    with pytest.raises(TypeError, match="argument 2 must be str or None, not int"):
        d.blockStats(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.getCPUStats(True, "0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedded null"):
        d.interfaceStats("vif\x00")


def test_shut_off_and_gone_domains(host: xvirt.sim.Host, conn: face.virConnect,
                                   guests: dict[str, Any]) -> None:
    idle = conn.lookupByName("idle")
    host.destroy(guests["idle"].id)
    gone = (42, face.VIR_FROM_XEN, "Domain not found: no domain with matching uuid "
            f"'{guests['idle'].uuid}' (idle)")
    calls: list[Callable[[face.virDomain], object]] = [
        lambda d: d.blockStats("xvda"), lambda d: d.blockStatsFlags("xvda"),
        lambda d: d.blockInfo("xvda"), lambda d: d.interfaceStats("vif1.0"),
        lambda d: d.memoryStats(), lambda d: d.getCPUStats(True),
        lambda d: d.getCPUStats(False), lambda d: d.vcpus()]
    for call in calls:
        assert err(lambda c=call: c(idle)) == gone  # type: ignore[misc]
    conn.defineXML("<domain type='xen'><name>off</name><memory>65536</memory>"
                   "<vcpu>1</vcpu><os><type>linux</type></os></domain>")
    off = conn.lookupByName("off")
    for call in calls:
        assert err(lambda c=call: c(off)) == (  # type: ignore[misc]
            55, 20, "Requested operation is not valid: domain is not running")


def test_a_wedged_guest_times_out_alone(host: xvirt.sim.Host, conn: face.virConnect,
                                        guests: dict[str, Any]) -> None:
    """Its own calls time out (as libvirt's when the guest holds its job); in the bulk
    calls it has none of the groups (NOWAIT's answer), and the others have all."""
    host.stall(guests["web"].id)
    web = conn.lookupByName("web")
    code, domain, message = err(lambda: web.blockStats("xvda"))
    assert (code, domain) == (face.VIR_ERR_OPERATION_TIMEOUT, face.VIR_FROM_XEN)
    assert message is not None and "'web' did not answer its block statistics" in message
    assert err(lambda: web.memoryStats())[0] == face.VIR_ERR_OPERATION_TIMEOUT
    for flags in (0, face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT):
        records = {d.name(): r for d, r in conn.getAllDomainStats(0, flags)}
        assert records["web"] == {}
        assert set(REQUIRED["block"]) <= set(records["idle"])
        assert records["frozen"]["state.state"] == face.VIR_DOMAIN_PAUSED
    # a state filter passes no domain whose state did not come
    running = conn.getAllDomainStats(0, face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING)
    assert "web" not in {d.name() for d, _ in running}
    assert [d.name() for d, _ in conn.domainListGetStats([web], ALL_BITS)] == ["web"]


# -- getAllDomainStats and domainListGetStats ------------------------------------------------


def _check_record(record: dict[str, Any], groups: set[str]) -> None:
    """Keys libvirt documents for the groups asked, and only those, with its types."""
    for key, value in record.items():
        assert group_of(key) in groups, key
        assert documented(key), key
        assert type(value) is (str if _STRINGS.fullmatch(key) else int), (key, value)
        assert isinstance(value, str) or value >= 0, (key, value)  # unsigned
    for group in groups:
        assert REQUIRED[group] <= set(record), (group, sorted(record))


@pytest.mark.parametrize("group", sorted(GROUP_BITS))
def test_each_group_alone_has_libvirts_keys(conn: face.virConnect, guests: dict[str, Any],
                                            group: str) -> None:
    got = conn.getAllDomainStats(GROUP_BITS[group])
    assert {d.name() for d, _ in got} == {"Domain-0", "web", "idle", "frozen"}
    for _d, record in got:
        _check_record(record, {group})


def test_records_are_the_librarys_figures(host: xvirt.sim.Host, conn: face.virConnect,
                                          guests: dict[str, Any]) -> None:
    by_name = {s.name: s for s in conn._xvirt.domain_stats()}
    got = conn.getAllDomainStats()  # 0: every group a Xen host has
    assert [d.name() for d, _ in got] == [s.name for s in conn._xvirt.domain_stats()]
    assert got == conn.getAllDomainStats(ALL_BITS | face.VIR_DOMAIN_STATS_PERF)
    records = {d.name(): r for d, r in got}
    for name, record in records.items():
        _check_record(record, set(GROUP_BITS))
        s = by_name[name]
        assert s.cpu is not None and s.balloon is not None and s.vcpus is not None
        assert s.blocks is not None and s.nets is not None
        assert (record["cpu.time"], record["cpu.user"], record["cpu.system"]) == (
            s.cpu.time_ns, s.cpu.user_ns, s.cpu.system_ns)
        assert (record["balloon.current"], record["balloon.maximum"]) == (
            s.balloon.current_kib, s.balloon.maximum_kib)
        assert record["vcpu.current"] == len(s.vcpus)
        for v in s.vcpus:
            assert (record[f"vcpu.{v.number}.state"], record[f"vcpu.{v.number}.time"]) == (
                v.state.value, v.time_ns)
        assert record["net.count"] == len(s.nets)
        for n, nic in enumerate(s.nets):
            assert [record[f"net.{n}.{k}"] for k in (
                "name", "rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts",
                "tx.errs", "tx.drop")] == [
                nic.name, nic.rx_bytes, nic.rx_packets, nic.rx_errs, nic.rx_drop,
                nic.tx_bytes, nic.tx_packets, nic.tx_errs, nic.tx_drop]
        assert record["block.count"] == len(s.blocks)
        for n, disk in enumerate(s.blocks):
            assert [record.get(f"block.{n}.{k}") for k in (
                "name", "path", "rd.reqs", "rd.bytes", "rd.times", "wr.reqs", "wr.bytes",
                "wr.times", "fl.reqs", "fl.times", "errors", "capacity")] == [
                disk.name, disk.path, disk.rd_reqs, disk.rd_bytes, disk.rd_time_ns,
                disk.wr_reqs, disk.wr_bytes, disk.wr_time_ns, disk.fl_reqs, disk.fl_time_ns,
                disk.errors, disk.capacity_bytes]
    web = records["web"]
    assert web["block.count"] == 2 and web["net.count"] == 2
    assert (web["block.0.name"], web["block.1.path"]) == ("xvda", "/img/tools.iso")
    assert web["net.0.name"] == f"vif{guests['web'].id}.0"
    assert records["frozen"]["state.state"] == face.VIR_DOMAIN_PAUSED
    # per group, in libvirt's order of groups
    order = [group_of(k) for k in web]
    assert order == sorted(order, key=["state", "cpu", "balloon", "vcpu", "net",
                                       "block"].index)


def test_one_data_call_per_bulk_call(conn: face.virConnect, guests: dict[str, Any],
                                     clock: ManualClock) -> None:
    web, frozen = conn.lookupByName("web"), conn.lookupByName("frozen")
    calls: list[Callable[[], object]] = [
        lambda: conn.getAllDomainStats(),
        lambda: conn.getAllDomainStats(face.VIR_DOMAIN_STATS_BLOCK,
                                       face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED),
        lambda: conn.domainListGetStats([frozen, web])]
    for call in calls:
        clock.advance(1.0)
        before = conn._xvirt.stats()
        call()
        after = conn._xvirt.stats()
        assert (after.data_calls - before.data_calls,
                after.control_requests - before.control_requests) == (1, 0)


def test_counters_in_records_grow(conn: face.virConnect, guests: dict[str, Any],
                                  clock: ManualClock) -> None:
    def numbers() -> dict[tuple[str, str], int]:
        return {(d.name(), k): v for d, r in conn.getAllDomainStats()
                for k, v in r.items() if type(v) is int and k.split(".")[-1] not in (
                    "state", "reason", "count", "current", "maximum")}
    before = numbers()
    clock.advance(10.0)
    after = numbers()
    assert set(before) == set(after)
    assert all(before[k] <= after[k] for k in before)
    grown = {k for k in before if after[k] > before[k]}
    assert ("web", "block.0.rd.reqs") in grown and ("web", "net.1.tx.bytes") in grown
    assert not {k for k in grown if k[0] == "frozen"}  # a paused guest does nothing


def test_filters_and_refusals(conn: face.virConnect, guests: dict[str, Any]) -> None:
    paused = conn.getAllDomainStats(face.VIR_DOMAIN_STATS_BLOCK,
                                    face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED)
    assert [(d.name(), r["block.count"]) for d, r in paused] == [("frozen", 1)]
    assert conn.getAllDomainStats(0, face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE) == []
    enforce = face.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS
    assert len(conn.getAllDomainStats(ALL_BITS, enforce)) == 4  # every group is served
    assert err(lambda: conn.getAllDomainStats(face.VIR_DOMAIN_STATS_PERF, enforce)) == (
        74, face.VIR_FROM_XEN,
        "argument unsupported: Stats types bits 0x40 are not supported by this daemon")
    assert [r for _d, r in conn.getAllDomainStats(face.VIR_DOMAIN_STATS_PERF)] == [{}] * 4
    assert err(lambda: conn.domainListGetStats([], 0, 1)) == (
        8, 20, "invalid argument: doms array in virDomainListGetStats must contain at "
        "least one domain")


def test_domain_list_stats(host: xvirt.sim.Host, conn: face.virConnect,
                           guests: dict[str, Any]) -> None:
    web, idle, frozen = (conn.lookupByName(n) for n in ("web", "idle", "frozen"))
    host.destroy(guests["idle"].id)
    got = conn.domainListGetStats([frozen, idle, web], face.VIR_DOMAIN_STATS_INTERFACE)
    assert [d for d, _ in got] == [frozen, web]  # the gone one skipped, the order kept
    for _d, record in got:
        _check_record(record, {"net"})
    assert got[1][1]["net.1.name"] == f"vif{guests['web'].id}.1"


# -- the key names against a real QEMU guest's ------------------------------------------------


def test_the_qemu_keys_are_documented() -> None:
    """The two lists agree: what libvirt gave a QEMU guest is what it documents, and the
    Xen-only key too."""
    for group, keys in QEMU_KEYS.items():
        assert keys <= set(DOC_KEYS[group]), group
    assert set(DOC_KEYS["block"]) >= XEN_ONLY


def test_a_real_record_has_only_those_keys(conn: face.virConnect,
                                           guests: dict[str, Any]) -> None:
    (_d, record), = [(d, r) for d, r in conn.getAllDomainStats() if d.name() == "web"]
    for key in record:
        assert pattern_of(key) in QEMU_KEYS[group_of(key)] | XEN_ONLY, key


@pytest.fixture(scope="module")
def qemu_record() -> Iterator[dict[str, Any]]:
    """A running QEMU guest's record of the six groups (one virtio disk, one tap NIC),
    where this machine runs the QEMU harness (root, qemu-system-x86)."""
    if os.geteuid() != 0 or not os.path.exists(QEMU_SYSTEM):
        pytest.skip("needs root and qemu-system-x86 (the QEMU harness)")
    try:
        qemu = EmbeddedQemu()
    except QemuError as exc:
        pytest.skip(f"no QEMU host: {exc}")
    try:
        root = ET.fromstring(qemu.xml("fs19", disk=True))
        devices = root.find("devices")
        assert devices is not None
        nic = ET.SubElement(devices, "interface", type="ethernet")
        ET.SubElement(nic, "mac", address="52:54:00:9e:3d:f9")
        ET.SubElement(nic, "target", dev="xvfs19")
        ET.SubElement(nic, "model", type="virtio")
        qemu.conn.createXML(ET.tostring(root, encoding="unicode"), 0)
        (_dom, record), = [(d, r) for d, r in qemu.conn.getAllDomainStats(ALL_BITS, 0)
                           if d.name() == "fs19"]
        yield record
    finally:
        qemu.close()


def test_qemu_keys_are_libvirts_own(qemu_record: dict[str, Any]) -> None:
    """QEMU_KEYS is what libvirt gives a QEMU guest (KVM's own per-vCPU counters aside),
    and the types of the keys xvirt gives too are libvirt's."""
    found: dict[str, set[str]] = {g: set() for g in QEMU_KEYS}
    for key, value in qemu_record.items():
        if re.fullmatch(r"vcpu\.\d+\.\w+\.(sum|cur|max)", key):
            continue
        found[group_of(key)].add(pattern_of(key))
        assert type(value) is (str if _STRINGS.fullmatch(key) else int), (key, value)
    assert found == {g: set(keys) for g, keys in QEMU_KEYS.items()}


# -- on a host daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stats_daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A daemon with ``run`` running and ``still`` paused (its figures stand still)."""
    d = make_module_daemon()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost") as admin:
        for name in ("run", "still"):
            r = admin.post("/xvirt/host", data={"op": "create", "name": name,
                                                "memory_kib": "262144", "vcpus": "2"})
            assert r.status_code == 200, r.text
        with xvirt.open(d.unix_uri) as native:
            domid = native.lookup_by_name("still").id
        r = admin.post("/xvirt/host", data={"op": "pause", "domid": str(domid)})
        assert r.status_code == 200, r.text
    return d


@pytest.fixture
def dconn(stats_daemon: DaemonProcess) -> Iterator[face.virConnect]:
    c = face.open(stats_daemon.unix_uri)
    yield c
    c.close()


def test_on_a_daemon_a_paused_guests_figures(dconn: face.virConnect) -> None:
    d = dconn.lookupByName("still")
    truth = _truth(dconn, "still")
    assert truth.blocks and truth.nets and truth.cpu and truth.vcpus and truth.balloon
    disk, nic = truth.blocks[0], truth.nets[0]
    assert d.blockStats(disk.name) == (disk.rd_reqs, disk.rd_bytes, disk.wr_reqs,
                                       disk.wr_bytes, disk.errors)
    assert d.blockStatsFlags(disk.name)["rd_total_times"] == disk.rd_time_ns
    assert d.interfaceStats(nic.name) == d.interfaceStats(str(nic.mac)) == (
        nic.rx_bytes, nic.rx_packets, nic.rx_errs, nic.rx_drop,
        nic.tx_bytes, nic.tx_packets, nic.tx_errs, nic.tx_drop)
    assert d.memoryStats() == {"actual": truth.balloon.current_kib}
    assert d.getCPUStats(True)[0]["cpu_time"] == truth.cpu.time_ns
    assert sum(e["cpu_time"] for e in d.getCPUStats(False)) == truth.cpu.time_ns
    assert [t for _n, _s, t, _c in d.vcpus()[0]] == [v.time_ns for v in truth.vcpus]
    (_dom, record), = dconn.domainListGetStats([d], ALL_BITS)
    _check_record(record, set(GROUP_BITS))
    assert (record["block.0.rd.reqs"], record["net.0.tx.bytes"], record["cpu.time"]) == (
        disk.rd_reqs, nic.tx_bytes, truth.cpu.time_ns)


def test_on_a_daemon_a_running_guests_counters_only_grow(dconn: face.virConnect) -> None:
    d = dconn.lookupByName("run")
    first = _truth(dconn, "run")
    got = d.getCPUStats(True)[0]["cpu_time"], d.blockStats("xvda")[0]
    last = _truth(dconn, "run")
    assert first.cpu and last.cpu and first.blocks and last.blocks
    assert first.cpu.time_ns <= got[0] <= last.cpu.time_ns
    assert first.blocks[0].rd_reqs <= got[1] <= last.blocks[0].rd_reqs


def test_on_a_daemon_one_data_call_and_xends_errors(dconn: face.virConnect) -> None:
    dconn.getAllDomainStats()
    before = dconn._xvirt.stats()
    got = dconn.getAllDomainStats()
    after = dconn._xvirt.stats()
    assert (after.data_calls - before.data_calls,
            after.control_requests - before.control_requests) == (1, 0)
    assert {d.name() for d, _ in got} >= {"run", "still"}
    for _d, record in got:
        _check_record(record, set(GROUP_BITS))
    d = dconn.lookupByName("run")
    assert err(lambda: d.blockStats("vdz")) == (
        8, face.VIR_FROM_XEND, "invalid argument: invalid path: vdz")


def test_stat_groups_name_libvirts_bits() -> None:
    """The face's groups are xvirt's StatGroup, one bit each."""
    from xvirt.compat._stats import GROUP_BITS as FACE_BITS
    assert {g.value for g in FACE_BITS} == {s.value for s in StatGroup}
    assert {FACE_BITS[StatGroup(name)] for name in GROUP_BITS} == set(GROUP_BITS.values())
