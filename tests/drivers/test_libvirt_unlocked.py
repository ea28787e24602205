"""What a call made without the driver's lock finds, applied in order (issue 17, item 3).

A sample's ``info()`` calls run without the lock. When one finds its domain gone, that
finding is applied as it stands only if nothing was observed since the sample's bulk
call; otherwise the domain is observed again first. Both interleavings are injected
deterministically: libvirt's events are held back and the host changes inside info().
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drivers.libvirt_admin import TARGET, persistent_guest
from xvirt.connection import Connection
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import DomainState

UUID = "00000000-0000-4000-8000-0000000000d1"


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's connection, with one persistent guest ``d1`` running; no
    libvirt event reaches a driver (what is observed, and when, is the test's)."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    monkeypatch.setattr(LibvirtDriver, "_on_event", lambda *_args: None)
    with persistent_guest("d1", UUID) as conn:
        yield conn


def vanishing_info(monkeypatch: pytest.MonkeyPatch, admin: Any,
                   meanwhile: Any = None) -> list[int]:
    """d1's first info() meets it stopped (error 42); ``meanwhile(new_id)`` runs after
    it is started again under a new ID, before the error reaches the driver."""
    lv = real_libvirt()
    real = lv.virDomain.info
    dom = admin.lookupByUUIDString(UUID)
    happened: list[int] = []

    def info(self: Any) -> Any:
        if self.UUIDString() != UUID or happened:
            return real(self)
        dom.destroy()
        try:
            return real(self)  # shut off: the test driver answers, state 5
        finally:
            if meanwhile is not None:
                dom.create()
                happened.append(admin.lookupByUUIDString(UUID).ID())
                meanwhile(happened[0])
            else:
                happened.append(-1)

    monkeypatch.setattr(lv.virDomain, "info", info)
    return happened


def test_a_departure_nobody_observed_past_is_applied_as_found(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        conn.list_domain_ids()
        happened = vanishing_info(monkeypatch, admin)
        before = conn.stats().data_calls
        sample = conn.sample()
        assert happened, "the interleaving was not injected"
        assert UUID not in {s.identity.uuid for s in sample}
        # No second look: nothing was observed between the bulk call and the finding.
        assert conn.stats().data_calls - before == 1 + len(sample) + 1
        assert UUID not in {conn.lookup_by_id(i).uuid for i in conn.list_domain_ids()}


def test_a_departure_overtaken_by_a_later_observation_is_checked_again(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """d1 stops and starts again (a new ID) during the sample's info() calls, and a
    listing observes it back before the "shut off" finding is applied: applying it
    would drop a live domain. It is looked up again, and answered as the bulk call
    saw it (its old ID and state, one instant), with figures from its new handle."""
    with Connection(LibvirtDriver(f"libvirt:{TARGET}", TARGET)) as conn:
        driver = conn._driver
        assert isinstance(driver, LibvirtDriver)
        old_id = conn.lookup_by_uuid(UUID).id
        happened = vanishing_info(monkeypatch, admin, lambda _new: driver.census())
        sample = {s.identity.uuid: s for s in conn.sample()}
        assert happened and happened[0] != old_id
        assert (sample[UUID].identity.id, sample[UUID].info.state) == (
            old_id, DomainState.RUNNING)
        assert sample[UUID].info.memory_kib == 65536
        assert conn.lookup_by_uuid(UUID).id == happened[0]  # and it is followed there
