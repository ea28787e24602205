"""Lookups on libvirt by UUID hash, not by ID scan (issue 17, item 5).

libvirt's ``lookupByID`` scans every domain; ``lookupByUUIDString`` hashes. The
driver validates the UUID its mirror believes at an ID with the hash, and scans
only when that domain is no longer there. Calls are counted exactly, per libvirt
method, on libvirt's own test driver; no timing."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from xvirt.connection import Connection
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirt_target import guest_xml

TARGET = "test:///default"
_METHODS = ("lookupByID", "lookupByUUIDString", "lookupByName", "listAllDomains",
            "getAllDomainStats")


def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's connection, with persistent guests g0..g4 running."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    lv = real_libvirt()
    conn = lv.open(TARGET)
    for i in range(5):
        conn.defineXML(guest_xml(f"g{i}", uuid_of(0xb0 + i), memory_kib=65536,
                                 vcpus=1)).create()
    yield conn
    for i in range(5):
        with contextlib.suppress(lv.libvirtError):
            dom = conn.lookupByUUIDString(uuid_of(0xb0 + i))
            with contextlib.suppress(lv.libvirtError):
                dom.destroy()
            dom.undefine()
    conn.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """How often each libvirt connection method was called, by any connection."""
    lv = real_libvirt()
    counts: collections.Counter[str] = collections.Counter()
    for method in _METHODS:
        real = getattr(lv.virConnect, method)

        def counted(self: Any, *args: Any, _real: Any = real, _name: str = method) -> Any:
            counts[_name] += 1
            return _real(self, *args)

        monkeypatch.setattr(lv.virConnect, method, counted)
    return counts


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No libvirt event reaches a driver opened from now on: observations are the test's."""
    monkeypatch.setattr(LibvirtDriver, "_on_event", lambda *_args: None)


def test_the_naive_loop_never_scans(admin: Any, calls: collections.Counter[str]) -> None:
    with xvirt.open(f"libvirt:{TARGET}") as conn:
        ids = conn.list_domain_ids()
        calls.clear()
        before = conn.stats().data_calls
        for _ in range(3):
            for domid in ids:
                dom = conn.lookup_by_id(domid)
                dom.info()
                dom.close()
        stats = conn.stats()
    assert len(ids) == 6  # "test" and g0..g4
    # One hash lookup a domain, none by ID: the listing told the mirror who is where.
    assert calls == {"lookupByUUIDString": 3 * 6}
    assert stats.data_calls - before == 3 * 6 * 2  # and one info() each
    assert stats.control_requests == 0


@pytest.mark.usefixtures("quiet")
def test_a_domain_that_moved_costs_one_scan_of_its_old_id(
        admin: Any, calls: collections.Counter[str], tmp_path: Path) -> None:
    """Save and restore: same UUID and name, a new ID (libvirt never reuses IDs, but
    a domain's ID changes). The belief is found wrong by the hash lookup; the old ID
    is then scanned once, and the handle follows the domain (C3)."""
    uuid = uuid_of(0xb2)
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        conn.list_domain_ids()
        handle = conn.lookup_by_uuid(uuid)
        old_id = handle.id
        dom = admin.lookupByUUIDString(uuid)
        image = str(tmp_path / "g2.img")
        dom.save(image)
        admin.restore(image)
        new_id = admin.lookupByUUIDString(uuid).ID()
        assert new_id != old_id
        calls.clear()
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(old_id)
        # The hash finds g2 elsewhere; only a scan can say nobody holds old_id.
        assert calls == {"lookupByUUIDString": 1, "lookupByID": 1}
        calls.clear()
        found = conn.lookup_by_id(new_id)
        assert (found.uuid, found.name, found.id) == (uuid, "g2", new_id)
        assert handle.info().memory_kib == 65536 and handle.id == new_id
        assert calls["lookupByID"] == 0


@pytest.mark.usefixtures("quiet")
def test_a_domain_gone_unseen_is_found_gone_by_uuid_and_its_id_empty(
        admin: Any, calls: collections.Counter[str]) -> None:
    uuid = uuid_of(0xb1)
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        conn.list_domain_ids()
        old_id = conn.lookup_by_uuid(uuid).id
        admin.lookupByUUIDString(uuid).destroy()  # defined, shut off: not live
        calls.clear()
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(old_id)
        assert calls == {"lookupByUUIDString": 1, "lookupByID": 1}
        assert old_id not in conn.list_domain_ids()
        # Still defined, shut off: found by UUID as a defined domain, without an ID.
        assert conn.lookup_by_uuid(uuid).id is None


@pytest.mark.usefixtures("quiet")
def test_an_id_the_mirror_has_no_belief_about_is_scanned(
        admin: Any, calls: collections.Counter[str]) -> None:
    """A domain created after the last listing, its event held back: the mirror
    believes nobody at its ID, so the one call is lookupByID, and it is found."""
    lv = real_libvirt()
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        conn.list_domain_ids()
        dom = admin.createXML(guest_xml("late", uuid_of(0xbf), memory_kib=65536, vcpus=1), 0)
        try:
            calls.clear()
            found = conn.lookup_by_id(dom.ID())
            assert calls == {"lookupByID": 1}
            # (A handle validates its name again: by UUID, now that it is believed.)
            assert (found.name, found.uuid) == ("late", uuid_of(0xbf))
            assert calls == {"lookupByID": 1, "lookupByUUIDString": 1}
        finally:
            with contextlib.suppress(lv.libvirtError):
                dom.destroy()
