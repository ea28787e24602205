"""Domain statistics through the embedded driver and the public API: one data call,
the host model's figures, a wedged domain's groups missing after one timeout."""

from __future__ import annotations

import pytest

import xvirt
from xvirt import sim
from xvirt.clock import ManualClock
from xvirt.drivers.embedded import DOMAIN_TIMEOUT_MS, EmbeddedDriver
from xvirt.stats import ALL_GROUPS, DomainState, StatGroup

pytestmark = pytest.mark.clock_start(10.0)


def _driver(host: sim.Host) -> EmbeddedDriver:
    return EmbeddedDriver(sim._model_of(host), uri=host.uri, control_latency_ms=50)


def test_one_data_call_and_no_control_request(sim_host: sim.Host, clock: ManualClock) -> None:
    a, b = sim_host.create("a"), sim_host.create("b")
    clock.sleep(4.0)
    d = _driver(sim_host)
    found = d.domain_stats(ALL_GROUPS, [b.uuid, a.uuid])
    assert (d.counters.data_calls, d.counters.control_requests) == (1, 0)
    assert clock.now() == 14.0  # no control latency paid
    assert [s.id for s in found] == [a.id, b.id]
    assert found == sim._model_of(sim_host).domain_stats(ALL_GROUPS, [a.uuid, b.uuid])
    assert len(d.domain_stats(frozenset({StatGroup.CPU}))) == 3  # None: Domain-0 too
    assert d.counters.data_calls == 2


def test_a_wedged_domain_costs_one_timeout_and_the_rest_are_served(
        sim_host: sim.Host, clock: ManualClock) -> None:
    ok, wedged = sim_host.create("ok"), sim_host.create("wedged")
    sim_host.stall(wedged.id)
    d = _driver(sim_host)
    asked = frozenset({StatGroup.BLOCK, StatGroup.NET})
    found = {s.id: s for s in d.domain_stats(asked)}
    assert clock.now() == 10.0 + DOMAIN_TIMEOUT_MS / 1000
    assert found[wedged.id].missing == asked and found[wedged.id].blocks is None
    assert found[ok.id].answered and found[ok.id].nets is not None
    before = clock.now()
    d.domain_stats(asked, [ok.uuid])
    assert clock.now() == before  # no wedged domain asked: no wait


def test_survey_with_groups_is_one_more_data_call(sim_host: sim.Host,
                                                  clock: ManualClock) -> None:
    rec = sim_host.create("web", vcpus=2, load=0.5)
    clock.sleep(10.0)
    with xvirt.open(sim_host.uri, readonly=True) as conn:
        plain = conn.survey()
        calls = conn.stats().data_calls
        assert all(s.stats is None for s in plain.samples)
        found = conn.survey(["block", StatGroup.NET])
        assert conn.stats().data_calls == calls + 2  # the snapshot, then the statistics
        (web,) = [s for s in found.samples if s.identity.uuid == rec.uuid]
        stats = web.stats
        assert stats is not None and stats.cpu is None and stats.vcpus is None
        assert stats.blocks is not None and [b.name for b in stats.blocks] == ["xvda"]
        assert stats.blocks[0].path == "/var/lib/xen/images/web.img"
        assert stats.nets is not None and stats.nets[0].name == f"vif{rec.id}.0"
        assert stats.nets[0].bridge == "xenbr0" and stats.nets[0].rx_bytes > 0


def test_domain_stats_end_to_end_and_reset_at_reboot(sim_host: sim.Host,
                                                     clock: ManualClock) -> None:
    rec = sim_host.create("web", vcpus=2, load=0.5)
    clock.sleep(10.0)
    with xvirt.open(sim_host.uri) as conn:
        dom = conn.lookup_by_uuid(rec.uuid)
        calls = conn.stats().data_calls
        stats = dom.stats()
        assert conn.stats().data_calls == calls + 1
        assert stats.state is DomainState.RUNNING and stats.missing == frozenset()
        assert stats.cpu is not None and stats.cpu.time_ns == 10_000_000_000
        assert stats.cpu.time_ns == dom.info().cpu_time_ns
        assert stats.balloon is not None and stats.balloon.current_kib == 524288
        assert stats.balloon.rss_kib is None
        assert stats.blocks is not None and stats.blocks[0].rd_reqs > 0
        sim_host.reboot(rec.id)
        again = dom.stats(["cpu", "block"])
        assert again.id != stats.id
        assert again.cpu is not None and again.cpu.time_ns == 0
        assert again.blocks is not None and again.blocks[0].rd_bytes == 0
        everyone = conn.domain_stats(["state"])
        assert [s.id for s in everyone] == sorted(s.id or 0 for s in everyone)
        assert {s.uuid for s in everyone} == {sim.DOM0_UUID, rec.uuid}
        sim_host.destroy(again.id or 0)
        with pytest.raises(xvirt.NoDomainError):
            dom.stats()


def test_a_shorter_timeout_bounds_the_wait_for_a_wedged_domain(
        sim_host: sim.Host, clock: ManualClock) -> None:
    ok, wedged = sim_host.create("ok"), sim_host.create("wedged")
    sim_host.stall(wedged.id)
    asked = frozenset({StatGroup.BLOCK})
    with xvirt.open(sim_host.uri, readonly=True) as conn:
        conn.survey()  # the survey's own wait for the wedged domain, paid here
        before = clock.now()
        found = {s.id: s for s in conn.domain_stats(asked, timeout=0.25)}
        assert clock.now() - before == min(0.25, DOMAIN_TIMEOUT_MS / 1000)
        assert found[wedged.id].missing == asked and found[ok.id].answered
        before = clock.now()
        conn.domain_stats(asked, timeout=3600)  # longer: the host's own timeout
        assert clock.now() - before == DOMAIN_TIMEOUT_MS / 1000


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "1", [1]])
def test_a_bad_statistics_timeout_is_refused_naming_it(sim_host: sim.Host, bad: object) -> None:
    with xvirt.open(sim_host.uri, readonly=True) as conn:
        for call in (lambda: conn.domain_stats(timeout=bad),  # type: ignore[arg-type]
                     lambda: conn.survey(["cpu"], timeout=bad),  # type: ignore[arg-type]
                     lambda: conn.sample(["cpu"], timeout=bad)):  # type: ignore[arg-type]
            with pytest.raises(xvirt.InvalidArgumentError, match="timeout must be"):
                call()
