"""Domain statistics on real QEMU (issue 19, item 2), both ways of the harness
(``xvirt.testing.qemu``): KVM guests on the embedded driver in this process (the lanes
use the driver's connection), TCG guests behind a private session libvirtd as ``nobody``
(each lane has a connection of its own). Each test prints and records which ran.

Guests have no OS (SeaBIOS waits for one): ``d0`` and ``d2`` with an 8 MiB virtio disk
and a user-mode NIC (``boot(disk=True, nic=True)``), ``d1`` with neither; on the
embedded driver, which runs QEMU as root, ``t0`` also has a tap NIC (an ``ethernet``
interface: libvirt makes the tap and removes it with the guest), the only kind whose
figures libvirt can read here (a user-mode NIC has no host-side device: libvirt counts
it in ``net.count`` and reports nothing else; making a bridge would change the host).

What is checked against libvirt-python's own answer for the same call, read just after
ours (counters may only have grown in between: ``<=``), and against ``blockStats`` and
``interfaceStats``: every figure, the MAC from the XML, the groups missing. With one
guest's QEMU SIGSTOPped: the first call blocks in libvirt (it takes the guest's job,
then waits on its monitor for ever), is abandoned at the driver's timeout, and each
domain is asked on its own: the stopped guest's job is still held by the abandoned
call, so NOWAIT skips its monitor and it answers at once without its block and balloon
figures (``missing``); every other guest answers in full. A thread's join timeout is
the hang detector; nothing asserts a speed. The guest is always sent SIGCONT.
"""

from __future__ import annotations

import os
import signal
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from tests.threads import in_thread
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_stats import stats_bits
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
)
from xvirt.model import DomainState, VcpuState
from xvirt.stats import ALL_GROUPS, DomainStats, StatGroup
from xvirt.testing.qemu import QEMU_SYSTEM, DaemonQemu, EmbeddedQemu, QemuHost

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(QEMU_SYSTEM),
    reason="needs root and qemu-system-x86 (scripts/test installs it)")

FLAGS = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
ALL_BITS = stats_bits(ALL_GROUPS)
STOPPED = "d0"
TAP = "xvst19"  # the tap of t0 (embedded only): a name of our own, gone with the guest
TAP_MAC = "52:54:00:9e:3d:f0"
LIVENESS_S = 60.0  # how long a frozen caller is waited for before the test says so
STATS_TIMEOUT_S = 3.0  # the driver's per-call deadline in the stopped-guest test


@pytest.fixture(scope="module", params=["embedded", "libvirtd"])
def qemu(request: pytest.FixtureRequest) -> Iterator[QemuHost]:
    host: QemuHost = EmbeddedQemu() if request.param == "embedded" else DaemonQemu()
    try:
        host.boot("d0", disk=True, nic=True)
        host.boot("d1")
        host.boot("d2", disk=True, nic=True)
        if host.kind == "embedded":
            root = ET.fromstring(host.xml("t0", disk=True))
            devices = root.find("devices")
            assert devices is not None
            nic = ET.SubElement(devices, "interface", type="ethernet")
            ET.SubElement(nic, "mac", address=TAP_MAC)
            ET.SubElement(nic, "target", dev=TAP)
            ET.SubElement(nic, "model", type="virtio")
            host.conn.createXML(ET.tostring(root, encoding="unicode"), 0)
        yield host
    finally:
        host.close()
    assert host.qemu_pids() == []
    assert not Path("/sys/class/net", TAP).exists()  # libvirt removed its tap


@pytest.fixture
def driver(qemu: QemuHost) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(f"libvirt:{qemu.uri}", qemu.uri)
    yield d
    d.close()


def announce(qemu: QemuHost, record_property: Callable[[str, object], None]) -> None:
    print(f"{qemu.kind}: {qemu.accel}")
    record_property("accel", f"{qemu.kind}:{qemu.accel}")


def none_fields(stats: DomainStats) -> list[str]:
    """The figures a domain's answer leaves None (for the record of what QEMU fills)."""
    out = []
    for group, value in (("balloon", stats.balloon), ("cpu", stats.cpu)):
        out += [f"{group}.{f}" for f in value.__slots__ if getattr(value, f) is None] \
            if value is not None else []
    for block in stats.blocks or ():
        out += [f"block.{f}" for f in block.__slots__ if getattr(block, f) is None]
    for nic in stats.nets or ():
        out += [f"net.{f}" for f in nic.__slots__ if getattr(nic, f) is None]
    return sorted(set(out))


def check_against(ours: DomainStats, dom: Any, record: dict[str, Any], qemu: QemuHost) -> None:
    """Every figure of ours against libvirt-python's record of the same call, read
    after ours, and against its per-device calls."""
    assert (ours.name, ours.id) == (dom.name(), dom.ID())
    assert record["state.state"] == 1 and ours.state is DomainState.RUNNING
    assert not ours.missing, ours.missing
    cpu = ours.cpu
    assert cpu is not None and cpu.user_ns is not None and cpu.system_ns is not None
    assert 0 < cpu.time_ns <= record["cpu.time"]
    assert cpu.user_ns <= record["cpu.user"] and cpu.system_ns <= record["cpu.system"]
    balloon = ours.balloon
    assert balloon is not None
    assert (balloon.current_kib, balloon.maximum_kib) == (
        record["balloon.current"], record["balloon.maximum"]) == (32768, 32768)
    assert balloon.rss_kib is not None and balloon.rss_kib > 0 and "balloon.rss" in record
    for key in ("swap_in", "swap_out", "major_fault", "minor_fault", "unused", "available",
                "usable", "disk_caches"):
        # No guest OS, so no balloon driver: QEMU has none of the guest's own figures.
        assert f"balloon.{key}" not in record
    assert (balloon.swap_in_kib, balloon.available_kib, balloon.usable_kib) == (None,) * 3
    vcpus = ours.vcpus
    assert vcpus is not None and [(v.number, v.state) for v in vcpus] == [
        (0, VcpuState(record["vcpu.0.state"]))]
    assert record["vcpu.current"] == record["vcpu.maximum"] == 1
    assert vcpus[0].time_ns <= record["vcpu.0.time"]
    blocks = ours.blocks
    assert blocks is not None and len(blocks) == record["block.count"]
    for n, block in enumerate(blocks):
        p = f"block.{n}."
        assert (block.name, block.path, block.capacity_bytes) == (
            record[p + "name"], record[p + "path"], record[p + "capacity"])
        assert block.capacity_bytes == 8 * 1024 * 1024
        assert block.path == str(qemu.image_dir / f"{dom.name()}.img")
        assert (block.allocation_bytes, block.physical_bytes) == (
            record[p + "allocation"], record[p + "physical"])
        for ours_key, key in (("rd_reqs", "rd.reqs"), ("rd_bytes", "rd.bytes"),
                              ("rd_time_ns", "rd.times"), ("wr_reqs", "wr.reqs"),
                              ("wr_bytes", "wr.bytes"), ("wr_time_ns", "wr.times"),
                              ("fl_reqs", "fl.reqs"), ("fl_time_ns", "fl.times")):
            value = getattr(block, ours_key)
            assert value is not None and 0 <= value <= record[p + key], ours_key
        assert block.errors is None and p + "errors" not in record  # Xen's only
        rd_req, rd_bytes, wr_req, wr_bytes, _errs = dom.blockStats(block.name)
        assert block.rd_reqs <= rd_req and block.rd_bytes <= rd_bytes
        assert block.wr_reqs <= wr_req and block.wr_bytes <= wr_bytes
        # (whether SeaBIOS has read the boot sector yet depends on how far the guest got)
    nets = ours.nets
    assert nets is not None
    named = [n for n in range(record["net.count"]) if f"net.{n}.name" in record]
    assert [nic.name for nic in nets] == [record[f"net.{n}.name"] for n in named]
    for n, nic in zip(named, nets, strict=True):
        p = f"net.{n}."
        for ours_key, key in (("rx_bytes", "rx.bytes"), ("rx_packets", "rx.pkts"),
                              ("rx_errs", "rx.errs"), ("rx_drop", "rx.drop"),
                              ("tx_bytes", "tx.bytes"), ("tx_packets", "tx.pkts"),
                              ("tx_errs", "tx.errs"), ("tx_drop", "tx.drop")):
            assert 0 <= getattr(nic, ours_key) <= record[p + key], ours_key
        rx_bytes, rx_pkts, _re, _rd, tx_bytes, tx_pkts, _te, _td = dom.interfaceStats(nic.name)
        assert nic.rx_bytes <= rx_bytes and nic.rx_packets <= rx_pkts
        assert nic.tx_bytes <= tx_bytes and nic.tx_packets <= tx_pkts
        # MAC and bridge from the domain's XML: the tap's is ours, and it has no bridge.
        (iface,) = [i for i in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/interface")
                    if i.find(f"target[@dev='{nic.name}']") is not None]
        mac = iface.find("mac")
        assert mac is not None and nic.mac == mac.get("address")
        assert nic.bridge is None and iface.get("type") == "ethernet"


def test_every_figure_is_what_libvirt_python_reports(
        qemu: QemuHost, driver: LibvirtDriver, record_property: Any, capsys: Any) -> None:
    announce(qemu, record_property)
    before = driver.counters.data_calls
    ours = {s.uuid: s for s in driver.domain_stats(ALL_GROUPS)}
    first = driver.counters.data_calls - before
    lookups = driver._lane_lookups  # through a daemon: handles on the lanes' connections
    theirs = qemu.conn.getAllDomainStats(ALL_BITS, FLAGS)
    assert set(ours) == {d.UUIDString() for d, _ in theirs}
    for dom, record in theirs:
        check_against(ours[dom.UUIDString()], dom, record, qemu)
    by_name = {s.name: s for s in ours.values()}
    # user-mode NICs: counted by libvirt, no figures it could read, so none of ours
    for name in ("d0", "d2"):
        assert by_name[name].nets == () and by_name[name].blocks is not None
        assert len(by_name[name].blocks or ()) == 1
    assert by_name["d1"].blocks == () and by_name["d1"].nets == ()
    taps = 0
    if qemu.kind == "embedded":
        (tap,) = by_name["t0"].nets or ()
        assert (tap.name, tap.mac, tap.bridge) == (TAP, TAP_MAC, None)
        taps = 1
    # QEMU waits on each guest for the cpu, balloon, vcpu and block groups: one call
    # for the others (state, net), then those in parts (driver._stats_split) of at
    # least 2 domains, by kind: with a disk (d0, d2, and t0 where it runs: 3 of them in
    # 2 parts, 2 in 1) and without (d1: 1 part); the first time, one XMLDesc per domain
    # (its disks, and its NICs' MAC and bridge). Through a daemon, each part's lane
    # looks up the handles it has not made yet.
    parts = 3 if taps else 2
    assert taps in (0, 1) and first == 1 + len(ours) + parts + lookups
    assert lookups == (0 if qemu.kind == "embedded" else len(ours))
    before, lookups = driver.counters.data_calls, driver._lane_lookups
    again = driver.domain_stats(ALL_GROUPS)
    lookups = driver._lane_lookups - lookups  # a part on a lane that had not seen it
    assert driver.counters.data_calls - before == 1 + parts + lookups
    assert len(again) == len(ours)
    # By UUID, through the public API: the net group's call and the block group's; the
    # first time, the domain's XML, and through a daemon one lookup more, on the lane's
    # own connection.
    with xvirt.open(f"libvirt:{qemu.uri}") as conn:
        dom = conn.lookup_by_name("d2")
        for extra in (1 + int(qemu.kind == "libvirtd"), 0):
            calls = conn.stats().data_calls
            mine = dom.stats(["block", "net"])
            assert conn.stats().data_calls - calls == 2 + extra
            assert not mine.missing and mine.cpu is None and mine.blocks is not None
            assert mine.blocks[0].name == "vda" and mine.nets == ()
    with capsys.disabled():
        for s in sorted(ours.values(), key=lambda s: s.name):
            print(f"\n{qemu.kind} {qemu.accel} {s.name}: None: {', '.join(none_fields(s))}")


def counters(stats: DomainStats) -> dict[str, int]:
    """Every counter of one answer, by a name that says where it is."""
    out: dict[str, int] = {}
    assert stats.cpu is not None
    out["cpu.time"] = stats.cpu.time_ns
    for name, value in (("cpu.user", stats.cpu.user_ns), ("cpu.system", stats.cpu.system_ns)):
        if value is not None:
            out[name] = value
    for v in stats.vcpus or ():
        out[f"vcpu.{v.number}.time"] = v.time_ns
    for b in stats.blocks or ():
        for f in ("rd_reqs", "rd_bytes", "rd_time_ns", "wr_reqs", "wr_bytes", "wr_time_ns",
                  "fl_reqs", "fl_time_ns"):
            if getattr(b, f) is not None:
                out[f"block.{b.name}.{f}"] = getattr(b, f)
    for nic in stats.nets or ():
        for f in ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets",
                  "tx_errs", "tx_drop"):
            out[f"net.{nic.name}.{f}"] = getattr(nic, f)
    return out


def test_counters_never_go_backwards(qemu: QemuHost, driver: LibvirtDriver,
                                     record_property: Any) -> None:
    """A property over several reads, every way of asking: no counter of any domain is
    ever below what an earlier read gave, and none starts negative."""
    announce(qemu, record_property)
    uuids = [d.UUIDString() for d in qemu.conn.listAllDomains(1)]
    ways: list[Callable[[], list[DomainStats]]] = [
        lambda: driver.domain_stats(ALL_GROUPS),
        lambda: driver.domain_stats(ALL_GROUPS, uuids),
        lambda: driver.domain_stats(ALL_GROUPS, uuids[:1]),
        lambda: driver.domain_stats(frozenset({StatGroup.CPU, StatGroup.BLOCK}), uuids[1:]),
    ]
    highest: dict[tuple[str, str], int] = {}
    grew: set[str] = set()
    for _ in range(3):
        for way in ways:
            for stats in way():
                assert not stats.missing
                for key, value in counters(stats).items():
                    assert value >= 0, (stats.name, key)
                    before = highest.get((stats.uuid, key), 0)
                    assert value >= before, (stats.name, key, before, value)
                    if value > before and (stats.uuid, key) in highest:
                        grew.add(key)
                    highest[(stats.uuid, key)] = value
    assert "cpu.time" in grew  # the guests run (SeaBIOS waits for a boot device)


def stats_lanes(d: LibvirtDriver) -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name.startswith(f"xvirt-libvirt-stats {d.target}")}


def test_a_stopped_guest_holds_up_no_other_and_is_reported(
        qemu: QemuHost, record_property: Any, capsys: Any) -> None:
    announce(qemu, record_property)
    d = LibvirtDriver(f"libvirt:{qemu.uri}", qemu.uri, timeout=STATS_TIMEOUT_S)
    pid = qemu.qemu_pid(STOPPED)
    try:
        names = {s.name for s in d.domain_stats(ALL_GROUPS)}
        assert STOPPED in names
        lanes = d._stats_lanes
        assert lanes is not None and lanes.abandoned == 0
        os.kill(pid, signal.SIGSTOP)
        try:
            answers: list[list[DomainStats]] = []
            for _ in range(2):
                thread, result = in_thread(lambda: d.domain_stats(ALL_GROUPS))
                thread.join(LIVENESS_S)
                assert not thread.is_alive(), "domain_stats froze behind the stopped guest"
                found = result[0]
                assert isinstance(found, list), found
                answers.append(found)
            # The first call blocked (libvirt took the stopped guest's job, then waited
            # on its monitor): abandoned at the deadline. Each domain was then asked on
            # its own; the second call did not block: NOWAIT skipped the job the
            # abandoned call still holds.
            first_blocked = lanes.abandoned
            assert first_blocked == 1
            held = stats_lanes(d) - {lane._thread for lane in lanes._idle}
            with xvirt.open(f"libvirt:{qemu.uri}") as conn:
                survey, result = in_thread(lambda: conn.survey(ALL_GROUPS))
                survey.join(LIVENESS_S)
                assert not survey.is_alive(), "the survey froze behind the stopped guest"
                samples = result[0]
                assert isinstance(samples, xvirt.Survey) and not samples.failures
                answers.append([s.stats for s in samples.samples if s.stats is not None])
            for found in answers:
                assert {s.name for s in found} == names
                for s in found:
                    if s.name != STOPPED:
                        assert not s.missing, (s.name, s.missing)
                        continue
                    # Its monitor's figures: the disk's I/O, the balloon's guest side.
                    assert s.missing == {StatGroup.BLOCK, StatGroup.BALLOON}, s.missing
                    assert s.blocks is None and s.balloon is None
                    # What libvirt reads without the monitor (/proc, its own records).
                    assert s.state is DomainState.RUNNING and s.cpu is not None
                    assert s.vcpus is not None and s.nets == ()
            assert lanes.abandoned == first_blocked  # nothing blocked after the first
            (stuck,) = [s for s in answers[0] if s.name == STOPPED]
            with capsys.disabled():
                print(f"\n{qemu.kind} {qemu.accel}: {STOPPED} SIGSTOPped: the first call "
                      "blocked and was abandoned, the later ones did not; its missing: "
                      f"{sorted(g.value for g in stuck.missing)}")
        finally:
            os.kill(pid, signal.SIGCONT)
        for thread in held:  # the abandoned call returns once its guest runs
            thread.join(LIVENESS_S)
            assert not thread.is_alive(), "the abandoned call never returned"
        found = d.domain_stats(ALL_GROUPS)
        assert all(not s.missing for s in found) and {s.name for s in found} == names
    finally:
        os.kill(pid, signal.SIGCONT)
        d.close()
