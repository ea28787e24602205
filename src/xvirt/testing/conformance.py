"""The driver conformance kit: random host histories against a reference model.

``check_driver(factory)`` drives a host and an xvirt connection through
random histories (every lifecycle operation, by the host and through held
handles, ID reuse under a small random ID space, closed handles, host
reboots, daemon restarts, cold reconnects) and after every step checks the
contract:

* the host agrees with the reference model (who is alive, names, states);
* C1/C2: lookups by every ID in the space, every name and every UUID ever
  seen succeed exactly when the host has that domain, and return it;
* C3: held handles follow their domain to new IDs and raise NoDomainError
  once it is gone; closed handles raise HandleClosedError;
* C4: every action the client's requests caused landed on the handle's UUID;
* C6: closing handles does not shrink the cache;
* C7: after a snapshot the cache holds no more than the live domains;
* C8: a host reboot invalidates every old handle; a daemon restart costs no
  control-plane request for domains already known.

Any driver can be checked: give a factory returning a ``Target``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from xvirt.connection import Connection, Domain
from xvirt.errors import HandleClosedError, NoDomainError, OperationFailedError
from xvirt.host.hypervisor import DomainRecord
from xvirt.model import DomainState
from xvirt.testing.observers import Readers, Snapshot, Timeline, judge
from xvirt.testing.targets import StoreFaults, Target

__all__ = ["ConformanceReport", "ContractViolation", "check_driver", "conformance_machine"]

_NAMES = tuple(f"g{i}" for i in range(6))  # a small pool, so names are reused
#: What a target may be unable to do; a target lists what it can in ``capabilities``
#: (default: these). A Xen host can do all of it; libvirt's test driver cannot
#: crash a guest, rename a running one, or (in this process) reboot the host.
#: ``refuse_commits`` (a host with a store that can be made to refuse, the daemon) is
#: not in the default set: a target that can offers ``host.refuse_commits(n)``.
CAPABILITIES = frozenset(
    {"crash", "rename", "shutdown_paused", "reboot_host", "restart_daemon"})
_RUNNABLE = {DomainState.RUNNING, DomainState.BLOCKED}


class ContractViolation(AssertionError):
    """The driver and cache broke a clause of the contract."""


@dataclass
class _Ref:
    """The reference model's view of one live guest."""

    name: str
    state: DomainState


@dataclass
class ConformanceReport:
    """What the histories exercised, so a suite can show it hit the hard cases."""

    steps: int = 0
    id_reuses: int = 0  # a guest appeared at an ID another UUID held before
    moves: int = 0  # a guest changed ID (reboot, migrate, restore)
    host_reboots: int = 0
    daemon_restarts: int = 0
    concurrent_answers: int = 0  # readers' answers judged against the timeline
    refused_commits: int = 0  # changes the host's store refused: told so, never seen


def _violate(clause: str, detail: str) -> ContractViolation:
    return ContractViolation(f"{clause} violated: {detail}")


#: Gone UUIDs looked up after each step: a rotating slice, so every one is asked
#: again now and then while a long history's cost per step stays bounded.
_GONE_PER_STEP = 6


def _snapshot(records: list[DomainRecord]) -> Snapshot:
    return {r.uuid: (r.id, r.name, r.state) for r in records}


def conformance_machine(
    factory: Callable[[], Target], report: ConformanceReport | None = None,
    *, readers: int = 0, restart_gap: int = 0,
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``factory``; run it with hypothesis.

    ``readers`` > 0 runs that many client threads beside the history, each answer
    judged against the host's states during its call (see ``observers``).
    ``restart_gap``: at least that many steps between host reboots and daemon
    restarts (a real daemon takes a while to restart; long runs space them out).
    """
    tally = report if report is not None else ConformanceReport()

    class Conformance(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.target = factory()
            self.host = self.target.host
            self.caps: frozenset[str] = getattr(self.target, "capabilities", CAPABILITIES)
            self.conn: Connection = self.target.connect()
            self.alive: dict[str, _Ref] = {}  # guests only; Domain-0 is implicit
            self.images: dict[str, tuple[str, str]] = {}  # image -> (uuid, name)
            self.handles: list[Domain] = []
            self.closed_handles: list[Domain] = []
            self.seen_uuids: set[str] = set()
            self.seen_names: set[str] = set(_NAMES)
            self.boot = self.host.boot_id
            self.pre_boot_handles: list[Domain] = []
            self._images = itertools.count(1)
            self.id_owner: dict[int, str] = {}
            self.uuid_at: dict[str, int] = {}
            self.steps = 0
            self.last_disruption = -restart_gap
            for rec in self.host.domains():
                if rec.id != 0:
                    self.alive[rec.uuid] = _Ref(rec.name, rec.state)
                self.seen_uuids.add(rec.uuid)
            self.known: tuple[str, ...] = tuple(sorted(self.seen_uuids))
            self.timeline = Timeline([_snapshot(self.truth())])
            self.readers: Readers | None = None
            if readers:
                self.readers = Readers(
                    lambda: self.target.connect(readonly=True), self.timeline, readers,
                    names=_NAMES, known=lambda: self.known, max_domid=self.host.max_domid)

        def teardown(self) -> None:
            try:
                if self.readers is not None:
                    self.readers.stop()
                    self.timeline.advance(_snapshot(self.truth()))
                    self.judge_readers()
            finally:
                self.conn.close()
                self.target.close()

        def judge_readers(self) -> None:
            """Judge every reader answer whose call's window is over."""
            assert self.readers is not None
            for ob in self.readers.take(self.timeline.now()):
                tally.concurrent_answers += 1
                fault = judge(ob, self.timeline)
                if fault is not None:
                    raise _violate("C1/C2 (concurrent reader)", fault)

        # -- helpers ---------------------------------------------------------------

        def truth(self) -> list[DomainRecord]:
            return self.host.domains()

        def guest_ids(self) -> list[int]:
            return sorted(r.id for r in self.truth() if r.id != 0)

        def free_ids(self) -> int:
            return self.host.max_domid - len(self.alive)

        def pick_guest(self, data: st.DataObject) -> DomainRecord:
            recs = [r for r in self.truth() if r.id != 0]
            return data.draw(st.sampled_from(recs), label="guest")

        def free_name(self, data: st.DataObject) -> str | None:
            taken = {r.name for r in self.alive.values()}
            free = [n for n in _NAMES if n not in taken]
            return data.draw(st.sampled_from(free), label="name") if free else None

        def can_shut_down(self, state: DomainState) -> bool:
            return state in _RUNNABLE or (
                state is DomainState.PAUSED and "shutdown_paused" in self.caps)

        def expect(self, ok: bool, action: Callable[[], Any], what: str) -> Any:
            """Run an action whose success the model predicts; they must agree."""
            try:
                result = action()
            except (OperationFailedError, NoDomainError) as exc:
                if ok:
                    raise AssertionError(
                        f"{what} failed but the model expected success: {exc}"
                    ) from exc
                return None
            if not ok:
                raise AssertionError(f"{what} succeeded but the model expected a refusal")
            return result

        # -- the outside world acts on the host ------------------------------------------

        @rule(data=st.data())
        def create(self, data: st.DataObject) -> None:
            name = self.free_name(data)
            if name is None:
                return
            rec = self.expect(self.free_ids() > 0, lambda: self.host.create(name), "create")
            if rec is not None:
                self.alive[rec.uuid] = _Ref(name, DomainState.RUNNING)
                self.seen_uuids.add(rec.uuid)

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data(), how=st.sampled_from(["destroy", "shutdown", "crash"]))
        def stop(self, data: st.DataObject, how: str) -> None:
            rec = self.pick_guest(data)
            ref = self.alive[rec.uuid]
            if how == "crash" and "crash" not in self.caps:
                how = "destroy"
            if how == "destroy":
                self.host.destroy(rec.id)
                del self.alive[rec.uuid]
            elif how == "shutdown":
                ok = self.can_shut_down(ref.state)
                self.expect(ok, lambda: self.host.shutdown(rec.id), "shutdown")
                if ok:
                    del self.alive[rec.uuid]
            else:
                self.host.crash(rec.id)
                ref.state = DomainState.CRASHED

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data(), pause=st.booleans())
        def pause_or_resume(self, data: st.DataObject, pause: bool) -> None:
            rec = self.pick_guest(data)
            ref = self.alive[rec.uuid]
            if pause:
                ok = ref.state in _RUNNABLE
                self.expect(ok, lambda: self.host.pause(rec.id), "pause")
                if ok:
                    ref.state = DomainState.PAUSED
            else:
                ok = ref.state is DomainState.PAUSED
                self.expect(ok, lambda: self.host.resume(rec.id), "resume")
                if ok:
                    ref.state = DomainState.RUNNING

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data(), reboot=st.booleans())
        def move(self, data: st.DataObject, reboot: bool) -> None:
            """Reboot or migrate: same UUID and name, a new ID."""
            rec = self.pick_guest(data)
            self.timeline.touch(rec.uuid)
            act = self.host.reboot if reboot else self.host.migrate
            new = self.expect(self.free_ids() > 0, lambda: act(rec.id), "reboot/migrate")
            if new is not None:
                if new.id == rec.id or new.uuid != rec.uuid or new.name != rec.name:
                    raise AssertionError(f"host moved {rec} to {new}: not a new ID, same identity")
                self.alive[rec.uuid].state = DomainState.RUNNING

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data())
        def save(self, data: st.DataObject) -> None:
            rec = self.pick_guest(data)
            image = f"img{next(self._images)}"
            self.host.save(rec.id, image)
            self.images[image] = (rec.uuid, self.alive.pop(rec.uuid).name)

        @precondition(lambda self: bool(self.images))
        @rule(data=st.data(), by_client=st.booleans())
        def restore(self, data: st.DataObject, by_client: bool) -> None:
            image = data.draw(st.sampled_from(sorted(self.images)), label="image")
            uuid, name = self.images[image]
            taken = {r.name for r in self.alive.values()}
            ok = uuid not in self.alive and name not in taken and self.free_ids() > 0
            if by_client:
                dom = self.expect(ok, lambda: self.conn.restore(image), "conn.restore")
                if dom is not None:
                    if dom.uuid != uuid:
                        raise _violate("C3", f"restore returned {dom.uuid}, image held {uuid}")
                    self.handles.append(dom)
            else:
                self.expect(ok, lambda: self.host.restore(image), "host.restore")
            if ok:
                del self.images[image]
                self.alive[uuid] = _Ref(name, DomainState.RUNNING)

        @precondition(lambda self: bool(self.alive) and "rename" in self.caps)
        @rule(data=st.data())
        def rename(self, data: st.DataObject) -> None:
            rec = self.pick_guest(data)
            new = self.free_name(data)
            if new is None:
                return
            self.host.rename(rec.id, new)
            self.alive[rec.uuid].name = new

        @precondition(lambda self: "refuse_commits" in self.caps)
        @rule(data=st.data(), how=st.sampled_from(["create", "destroy", "pause", "save"]))
        def refused_change(self, data: st.DataObject, how: str) -> None:
            """The host's store refuses the change (a full disk, a held lock): the one
            who asked is told, and nothing of it shows, now or after a restart (the
            model stays as it was, and ``host_matches_model`` checks the host)."""
            running = [u for u, r in self.alive.items() if r.state in _RUNNABLE]
            name = self.free_name(data)
            if how == "create" and (name is None or not self.free_ids()):
                return
            if how != "create" and not running:
                return
            uuid = data.draw(st.sampled_from(sorted(running)), label="guest") if running else ""
            refuse = cast(StoreFaults, self.host).refuse_commits
            refuse(1)
            try:
                if how == "create":
                    assert name is not None
                    self.host.create(name)
                else:  # through a client's handle: C4's path, refused by the store
                    dom = self.conn.lookup_by_uuid(uuid)
                    if how == "save":
                        dom.save(f"img{next(self._images)}")
                    else:
                        getattr(dom, how)()
            except OperationFailedError:
                tally.refused_commits += 1
            else:
                raise AssertionError(f"a {how} the store refused was acknowledged")
            finally:
                refuse(0)

        # both: else too frequent, few other rules apply
        def may_disrupt(self) -> bool:
            return len(self.alive) >= 2 and self.steps - self.last_disruption >= restart_gap

        @precondition(lambda self: self.may_disrupt() and "reboot_host" in self.caps)
        @rule()
        def reboot_host(self) -> None:
            self.timeline.disrupt()
            self.last_disruption = self.steps
            self.host.reboot_host()
            self.alive.clear()
            self.pre_boot_handles = [h for h in self.handles]
            tally.host_reboots += 1
            if self.host.boot_id == self.boot:
                raise AssertionError("reboot_host kept the boot identity")
            self.boot = self.host.boot_id
            # The first answer from the new boot (one lookup, no listing; no Domain-0
            # outside Xen)...
            with contextlib.suppress(NoDomainError):
                self.conn.lookup_by_id(0)
            live = len(self.truth())  # ...leaves nothing of the old one (Domain-0 on Xen)
            if self.conn.stats().cache_size > live:
                raise _violate("C8", f"{self.conn.stats().cache_size} entries survived a "
                                     f"reboot to {live} live domains")

        @precondition(lambda self: self.may_disrupt() and "restart_daemon" in self.caps)
        @rule()
        def restart_daemon(self) -> None:
            """C8: the daemon restarts; known domains cost no control request after."""
            known = [r for r in self.truth()]
            for r in known:
                self.conn.lookup_by_id(r.id)  # make every domain known and named
            before = self.conn.stats()
            self.timeline.disrupt()
            self.last_disruption = self.steps
            self.host.restart_daemon()
            tally.daemon_restarts += 1
            if self.host.boot_id != self.boot:
                raise AssertionError("restart_daemon changed the boot identity")
            for r in known:
                if self.conn.lookup_by_id(r.id).uuid != r.uuid:
                    raise _violate("C1", f"after daemon restart, ID {r.id} is not {r.uuid}")
            after = self.conn.stats()
            if after.control_requests != before.control_requests:
                raise _violate(
                    "C8",
                    f"daemon restart cost {after.control_requests - before.control_requests} "
                    "control-plane requests for domains already known",
                )
            if after.cache_size < before.cache_size:
                raise _violate("C8", "daemon restart flushed the cache")

        @precondition(lambda self: bool(self.alive))  # else too frequent: few other rules apply
        @rule()
        def reconnect(self) -> None:
            """A cold cache, as a new monitoring process would have."""
            self.conn.close()
            self.conn = self.target.connect()
            self.handles = []
            self.closed_handles = []
            self.pre_boot_handles = []

        # -- the client acts through handles ---------------------------------------------

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data())
        def grab_handle(self, data: st.DataObject) -> None:
            uuid = data.draw(st.sampled_from(sorted(self.alive)), label="uuid")
            how = data.draw(st.sampled_from(["uuid", "name", "id"]), label="how")
            rec = next(r for r in self.truth() if r.uuid == uuid)
            if how == "uuid":
                dom = self.conn.lookup_by_uuid(uuid)
            elif how == "name":
                dom = self.conn.lookup_by_name(rec.name)
            else:
                dom = self.conn.lookup_by_id(rec.id)
            if dom.uuid != uuid:
                raise _violate("C1", f"lookup by {how} of {rec} gave {dom.uuid}")
            self.handles.append(dom)

        @precondition(lambda self: bool(self.handles))
        @rule(data=st.data())
        def close_handle(self, data: st.DataObject) -> None:
            dom = data.draw(st.sampled_from(self.handles), label="handle")
            before = self.conn.stats().cache_size
            dom.close()
            # by identity: two handles on one UUID are equal but distinct objects
            self.handles = [h for h in self.handles if h is not dom]
            self.pre_boot_handles = [h for h in self.pre_boot_handles if h is not dom]
            self.closed_handles.append(dom)
            if self.conn.stats().cache_size != before:
                raise _violate("C6", "closing a handle changed the cache")

        @precondition(lambda self: bool(self.handles))
        @rule(
            data=st.data(),
            op=st.sampled_from(["pause", "resume", "destroy", "shutdown", "reboot", "save"]),
        )
        def act_through_handle(self, data: st.DataObject, op: str) -> None:
            dom = data.draw(st.sampled_from(self.handles), label="handle")
            ref = self.alive.get(dom.uuid)
            ok = ref is not None and {
                "pause": ref.state in _RUNNABLE,
                "resume": ref.state is DomainState.PAUSED,
                "destroy": True,
                "shutdown": self.can_shut_down(ref.state),
                "reboot": self.free_ids() > 0,
                "save": True,
            }[op]
            if op == "reboot":
                self.timeline.touch(dom.uuid)
            mark = len(self.host.journal())
            others = {r.uuid: (r.id, r.name, r.state) for r in self.truth() if r.uuid != dom.uuid}
            image = f"img{next(self._images)}"
            call: Callable[[], None] = (
                (lambda: dom.save(image)) if op == "save" else getattr(dom, op)
            )
            self.expect(ok, call, f"handle {op}")
            for entry in self.host.journal()[mark:]:
                if entry.origin == "client" and entry.outcome == "ok" and entry.uuid != dom.uuid:
                    raise _violate("C4", f"{op} through handle {dom.uuid} acted on {entry}")
            # Also without a journal: nobody but the handle's domain changed.
            after = {r.uuid: (r.id, r.name, r.state) for r in self.truth() if r.uuid != dom.uuid}
            if after != others:
                raise _violate("C4", f"{op} through handle {dom.uuid} changed others: "
                                     f"{others} -> {after}")
            if not ok or ref is None:
                return
            if op in ("destroy", "shutdown"):
                del self.alive[dom.uuid]
            elif op == "save":
                self.images[image] = (dom.uuid, self.alive.pop(dom.uuid).name)
            else:
                ref.state = DomainState.PAUSED if op == "pause" else DomainState.RUNNING

        # -- the contract, after every step --------------------------------------------------

        @invariant()
        def host_matches_model(self) -> None:
            records = self.truth()
            if self.readers is not None:
                self.timeline.advance(_snapshot(records))
                self.judge_readers()
            truth = {r.uuid: r for r in records if r.id != 0}
            if set(truth) != set(self.alive):
                raise AssertionError(f"host has {sorted(truth)}, model {sorted(self.alive)}")
            for uuid, ref in self.alive.items():
                rec = truth[uuid]
                if (rec.name, rec.state) != (ref.name, ref.state):
                    raise AssertionError(f"host has {rec}, model {ref}")
            if not self.seen_uuids.issuperset(truth):
                self.seen_uuids.update(truth)
                self.known = tuple(sorted(self.seen_uuids))
            tally.steps += 1
            self.steps += 1
            for uuid, rec in truth.items():
                if self.uuid_at.get(uuid, rec.id) != rec.id:
                    tally.moves += 1
                if self.id_owner.get(rec.id, uuid) != uuid:
                    tally.id_reuses += 1
                self.uuid_at[uuid] = rec.id
                self.id_owner[rec.id] = uuid

        @invariant()
        def contract_holds(self) -> None:
            conn = self.conn
            truth = self.truth()
            by_id = {r.id: r for r in truth}
            by_name = {r.name: r for r in truth}
            by_uuid = {r.uuid: r for r in truth}

            checks: list[tuple[Callable[[], Domain], DomainRecord | None, str]] = []
            for domid in range(self.host.max_domid + 1):
                checks.append((partial(conn.lookup_by_id, domid), by_id.get(domid), f"ID {domid}"))
            for name in sorted(self.seen_names | set(by_name)):
                checks.append((partial(conn.lookup_by_name, name), by_name.get(name), repr(name)))
            gone = sorted(self.seen_uuids - set(by_uuid))
            if len(gone) > _GONE_PER_STEP:
                first = (self.steps * _GONE_PER_STEP) % len(gone)
                gone = (gone[first:] + gone[:first])[:_GONE_PER_STEP]
            for uuid in sorted(by_uuid) + gone:
                checks.append((partial(conn.lookup_by_uuid, uuid), by_uuid.get(uuid), uuid))
            # Start somewhere else each step, so every kind of lookup meets a stale cache.
            start = (self.steps * 7) % len(checks)
            for lookup, rec, what in checks[start:] + checks[:start]:
                self._check(lookup, rec, what)

            for dom in self.handles:  # C3: handles follow their UUID
                rec = by_uuid.get(dom.uuid)
                try:
                    ident = dom.identity()
                    info = dom.info()
                except NoDomainError:
                    if rec is not None:
                        raise _violate("C3", f"handle {dom.uuid} lost live domain {rec}") from None
                    continue
                if rec is None:
                    raise _violate("C3", f"handle {dom.uuid} answered for a gone domain")
                if (ident.id, ident.name) != (rec.id, rec.name) or info.state != rec.state:
                    raise _violate("C3", f"handle says {ident}/{info.state}, host has {rec}")
            # The bulk sample: exactly the host's table, names included.
            sampled = [(s.identity.id, s.identity.uuid, s.identity.name, s.info.state)
                       for s in conn.sample()]
            expected = [(r.id, r.uuid, r.name, r.state) for r in sorted(truth, key=lambda r: r.id)]
            if sampled != expected:
                raise _violate("C1/C2", f"sample() gave {sampled}, host has {expected}")
            # Last, so the lookups above met the cache as the step left it (stale).
            ids = conn.list_domain_ids()
            if ids != sorted(by_id):
                raise _violate("C1/C2", f"list_domain_ids {ids}, host has {sorted(by_id)}")
            if conn.stats().cache_size > len(truth):
                raise _violate(
                    "C7", f"cache holds {conn.stats().cache_size} for {len(truth)} live domains"
                )
            for dom in self.closed_handles:
                try:
                    dom.info()
                except HandleClosedError:
                    continue
                raise AssertionError("a closed handle still answered")
            for dom in self.pre_boot_handles:  # C8: old handles die with the old boot
                if dom.uuid not in by_uuid:
                    try:
                        dom.info()
                    except NoDomainError:
                        continue
                    raise _violate("C8", f"handle {dom.uuid} survived the host reboot")

        def _check(self, lookup: Callable[[], Domain], rec: DomainRecord | None, what: str) -> None:
            try:
                dom = lookup()
            except NoDomainError:
                if rec is not None:
                    raise _violate("C2", f"lookup of {what} failed; host has {rec}") from None
                return
            if rec is None:
                raise _violate("C1", f"lookup of {what} returned {dom.uuid}; host has none")
            if dom.uuid != rec.uuid:
                raise _violate("C1", f"lookup of {what} returned {dom.uuid}; host has {rec}")
            ident = dom.identity()
            if (ident.id, ident.name) != (rec.id, rec.name):
                raise _violate("C1", f"lookup of {what} gave {ident}; host has {rec}")

    Conformance.__name__ = f"Conformance[{getattr(factory, '__name__', 'target')}]"
    return Conformance


def check_driver(
    factory: Callable[[], Target],
    *,
    max_examples: int = 60,
    stateful_step_count: int = 40,
    readers: int = 0,
    restart_gap: int = 0,
    report: ConformanceReport | None = None,
    **hypothesis_settings: Any,
) -> ConformanceReport:
    """Run the conformance state machine against targets made by ``factory``.

    Raises (with hypothesis's minimal failing history) on any violation;
    returns what the histories exercised (added to ``report`` if given).
    ``readers``: client threads sampling and looking up beside each history.
    """
    report = report if report is not None else ConformanceReport()
    machine = conformance_machine(factory, report, readers=readers, restart_gap=restart_gap)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=stateful_step_count,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            **hypothesis_settings,
        ),
    )
    return report
