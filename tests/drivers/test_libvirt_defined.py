"""Defined (inactive) domains on the libvirt driver: ``find``, ``list_defined``,
``define``, ``start`` and ``undefine`` answer what libvirt-python answers on the same
domains, each at exactly the libvirt calls the driver documents (counted on the
driver's own connection, as libvirt sees them, and in its control-plane counter);
libvirt's DEFINED, UNDEFINED and STARTED events reach the event log; an inactive
domain is never live (C1: no census, snapshot or lookup by ID names it).

Each test runs on libvirt's test driver in this process (``test:///default``) and
inside a private libvirtd (``test+unix``, the ``libvirtd`` fixture)."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
from tests.threads import in_thread
from xvirt.connection import Connection
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_xml import config_from_xml
from xvirt.errors import (
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    XvirtError,
)
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import EventKind
from xvirt.planes import Definition, DiskConfig, DomainConfig, HostEvent, NicConfig
from xvirt.testing.libvirt_target import guest_xml

DEFAULT = "test"
DEFAULT_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
LIVENESS_S = 10.0  # how long an event is waited for: a liveness bound, not a timing

# The libvirt calls these methods may make. A handle's ID(), name() and UUIDString()
# read the handle (no call) and are not counted, by libvirt or by the driver.
_CONNECT_CALLS = ("lookupByUUIDString", "lookupByName", "lookupByID", "listAllDomains",
                  "listDefinedDomains", "getAllDomainStats", "getCapabilities", "defineXML",
                  "createXML")
_DOMAIN_CALLS = ("info", "OSType", "isPersistent", "isActive", "state", "XMLDesc", "create",
                 "undefine", "destroy")


def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{0xde00 + i:012x}"


@dataclass
class Host:
    target: str
    admin: Any  # the outside world's own connection (the real binding)


@pytest.fixture(params=["local", "libvirtd"])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    """libvirt's test driver, in process or in a private libvirtd, left as found."""
    target = ("test:///default" if request.param == "local"
              else request.getfixturevalue("libvirtd").uri)
    lv = real_libvirt()
    admin = lv.open(target)
    yield Host(target, admin)
    for dom in admin.listAllDomains(0):
        with contextlib.suppress(lv.libvirtError):
            if dom.name() == DEFAULT:
                if not dom.isActive():
                    dom.create()
                if not dom.isPersistent():
                    admin.defineXML(dom.XMLDesc(0))
                continue
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
    admin.close()


@pytest.fixture
def driver(host: Host) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(f"libvirt:{host.target}", host.target)
    yield d
    d.close()


class Calls:
    """libvirt calls made on the driver's connection from the test's own thread (the
    driver's worker, which observes what events name, is another thread)."""

    def __init__(self, driver: LibvirtDriver) -> None:
        self.driver = driver
        self.thread = threading.get_ident()
        self.counts: collections.Counter[str] = collections.Counter()

    def mine(self, conn: Any) -> bool:
        return (conn is self.driver._conn or conn is self.driver._watched) \
            and threading.get_ident() == self.thread


@pytest.fixture
def calls(driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch) -> Calls:
    lv = real_libvirt()
    seen = Calls(driver)
    for cls, methods, conn_of in ((lv.virConnect, _CONNECT_CALLS, lambda c: c),
                                  (lv.virDomain, _DOMAIN_CALLS, lambda d: d._conn)):
        for method in methods:
            real = getattr(cls, method)

            def counted(self: Any, *args: Any, _real: Any = real, _name: str = method,
                        _conn_of: Any = conn_of) -> Any:
                if seen.mine(_conn_of(self)):
                    seen.counts[_name] += 1
                return _real(self, *args)

            monkeypatch.setattr(cls, method, counted)
    return seen


@dataclass
class Spent:
    result: Any
    error: XvirtError | None
    made: collections.Counter[str]


def spend(calls: Calls, fn: Callable[[], Any]) -> Spent:
    """``fn()``, with the libvirt calls it made; every one counted on the control plane
    and none elsewhere."""
    counters = calls.driver.counters
    calls.counts.clear()
    control, data = counters.control_requests, counters.data_calls
    result, error = None, None
    try:
        result = fn()
    except XvirtError as exc:
        error = exc
    made = +calls.counts
    assert counters.control_requests - control == sum(made.values()), made
    assert counters.data_calls == data
    return Spent(result, error, made)


def reference(dom: Any) -> Definition:
    """What libvirt-python says of ``dom``, as a Definition."""
    domid = dom.ID()
    _state, max_kib, kib, vcpus, _cpu = dom.info()
    return Definition(dom.UUIDString(), dom.name(), None if domid < 0 else domid,
                      bool(dom.isPersistent()), DomainConfig(kib, max_kib, vcpus, dom.OSType()))


def small(name: str, i: int) -> str:
    return guest_xml(name, uuid_of(i), memory_kib=65536 + 1024 * i, vcpus=1 + i % 3)


def live(driver: LibvirtDriver) -> set[str]:
    """UUIDs of the live domains, by census and by snapshot (which must agree)."""
    census = {uuid for _, uuid in driver.census().members}
    snap = driver.snapshot()
    assert {row.uuid for row in snap.rows} == census
    assert all(row.id >= 0 for row in snap.rows)
    return census


# -- find ---------------------------------------------------------------------------------


def test_find_answers_what_libvirt_answers(host: Host, driver: LibvirtDriver,
                                           calls: Calls) -> None:
    admin = host.admin
    off = admin.defineXML(small("d-off", 1))
    on = admin.defineXML(small("d-on", 2))
    on.create()
    transient = admin.createXML(small("t-on", 3), 0)
    for dom, running in ((off, False), (on, True), (transient, True),
                         (admin.lookupByName(DEFAULT), True)):
        expected = reference(admin.lookupByUUIDString(dom.UUIDString()))
        for key in ({"name": dom.name()}, {"uuid": dom.UUIDString()}):
            spent = spend(calls, partial(driver.find, **key))
            assert spent.result == expected, key
            lookup = "lookupByName" if "name" in key else "lookupByUUIDString"
            want = {lookup: 1, "info": 1, "OSType": 1}
            if running:
                want["isPersistent"] = 1  # an inactive domain is persistent by definition
            assert spent.made == want, key
    assert reference(off).id is None and reference(transient).persistent is False
    # Nobody: one call each.
    assert spend(calls, lambda: driver.find(name="nope")).made == {"lookupByName": 1}
    spent = spend(calls, lambda: driver.find(uuid=uuid_of(99)))
    assert (spent.result, spent.made) == (None, {"lookupByUUIDString": 1})
    # Not a question libvirt can be asked: no call.
    spent = spend(calls, lambda: driver.find(name="a\udcffb"))
    assert (spent.result, spent.made) == (None, {})
    for bad in ({}, {"uuid": uuid_of(1), "name": "d-off"}, {"uuid": "not-a-uuid"}):
        spent = spend(calls, partial(driver.find, **bad))
        assert isinstance(spent.error, InvalidArgumentError) and spent.made == {}, bad
        assert (spent.error.op, spent.error.uri) == ("find", driver.uri)


def test_an_inactive_domain_found_is_not_live(host: Host, driver: LibvirtDriver) -> None:
    """C1: a domain defined and shut off is in no census or snapshot, and its old ID is
    nobody's, whichever call observed it last."""
    dom = host.admin.defineXML(small("d-stop", 4))
    dom.create()
    old_id = dom.ID()
    assert dom.UUIDString() in live(driver)
    assert driver.identify(old_id).uuid == dom.UUIDString()
    dom.destroy()
    found = driver.find(uuid=dom.UUIDString())  # this lookup is the observation
    assert found is not None and (found.id, found.persistent) == (None, True)
    assert driver.identify(old_id).uuid is None
    assert dom.UUIDString() not in live(driver)
    assert driver.resolve(uuids=[dom.UUIDString()]).domains == ()


# -- list_defined ---------------------------------------------------------------------------


def test_list_defined_is_libvirts_inactive_listing(host: Host, driver: LibvirtDriver,
                                                   calls: Calls) -> None:
    lv = real_libvirt()
    spent = spend(calls, driver.list_defined)
    assert (spent.result, spent.made) == ((), {"listAllDomains": 1})  # none at start
    admin = host.admin
    for i, name in enumerate(["d-c", "d-a", "d-b"]):
        admin.defineXML(small(name, 10 + i))
    admin.defineXML(small("d-running", 13)).create()
    admin.createXML(small("t-running", 14), 0)
    spent = spend(calls, driver.list_defined)
    inactive = admin.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_INACTIVE)
    assert spent.result == tuple(sorted((reference(d) for d in inactive),
                                        key=lambda d: d.name))
    assert [d.name for d in spent.result] == ["d-a", "d-b", "d-c"]
    assert all(d.id is None and d.persistent for d in spent.result)
    assert spent.made == {"listAllDomains": 1, "info": 3, "OSType": 3}
    assert sorted(admin.listDefinedDomains()) == [d.name for d in spent.result]


# -- define, start, undefine ------------------------------------------------------------------

CONFIG = DomainConfig(
    memory_kib=49152, max_memory_kib=65536, vcpus=2, os_type="hvm",
    disks=(DiskConfig("/var/lib/xvirt/r0 & <co>.img", "xvda"),
           DiskConfig("/dev/sdb", "hdb", readonly=True)),
    nics=(NicConfig("00:16:3e:00:00:01", "xenbr0"), NicConfig("52:54:00:00:00:02", None)))


def test_define_start_destroy_undefine_round_trip(host: Host, driver: LibvirtDriver,
                                                  calls: Calls) -> None:
    lv = real_libvirt()
    admin = host.admin
    uuid = uuid_of(20)
    spent = spend(calls, lambda: driver.define("r0 <&'\">", CONFIG, uuid))
    assert spent.made == {"getCapabilities": 1, "defineXML": 1, "info": 1, "OSType": 1}
    dom = admin.lookupByUUIDString(uuid)
    assert spent.result == reference(dom)
    assert (dom.name(), dom.ID(), dom.isPersistent()) == ("r0 <&'\">", -1, 1)
    xml = dom.XMLDesc(0)
    assert "type='test'" in xml.split(">", 1)[0]
    # Everything given, as libvirt keeps it (escaped in and out by the XML rules).
    assert config_from_xml(xml, uri=driver.uri) == CONFIG
    spent = spend(calls, lambda: driver.domain_config(uuid))
    assert (spent.result, spent.made) == (CONFIG, {"lookupByUUIDString": 1, "XMLDesc": 1})
    assert uuid not in live(driver)

    spent = spend(calls, lambda: driver.start(uuid))
    assert spent.error is None and spent.made == {"lookupByUUIDString": 2, "create": 1}
    domid = admin.lookupByUUIDString(uuid).ID()
    assert domid > 0
    assert uuid in live(driver) and driver.identify(domid).uuid == uuid
    row = next(r for r in driver.snapshot().rows if r.uuid == uuid)
    assert (row.id, row.memory_kib, row.max_memory_kib, row.vcpus) == (domid, 49152, 65536, 2)
    assert driver.find(name="r0 <&'\">") == reference(admin.lookupByUUIDString(uuid))

    admin.lookupByUUIDString(uuid).destroy()  # stopped: still defined, shut off
    found = driver.find(name="r0 <&'\">")
    assert found == reference(admin.lookupByUUIDString(uuid)) and found is not None
    assert (found.id, found.persistent) == (None, True)
    assert uuid not in live(driver) and driver.identify(domid).uuid is None
    assert [d.uuid for d in driver.list_defined()] == [uuid]

    spent = spend(calls, lambda: driver.undefine(uuid))
    assert spent.error is None and spent.made == {"lookupByUUIDString": 1, "undefine": 1}
    assert driver.find(uuid=uuid) is None and driver.list_defined() == ()
    with pytest.raises(lv.libvirtError) as info:
        admin.lookupByUUIDString(uuid)
    assert info.value.get_error_code() == lv.VIR_ERR_NO_DOMAIN


def test_defining_a_known_uuid_replaces_its_definition(host: Host, driver: LibvirtDriver,
                                                       calls: Calls) -> None:
    admin = host.admin
    uuid = uuid_of(21)
    first = driver.define("r1", CONFIG, uuid)
    bigger = DomainConfig(131072, 131072, 3, "hvm")
    spent = spend(calls, lambda: driver.define("r1", bigger, uuid))
    assert spent.made == {"getCapabilities": 1, "defineXML": 1, "info": 1, "OSType": 1}
    assert spent.result == reference(admin.lookupByUUIDString(uuid)) != first
    assert config_from_xml(admin.lookupByUUIDString(uuid).XMLDesc(0), uri="") == bigger
    # A running transient domain defined under its own name becomes persistent, running.
    transient = admin.createXML(small("t-keep", 22), 0)
    domid = transient.ID()
    made = driver.define("t-keep", bigger, transient.UUIDString())
    assert (made.id, made.persistent) == (domid, True)
    assert admin.lookupByUUIDString(transient.UUIDString()).isPersistent() == 1
    assert driver.identify(domid).uuid == transient.UUIDString()


def test_refusals_name_what_failed_and_change_nothing(host: Host, driver: LibvirtDriver,
                                                      calls: Calls) -> None:
    lv = real_libvirt()
    admin = host.admin
    default = admin.lookupByName(DEFAULT)
    off = driver.define("r2", CONFIG, uuid_of(23))

    # start or undefine of a running domain: refused after the lookup, nothing done
    for call, op in ((driver.start, "start"), (driver.undefine, "undefine")):
        spent = spend(calls, partial(call, DEFAULT_UUID))
        assert isinstance(spent.error, OperationFailedError), op
        assert (spent.error.op, spent.error.uuid, spent.error.domid, spent.error.name) == (
            op, DEFAULT_UUID, default.ID(), DEFAULT)
        assert spent.made == {"lookupByUUIDString": 1}
        assert (default.isActive(), default.isPersistent()) == (1, 1)
    # ... or of nobody
    for call, op in ((driver.start, "start"), (driver.undefine, "undefine")):
        spent = spend(calls, partial(call, uuid_of(98)))
        assert isinstance(spent.error, NoDomainError) and spent.error.op == op
        assert spent.made == {"lookupByUUIDString": 1}
    # a name another UUID holds, running or defined; a new name for a known UUID
    for name, uuid, holder in ((DEFAULT, None, DEFAULT_UUID), ("r2", uuid_of(24), off.uuid),
                               ("r2-renamed", off.uuid, off.uuid)):
        spent = spend(calls, partial(driver.define, name, CONFIG, uuid))
        assert isinstance(spent.error, OperationFailedError), name
        assert spent.error.libvirt_code == lv.VIR_ERR_OPERATION_FAILED
        assert (spent.error.op, spent.error.name) == ("define", name)
        assert spent.made == {"getCapabilities": 1, "defineXML": 1}
        assert admin.lookupByName(name if name != "r2-renamed" else "r2").UUIDString() == holder
    assert driver.find(uuid=off.uuid) == off
    # what cannot be sent, or what libvirt would quietly change: no call at all
    bad = [("", CONFIG, None), ("a\x01b", CONFIG, None), ("a\rb", CONFIG, None),
           ("a\udcffb", CONFIG, None), ("r3", CONFIG, "not-a-uuid"),
           ("r3", DomainConfig(65536, 32768, 1), None), ("r3", DomainConfig(0, 0, 1), None),
           ("r3", DomainConfig(65536, 65536, 0), None),
           ("r3", DomainConfig(65536, 65536, True), None),
           ("r3", DomainConfig(65536, 65536, 1, disks=(DiskConfig("/x\x00", "xvda"),)), None)]
    for name, config, uuid in bad:
        spent = spend(calls, partial(driver.define, name, config, uuid))
        assert isinstance(spent.error, InvalidArgumentError), (name, config, uuid)
        assert (spent.error.op, spent.error.uri, spent.made) == ("define", driver.uri, {})
    # an OS type this host does not run: refused once the capabilities say so
    spent = spend(calls, lambda: driver.define("r3", DomainConfig(65536, 65536, 1, "exe")))
    assert isinstance(spent.error, InvalidArgumentError) and "'exe'" in spent.error.message
    assert spent.made == {"getCapabilities": 1}
    assert sorted(admin.listDefinedDomains()) == ["r2"]


def test_os_types_are_mapped_onto_what_the_capabilities_offer(
        host: Host, driver: LibvirtDriver) -> None:
    """xend's 'linux' (paravirtualised) is libvirt's 'xen' where offered; the test
    driver offers 'hvm' and 'xen', on its own arch (i686)."""
    for i, (os_type, libvirt_os) in enumerate((("linux", "xen"), ("hvm", "hvm"),
                                               ("xen", "xen"))):
        made = driver.define(f"os{i}", DomainConfig(65536, 65536, 1, os_type))
        root = config_from_xml(host.admin.lookupByName(f"os{i}").XMLDesc(0), uri="")
        assert root.os_type == libvirt_os
        assert "arch='i686'" in host.admin.lookupByName(f"os{i}").XMLDesc(0)
        assert made.config is not None  # OSType(): the test driver says 'linux' for all
        assert made.config.os_type == host.admin.lookupByName(f"os{i}").OSType()


# -- no lock held across a call that may wait ------------------------------------------------

HELD = uuid_of(50)


@pytest.mark.parametrize(("method", "call"), [
    ("create", lambda d: d.start(HELD)),
    ("undefine", lambda d: d.undefine(HELD)),
    ("info", lambda d: d.find(uuid=HELD)),
    ("OSType", lambda d: d.list_defined()),
    ("isPersistent", lambda d: d.find(uuid=HELD)),
    ("XMLDesc", lambda d: d.domain_config(HELD)),
    ("defineXML", lambda d: d.define("held", CONFIG, HELD)),
    ("getCapabilities", lambda d: d.define("held", CONFIG, HELD)),
])
def test_a_held_call_holds_up_no_other_caller(
        host: Host, driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch, method: str,
        call: Callable[[LibvirtDriver], object]) -> None:
    """Such a call of one domain (a guest's job held, QEMU probing an emulator) blocks
    in libvirt: every other caller of the connection is answered meanwhile. (Only the
    call under test is held: the worker's ``isPersistent`` on a boot event is a read of
    libvirt's records, as its lookup is, and made under the lock as lookups are.)"""
    lv = real_libvirt()
    if method not in ("defineXML", "getCapabilities"):
        dom = host.admin.defineXML(small("held", 50))
        if method == "isPersistent":
            dom.create()  # asked of running domains only
    cls = lv.virConnect if method in ("defineXML", "getCapabilities") else lv.virDomain
    real = getattr(cls, method)
    release, entered = threading.Event(), threading.Event()
    caller = threading.local()  # set on the thread of the call under test only

    def held(self: Any, *args: Any) -> Any:
        ours = cls is lv.virConnect or self.UUIDString() == HELD
        if ours and getattr(caller, "held", False):
            entered.set()
            release.wait(LIVENESS_S)
        return real(self, *args)

    def under_test() -> object:
        caller.held = True
        return call(driver)

    monkeypatch.setattr(cls, method, held)
    try:
        thread, result = in_thread(under_test)
        assert entered.wait(LIVENESS_S), "the call never reached libvirt"
        done, answered = in_thread(lambda: (
            driver.census(), driver.find(name=DEFAULT), driver.identify(1),
            driver.resolve_names([DEFAULT]), driver.events_since(0)))
        done.join(LIVENESS_S)
        assert not done.is_alive(), f"a caller waited for the held {method}"
        assert not isinstance(answered[0], BaseException), answered
        assert thread.is_alive() and not result  # still held: it really was in libvirt
    finally:
        release.set()
    thread.join(LIVENESS_S)
    assert result and not isinstance(result[0], BaseException), result


# -- names, through XML, as given --------------------------------------------------------------

_UNSENDABLE = set(map(chr, [*range(0, 9), 11, 12, *range(13, 32), 0xFFFE, 0xFFFF]))


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[LibvirtDriver, Any]]:
    """A driver and an admin connection on the in-process test driver, for properties."""
    driver = LibvirtDriver("libvirt:test:///default", "test:///default")
    admin = real_libvirt().open("test:///default")
    yield driver, admin
    driver.close()
    admin.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=12))
def test_a_name_is_defined_exactly_as_given_or_refused(
        local: tuple[LibvirtDriver, Any], name: str) -> None:
    """Built as XML, never pasted: any name libvirt takes comes back exactly; one XML
    cannot carry is refused before libvirt is asked; libvirt refuses '/' and newlines."""
    driver, admin = local
    lv = real_libvirt()
    before = driver.counters.control_requests
    try:
        made = driver.define(name, DomainConfig(65536, 65536, 1), uuid_of(30))
    except InvalidArgumentError:
        assert any(c in _UNSENDABLE or 0xD800 <= ord(c) <= 0xDFFF for c in name)
        assert driver.counters.control_requests == before
        return
    except OperationFailedError:
        assert "/" in name or "\n" in name or name == DEFAULT
        return
    try:
        assert made.name == name == admin.lookupByUUIDString(uuid_of(30)).name()
        assert admin.lookupByName(name).UUIDString() == uuid_of(30)
        found = driver.find(name=name)
        assert found is not None and found.uuid == uuid_of(30)
    finally:
        with contextlib.suppress(lv.libvirtError):
            admin.lookupByUUIDString(uuid_of(30)).undefine()


# -- events ------------------------------------------------------------------------------------


class Log:
    """The driver's event log from now on, about the domains ``uuids`` only: libvirt
    hands a new callback the events it has queued and not yet dispatched, other
    tests' among them."""

    def __init__(self, driver: LibvirtDriver, *uuids: str) -> None:
        self.driver = driver
        self.uuids = set(uuids)
        driver.follow_events()  # as Connection.events() does: libvirt's events from now on
        self.after = driver.events_since(0).latest

    def next(self, count: int = 1) -> list[tuple[EventKind, int, str | None]]:
        """The next ``count`` events, each as (kind, id, name); waits for them."""
        got: list[HostEvent] = []
        while len(got) < count:
            batch = self.driver.events_since(self.after, timeout=LIVENESS_S)
            assert batch.complete and batch.events, f"no event; had {got}"
            got += [e for e in batch.events if e.uuid in self.uuids]
            self.after = batch.latest
        assert len(got) == count, got
        return [(e.kind, e.id, e.name) for e in got]


def next_about(events: Iterator[xvirt.DomainEvent], uuid: str) -> xvirt.DomainEvent:
    return next(e for e in events if e.uuid == uuid)


def test_libvirts_definition_events_reach_the_log(host: Host, driver: LibvirtDriver) -> None:
    admin = host.admin
    log = Log(driver, uuid_of(40), uuid_of(41))
    dom = admin.defineXML(small("e0", 40))
    assert log.next() == [(EventKind.DEFINED, -1, "e0")]
    dom.create()  # a defined domain booted: STARTED, not CREATED
    assert log.next() == [(EventKind.STARTED, dom.ID(), "e0")]
    domid = dom.ID()
    dom.destroy()
    assert log.next() == [(EventKind.DESTROYED, domid, None)]
    dom.rename("e1")  # libvirt: the old name undefined, the new one defined
    assert log.next(2) == [(EventKind.UNDEFINED, -1, "e0"), (EventKind.DEFINED, -1, "e1")]
    dom.undefine()
    assert log.next() == [(EventKind.UNDEFINED, -1, "e1")]
    transient = admin.createXML(small("t0", 41), 0)
    assert log.next() == [(EventKind.CREATED, transient.ID(), "t0")]
    admin.defineXML(transient.XMLDesc(0))  # running, now persistent: under its ID
    assert log.next() == [(EventKind.DEFINED, transient.ID(), "t0")]
    assert transient.UUIDString() in live(driver)


def test_the_drivers_own_calls_make_the_same_events(host: Host, driver: LibvirtDriver) -> None:
    log = Log(driver, uuid_of(42))
    made = driver.define("e2", CONFIG, uuid_of(42))
    assert log.next() == [(EventKind.DEFINED, -1, "e2")]
    driver.start(made.uuid)
    # Observed by start() itself: in the log when it returns.
    domid = host.admin.lookupByUUIDString(made.uuid).ID()
    assert [(e.kind, e.id) for e in driver.events_since(log.after).events
            if e.uuid == made.uuid] == [(EventKind.STARTED, domid)]
    assert log.next() == [(EventKind.STARTED, domid, "e2")]
    host.admin.lookupByUUIDString(made.uuid).destroy()
    assert log.next() == [(EventKind.DESTROYED, domid, None)]
    driver.undefine(made.uuid)
    assert log.next() == [(EventKind.UNDEFINED, -1, "e2")]


def test_connection_events_and_the_cache_see_definitions_as_such(host: Host) -> None:
    """Connection.events() readers get DEFINED/UNDEFINED with no ID; the identity cache
    holds only live domains and stays as it was."""
    with Connection(LibvirtDriver(f"libvirt:{host.target}", host.target)) as conn:
        events = conn.events(timeout=LIVENESS_S)
        ids = conn.list_domain_ids()
        size = conn.stats().cache_size
        dom = conn.define("e3", CONFIG, uuid=uuid_of(43))
        event = next_about(events, dom.uuid)
        assert (event.kind, event.uuid, event.id, event.name) == (
            EventKind.DEFINED, dom.uuid, None, "e3")
        assert conn.list_domain_ids() == ids and conn.stats().cache_size == size
        assert dom.id is None and conn.lookup_by_name("e3") == dom
        dom.start()
        event = next_about(events, dom.uuid)
        assert (event.kind, event.uuid, event.name) == (EventKind.STARTED, dom.uuid, "e3")
        assert event.id is not None and event.id == dom.id
        assert conn.lookup_by_id(event.id) == dom
        dom.destroy()
        assert next_about(events, dom.uuid).kind is EventKind.DESTROYED
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(event.id)  # C1: its old ID is nobody's, though it is defined
        assert dom.id is None and conn.list_domain_ids() == ids
        dom.undefine()
        event = next_about(events, dom.uuid)
        assert (event.kind, event.id, event.name) == (EventKind.UNDEFINED, None, "e3")
        assert conn.stats().cache_size == size
