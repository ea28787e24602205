"""The mirror: replaying its event log must rebuild exactly what it holds, after any
sequence of observations (that is what lets the cache trust a generation). A domain
observed inactive (ID -1) is never held live, and a change of definition changes nothing
live (the cache ignores it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.drivers.libvirt_mirror import Mirror
from xvirt.model import EventKind

UUIDS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]
NAMES = ["a", "b", "c"]


def replay(mirror: Mirror) -> dict[str, tuple[int, str]]:
    """What a reader of the log alone knows: uuid -> (id, name)."""
    events, complete = mirror.since(0)
    assert complete
    state: dict[str, tuple[int, str]] = {}
    for e in events:
        if e.kind.definition_only:
            # Under the ID and name it is live with, as the log says at that point.
            assert (e.id, e.name) == state.get(e.uuid, (-1, e.name)), e
            continue
        if e.kind.removes:
            state.pop(e.uuid, None)
        elif e.kind is EventKind.RENAMED:
            assert e.name is not None
            state[e.uuid] = (e.id, e.name)
        elif e.uuid not in state:
            assert e.name is not None, f"an arrival without a name: {e}"
            state[e.uuid] = (e.id, e.name)
        else:
            state[e.uuid] = (e.id, state[e.uuid][1])
    return state


def held(mirror: Mirror) -> dict[str, tuple[int, str]]:
    return dict(mirror._where)


observation = st.one_of(
    st.tuples(st.just("saw"), st.integers(1, 6), st.sampled_from(UUIDS), st.sampled_from(NAMES)),
    st.tuples(st.just("gone"), st.sampled_from(UUIDS)),
    st.tuples(st.just("vacant"), st.integers(1, 6)),
    st.tuples(st.just("census"), st.dictionaries(
        st.sampled_from(UUIDS), st.tuples(st.integers(-1, 6), st.sampled_from(NAMES)))),
    st.tuples(st.just("inactive"), st.sampled_from(UUIDS), st.sampled_from(NAMES)),
    st.tuples(st.just("definition"), st.sampled_from(UUIDS), st.sampled_from(NAMES),
              st.sampled_from([EventKind.DEFINED, EventKind.UNDEFINED])),
)


@given(st.lists(observation, max_size=40))
def test_the_log_rebuilds_the_mirror_after_any_observations(steps: list[tuple]) -> None:
    mirror = Mirror()
    for step in steps:
        if step[0] == "saw":
            _, domid, uuid, name = step
            displaced = mirror.saw(domid, uuid, name)
            if displaced is not None:
                mirror.gone(displaced)  # as the driver's re-observation may find
        elif step[0] == "gone":
            mirror.gone(step[1])
        elif step[0] == "vacant":
            believed = mirror.vacant(step[1])
            if believed is not None:
                mirror.gone(believed)
        elif step[0] == "inactive":  # a lookup found it defined, not running
            assert mirror.saw(-1, step[1], step[2]) is None
            assert step[1] not in mirror
        elif step[0] == "definition":
            before = held(mirror)
            mirror.definition(step[1], step[2], step[3])
            assert held(mirror) == before
        else:
            by_id: dict[int, tuple[str, str]] = {}
            for uuid, (domid, name) in step[1].items():
                by_id.setdefault(domid, (uuid, name))  # IDs are unique at one instant
            mirror.census([(d, u, n) for d, (u, n) in by_id.items()])
        assert replay(mirror) == held(mirror)
        assert mirror.generation == len(mirror.since(0)[0])
        assert all(domid >= 0 for domid, _ in held(mirror).values())
        assert mirror.holder(-1) is None


def test_an_unchanged_observation_makes_no_event() -> None:
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a")
    gen = mirror.generation
    mirror.saw(3, UUIDS[0], "a")
    mirror.census([(3, UUIDS[0], "a")])
    assert mirror.generation == gen


def test_a_new_id_is_a_move_and_a_new_name_a_rename() -> None:
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a")
    mirror.saw(7, UUIDS[0], "b")
    kinds = [(e.kind, e.id, e.old_id, e.name) for e in mirror.since(1)[0]]
    assert kinds == [(EventKind.REBOOTED, 7, 3, None), (EventKind.RENAMED, 7, None, "b")]


def test_another_domain_at_a_known_id_is_reported_displaced() -> None:
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a")
    assert mirror.saw(3, UUIDS[1], "b") == UUIDS[0]
    assert mirror.holder(3) == UUIDS[1]
    assert mirror.vacant(3) == UUIDS[1]
    assert mirror.vacant(3) is None


def test_departures_keep_their_kind() -> None:
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a", EventKind.RESTORED)
    mirror.gone(UUIDS[0], EventKind.SAVED)
    mirror.gone(UUIDS[0], EventKind.SAVED)  # twice: one event
    assert [e.kind for e in mirror.since(0)[0]] == [EventKind.RESTORED, EventKind.SAVED]
    assert len(mirror) == 0


def test_the_domain_last_seen_at_an_id_is_named_while_it_is_held_departed() -> None:
    """A departure may be older than the call that reports it (the worker observed it
    before): whoever next finds that ID empty, or taken, observes the domain again."""
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a")
    assert mirror.departed(3) is None  # live there: vacant() names it
    mirror.gone(UUIDS[0])
    assert mirror.departed(3) == UUIDS[0]
    assert mirror.vacant(3) is None
    mirror.saw(5, UUIDS[0], "a")  # back elsewhere: a cache that follows it moves it
    assert mirror.departed(3) is None
    mirror.gone(UUIDS[0])
    assert mirror.departed(3) == mirror.departed(5) == UUIDS[0]
    # The ID taken by another (libvirt reuses IDs after a libvirtd restart).
    assert mirror.saw(3, UUIDS[1], "b") == UUIDS[0]
    assert mirror.departed(3) is None and mirror.departed(5) == UUIDS[0]


def test_the_ids_last_seen_are_bounded() -> None:
    mirror = Mirror(capacity=4)
    for domid in range(1, 10):
        mirror.saw(domid, UUIDS[domid % 5], "a" if domid % 2 else "b")
        mirror.gone(UUIDS[domid % 5])
    assert len(mirror._last_at) == 4
    assert mirror.departed(1) is None and mirror.departed(9) == UUIDS[4]


def test_an_inactive_observation_is_a_departure_and_a_definition_changes_nothing() -> None:
    mirror = Mirror()
    mirror.saw(3, UUIDS[0], "a")
    mirror.definition(UUIDS[0], "a", EventKind.DEFINED)  # running, made persistent
    mirror.saw(-1, UUIDS[0], "a")  # then found shut off
    mirror.definition(UUIDS[1], "b", EventKind.DEFINED)
    mirror.census([(-1, UUIDS[1], "b"), (4, UUIDS[2], "c")])
    mirror.definition(UUIDS[1], "b", EventKind.UNDEFINED)
    assert [(e.kind, e.id, e.uuid, e.name) for e in mirror.since(0)[0]] == [
        (EventKind.CREATED, 3, UUIDS[0], "a"),
        (EventKind.DEFINED, 3, UUIDS[0], "a"),
        (EventKind.DESTROYED, 3, UUIDS[0], None),
        (EventKind.DEFINED, -1, UUIDS[1], "b"),
        (EventKind.CREATED, 4, UUIDS[2], "c"),
        (EventKind.UNDEFINED, -1, UUIDS[1], "b"),
    ]
    assert held(mirror) == {UUIDS[2]: (4, "c")} and mirror.holder(3) is None
    with pytest.raises(ValueError):
        mirror.definition(UUIDS[2], "c", EventKind.CREATED)
