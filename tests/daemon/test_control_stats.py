"""``GET /xvirt/stats``: the host model's domain statistics in one request, encoded by
the codec the xend driver decodes with."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from xvirt.clock import ManualClock
from xvirt.daemon.control import ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel
from xvirt.stats import ALL_GROUPS, StatGroup
from xvirt.wire.stats_codec import decode_stats


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock) -> HostModel:
    h = make_host_model(clock=clock)
    h.create("web", vcpus=2, load=0.5)
    h.create("db")
    clock.sleep(10.0)
    return h


def _client(host: HostModel) -> httpx.Client:
    app = ControlApp(host, ControlSettings(token=None), trusted=False)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost")


def test_every_domain_with_the_groups_asked(host: HostModel) -> None:
    r = _client(host).get("/xvirt/stats", params={"groups": "block,net"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Xvirt-Boot"] == host.boot_id
    found = decode_stats(r.content)
    assert found == host.domain_stats(frozenset({StatGroup.BLOCK, StatGroup.NET}))
    assert [s.name for s in found] == ["Domain-0", "web", "db"]
    assert all(s.cpu is None and s.blocks is not None for s in found)


def test_the_domains_named_and_a_wedged_one_missing(host: HostModel) -> None:
    web, db = (d for d in host.domains() if d.id != 0)
    host.stall(db.id)
    r = _client(host).get("/xvirt/stats?groups=cpu,vcpu,balloon,state,block,net"
                          f"&uuid={db.uuid}&uuid={web.uuid}")
    found = decode_stats(r.content)
    assert found == host.domain_stats(ALL_GROUPS, [web.uuid, db.uuid])
    assert [s.id for s in found] == [web.id, db.id]
    assert found[0].cpu is not None and found[0].cpu.time_ns == 10_000_000_000
    assert found[1].missing == ALL_GROUPS and found[1].cpu is None


@pytest.mark.parametrize(("query", "status"), [
    ("groups=disk", 400), ("groups=cpu&uuid=not-a-uuid", 400),
    ("groups=cpu&groups=net", 400)])
def test_bad_requests_are_refused(host: HostModel, query: str, status: int) -> None:
    r = _client(host).get(f"/xvirt/stats?{query}")
    assert r.status_code == status and r.headers["X-Xvirt-Error"] == "invalid"


def test_only_get(host: HostModel) -> None:
    assert _client(host).post("/xvirt/stats", data={"groups": "cpu"}).status_code == 405


def test_the_answer_is_made_with_the_garbage_collector_off_and_gives_it_back(
        host: HostModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The figures of every domain are made and encoded with the cyclic collector held off
    (they form no cycles; at 5000 domains its passes were a third of the request), and it
    is on again after."""
    import gc

    seen: list[bool] = []
    domain_stats = host.domain_stats

    def watched(*args: object) -> object:
        seen.append(gc.isenabled())
        return domain_stats(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(host, "domain_stats", watched)
    assert gc.isenabled()
    assert _client(host).get("/xvirt/stats", params={"groups": "cpu"}).status_code == 200
    assert seen == [False] and gc.isenabled()
