"""Managed (defined, shut-off) domains on the control plane, in xend's shape
(realdata/xend/PROTOCOL.md: ``op=new``, ``op=start``, ``op=delete``,
``GET /xend/domain?state=halted``, "no domid means the domain is inactive"), driven
in process through WSGI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.daemon.control import ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel
from xvirt.model import DomainState, EventKind
from xvirt.planes import DiskConfig, NicConfig
from xvirt.wire import records, sxp

TOKEN = "s3cret-token-0123456789"
OFF_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
HostModels = Callable[..., HostModel]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def host(make_host_model: HostModels, clock: ManualClock, tmp_path: Path) -> HostModel:
    """Domain-0 and web running (transient); off defined and shut off."""
    h = make_host_model(clock=clock, image_dir=tmp_path / "images", seed=3)
    h.create("web", memory_kib=512 * 1024, vcpus=2)
    h.define("off", memory_kib=256 * 1024, max_memory_kib=512 * 1024, vcpus=3, uuid=OFF_UUID)
    return h


def _client(host: HostModel, *, trusted: bool = True, token: str | None = TOKEN) -> httpx.Client:
    app = ControlApp(host, ControlSettings(token=token), trusted=trusted)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost:8000")


def _sx(r: httpx.Response) -> sxp.Sx:
    return sxp.parse(r.content)


def _records(r: httpx.Response) -> list[records.ParsedDomain]:
    body = _sx(r)
    assert isinstance(body, list)
    return [records.parse_domain_record(x) for x in body]


def _config(name: str, *, uuid: str | None = None, memory_mib: int = 128,
            devices: bool = False) -> str:
    disks = (DiskConfig("phy:/dev/vg0/" + name, "xvda"),) if devices else ()
    nics = (NicConfig("00:16:3e:00:00:01", "xenbr1"),) if devices else ()
    return sxp.dumps(records.vm_config(name, memory_mib * 1024, memory_mib * 1024, 1, uuid,
                                       disks=disks, nics=nics))


# -- listing --------------------------------------------------------------------------------


def test_the_default_listing_is_the_running_domains_as_xend_gave_it(host: HostModel) -> None:
    c = _client(host)
    assert _sx(c.get("/xend/domain")) == ["Domain-0", "web"]
    assert _sx(c.get("/xend/domain?state=running")) == ["Domain-0", "web"]
    assert _sx(c.get("/xend/domain?state=active")) == ["Domain-0", "web"]
    assert [p.domid for p in _records(c.get("/xend/domain?detail=1"))] == [0, 1]


@pytest.mark.parametrize("state", ["halted", "inactive"])
def test_halted_lists_the_defined_domains_that_do_not_run(host: HostModel, state: str) -> None:
    c = _client(host)
    r = c.get("/xend/domain", params={"state": state})
    assert r.status_code == 200 and _sx(r) == ["off"]
    assert r.headers["X-Xvirt-Generation"] == str(host.generation)
    (off,) = _records(c.get("/xend/domain", params={"state": state, "detail": "1"}))
    assert (off.domid, off.uuid, off.name, off.state, off.persistent) == (
        None, OFF_UUID, "off", DomainState.SHUTOFF, True)
    assert (off.memory_kib, off.max_memory_kib, off.vcpus, off.cpu_time_ns) == (
        256 * 1024, 512 * 1024, 3, None)


def test_an_inactive_record_is_written_as_xend_3_0_4_wrote_it(host: HostModel) -> None:
    text = _client(host).get("/xend/domain/off", params={"detail": "1"}).text
    assert text.startswith(f"(domain (uuid {OFF_UUID}) (name off) (memory 256) (maxmem 512)")
    assert "domid" not in text and "cpu_time" not in text
    assert "(vcpus 3) (state ------) (xvirt_persistent 1) (image (linux)) (device (vbd" in text


def test_all_is_the_running_then_the_inactive_each_once(host: HostModel) -> None:
    c = _client(host)
    assert _sx(c.get("/xend/domain?state=all")) == ["Domain-0", "web", "off"]
    host.start(OFF_UUID)  # running now: listed once, with its ID
    got = _records(c.get("/xend/domain?state=all&detail=1"))
    assert [(p.name, p.domid is not None, p.persistent) for p in got] == [
        ("Domain-0", True, False), ("web", True, False), ("off", True, True)]
    assert _sx(c.get("/xend/domain?state=halted")) == []


def test_the_live_filters_keep_to_running_domains(host: HostModel) -> None:
    c = _client(host)
    host.pause(1)
    assert _sx(c.get("/xend/domain?state=paused")) == ["web"]
    assert _sx(c.get("/xend/domain?state=crashed")) == []


def test_an_unknown_state_filter_is_a_400_naming_it_and_the_known_ones(host: HostModel) -> None:
    r = _client(host).get("/xend/domain?state=sleeping")
    assert r.status_code == 400 and r.headers["X-Xvirt-Error"] == "invalid"
    message = records.parse_error(_sx(r)) or ""
    assert "'sleeping'" in message and "halted" in message and "all" in message


# -- one domain -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["off", OFF_UUID, OFF_UUID.upper().replace("-", "")])
def test_a_defined_domain_by_name_or_uuid(host: HostModel, key: str) -> None:
    r = _client(host).get(f"/xend/domain/{key}", params={"detail": "1"})
    assert r.status_code == 200
    p = records.parse_domain_record(_sx(r))
    assert (p.domid, p.uuid, p.name, p.state, p.persistent) == (
        None, OFF_UUID, "off", DomainState.SHUTOFF, True)


def test_every_record_says_whether_its_domain_is_persistent(host: HostModel) -> None:
    c = _client(host)
    web = records.parse_domain_record(_sx(c.get("/xend/domain/web")))
    assert (web.domid, web.persistent) == (1, False)
    host.start(OFF_UUID)
    off = records.parse_domain_record(_sx(c.get("/xend/domain/off")))
    assert off.domid is not None and off.persistent is True
    assert off.state is DomainState.RUNNING
    dom0 = records.parse_domain_record(_sx(c.get("/xend/domain/0")))
    assert dom0.persistent is False  # Domain-0 is never defined


def test_a_name_wins_over_an_id_among_defined_domains_too(host: HostModel) -> None:
    """xend tried the name first: a defined domain named "1" is not web (ID 1)."""
    host.define("1", uuid="00000000-0000-4000-8000-0000000000aa")
    p = records.parse_domain_record(_sx(_client(host).get("/xend/domain/1")))
    assert (p.name, p.domid) == ("1", None)


def test_an_undefined_domain_is_the_plain_404(host: HostModel) -> None:
    host.undefine(OFF_UUID)
    for key in ("off", OFF_UUID):
        r = _client(host).get(f"/xend/domain/{key}?detail=1")
        assert (r.status_code, r.headers["X-Xvirt-Error"]) == (404, "no-domain")
        assert r.headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize(("op", "field"), [("pause", None), ("destroy", None),
                                           ("rename", "x"), ("wait_for_devices", None)])
def test_an_op_of_a_running_domain_on_a_shut_off_one_says_it_does_not_run(
        host: HostModel, op: str, field: str | None) -> None:
    form = {"op": op} if field is None else {"op": op, "name": field}
    r = _client(host).post("/xend/domain/off", data=form)
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed")
    assert "is not running" in (records.parse_error(_sx(r)) or "")
    r = _client(host).get("/xend/domain/off", params={"op": "vcpuinfo"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed")
    assert [d.uuid for d in host.defined()[2]] == [OFF_UUID]  # still defined, not running
    assert [d.name for d in host.domains()] == ["Domain-0", "web"]


# -- op=new ---------------------------------------------------------------------------------


def test_new_defines_and_answers_the_record_as_create_does(host: HostModel) -> None:
    before = host.generation
    r = _client(host).post("/xend/domain/", data={"op": "new", "config": _config("db")})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/xend/domain/db"
    p = records.parse_domain_record(_sx(r))
    assert (p.domid, p.name, p.state, p.persistent, p.memory_kib) == (
        None, "db", DomainState.SHUTOFF, True, 128 * 1024)
    assert (p.disks, p.nics) == ((), ())  # as sent: op=new adds no default devices
    events = host.events_since(before).events
    assert [(e.kind, e.id, e.uuid, e.name) for e in events] == [
        (EventKind.DEFINED, -1, p.uuid, "db")]
    entry = host.journal()[-1]
    assert (entry.op, entry.uuid, entry.outcome, entry.origin) == ("define", p.uuid, "ok",
                                                                   "client")
    assert [d.name for d in host.defined()[2]] == ["db", "off"]


def test_new_keeps_the_configs_devices(host: HostModel) -> None:
    r = _client(host).post("/xend/domain/", data={"op": "new",
                                                  "config": _config("db", devices=True)})
    p = records.parse_domain_record(_sx(r))
    assert (p.disks, p.nics) == ((DiskConfig("phy:/dev/vg0/db", "xvda"),),
                                 (NicConfig("00:16:3e:00:00:01", "xenbr1"),))


def test_new_with_a_defined_uuid_replaces_the_definition(host: HostModel) -> None:
    r = _client(host).post("/xend/domain/", data={
        "op": "new", "config": _config("off", uuid=OFF_UUID, memory_mib=64)})
    assert r.status_code == 201
    (off,) = host.defined()[2]
    assert off.config is not None and (off.uuid, off.config.memory_kib) == (OFF_UUID, 64 * 1024)


def test_new_sent_back_as_libvirts_autostart_did_makes_a_running_domain_persistent(
        host: HostModel) -> None:
    """libvirt edited a ``(domain ...)`` record and sent it back whole with op=new."""
    c = _client(host)
    text = c.get("/xend/domain/web", params={"detail": "1"}).text
    r = c.post("/xend/domain/", data={"op": "new", "config": text})
    assert r.status_code == 201, r.text
    p = records.parse_domain_record(_sx(r))
    assert (p.name, p.domid, p.persistent) == ("web", 1, True)
    assert p.state is DomainState.RUNNING


@pytest.mark.parametrize(("config", "status", "kind", "words"), [
    (None, 400, "invalid", "missing field 'config'"),
    ("", 400, "protocol", ""),
    ("(vm (name", 400, "protocol", "offset"),
    ("(domain_config (name x))", 400, "protocol", "(vm ...)"),
    ("(vm (memory 128))", 400, "invalid", "name"),
    ("(vm (name db))", 400, "invalid", "memory"),
    ("(vm (name db) (memory 128) (uuid nope))", 400, "invalid", "uuid"),
    ("(vm (name db) (memory 128) (device (vbd (dev vda) (uname file:/x))))", 400, "invalid",
     "Xen device name"),
    ("(vm (name web) (memory 128))", 500, "failed", "already exists"),
    ("(vm (name off) (memory 128))", 500, "failed", "already exists"),
    ("(vm (name Domain-0) (memory 128) (uuid 00000000-0000-0000-0000-000000000000))", 500,
     "failed", "Domain-0"),
])
def test_new_refusals_say_what_was_wrong(host: HostModel, config: str | None, status: int,
                                         kind: str, words: str) -> None:
    before = host.state().definitions
    form = {"op": "new"} if config is None else {"op": "new", "config": config}
    r = _client(host).post("/xend/domain/", data=form)
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (status, kind), r.text
    assert words in (records.parse_error(_sx(r)) or "")
    assert host.state().definitions == before


# -- op=start and op=delete ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["off", OFF_UUID])
def test_start_boots_a_defined_domain_202(host: HostModel, key: str) -> None:
    r = _client(host).post(f"/xend/domain/{key}", data={"op": "start"})
    assert (r.status_code, r.content) == (202, b"")
    (off,) = [d for d in host.domains() if d.name == "off"]
    assert (off.uuid, off.state, off.vcpus) == (OFF_UUID, DomainState.RUNNING, 3)
    assert host.journal()[-1].op == "start" and host.journal()[-1].origin == "client"
    assert _sx(_client(host).get("/xend/domain?state=halted")) == []


@pytest.mark.parametrize("key", ["off", OFF_UUID])
def test_delete_undefines_202(host: HostModel, key: str) -> None:
    r = _client(host).post(f"/xend/domain/{key}", data={"op": "delete"})
    assert (r.status_code, r.content) == (202, b"")
    assert host.defined()[2] == ()
    assert host.events_since(host.generation - 1).events[0].kind is EventKind.UNDEFINED


def test_start_and_delete_refuse_a_running_domain_as_xend_did(host: HostModel) -> None:
    c = _client(host)
    assert c.post("/xend/domain/off", data={"op": "start"}).status_code == 202
    for op, words in (("start", "already running"), ("delete", "is running")):
        r = c.post("/xend/domain/off", data={"op": op})
        assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed"), op
        assert words in (records.parse_error(_sx(r)) or "")
    r = c.post("/xend/domain/web", data={"op": "start"})  # transient and running
    assert r.status_code == 500 and "already running" in (records.parse_error(_sx(r)) or "")
    r = c.post("/xend/domain/web", data={"op": "delete"})
    assert r.status_code == 500
    assert [d.name for d in host.domains()] == ["Domain-0", "web", "off"]


@pytest.mark.parametrize("op", ["start", "delete"])
@pytest.mark.parametrize("key", ["nosuch", "00000000-0000-4000-8000-00000000dead", "77"])
def test_start_and_delete_of_nothing_are_the_404(host: HostModel, op: str, key: str) -> None:
    r = _client(host).post(f"/xend/domain/{key}", data={"op": op})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (404, "no-domain")
    assert [d.name for d in host.defined()[2]] == ["off"]


@pytest.mark.parametrize("op", ["start", "delete"])
def test_expected_uuid_must_be_the_domain_the_path_names(host: HostModel, op: str) -> None:
    c = _client(host)
    other = "00000000-0000-4000-8000-0000000000bb"
    r = c.post("/xend/domain/off", data={"op": op, "expected_uuid": other})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (404, "no-domain")
    assert host.journal()[-1].outcome == "refused: identity mismatch"
    assert [d.uuid for d in host.defined()[2]] == [OFF_UUID]  # nothing done
    r = c.post("/xend/domain/off", data={"op": op, "expected_uuid": "nope"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (400, "invalid")
    r = c.post("/xend/domain/off", data={"op": op, "expected_uuid": OFF_UUID.upper()})
    assert r.status_code == 202


def test_by_uuid_with_expected_uuid_no_name_can_shadow_the_domain(host: HostModel) -> None:
    """xend tried names first: a running domain *named* like off's UUID is what the
    bare path names; with expected_uuid that UUID (the xend driver sends it), off is."""
    host.create(OFF_UUID)
    c = _client(host)
    r = c.post(f"/xend/domain/{OFF_UUID}", data={"op": "delete"})
    assert r.status_code == 500 and "is running" in (records.parse_error(_sx(r)) or "")
    r = c.post(f"/xend/domain/{OFF_UUID}", data={"op": "start", "expected_uuid": OFF_UUID})
    assert r.status_code == 202
    assert OFF_UUID in {d.uuid for d in host.domains()}


@pytest.mark.parametrize(("path", "form"), [
    ("/xend/domain/", {"op": "new", "config": "(vm (name db) (memory 128))"}),
    ("/xend/domain/off", {"op": "start"}),
    ("/xend/domain/off", {"op": "delete"}),
])
@pytest.mark.parametrize(("token", "header", "tally"), [
    (TOKEN, None, "auth:no-token"),
    (TOKEN, "Bearer wrong", "auth:wrong-token"),
    (None, f"Bearer {TOKEN}", "auth:read-only"),
])
def test_new_start_and_delete_need_the_token_over_tcp(
        host: HostModel, path: str, form: dict[str, str], token: str | None,
        header: str | None, tally: str) -> None:
    before = (host.state().definitions, host.domains())
    app = ControlApp(host, ControlSettings(token=token), trusted=False)
    c = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost")
    r = c.post(path, data=form, headers={"Authorization": header} if header else {})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (401, "auth")
    assert (host.state().definitions, host.domains()) == before
    assert host.journal()[-1].outcome.startswith("refused: not authenticated")
    assert app.settings.refusals.snapshot() == {tally: 1}
    if token is not None:
        r = c.post(path, data=form, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (201, 202), r.text


def test_the_event_channel_carries_definitions_with_domid_minus_1(host: HostModel) -> None:
    c = _client(host)
    after = host.generation
    c.post("/xend/domain/", data={"op": "new", "config": _config("db")})
    c.post("/xend/domain/db", data={"op": "start"})
    c.post("/xend/domain/off", data={"op": "delete"})
    rec = _sx(c.get("/xvirt/events", params={"after": str(after)}))
    got = [(sxp.value(e, "event/kind"), sxp.value(e, "event/domid"), sxp.value(e, "event/name"))
           for e in sxp.children(rec, "event")]
    db_id = str(next(d.id for d in host.domains() if d.name == "db"))
    assert got == [("defined", "-1", "db"), ("started", db_id, "db"),
                   ("undefined", "-1", "off")]


# -- the host's own administration -----------------------------------------------------------


def test_the_admin_route_defines_starts_and_undefines_as_the_host(host: HostModel) -> None:
    """The conformance kit plays the host through these (origin ``host``), beside the
    client's xend ops (origin ``client``)."""
    c = _client(host)
    r = c.post("/xvirt/host", data={"op": "define", "name": "db", "memory_kib": "262144",
                                    "vcpus": "2"})
    assert r.status_code == 200, r.text
    db = records.parse_domain_record(_sx(r))
    assert (db.domid, db.name, db.vcpus, db.persistent) == (None, "db", 2, True)
    assert (host.journal()[-1].op, host.journal()[-1].origin) == ("define", "host")
    listed = _sx(c.get("/xvirt/host/defined"))
    assert isinstance(listed, list) and listed[0] == "defined"
    assert [records.parse_domain_record(x).name for x in listed[1:]] == ["db", "off"]
    r = c.post("/xvirt/host", data={"op": "start", "uuid": db.uuid})
    started = records.parse_domain_record(_sx(r))
    assert (started.uuid, started.state, started.persistent) == (db.uuid, DomainState.RUNNING,
                                                                 True)
    assert started.domid is not None
    r = c.post("/xvirt/host", data={"op": "undefine", "uuid": db.uuid})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed")  # it runs
    r = c.post("/xvirt/host", data={"op": "undefine", "uuid": OFF_UUID})
    assert (r.status_code, r.content) == (200, b"")
    assert host.defined()[2] == ()
    r = c.post("/xvirt/host", data={"op": "start", "uuid": "nope"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (400, "invalid")
    r = c.post("/xvirt/host", data={"op": "define", "name": "web", "memory_kib": "1",
                                    "vcpus": "1"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed")
    r = _client(host, trusted=False).post("/xvirt/host", data={"op": "undefine",
                                                               "uuid": OFF_UUID})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (401, "auth")


# -- a property: the listings always agree with the host ----------------------------------------

_STEPS = st.lists(st.tuples(st.sampled_from(["new", "start", "delete", "destroy", "create"]),
                            st.sampled_from(["a", "b", "c"])), max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_the_listings_agree_with_the_host_whatever_was_done(
        make_host_model: HostModels, tmp_path: Path, steps: list[tuple[str, str]]) -> None:
    """Any history of defines, starts, deletes, destroys and creates over HTTP: running
    listed by default, shut-off ones by halted, both once each by all, and each name's
    record by name agreeing with the listing."""
    h = make_host_model(clock=ManualClock(), image_dir=tmp_path / "img")
    c = _client(h)
    for op, name in steps:
        if op == "new":
            r = c.post("/xend/domain/", data={"op": "new", "config": _config(name)})
        elif op == "create":
            r = c.post("/xend/domain/", data={"op": "create", "config": _config(name)})
        elif op == "destroy":
            r = c.post(f"/xend/domain/{name}", data={"op": "destroy"})
        else:
            r = c.post(f"/xend/domain/{name}", data={"op": op})
        assert r.status_code in (201, 202, 404, 500), r.text
        assert (r.status_code >= 300) == ("X-Xvirt-Error" in r.headers)
    running = [d.name for d in h.domains()]
    halted = [d.name for d in h.defined()[2]]
    assert _sx(c.get("/xend/domain")) == running
    assert _sx(c.get("/xend/domain?state=halted")) == halted
    assert _sx(c.get("/xend/domain?state=all")) == running + halted
    assert not set(running) & set(halted)
    for p in _records(c.get("/xend/domain?state=all&detail=1")):
        one = records.parse_domain_record(_sx(c.get(f"/xend/domain/{p.name}")))
        assert (one.uuid, one.domid is None, one.persistent) == (
            p.uuid, p.name in halted, p.persistent)
        truth = h.find(uuid=p.uuid)[2]
        assert truth is not None and truth.persistent == p.persistent
