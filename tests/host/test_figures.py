"""The embedded host's figures are physically possible (issue 20).

A Xen host never reports more memory used by its domains than it has, nor more CPU
time used in an interval than the interval times its CPUs: the host refuses a domain
that does not fit in the memory left (naming what it needs and what is free), and
when the domains want more CPU than there is, each gets the same share of what it
wants. A state machine checks both on the demo host under any interleaving of
lifecycle steps and clock advances; the unit tests pin the refusals and the sharing.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, OperationFailedError, XvirtError
from xvirt.host.demo import populate
from xvirt.host.hypervisor import DOM0_MEMORY_KIB, HostModel, HostState, default_memory_kib
from xvirt.model import DOMID_FIRST_RESERVED, Affect

GIB = 1024 * 1024
HostModels = Callable[..., HostModel]
_serial = itertools.count()


def _used(host: HostModel) -> int:
    return sum(d.memory_kib for d in host.domains())


def _rates(host: HostModel) -> float:
    return sum(d.rate for d in host.live_view()[3])


# -- memory ---------------------------------------------------------------------------------


def test_a_domain_that_does_not_fit_is_refused_naming_need_and_free(
        make_host_model: HostModels) -> None:
    host = make_host_model(memory_kib=8 * GIB)  # Domain-0 takes 2
    host.create("big", memory_kib=5 * GIB)
    free = host.node_info().free_memory_kib
    assert free == GIB
    with pytest.raises(OperationFailedError) as caught:
        host.create("more", memory_kib=GIB + 1)
    message = caught.value.message
    assert f"it needs {GIB + 1} KiB, {GIB} KiB of {8 * GIB} KiB are free" in message
    assert caught.value.name == "more" and caught.value.op == "create"
    assert [d.name for d in host.domains()] == ["Domain-0", "big"]  # nothing else changed
    host.create("exact", memory_kib=GIB)  # what is free fits
    assert host.node_info().free_memory_kib == 0


def test_start_and_restore_are_refused_when_the_memory_is_taken(
        make_host_model: HostModels) -> None:
    host = make_host_model(memory_kib=8 * GIB)
    saved = host.create("saved", memory_kib=4 * GIB)
    host.save(saved.id, "img")
    mail = host.define("mail", memory_kib=4 * GIB)
    host.create("filler", memory_kib=5 * GIB)  # 1 GiB left (Domain-0 has 2)
    attempts: list[tuple[Callable[[], object], str]] = [
        (lambda: host.restore("img"), "restore"), (lambda: host.start(mail.uuid), "start")]
    for attempt, op in attempts:
        with pytest.raises(OperationFailedError) as caught:
            attempt()
        assert "not enough free memory" in caught.value.message
        assert f"it needs {4 * GIB} KiB, {GIB} KiB" in caught.value.message
        assert host.journal()[-1].op == op and host.journal()[-1].outcome.startswith(
            "failed: not enough free memory")
    host.destroy(next(d.id for d in host.domains() if d.name == "filler"))
    assert host.restore("img").name == "saved"  # room again


def test_a_hosts_memory_defaults_to_room_for_its_id_space() -> None:
    assert default_memory_kib(64) == 64 * GIB  # a small ID space: an ordinary host
    assert default_memory_kib(DOMID_FIRST_RESERVED - 1) == 8192 * GIB
    for guests in (1, 5000, 12345):
        room = default_memory_kib(guests) - DOM0_MEMORY_KIB
        assert room >= guests * 256 * 1024 and default_memory_kib(guests) % (64 * GIB) == 0
    with pytest.raises(InvalidArgumentError, match="no room for Domain-0"):
        HostModel("tiny", memory_kib=1024, clock=ManualClock())


def test_a_host_filled_with_5000_small_guests_fits(make_host_model: HostModels) -> None:
    host = make_host_model(max_domid=5000)
    with host.batch():
        for i in range(5000):
            host.create(f"guest-{i:05d}", memory_kib=256 * 1024)
    info = host.node_info()
    assert _used(host) == info.memory_kib - info.free_memory_kib <= info.memory_kib
    assert _rates(host) <= info.cpus


# -- CPU --------------------------------------------------------------------------------------


def test_domains_that_want_more_cpu_than_there_is_share_it(
        make_host_model: HostModels, clock: ManualClock) -> None:
    host = make_host_model(clock=clock, cpus=2)
    busy = [host.create(f"busy{i}", vcpus=2, load=1.0) for i in range(3)]  # 6 CPUs wanted
    start = {d.uuid: d.cpu_time_ns for d in host.domains()}
    clock.advance(10.0)
    used = {d.uuid: d.cpu_time_ns - start[d.uuid] for d in host.domains()}
    assert sum(used.values()) <= 2 * 10e9
    assert sum(used.values()) >= 2 * 10e9 * 2 ** (-1 / 8)  # within a step of all of it
    shares = {used[b.uuid] / 20e9 for b in busy}  # each the same share of what it wants
    assert max(shares) - min(shares) < 1e-6
    host.destroy(busy[0].id)
    host.destroy(busy[1].id)  # 2.2 CPUs wanted now: still short
    again = {d.uuid: d.cpu_time_ns for d in host.domains()}
    clock.advance(10.0)
    last = host.domain(busy[2].id).cpu_time_ns - again[busy[2].uuid]
    assert 20e9 * max(shares) < last <= 20e9  # it got more once the others left
    host.pause(busy[2].id)  # 0.2 wanted: everyone gets all they want
    before = host.domain(0).cpu_time_ns
    clock.advance(10.0)
    assert host.domain(0).cpu_time_ns - before == pytest.approx(10e9 * 0.05 * 2, abs=2)


def test_an_uncrowded_host_gives_every_domain_what_it_wants(
        make_host_model: HostModels, clock: ManualClock) -> None:
    host = make_host_model(clock=clock)  # 8 CPUs, the demo's 5.3 CPUs wanted
    populate(host, churn=False)
    start = {d.name: d.cpu_time_ns for d in host.domains()}
    clock.advance(100.0)
    db1 = next(d for d in host.domains() if d.name == "db1")
    assert db1.cpu_time_ns - start["db1"] == pytest.approx(100e9 * 4 * 0.55, abs=2)


def test_a_reloaded_crowded_host_shares_its_cpus_as_before(
        make_host_model: HostModels, clock: ManualClock) -> None:
    host = make_host_model(clock=clock, cpus=1)
    for i in range(5):
        host.create(f"g{i}", load=0.5)
    clock.advance(3.0)
    state: HostState = host.state()
    again = make_host_model(clock=clock, cpus=1)
    again.load(state)
    clock.advance(7.0)
    assert again.domains() == host.domains()
    assert _rates(again) == pytest.approx(_rates(host)) and _rates(host) <= 1


# -- any history ---------------------------------------------------------------------------


class PhysicalFigures(RuleBasedStateMachine):
    """The demo host on a machine of a few CPUs and little memory, under random steps.

    After every step: the domains' memory is what the host says is used, never more
    than it has; what the domains burn at this instant fits in the CPUs; and the CPU
    time the domains present at both of two successive looks used between them is at
    most the time between them times the CPUs (a step either acts at one instant, so
    no domain may gain CPU time, or advances the clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1000.0)
        self.host: HostModel | None = None
        self.serial = itertools.count()
        self.images: list[str] = []
        self.seen: dict[str, int] = {}
        self.seen_at = self.clock.now()

    @initialize(cpus=st.integers(1, 8), memory_gib=st.integers(11, 24), churn=st.booleans())
    def boot(self, cpus: int, memory_gib: int, churn: bool) -> None:
        self.host = HostModel(f"figures-{next(_serial)}", clock=self.clock, cpus=cpus,
                              memory_kib=memory_gib * GIB, seed=7, max_domid=200)
        populate(self.host, churn=churn)
        self._look()

    def teardown(self) -> None:
        if self.host is not None:
            self.host.close()

    @property
    def h(self) -> HostModel:
        assert self.host is not None
        return self.host

    def _look(self) -> None:
        self.seen = {d.uuid: d.cpu_time_ns for d in self.h.domains()}
        self.seen_at = self.clock.now()

    def _guest(self, pick: int) -> int | None:
        guests = [d.id for d in self.h.domains() if d.id != 0]
        return guests[pick % len(guests)] if guests else None

    # -- steps ------------------------------------------------------------------------------

    @rule(mib=st.integers(64, 8192), vcpus=st.integers(1, 8), load=st.floats(0, 1),
          paused=st.booleans())
    def create(self, mib: int, vcpus: int, load: float, paused: bool) -> None:
        free = self.h.node_info().free_memory_kib
        try:
            self.h.create(f"g{next(self.serial)}", memory_kib=mib * 1024, vcpus=vcpus,
                          load=load, paused=paused)
        except OperationFailedError as exc:
            assert mib * 1024 > free, exc.message  # refused only for lack of memory
            assert f"it needs {mib * 1024} KiB, {free} KiB" in exc.message
            event("create refused: no memory")
        else:
            assert mib * 1024 <= free

    @rule(op=st.sampled_from(["destroy", "shutdown", "pause", "resume", "reboot", "migrate",
                              "crash", "block", "unblock"]), pick=st.integers(0, 99))
    def act(self, op: str, pick: int) -> None:
        domid = self._guest(pick)
        if domid is None:
            return
        try:
            if op in ("block", "unblock"):
                self.h.set_blocked(domid, op == "block")
            else:
                getattr(self.h, op)(domid)
        except OperationFailedError:
            pass  # the wrong state for it

    @rule(pick=st.integers(0, 99), count=st.integers(1, 8))
    def set_vcpus(self, pick: int, count: int) -> None:
        domid = self._guest(pick)
        if domid is None:
            return
        with contextlib.suppress(XvirtError):  # above its maximum
            self.h.set_vcpus(self.h.domain(domid).uuid, count, affect=Affect.LIVE)

    @rule(pick=st.integers(0, 99))
    def save(self, pick: int) -> None:
        domid = self._guest(pick)
        if domid is not None:
            image = f"img{next(self.serial)}"
            self.h.save(domid, image)
            self.images.append(image)

    @rule(pick=st.integers(0, 99))
    def restore(self, pick: int) -> None:
        if not self.images:
            return
        try:
            self.h.restore(self.images[pick % len(self.images)])
        except OperationFailedError as exc:
            event("restore refused: " + ("no memory" if "memory" in exc.message else "other"))

    @rule(pick=st.integers(0, 1))
    def start_defined(self, pick: int) -> None:
        shut_off = self.h.defined()[2]
        if shut_off:
            try:
                self.h.start(shut_off[pick % len(shut_off)].uuid)
            except OperationFailedError as exc:
                assert "not enough free memory" in exc.message
                event("start refused: no memory")

    @rule(seconds=st.floats(0.001, 120.0))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- what holds after each ------------------------------------------------------------

    @invariant()
    def memory_within_the_host(self) -> None:
        if self.host is None:
            return
        info = self.h.node_info()
        used = _used(self.h)
        assert used <= info.memory_kib
        assert info.free_memory_kib == info.memory_kib - used

    @invariant()
    def cpu_within_the_host(self) -> None:
        if self.host is None:
            return
        cpus = self.h.node_info().cpus
        assert _rates(self.h) <= cpus
        now = self.clock.now()
        current = {d.uuid: d.cpu_time_ns for d in self.h.domains()}
        both = current.keys() & self.seen.keys()
        used = sum(max(0, current[u] - self.seen[u]) for u in both)
        assert used <= (now - self.seen_at) * 1e9 * cpus + 2 * len(both)
        self._look()


PhysicalFigures.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                             deadline=None)
test_physical_figures = PhysicalFigures.TestCase
