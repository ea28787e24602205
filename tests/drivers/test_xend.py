"""The xend driver against a real ``xvirt daemon`` process (started on a free port and
a temporary socket, stopped by PID)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import httpx
import pytest

import xvirt
from xvirt.clock import ManualClock
from xvirt.drivers.xend import LIVENESS_S, XendDriver
from xvirt.errors import ProtocolError
from xvirt.planes import DiskConfig, NicConfig
from xvirt.testing.daemon import DaemonProcess, DaemonTarget
from xvirt.wire import records, sxp

GUESTS = 20
SAMPLES = 5


def _admin(d: DaemonProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                        base_url="http://localhost")


def _create(d: DaemonProcess, count: int, prefix: str = "g") -> None:
    with _admin(d) as c:
        for i in range(count):
            r = c.post("/xvirt/host", data={"op": "create", "name": f"{prefix}{i}",
                                            "memory_kib": "262144", "vcpus": "1"})
            assert r.status_code == 200, r.text


def _seed_loop(conn: xvirt.Connection) -> None:
    """The 2006 monitoring loop: list, then look every guest up by ID, read its info,
    free the handle."""
    for _ in range(SAMPLES):
        for domid in conn.list_domain_ids():
            if domid == 0:
                continue
            dom = conn.lookup_by_id(domid)
            dom.info()
            dom.close()


def test_seed_loop_costs_one_request_with_the_cache_and_101_without(
        daemon: DaemonProcess) -> None:
    _create(daemon, GUESTS)
    with xvirt.open(daemon.unix_uri) as conn:
        _seed_loop(conn)
        assert conn.stats().control_requests == 1
    with xvirt.open(daemon.unix_uri + "?cache=off") as conn:
        _seed_loop(conn)
        assert conn.stats().control_requests == 1 + GUESTS * SAMPLES  # open + one per lookup
    with xvirt.open(daemon.tcp_uri) as conn:  # the same over TCP
        _seed_loop(conn)
        assert conn.stats().control_requests == 1


@pytest.mark.parametrize("fast", ["table", "socket", "http"])
def test_every_data_channel_gives_the_same_answers(daemon: DaemonProcess, fast: str) -> None:
    _create(daemon, 3)
    with xvirt.open(daemon.unix_uri) as ref, xvirt.open(f"{daemon.unix_uri}?fast={fast}") as c:
        assert [s.identity for s in c.sample()] == [s.identity for s in ref.sample()]
        dom = c.lookup_by_name("g1")
        assert dom.info().memory_kib == 262144
        assert c.stats().data_calls >= 2


def test_kill_9_mid_loop_then_restart_costs_no_control_request(
        daemon: DaemonProcess) -> None:
    _create(daemon, GUESTS)
    with xvirt.open(daemon.unix_uri + "?timeout=1") as conn:
        _seed_loop(conn)
        daemon.kill()
        with pytest.raises(xvirt.HostUnreachableError) as err:
            _seed_loop(conn)
        assert err.value.uri == daemon.unix_uri + "?timeout=1"
        daemon.start()
        before = conn.stats().control_requests
        _seed_loop(conn)
        assert conn.stats().control_requests == before  # the same boot: nothing to ask


def test_lookups_alone_notice_a_dead_daemon_within_the_liveness_interval(
        daemon: DaemonProcess) -> None:
    """The shared table stays readable after a kill -9; the liveness check, made at
    least every LIVENESS_S of a steady stream of lookups, is what reports it."""
    _create(daemon, 2)
    clock = ManualClock(1000.0)
    driver = XendDriver(daemon.unix_uri, unix_socket=str(daemon.socket), timeout=1,
                        clock=clock)
    try:
        domid = next(i for i, _ in driver.census().members if i != 0)
        owner = driver.identify(domid).uuid
        daemon.kill()
        assert driver.identify(domid).uuid == owner  # still true: nobody changed the host
        with pytest.raises(xvirt.HostUnreachableError):
            for _ in range(3):  # each call within LIVENESS_S of the one before
                clock.advance(LIVENESS_S * 0.6)
                driver.identify(domid)
    finally:
        driver.close()


def test_host_state_survives_sigterm_and_kill_9(daemon: DaemonProcess) -> None:
    _create(daemon, 3)
    with xvirt.open(daemon.unix_uri) as conn:
        conn.lookup_by_name("g1").pause()  # acknowledged...
        conn.lookup_by_name("g2").rename("renamed")
        before = [(s.identity, s.info.state) for s in conn.sample()]
        boot = conn.host_info().boot_id
    for end in (daemon.stop, daemon.kill):
        end()
        daemon.start()
        with xvirt.open(daemon.unix_uri) as conn:  # ...and still there
            assert [(s.identity, s.info.state) for s in conn.sample()] == before
            assert conn.host_info().boot_id == boot


def test_reboot_host_ends_every_old_handle(daemon: DaemonProcess) -> None:
    _create(daemon, 4)
    with xvirt.open(daemon.unix_uri) as conn:
        handles = [conn.lookup_by_id(i) for i in conn.list_domain_ids() if i != 0]
        boot = conn.host_info().boot_id
        daemon.restart("--reboot-host")
        assert conn.host_info().boot_id != boot
        for h in handles:
            with pytest.raises(xvirt.NoDomainError):
                h.info()
        assert conn.list_domain_ids() == [0]


def test_token_missing_or_wrong_is_an_auth_error_and_nothing_happens(
        daemon: DaemonProcess, tmp_path: os.PathLike[str]) -> None:
    _create(daemon, 1)
    wrong = os.path.join(tmp_path, "wrong")
    with open(wrong, "w") as f:
        f.write("not-the-token-at-all\n")
    for uri in (daemon.tcp_uri, f"{daemon.tcp_uri}?token_file={wrong}"):
        with xvirt.open(uri) as conn:
            dom = conn.lookup_by_name("g0")
            with pytest.raises(xvirt.AuthError) as err:
                dom.pause()
            assert daemon.token is not None and daemon.token not in str(err.value)
            assert dom.info().state is not xvirt.DomainState.PAUSED
    with xvirt.open(f"{daemon.tcp_uri}?token_file={daemon.token_file}") as conn:
        conn.lookup_by_name("g0").pause()
        assert conn.lookup_by_name("g0").info().state is xvirt.DomainState.PAUSED
    log = daemon.log.read_text()
    assert daemon.token is not None and daemon.token not in log


def test_image_names_cannot_escape_and_nothing_is_written(daemon: DaemonProcess) -> None:
    _create(daemon, 1)
    with _admin(daemon) as c:
        for bad in ("../x", "/tmp/x", "a/../../x"):
            r = c.post("/xend/domain/g0", data={"op": "save", "file": bad})
            assert r.status_code == 400
    assert not (daemon.state_dir / "x").exists()
    assert os.listdir(daemon.state_dir / "images") == []
    with xvirt.open(daemon.unix_uri) as conn:
        with pytest.raises(xvirt.InvalidArgumentError):
            conn.lookup_by_name("g0").save("../x")
        assert conn.lookup_by_name("g0").info().state is xvirt.DomainState.RUNNING


def test_save_and_restore_through_the_daemon(daemon: DaemonProcess) -> None:
    _create(daemon, 2)
    with xvirt.open(daemon.unix_uri) as conn:
        dom = conn.lookup_by_name("g1")
        old_id, uuid = dom.id, dom.uuid
        dom.save("g1.img")
        with pytest.raises(xvirt.NoDomainError):
            dom.info()
        back = conn.restore("g1.img")
        assert back.uuid == uuid and back.name == "g1" and back.id != old_id
        assert dom.id == back.id  # the old handle follows the UUID (C3)


def test_events_reach_the_connection(daemon: DaemonProcess) -> None:
    _create(daemon, 2)
    with xvirt.open(daemon.unix_uri) as conn:
        stream = conn.events(timeout=5)
        conn.lookup_by_name("g0").pause()
        conn.lookup_by_name("g1").rename("h1")
        got = [next(stream), next(stream)]
        assert [(e.kind, e.name) for e in got] == [(xvirt.EventKind.PAUSED, "g0"),
                                                   (xvirt.EventKind.RENAMED, "h1")]


def test_sockets_are_private_and_bad_input_does_not_kill_the_daemon(
        daemon: DaemonProcess) -> None:
    import socket

    for path in (daemon.socket, daemon.state_dir / "fast.sock"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for garbage in (b"\x00\xff" * 500 + b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: -5\r\n\r\n", b"POST /xend/domain/g HTTP/1.1\r\n"
                    b"Content-Length: 99999999999\r\n\r\nop=pause"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(daemon.socket))
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(4096)
            assert answer == b"" or answer.startswith(b"HTTP/1.")
            if answer:
                assert int(answer.split()[1]) in range(400, 500)
    with xvirt.open(daemon.unix_uri) as conn:
        assert conn.list_domain_ids() == [0]
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_an_absent_daemon_is_host_unreachable_with_the_uri(tmp_path: os.PathLike[str]) -> None:
    uri = f"xend+unix://{tmp_path}/none.sock?timeout=0.2"
    with xvirt.open(uri) as conn, pytest.raises(xvirt.HostUnreachableError) as err:
        conn.list_domain_ids()
    assert err.value.uri == uri


def test_sigterm_is_a_graceful_shutdown(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    assert daemon.log.read_text().rstrip().endswith("xvirt daemon: stopped")


def test_domain_config_carries_the_devices_created_through_xends_route(
        daemon: DaemonProcess) -> None:
    disks = (DiskConfig("phy:/dev/vg0/web", "xvda"),
             DiskConfig("file:/srv/boot.iso", "hdc", readonly=True))
    nics = (NicConfig("00:16:3e:0a:0b:0c", "xenbr1"), NicConfig("00:16:3e:0a:0b:0d"))
    config = sxp.dumps(records.vm_config("web", 256 * 1024, 256 * 1024, 1, disks=disks,
                                         nics=nics))
    with _admin(daemon) as c:
        r = c.post("/xend/domain/", data={"op": "create", "config": config})
        assert r.status_code == 201, r.text
    _create(daemon, 1)  # the admin route: default devices
    for uri in (daemon.unix_uri, daemon.tcp_uri):
        with xvirt.open(uri) as conn:
            web, g0 = conn.lookup_by_name("web"), conn.lookup_by_name("g0")
            before = conn.stats().control_requests
            got = web.config()
            assert conn.stats().control_requests == before + 1
            assert (got.memory_kib, got.disks, got.nics) == (256 * 1024, disks, nics)
            default = g0.config()
            assert default.disks == (DiskConfig("/var/lib/xen/images/g0.img", "xvda"),)
            assert [n.bridge for n in default.nics] == ["xenbr0"]


def test_image_dir_comes_from_the_node_record_once(daemon: DaemonProcess) -> None:
    images = str(daemon.state_dir / "images")
    with xvirt.open(daemon.unix_uri) as conn:
        assert conn.stats().control_requests == 0
        assert conn.image_dir == images
        assert conn.stats().control_requests == 1  # fetched lazily, once
        assert conn.image_dir == images
        assert conn.stats().control_requests == 1
    with xvirt.open(daemon.unix_uri) as conn:
        conn.host_info()  # whoever reads the node record learns it
        assert conn.image_dir == images
        assert conn.stats().control_requests == 1
    with xvirt.open(daemon.tcp_uri + "?cache=off") as conn:  # 2006 mode reads it on open
        assert conn.image_dir == images
        assert conn.stats().control_requests == 1


def _node_answer(driver: XendDriver, node: str) -> None:
    response = httpx.Response(200, headers={"X-Xvirt-Boot": "b", "X-Xvirt-Generation": "0"})

    def call(method: str, path: str, **_: object) -> tuple[httpx.Response, sxp.Sx]:
        assert (method, path) == ("GET", "/xend/node/")
        return response, sxp.parse(node)

    driver._call = call  # type: ignore[method-assign]


def test_a_node_record_without_the_extension_means_no_image_dir() -> None:
    driver = XendDriver("xend://real-xend", base_url="http://127.0.0.1:9")
    try:
        _node_answer(driver, "(node (host dom0) (nr_cpus 4) (xend_config_format 4))")
        assert driver.image_dir is None  # real xend does not say
        assert driver.counters.control_requests == 1
        assert driver.image_dir is None
        assert driver.counters.control_requests == 1
    finally:
        driver.close()


def test_a_relative_image_dir_is_a_protocol_error() -> None:
    driver = XendDriver("xend://odd", base_url="http://127.0.0.1:9")
    try:
        _node_answer(driver, "(node (host dom0) (xvirt_image_dir images))")
        with pytest.raises(ProtocolError, match="xvirt_image_dir"):
            driver.host_info()
    finally:
        driver.close()


def test_a_resolve_answer_larger_than_a_request_may_be_is_read(daemon: DaemonProcess) -> None:
    """Every newcomer is named by one request (C5), whatever the host's size: at
    14 000 guests the answer is over 4 MiB, the parser's limit for requests."""
    with _admin(daemon) as c:
        r = c.post("/xvirt/host", data={"op": "create", "name": "guest", "count": "14000",
                                        "memory_kib": "65536", "vcpus": "1"}, timeout=120)
        assert r.status_code == 200, r.text
    with xvirt.open(daemon.unix_uri, readonly=True) as conn:
        before = conn.stats().control_requests
        found = conn.sample()
        assert len(found) == 14001
        assert conn.stats().control_requests == before + 1


# -- a wedged domain, through the daemon ------------------------------------------------------


@pytest.fixture
def target() -> Iterator[DaemonTarget]:
    t = DaemonTarget(tcp=True)
    yield t
    t.close()


def test_a_wedged_domain_is_reported_beside_the_others_on_every_data_path(
        target: DaemonTarget) -> None:
    guests = [target.host.create(f"w{i}", memory_kib=262144) for i in range(3)]
    wedged = guests[1]
    others = {"Domain-0", "w0", "w2"}
    d = target.daemon
    uris = [d.unix_uri, f"{d.unix_uri}?fast=socket", f"{d.tcp_uri}?fast=http"]
    conns = [xvirt.open(uri, readonly=True) for uri in uris]
    try:
        for conn in conns:  # all known before the wedge: the failure names it from the cache
            assert len(conn.sample()) == 4
        target.host.stall(wedged.id)
        for uri, conn in zip(uris, conns, strict=True):
            found = conn.survey()
            assert {s.identity.name for s in found.samples} == others, uri
            assert [(f.identity.id, f.identity.uuid, f.identity.name)
                    for f in found.failures] == [(wedged.id, wedged.uuid, "w1")], uri
            error = found.failures[0].error
            assert isinstance(error, xvirt.OperationFailedError), uri
            assert (error.domid, error.uuid, error.op) == (wedged.id, wedged.uuid, "info"), uri
            assert sorted(conn.list_domain_ids()) == sorted([0, *(g.id for g in guests)]), uri
            dom = conn.lookup_by_id(wedged.id)
            assert dom.name == "w1"
            with pytest.raises(xvirt.OperationFailedError, match="did not answer") as info:
                dom.info()
            assert (info.value.domid, info.value.uuid) == (wedged.id, wedged.uuid), uri
            assert conn.lookup_by_id(guests[0].id).info().memory_kib == 262144, uri
        with xvirt.open(f"{d.unix_uri}?fast=http", readonly=True) as fresh:  # never sampled
            assert [f.identity.name for f in fresh.survey().failures] == ["w1"]
        target.host.unstall(wedged.id)
        for uri, conn in zip(uris, conns, strict=True):
            found = conn.survey()
            assert found.failures == [], uri
            assert {s.identity.name for s in found.samples} == others | {"w1"}, uri
            assert conn.lookup_by_id(wedged.id).info().memory_kib == 262144, uri
    finally:
        for conn in conns:
            conn.close()


def test_a_wedge_does_not_outlive_the_daemon(target: DaemonTarget) -> None:
    """A runtime fault, not host state: a restarted daemon's domain answers again."""
    guest = target.host.create("w")
    target.host.stall(guest.id)
    target.host.restart_daemon()
    with target.connect(readonly=True) as conn:
        assert conn.survey().failures == []
        assert conn.lookup_by_id(guest.id).info().memory_kib == 524288
