"""The host model's domain statistics: exact figures on the injected clock, counters
that only grow between reboots, restart at 0 at one, stand still while paused, and a
wedged domain's groups missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.host.devices import BLOCK_SIZE
from xvirt.host.hypervisor import DOM0_UUID, HostModel
from xvirt.planes import DiskConfig, NicConfig
from xvirt.stats import (
    ALL_GROUPS,
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainState,
    DomainStats,
    NetStats,
    StatGroup,
    VcpuState,
    VcpuStats,
)

WEB = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
DISKS = (DiskConfig("/srv/web.img", "xvda"), DiskConfig("/srv/iso.img", "hdc", readonly=True))
NICS = (NicConfig("00:16:3e:12:34:56", "xenbr0"), NicConfig("00:16:3e:ab:cd:ef"))


def _web(host: HostModel) -> int:
    return host.create("web", uuid=WEB, vcpus=2, load=0.5, disks=DISKS, nics=NICS).id


def _one(host: HostModel, groups: frozenset[StatGroup] = ALL_GROUPS) -> DomainStats:
    (found,) = host.domain_stats(groups, [WEB])
    return found


def test_exact_figures_after_ten_seconds(make_host_model: Callable[..., HostModel],
                                         clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    domid = _web(host)
    clock.sleep(10.0)  # 2 vCPUs at half load: 10 s of CPU time
    found = _one(host)
    for disk in found.blocks or ():  # image files: 8-71 GiB, 25-74% of it held
        assert disk.capacity_bytes is not None and disk.capacity_bytes % 2**30 == 0
        assert 8 * 2**30 <= disk.capacity_bytes < 72 * 2**30
        assert disk.allocation_bytes == disk.physical_bytes
        assert disk.capacity_bytes // 4 <= (disk.allocation_bytes or 0) < disk.capacity_bytes
    assert _without_sizes(found) == DomainStats(
        WEB, "web", domid, DomainState.RUNNING,
        CpuStats(10_000_000_000, 7_900_000_000, 2_100_000_000),
        BalloonStats(524288, 524288),  # a Xen guest's balloon driver tells no more
        (VcpuStats(0, VcpuState.RUNNING, 5_000_000_000),
         VcpuStats(1, VcpuState.RUNNING, 5_000_000_000)),
        (BlockStats("xvda", "/srv/web.img", 2840, 2840 * BLOCK_SIZE, 2_902_480_000,
                    1400, 1400 * BLOCK_SIZE, 697_200_000, 109, 102_242_000, 0),
         BlockStats("hdc", "/srv/iso.img", 3220, 3220 * BLOCK_SIZE, 2_289_420_000,
                    0, 0, 0, 0, 0, 0)),  # read-only: never written
        (NetStats(f"vif{domid}.0", "00:16:3e:12:34:56", "xenbr0",
                  21_640_860, 22060, 0, 0, 14_031_120, 10860, 0, 0),
         NetStats(f"vif{domid}.1", "00:16:3e:ab:cd:ef", None,
                  20_201_090, 36530, 0, 0, 2_776_400, 4400, 0, 0)))


def test_counters_grow_in_proportion_to_cpu_time(make_host_model: Callable[..., HostModel],
                                                 clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    _web(host)
    clock.sleep(10.0)
    first = _one(host)
    clock.sleep(10.0)
    second = _one(host)
    assert first.blocks is not None and second.blocks is not None
    assert first.nets is not None and second.nets is not None
    sizes = {"capacity_bytes", "allocation_bytes", "physical_bytes"}
    for a, b in zip(first.blocks + first.nets, second.blocks + second.nets, strict=True):
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name in sizes:
                assert x == y and isinstance(y, int) and y > 0, f.name  # the disk's, fixed
            elif isinstance(x, int):
                assert y == 2 * x, f.name
    for b in second.blocks:
        assert b.capacity_bytes is not None and b.physical_bytes is not None
        assert b.allocation_bytes == b.physical_bytes <= b.capacity_bytes  # a sparse image


def test_groups_not_asked_are_none(make_host_model: Callable[..., HostModel],
                                   clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    _web(host)
    clock.sleep(1.0)
    found = _one(host, frozenset({StatGroup.BLOCK}))
    assert found.blocks is not None and len(found.blocks) == 2
    assert (found.state, found.cpu, found.balloon, found.vcpus, found.nets) == (
        None, None, None, None, None)
    assert found.missing == frozenset()
    bare = _one(host, frozenset())
    assert bare == DomainStats(WEB, "web", found.id)


def test_every_live_domain_in_id_order_and_unknown_uuids_left_out(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    ids = [host.create(f"g{i}").id for i in range(3)]
    everyone = host.domain_stats(frozenset({StatGroup.STATE}))
    assert [s.id for s in everyone] == [0, *ids]
    assert everyone[0].uuid == DOM0_UUID and everyone[0].blocks is None
    gone = everyone[2].uuid
    host.destroy(ids[1])
    asked = host.domain_stats(frozenset({StatGroup.NET}),
                              [everyone[3].uuid, gone, everyone[1].uuid])
    assert [s.id for s in asked] == [ids[0], ids[2]]


def test_vcpus_follow_the_domain_state_and_sum_to_the_total(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    domid = host.create("three", vcpus=3, load=1.0).id
    uuid = host.domain(domid).uuid
    clock.sleep(1.0)
    host.set_blocked(domid)
    clock.sleep(1.0)

    def look() -> DomainStats:
        (found,) = host.domain_stats(frozenset({StatGroup.CPU, StatGroup.VCPU}), [uuid])
        return found

    blocked = look()
    assert blocked.cpu is not None and blocked.vcpus is not None
    assert blocked.cpu.time_ns == 3_000_000_000 + 30_000_000  # busy, then idle at 1%
    assert sum(v.time_ns for v in blocked.vcpus) == blocked.cpu.time_ns
    assert {v.state for v in blocked.vcpus} == {VcpuState.BLOCKED}
    host.pause(domid)
    assert {v.state for v in look().vcpus or ()} == {VcpuState.OFFLINE}
    assert len(look().vcpus or ()) == 3


def test_a_wedged_domain_has_every_asked_group_missing(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    domid = _web(host)
    other = host.create("other").id
    host.stall(domid)
    asked = frozenset({StatGroup.STATE, StatGroup.CPU, StatGroup.BLOCK})
    found = {s.id: s for s in host.domain_stats(asked)}
    assert found[domid] == DomainStats(WEB, "web", domid, missing=asked)
    assert not found[domid].answered
    assert found[other].answered and found[other].blocks is not None
    host.unstall(domid)
    assert _one(host, asked).answered


# -- a property: over any history, counters never go back between reboots -----------

_SIZES = frozenset({"capacity_bytes", "allocation_bytes", "physical_bytes"})


def _without_sizes(s: DomainStats) -> DomainStats:
    """``s`` with its disks' sizes None (checked on their own: they are drawn per disk)."""
    blocks = None if s.blocks is None else tuple(
        replace(b, capacity_bytes=None, allocation_bytes=None, physical_bytes=None)
        for b in s.blocks)
    return replace(s, blocks=blocks)


def _counters(s: DomainStats) -> Iterator[tuple[str, int]]:
    """Every counter of ``s`` (not gauges like memory), named."""
    assert s.cpu is not None and s.vcpus is not None
    assert s.blocks is not None and s.nets is not None
    yield "cpu", s.cpu.time_ns
    yield "cpu.user", s.cpu.user_ns or 0
    yield "cpu.system", s.cpu.system_ns or 0
    for v in s.vcpus:
        yield f"vcpu{v.number}", v.time_ns
    devices: tuple[BlockStats | NetStats, ...] = (*s.blocks, *s.nets)
    for dev in devices:
        for f in fields(dev):
            value = getattr(dev, f.name)
            if isinstance(value, int) and f.name not in _SIZES:  # sizes are gauges
                yield f"{dev.name}.{f.name}", value


Action = tuple[str, float]
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 100.0)),
    st.tuples(st.sampled_from(["pause", "resume", "reboot", "block", "unblock"]),
              st.just(0.0))), max_size=25)


@settings(max_examples=60, deadline=None)
@given(ACTIONS)
def test_counters_only_grow_stand_still_when_paused_and_restart_at_reboot(
        actions: list[Action]) -> None:
    clock = ManualClock()
    host = HostModel("stats-property", clock=clock)
    try:
        domid = _web(host)
        before = _one(host)
        assert all(v == 0 for _, v in _counters(before))  # a new domain starts at 0
        for action, seconds in actions:
            paused = host.domain(domid).state is DomainState.PAUSED
            if action == "advance":
                clock.sleep(seconds)
            elif action == "pause" and not paused:
                host.pause(domid)
            elif action == "resume" and paused:
                host.resume(domid)
            elif action == "reboot":
                domid = host.reboot(domid).id
            elif action in ("block", "unblock"):
                host.set_blocked(domid, action == "block")
            now = _one(host)
            assert now.id == domid
            values = dict(_counters(now))
            assert min(values.values()) >= 0
            if action == "reboot":
                assert set(values.values()) == {0}
            elif action == "advance" and paused:
                assert now == before
            else:
                was = dict(_counters(before))
                assert all(values[k] >= was[k] for k in values), (was, values)
            before = now
    finally:
        host.close()
