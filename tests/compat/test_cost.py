"""The face costs what the native API costs: the 2006 loop makes exactly the same
control-plane requests and data-plane calls through both."""

from __future__ import annotations

import pytest

import xvirt
import xvirt.compat.libvirt as face

GUESTS, SAMPLES = 20, 5


def native_loop(conn: xvirt.Connection) -> None:
    for _ in range(SAMPLES):
        for domid in conn.list_domain_ids():
            dom = conn.lookup_by_id(domid)
            dom.info()
            dom.close()


def face_loop(conn: face.virConnect) -> None:
    for _ in range(SAMPLES):
        for domid in conn.listDomainsID():
            conn.lookupByID(domid).info()


def costs(stats: xvirt.ConnStats) -> tuple[int, int]:
    return stats.control_requests, stats.data_calls


@pytest.mark.parametrize("query", ["", "?cache=off"])
def test_the_2006_loop_costs_the_same(host: xvirt.sim.Host, query: str) -> None:
    for i in range(GUESTS):
        host.create(f"g{i}")
    with xvirt.open(host.uri + query) as native:
        native_loop(native)
        expected = costs(native.stats())
    lv = face.open(host.uri + query)
    face_loop(lv)
    assert costs(lv._xvirt.stats()) == expected
    lv.close()
    if not query:
        assert expected[0] == 1  # the newcomers, in one batch (C5)
    else:
        assert expected[0] == 1 + (GUESTS + 1) * SAMPLES  # 2006: one per lookup


def test_a_sample_costs_what_a_native_sample_costs(host: xvirt.sim.Host) -> None:
    """getAllDomainStats is one Connection.domain_stats: one data call, no control
    request (the names come with the statistics)."""
    for i in range(GUESTS):
        host.create(f"g{i}")
    with xvirt.open(host.uri) as native:
        native.domain_stats()
        native.domain_stats()
        expected = costs(native.stats())
    assert expected[:2] == (0, 2)
    lv = face.open(host.uri)
    lv.getAllDomainStats()
    lv.getAllDomainStats()
    assert costs(lv._xvirt.stats()) == expected
    lv.close()
