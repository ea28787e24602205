"""Concurrent clients for the conformance kit, and the judge of their answers.

While the kit's history runs in one thread, reader threads sample, list and look
domains up on connections of their own. A reader cannot know the host's state at
the instant its call was served, only the steps of the history it overlapped: it
notes the timeline's length before and after each call. An answer is right when
some state in that window agrees with it (C1: never a domain that is not, or not
there); a "no such domain" is wrong when one domain held the key through the whole
window (C2). Steps that take the service down (a host reboot, a daemon restart)
excuse errors and absences, never a wrong positive answer.

A domain defined and not running is in the states too, with ID -1 and state
SHUTOFF: name and UUID lookups find it (and must, if it stays), listings and
samples never show it.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xvirt.connection import Connection, Domain
from xvirt.errors import NoDomainError, XvirtError
from xvirt.model import DomainState

__all__ = ["Observation", "Readers", "Snapshot", "Timeline", "Window", "judge"]

#: uuid -> (id, name, state): the host's domains after one step of the history; a
#: domain defined and not running has ID -1 and state SHUTOFF.
Snapshot = dict[str, tuple[int, str, DomainState]]
#: A sample's members: (id, uuid, name, state).
Members = tuple[tuple[int, str, str, DomainState], ...]


@dataclass
class Timeline:
    """The host after every step (``snapshots[k]``: after step k, 0 the start), and
    the steps during which the service was down on purpose."""

    snapshots: list[Snapshot]
    disruptive: set[int] = field(default_factory=set)
    #: step -> domains it took down and up again (a reboot may be a destroy and a
    #: create): each may be missing for a moment though it is there before and after.
    touched: dict[int, set[str]] = field(default_factory=dict)
    #: States a host shows a domain in while a step starts, moves or stops it (QEMU's
    #: libvirt: paused while a guest starts up or is saved); empty for a Xen host.
    passing_states: frozenset[DomainState] = frozenset()
    #: step -> the domains it started, moved or stopped (found by ``advance``).
    passing: dict[int, set[str]] = field(default_factory=dict)
    _moved: threading.Condition = field(default_factory=threading.Condition, repr=False)
    #: reader -> the last step whose calls it has made (readers that have joined).
    _paced: dict[int, int] = field(default_factory=dict, repr=False)

    #: How long a step waits for a reader still making its calls for the step before.
    LAG_S = 0.5

    def now(self) -> int:
        """The step a call starting now may overlap: the last one recorded, or the next."""
        return len(self.snapshots)

    def advance(self, state: Snapshot) -> None:
        """Record the host after a step; wake readers waiting for it.

        First wait (at most ``LAG_S``) for every reader to have made its calls for
        the step under way: a history that outruns its readers on a busy machine
        would otherwise be overlapped by few calls, and the kit would test less than
        it says."""
        with self._moved:
            step = len(self.snapshots)
            self._moved.wait_for(
                lambda: all(done >= step for done in self._paced.values()), self.LAG_S)
            if self.passing_states and self.snapshots:
                before = self.snapshots[-1]
                self.passing[step] = {u for u in before.keys() | state.keys()
                                      if _where(before, u) != _where(state, u)}
            self.snapshots.append(state)
            self._moved.notify_all()

    def paced(self, reader: int, step: int) -> None:
        """Reader ``reader`` has made its calls for ``step``."""
        with self._moved:
            self._paced[reader] = step
            self._moved.notify_all()

    def leave(self, reader: int) -> None:
        """Reader ``reader`` stops: steps no longer wait for it."""
        with self._moved:
            self._paced.pop(reader, None)
            self._moved.notify_all()

    def touch(self, uuid: str) -> None:
        """The step under way takes ``uuid`` down and brings it back."""
        self.touched.setdefault(len(self.snapshots), set()).add(uuid)

    def wake(self) -> None:
        """Wake the waiting readers (to stop) without a step."""
        with self._moved:
            self._moved.notify_all()

    def wait_past(self, step: int, timeout: float) -> None:
        """Block until a step after ``step`` is recorded, at most ``timeout`` seconds."""
        with self._moved:
            self._moved.wait_for(lambda: len(self.snapshots) > step, timeout)

    def disrupt(self) -> None:
        """The step under way takes the service down."""
        self.disruptive.add(len(self.snapshots))

    def window(self, lo: int, hi: int) -> Window:
        """What a call seen at steps ``lo`` .. ``hi`` may have met (``hi < now()``)."""
        steps = range(lo, hi + 1)
        passing = set().union(*(self.passing.get(k, ()) for k in steps))
        return Window(self.snapshots[max(lo - 1, 0): hi + 1],
                      any(k in self.disruptive for k in steps),
                      set().union(*(self.touched.get(k, ()) for k in steps)),
                      {u: set(self.passing_states) for u in passing})


def _where(state: Snapshot, uuid: str) -> int | None:
    """The ID ``uuid`` runs at in ``state``; None when it does not run there."""
    rec = state.get(uuid)
    return rec[0] if rec is not None and rec[0] >= 0 else None


@dataclass
class Window:
    """The states one call overlapped: whether the service went down in between, and
    which domains were briefly away."""

    states: list[Snapshot]
    disrupted: bool
    touched: set[str]
    #: domains started, moved or stopped in the window -> the states shown meanwhile
    passing: dict[str, set[DomainState]] = field(default_factory=dict)

    def was(self, uuid: str, domid: int, name: str, state: DomainState) -> bool:
        """``uuid`` had that ID, name and state in a state of the window, or the state
        in passing, under an ID and name it had in one (see ``Timeline.passing_states``)."""
        return any(s.get(uuid) == (domid, name, state) for s in self.states) or (
            state in self.passing.get(uuid, ())
            and any(s.get(uuid, (None, None, None))[:2] == (domid, name) for s in self.states))

    def stayed(self, *, running: bool = False) -> set[str]:
        """Domains there (``running``: and running), and never away, through the whole
        window."""
        return set.intersection(*({u for u, rec in s.items() if not running or rec[0] >= 0}
                                  for s in self.states)) - self.touched

    def throughout(self, kind: str, key: Any) -> bool:
        """One domain answered to ``key`` (an ID, a name, a UUID) through the whole
        window and was never away in between."""
        if self.disrupted:
            return False
        if kind in ("uuid", "info"):
            return key in self.stayed()
        holders = {_holder(s, kind, key) for s in self.states}
        return len(holders) == 1 and not holders & ({None} | self.touched)


@dataclass(frozen=True)
class Observation:
    """One answer a reader got: ``kind`` of call, its key, and what came back
    (a UUID, a state, a sample's members; None for "no such domain"; for kind
    ``error`` the error's text)."""

    kind: str  # id, name, uuid, info, sample, error
    key: Any
    answer: Any
    lo: int
    hi: int


def _holder(state: Snapshot, kind: str, key: Any) -> str | None:
    """The UUID holding an ID (a running domain) or a name in one state."""
    if kind == "id":
        return next((u for u, rec in state.items() if rec[0] == key and rec[0] >= 0), None)
    return next((u for u, rec in state.items() if rec[1] == key), None)


def _sample_fault(w: Window, members: Members) -> str | None:
    uuids = [m[1] for m in members]
    if len(set(uuids)) != len(uuids):
        return "a domain twice"
    for domid, uuid, name, state in members:
        if domid < 0 or not w.was(uuid, domid, name, state):
            seen = [s.get(uuid) for s in w.states]
            return (f"member ({domid}, {uuid}, {name!r}, {state.name}) in no state of its "
                    f"window, where it was {seen}")
    missing = set() if w.disrupted else w.stayed(running=True) - set(uuids)
    return f"left out {sorted(missing)}, alive throughout" if missing else None


def _list_fault(w: Window, ids: tuple[int, ...]) -> str | None:
    for domid in ids:
        if not any(_holder(s, "id", domid) is not None for s in w.states):
            return f"ID {domid}, which nobody held in its window"
    missing = [i for i in {r[0] for r in w.states[0].values() if r[0] >= 0}
               if w.throughout("id", i) and i not in ids]
    return f"left out {sorted(missing)}, held throughout" if missing else None


def judge(ob: Observation, timeline: Timeline) -> str | None:
    """What is wrong with an answer (None: it is right at some instant of its call)."""
    w = timeline.window(ob.lo, ob.hi)
    states = w.states
    if ob.kind == "error":
        return None if w.disrupted else f"error with the service up: {ob.answer}"
    if ob.kind == "sample":
        fault = _sample_fault(w, ob.answer)
        return None if fault is None else f"sample(): {fault}"
    if ob.kind == "list":
        fault = _list_fault(w, ob.answer)
        return None if fault is None else f"list_domain_ids(): {fault}"
    what = f"{ob.kind} {ob.key!r} -> {ob.answer!r} in steps {ob.lo}..{ob.hi}"
    if ob.answer is None:
        if w.throughout(ob.kind, ob.key):
            return f"C2: {what}, but one domain held it throughout"
        return None
    if ob.kind == "info":
        right = any(s.get(ob.key, (0, "", None))[2] is ob.answer for s in states) or (
            ob.answer in w.passing.get(ob.key, ())) or (
            # a domain taken down and up again (a persistent one: stopped and started)
            # was shut off in between
            ob.answer is DomainState.SHUTOFF and ob.key in w.touched)
    elif ob.kind == "uuid":
        right = ob.answer == ob.key and any(ob.key in s for s in states)
    else:
        right = any(_holder(s, ob.kind, ob.key) == ob.answer for s in states)
    return None if right else f"C1: {what}, which no state of that window has"


class Readers:
    """``count`` reader threads, two to a connection (a shared cache under contention)
    and each pair on its own (clients that do not share one).

    Each makes ``per_step`` calls, then waits for the history's next step (at most
    ``PATIENCE_S``): enough to overlap every step, not so many that readers starve
    the history of the interpreter. The history in turn waits for a reader still
    making its calls (``Timeline.advance``), so every step is overlapped by each
    reader's calls however busy the machine is.
    """

    PATIENCE_S = 0.05

    def __init__(self, connect: Callable[[], Connection], timeline: Timeline, count: int,
                 *, names: Sequence[str], known: Callable[[], Sequence[str]],
                 max_domid: int, seed: int = 0, per_step: int = 3) -> None:
        self._timeline = timeline
        self._per_step = per_step
        self._names = tuple(names)
        self._known = known
        self._max_domid = max_domid
        self._stop = threading.Event()
        self.observations: list[Observation] = []
        self._lock = threading.Lock()
        self._conns = [connect() for _ in range((count + 1) // 2)]
        self._threads = [
            threading.Thread(target=self._run, args=(self._conns[i // 2], seed * 1000 + i, i),
                             name=f"conformance-reader-{i}", daemon=True)
            for i in range(count)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._timeline.wake()
        for t in self._threads:
            t.join(60)
        for conn in self._conns:
            with contextlib.suppress(XvirtError):
                conn.close()

    def take(self, complete_before: int) -> list[Observation]:
        """Remove and return the observations whose windows have ended."""
        with self._lock:
            done = [o for o in self.observations if o.hi < complete_before]
            if done:
                self.observations = [o for o in self.observations if o.hi >= complete_before]
        return done

    # -- a reader -------------------------------------------------------------------

    def _run(self, conn: Connection, seed: int, index: int) -> None:
        rng = random.Random(seed)
        moves: tuple[Callable[[Connection, random.Random], None], ...] = (
            self._listing, self._by_name, self._by_uuid, self._sample)
        try:
            while not self._stop.is_set():
                step = self._timeline.now()
                for _ in range(self._per_step):
                    rng.choice(moves)(conn, rng)
                self._timeline.paced(index, step)
                self._timeline.wait_past(step, self.PATIENCE_S)
        finally:
            self._timeline.leave(index)

    def _note(self, kind: str, key: Any, answer: Any, lo: int) -> None:
        ob = Observation(kind, key, answer, lo, self._timeline.now())
        with self._lock:
            self.observations.append(ob)

    def _call(self, kind: str, key: Any, call: Callable[[], Any]) -> Any:
        """Run one call and note its answer; returns it (None: gone or failed)."""
        lo = self._timeline.now()
        try:
            answer = call()
        except NoDomainError:
            self._note(kind, key, None, lo)
            return None
        except XvirtError as exc:
            self._note("error", kind, f"{type(exc).__name__}: {exc}", lo)
            return None
        return answer, lo

    def _lookup(self, conn: Connection, kind: str, key: Any) -> None:
        lookups: dict[str, Callable[[Any], Domain]] = {
            "id": conn.lookup_by_id, "name": conn.lookup_by_name, "uuid": conn.lookup_by_uuid}
        lookup = lookups[kind]
        got = self._call(kind, key, lambda: lookup(key))
        if got is None:
            return
        dom, lo = got
        self._note(kind, key, dom.uuid, lo)
        info = self._call("info", dom.uuid, dom.info)
        if info is not None:
            self._note("info", dom.uuid, info[0].state, info[1])
        dom.close()

    def _listing(self, conn: Connection, rng: random.Random) -> None:
        """The monitoring loop: list, then each ID (and one that may be free)."""
        ids = self._call("list", None, conn.list_domain_ids)
        if ids is None:
            return
        self._note("list", None, tuple(ids[0]), ids[1])
        for domid in [*ids[0], rng.randrange(self._max_domid + 1)]:
            self._lookup(conn, "id", domid)

    def _by_name(self, conn: Connection, rng: random.Random) -> None:
        self._lookup(conn, "name", rng.choice(self._names))

    def _by_uuid(self, conn: Connection, rng: random.Random) -> None:
        known = self._known()
        if known:
            self._lookup(conn, "uuid", rng.choice(known))

    def _sample(self, conn: Connection, rng: random.Random) -> None:
        got = self._call("sample", None, conn.sample)
        if got is not None:
            members = tuple((s.identity.id, s.identity.uuid, s.identity.name, s.info.state)
                            for s in got[0])
            self._note("sample", None, members, got[1])
