"""Demo content: the fixed guests, and batch guests that come and go on the host's clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xvirt.clock import ManualClock
from xvirt.host.demo import UPTIME_S, BatchChurn, populate
from xvirt.host.hypervisor import HostModel
from xvirt.model import DomainState, EventKind
from xvirt.planes import DiskConfig

DEMO = ["web1", "web2", "db1", "cache1", "build1"]

HostModels = Callable[..., HostModel]


@pytest.fixture
def host(make_host_model: HostModels, clock: ManualClock) -> HostModel:
    """An empty host model on ``clock``."""
    return make_host_model(clock=clock)


def _guests(h: HostModel) -> list[str]:
    return [d.name for d in h.domains()[1:]]


def _at(h: HostModel, clock: ManualClock, t: float) -> list[str]:
    clock.advance(t - clock.now())
    return _guests(h)


# -- populate -----------------------------------------------------------------------------


def test_populate_adds_the_demo_guests(host: HostModel) -> None:
    populate(host, churn=False)
    doms = {d.name: d for d in host.domains()}
    assert _guests(host) == DEMO
    assert (doms["web1"].memory_kib, doms["web1"].vcpus) == (1024 * 1024, 2)
    assert (doms["db1"].memory_kib, doms["db1"].vcpus) == (4096 * 1024, 4)
    assert doms["cache1"].state is DomainState.BLOCKED
    assert all(doms[n].state is DomainState.RUNNING for n in DEMO if n != "cache1")


def test_demo_guests_have_disks_and_interfaces(host: HostModel) -> None:
    populate(host, churn=False)
    configs = {d.name: d.config for d in host.list_all().domains}
    for name in DEMO:
        config = configs[name]
        assert config is not None and config.nics
        assert config.disks[0] == DiskConfig(f"/var/lib/xen/images/{name}.img", "xvda")
    db1, build1, cache1 = configs["db1"], configs["build1"], configs["cache1"]
    assert db1 is not None and build1 is not None and cache1 is not None
    assert [d.target for d in db1.disks] == ["xvda", "xvdb"]
    assert [n.bridge for n in db1.nics] == ["xenbr0", "xenbr1"]
    assert build1.disks[1].readonly
    assert [n.bridge for n in cache1.nics] == ["xenbr1"]
    macs = [n.mac for c in configs.values() if c is not None for n in c.nics]
    assert len(set(macs)) == len(macs)  # no two demo interfaces share a MAC


def test_populate_defines_shut_off_domains_for_list_all(
        host: HostModel, make_host_model: HostModels, clock: ManualClock) -> None:
    populate(host, churn=False)
    inactive = host.defined()[2]
    assert [d.name for d in inactive] == ["mail1", "staging1"]
    assert all(d.id is None and d.persistent for d in inactive)
    assert not {d.uuid for d in inactive} & {r.uuid for r in host.data_snapshot().rows}
    running = {d.name for d in host.domains()}
    assert not running & {d.name for d in inactive}
    configs = [d.config for d in host.list_all().domains] + [d.config for d in inactive]
    macs = [n.mac for c in configs if c is not None for n in c.nics]
    assert len(set(macs)) == len(macs)  # no interface of theirs shares a MAC either
    other = make_host_model(clock=clock)  # the same UUIDs in every process
    populate(other, churn=False)
    assert other.defined()[2] == inactive
    rec = host.start(inactive[0].uuid)  # and they boot
    assert (rec.name, rec.memory_kib, rec.vcpus) == ("mail1", 1024 * 1024, 1)


def test_demo_guests_look_lived_in_and_burn_cpu(host: HostModel, clock: ManualClock) -> None:
    populate(host, churn=False)
    start = {d.name: d.cpu_time_ns for d in host.domains()}
    assert start["db1"] == pytest.approx(UPTIME_S * 1e9 * 4 * 0.55, rel=1e-9)
    assert start["cache1"] == pytest.approx(UPTIME_S * 1e9 * 1 * 0.01, rel=1e-9)
    clock.advance(10.0)
    now = {d.name: d.cpu_time_ns for d in host.domains()}
    # db1: 4 vCPUs at 55% for 10 s; cache1 idles at the blocked rate
    assert now["db1"] - start["db1"] == pytest.approx(10e9 * 4 * 0.55, abs=4)
    assert now["cache1"] - start["cache1"] == pytest.approx(10e9 * 0.01, abs=4)


def test_populate_without_churn_stays_still(host: HostModel, clock: ManualClock) -> None:
    populate(host, churn=False)
    gen = host.generation
    assert _at(host, clock, 1000.0) == DEMO
    assert host.generation == gen


def test_populate_with_churn_starts_batch_guests(host: HostModel, clock: ManualClock) -> None:
    populate(host)
    assert _at(host, clock, 14.9) == DEMO
    assert _at(host, clock, 15.0) == [*DEMO, "batch-1"]


# -- BatchChurn --------------------------------------------------------------------------------


def test_batch_guests_come_and_go_on_schedule(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(clock.now()))
    assert _at(host, clock, 14.999) == []
    assert _at(host, clock, 15.0) == ["batch-1"]
    assert _at(host, clock, 29.9) == ["batch-1"]
    assert _at(host, clock, 30.0) == ["batch-1", "batch-2"]
    assert _at(host, clock, 39.9) == ["batch-1", "batch-2"]
    assert _at(host, clock, 40.0) == ["batch-2"]
    assert _at(host, clock, 45.0) == ["batch-2", "batch-3"]
    assert _at(host, clock, 55.0) == ["batch-3"]


def test_batch_guest_shape(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(0.0))
    clock.advance(15.0)
    (rec,) = host.domains()[1:]
    assert (rec.name, rec.memory_kib, rec.vcpus, rec.state) == (
        "batch-1", 256 * 1024, 1, DomainState.RUNNING)
    clock.advance(10.0)
    assert host.domain(rec.id).cpu_time_ns == pytest.approx(9e9, rel=1e-9)


def test_custom_period_and_lifetime(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(100.0, period=2.0, lifetime=3.0))
    clock.advance(100.0)
    assert _at(host, clock, 101.9) == []
    assert _at(host, clock, 102.0) == ["batch-1"]
    assert _at(host, clock, 104.0) == ["batch-1", "batch-2"]
    assert _at(host, clock, 105.0) == ["batch-2"]


def test_jobs_that_started_and_ended_unseen_are_skipped(
    host: HostModel, clock: ManualClock
) -> None:
    host.add_ticker(BatchChurn(0.0))
    # jobs start at 15, 30, ..., 90 and live 25 s: at t=100 only the one of t=90 lives
    assert _at(host, clock, 100.0) == ["batch-6"]
    events = host.events_since(0).events
    assert [e.kind for e in events] == [EventKind.CREATED]  # the others never existed
    assert [j.op for j in host.journal()] == ["create"]


def test_a_long_absence_creates_only_the_live_job(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(0.0))
    # 975 + 25 = 1000 has just ended; 990 is live
    assert _at(host, clock, 1000.0) == ["batch-66"]


def test_starts_and_ends_are_interleaved_in_time_order(
    host: HostModel, clock: ManualClock
) -> None:
    host.add_ticker(BatchChurn(0.0))
    assert _at(host, clock, 20.0) == ["batch-1"]
    gen = host.generation
    # at 50: start 30 (batch-2), end 40 (batch-1), start 45 (batch-3), in that order
    assert _at(host, clock, 50.0) == ["batch-2", "batch-3"]
    events = host.events_since(gen).events
    assert [e.kind for e in events] == [EventKind.CREATED, EventKind.DESTROYED,
                                        EventKind.CREATED]
    ids = {d.name: d.id for d in host.domains()}
    assert (ids["batch-2"], ids["batch-3"]) == (2, 3)


def test_a_batch_guest_destroyed_by_someone_else(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(0.0))
    clock.advance(15.0)
    (rec,) = host.domains()[1:]
    host.destroy(rec.id)
    assert _at(host, clock, 41.0) == ["batch-2"]


def test_churn_never_breaks_a_request_when_the_id_space_is_full(
        make_host_model: HostModels, clock: ManualClock) -> None:
    h = make_host_model(clock=clock, max_domid=5)
    try:
        populate(h)  # five guests fill the space
        clock.advance(16.0)
        assert _guests(h) == DEMO  # the request succeeds; the job could not run
        h.data_snapshot()
        h.destroy(h.domains()[1].id)
        clock.advance(15.0)
        assert sorted(_guests(h)) == sorted([*DEMO[1:], "batch-2"])
    finally:
        h.close()


def test_churn_never_breaks_a_request_when_the_name_is_taken(
    host: HostModel, clock: ManualClock
) -> None:
    mine = host.create("batch-1")
    host.add_ticker(BatchChurn(0.0))
    assert _at(host, clock, 15.0) == ["batch-1"]
    assert _at(host, clock, 30.0) == ["batch-1", "batch-2"]
    assert _at(host, clock, 100.0) == ["batch-1", "batch-6"]
    assert host.domain(mine.id).uuid == mine.uuid  # never destroyed by the churn


def test_churn_survives_a_host_reboot(host: HostModel, clock: ManualClock) -> None:
    host.add_ticker(BatchChurn(0.0))
    clock.advance(15.0)
    assert _guests(host) == ["batch-1"]
    host.reboot_host()
    assert _at(host, clock, 30.0) == ["batch-2"]
    assert _at(host, clock, 55.0) == ["batch-3"]
