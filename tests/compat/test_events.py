"""The event loop, and lifecycle events delivered from inside virEventRunDefaultImpl()."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._events import LOOP, EventLoop, Pump
from xvirt.errors import ConnectionClosedError, HostUnreachableError
from xvirt.model import DomainEvent, EventKind

from .helpers import err

# -- the loop on its own (a fake clock: nothing really waits) ----------------------------------


class FakeTime:
    """A clock the loop's condition wait advances, recording each wait."""

    def __init__(self, loop: EventLoop) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        loop._cond.wait = self.wait  # type: ignore[method-assign]

    def __call__(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None and timeout >= 0
        self.waits.append(timeout)
        self.now += timeout
        return False


@pytest.fixture
def fake() -> tuple[EventLoop, FakeTime]:
    loop = EventLoop()
    clock = FakeTime(loop)
    loop._clock = clock
    return loop, clock


def test_an_idle_iteration_blocks_once_then_returns(fake: tuple[EventLoop, FakeTime]) -> None:
    loop, clock = fake
    assert loop.run_once() == 0
    assert clock.waits == [EventLoop.MAX_WAIT_S]  # one bounded wait: no spinning


def test_timers(fake: tuple[EventLoop, FakeTime]) -> None:
    loop, clock = fake
    fired: list[tuple[int, Any]] = []
    every = loop.add_timeout(0, lambda t, o: fired.append((t, o)), "each")
    slow = loop.add_timeout(200, lambda t, o: fired.append((t, o)), "slow")
    off = loop.add_timeout(-1, lambda t, o: fired.append((t, o)), "never")
    loop.run_once()
    assert fired == [(every, "each")] and clock.waits == []  # due at once: no wait
    assert loop.remove_timeout(every) == 0 and loop.remove_timeout(every) == -1
    fired.clear()
    loop.run_once()  # waits until the 200 ms timer is due, not longer
    assert fired == [(slow, "slow")] and clock.waits == [pytest.approx(0.2)]
    loop.update_timeout(off, 0)
    loop.update_timeout(slow, -1)
    fired.clear()
    loop.run_once()
    assert fired == [(off, "never")]


def test_a_failing_callback_does_not_stop_the_loop(fake: tuple[EventLoop, FakeTime],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    loop, _ = fake
    ran: list[int] = []
    loop.post(lambda: 1 / 0)
    loop.post(lambda: ran.append(1))
    assert loop.run_once() == 0
    assert ran == [1]
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_a_post_from_another_thread_wakes_the_loop() -> None:
    loop = EventLoop()
    loop.MAX_WAIT_S = 30.0  # a missed wake-up would hang the test visibly
    ran = threading.Event()
    started = threading.Event()

    def poster() -> None:
        started.wait()
        loop.post(ran.set)

    t = threading.Thread(target=poster)
    t.start()
    started.set()
    while not ran.is_set():
        loop.run_once()
    t.join()


def test_module_timer_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The face's own loop's timers (libvirt's runs them once a script registered it:
    test_passthrough.py)."""
    monkeypatch.setattr(face._LOOPS, "libvirt_runs_script", False)
    timer = face.virEventAddTimeout(-1, lambda t, o: None, None)
    face.virEventUpdateTimeout(timer, -1)
    assert face.virEventRemoveTimeout(timer) == 0
    assert err(lambda: face.virEventRemoveTimeout(timer))[0] == face.VIR_ERR_INVALID_ARG


# -- lifecycle events -------------------------------------------------------------------------

Event = tuple[str, int, int, Any]


@pytest.fixture
def loop_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOOP, "registered", False)
    assert face.virEventRegisterDefaultImpl() == 0


def run_until(got: list[Event], count: int) -> None:
    """Run the loop until ``count`` callbacks came (bounded)."""
    for _ in range(200):
        if len(got) >= count:
            return
        face.virEventRunDefaultImpl()
    raise AssertionError(f"only {len(got)} of {count} events: {got}")


@pytest.fixture
def got(conn: face.virConnect, loop_registered: None) -> Iterator[list[Event]]:
    seen: list[Event] = []

    def cb(c: face.virConnect, dom: face.virDomain, event: int, detail: int, opaque: Any) -> None:
        assert c is conn and threading.current_thread() is threading.main_thread()
        seen.append((dom.name(), event, detail, opaque))

    callback = conn.domainEventRegisterAny(None, face.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, "op")
    assert isinstance(callback, int)
    yield seen
    if not conn._xvirt.closed:
        conn.domainEventDeregisterAny(callback)


E = face


def test_every_lifecycle_change(host: xvirt.sim.Host, conn: face.virConnect,
                                got: list[Event]) -> None:
    """Each change, then the loop until its event came: the pace of a real host."""
    state: dict[str, Any] = {}

    def step(action: Any, *expected: tuple[str, int, int]) -> None:
        action()
        run_until(got, len(got) + len(expected))
        assert [g[:3] for g in got[-len(expected):]] == list(expected)

    def create(name: str) -> None:
        state["rec"] = host.create(name)

    def on(op: str, *args: Any) -> Any:
        def act() -> None:
            result = getattr(host, op)(state["rec"].id, *args)
            if isinstance(result, xvirt.sim.DomainRecord):
                state["rec"] = result
        return act

    def restore() -> None:
        state["rec"] = host.restore("h.img")

    step(lambda: create("g"), ("g", E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    step(on("pause"), ("g", E.VIR_DOMAIN_EVENT_SUSPENDED, E.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED))
    step(on("resume"), ("g", E.VIR_DOMAIN_EVENT_RESUMED, E.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED))
    step(on("rename", "h"), ("h", E.VIR_DOMAIN_EVENT_DEFINED, E.VIR_DOMAIN_EVENT_DEFINED_RENAMED))
    step(on("reboot"), ("h", E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    step(on("migrate"), ("h", E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_MIGRATED))
    step(on("save", "h.img"), ("h", E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SAVED))
    step(restore, ("h", E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_RESTORED))
    step(on("crash"), ("h", E.VIR_DOMAIN_EVENT_CRASHED, E.VIR_DOMAIN_EVENT_CRASHED_PANICKED))
    step(on("destroy"), ("h", E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_DESTROYED))
    step(lambda: create("s"), ("s", E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    step(on("shutdown"), ("s", E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN))
    assert {g[3] for g in got} == {"op"}


def test_a_domain_gone_before_it_was_named(host: xvirt.sim.Host, conn: face.virConnect,
                                           loop_registered: None) -> None:
    """Xen's events carry no names: one that came and went between two reads of the
    stream is reported by UUID, and name() says it is not found."""
    seen: list[tuple[str, int]] = []
    conn.domainEventRegisterAny(None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, o: seen.append((d.UUIDString(), ev)), None)
    doms: list[face.virDomain] = []
    conn.domainEventRegister(lambda c, d, ev, det, o: doms.append(d), None)
    with host.batch():  # atomic for readers: the stream never sees it alive
        rec = host.create("brief")
        host.destroy(rec.id)
    for _ in range(200):
        if len(seen) == 2:
            break
        face.virEventRunDefaultImpl()
    assert seen == [(rec.uuid, E.VIR_DOMAIN_EVENT_STARTED), (rec.uuid, E.VIR_DOMAIN_EVENT_STOPPED)]
    assert err(doms[0].name)[0] == E.VIR_ERR_NO_DOMAIN
    assert doms[0].ID() == -1


def test_actions_through_the_face_are_events_too(conn: face.virConnect, host: xvirt.sim.Host,
                                                 got: list[Event]) -> None:
    host.create("g")
    conn.lookupByName("g").suspend()
    run_until(got, 2)
    assert [g[1] for g in got] == [E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_SUSPENDED]


def test_callbacks_for_one_domain(host: xvirt.sim.Host, conn: face.virConnect,
                                  loop_registered: None) -> None:
    mine, theirs = host.create("mine"), host.create("theirs")
    seen: list[int] = []
    dom = conn.lookupByName("mine")
    conn.domainEventRegisterAny(dom, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, o: seen.append(ev), None)
    everything: list[int] = []
    conn.domainEventRegister(lambda c, d, ev, det, o: everything.append(ev), None)
    host.pause(theirs.id)
    host.pause(mine.id)
    for _ in range(200):
        if seen and len(everything) == 2:
            break
        face.virEventRunDefaultImpl()
    assert seen == [E.VIR_DOMAIN_EVENT_SUSPENDED]
    assert everything == [E.VIR_DOMAIN_EVENT_SUSPENDED] * 2


def test_deregistered_callbacks_are_not_called_and_the_pump_stops(
        host: xvirt.sim.Host, conn: face.virConnect, loop_registered: None) -> None:
    seen: list[int] = []

    def cb(c: object, d: object, ev: int, det: int, o: object) -> None:
        seen.append(ev)

    one = conn.domainEventRegisterAny(None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
    conn.domainEventRegister(cb, None)
    pump = conn._callbacks.pump
    assert pump is not None and pump.alive
    conn.domainEventDeregisterAny(one)
    conn.domainEventDeregister(cb)
    pump.join(timeout=30)
    assert not pump.alive and conn._callbacks.pump is None
    host.create("late")
    face.virEventRunDefaultImpl()
    assert seen == []
    assert err(lambda: conn.domainEventDeregisterAny(one))[0] == E.VIR_ERR_INVALID_ARG


def test_one_failing_callback_does_not_starve_the_others(
        host: xvirt.sim.Host, conn: face.virConnect, loop_registered: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []

    def broken(*_a: object) -> None:
        raise RuntimeError("callback bug")

    conn.domainEventRegisterAny(None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE, broken, None)
    conn.domainEventRegisterAny(None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, o: seen.append(ev), None)
    host.create("g")
    for _ in range(200):
        if seen:
            break
        face.virEventRunDefaultImpl()
    assert seen == [E.VIR_DOMAIN_EVENT_STARTED]
    assert "callback bug" in capsys.readouterr().err


def test_closing_the_connection_stops_its_pump(conn: face.virConnect,
                                               loop_registered: None) -> None:
    conn.domainEventRegisterAny(None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *a: None, None)
    pump = conn._callbacks.pump
    assert pump is not None
    conn.close()
    pump.join(timeout=30)
    assert not pump.alive


def test_registration_refusals(conn: face.virConnect, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOOP, "registered", False)
    assert err(lambda: conn.domainEventRegisterAny(
        None, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *a: None, None)) == (
        1, 0, "internal error: could not initialize domain event timer")  # as libvirt
    face.virEventRegisterDefaultImpl()
    assert err(lambda: conn.domainEventRegisterAny(None, 99, lambda *a: None, None)) == (
        8, 20, "eventID in virConnectDomainEventRegisterAny must be less than 27")
    assert err(lambda: conn.domainEventRegisterAny(None, -1, lambda *a: None, None))[0] == 8
    assert conn._callbacks.pump is None


# -- the pump on its own -------------------------------------------------------------------------

class Script:
    """An event stream that plays a list: events, StopIteration (nothing came in
    time) and errors, then reports the connection closed."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)

    def __iter__(self) -> Script:
        return self

    def __next__(self) -> DomainEvent:
        step = self.steps.pop(0) if self.steps else ConnectionClosedError("closed")
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, DomainEvent)
        return step


def test_the_pump_goes_on_after_quiet_spells_and_host_outages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Pump, "POLL_S", 0.0)  # the pause after an outage: not waited here
    loop = EventLoop()
    first = DomainEvent(1, EventKind.CREATED, "u", 3, "g")
    second = DomainEvent(2, EventKind.PAUSED, "u", 3, "g")
    stream = Script(StopIteration(), first, HostUnreachableError("away"), StopIteration(), second)
    delivered: list[DomainEvent] = []
    pump = Pump(stream, delivered.append, loop)
    pump.join(timeout=30)
    assert not pump.alive  # ended by the closed connection
    while loop._pending:
        loop.run_once()
    assert delivered == [first, second]
