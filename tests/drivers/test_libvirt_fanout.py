"""A snapshot through a daemon spreads its ``info()`` calls over lanes (more connections
to the same daemon, a thread each): same answers, exact counts, and a lane that fails
or does not answer costs the sample nothing but time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from xvirt.drivers import libvirt as driver_module
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_fanout import Fanout
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirt_target import guest_xml
from xvirt.testing.libvirtd import LibvirtdProcess

GUESTS = 20  # and libvirtd's own "test"
LANE = "xvirt-libvirt-info"  # the lanes' thread names begin so


@pytest.fixture
def host(libvirtd: LibvirtdProcess) -> Iterator[Any]:
    """The daemon's shared test host with GUESTS more guests; the connection that made
    them keeps the host alive (the test driver forgets it with its last connection)."""
    admin = real_libvirt().open(libvirtd.uri)
    for i in range(GUESTS):
        admin.createXML(guest_xml(f"f{i}", f"00000000-0000-4000-8000-{0xf00 + i:012x}",
                                  memory_kib=65536 + i, vcpus=1), 0)
    yield admin
    admin.close()


@pytest.fixture
def driver(libvirtd: LibvirtdProcess, host: Any) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver("libvirt:" + libvirtd.uri, libvirtd.uri, readonly=True)
    yield d
    d.close()


def figures(snapshot: Any) -> dict[str, tuple[int, int, int]]:
    return {r.uuid: (r.id, r.memory_kib, r.vcpus) for r in snapshot.rows}


def truth(admin: Any) -> dict[str, tuple[int, int, int]]:
    lv = real_libvirt()
    return {d.UUIDString(): (d.ID(), d.info()[2], d.info()[3])
            for d in admin.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}


def test_the_lanes_answer_what_the_driver_would_and_each_call_is_counted(
        driver: LibvirtDriver, host: Any) -> None:
    before = driver.counters.data_calls
    first = driver.snapshot()
    assert driver._fanout is not None and driver._fanout.lanes == 2
    assert figures(first) == truth(host) and not first.unanswered
    # One stats call and one info() a domain; the lanes' domains (every third from the
    # second on) each cost one lookup on its lane the first time.
    live = GUESTS + 1
    lanes_share = live - len(range(0, live, 3))
    assert driver.counters.data_calls - before == 1 + live + lanes_share
    before = driver.counters.data_calls
    assert figures(driver.snapshot()) == truth(host)
    assert driver.counters.data_calls - before == 1 + live  # handles kept


def test_a_lane_that_fails_leaves_its_domains_to_the_driver(
        driver: LibvirtDriver, host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lv = real_libvirt()
    real_info = lv.virDomain.info

    def failing_in_lanes(self: Any) -> Any:
        if threading.current_thread().name.startswith(LANE):
            raise lv.libvirtError("a lane's call failed")
        return real_info(self)

    monkeypatch.setattr(lv.virDomain, "info", failing_in_lanes)
    snap = driver.snapshot()
    assert figures(snap) == truth(host) and not snap.unanswered


def test_a_lane_that_does_not_answer_is_replaced_and_the_sample_still_complete(
        libvirtd: LibvirtdProcess, host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lv = real_libvirt()
    real_info = lv.virDomain.info
    release = threading.Event()
    held: list[str] = []

    def hung_in_lanes(self: Any) -> Any:
        if threading.current_thread().name.startswith(LANE):
            held.append(threading.current_thread().name)
            release.wait(30)  # a guest that does not answer, until the test ends
        return real_info(self)

    monkeypatch.setattr(lv.virDomain, "info", hung_in_lanes)
    d = LibvirtDriver("libvirt:" + libvirtd.uri, libvirtd.uri, readonly=True, timeout=0.2)
    try:
        snap = d.snapshot()
        assert figures(snap) == truth(host) and not snap.unanswered
        assert held and isinstance(d._fanout, Fanout) and d._fanout.abandoned == 2
    finally:
        release.set()
        d.close()


def test_no_lanes_for_a_few_domains_or_one_connection(
        libvirtd: LibvirtdProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "_FANOUT_MIN", 10_000)
    d = LibvirtDriver("libvirt:" + libvirtd.uri, libvirtd.uri, readonly=True)
    try:
        d.snapshot()
        assert d._fanout is None
    finally:
        d.close()
    local = LibvirtDriver("libvirt:test:///default", "test:///default")
    try:
        monkeypatch.setattr(driver_module, "_FANOUT_MIN", 1)
        local.snapshot()
        assert local._fanout is None  # in process: no round trips to overlap
    finally:
        local.close()
