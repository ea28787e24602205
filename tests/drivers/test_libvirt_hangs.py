"""No guest can freeze the rest (issue 17, item 3), on libvirt's test driver.

A guest that does not answer is made by holding one domain's libvirt call (an
action, ``info()``, ``XMLDesc``) on an event the test releases: what a hung QEMU
does to a call that waits for its job. While it is held, every other caller of
the same connection must be answered. The sample asks libvirt only for the
state stats group, with NOWAIT: never a group that asks a guest's QEMU monitor.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from tests.threads import in_thread
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
    VIR_DOMAIN_STATS_STATE,
)
from xvirt.testing.libvirt_target import guest_xml

URI = "libvirt:test:///default"
HUNG = "g1"
LIVENESS_S = 30.0  # a liveness bound, not a timing: the answers come at once


def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{0xc0 + i:012x}"


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's connection, with transient guests g0..g3 running."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    lv = real_libvirt()
    conn = lv.open("test:///default")
    doms = [conn.createXML(guest_xml(f"g{i}", uuid_of(i), memory_kib=65536, vcpus=1), 0)
            for i in range(4)]
    yield conn
    for dom in doms:
        with contextlib.suppress(lv.libvirtError):
            dom.destroy()
    conn.close()


@contextlib.contextmanager
def hung(monkeypatch: pytest.MonkeyPatch, method: str) -> Iterator[threading.Event]:
    """``virDomain.<method>`` of guest HUNG blocks until the yielded event is set (set
    on the way out in any case): the call of a guest that does not answer."""
    lv = real_libvirt()
    real = getattr(lv.virDomain, method)
    release, entered = threading.Event(), threading.Event()

    def held(self: Any, *args: Any) -> Any:
        if self.name() == HUNG:
            entered.set()
            release.wait(LIVENESS_S)
        return real(self, *args)

    monkeypatch.setattr(lv.virDomain, method, held)
    try:
        yield entered
    finally:
        release.set()
        monkeypatch.setattr(lv.virDomain, method, real)



def others_answer(conn: xvirt.Connection) -> None:
    """Listings, lookups by ID, name and UUID, and info() of every other domain."""
    ids = conn.list_domain_ids()
    names = {conn.lookup_by_id(i).name for i in ids}
    assert {"g0", "g1", "g2", "g3"} <= names
    for i in (0, 2, 3):
        dom = conn.lookup_by_name(f"g{i}")
        assert dom.info().memory_kib == 65536
        assert conn.lookup_by_uuid(uuid_of(i)).name == f"g{i}"
        assert dom.config().memory_kib == 65536


@pytest.mark.parametrize(("method", "call"), [
    ("suspend", lambda dom: dom.pause()),
    ("info", lambda dom: dom.info()),
    ("XMLDesc", lambda dom: dom.config()),
])
def test_a_call_held_by_one_guest_holds_up_no_other_caller(
        admin: Any, monkeypatch: pytest.MonkeyPatch, method: str,
        call: Callable[[Any], object]) -> None:
    with xvirt.open(URI) as conn:
        stuck = conn.lookup_by_name(HUNG)
        conn.sample()
        with hung(monkeypatch, method) as entered:
            thread, result = in_thread(lambda: call(stuck))
            assert entered.wait(LIVENESS_S)
            done, answered = in_thread(lambda: others_answer(conn))
            done.join(LIVENESS_S)
            assert not done.is_alive(), "another domain's caller waited for the hung guest"
            assert answered == [None], answered
            assert thread.is_alive() and not result  # still held: it really was in libvirt
        thread.join(LIVENESS_S)
        assert not isinstance(result[0], BaseException), result
        others_answer(conn)


def test_a_failing_info_is_that_domains_failure_in_the_survey(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lv = real_libvirt()
    real = lv.virDomain.info

    def info(self: Any) -> Any:
        if self.name() == HUNG:
            raise lv.libvirtError("Timed out during operation: cannot acquire state "
                                  "change lock (held by monitor=remoteDispatchDomainGetInfo)")
        return real(self)

    with xvirt.open(URI) as conn:
        monkeypatch.setattr(lv.virDomain, "info", info)
        survey = conn.survey()
        monkeypatch.setattr(lv.virDomain, "info", real)
        assert [f.identity.name for f in survey.failures] == [HUNG]
        error = survey.failures[0].error
        assert (error.op, error.uuid) == ("info", uuid_of(1))  # what failed, and where
        assert {"g0", "g2", "g3"} <= {s.identity.name for s in survey.samples}
        assert HUNG not in {s.identity.name for s in survey.samples}


def test_a_sample_asks_only_for_the_state_group_without_waiting(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stats groups that ask a guest's QEMU monitor (cpu-total, balloon, vcpu...)
    are never requested; NOWAIT is always set; the figures come from one info() a
    domain, which QEMU answers from /proc and libvirt's own records."""
    lv = real_libvirt()
    asked: list[tuple[int, int]] = []
    counted: collections.Counter[str] = collections.Counter()
    real_stats, real_list, real_info = (lv.virConnect.getAllDomainStats,
                                        lv.virConnect.listAllDomains, lv.virDomain.info)

    def stats(self: Any, groups: int = 0, flags: int = 0) -> Any:
        asked.append((groups, flags))
        return real_stats(self, groups, flags)

    def listing(self: Any, flags: int = 0) -> Any:
        counted["listAllDomains"] += 1
        return real_list(self, flags)

    def info(self: Any) -> Any:
        counted["info"] += 1
        return real_info(self)

    monkeypatch.setattr(lv.virConnect, "getAllDomainStats", stats)
    monkeypatch.setattr(lv.virConnect, "listAllDomains", listing)
    monkeypatch.setattr(lv.virDomain, "info", info)
    with xvirt.open(URI) as conn:
        before = conn.stats().data_calls
        sample = conn.sample()
        calls = conn.stats().data_calls - before
    assert asked == [(VIR_DOMAIN_STATS_STATE, VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                      | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)]
    # No more than listAllDomains(ACTIVE) + info() each: one bulk call, one info() each.
    assert counted == {"info": len(sample)} and calls == 1 + len(sample)
