"""The control plane in xend's shape, driven in-process through WSGI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.daemon.control import MAX_BODY, ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel
from xvirt.model import DomainState
from xvirt.planes import DiskConfig, NicConfig, Resolution, Resolved
from xvirt.wire import records, sxp

TOKEN = "s3cret-token-0123456789"
HostModels = Callable[..., HostModel]


@pytest.fixture
def host(make_host_model: HostModels, clock: ManualClock, tmp_path: Path) -> HostModel:
    """Domain-0, web and db on ``clock``, saving into tmp_path/images."""
    h = make_host_model(clock=clock, image_dir=tmp_path / "images", seed=3)
    h.create("web", memory_kib=512 * 1024, vcpus=2)
    h.create("db", memory_kib=1024 * 1024)
    return h


def _client(host: HostModel, *, trusted: bool = True, token: str | None = TOKEN,
            latency: float = 0.0) -> httpx.Client:
    app = ControlApp(host, ControlSettings(token=token, control_latency_s=latency,
                                           fast_socket="/run/x/fast.sock", instance="i1"),
                     trusted=trusted)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost:8000")


def _sx(r: httpx.Response) -> sxp.Sx:
    return sxp.parse(r.content)


def test_list_names_and_details(host: HostModel) -> None:
    c = _client(host)
    r = c.get("/xend/domain")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/sxp"
    assert _sx(r) == ["Domain-0", "web", "db"]
    assert r.headers["X-Xvirt-Boot"] == host.boot_id
    assert r.headers["X-Xvirt-Generation"] == str(host.generation)
    recs = [records.parse_domain_record(x) for x in _sx(c.get("/xend/domain?detail=1"))]
    assert [(p.domid, p.name, p.memory_kib, p.vcpus) for p in recs] == [
        (0, "Domain-0", 2 * 1024 * 1024, 4), (1, "web", 512 * 1024, 2), (2, "db", 1024 * 1024, 1)]
    assert _sx(c.get("/xend/domain?state=halted")) == []


@pytest.mark.parametrize("key", ["web", "1", "UUID"])
def test_one_domain_by_name_id_or_uuid(host: HostModel, key: str) -> None:
    web = host.domains()[1]
    key = web.uuid if key == "UUID" else key
    r = _client(host).get(f"/xend/domain/{key}", params={"detail": "1"})
    p = records.parse_domain_record(_sx(r))
    assert (p.domid, p.uuid, p.name, p.state) == (1, web.uuid, "web", DomainState.RUNNING)
    assert p.cpu_time_ns == web.cpu_time_ns


def test_unknown_domain_is_a_plain_text_404(host: HostModel) -> None:
    r = _client(host).get("/xend/domain/nosuch?detail=1")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Xvirt-Error"] == "no-domain"
    assert "nosuch" in r.text


def test_op_rules_as_xend_gave_them(host: HostModel) -> None:
    c = _client(host)
    assert c.post("/xend/domain/web", data={}).status_code == 406
    assert c.post("/xend/domain/web", content=b"op=pause&op=unpause", headers={
        "Content-Type": "application/x-www-form-urlencoded"}).status_code == 406
    r = c.post("/xend/domain/web", data={"op": "frobnicate"})
    assert (r.status_code, r.text) == (501, "Operation not implemented: frobnicate")
    assert c.post("/xend/domain/web", data={"op": "pause"}).status_code == 200
    assert host.domain(1).state is DomainState.PAUSED
    r = c.post("/xend/domain/web", data={"op": "pause"})  # not running any more
    assert r.status_code == 500
    assert records.parse_error(_sx(r)) is not None
    assert c.post("/xend/domain/web", data={"op": "unpause"}).status_code == 200
    r = c.post("/xend/domain/1", data={"op": "shutdown", "reason": "reboot"})
    assert r.status_code == 202
    assert [d.name for d in host.domains() if d.id == 3] == ["web"]  # rebooted: a new ID


def test_expected_uuid_checks_and_acts_in_one_step(host: HostModel) -> None:
    c = _client(host)
    db = host.domains()[2]
    web = host.domains()[1]
    r = c.post(f"/xend/domain/{web.id}", data={"op": "destroy", "expected_uuid": db.uuid})
    assert r.status_code == 404 and r.headers["X-Xvirt-Error"] == "no-domain"
    assert len(host.domains()) == 3  # nothing was done
    assert host.journal()[-1].outcome == "refused: identity mismatch"
    r = c.post(f"/xend/domain/{web.id}", data={"op": "destroy", "expected_uuid": web.uuid})
    assert r.status_code == 202
    assert host.journal()[-1].op == "destroy" and host.journal()[-1].origin == "client"


def test_create_is_paused_then_started_as_libvirt_did(host: HostModel) -> None:
    c = _client(host)
    config = sxp.dumps(records.vm_config("new", 256 * 1024, 512 * 1024, 2))
    r = c.post("/xend/domain/", data={"op": "create", "config": config})
    assert r.status_code == 201
    assert r.headers["Location"] == "/xend/domain/new"
    p = records.parse_domain_record(_sx(r))
    assert (p.name, p.state, p.memory_kib, p.max_memory_kib) == (
        "new", DomainState.PAUSED, 256 * 1024, 512 * 1024)
    assert c.post("/xend/domain/new", data={"op": "wait_for_devices"}).status_code == 202
    assert c.post("/xend/domain/new", data={"op": "unpause"}).status_code == 200
    assert host.domain(p.domid or 0).state is DomainState.RUNNING


def test_bad_config_is_a_400_naming_the_field(host: HostModel) -> None:
    r = _client(host).post("/xend/domain/", data={"op": "create", "config": "(vm (memory 1))"})
    assert r.status_code == 400 and "name" in (records.parse_error(_sx(r)) or "")
    r = _client(host).post("/xend/domain/", data={"op": "create", "config": "(vm (name"})
    assert r.status_code == 400 and "offset" in (records.parse_error(_sx(r)) or "")


def test_save_takes_a_path_inside_the_image_directory_only(host: HostModel) -> None:
    c = _client(host)
    for bad in ("../x", "/etc/passwd", f"{host.image_dir}/../x", "a\x00b", ".hidden", ""):
        r = c.post("/xend/domain/web", data={"op": "save", "file": bad})
        assert r.status_code == 400, bad
    assert host.images() == []
    assert not (Path(host.image_dir).parent / "x").exists()
    r = c.post("/xend/domain/web", data={"op": "save", "file": f"{host.image_dir}/web.img"})
    assert r.status_code == 202 and host.images() == ["web.img"]
    r = c.post("/xend/domain/", data={"op": "restore", "file": "web.img"})
    assert r.status_code == 201 and records.parse_domain_record(_sx(r)).name == "web"


def test_tcp_mutations_need_the_token_and_refusals_are_journalled(host: HostModel) -> None:
    for token, headers in [(TOKEN, {}), (TOKEN, {"Authorization": "Bearer wrong"}),
                           (TOKEN, {"Authorization": TOKEN}), (None, {"Authorization":
                                                                       f"Bearer {TOKEN}"})]:
        c = _client(host, trusted=False, token=token)
        r = c.post("/xend/domain/1", data={"op": "pause"}, headers=headers)
        assert r.status_code == 401 and r.headers["X-Xvirt-Error"] == "auth"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in r.text
        assert host.domain(1).state is DomainState.RUNNING
        assert host.journal()[-1].outcome.startswith("refused: not authenticated")
    c = _client(host, trusted=False)
    assert c.get("/xend/domain").status_code == 200  # reads are open
    assert c.post("/xvirt/resolve", data={"id": "1"}).status_code == 200
    r = c.post("/xend/domain/1", data={"op": "pause"}, headers={
        "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and host.domain(1).state is DomainState.PAUSED


def test_a_domain_wedged_by_the_admin_route_is_unanswered_on_the_http_data_plane(
        host: HostModel) -> None:
    c = _client(host)
    wedged = host.domain(1)
    r = _client(host, trusted=False).post("/xvirt/host", data={"op": "stall", "domid": "1"})
    assert r.status_code == 401 and r.headers["X-Xvirt-Error"] == "auth"
    assert c.post("/xvirt/host", data={"op": "stall", "domid": "9"}).status_code == 404
    assert c.post("/xvirt/host", data={"op": "stall", "domid": "1"}).status_code == 200
    table = _sx(c.get("/xvirt/table"))
    assert [sxp.value(row, "row/domid") for row in sxp.children(table, "row")] == ["0", "2"]
    (miss,) = sxp.children(table, "unanswered")
    assert sxp.value(miss, "unanswered/domid") == "1"
    assert sxp.value(miss, "unanswered/uuid") == wedged.uuid
    assert sxp.value(miss, "unanswered/error") == "domain 1 (web) did not answer"
    r = c.get("/xvirt/table/1")  # an answer: the host answered, that domain did not
    assert r.status_code == 200 and "X-Xvirt-Error" not in r.headers
    info = _sx(r)
    assert sxp.value(info, "info/generation") == r.headers["X-Xvirt-Generation"]
    assert list(sxp.children(info, "row")) == []
    (miss,) = sxp.children(info, "unanswered")
    assert (sxp.value(miss, "unanswered/domid"), sxp.value(miss, "unanswered/uuid")) == (
        "1", wedged.uuid)
    assert c.post("/xvirt/host", data={"op": "unstall", "domid": "1"}).status_code == 200
    assert list(sxp.children(_sx(c.get("/xvirt/table")), "unanswered")) == []
    assert len(list(sxp.children(_sx(c.get("/xvirt/table/1")), "row"))) == 1


def test_the_auth_scheme_is_case_insensitive_the_token_is_not(host: HostModel) -> None:
    c = _client(host, trusted=False)
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = c.post("/xend/domain/1", data={"op": "pause"},
                   headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200, scheme
        c.post("/xend/domain/1", data={"op": "unpause"},
               headers={"Authorization": f"{scheme} {TOKEN}"})
    r = c.post("/xend/domain/1", data={"op": "pause"},
               headers={"Authorization": f"Bearer {TOKEN.upper()}"})
    assert r.status_code == 401
    assert host.domain(1).state is DomainState.RUNNING


def test_batch_resolve_answers_many_in_one_request(host: HostModel) -> None:
    c = _client(host)
    uuids = [d.uuid for d in host.domains()]
    r = c.post("/xvirt/resolve", data={"uuid": uuids[1:], "id": ["0", "77"]})
    got = _sx(r)
    assert isinstance(got, list) and got[0] == "resolution"
    names = sorted(records.parse_domain_record(x).name for x in got[1:])
    assert names == ["Domain-0", "db", "web"]
    r = c.post("/xvirt/resolve", data={"name": ["db", "nope"]})
    assert [records.parse_domain_record(x).name for x in _sx(r)[1:]] == ["db"]


def test_events_resume_from_a_sequence_number(host: HostModel) -> None:
    c = _client(host)
    host.pause(1)
    host.rename(2, "db2")
    rec = _sx(c.get("/xvirt/events", params={"after": "2"}))
    assert sxp.value(rec, "events/latest") == "4"
    assert sxp.value(rec, "events/complete") == "1"
    kinds = [(sxp.value(e, "event/kind"), sxp.value(e, "event/name"))
             for e in sxp.children(rec, "event")]
    assert kinds == [("paused", None), ("renamed", "db2")]
    host.reboot_host()
    rec = _sx(c.get("/xvirt/events", params={"after": "4"}))
    assert sxp.value(rec, "events/complete") == "0"  # another boot: resnapshot
    assert c.get("/xvirt/events", params={"after": "x"}).status_code == 400
    assert c.get("/xvirt/events", params={"after": "0", "timeout": "nan"}).status_code == 400


def test_node_record(host: HostModel) -> None:
    node = records.parse_node_record(_sx(_client(host).get("/xend/node/")))
    assert node["xend_config_format"] == "4"
    assert node["xvirt_boot_id"] == host.boot_id
    assert int(node["total_memory"]) * 1024 == host.node_info().memory_kib
    assert node["xvirt_image_dir"] == host.image_dir and Path(host.image_dir).is_absolute()


def test_the_image_directory_is_told_as_an_absolute_path(
        make_host_model: HostModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    h = make_host_model(clock=ManualClock(), image_dir="relative/images")
    try:
        node = records.parse_node_record(_sx(_client(h).get("/xend/node/")))
        assert node["xvirt_image_dir"] == str(tmp_path / "relative" / "images")
    finally:
        h.close()


# -- devices ------------------------------------------------------------------------------

WEB_DISK = "(device (vbd (dev xvda) (uname /var/lib/xen/images/web.img) (mode w)))"


def test_domain_records_carry_devices_as_xend_wrote_them(host: HostModel) -> None:
    c = _client(host)
    web = host.domains()[1]
    mac = f"00:16:3e:{int(web.uuid[:2], 16) & 0x7F:02x}:{web.uuid[2:4]}:{web.uuid[4:6]}"
    text = c.get("/xend/domain/web", params={"detail": "1"}).text
    assert text.endswith(
        f"(image (linux)) {WEB_DISK} (device (vif (mac {mac}) (bridge xenbr0)"
        " (script vif-bridge))))")
    listed = [records.parse_domain_record(x) for x in _sx(c.get("/xend/domain?detail=1"))]
    assert [(p.name, len(p.disks), len(p.nics)) for p in listed] == [
        ("Domain-0", 0, 0), ("web", 1, 1), ("db", 1, 1)]
    resolved = _sx(c.post("/xvirt/resolve", data={"name": ["web"]}))
    assert isinstance(resolved, list)
    assert records.parse_domain_record(resolved[1]).config() == host.resolve(
        [web.uuid]).domains[0].config


def test_create_takes_the_configs_vbd_and_vif_devices(host: HostModel) -> None:
    config = (
        "(vm (name 'new')(memory 256)(maxmem 256)(vcpus 1)"
        "(image (linux (kernel '/boot/vmlinuz')))"
        "(device (vbd (dev 'xvda')(uname 'phy:/dev/vg0/new')(mode 'w')))"
        "(device (tap (dev 'xvdb:disk')(uname 'tap:aio:/srv/data.img')(mode 'w')))"
        "(device (vbd (dev 'hdc:cdrom')(uname 'file:/srv/boot.iso')(mode 'r')))"
        "(device (vif (mac '00:16:3E:01:02:03')(bridge 'xenbr1')(script 'vif-bridge')))"
        "(device (vfb (type vnc))))"
    )
    r = _client(host).post("/xend/domain/", data={"op": "create", "config": config})
    assert r.status_code == 201, r.text
    p = records.parse_domain_record(_sx(r))
    expected = (
        (DiskConfig("phy:/dev/vg0/new", "xvda"), DiskConfig("tap:aio:/srv/data.img", "xvdb"),
         DiskConfig("file:/srv/boot.iso", "hdc", readonly=True)),
        (NicConfig("00:16:3e:01:02:03", "xenbr1"),),
    )
    assert (p.disks, p.nics) == expected
    truth = host.resolve([p.uuid]).domains[0].config
    assert truth is not None and (truth.disks, truth.nics) == expected


def test_create_without_devices_gets_the_defaults(host: HostModel) -> None:
    config = sxp.dumps(records.vm_config("plain", 256 * 1024, 256 * 1024, 1))
    p = records.parse_domain_record(_sx(_client(host).post(
        "/xend/domain/", data={"op": "create", "config": config})))
    assert p.disks == (DiskConfig("/var/lib/xen/images/plain.img", "xvda"),)
    assert [n.bridge for n in p.nics] == ["xenbr0"]


@pytest.mark.parametrize(
    ("device", "kind", "words"),
    [
        ("(vbd (dev 'vda')(uname 'file:/x'))", "invalid", "Xen device name"),
        ("(vbd (dev 'xvda'))", "invalid", "source"),
        ("(vif (mac '01:00:5e:00:00:01'))", "invalid", "unicast"),
        ("(vif (bridge 'xenbr0'))", "protocol", "no field 'mac'"),
        ("(vbd (uname 'file:/x'))", "protocol", "no device name"),
    ],
)
def test_create_refuses_bad_devices_saying_which(host: HostModel, device: str, kind: str,
                                                 words: str) -> None:
    config = f"(vm (name 'bad')(memory 256)(device {device}))"
    r = _client(host).post("/xend/domain/", data={"op": "create", "config": config})
    assert r.status_code == 400 and r.headers["X-Xvirt-Error"] == kind
    assert words in (records.parse_error(_sx(r)) or "")
    assert [d.name for d in host.domains()] == ["Domain-0", "web", "db"]


def test_a_resolution_without_configuration_is_a_named_failure(
        host: HostModel, monkeypatch: pytest.MonkeyPatch) -> None:
    web = host.domains()[1]
    bare = Resolution(host.boot_id, host.generation, (Resolved(web.id, web.uuid, "web"),))
    monkeypatch.setattr(host, "resolve", lambda uuids=(), ids=(): bare)
    r = _client(host).post("/xvirt/resolve", data={"uuid": [web.uuid]})
    assert r.status_code == 500 and r.headers["X-Xvirt-Error"] == "failed"
    assert records.parse_error(_sx(r)) == "the host gave no configuration for domain 'web'"


def test_control_latency_is_paid_on_the_control_plane_only(host: HostModel) -> None:
    clock = host.clock
    assert isinstance(clock, ManualClock)
    c = _client(host, latency=0.05)
    t0 = clock.now()
    c.get("/xend/domain/web")
    assert clock.now() - t0 == pytest.approx(0.05)
    c.get("/xvirt/table")
    c.get("/xvirt/events", params={"after": "0"})
    assert clock.now() - t0 == pytest.approx(0.05)


def test_malformed_requests_get_a_4xx_with_an_sexpression(host: HostModel) -> None:
    c = _client(host)
    r = c.put("/xend/domain/web")
    assert r.status_code == 405
    r = c.post("/xend/domain/web", content=b"op=\xff\xfe",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and records.parse_error(_sx(r))
    r = c.post("/xend/domain/web", content=b"op=pause%00")
    assert r.status_code == 400
    r = c.post("/xend/domain/web", content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413
    assert host.domain(1).state is DomainState.RUNNING


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "HEAD", "DELETE"]),
       path=st.sampled_from(["/xend/domain", "/xend/domain/", "/xend/domain/web",
                             "/xend/domain/1", "/xend/node/", "/xvirt/resolve",
                             "/xvirt/events", "/xvirt/table/1", "/xvirt/host",
                             "/xvirt/host/journal", "/nope"]) | st.text(max_size=30).map(
           lambda t: "/" + t),
       query=st.dictionaries(st.sampled_from(["op", "detail", "after", "timeout", "state",
                                              "id"]), st.text(max_size=12), max_size=3),
       body=st.binary(max_size=200) | st.dictionaries(
           st.sampled_from(["op", "file", "name", "expected_uuid", "config", "domid", "uuid",
                            "id", "memory_kib", "vcpus", "reason"]),
           st.text(max_size=20), max_size=4).map(lambda d: httpx.QueryParams(d).__str__().encode()))
def test_garbage_gets_named_answers_and_never_an_unexpected_exception(
        tmp_path_factory: pytest.TempPathFactory, method: str, path: str,
        query: dict[str, str], body: bytes) -> None:
    h = HostModel("fuzz", clock=ManualClock(), image_dir=tmp_path_factory.mktemp("img"))
    h.create("web")
    try:
        c = _client(h, trusted=False)
        try:
            r = c.request(method, path, params=query, content=body if method == "POST" else None)
        except httpx.InvalidURL:
            return  # the client refused to send it
        if r.status_code >= 400:  # every refusal says what kind it is
            assert r.headers["X-Xvirt-Error"] in (
                "invalid", "no-domain", "auth", "unsupported", "not-found", "failed", "protocol")
        if r.status_code >= 400 and r.headers["Content-Type"] == "application/sxp" and r.content:
            assert records.parse_error(sxp.parse(r.content)) is not None
    finally:
        h.close()
