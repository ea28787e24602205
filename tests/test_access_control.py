"""Access control (issue 8, item 5), end to end on real processes:

* a read-only connection never mutates, for every mutating call of the public API
  on every driver (sim, cache=off, the daemon over its unix socket and over TCP,
  libvirt's test driver), and the list of mutating calls is checked against the
  classes, so a new public method must be classified here;
* over TCP every mutating daemon request without the token (or with a wrong one)
  is a 401 and is journalled, while reads need no token;
* the daemon's sockets and files have the modes the code intends, even under
  umask 0;
* the token appears in no log, journal, answer or error.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import xvirt
from tests.compat.helpers import libvirt_admin as admin_connection
from xvirt.clock import ManualClock
from xvirt.daemon.control import _DOMAIN_OPS
from xvirt.planes import Op
from xvirt.testing.daemon import DaemonProcess
from xvirt.wire import records, sxp

# -- the public API's calls, classified -----------------------------------------------------

#: Every public name of Connection and Domain that never changes the host.
CONNECTION_READS = {"close", "closed", "defined_names", "events", "host_info", "image_dir",
                    "list_defined", "list_domain_ids", "list_domains", "lookup_by_id",
                    "lookup_by_name",
                    "lookup_by_uuid", "sample", "stats", "survey", "uri", "readonly",
                    "capabilities", "domain_stats", "node_cpu_stats", "node_memory_stats",
                    # libvirt's own connection, for calls xvirt does not carry: it is opened
                    # read-only when this one is, so libvirt refuses its mutations itself
                    "libvirt_connection"}
DOMAIN_READS = {"close", "config", "connection", "id", "identity", "info", "name",
                "persistent", "uuid", "settings", "vcpu_info", "scheduler", "metadata",
                "stats"}

Mutation = Callable[[xvirt.Connection, xvirt.Domain], object]

#: Every mutating call, with the arguments it is tried with (a bad argument too: the
#: read-only refusal must come first, whatever the argument).
MUTATIONS: dict[str, list[Mutation]] = {
    "Domain.pause": [lambda c, d: d.pause()],
    "Domain.resume": [lambda c, d: d.resume()],
    "Domain.shutdown": [lambda c, d: d.shutdown()],
    "Domain.reboot": [lambda c, d: d.reboot()],
    "Domain.destroy": [lambda c, d: d.destroy()],
    "Domain.save": [lambda c, d: d.save("ro.img"), lambda c, d: d.save("../escape.img")],
    "Domain.rename": [lambda c, d: d.rename("renamed-ro"), lambda c, d: d.rename("")],
    "Connection.restore": [lambda c, d: c.restore("saved.img"),
                           lambda c, d: c.restore("/etc/passwd")],
    "Connection.define": [lambda c, d: c.define("defined-ro", xvirt.DomainConfig(65536, 65536, 1)),
                          lambda c, d: c.define("", xvirt.DomainConfig(65536, 65536, 1))],
    "Domain.start": [lambda c, d: d.start()],
    "Domain.undefine": [lambda c, d: d.undefine()],
    "Connection.create": [lambda c, d: c.create("created-ro", xvirt.DomainConfig(65536, 65536, 1)),
                          lambda c, d: c.create("", xvirt.DomainConfig(65536, 65536, 1))],
    "Domain.set_vcpus": [lambda c, d: d.set_vcpus(1), lambda c, d: d.set_vcpus(-1)],
    "Domain.set_scheduler": [lambda c, d: d.set_scheduler(weight=9),
                             lambda c, d: d.set_scheduler(weight=0)],
    "Domain.set_metadata": [lambda c, d: d.set_metadata(xvirt.MetadataKind.TITLE, "ro"),
                            lambda c, d: d.set_metadata(xvirt.MetadataKind.TITLE, "\x00")],
}
#: Host operations with no public call (yet): adding one must add it to MUTATIONS.
UNEXPOSED_OPS = {Op.MIGRATE}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_every_public_call_is_classified_read_or_mutating() -> None:
    mutating = {k.split(".", 1)[1] for k in MUTATIONS if k.startswith("Connection.")}
    assert _public(xvirt.Connection) | {"uri", "readonly"} == CONNECTION_READS | mutating, (
        "a public Connection call is neither a known read nor in MUTATIONS")
    mutating = {k.split(".", 1)[1] for k in MUTATIONS if k.startswith("Domain.")}
    assert _public(xvirt.Domain) == DOMAIN_READS | mutating, (
        "a public Domain call is neither a known read nor in MUTATIONS")
    # every host operation is reachable through a listed call, or known to be unexposed
    assert {op.value for op in Op if op not in UNEXPOSED_OPS} <= mutating
    assert not {op.value for op in UNEXPOSED_OPS} & _public(xvirt.Domain)


# -- targets: a host, its truth, and read-only connections to it ------------------------------


@dataclass
class Target:
    name: str
    uri: str
    truth: Callable[[], object]  # what the host holds, from the host's side
    guest: str = "g0"


class _Admin:
    """The daemon's own view over its trusted unix socket (not through xvirt)."""

    def __init__(self, d: DaemonProcess) -> None:
        self.d = d
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                                   base_url="http://localhost", timeout=30.0)

    def post(self, op: str, **fields: str) -> None:
        r = self.client.post("/xvirt/host", data={"op": op, **fields})
        assert r.status_code == 200, r.text

    def domains(self) -> list[tuple[str, str, str, str]]:
        r = self.client.get("/xvirt/host/domains")
        assert r.status_code == 200
        doc = sxp.parse(r.content)
        assert isinstance(doc, list)
        out = []
        for rec in doc[1:]:
            p = records.parse_domain_record(rec)
            out.append((str(p.domid), p.uuid, p.name, str(p.state)))
        return sorted(out)

    def journal(self) -> str:
        r = self.client.get("/xvirt/host/journal")
        assert r.status_code == 200
        return r.text

    def boot(self) -> str:
        return self.client.get("/xend/node/").headers["X-Xvirt-Boot"]

    def truth(self) -> tuple[str, list[tuple[str, str, str, str]], str, list[str]]:
        images = self.d.state_dir / "images"
        return (self.boot(), self.domains(), self.journal(), sorted(os.listdir(images)))


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess],
           tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """A daemon with a token, a control socket outside its state directory and a state
    directory it creates itself, started under umask 0 (the modes must not depend on
    the umask)."""
    base = tmp_path_factory.mktemp("access")
    token = secrets.token_hex(24)
    token_file = base / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    sock = base / "control.sock"
    d = make_module_daemon(start=False, tcp=True, token=False,
                           state_dir=base / "parent" / "state",
                           extra=("--token-file", str(token_file), "--unix", str(sock)))
    d.socket, d.log = sock, base / "daemon.log"
    d.token, d.token_file = token, token_file
    old = os.umask(0)
    try:
        d.start()
    finally:
        os.umask(old)
    admin = _Admin(d)
    for name in ("g0", "g1", "saved"):
        admin.post("create", name=name, memory_kib="65536", vcpus="1")
    saved = next(int(i) for i, _, n, _ in admin.domains() if n == "saved")
    admin.post("save", domid=str(saved), image="saved.img")
    admin.client.close()
    return d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> Iterator[_Admin]:
    a = _Admin(daemon)
    yield a
    a.client.close()


@pytest.fixture(scope="module")
def sim_host(make_module_sim_host: Callable[..., xvirt.sim.Host],
             tmp_path_factory: pytest.TempPathFactory) -> xvirt.sim.Host:
    """One embedded host for the module: g0 running, and "saved" saved as saved.img."""
    host = make_module_sim_host(clock=ManualClock(),
                                image_dir=tmp_path_factory.mktemp("sim-images"))
    host.create("g0")
    host.save(host.create("saved").id, "saved.img")
    return host


@pytest.fixture(scope="module")
def libvirt_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with admin_connection(tmp_path_factory.mktemp("libvirt-images"),
                       "00000000-0000-4000-8000-00000000ac01") as conn:
        yield conn


def _libvirt_truth(conn: Any) -> object:
    doms = sorted((d.ID(), d.name(), d.UUIDString(), d.isActive(), tuple(d.info()[:4]))
                  for d in conn.listAllDomains(0))
    return doms, sorted(os.listdir(conn.images))


def _sim_truth(host: xvirt.sim.Host) -> object:
    return ([(d.id, d.uuid, d.name, d.state, d.memory_kib, d.vcpus) for d in host.domains()],
            host.journal(), host.images(), host.boot_id)


TARGETS = ["sim", "sim-cache-off", "xend+unix", "xend-tcp-with-token", "libvirt-test"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    kind: str = request.param
    if kind.startswith("sim"):
        host: xvirt.sim.Host = request.getfixturevalue("sim_host")
        uri = host.uri + ("?cache=off" if kind == "sim-cache-off" else "")
        return Target(kind, uri, lambda: _sim_truth(host))
    if kind == "libvirt-test":
        lv = request.getfixturevalue("libvirt_admin")
        return Target(kind, "libvirt:test:///default", lambda: _libvirt_truth(lv))
    d: DaemonProcess = request.getfixturevalue("daemon")
    a: _Admin = request.getfixturevalue("admin")
    uri = d.unix_uri if kind == "xend+unix" else f"{d.tcp_uri}?token_file={d.token_file}"
    return Target(kind, uri, a.truth)


CASES = [(name, i) for name, calls in MUTATIONS.items() for i in range(len(calls))]


@pytest.mark.parametrize(("call", "variant"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_a_read_only_connection_never_mutates(target: Target, call: str, variant: int) -> None:
    mutate = MUTATIONS[call][variant]
    with xvirt.open(target.uri, readonly=True) as conn:
        dom = conn.lookup_by_name(target.guest)
        info = dom.info()
        before = target.truth()
        requests = conn.stats().control_requests
        with pytest.raises(xvirt.ReadOnlyError) as err:
            mutate(conn, dom)
        assert err.value.op == call.split(".")[1] and err.value.uri == target.uri
        assert conn.stats().control_requests == requests  # nothing was sent
        assert target.truth() == before  # and the host did nothing
        assert dom.info().state is info.state  # reads still work
        assert conn.lookup_by_name(target.guest) == dom


# -- the daemon over TCP: mutations need the token, reads do not --------------------------------


def _mutating_requests(domid: int, uuid: str) -> list[tuple[str, dict[str, str]]]:
    ops: list[tuple[str, dict[str, str]]] = []
    for op in [*_DOMAIN_OPS, "shutdown"]:
        form = {"op": op, "file": "x.img", "name": "hijacked"}
        ops.append((f"/xend/domain/{domid}", form))
        ops.append((f"/xend/domain/{domid}", {**form, "expected_uuid": uuid}))
        ops.append(("/xend/domain/g0", form))
    for reason in ("poweroff", "halt", "reboot"):
        ops.append((f"/xend/domain/{domid}", {"op": "shutdown", "reason": reason}))
    config = "(vm (name evil) (memory 64) (vcpus 1))"
    ops += [("/xend/domain/", {"op": "create", "config": config}),
            ("/xend/domain/", {"op": "restore", "file": "saved.img"}),
            ("/xend/node/", {"op": "reboot"})]
    host_ops = {"create": {"name": "evil", "memory_kib": "65536", "vcpus": "1"},
                "restore": {"image": "saved.img"}, "save": {"image": "y.img"},
                "rename": {"name": "hijacked"}, "set_blocked": {}, "reboot_host": {}}
    for op in ("destroy", "shutdown", "pause", "resume", "crash", "reboot", "migrate"):
        host_ops[op] = {}
    for op, fields in host_ops.items():
        ops.append(("/xvirt/host", {"op": op, "domid": str(domid), **fields}))
    return ops


def test_tcp_mutations_without_the_right_token_are_refused_and_journalled(
        daemon: DaemonProcess, admin: _Admin) -> None:
    token = daemon.token
    assert token is not None
    # the guard covers every op the control plane knows
    assert set(_DOMAIN_OPS) | {"shutdown"} == {
        "pause", "unpause", "destroy", "save", "rename", "migrate", "shutdown"}
    g0 = next((int(i), u) for i, u, n, _ in admin.domains() if n == "g0")
    requests = _mutating_requests(*g0)
    bad_auth: list[tuple[dict[str, str], str]] = [
        ({}, "no token"),
        ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, "wrong token"),
        ({"Authorization": f"Bearer {token}x"}, "wrong token"),
        ({"Authorization": f"Bearer {token[:-1]}"}, "wrong token"),
        ({"Authorization": f"Basic {base64.b64encode(f'u:{token}'.encode()).decode()}"},
         "no token"),
        ({"Authorization": token}, "no token"),
    ]
    before = admin.truth()
    entries_before = admin.journal().count("(entry")
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30.0) as tcp:
        for headers, _ in bad_auth:
            for path, form in requests:
                r = tcp.post(path, data=form, headers=headers)
                assert r.status_code == 401, (path, form, r.text)
                assert r.headers["X-Xvirt-Error"] == "auth"
                assert token not in r.text and token not in str(r.headers)
        after = admin.journal()
        assert admin.truth()[:2] == before[:2]  # the same boot, the same domains
        assert admin.truth()[3] == before[3]  # no image written or consumed
        # every refusal, and nothing else, was journalled, with its reason
        outcomes = [sxp.value(e, "entry/outcome") or ""
                    for e in _entries(after)[entries_before:]]
        expected = [f"refused: not authenticated ({why})"
                    for _, why in bad_auth for _ in requests]
        assert outcomes == expected

        # reads need no token, and journal nothing
        reads = [("GET", "/xend/node/", {}), ("GET", "/xend/domain", {}),
                 ("GET", "/xend/domain?detail=1", {}), ("GET", "/xend/domain/g0", {}),
                 ("GET", f"/xend/domain/{g0[0]}?op=vcpuinfo", {}),
                 ("POST", "/xend/domain/g0", {"op": "wait_for_devices"}),
                 ("POST", "/xvirt/resolve", {"id": str(g0[0])}),
                 ("GET", "/xvirt/resolve?all=1", {}), ("GET", "/xvirt/events?after=0", {}),
                 ("GET", "/xvirt/table", {}), ("GET", f"/xvirt/table/{g0[0]}", {}),
                 ("GET", "/xvirt/fast", {}), ("GET", "/xvirt/host/domains", {}),
                 ("GET", "/xvirt/host/journal", {})]
        journal = admin.journal()
        for method, path, form in reads:
            r = tcp.request(method, path, data=form or None)
            assert r.status_code in (200, 202), (path, r.text)
        assert admin.journal() == journal

        # the right token works (so the refusals above were about the token)
        r = tcp.post(f"/xend/domain/{g0[0]}", data={"op": "pause"},
                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        r = tcp.post(f"/xend/domain/{g0[0]}", data={"op": "unpause"},
                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    assert admin.truth()[1] == before[1]


def _entries(journal_text: str) -> list[sxp.Sx]:
    doc = sxp.parse(journal_text)
    assert isinstance(doc, list) and doc[0] == "journal"
    return doc[1:]


def test_tcp_without_a_token_file_takes_no_mutation_at_all(tmp_path: Path) -> None:
    d = DaemonProcess(tcp=True, token=False, state_dir=tmp_path / "state")
    try:
        (tmp_path / "state").mkdir()
        d.start()
        a = _Admin(d)
        a.post("create", name="g0", memory_kib="65536", vcpus="1")
        before = a.domains()
        g0 = next(int(i) for i, _, n, _ in before if n == "g0")
        with httpx.Client(base_url=f"http://127.0.0.1:{d.port}") as tcp:
            for auth in ({}, {"Authorization": "Bearer anything-at-all-0123456789"}):
                r = tcp.post(f"/xend/domain/{g0}", data={"op": "destroy"}, headers=auth)
                assert r.status_code == 401
            assert tcp.get("/xend/domain/g0").status_code == 200
        outcomes = [sxp.value(e, "entry/outcome") for e in _entries(a.journal())][-2:]
        assert outcomes == ["refused: not authenticated (this listener takes no mutating "
                            "requests (no token file))"] * 2
        assert a.domains() == before
        a.client.close()
    finally:
        d.cleanup()


# -- modes of the daemon's sockets and files ------------------------------------------------------


def test_sockets_and_state_are_private_even_under_umask_0(
        daemon: DaemonProcess, admin: _Admin) -> None:
    def mode(p: Path) -> int:
        return stat.S_IMODE(os.lstat(p).st_mode)

    state = daemon.state_dir
    assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
    assert mode(daemon.socket) == 0o600  # outside the state directory: its own mode counts
    assert mode(state / "fast.sock") == 0o600
    assert mode(state) == 0o700  # created by the daemon: nothing in it is reachable by others
    assert mode(state / "table") == 0o600
    assert mode(state / "lock") == 0o600
    assert mode(state / "images" / "saved.img") == 0o600
    assert os.lstat(state).st_uid == os.getuid()


def test_a_state_directory_open_to_others_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    d = DaemonProcess(tcp=False, token=False, state_dir=state)
    try:
        d.start()
        assert stat.S_IMODE(os.lstat(state).st_mode) == 0o700
    finally:
        d.cleanup()


# -- the token never shows -----------------------------------------------------------------------


def _everything_said(exc: BaseException) -> str:
    """str, repr, args, attributes and the whole traceback chain of an error."""
    parts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc)) if hasattr(exc, "__dict__")
             else "", "".join(traceback.format_exception(exc))]
    return "\n".join(parts)


def test_the_token_never_appears_in_logs_answers_or_errors(
        daemon: DaemonProcess, admin: _Admin, tmp_path: Path) -> None:
    token, token_file = daemon.token, daemon.token_file
    assert token is not None and token_file is not None
    wrong = "wrong-" + secrets.token_hex(16)
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(wrong + "\n")
    secret_texts = [token, wrong, token_file.read_text().strip()]
    said: list[str] = []

    def expect_error(call: Callable[[], object], kind: type[BaseException]) -> None:
        with pytest.raises(kind) as info:
            call()
        said.append(_everything_said(info.value))

    with xvirt.open(f"{daemon.tcp_uri}?token_file={wrong_file}") as conn:
        dom = conn.lookup_by_name("g1")
        for mutate in (dom.pause, dom.destroy, lambda: dom.save("g1.img"),
                       lambda: dom.rename("h1"), lambda: conn.restore("saved.img")):
            expect_error(mutate, xvirt.AuthError)
    with xvirt.open(f"{daemon.tcp_uri}?token_file={token_file}") as conn:
        dom = conn.lookup_by_name("g1")
        dom.pause()
        expect_error(dom.pause, xvirt.OperationFailedError)  # already paused
        dom.resume()
        expect_error(lambda: dom.rename("g0"), xvirt.XvirtError)  # name taken
        expect_error(lambda: dom.save("../x"), xvirt.InvalidArgumentError)
        expect_error(lambda: conn.restore("no-such.img"), xvirt.XvirtError)
        expect_error(lambda: conn.lookup_by_name("nobody"), xvirt.NoDomainError)
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}") as tcp:
        for auth in (f"Bearer {wrong}", f"Bearer {token}", token, f"Bearer {token} {token}"):
            for form in ({"op": "pause"}, {"op": "bogus"}, {"op": "save", "file": "../x"}):
                r = tcp.post("/xend/domain/g1", data=form, headers={"Authorization": auth})
                said += [r.text, str(r.headers)]
            tcp.post("/xend/domain/g1", data={"op": "unpause"},
                     headers={"Authorization": f"Bearer {token}"})
    # a token file the client cannot use, and one the daemon refuses to start with
    empty = tmp_path / "empty"
    empty.write_text("\n")
    expect_error(lambda: xvirt.open(f"{daemon.tcp_uri}?token_file={empty}"), xvirt.XvirtError)
    short = "Sh0rtS3cr3t"
    (tmp_path / "short").write_text(short + "\n")
    started = subprocess.run(
        [sys.executable, "-m", "xvirt", "daemon", "--state-dir", str(tmp_path / "s"),
         "--empty", "--no-unix", "--listen", "127.0.0.1:0",
         "--token-file", str(tmp_path / "short")],
        capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode != 0 and "at least 16 characters" in started.stderr
    said += [started.stdout, started.stderr]
    secret_texts.append(short)

    said += [admin.journal(), daemon.log.read_text(errors="replace")]
    assert "not authenticated (wrong token)" in said[-2]  # the refusals were journalled
    for text in said:
        for secret in secret_texts:
            assert secret not in text, f"a secret shows in: {text[:300]!r}"
