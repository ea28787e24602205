"""What a Xen host keeps beyond identity and lifecycle (issue 18, item 2): online and
maximum vCPUs, the credit scheduler's share, metadata, the node's statistics and
capabilities, in the host model, live and in definitions, through every lifecycle step
and the observers that keep the host."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, NoDomainError, OperationFailedError
from xvirt.host.hypervisor import HostChange, HostModel
from xvirt.model import (
    MAX_VCPUS,
    Affect,
    DomainMetadata,
    DomainSettings,
    EventKind,
    GuestType,
    MetadataElement,
    MetadataKind,
    NodeCpuStats,
    SchedulerParams,
    VcpuState,
)

NS = "http://example.org/app"
META = DomainMetadata("T", "D", (MetadataElement(NS, "app", "<a x=\"1\"/>"),))


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock) -> HostModel:
    return make_host_model(clock=clock, cpus=4)


def test_a_domain_has_online_and_maximum_vcpus(host: HostModel) -> None:
    rec = host.create("g", vcpus=2, max_vcpus=4, metadata=META)
    assert host.settings(rec.uuid) == DomainSettings(2, 4, META)
    assert rec.vcpus == 2 and host.domain(rec.id).vcpus == 2
    plain = host.create("p", vcpus=3)
    assert host.settings(plain.uuid) == DomainSettings(3, 3, DomainMetadata())


@pytest.mark.parametrize(("vcpus", "most"), [(2, 1), (1, MAX_VCPUS + 1), (1, 0)])
def test_a_maximum_below_the_online_vcpus_or_above_xens_is_refused(
        host: HostModel, vcpus: int, most: int) -> None:
    with pytest.raises(InvalidArgumentError):
        host.create("g", vcpus=vcpus, max_vcpus=most)
    with pytest.raises(InvalidArgumentError):
        host.define("d", vcpus=vcpus, max_vcpus=most)
    assert [d.name for d in host.domains()] == ["Domain-0"] and host.defined()[2] == ()


def test_vcpus_come_online_up_to_the_maximum_and_cpu_time_is_kept(
        host: HostModel, clock: ManualClock) -> None:
    rec = host.create("g", vcpus=1, max_vcpus=3, load=1.0)
    clock.advance(10)
    before = host.domain(rec.id).cpu_time_ns
    assert before == 10 * 10**9
    gen = host.generation
    host.set_vcpus(rec.uuid, 3)
    assert host.domain(rec.id).cpu_time_ns == before  # nothing lost or made up
    clock.advance(1)
    assert host.domain(rec.id).cpu_time_ns == before + 3 * 10**9  # three burn now
    assert (host.domain(rec.id).vcpus, host.settings(rec.uuid).vcpus) == (3, 3)
    assert host.generation == gen  # not a lifecycle change: no event
    with pytest.raises(InvalidArgumentError, match="4 > 3"):
        host.set_vcpus(rec.uuid, 4)
    with pytest.raises(InvalidArgumentError):
        host.set_vcpus(rec.uuid, 0)
    with pytest.raises(InvalidArgumentError, match="running domain's maximum"):
        host.set_vcpus(rec.uuid, 2, maximum=True)
    journal = [(j.op, j.outcome.split(":")[0]) for j in host.journal() if j.op == "set_vcpus"]
    assert journal == [("set_vcpus", "ok"), *[("set_vcpus", "failed")] * 3]


def test_a_definition_and_its_running_domain_are_changed_apart(host: HostModel) -> None:
    d = host.define("m", vcpus=2, max_vcpus=4, metadata=META)
    assert host.settings(d.uuid) == DomainSettings(2, 4, META)  # CURRENT: the definition
    with pytest.raises(OperationFailedError, match="not running"):
        host.settings(d.uuid, Affect.LIVE)
    host.set_vcpus(d.uuid, 8, affect=Affect.CONFIG, maximum=True)
    host.set_vcpus(d.uuid, 6)  # CURRENT of a shut-off domain: its definition
    started = host.start(d.uuid)
    assert started.vcpus == 6 and host.settings(d.uuid) == DomainSettings(6, 8, META)
    host.set_vcpus(d.uuid, 1)  # CURRENT of a running domain: the live one only
    host.set_metadata(d.uuid, MetadataKind.TITLE, "live title")
    assert host.settings(d.uuid, Affect.CONFIG) == DomainSettings(6, 8, META)
    assert host.settings(d.uuid) == DomainSettings(
        1, 8, META.replaced(MetadataKind.TITLE, "live title"))
    host.set_vcpus(d.uuid, 2, affect=Affect.LIVE | Affect.CONFIG)
    assert (host.settings(d.uuid).vcpus, host.settings(d.uuid, Affect.CONFIG).vcpus) == (2, 2)
    host.set_vcpus(d.uuid, 1, affect=Affect.CONFIG, maximum=True)  # takes the online down
    assert host.settings(d.uuid, Affect.CONFIG) == DomainSettings(1, 1, META)
    assert host.settings(d.uuid, Affect.LIVE).max_vcpus == 8  # the running one keeps its own
    with pytest.raises(InvalidArgumentError):
        host.settings(d.uuid, Affect.LIVE | Affect.CONFIG)
    host.destroy(started.id)
    assert host.settings(d.uuid) == DomainSettings(1, 1, META)  # shut off: the definition


def test_a_transient_domain_has_no_definition_to_change(host: HostModel) -> None:
    rec = host.create("t")
    for call in (lambda: host.settings(rec.uuid, Affect.CONFIG),
                 lambda: host.set_vcpus(rec.uuid, 1, affect=Affect.CONFIG),
                 lambda: host.set_metadata(rec.uuid, MetadataKind.TITLE, "x",
                                           affect=Affect.CONFIG)):
        with pytest.raises(OperationFailedError, match="transient"):
            call()
    with pytest.raises(NoDomainError):
        host.settings("6695eb01-f6a4-8304-79aa-97f2502e193f")


def test_vcpu_info_shares_the_cpu_time_and_follows_the_state(
        host: HostModel, clock: ManualClock) -> None:
    rec = host.create("g", vcpus=3, max_vcpus=4, load=0.5)
    clock.advance(7)
    info = host.vcpu_info(rec.uuid)
    assert [v.number for v in info] == [0, 1, 2]
    assert sum(v.cpu_time_ns for v in info) == host.domain(rec.id).cpu_time_ns
    assert {v.state for v in info} == {VcpuState.RUNNING}
    assert all(v.affinity == (True,) * 4 and 0 <= v.cpu < 4 for v in info)
    host.set_blocked(rec.id)
    assert {v.state for v in host.vcpu_info(rec.uuid)} == {VcpuState.BLOCKED}
    host.pause(rec.id)  # neither running nor blocked: libxl reads it as offline
    assert {v.state for v in host.vcpu_info(rec.uuid)} == {VcpuState.OFFLINE}
    d = host.define("off")
    with pytest.raises(OperationFailedError, match="not running"):
        host.vcpu_info(d.uuid)


def test_the_credit_scheduler_as_xend_checked_it(host: HostModel) -> None:
    rec = host.create("g", vcpus=1, max_vcpus=2)
    assert host.scheduler(rec.uuid) == SchedulerParams(256, 0)
    assert host.set_scheduler(rec.uuid, weight=512) == SchedulerParams(512, 0)
    assert host.set_scheduler(rec.uuid, cap=200) == SchedulerParams(512, 200)  # 100 x max
    for weight, cap in ((0, None), (65536, None), (None, 201), (None, -1), (True, None)):
        with pytest.raises(InvalidArgumentError):
            host.set_scheduler(rec.uuid, weight=weight, cap=cap)
    assert host.scheduler(rec.uuid) == SchedulerParams(512, 200)
    moved = host.migrate(rec.id)  # the domain keeps its share wherever it runs
    assert host.scheduler(moved.uuid) == SchedulerParams(512, 200)
    d = host.define("off")
    with pytest.raises(OperationFailedError, match="not running"):
        host.scheduler(d.uuid)
    assert host.scheduler(host.domains()[0].uuid) == SchedulerParams()  # Domain-0 too


def test_metadata_is_set_removed_and_announced(host: HostModel) -> None:
    rec = host.create("g")
    after = host.generation
    host.set_metadata(rec.uuid, MetadataKind.TITLE, "one line")
    host.set_metadata(rec.uuid, MetadataKind.DESCRIPTION, "two\nlines")
    host.set_metadata(rec.uuid, MetadataKind.ELEMENT, "<a/>", key="app", uri=NS)
    host.set_metadata(rec.uuid, MetadataKind.ELEMENT, "<b/>", key="app", uri=NS)  # replaced
    host.set_metadata(rec.uuid, MetadataKind.ELEMENT, "<c/>", key="o", uri=NS + "/other")
    host.set_metadata(rec.uuid, MetadataKind.ELEMENT, None, uri=NS + "/other")  # removed
    host.set_metadata(rec.uuid, MetadataKind.TITLE, "")  # removed, as libvirt's ""
    meta = host.settings(rec.uuid).metadata
    assert meta == DomainMetadata(None, "two\nlines", (MetadataElement(NS, "app", "<b/>"),))
    events = host.events_since(after).events
    assert [(e.kind, e.id, e.name) for e in events] == [
        (EventKind.TITLE_CHANGED, rec.id, None), (EventKind.DESCRIPTION_CHANGED, rec.id, None),
        (EventKind.METADATA_CHANGED, rec.id, NS), (EventKind.METADATA_CHANGED, rec.id, NS),
        (EventKind.METADATA_CHANGED, rec.id, NS + "/other"),
        (EventKind.METADATA_CHANGED, rec.id, NS + "/other"),
        (EventKind.TITLE_CHANGED, rec.id, None)]


@pytest.mark.parametrize(("kind", "value", "key", "uri"), [
    (MetadataKind.TITLE, "a\nb", None, None),  # one line
    (MetadataKind.TITLE, "x", "k", None),  # no key
    (MetadataKind.DESCRIPTION, "x", None, NS),  # no URI
    (MetadataKind.ELEMENT, "<a/>", "k", None),  # a URI
    (MetadataKind.ELEMENT, "<a/>", None, NS),  # a key
    (MetadataKind.ELEMENT, "<a/>", "a:b", NS),  # an XML name
    (MetadataKind.TITLE, "x\x00", None, None),
    (MetadataKind.DESCRIPTION, "x" * 70_000, None, None),
    (2, "<a/>", "k", NS),  # a MetadataKind
])
def test_metadata_a_host_refuses(host: HostModel, kind: object, value: str, key: str | None,
                                 uri: str | None) -> None:
    rec = host.create("g")
    gen = host.generation
    with pytest.raises(InvalidArgumentError):
        host.set_metadata(rec.uuid, kind, value, key=key, uri=uri)  # type: ignore[arg-type]
    assert host.generation == gen and host.settings(rec.uuid).metadata == DomainMetadata()


def test_everything_survives_save_restore_reboot_and_a_definition(host: HostModel) -> None:
    rec = host.create("g", vcpus=1, max_vcpus=2, metadata=META)
    host.set_scheduler(rec.uuid, weight=7, cap=150)
    host.set_vcpus(rec.uuid, 2)
    host.save(rec.id, "g.img")
    back = host.restore("g.img")
    assert (host.settings(back.uuid), host.scheduler(back.uuid)) == (
        DomainSettings(2, 2, META), SchedulerParams(7, 150))
    again = host.reboot(back.id)
    assert host.settings(again.uuid) == DomainSettings(2, 2, META)
    host.define("g", uuid=rec.uuid, vcpus=1, max_vcpus=4)  # persistent from now on
    assert host.settings(rec.uuid, Affect.CONFIG) == DomainSettings(1, 4, DomainMetadata())
    assert host.settings(rec.uuid) == DomainSettings(2, 2, META)  # running as it was


def test_observers_see_each_change_and_a_refusal_undoes_it(host: HostModel) -> None:
    seen: list[HostChange] = []

    class Keeper:
        refuse = False

        def commit(self, change: HostChange) -> None:
            if self.refuse:
                raise OSError("disk full")
            seen.append(change)

    keeper = Keeper()
    host.add_observer(keeper)
    d = host.define("m", vcpus=1, max_vcpus=2)
    rec = host.start(d.uuid)
    seen.clear()
    host.set_vcpus(d.uuid, 2, affect=Affect.LIVE | Affect.CONFIG)
    [change] = seen
    assert [(x.uuid, x.vcpus, x.max_vcpus) for x in change.domains] == [(d.uuid, 2, 2)]
    assert [(x.uuid, x.vcpus) for x in change.definitions] == [(d.uuid, 2)]
    keeper.refuse = True
    with pytest.raises(OperationFailedError, match="undone"):
        host.set_scheduler(d.uuid, weight=9)
    with pytest.raises(OperationFailedError, match="undone"):
        host.set_metadata(d.uuid, MetadataKind.TITLE, "x", affect=Affect.LIVE | Affect.CONFIG)
    keeper.refuse = False
    assert host.scheduler(d.uuid) == SchedulerParams()
    assert host.settings(d.uuid).metadata == host.settings(
        d.uuid, Affect.CONFIG).metadata == DomainMetadata()
    assert host.domain(rec.id).vcpus == 2


def test_the_nodes_figures(host: HostModel, clock: ManualClock) -> None:
    info = host.node_info()
    mem = host.node_memory_stats()
    assert (mem.total_kib, mem.free_kib) == (info.memory_kib, info.free_memory_kib)
    assert mem.buffers_kib > 0 and mem.cached_kib > 0
    assert mem.buffers_kib + mem.cached_kib <= mem.total_kib - mem.free_kib  # they are used
    assert host.node_memory_stats(0) == mem  # one NUMA cell
    host.create("big", memory_kib=8 * 1024 * 1024)
    assert host.node_memory_stats().free_kib == mem.free_kib - 8 * 1024 * 1024
    for bad in (1, -1, True, "0"):
        with pytest.raises(InvalidArgumentError):
            host.node_memory_stats(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            host.node_cpu_stats(bad if bad != 1 else 4)  # type: ignore[arg-type]
    clock.advance(100)
    first = host.node_cpu_stats()
    assert sum((first.kernel_ns, first.user_ns, first.idle_ns, first.iowait_ns)) == (
        info.cpus * 100 * 10**9)  # each CPU's four figures add up to the time since boot
    per_cpu = [host.node_cpu_stats(i) for i in range(info.cpus)]
    assert NodeCpuStats(*(sum(getattr(s, f) for s in per_cpu) for f in (
        "kernel_ns", "user_ns", "idle_ns", "iowait_ns"))) == first
    clock.advance(5)
    later = host.node_cpu_stats()
    assert all(getattr(later, f) > getattr(first, f) for f in (
        "kernel_ns", "user_ns", "idle_ns", "iowait_ns"))  # growing with the clock
    host.reboot_host()
    assert host.node_cpu_stats().kernel_ns == 0  # a new boot counts from its start


def test_the_capabilities_are_what_xen_caps_says(host: HostModel) -> None:
    caps = host.capabilities()
    assert caps.host.cpus == 4 and caps.scheduler == "credit"
    assert set(caps.guests) == {
        GuestType("xen", "x86_64", 64), GuestType("xen", "i686", 32, pae=True),
        GuestType("hvm", "i686", 32, pae=True, nonpae=True), GuestType("hvm", "x86_64", 64)}


@given(steps=st.lists(st.tuples(st.sampled_from(["live", "config", "both", "max"]),
                                st.integers(1, 6)), max_size=12))
def test_online_vcpus_never_exceed_the_maximum(steps: list[tuple[str, int]]) -> None:
    """Whatever is asked, in whatever order: a refusal changes nothing, and what is kept
    is always a state a domain can have (online <= maximum, each side)."""
    host = HostModel("vcpus-property", clock=ManualClock())
    try:
        d = host.define("m", vcpus=2, max_vcpus=3)
        host.start(d.uuid)
        affects = {"live": Affect.LIVE, "config": Affect.CONFIG,
                   "both": Affect.LIVE | Affect.CONFIG, "max": Affect.CONFIG}
        for what, n in steps:
            before = (host.settings(d.uuid), host.settings(d.uuid, Affect.CONFIG))
            try:
                host.set_vcpus(d.uuid, n, affect=affects[what], maximum=what == "max")
            except InvalidArgumentError:
                assert (host.settings(d.uuid), host.settings(d.uuid, Affect.CONFIG)) == before
            for s in (host.settings(d.uuid), host.settings(d.uuid, Affect.CONFIG)):
                assert 1 <= s.vcpus <= s.max_vcpus
            assert host.settings(d.uuid).max_vcpus == 3  # fixed while it runs
    finally:
        host.close()
