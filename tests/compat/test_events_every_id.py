"""Every domain event ID registers through the face (issue 18, item 2), on the embedded
host and through a daemon: lifecycle and METADATA_CHANGE fire with the arguments
libvirt-python gives their callbacks; a reboot is STOPPED/SHUTDOWN then STARTED/BOOTED,
as libvirt's Xen driver (libxl) reports it, with no REBOOT event (QEMU's and LXC's
alone); the others (REBOOT, agent lifecycle, tunables, block jobs...) register,
deregister, and never fire.

Before, a REBOOT or agent-lifecycle registration raised VIR_ERR_NO_SUPPORT: a script
that registers on a worker thread (libvirt-python's examples do) lost that thread to
the uncaught libvirtError while the process stayed up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._events import EVENT_IDS, LOOP
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.daemon import DaemonProcess

NS = "http://example.org/app"
GUEST = ("<domain type='xen'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>"
         "<os><type>linux</type></os></domain>")


@pytest.fixture
def loop_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOOP, "registered", False)
    assert face.virEventRegisterDefaultImpl() == 0


@pytest.fixture(scope="module")
def shared_daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_module_daemon()


@pytest.fixture(params=["sim", "daemon"])
def ec(request: pytest.FixtureRequest, loop_registered: None) -> Iterator[face.virConnect]:
    if request.param == "sim":
        uri = request.getfixturevalue("host").uri
    else:
        uri = request.getfixturevalue("shared_daemon").unix_uri
    c = face.open(uri)
    yield c
    c.close()


def test_the_face_knows_as_many_event_ids_as_libvirt() -> None:
    """The binding has no VIR_DOMAIN_EVENT_ID_LAST (the generator drops _LAST): its IDs
    are 0 .. EVENT_IDS - 1, every one of them."""
    lv = real_libvirt()
    names = [n for n in dir(lv) if n.startswith("VIR_DOMAIN_EVENT_ID_")]
    assert sorted(getattr(lv, n) for n in names) == list(range(EVENT_IDS))


def test_a_worker_thread_registers_every_event_id_and_lives_on(ec: face.virConnect) -> None:
    registered: list[int] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for event_id in range(EVENT_IDS):
                registered.append(ec.domainEventRegisterAny(None, event_id,
                                                            lambda *a: None, event_id))
        except BaseException as exc:  # what used to end the thread
            failures.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=30)
    assert failures == [] and not thread.is_alive()
    assert len(set(registered)) == EVENT_IDS and all(isinstance(i, int) for i in registered)
    pump = ec._callbacks.pump
    assert pump is not None and pump.alive  # one source feeds them all
    for callback_id in registered:
        assert ec.domainEventDeregisterAny(callback_id) is None
    pump.join(timeout=30)
    assert not pump.alive


def _run_until(done: Callable[[], bool]) -> None:
    for _ in range(400):
        if done():
            return
        face.virEventRunDefaultImpl()
    raise AssertionError("the events did not come")


def test_what_fires_fires_with_libvirts_arguments(ec: face.virConnect) -> None:
    seen: list[tuple[Any, ...]] = []
    lock = threading.Lock()

    def note(kind: str) -> Callable[..., None]:
        def cb(conn: face.virConnect, dom: face.virDomain, *rest: Any) -> None:
            assert conn is ec and threading.current_thread() is threading.main_thread()
            with lock:
                seen.append((kind, dom.name(), *rest))
        return cb

    ids = {"lifecycle": face.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
           "reboot": face.VIR_DOMAIN_EVENT_ID_REBOOT,
           "metadata": face.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
           "agent": face.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
           "tunable": face.VIR_DOMAIN_EVENT_ID_TUNABLE,
           "rtc": face.VIR_DOMAIN_EVENT_ID_RTC_CHANGE}
    callbacks = [ec.domainEventRegisterAny(None, i, note(k), k) for k, i in ids.items()]
    name = f"ev-{ec._backend.driver}"
    dom = ec.createXML(GUEST.format(name=name), 0)
    dom.reboot(0)
    dom.setMetadata(1, "a title", None, None, 0)  # VIR_DOMAIN_METADATA_TITLE
    dom.setMetadata(2, "<a/>", "app", NS, 0)  # VIR_DOMAIN_METADATA_ELEMENT
    dom.setSchedulerParameters({"weight": 9})  # no tunable event on a Xen host (libxl)
    dom.destroy()
    _run_until(lambda: len(seen) >= 6)  # in order: a REBOOT event would be seen before
    E = face
    assert seen == [
        ("lifecycle", name, E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED,
         "lifecycle"),
        # a reboot, as libxl reports it: stopped (shut down), started again
        ("lifecycle", name, E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN,
         "lifecycle"),
        ("lifecycle", name, E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED,
         "lifecycle"),
        ("metadata", name, 1, None, "metadata"),
        ("metadata", name, 2, NS, "metadata"),
        ("lifecycle", name, E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
         "lifecycle"),
    ]
    for callback_id in callbacks:
        ec.domainEventDeregisterAny(callback_id)


def test_a_callback_for_one_domain_hears_only_that_domain(ec: face.virConnect) -> None:
    mine = ec.createXML(GUEST.format(name=f"mine-{ec._backend.driver}"), 0)
    theirs = ec.createXML(GUEST.format(name=f"theirs-{ec._backend.driver}"), 0)
    heard: list[str] = []
    ec.domainEventRegisterAny(mine, face.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                              lambda c, d, kind, uri, o: heard.append(d.name()), None)
    everything: list[str] = []
    ec.domainEventRegisterAny(None, face.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                              lambda c, d, kind, uri, o: everything.append(d.name()), None)
    theirs.setMetadata(1, "theirs", None, None, 0)  # VIR_DOMAIN_METADATA_TITLE
    mine.setMetadata(1, "mine", None, None, 0)
    _run_until(lambda: len(everything) == 2)
    assert heard == [mine.name()] and everything == [theirs.name(), mine.name()]
    mine.destroy()
    theirs.destroy()


def test_the_old_api_hears_lifecycle_events_only(host: xvirt.sim.Host, loop_registered: None,
                                                 conn: face.virConnect) -> None:
    seen: list[tuple[str, int]] = []
    conn.domainEventRegister(lambda c, d, ev, det, o: seen.append((d.name(), ev)), None)
    dom = conn.createXML(GUEST.format(name="old"), 0)
    dom.setMetadata(0, "described", None, None, 0)  # not a lifecycle event
    dom.destroy()
    _run_until(lambda: len(seen) >= 2)
    assert seen == [("old", face.VIR_DOMAIN_EVENT_STARTED), ("old", face.VIR_DOMAIN_EVENT_STOPPED)]
