"""Managed (defined, shut-off) domains through the xend driver, against real ``xvirt
daemon`` processes: each driver call is exactly one control-plane request, errors are
xvirt's naming what failed, and a definition outlives the daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
from xvirt.drivers.xend import XendDriver
from xvirt.model import DomainState, EventKind
from xvirt.planes import Definition, DiskConfig, DomainConfig, NicConfig, Op
from xvirt.testing.daemon import DaemonProcess

CONFIG = DomainConfig(256 * 1024, 512 * 1024, 2, "linux",
                      (DiskConfig("phy:/dev/vg0/web", "xvda"),
                       DiskConfig("file:/srv/boot.iso", "hdc", readonly=True)),
                      (NicConfig("00:16:3e:01:02:03", "xenbr1"),))
BARE = DomainConfig(128 * 1024, 128 * 1024, 1)
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
NOBODY = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture(scope="module")
def shared(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """One daemon for the tests that clean up after themselves."""
    return make_module_daemon()


def _admin(d: DaemonProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                        base_url="http://localhost")


def _driver(d: DaemonProcess, *, tcp: bool = False, token: str | None = None,
            readonly: bool = False) -> XendDriver:
    if tcp:
        return XendDriver(d.tcp_uri, base_url=f"http://127.0.0.1:{d.port}", token=token,
                          readonly=readonly, timeout=5)
    return XendDriver(d.unix_uri, unix_socket=str(d.socket), readonly=readonly, timeout=5)


@pytest.fixture
def driver(shared: DaemonProcess) -> Iterator[XendDriver]:
    drv = _driver(shared)
    yield drv
    for d in drv.list_defined():  # leave the shared daemon as it was found
        drv.undefine(d.uuid)
    for owner in drv.list_all().domains:
        if owner.id != 0:
            drv.act(Op.DESTROY, owner.id, owner.uuid)
    for d in drv.list_defined():
        drv.undefine(d.uuid)
    drv.close()


class _Counted:
    """The control requests a block of driver calls made."""

    def __init__(self, drv: XendDriver) -> None:
        self._drv = drv
        self.n = 0

    def __enter__(self) -> _Counted:
        self._before = self._drv.counters.control_requests
        return self

    def __exit__(self, *exc: object) -> None:
        self.n = self._drv.counters.control_requests - self._before


def _one(drv: XendDriver, call: Callable[[], object]) -> object:
    """``call()``, checking it made exactly one control-plane request and nothing else."""
    data, events = drv.counters.data_calls, drv.counters.event_requests
    with _Counted(drv) as c:
        answer = call()
    assert c.n == 1
    assert (drv.counters.data_calls, drv.counters.event_requests) == (data, events)
    return answer


# -- each call, one request -------------------------------------------------------------------


def test_define_find_list_start_undefine_each_one_request(driver: XendDriver) -> None:
    defined = _one(driver, lambda: driver.define("web", CONFIG, UUID))
    want = Definition(UUID, "web", None, True, CONFIG)
    assert defined == want
    assert _one(driver, lambda: driver.find(uuid=UUID)) == want
    assert _one(driver, lambda: driver.find(uuid=UUID.upper())) == want
    assert _one(driver, lambda: driver.find(name="web")) == want
    assert _one(driver, driver.list_defined) == (want,)
    assert _one(driver, lambda: driver.start(UUID)) is None
    running = driver.find(uuid=UUID)
    assert running is not None and running.id is not None
    assert (running.name, running.persistent, running.config) == ("web", True, CONFIG)
    assert (running.id, UUID) in driver.census().members  # on the data plane now
    assert driver.list_defined() == ()
    driver.act(Op.DESTROY, running.id, UUID)
    assert driver.find(uuid=UUID) == want  # a managed domain that stops is shut off
    assert _one(driver, lambda: driver.undefine(UUID)) is None
    assert _one(driver, lambda: driver.find(uuid=UUID)) is None
    assert _one(driver, lambda: driver.find(name="web")) is None
    assert driver.list_defined() == ()


def test_a_definition_without_devices_has_none(driver: XendDriver) -> None:
    d = driver.define("bare", BARE)
    assert (d.config, d.id, d.persistent) == (BARE, None, True)
    assert driver.find(uuid=d.uuid) == d


def test_defining_a_defined_uuid_replaces_its_definition(driver: XendDriver) -> None:
    driver.define("web", CONFIG, UUID)
    after = driver.events_since(0).latest
    again = driver.define("web2", BARE, UUID)
    assert again == Definition(UUID, "web2", None, True, BARE)
    assert driver.list_defined() == (again,)
    (event,) = driver.events_since(after).events
    assert (event.kind, event.id, event.uuid, event.name) == (EventKind.DEFINED, -1, UUID,
                                                              "web2")


def test_find_answers_running_transient_domains_and_only_the_named_one(
        driver: XendDriver, shared: DaemonProcess) -> None:
    with _admin(shared) as admin:
        r = admin.post("/xvirt/host", data={"op": "create", "name": "t",
                                            "memory_kib": "262144", "vcpus": "1"})
        assert r.status_code == 200
    t = driver.find(name="t")
    assert t is not None and t.id is not None and t.persistent is False
    assert t.config is not None and t.config.memory_kib == 262144
    # xend matches IDs too: "<t's ID>" names no domain called that
    assert _one(driver, lambda: driver.find(name=str(t.id))) is None
    # ... unless one is called that: names come first, among defined domains too
    named = driver.define(str(t.id), BARE)
    assert driver.find(name=str(t.id)) == named
    dom0 = driver.find(name="Domain-0")
    assert dom0 is not None and (dom0.id, dom0.persistent) == (0, False)  # never defined
    assert driver.find(uuid="00000000-0000-0000-0000-000000000000") == dom0


def test_list_defined_is_one_request_whatever_the_count(driver: XendDriver) -> None:
    for i in range(12):
        driver.define(f"d{i:02}", BARE)
    listed = _one(driver, driver.list_defined)
    assert isinstance(listed, tuple)
    assert sorted(d.name for d in listed) == [f"d{i:02}" for i in range(12)]
    assert all(d.id is None and d.persistent and d.config == BARE for d in listed)


# -- refusals ---------------------------------------------------------------------------------


def test_undefine_of_a_running_domain_is_refused_as_xends_delete(driver: XendDriver) -> None:
    driver.define("web", BARE, UUID)
    driver.start(UUID)
    with _Counted(driver) as c, pytest.raises(xvirt.OperationFailedError) as err:
        driver.undefine(UUID)
    assert c.n == 1
    assert (err.value.uuid, err.value.op, err.value.uri) == (UUID, "undefine", driver.uri)
    assert "running" in err.value.message
    with pytest.raises(xvirt.OperationFailedError) as err:
        driver.start(UUID)
    assert (err.value.uuid, err.value.op) == (UUID, "start")
    found = driver.find(uuid=UUID)
    assert found is not None and found.id is not None


def test_start_and_undefine_go_by_uuid_whatever_a_name_looks_like(
        driver: XendDriver, shared: DaemonProcess) -> None:
    """A running domain called like the defined one's UUID does not take the call."""
    driver.define("off", BARE, UUID)
    with _admin(shared) as admin:
        r = admin.post("/xvirt/host", data={"op": "create", "name": UUID,
                                            "memory_kib": "131072", "vcpus": "1"})
        assert r.status_code == 200
    assert _one(driver, lambda: driver.start(UUID)) is None
    started = driver.find(name="off")
    assert started is not None and started.uuid == UUID and started.id is not None


@pytest.mark.parametrize("call", ["start", "undefine"])
def test_an_unknown_uuid_is_no_domain(driver: XendDriver, call: str) -> None:
    with _Counted(driver) as c, pytest.raises(xvirt.NoDomainError) as err:
        getattr(driver, call)(NOBODY)
    assert c.n == 1
    assert (err.value.uuid, err.value.op, err.value.uri) == (NOBODY, call, driver.uri)


@pytest.mark.parametrize("holder", ["defined", "running"])
def test_a_name_another_domain_holds_is_refused(driver: XendDriver, holder: str) -> None:
    first = driver.define("web", BARE)
    if holder == "running":
        driver.start(first.uuid)
    with pytest.raises(xvirt.OperationFailedError) as err:
        driver.define("web", CONFIG)
    assert (err.value.name, err.value.op, err.value.uri) == ("web", "define", driver.uri)
    assert "already exists" in err.value.message
    assert [d.uuid for d in driver.list_defined()] == ([first.uuid] if holder == "defined"
                                                       else [])


def test_a_running_domain_keeps_its_name_when_defined(driver: XendDriver,
                                                      shared: DaemonProcess) -> None:
    with _admin(shared) as admin:
        admin.post("/xvirt/host", data={"op": "create", "name": "t", "memory_kib": "262144",
                                        "vcpus": "1"})
    t = driver.find(name="t")
    assert t is not None
    with pytest.raises(xvirt.OperationFailedError, match="own name") as err:
        driver.define("other", BARE, t.uuid)
    assert err.value.uuid == t.uuid
    made = driver.define("t", BARE, t.uuid)  # its own name: now persistent
    assert (made.id, made.persistent) == (t.id, True)


@pytest.mark.parametrize("call", ["define", "start", "undefine"])
def test_a_read_only_driver_sends_nothing(shared: DaemonProcess, call: str) -> None:
    drv = _driver(shared, readonly=True)
    try:
        args = ("web", BARE) if call == "define" else (UUID,)
        with _Counted(drv) as c, pytest.raises(xvirt.ReadOnlyError) as err:
            getattr(drv, call)(*args)
        assert c.n == 0 and err.value.op == call and err.value.uri == drv.uri
        assert drv.find(name="web") is None  # reads are fine
    finally:
        drv.close()


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_without_the_token_over_tcp_nothing_is_defined_started_or_undefined(
        shared: DaemonProcess, driver: XendDriver, token: str | None) -> None:
    driver.define("off", BARE, UUID)
    drv = _driver(shared, tcp=True, token=token)
    try:
        for call, args in (("define", ("web", BARE)), ("start", (UUID,)),
                           ("undefine", (UUID,))):
            with _Counted(drv) as c, pytest.raises(xvirt.AuthError) as err:
                getattr(drv, call)(*args)
            assert c.n == 1 and err.value.op == call
            assert shared.token is not None and shared.token not in str(err.value)
        assert drv.list_defined() == (Definition(UUID, "off", None, True, BARE),)
    finally:
        drv.close()
    with_token = _driver(shared, tcp=True, token=shared.token)
    try:
        with_token.start(UUID)
        found = with_token.find(uuid=UUID)
        assert found is not None and found.id is not None
    finally:
        with_token.close()


UNSENDABLE = ["\udcff", "a\udfffb"]


@pytest.mark.parametrize("text", UNSENDABLE, ids=repr)
def test_a_name_http_cannot_carry_is_refused_or_names_nothing(driver: XendDriver,
                                                              text: str) -> None:
    with _Counted(driver) as c:
        with pytest.raises(xvirt.InvalidArgumentError) as err:
            driver.define(text, BARE)
        assert driver.find(name=text) is None  # no domain can be called that
    assert c.n == 0
    assert err.value.op == "define" and "lone surrogate" in err.value.message
    assert err.value.name == text.encode("utf-8", "backslashreplace").decode()
    str(err.value).encode("utf-8")


def test_a_configuration_holding_a_lone_surrogate_is_refused_by_the_host(
        driver: XendDriver) -> None:
    """It crosses escaped, and the host judges it as create's arguments."""
    config = DomainConfig(1024, 1024, 1, "linux", (DiskConfig("file:/x\udcff", "xvda"),))
    with _Counted(driver) as c, pytest.raises(xvirt.InvalidArgumentError) as err:
        driver.define("web", config)
    assert c.n == 1 and (err.value.op, err.value.name) == ("define", "web")
    assert "not valid Unicode" in err.value.message
    assert driver.list_defined() == ()


@pytest.mark.parametrize("call", ["find", "start", "undefine", "define"])
def test_a_malformed_uuid_is_an_invalid_argument_before_sending(driver: XendDriver,
                                                               call: str) -> None:
    with _Counted(driver) as c, pytest.raises(xvirt.InvalidArgumentError) as err:
        if call == "find":
            driver.find(uuid="nope")
        elif call == "define":
            driver.define("web", BARE, "nope")
        else:
            getattr(driver, call)("nope")
    assert c.n == 0 and (err.value.op, err.value.uri) == (call, driver.uri)


@pytest.mark.parametrize("given_", [{}, {"uuid": UUID, "name": "web"}])
def test_find_takes_exactly_one_key(driver: XendDriver, given_: dict[str, str]) -> None:
    with pytest.raises(xvirt.InvalidArgumentError, match="exactly one"):
        driver.find(**given_)


def test_a_config_the_host_refuses_is_an_invalid_argument_naming_it(driver: XendDriver) -> None:
    bad = DomainConfig(1024, 1024, 1, "linux", (DiskConfig("file:/x", "vda"),))
    with pytest.raises(xvirt.InvalidArgumentError, match="Xen device name") as err:
        driver.define("web", bad)
    assert (err.value.op, err.value.name) == ("define", "web")
    assert driver.list_defined() == ()


# -- durability -------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_a_definition_outlives_the_daemon(make_daemon: Callable[..., DaemonProcess],
                                          end: str) -> None:
    d = make_daemon()
    drv = _driver(d)
    try:
        defined = drv.define("web", CONFIG, UUID)
        started = drv.define("db", BARE)
        drv.start(started.uuid)
        running = drv.find(uuid=started.uuid)
        getattr(d, end)()
        d.start()
        assert drv.list_defined() == (defined,)  # the same driver rides the restart out
        assert drv.find(uuid=UUID) == defined
        assert drv.find(uuid=started.uuid) == running  # still running, still managed
        drv.start(UUID)
        d.restart()
        found = drv.find(name="web")
        assert found is not None and found.id is not None and found.persistent
    finally:
        drv.close()


# -- a property: the driver's view agrees with the daemon's after any history ------------------


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["define", "start", "undefine", "destroy"]),
                                st.sampled_from([0, 1, 2])), max_size=10))
def test_any_history_leaves_find_and_list_defined_agreeing(
        driver: XendDriver, steps: list[tuple[str, int]]) -> None:
    uuids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    for d in driver.list_defined():
        driver.undefine(d.uuid)
    for op, i in steps:
        try:
            if op == "define":
                driver.define(f"m{i}", BARE, uuids[i])
            elif op in ("start", "undefine"):
                getattr(driver, op)(uuids[i])
            else:
                found = driver.find(uuid=uuids[i])
                if found is not None and found.id is not None:
                    driver.act(Op.DESTROY, found.id, uuids[i])
        except (xvirt.NoDomainError, xvirt.OperationFailedError):
            pass
    listed = {d.uuid: d for d in driver.list_defined()}
    for u in uuids:
        found = driver.find(uuid=u)
        if found is None:
            assert u not in listed
        elif found.id is None:
            assert listed[u] == found and found.persistent
        else:
            assert u not in listed and found.persistent
            info = driver.info_by_id(found.id)
            assert info.row is not None and info.row.uuid == u
            assert info.row.state in (DomainState.RUNNING, DomainState.BLOCKED)
