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

Defined domains (capability ``defined``): the host and the client define domains
(``Connection.define``), start them (by the host, through a held handle) and
undefine them (both ways); a persistent domain that is destroyed, shut down or
saved, or whose host reboots, stays defined and shut off. After every step:

* the host's defined, shut-off domains are the model's;
* C1/C2: lookups by name and by UUID of every defined domain succeed with ``id``
  None and ``info().state`` SHUTOFF; ``lookup_by_id``, ``list_domain_ids`` and
  ``sample`` never give one; ``Connection.list_defined()`` is the host's list;
* C3: a held handle of a domain that stopped but stays defined answers shut off,
  and raises NoDomainError once its definition is gone.

A target that cannot do something the kit checks (see ``CAPABILITIES``) lists
what it can; the kit then skips those rules and checks, names them in
``ConformanceReport.skipped`` and warns (``CapabilitySkipped``): never silently.

Any driver can be checked: give a factory returning a ``Target``.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid as uuidlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

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
from xvirt.planes import Definition, DomainConfig
from xvirt.testing.observers import Readers, Snapshot, Timeline, judge
from xvirt.testing.targets import StoreFaults, Target

__all__ = ["CAPABILITIES", "CapabilitySkipped", "ConformanceReport", "ContractViolation",
           "check_driver", "conformance_machine", "say_skipped"]

_NAMES = tuple(f"g{i}" for i in range(8))  # a small pool, so names are reused
#: What a target may be unable to do; a target lists what it can in ``capabilities``
#: (default: these). A Xen host can do all of it; libvirt's test driver cannot
#: crash a guest, rename a running one, or (in this process) reboot the host.
#: ``defined``: the host keeps domains defined and shut off (``HostControl.define``,
#: ``start``, ``undefine``, ``defined_domains``); ``rename_definition``: defining the
#: UUID of a shut-off domain under another name renames it (xend; libvirt refuses).
#: ``refuse_commits`` (a host with a store that can be made to refuse, the daemon) is
#: not in the default set: a target that can offers ``host.refuse_commits(n)``.
CAPABILITIES = frozenset(
    {"crash", "rename", "shutdown_paused", "reboot_host", "restart_daemon", "defined",
     "rename_definition"})
_RUNNABLE = {DomainState.RUNNING, DomainState.BLOCKED}
T = TypeVar("T")
#: What a client defines (``Connection.define``) unless the target says otherwise in
#: ``client_config``: small, so a real host boots it cheaply.
CLIENT_CONFIG = DomainConfig(memory_kib=65536, max_memory_kib=65536, vcpus=1)


class ContractViolation(AssertionError):
    """The driver and cache broke a clause of the contract."""


class CapabilitySkipped(UserWarning):
    """The target cannot do something the kit checks: those rules and checks did not run."""


@dataclass
class _Ref:
    """The reference model's view of one live guest."""

    name: str
    state: DomainState
    #: Whether its definition outlives it (it was defined); None for a guest the host
    #: had before the history began, learnt from the host when it stops.
    persistent: bool | None = False


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
    defines: int = 0  # definitions made or replaced, by the host or a client
    client_defines: int = 0  # of those, through Connection.define
    starts: int = 0  # defined domains booted, by the host or through a handle
    handle_starts: int = 0  # of those, through a held handle
    undefines: int = 0  # definitions removed, by the host or through a handle
    handle_undefines: int = 0  # of those, through a held handle
    kept_defined: int = 0  # persistent domains that stopped and stayed defined, shut off
    defined_checks: int = 0  # lookups and held handles of defined domains checked
    #: Capabilities the kit checks that a target lacked: their rules and checks skipped.
    skipped: frozenset[str] = frozenset()
    target: str = ""  # the target's kind (its class name)


def _violate(clause: str, detail: str) -> ContractViolation:
    return ContractViolation(f"{clause} violated: {detail}")


#: Gone UUIDs looked up after each step: a rotating slice, so every one is asked
#: again now and then while a long history's cost per step stays bounded.
_GONE_PER_STEP = 6
#: Once the kit checks defined domains, a lookup of a name or UUID nobody holds, and a
#: held handle of a domain that does not run, cost control-plane requests (the domain
#: might be defined): fewer of each per step, rotating. Every defined domain, and one
#: handle of each, is checked on every step.
_GONE_PER_STEP_DEFINED = 1
_FREE_NAMES_PER_STEP = 1
_GONE_HANDLES_PER_STEP = 1


#: Defined, shut-off domains the define rule adds at most (it replaces one beyond):
#: each holds a name of the small pool, which creates, restores and renames need too.
_MAX_SHUTOFF = 2


#: A rule's odd case (a refusal to provoke) one time in four: hypothesis draws the
#: simplest value, the first, most often.
_ODD = st.sampled_from([False, False, False, True])


def _rotating(items: list[T], per_step: int, step: int) -> list[T]:
    """A slice of ``items`` that moves on every step: each is asked now and then."""
    if len(items) <= per_step:
        return items
    first = (step * per_step) % len(items)
    return (items[first:] + items[:first])[:per_step]


def _snapshot(records: list[DomainRecord], defined: list[Definition]) -> Snapshot:
    """Running domains and, with ID -1 and state SHUTOFF, the defined, shut-off ones."""
    shape = {d.uuid: (-1, d.name, DomainState.SHUTOFF) for d in defined}
    return shape | {r.uuid: (r.id, r.name, r.state) for r in records}


def say_skipped(report: ConformanceReport, target: str | None = None) -> None:
    """Warn, naming them, of the capabilities the kit skipped on ``target`` (default:
    the report's)."""
    if report.skipped:
        warnings.warn(CapabilitySkipped(
            f"{target or report.target or 'the target'} cannot: "
            f"{', '.join(sorted(report.skipped))}; the kit skipped those rules and checks"),
            stacklevel=3)


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
            tally.skipped |= CAPABILITIES - self.caps
            tally.target = type(self.target).__name__
            self.defines = "defined" in self.caps
            self.client_config: DomainConfig = getattr(self.target, "client_config",
                                                       CLIENT_CONFIG)
            self.conn: Connection = self.target.connect()
            self.alive: dict[str, _Ref] = {}  # guests only; Domain-0 is implicit
            self.shutoff: dict[str, str] = {}  # defined and not running: uuid -> name
            self.images: dict[str, tuple[str, str]] = {}  # image -> (uuid, name)
            self.handles: list[Domain] = []
            self.closed_handles: list[Domain] = []
            self.seen_uuids: set[str] = set()
            #: UUID -> when the model first met it: the order guests are drawn in. Not the
            #: UUIDs' own order: a host that makes them up at random (the daemon, libvirt)
            #: would then hand hypothesis a different history on every replay.
            self.first_seen: dict[str, int] = {}
            self.seen_names: set[str] = set(_NAMES)
            self.boot = self.host.boot_id
            self.pre_boot_handles: list[Domain] = []
            self._images = itertools.count(1)
            self._uuids = itertools.count(1)
            self._handoff: tuple[list[DomainRecord], list[Definition]] | None = None
            self.id_owner: dict[int, str] = {}
            self.uuid_at: dict[str, int] = {}
            self.steps = 0
            self.last_disruption = -restart_gap
            for rec in self.host.domains():
                if rec.id != 0:  # persistent or not: the host will say when it stops
                    self.alive[rec.uuid] = _Ref(rec.name, rec.state,
                                                None if self.defines else False)
                self.see(rec.uuid)
            for d in self.defined():
                self.shutoff[d.uuid] = d.name
                self.see(d.uuid)
            self.known: tuple[str, ...] = tuple(sorted(self.seen_uuids))
            self.timeline = Timeline([_snapshot(self.truth(), self.defined())])
            self.readers: Readers | None = None
            if readers:
                self.readers = Readers(
                    lambda: self.target.connect(readonly=True), self.timeline, readers,
                    names=_NAMES, known=lambda: self.known, max_domid=self.host.max_domid)

        def teardown(self) -> None:
            try:
                if self.readers is not None:
                    self.readers.stop()
                    self.timeline.advance(_snapshot(self.truth(), self.defined()))
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

        def defined(self) -> list[Definition]:
            """The host's defined, shut-off domains (none where the kit cannot see them)."""
            return self.host.defined_domains() if self.defines else []

        def world(self) -> Snapshot:
            """Every domain the host has, running or defined, as the timeline holds it."""
            return _snapshot(self.truth(), self.defined())

        def guest_ids(self) -> list[int]:
            return sorted(r.id for r in self.truth() if r.id != 0)

        def free_ids(self) -> int:
            return self.host.max_domid - len(self.alive)

        def see(self, uuid: str) -> None:
            """The model has met ``uuid`` (lookups of it go on after it is gone)."""
            self.seen_uuids.add(uuid)
            self.first_seen.setdefault(uuid, len(self.first_seen))

        def ordered(self, uuids: Iterable[str]) -> list[str]:
            """``uuids`` in the order the model met them (see ``first_seen``)."""
            return sorted(uuids, key=lambda u: (self.first_seen.get(u, len(self.first_seen)), u))

        def pick_guest(self, data: st.DataObject) -> DomainRecord:
            recs = {r.uuid: r for r in self.truth() if r.id != 0}
            return data.draw(st.sampled_from([recs[u] for u in self.ordered(recs)]),
                             label="guest")

        def taken(self) -> set[str]:
            """Names held, by running and by defined domains alike."""
            return {r.name for r in self.alive.values()} | set(self.shutoff.values())

        def holder(self, name: str) -> str | None:
            """The UUID holding ``name``, running or defined."""
            held = {r.name: u for u, r in self.alive.items()} | {
                n: u for u, n in self.shutoff.items()}
            return held.get(name)

        def free_names(self) -> list[str]:
            taken = self.taken()
            return [n for n in _NAMES if n not in taken]

        def free_name(self, data: st.DataObject) -> str | None:
            free = self.free_names()
            return data.draw(st.sampled_from(free), label="name") if free else None

        def stopped(self, uuid: str) -> None:
            """The running guest ``uuid`` stopped (destroy, shutdown, save): a persistent
            one stays defined and shut off, a transient one is gone."""
            ref = self.alive.pop(uuid)
            persistent = ref.persistent
            if persistent is None:  # the host had it before the history: ask the host
                persistent = any(d.uuid == uuid for d in self.defined())
            if persistent and self.defines:
                self.shutoff[uuid] = ref.name
                tally.kept_defined += 1

        def started(self, uuid: str) -> None:
            """The defined, shut-off domain ``uuid`` was booted: it runs, persistent."""
            self.alive[uuid] = _Ref(self.shutoff.pop(uuid), DomainState.RUNNING, True)
            tally.starts += 1

        def gone_uuid(self, data: st.DataObject) -> str | None:
            """A UUID the host had once and has no more, running or defined."""
            gone = self.ordered(self.seen_uuids - set(self.alive) - set(self.shutoff)
                                - {r.uuid for r in self.truth() if r.id == 0})
            return data.draw(st.sampled_from(gone), label="gone") if gone else None

        def can_shut_down(self, state: DomainState) -> bool:
            return state in _RUNNABLE or (
                state is DomainState.PAUSED and "shutdown_paused" in self.caps)

        def expect(self, ok: bool, action: Callable[[], Any], what: str,
                   refusal: type[Exception] | None = None) -> Any:
            """Run an action whose success the model predicts; they must agree.
            ``refusal``: the one error a refusal may be (default: either)."""
            try:
                result = action()
            except (OperationFailedError, NoDomainError) as exc:
                if ok:
                    raise AssertionError(
                        f"{what} failed but the model expected success: {exc}"
                    ) from exc
                if refusal is not None and not isinstance(exc, refusal):
                    raise AssertionError(f"{what} was refused with {type(exc).__name__}, "
                                         f"not {refusal.__name__}: {exc}") from exc
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
                self.see(rec.uuid)

        @precondition(lambda self: bool(self.alive))
        @rule(data=st.data(), how=st.sampled_from(["destroy", "shutdown", "crash"]))
        def stop(self, data: st.DataObject, how: str) -> None:
            rec = self.pick_guest(data)
            ref = self.alive[rec.uuid]
            if how == "crash" and "crash" not in self.caps:
                how = "destroy"
            if how == "destroy":
                self.host.destroy(rec.id)
                self.stopped(rec.uuid)
            elif how == "shutdown":
                ok = self.can_shut_down(ref.state)
                self.expect(ok, lambda: self.host.shutdown(rec.id), "shutdown")
                if ok:
                    self.stopped(rec.uuid)
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
            self.images[image] = (rec.uuid, self.alive[rec.uuid].name)
            self.stopped(rec.uuid)

        @precondition(lambda self: bool(self.images))
        @rule(data=st.data(), by_client=st.booleans())
        def restore(self, data: st.DataObject, by_client: bool) -> None:
            image = data.draw(st.sampled_from(sorted(self.images)), label="image")
            uuid, name = self.images[image]
            # A defined domain comes back under its definition's name only, persistent.
            ok = (uuid not in self.alive and self.holder(name) in (None, uuid)
                  and self.shutoff.get(uuid, name) == name and self.free_ids() > 0)
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
                persistent = self.shutoff.pop(uuid, None) is not None
                self.alive[uuid] = _Ref(name, DomainState.RUNNING, persistent)

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
            uuid = data.draw(st.sampled_from(self.ordered(running)), label="guest") if (
                running) else ""
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
            for uuid in sorted(self.alive):  # persistent guests stay defined, shut off
                self.stopped(uuid)
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

        @precondition(lambda self: bool(self.alive) or bool(self.shutoff))
        @rule(data=st.data())
        def grab_handle(self, data: st.DataObject) -> None:
            """A handle on a running or (by UUID or name) a defined domain; its
            persistence, where the model knows it, is the model's."""
            uuid = data.draw(st.sampled_from(self.ordered(self.alive) + self.ordered(self.shutoff)),
                             label="uuid")
            how = data.draw(st.sampled_from(["uuid", "name", "id"]), label="how")
            rec = next((r for r in self.truth() if r.uuid == uuid), None)
            name = rec.name if rec is not None else self.shutoff[uuid]
            if how == "uuid":
                dom = self.conn.lookup_by_uuid(uuid)
            elif how == "name" or rec is None:
                dom = self.conn.lookup_by_name(name)
            else:
                dom = self.conn.lookup_by_id(rec.id)
            if dom.uuid != uuid:
                raise _violate("C1", f"lookup by {how} of {rec or name} gave {dom.uuid}")
            self.handles.append(dom)
            ref = self.alive.get(uuid)
            if ref is None and dom.id is not None:
                raise _violate("C1", f"handle {uuid} of a shut-off domain has ID {dom.id}")
            persistent = ref.persistent if ref is not None else True
            if self.defines and persistent is not None and dom.persistent != persistent:
                raise AssertionError(f"handle {uuid} says persistent={not persistent}, "
                                     f"the model {persistent}")

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
            image = f"img{next(self._images)}"
            call: Callable[[], None] = (
                (lambda: dom.save(image)) if op == "save" else getattr(dom, op)
            )
            self.on_one_domain(dom, call, ok, f"handle {op}")
            if not ok or ref is None:
                return
            if op in ("destroy", "shutdown"):
                self.stopped(dom.uuid)
            elif op == "save":
                self.images[image] = (dom.uuid, ref.name)
                self.stopped(dom.uuid)
            else:
                ref.state = DomainState.PAUSED if op == "pause" else DomainState.RUNNING

        def on_one_domain(self, dom: Domain, call: Callable[[], Any], ok: bool, what: str,
                          refusal: type[Exception] | None = None) -> Any:
            """C4: ``call`` through ``dom`` acts on its domain alone (the journal, where the
            host keeps one, and every other domain, running or defined, before and after)."""
            mark = len(self.host.journal())
            others = {u: v for u, v in self.world().items() if u != dom.uuid}
            result = self.expect(ok, call, what, refusal)
            for entry in self.host.journal()[mark:]:
                if entry.origin == "client" and entry.outcome == "ok" and entry.uuid != dom.uuid:
                    raise _violate("C4", f"{what} through handle {dom.uuid} acted on {entry}")
            after = {u: v for u, v in self.world().items() if u != dom.uuid}
            if after != others:
                raise _violate("C4", f"{what} through handle {dom.uuid} changed others: "
                                     f"{others} -> {after}")
            return result

        # -- defined domains: by the host, by a client and through held handles -----------

        @precondition(lambda self: self.defines)
        @rule(data=st.data(), op=st.sampled_from(["define", "start", "start", "undefine"]),
              by_client=st.booleans(), odd=_ODD)
        def managed(self, data: st.DataObject, op: str, by_client: bool, odd: bool) -> None:
            """Define, start or undefine, by the host or by the client (``Connection.define``,
            a held handle's ``start``/``undefine``). One rule for them all, so the rest of
            the history keeps its share of the steps; starts are twice as frequent (they
            make the persistent guests the other rules stop). ``odd``: provoke a refusal."""
            if op == "define" or not (self.shutoff or self.alive or self.handles):
                kind = "clash" if odd else data.draw(
                    st.sampled_from(["new", "redefine", "persist", "image"]), label="kind")
                self.define(data, kind, by_client)
            else:
                self.manage(data, op, by_client, odd)

        def define(self, data: st.DataObject, kind: str, by_client: bool) -> None:
            """Define a new domain, replace a shut-off one's definition (maybe renaming
            it), make a running one persistent (under its own name, else refused), define
            the UUID of a saved domain, or take a name another domain holds (refused)."""
            uuid: str | None = None
            if kind in ("new", "image") and len(self.shutoff) >= _MAX_SHUTOFF:
                kind = "redefine"
            if kind == "redefine" and self.shutoff:
                uuid = data.draw(st.sampled_from(self.ordered(self.shutoff)), label="defined")
                names = [self.shutoff[uuid]]
                if "rename_definition" in self.caps:
                    names += self.free_names()
            elif kind == "persist" and self.alive:
                uuid = data.draw(st.sampled_from(self.ordered(self.alive)), label="running")
                names = [self.alive[uuid].name, *self.free_names()]
            elif kind == "image" and self.images:
                unheld = {u: n for u, n in self.images.values()
                          if u not in self.alive and u not in self.shutoff}
                saved = [(u, unheld[u]) for u in self.ordered(unheld)]
                if not saved:
                    return
                uuid, name = data.draw(st.sampled_from(saved), label="saved")
                names = [name, *self.free_names()]
            elif kind == "clash":
                names = sorted(self.taken())
            else:
                names = self.free_names()
            if not names:
                return
            name = data.draw(st.sampled_from(names), label="name")
            if by_client and uuid is None:
                # The client names its new domain's UUID: one the host made up (libvirt's
                # at random) would change the order hypothesis draws guests in on replay.
                # The host's own defines leave the choice to the host.
                uuid = str(uuidlib.UUID(int=(0xC11E << 112) | next(self._uuids)))
            running = self.alive.get(uuid) if uuid is not None else None
            ok = self.holder(name) in (None, uuid) and (running is None or running.name == name)
            if by_client:
                config = self.client_config
                found = self.expect(ok, lambda: self.conn.define(name, config, uuid=uuid),
                                    "conn.define", OperationFailedError)
            else:
                found = self.expect(ok, lambda: self.host.define(name, uuid=uuid),
                                    "host.define", OperationFailedError)
            if found is None:
                return
            if (uuid is not None and found.uuid != uuid) or found.uuid in self.alive.keys() - {
                    uuid} or found.uuid in self.shutoff.keys() - {uuid}:
                raise AssertionError(f"define of {name!r} as {uuid} gave domain {found.uuid}")
            if isinstance(found, Definition) and (
                    found.name, found.id is None, found.persistent) != (
                    name, running is None, True):
                raise AssertionError(f"host.define of {name!r} answered {found}")
            tally.defines += 1
            self.see(found.uuid)
            if by_client:
                tally.client_defines += 1
                self.handles.append(found)
            if running is not None:
                running.persistent = True
            else:
                self.shutoff[found.uuid] = name

        def manage(self, data: st.DataObject, op: str, by_handle: bool, odd: bool) -> None:
            """Start or undefine a defined, shut-off domain, by the host or through a held
            handle; or (``odd``, or nothing else to pick) a running domain (refused:
            OperationFailedError) or a gone one (NoDomainError)."""
            dom: Domain | None = None
            if by_handle and self.handles:
                defined = [h for h in self.handles if h.uuid in self.shutoff]
                dom = data.draw(st.sampled_from(self.handles if odd or not defined else defined),
                                label="handle")
                uuid: str | None = dom.uuid
            else:
                uuid = self.odd_uuid(data, odd)
            if uuid is None:
                return
            name = self.shutoff.get(uuid)
            ok = name is not None and (op == "undefine" or self.free_ids() > 0)
            if op == "start" or uuid in self.alive:
                refusal: type[Exception] = (
                    OperationFailedError if name is not None or uuid in self.alive
                    else NoDomainError)
            else:
                refusal = NoDomainError
            if dom is not None:
                call = dom.start if op == "start" else dom.undefine
                self.on_one_domain(dom, call, ok, f"handle {op}", refusal)
            elif op == "start":
                rec = self.expect(ok, lambda: self.host.start(uuid), "host.start", refusal)
                if rec is not None and (rec.uuid, rec.name) != (uuid, name):
                    raise AssertionError(f"host.start of {uuid} ({name!r}) gave {rec}")
            else:
                self.expect(ok, lambda: self.host.undefine(uuid), "host.undefine", refusal)
            if not ok:
                return
            if op == "start":
                self.started(uuid)
                tally.handle_starts += dom is not None
            else:
                del self.shutoff[uuid]
                tally.undefines += 1
                tally.handle_undefines += dom is not None

        def odd_uuid(self, data: st.DataObject, odd: bool) -> str | None:
            """A shut-off domain's UUID; ``odd`` (or none shut off): a gone one's, or a
            running one's."""
            if not odd and self.shutoff:
                return data.draw(st.sampled_from(self.ordered(self.shutoff)), label="defined")
            gone = self.gone_uuid(data) if odd else None
            if gone is not None:
                return gone
            return data.draw(st.sampled_from(self.ordered(self.alive)), label="running") if (
                self.alive) else None

        # -- the contract, after every step --------------------------------------------------

        @invariant()
        def host_matches_model(self) -> None:
            records, defined = self.step_truth()
            if self.readers is not None:
                self.timeline.advance(_snapshot(records, defined))
                self.judge_readers()
            truth = {r.uuid: r for r in records if r.id != 0}
            if set(truth) != set(self.alive):
                raise AssertionError(f"host has {sorted(truth)}, model {sorted(self.alive)}")
            for uuid, ref in self.alive.items():
                rec = truth[uuid]
                if (rec.name, rec.state) != (ref.name, ref.state):
                    raise AssertionError(f"host has {rec}, model {ref}")
            shut = {d.uuid: d.name for d in defined}
            if shut != self.shutoff or any(d.id is not None for d in defined):
                raise AssertionError(f"host has defined {defined}, model {self.shutoff}")
            if not self.seen_uuids.issuperset(truth.keys() | shut.keys()):
                for uuid in sorted(truth.keys() | shut.keys()):
                    self.see(uuid)
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
            truth, defined_list = self.step_truth()
            defined = {d.uuid: d for d in defined_list}
            by_id = {r.id: r for r in truth}
            by_name: dict[str, DomainRecord | Definition] = {d.name: d for d in defined.values()}
            by_name.update((r.name, r) for r in truth)
            by_uuid: dict[str, DomainRecord | Definition] = dict(defined)
            by_uuid.update((r.uuid, r) for r in truth)

            checks: list[tuple[Callable[[], Domain], DomainRecord | Definition | None, str]] = []
            for domid in range(self.host.max_domid + 1):  # never a defined domain
                checks.append((partial(conn.lookup_by_id, domid), by_id.get(domid), f"ID {domid}"))
            free = sorted(self.seen_names - set(by_name))
            if self.defines:
                free = _rotating(free, _FREE_NAMES_PER_STEP, self.steps)
            for name in sorted(by_name) + free:
                checks.append((partial(conn.lookup_by_name, name), by_name.get(name), repr(name)))
            gone = _rotating(sorted(self.seen_uuids - set(by_uuid)),
                             _GONE_PER_STEP_DEFINED if self.defines else _GONE_PER_STEP,
                             self.steps)
            for uuid in sorted(by_uuid) + gone:
                checks.append((partial(conn.lookup_by_uuid, uuid), by_uuid.get(uuid), uuid))
            # Start somewhere else each step, so every kind of lookup meets a stale cache.
            start = (self.steps * 7) % len(checks)
            found: dict[str, Domain] = {}  # a handle each defined domain's lookups gave
            for lookup, rec, what in checks[start:] + checks[:start]:
                dom = self._check(lookup, rec, what)
                if dom is not None and isinstance(rec, Definition):
                    found.setdefault(rec.uuid, dom)

            # C3: held handles follow their UUID. A defined domain's ID (none) and state
            # (shut off) are asked of one handle per step: a held one, else the one its
            # lookup just gave (C1).
            handles = self.handles_to_check({r.uuid for r in truth}, defined)
            held = {h.uuid for h in handles}
            handles += [dom for uuid, dom in found.items() if uuid not in held]
            for dom in handles:
                rec = by_uuid.get(dom.uuid)
                try:
                    ident = dom.identity()
                    info = dom.info()
                except NoDomainError:
                    if rec is not None:
                        raise _violate("C3", f"handle {dom.uuid} lost domain {rec}") from None
                    continue
                if rec is None:
                    raise _violate("C3", f"handle {dom.uuid} answered for a gone domain")
                if isinstance(rec, Definition):  # defined, not running: shut off, no ID
                    tally.defined_checks += 1
                    if (ident.id, ident.name, info.state) != (-1, rec.name, DomainState.SHUTOFF):
                        raise _violate("C1/C3", f"handle says {ident}/{info.state}, host has "
                                                f"{rec.name!r} defined, shut off")
                    continue
                if (ident.id, ident.name) != (rec.id, rec.name) or info.state != rec.state:
                    raise _violate("C3", f"handle says {ident}/{info.state}, host has {rec}")
            if self.defines:  # the control plane's list of defined domains: the host's
                listed = [(d.uuid, d.name, d.id, d.persistent) for d in conn.list_defined()]
                want = [(d.uuid, d.name, None, True)
                        for d in sorted(defined.values(), key=lambda d: (d.name, d.uuid))]
                if listed != want:
                    raise _violate("C1/C2", f"list_defined() gave {listed}, host has {want}")
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
                if dom.uuid not in by_uuid:  # (a persistent one lives on, defined)
                    try:
                        dom.info()
                    except NoDomainError:
                        continue
                    raise _violate("C8", f"handle {dom.uuid} survived the host reboot")

        def step_truth(self) -> tuple[list[DomainRecord], list[Definition]]:
            """The host's running and defined domains after the step, read once for both
            invariants (hypothesis runs them one after the other, nothing in between):
            the first to ask reads them, the second takes them."""
            if self._handoff is not None:
                taken, self._handoff = self._handoff, None
                return taken
            self._handoff = (self.truth(), self.defined())
            return self._handoff

        def handles_to_check(self, live: set[str],
                             defined: dict[str, Definition]) -> list[Domain]:
            """Every held handle of a running domain (``live``: the data plane answers);
            where the kit checks defined domains, one handle of each defined domain and a
            rotating few of the gone ones, each answered by the control plane."""
            if not self.defines:
                return self.handles
            out = [h for h in self.handles if h.uuid in live]
            by_uuid: dict[str, list[Domain]] = {}
            for h in self.handles:
                if h.uuid not in live:
                    by_uuid.setdefault(h.uuid, []).append(h)
            gone: list[Domain] = []
            for uuid, held in by_uuid.items():
                pick = held[self.steps % len(held)]
                (out if uuid in defined else gone).append(pick)
            return out + _rotating(gone, _GONE_HANDLES_PER_STEP, self.steps)

        def _check(self, lookup: Callable[[], Domain], rec: DomainRecord | Definition | None,
                   what: str) -> Domain | None:
            """Run one lookup; it must find exactly ``rec`` (None: nothing). Returns the
            handle it gave."""
            try:
                dom = lookup()
            except NoDomainError:
                if rec is not None:
                    raise _violate("C2", f"lookup of {what} failed; host has {rec}") from None
                return None
            if rec is None:
                raise _violate("C1", f"lookup of {what} returned {dom.uuid}; host has none")
            if dom.uuid != rec.uuid:
                raise _violate("C1", f"lookup of {what} returned {dom.uuid}; host has {rec}")
            if isinstance(rec, Definition):  # its ID and state: asked of one handle a step
                tally.defined_checks += 1
                return dom
            ident = dom.identity()
            if (ident.id, ident.name) != (rec.id, rec.name):
                raise _violate("C1", f"lookup of {what} gave {ident}; host has {rec}")
            return dom

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
    say_skipped(report)
    return report
