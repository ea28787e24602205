"""2006 mode (``?cache=off``): one control-plane request per lookup, and still right."""

from __future__ import annotations

import pytest

import xvirt


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    """Twenty guests, g0 to g19, on ``clock``."""
    for i in range(20):
        sim_host.create(f"g{i}")
    return sim_host


def test_the_2006_loop_costs_one_request_per_lookup_plus_open(host: xvirt.sim.Host) -> None:
    with xvirt.open(host.uri + "?cache=off") as conn:
        assert conn.stats().control_requests == 1  # the node record, as libvirt's open
        for _ in range(5):
            for domid in conn.list_domain_ids():
                if domid:
                    dom = conn.lookup_by_id(domid)
                    dom.info()
                    dom.close()
        stats = conn.stats()
    assert stats.control_requests == 101
    assert (stats.cache_hits, stats.cache_size) == (0, 0)


def test_it_never_confuses_domains_when_ids_move(host: xvirt.sim.Host) -> None:
    with xvirt.open(host.uri + "?cache=off") as conn:
        dom = conn.lookup_by_name("g3")
        old = dom.id
        new = host.reboot(old).id
        assert new != old
        assert dom.id == new and dom.info().state is xvirt.DomainState.RUNNING
        host.destroy(new)
        host.create("other")  # may take any ID, the old ones included
        with pytest.raises(xvirt.NoDomainError):
            dom.info()
        for rec in host.domains():  # whoever holds an ID now is who the lookup says
            assert conn.lookup_by_id(rec.id).uuid == rec.uuid


def test_sample_and_actions_work_without_the_cache(host: xvirt.sim.Host) -> None:
    with xvirt.open(host.uri + "?cache=off") as conn:
        names = [s.identity.name for s in conn.sample()]
        assert names == ["Domain-0", *[f"g{i}" for i in range(20)]]
        dom = conn.lookup_by_name("g0")
        dom.pause()
        assert dom.info().state is xvirt.DomainState.PAUSED
        dom.rename("renamed")
        assert conn.lookup_by_uuid(dom.uuid).name == "renamed"
