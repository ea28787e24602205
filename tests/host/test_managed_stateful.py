"""Managed domains under any interleaving of lifecycle steps (a Hypothesis state machine).

After every step: names are unique across running and defined domains, a defined
shut-off domain has no ID and is not on the data plane, the definitions are exactly
those defined and not undefined since, a running persistent domain that stopped is
found shut off (a transient one is gone), and a refused step changed nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from xvirt.clock import ManualClock
from xvirt.errors import NoDomainError, OperationFailedError, XvirtError
from xvirt.host.hypervisor import DomainRecord, HostModel, HostState
from xvirt.model import DomainState
from xvirt.planes import Definition

NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
PICKS = st.integers(0, 1000)
MAX_DOMID = 5
_serial = itertools.count()


class ManagedDomains(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1000.0)
        self.host: HostModel | None = None
        self.defined: set[str] = set()  # what the definitions must be (by UUID)
        self.images = itertools.count()

    @initialize(policy=st.sampled_from(["sequential", "random"]), seed=st.integers(0, 99))
    def boot(self, policy: str, seed: int) -> None:
        self.host = HostModel(f"managed-{next(_serial)}", clock=self.clock, seed=seed,
                              id_policy=policy, max_domid=MAX_DOMID)

    def teardown(self) -> None:
        if self.host is not None:
            self.host.close()

    # -- helpers ------------------------------------------------------------------------

    @property
    def h(self) -> HostModel:
        assert self.host is not None
        return self.host

    def _find(self, uuid: str) -> Definition | None:
        return self.h.find(uuid=uuid)[2]

    def _known_uuids(self) -> list[str]:
        return sorted({r.uuid for r in self.h.domains()[1:]} | self.defined)

    def _held_names(self) -> dict[str, str]:
        held = {r.name: r.uuid for r in self.h.domains()}
        held.update((d.name, d.uuid) for d in self.h.defined()[2])
        return held

    def _free_id(self) -> bool:
        return len(self.h.domains()) - 1 < MAX_DOMID

    def _attempt(self, step: Callable[[], object]) -> object | None:
        """Run ``step``; if the host refuses it, nothing but the journal changed."""
        before, generation = self._kept(self.h.state()), self.h.generation
        try:
            return step()
        except XvirtError:
            assert self._kept(self.h.state()) == before
            assert self.h.generation == generation
            return None

    @staticmethod
    def _kept(state: HostState) -> tuple[object, ...]:
        return state.boot_id, state.domains, state.definitions, state.rover

    def _guests(self, managed: bool) -> list[DomainRecord]:
        """The running guests; only the managed ones if ``managed`` and there are any
        (so that histories often stop, save and rename a persistent domain)."""
        guests = self.h.domains()[1:]
        chosen = [r for r in guests if r.uuid in self.defined] if managed else []
        return chosen or guests

    def _stop(self, op: str, pick: int, managed: bool) -> None:
        guests = self._guests(managed)
        if not guests:
            return
        victim = guests[pick % len(guests)]
        was = self._find(victim.uuid)
        assert was is not None and was.id == victim.id
        if op == "save":
            image = f"img{next(self.images)}"
            done = self._attempt(lambda: self.h.save(victim.id, image))
        elif op == "shutdown":
            done = self._attempt(lambda: self.h.shutdown(victim.id))
        else:
            done = self._attempt(lambda: self.h.destroy(victim.id))
        if done is None and victim.uuid in {r.uuid for r in self.h.domains()}:
            assert op == "shutdown" and victim.state is DomainState.CRASHED
            return
        now = self._find(victim.uuid)
        event(f"{op} of a {'persistent' if was.persistent else 'transient'} domain")
        if was.persistent:  # found shut off, under the same name
            assert now is not None and (now.id, now.name, now.persistent) == (
                None, victim.name, True)
        else:
            assert now is None

    # -- rules --------------------------------------------------------------------------

    @rule(name=NAMES, pick=PICKS, reuse=st.booleans())
    def define(self, name: str, pick: int, reuse: bool) -> None:
        known = self._known_uuids()
        uuid = known[pick % len(known)] if reuse and known else None
        held = self._held_names()
        running = {r.uuid: r for r in self.h.domains()}
        d = self._attempt(lambda: self.h.define(name, uuid=uuid))
        fine = held.get(name, uuid) == uuid and (
            uuid not in running or running[uuid].name == name)
        assert (d is not None) == fine, (name, uuid, held)
        if isinstance(d, Definition):
            event("define: " + ("a running domain" if d.uuid in running else
                                "a replacement" if d.uuid in self.defined else "a new one"))
            self.defined.add(d.uuid)
            assert (d.name, d.persistent) == (name, True)
            assert d.id == (running[d.uuid].id if d.uuid in running else None)

    @rule(pick=PICKS, shut_off=st.booleans())
    def start(self, pick: int, shut_off: bool) -> None:
        """A shut-off domain if ``shut_off`` and there is one, else any (refused if it runs)."""
        known = [d.uuid for d in self.h.defined()[2]] if shut_off else []
        known = known or self._known_uuids()
        if not known:
            return
        uuid = known[pick % len(known)]
        before = self._find(uuid)
        assert before is not None
        free = self._free_id()
        rec = self._attempt(lambda: self.h.start(uuid))
        assert (rec is not None) == (before.id is None and free)
        if rec is not None:
            event("start")
            after = self._find(uuid)
            assert after is not None and after.id is not None and after.persistent
            assert after.name == before.name

    @rule(op=st.sampled_from(["destroy", "shutdown", "save"]), pick=PICKS,
          managed=st.booleans())
    def stop(self, op: str, pick: int, managed: bool) -> None:
        self._stop(op, pick, managed)

    @rule(pick=PICKS)
    def crash(self, pick: int) -> None:
        guests = self.h.domains()[1:]
        if guests:
            self.h.crash(guests[pick % len(guests)].id)

    @rule(pick=PICKS)
    def restore(self, pick: int) -> None:
        images = self.h.images()
        if not images:
            return
        rec = self._attempt(lambda: self.h.restore(images[pick % len(images)]))
        if isinstance(rec, DomainRecord):
            assert self.h.images() == images  # restore leaves the image, as xm does
            found = self._find(rec.uuid)
            assert found is not None and found.persistent == (found.uuid in self.defined)
            event(f"restore of a {'persistent' if found.persistent else 'transient'} domain")

    @rule(pick=PICKS, unknown=st.booleans())
    def undefine(self, pick: int, unknown: bool) -> None:
        known = self._known_uuids()
        uuid = ("00000000-0000-0000-0000-00000000beef" if unknown or not known
                else known[pick % len(known)])
        before = self._find(uuid)
        try:
            self.h.undefine(uuid)
        except NoDomainError:
            assert before is None  # a running domain is refused as running, first
            return
        except OperationFailedError:
            assert before is not None and before.id is not None
            return
        assert before is not None and before.id is None
        event("undefine")
        self.defined.discard(uuid)
        assert self._find(uuid) is None

    @rule(pick=PICKS, name=NAMES, managed=st.booleans())
    def rename(self, pick: int, name: str, managed: bool) -> None:
        guests = self._guests(managed)
        if not guests:
            return
        dom = guests[pick % len(guests)]
        held = self._held_names()
        def rename() -> bool:
            self.h.rename(dom.id, name)
            return True

        done = self._attempt(rename)
        assert (done is not None) == (held.get(name, dom.uuid) == dom.uuid)
        if done is not None:
            found = self._find(dom.uuid)
            assert found is not None and found.name == name
            event(f"rename of a {'persistent' if found.persistent else 'transient'} domain")

    @rule(name=NAMES)
    def create(self, name: str) -> None:
        held, free = self._held_names(), self._free_id()
        rec = self._attempt(lambda: self.h.create(name))
        assert (rec is not None) == (name not in held and free)

    @precondition(lambda self: self.host is not None and self.defined)
    @rule()
    def reboot_host(self) -> None:
        running = self.h.domains()[1:]
        self.h.reboot_host()
        for r in running:  # every managed domain is shut off now, the others gone
            found = self._find(r.uuid)
            assert (found is not None) == (r.uuid in self.defined)
            assert found is None or found.id is None

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def names_are_unique_across_running_and_defined(self) -> None:
        if self.host is None:
            return
        names = [r.name for r in self.h.domains()] + [d.name for d in self.h.defined()[2]]
        assert len(names) == len(set(names)), names

    @invariant()
    def shut_off_domains_have_no_id_and_no_data_plane_presence(self) -> None:
        if self.host is None:
            return
        inactive = self.h.defined()[2]
        running = {r.uuid for r in self.h.domains()}
        on_data_plane = {uuid for _, uuid in self.h.data_snapshot().members()}
        assert on_data_plane == running
        for d in inactive:
            assert d.id is None and d.persistent
            assert d.uuid not in running and d.uuid not in on_data_plane
            assert self._find(d.uuid) == d and self.h.find(name=d.name)[2] == d

    @invariant()
    def the_definitions_are_exactly_what_was_defined(self) -> None:
        if self.host is None:
            return
        state = self.h.state()
        assert {s.uuid for s in state.definitions} == self.defined
        names = {s.uuid: s.name for s in state.definitions}
        for r in self.h.domains():  # a running managed domain runs under its definition's name
            found = self._find(r.uuid)
            assert found is not None and found.id == r.id
            assert found.persistent == (r.uuid in self.defined)
            assert r.uuid not in names or names[r.uuid] == r.name


ManagedDomains.TestCase.settings = settings(max_examples=200, stateful_step_count=50,
                                            deadline=None)
test_managed_domains = ManagedDomains.TestCase
