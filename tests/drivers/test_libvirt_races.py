"""The libvirt driver when the host moves between two of its observations, with the
interleavings the conformance kit's long run met under concurrent readers, made
deterministic: libvirt's events are held back and the worker's observation, or the
host's change, is injected exactly where it hurt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from tests.drivers.libvirt_admin import TARGET, persistent_guest
from xvirt.connection import Connection
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import DomainState

UUID = "00000000-0000-4000-8000-0000000000a1"
_STOPPED, _DESTROYED = 5, 1  # VIR_DOMAIN_EVENT_STOPPED, ..._STOPPED_DESTROYED


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's connection, with one persistent guest ``g0`` running."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    with persistent_guest("g0", UUID) as conn:
        yield conn


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt's lifecycle events reach no driver opened from now on: what its worker
    observes, and when, is up to the test."""
    monkeypatch.setattr(LibvirtDriver, "_on_event", lambda *_args: None)


def worker_observes(driver: LibvirtDriver, uuid: str, event: int, detail: int,
                    name: str = "g0") -> None:
    """What the worker does on one libvirt event (about ``name``), on its own thread."""
    before = driver._mirror.generation
    driver._work.put((uuid, event, detail, name))
    driver._start_worker()  # as the first event does
    deadline = time.monotonic() + 5
    while driver._mirror.generation == before:
        assert time.monotonic() < deadline, "the worker did not observe"
        time.sleep(0.001)


@pytest.mark.usefixtures("quiet")
def test_a_departure_the_worker_saw_before_the_call_does_not_fail_a_lookup(
        admin: Any) -> None:
    """The kit's C2 failure: the worker saw the domain stopped (true then); it started
    again under a new ID before the lookup, its event not yet delivered. The lookup
    meets the old ID empty and must not take the old departure for current."""
    dom = admin.lookupByUUIDString(UUID)
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        driver = conn._driver
        assert isinstance(driver, LibvirtDriver)
        conn.list_domain_ids()  # a complete cache, as after any listing
        old_id = conn.lookup_by_uuid(UUID).id
        dom.destroy()
        worker_observes(driver, UUID, _STOPPED, _DESTROYED)  # gone: true at the time
        dom.create()  # back, under a new ID; no event about it yet
        new_id = admin.lookupByUUIDString(UUID).ID()
        assert new_id != old_id
        found = conn.lookup_by_uuid(UUID)  # before: NoDomainError
        assert (found.uuid, found.id, found.name) == (UUID, new_id, "g0")
        # Its old ID, now that it is known live elsewhere, costs the one lookupByID.
        before = conn.stats().data_calls
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(old_id)
        assert conn.stats().data_calls - before == 1


@pytest.mark.usefixtures("quiet")
def test_a_sample_pairs_each_id_with_the_state_of_the_same_instant(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's sample failure: getAllDomainStats lists a paused domain at its ID;
    before the info() that fills in the figures, it stops and starts again (running,
    another ID). ID and state must come from the same instant."""
    lv = real_libvirt()
    dom = admin.lookupByUUIDString(UUID)
    dom.suspend()
    old_id = dom.ID()
    real_info = lv.virDomain.info
    restarted: list[int] = []

    def info(self: Any) -> Any:
        if self.UUIDString() == UUID and not restarted:
            dom.destroy()
            dom.create()
            restarted.append(admin.lookupByUUIDString(UUID).ID())
        return real_info(self)

    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        monkeypatch.setattr(lv.virDomain, "info", info)
        sample = {s.identity.uuid: (s.identity.id, s.info.state) for s in conn.sample()}
        monkeypatch.setattr(lv.virDomain, "info", real_info)
        assert restarted, "the interleaving was not injected"
        # Before: (old_id, RUNNING), a pair the host never had.
        assert sample[UUID] in {(old_id, DomainState.PAUSED),
                                (restarted[0], DomainState.RUNNING)}
        assert conn.lookup_by_uuid(UUID).id == restarted[0]


def test_a_domain_that_stops_while_being_listed_is_not_a_member(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt filters an ACTIVE listing, then names each domain under its own lock
    (virDomainObjListExport): one that stopped in between comes out with ID -1. The
    kit's readers met it as 'ID -1, which nobody held'."""
    lv = real_libvirt()
    dom = admin.lookupByUUIDString(UUID)
    real_list, real_stats = lv.virConnect.listAllDomains, lv.virConnect.getAllDomainStats

    def stopping(self: Any, flags: int = 0) -> Any:
        doms = real_list(self, flags)
        stopped = [d for d in doms if d.UUIDString() == UUID]
        if stopped:
            dom.destroy()  # between libvirt's filter and its naming of g0
            assert self.lookupByUUIDString(UUID).ID() == -1
            doms = [self.lookupByUUIDString(UUID) if d.UUIDString() == UUID else d
                    for d in doms]
        return doms

    def stopping_stats(self: Any, stats: int = 0, flags: int = 0) -> Any:
        records = real_stats(self, stats, flags)
        if any(d.UUIDString() == UUID for d, _ in records):
            dom.destroy()
            records = [(self.lookupByUUIDString(UUID), {"state.state": 5})
                       if d.UUIDString() == UUID else (d, s) for d, s in records]
        return records

    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        driver = conn._driver
        before = driver.census().members
        assert len(before) == 2
        monkeypatch.setattr(lv.virConnect, "listAllDomains", stopping)
        members = driver.census().members
        monkeypatch.setattr(lv.virConnect, "listAllDomains", real_list)
        assert [m for m in members if m[0] < 0] == [] and len(members) == 1  # was (-1, g0)
        assert conn.list_domain_ids() == [members[0][0]]
        dom.create()
        assert len(conn.list_domain_ids()) == 2
        monkeypatch.setattr(lv.virConnect, "getAllDomainStats", stopping_stats)
        sample = conn.sample()
        monkeypatch.setattr(lv.virConnect, "getAllDomainStats", real_stats)
        assert [s.identity.id for s in sample if s.identity.id < 0] == []
        assert UUID not in [s.identity.uuid for s in sample]
        assert conn.lookup_by_uuid(UUID).id is None  # defined, shut off: no ID
