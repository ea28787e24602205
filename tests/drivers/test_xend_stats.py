"""Domain statistics through the xend driver from a real ``xvirt daemon``: one data
call (``GET /xvirt/stats``) whatever the fast channel, the daemon's host figures."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import xvirt
from xvirt.drivers import xend
from xvirt.stats import ALL_GROUPS, DomainState, StatGroup
from xvirt.testing.daemon import DaemonProcess, DaemonTarget


@pytest.fixture
def target(make_daemon: Callable[..., DaemonProcess]) -> DaemonTarget:
    return DaemonTarget(daemon=make_daemon(start=False))


@pytest.mark.parametrize("fast", ["auto", "http"])
def test_stats_in_one_data_call(target: DaemonTarget, fast: str) -> None:
    web = target.host.create("web", vcpus=2)
    db = target.host.create("db")
    with xvirt.open(f"{target.daemon.unix_uri}?fast={fast}", readonly=True) as conn:
        conn.list_domain_ids()
        before = conn.stats()
        found = conn.domain_stats()
        after = conn.stats()
        assert (after.data_calls, after.control_requests) == (
            before.data_calls + 1, before.control_requests)
        assert [s.name for s in found] == ["Domain-0", "web", "db"]
        mine = {s.uuid: s for s in found}[web.uuid]
        assert mine.state is DomainState.RUNNING and mine.missing == frozenset()
        assert mine.vcpus is not None and len(mine.vcpus) == 2
        assert mine.blocks is not None and mine.blocks[0].name == "xvda"
        assert mine.nets is not None and mine.nets[0].name == f"vif{web.id}.0"
        assert mine.balloon is not None and mine.balloon.current_kib == 524288
        survey = conn.survey(["net"])
        stats = {s.identity.uuid: s.stats for s in survey.samples}
        assert stats[db.uuid] is not None and stats[db.uuid].nets is not None  # type: ignore[union-attr]
        assert stats[db.uuid].blocks is None  # type: ignore[union-attr]


def test_counters_grow_and_restart_at_reboot_and_a_wedged_domain_is_missing(
        target: DaemonTarget) -> None:
    web = target.host.create("web")
    other = target.host.create("other")
    with xvirt.open(target.daemon.unix_uri) as conn:
        dom = conn.lookup_by_uuid(web.uuid)
        first = dom.stats(["cpu", "block"])
        second = dom.stats(["cpu", "block"])
        assert first.cpu is not None and second.cpu is not None
        assert second.cpu.time_ns >= first.cpu.time_ns
        started = time.monotonic()
        rebooted = target.host.reboot(web.id)
        again = dom.stats(["cpu", "block"])
        since_reboot_ns = (time.monotonic() - started) * 1e9
        assert again.id == rebooted.id != web.id
        # from 0 at the reboot: at most the (one-vCPU) guest's time since then
        assert again.cpu is not None and again.cpu.time_ns <= since_reboot_ns
        target.host.stall(other.id)
        (wedged,) = conn.domain_stats(["block"], [conn.lookup_by_uuid(other.uuid)])
        assert wedged.missing == frozenset({StatGroup.BLOCK}) and wedged.blocks is None


def test_many_domains_are_asked_as_all_and_picked(target: DaemonTarget,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xend, "STATS_UUIDS_IN_QUERY", 1)
    a, _b, c = (target.host.create(n) for n in "abc")
    with xvirt.open(target.daemon.unix_uri) as conn:
        doms = [conn.lookup_by_uuid(a.uuid), conn.lookup_by_uuid(c.uuid)]
        assert [s.uuid for s in conn.domain_stats(ALL_GROUPS, doms)] == [a.uuid, c.uuid]
