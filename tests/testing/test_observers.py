"""The judge of concurrent answers: right answers pass, each kind of wrong one is named."""

from __future__ import annotations

import pytest

from xvirt.model import DomainState
from xvirt.testing.observers import Observation, Snapshot, Timeline, judge

R, P = DomainState.RUNNING, DomainState.PAUSED
A, B, C = "uuid-a", "uuid-b", "uuid-c"


def _timeline() -> Timeline:
    """Step 1: B takes ID 2 from A (A saved); step 2: A comes back at 3; step 3: C paused."""
    states: list[Snapshot] = [
        {A: (2, "a", R), C: (1, "c", R)},
        {B: (2, "b", R), C: (1, "c", R)},
        {B: (2, "b", R), C: (1, "c", R), A: (3, "a", R)},
        {B: (2, "b", R), C: (1, "c", P), A: (3, "a", R)},
    ]
    return Timeline(states)


@pytest.mark.parametrize("ob", [
    Observation("id", 2, A, 1, 1),  # the call began before step 1 could end
    Observation("id", 2, B, 1, 3),
    Observation("id", 3, None, 1, 2),  # A came back during the call
    Observation("name", "a", None, 2, 2),
    Observation("uuid", A, A, 3, 3),
    Observation("info", C, P, 3, 3),
    Observation("info", C, R, 3, 3),  # before step 3 ended
    Observation("list", None, (1, 2), 2, 2),
    Observation("sample", None, ((1, C, "c", R), (2, B, "b", R)), 2, 2),
])
def test_an_answer_true_at_some_instant_of_its_call_passes(ob: Observation) -> None:
    assert judge(ob, _timeline()) is None


@pytest.mark.parametrize(("ob", "fault"), [
    (Observation("id", 2, A, 2, 3), "C1"),  # A left ID 2 before the call began
    (Observation("id", 1, None, 1, 3), "C2"),  # C held ID 1 throughout
    (Observation("name", "b", B, 1, 1), None),
    (Observation("name", "c", A, 1, 1), "C1"),
    (Observation("uuid", C, None, 2, 3), "C2"),
    (Observation("uuid", A, B, 3, 3), "C1"),  # a lookup by UUID that returned another
    (Observation("info", C, R, 4, 4), "C1"),  # paused in step 3, before the call
    (Observation("error", "sample", "HostUnreachableError: down", 2, 2), "service up"),
    (Observation("list", None, (2,), 2, 2), "left out [1]"),
    (Observation("list", None, (1, 2, 5), 2, 2), "ID 5"),
    (Observation("sample", None, ((2, B, "b", R),), 2, 3), "left out"),
    (Observation("sample", None, ((1, C, "old", R), (2, B, "b", R)), 2, 2), "no state"),
    (Observation("sample", None, ((1, C, "c", R), (1, C, "c", R)), 2, 2), "twice"),
])
def test_a_wrong_answer_is_named(ob: Observation, fault: str | None) -> None:
    timeline = _timeline()
    timeline.snapshots.append(dict(timeline.snapshots[-1]))  # a quiet step 4
    verdict = judge(ob, timeline)
    if fault is None:
        assert verdict is None
    else:
        assert verdict is not None and fault in verdict, verdict


def test_a_disrupted_window_excuses_errors_and_absences_but_not_wrong_domains() -> None:
    timeline = _timeline()
    timeline.disruptive.add(2)
    assert judge(Observation("error", "id", "HostUnreachableError: x", 2, 2), timeline) is None
    assert judge(Observation("id", 1, None, 2, 2), timeline) is None
    assert judge(Observation("sample", None, (), 2, 2), timeline) is None
    verdict = judge(Observation("id", 1, A, 2, 2), timeline)
    assert verdict is not None and verdict.startswith("C1")


def test_a_domain_briefly_away_in_a_step_may_be_missed_then_only() -> None:
    timeline = _timeline()
    timeline.touched[3] = {C}  # C rebooted in step 3 (a destroy and a create)
    assert judge(Observation("uuid", C, None, 3, 3), timeline) is None
    assert judge(Observation("id", 1, None, 3, 3), timeline) is None
    verdict = judge(Observation("uuid", C, None, 2, 2), timeline)
    assert verdict is not None and verdict.startswith("C2")


S = DomainState.SHUTOFF
D = "uuid-d"


def _defined_timeline() -> Timeline:
    """D is defined and shut off (ID -1), starts at 4 in step 1, stops (stays defined)
    in step 3; C runs throughout."""
    states: list[Snapshot] = [
        {C: (1, "c", R), D: (-1, "d", S)},
        {C: (1, "c", R), D: (4, "d", R)},
        {C: (1, "c", R), D: (4, "d", R)},
        {C: (1, "c", R), D: (-1, "d", S)},
        {C: (1, "c", R), D: (-1, "d", S)},
    ]
    return Timeline(states)


@pytest.mark.parametrize("ob", [
    Observation("name", "d", D, 4, 4),  # defined: found by name and by UUID
    Observation("uuid", D, D, 1, 4),
    Observation("info", D, S, 4, 4),
    Observation("info", D, R, 1, 3),  # running during the call
    Observation("list", None, (1,), 4, 4),  # a listing never shows a defined domain
    Observation("sample", None, ((1, C, "c", R),), 4, 4),
    Observation("sample", None, ((1, C, "c", R), (4, D, "d", R)), 2, 2),
])
def test_a_defined_domain_is_judged_as_one(ob: Observation) -> None:
    assert judge(ob, _defined_timeline()) is None


@pytest.mark.parametrize(("ob", "fault"), [
    (Observation("name", "d", None, 4, 4), "C2"),  # defined throughout: must be found
    (Observation("uuid", D, None, 1, 4), "C2"),  # running or defined throughout
    (Observation("info", D, R, 4, 4), "C1"),  # shut off throughout the call
    (Observation("info", D, S, 2, 2), "C1"),  # running throughout the call
    (Observation("id", -1, D, 4, 4), "C1"),  # no lookup by ID finds a defined domain
    (Observation("list", None, (-1, 1), 4, 4), "ID -1"),
    (Observation("sample", None, ((-1, D, "d", S), (1, C, "c", R)), 4, 4), "no state"),
    (Observation("sample", None, ((1, C, "c", R),), 2, 2), "left out"),  # D ran throughout
])
def test_a_wrong_answer_about_a_defined_domain_is_named(ob: Observation, fault: str) -> None:
    verdict = judge(ob, _defined_timeline())
    assert verdict is not None and fault in verdict, verdict


def test_a_persistent_domain_moved_may_be_seen_shut_off_in_between() -> None:
    """libvirt moves a persistent guest by a stop and a start: shut off for a moment."""
    timeline = Timeline([{D: (4, "d", R)}, {D: (5, "d", R)}])
    ob = Observation("info", D, S, 1, 1)
    assert judge(ob, timeline) is not None
    timeline.touched[1] = {D}
    assert judge(ob, timeline) is None


def test_a_domain_a_step_starts_may_be_seen_in_passing_under_its_id_and_name_only() -> None:
    """QEMU's libvirt starts a guest paused, then resumes it: on a host that says so
    (``passing_states``), a step that starts D may show it paused, under the ID and name
    it has before or after the step; no other domain, and no other step."""
    steps: list[Snapshot] = [{C: (1, "c", R)}, {C: (1, "c", R), D: (4, "d", R)},
                             {C: (1, "c", R), D: (4, "d", R)}]
    paused = Observation("sample", None, ((1, C, "c", R), (4, D, "d", P)), 1, 1)
    info = Observation("info", D, P, 1, 1)
    plain = Timeline([steps[0]])
    for s in steps[1:]:
        plain.advance(s)
    assert judge(paused, plain) is not None and judge(info, plain) is not None
    timeline = Timeline([steps[0]], passing_states=frozenset({P}))
    for s in steps[1:]:
        timeline.advance(s)
    assert timeline.passing == {1: {D}, 2: set()}
    assert judge(paused, timeline) is None and judge(info, timeline) is None
    other_id = Observation("sample", None, ((1, C, "c", R), (5, D, "d", P)), 1, 1)
    assert "in no state of its window" in (judge(other_id, timeline) or "")
    not_started = Observation("sample", None, ((1, C, "c", P), (4, D, "d", R)), 1, 1)
    assert judge(not_started, timeline) is not None
    assert judge(Observation("info", D, P, 2, 2), timeline) is not None  # a later step
