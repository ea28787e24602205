"""The host's event log: numbering, reading from any point, trimming; what each op emits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.host.events import EventLog
from xvirt.host.hypervisor import HostModel
from xvirt.model import EventKind, MetadataKind
from xvirt.planes import HostEvent, Op

HostModels = Callable[..., HostModel]


@pytest.fixture
def host(make_host_model: HostModels, clock: ManualClock) -> HostModel:
    """An empty host model (20 guest IDs, seeded) on ``clock``."""
    return make_host_model(clock=clock, max_domid=20, seed=5)


def _fill(log: EventLog, n: int) -> list[HostEvent]:
    return [log.append(EventKind.CREATED, i % 100 + 1, f"uuid-{i}") for i in range(n)]


# -- EventLog alone ------------------------------------------------------------------------


def test_a_new_log_is_empty_and_complete() -> None:
    log = EventLog(4)
    assert log.latest == 0
    assert log.oldest_available == 0
    assert log.since(0) == ((), True)


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError):
        EventLog(capacity)


def test_append_numbers_events_from_one() -> None:
    log = EventLog()
    e1 = log.append(EventKind.CREATED, 3, "u3")
    e2 = log.append(EventKind.REBOOTED, 4, "u3", old_id=3)
    e3 = log.append(EventKind.RENAMED, 4, "u3", name="new")
    assert (e1.seq, e2.seq, e3.seq) == (1, 2, 3)
    assert log.latest == 3
    assert e1 == HostEvent(1, EventKind.CREATED, 3, "u3", None, None)
    assert e2 == HostEvent(2, EventKind.REBOOTED, 4, "u3", 3, None)
    assert e3 == HostEvent(3, EventKind.RENAMED, 4, "u3", None, "new")


def test_since_returns_exactly_the_later_events() -> None:
    log = EventLog()
    events = _fill(log, 5)
    for after in range(6):
        got, complete = log.since(after)
        assert complete
        assert got == tuple(events[after:])


def test_since_latest_is_empty_and_complete() -> None:
    log = EventLog()
    _fill(log, 3)
    assert log.since(3) == ((), True)


@pytest.mark.parametrize("after", [4, 100, -1, -100])
def test_since_beyond_latest_or_negative_is_incomplete(after: int) -> None:
    log = EventLog()
    _fill(log, 3)
    assert log.since(after) == ((), False)


def test_trimming_keeps_at_least_capacity_events() -> None:
    log = EventLog(3)
    events = _fill(log, 6)  # reaching 2 * capacity trims down to capacity
    assert log.latest == 6
    assert log.oldest_available == 3
    assert log.since(3) == (tuple(events[3:]), True)
    assert log.since(2) == ((), False)
    assert log.since(0) == ((), False)
    assert log.since(6) == ((), True)


@given(capacity=st.integers(1, 8), n=st.integers(0, 60), data=st.data())
@settings(max_examples=80, deadline=None)
def test_since_property(capacity: int, n: int, data: st.DataObject) -> None:
    log = EventLog(capacity)
    events = _fill(log, n)
    assert log.latest == n
    held = n - log.oldest_available
    assert held >= min(n, capacity)  # trimming keeps at least `capacity`
    assert held < 2 * capacity or n == 0
    after = data.draw(st.integers(-3, n + 3))
    got, complete = log.since(after)
    if after == n:
        assert (got, complete) == ((), True)
    elif log.oldest_available <= after < n:
        assert complete
        assert got == tuple(events[after:])
        assert [e.seq for e in got] == list(range(after + 1, n + 1))
    else:
        assert (got, complete) == ((), False)


# -- what the host emits ------------------------------------------------------------------


def _last(h: HostModel) -> HostEvent:
    batch = h.events_since(h.generation - 1)
    assert batch.complete
    (event,) = batch.events
    assert event.seq == h.generation
    return event


def test_generation_is_the_newest_seq(host: HostModel) -> None:
    assert host.generation == 0
    a = host.create("a")
    assert host.generation == 1
    host.pause(a.id)
    assert host.generation == 2
    batch = host.events_since(0)
    assert batch.latest == 2
    assert [e.seq for e in batch.events] == [1, 2]
    assert batch.boot_id == host.boot_id


def test_every_lifecycle_op_emits_its_event(host: HostModel) -> None:
    a = host.create("a")
    assert _last(host) == HostEvent(host.generation, EventKind.CREATED, a.id, a.uuid)
    host.pause(a.id)
    assert _last(host) == HostEvent(host.generation, EventKind.PAUSED, a.id, a.uuid)
    host.resume(a.id)
    assert _last(host) == HostEvent(host.generation, EventKind.RESUMED, a.id, a.uuid)
    host.rename(a.id, "b")
    assert _last(host) == HostEvent(host.generation, EventKind.RENAMED, a.id, a.uuid, name="b")
    r = host.reboot(a.id)
    assert _last(host) == HostEvent(host.generation, EventKind.REBOOTED, r.id, a.uuid,
                                    old_id=a.id)
    m = host.migrate(r.id)
    assert _last(host) == HostEvent(host.generation, EventKind.MIGRATED, m.id, a.uuid,
                                    old_id=r.id)
    host.crash(m.id)
    assert _last(host) == HostEvent(host.generation, EventKind.CRASHED, m.id, a.uuid)
    host.destroy(m.id)
    assert _last(host) == HostEvent(host.generation, EventKind.DESTROYED, m.id, a.uuid)
    c = host.create("c")
    host.save(c.id, "c.img")
    assert _last(host) == HostEvent(host.generation, EventKind.SAVED, c.id, c.uuid)
    c2 = host.restore("c.img")
    assert _last(host) == HostEvent(host.generation, EventKind.RESTORED, c2.id, c.uuid,
                                    name="c")  # the image's name
    host.shutdown(c2.id)
    assert _last(host) == HostEvent(host.generation, EventKind.SHUTDOWN, c2.id, c.uuid)


def test_act_emits_the_same_events(host: HostModel) -> None:
    a = host.create("a")
    host.act(Op.PAUSE, a.id, a.uuid)
    assert _last(host).kind is EventKind.PAUSED
    host.act(Op.MIGRATE, a.id, a.uuid)
    event = _last(host)
    assert (event.kind, event.old_id, event.uuid) == (EventKind.MIGRATED, a.id, a.uuid)


def test_refusals_and_non_lifecycle_changes_emit_nothing(host: HostModel) -> None:
    a = host.create("a")
    gen = host.generation
    host.set_blocked(a.id)
    host.set_blocked(a.id, False)
    host.rename(a.id, "a")
    host.restart_daemon()
    for bad in (lambda: host.resume(a.id), lambda: host.create("a"),
                lambda: host.destroy(0), lambda: host.restore("missing")):
        with pytest.raises(Exception):  # noqa: B017 - which error is tested elsewhere
            bad()
    assert host.generation == gen
    assert host.events_since(gen).events == ()


def test_the_kinds_classify_themselves() -> None:
    assert {k for k in EventKind if k.removes} == {
        EventKind.DESTROYED, EventKind.SHUTDOWN, EventKind.SAVED}
    assert {k for k in EventKind if k.adds} == {
        EventKind.CREATED, EventKind.RESTORED, EventKind.STARTED}
    assert {k for k in EventKind if k.moves} == {EventKind.REBOOTED, EventKind.MIGRATED}
    metadata = {EventKind.TITLE_CHANGED, EventKind.DESCRIPTION_CHANGED,
                EventKind.METADATA_CHANGED}
    assert {k for k in EventKind if k.definition_only} == {
        EventKind.DEFINED, EventKind.UNDEFINED, *metadata}  # who holds an ID is unchanged
    assert {k for k in EventKind if not k.lifecycle} == metadata
    assert {k.metadata for k in metadata} == set(MetadataKind)
    assert all(k.metadata is None for k in EventKind if k.lifecycle)


def test_events_since_with_timeout_zero_does_not_wait(host: HostModel) -> None:
    a = host.create("a")
    batch = host.events_since(host.generation, timeout=0)
    assert (batch.events, batch.complete, batch.latest) == ((), True, host.generation)
    batch = host.events_since(0, timeout=0)
    assert [(e.kind, e.id) for e in batch.events] == [(EventKind.CREATED, a.id)]
    assert batch.complete


def test_events_since_beyond_latest_is_incomplete(host: HostModel) -> None:
    host.create("a")
    batch = host.events_since(host.generation + 5)
    assert (batch.events, batch.complete) == ((), False)


def test_events_since_before_the_retained_window_is_incomplete(
        make_host_model: HostModels) -> None:
    h = make_host_model(clock=ManualClock(), event_capacity=2)
    try:
        a = h.create("a")
        for _ in range(3):
            h.pause(a.id)
            h.resume(a.id)
        assert h.generation == 7
        assert h.events_since(0).complete is False
        recent = h.events_since(h.generation - 2)
        assert recent.complete
        assert [e.kind for e in recent.events] == [EventKind.PAUSED, EventKind.RESUMED]
    finally:
        h.close()


def test_a_host_reboot_starts_a_new_log_under_a_new_boot_id(host: HostModel) -> None:
    for i in range(3):
        host.create(f"g{i}")
    old_boot, old_gen = host.boot_id, host.generation
    host.reboot_host()
    assert host.generation == 0
    batch = host.events_since(old_gen)
    assert batch.boot_id != old_boot
    assert batch.complete is False  # the reader is ahead of this boot: resnapshot


def test_event_waits_answer_at_once_once_ended() -> None:
    """A server stopping ends its long polls (``end_waits``): a wait then answers at
    once, with the events so far, and the host still serves."""
    host = HostModel(name="waits")
    latest = host.events_since(0).latest
    host.end_waits()
    batch = host.events_since(latest, timeout=3600)  # would hang the test without it
    assert batch.latest == latest and not batch.events
    assert host.event_waiters == 0
    host.create("after")  # still serving
    assert host.events_since(latest).latest > latest
