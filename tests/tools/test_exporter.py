"""The exporter's HTTP face (landing page, 404, /metrics, TLS, basic auth), its command
line, and ``xvirt exporter`` as a real process over a real daemon that is killed."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from click.testing import CliRunner

import xvirt
from xvirt.testing.daemon import DaemonProcess
from xvirt.testing.prometheus import parse_samples
from xvirt.tools.cli import main
from xvirt.tools.exporter import Exporter, parse_listen
from xvirt.tools.webconfig import load_web_config

from .test_webconfig import make_cert


@pytest.fixture
def host(make_sim_host: Callable[..., xvirt.sim.Host]) -> xvirt.sim.Host:
    """Domain-0 and web1, on the system clock."""
    h = make_sim_host()
    h.create("web1")
    return h


@pytest.fixture
def exporter(host: xvirt.sim.Host) -> Iterator[Exporter]:
    with Exporter(host.uri, scrape_timeout_s=5) as e:
        yield e


def test_metrics_landing_page_and_404(exporter: Exporter, host: xvirt.sim.Host) -> None:
    with httpx.Client(base_url=exporter.url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<a href="metrics">' in page.text
        for path, status in (("/", 200), ("/nope", 404), ("/metrics", 200)):
            answer = client.head(path)  # headers only, so the connection stays usable
            assert (answer.status_code, answer.content) == (status, b"")
        assert client.post("/").status_code == 405
        for path in ("/nope", "/metrics/", "/favicon.ico", "/index.html"):
            assert client.get(path).status_code == 404, path
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        got = parse_samples(metrics.text)
        assert got[("xvirt_up", frozenset())] == 1
        (web1,) = [r for r in host.domains() if r.name == "web1"]
        assert got[("xvirt_domain_vcpus", frozenset({("uuid", web1.uuid), ("name", "web1")}))
                   ] == web1.vcpus
        # the exporter process's own figures, as Go exporters serve them
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_virtual_memory_max_bytes", "python_info"):
            assert any(k[0] == name for k in got), name
        # this request is in flight; the HEAD above was answered 200
        assert got[("xvirt_exporter_requests_in_flight", frozenset())] == 1
        assert got[("xvirt_exporter_requests_total", frozenset({("code", "200")}))] == 1
        om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; "
                                                       "version=1.0.0; charset=utf-8"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        assert "# UNIT xvirt_domain_memory_bytes bytes" in om.text


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_tls_and_basic_auth(tmp_path: Path, host: xvirt.sim.Host) -> None:
    cert, key = make_cert(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = load_web_config(tmp_path / "web.yml")
    trust = ssl.create_default_context(cafile=str(cert))
    with Exporter(host.uri, web_config=config) as e:
        assert e.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=e.url, verify=trust) as client:
            good = client.get("/metrics", headers=_basic("prometheus", "s3cret"))
            assert good.status_code == 200
            assert parse_samples(good.text)[("xvirt_up", frozenset())] == 1
            for headers in ({}, _basic("prometheus", "wrong"), _basic("other", "s3cret"),
                            {"Authorization": "Basic not-base64!"}):
                refused = client.get("/metrics", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.headers["www-authenticate"].startswith("Basic realm=")
                assert "xvirt_up" not in refused.text
            assert client.get("/", headers={}).status_code == 401  # every path is protected
            assert client.get("/", headers=_basic("prometheus", "s3cret")).status_code == 200
            assert client.get("/x", headers=_basic("prometheus", "s3cret")).status_code == 404
        with httpx.Client(base_url=e.url, verify=True) as untrusting, \
                pytest.raises(httpx.ConnectError):
            untrusting.get("/metrics")  # self-signed: an ordinary client refuses it
        plain = e.url.replace("https://", "http://")
        with httpx.Client(base_url=plain) as client:  # plain HTTP never gets metrics
            try:
                answer = client.get("/metrics", headers=_basic("prometheus", "s3cret"))
            except httpx.HTTPError:
                pass
            else:
                assert answer.status_code == 400 and "xvirt_up" not in answer.text


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9177") == ("127.0.0.1", 9177)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("9177", ":9177", "host:", "host:port", "h:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


# -- the command -----------------------------------------------------------------------------

def _one_error_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_command_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("basic_auth_users:\n  alice: not-a-hash\n")
    line = _one_error_line(["exporter", "--web-config-file", str(tmp_path / "bad.yml")])
    assert "basic_auth_users.alice: not a bcrypt hash" in line
    line = _one_error_line(["exporter", "--web-config-file", str(tmp_path / "none.yml")])
    assert "cannot read web config file" in line
    cert, _ = make_cert(tmp_path, "a")
    _, other = make_cert(tmp_path, "b")
    (tmp_path / "mismatch.yml").write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {other}\n")
    line = _one_error_line(["exporter", "--web-config-file", str(tmp_path / "mismatch.yml")])
    assert "cannot use tls_server_config.cert_file" in line
    for args, says in ((["--listen", "nowhere"], "--listen expects HOST:PORT"),
                       (["--scrape-timeout", "0"], "positive, at most 3600 s")):
        result = CliRunner().invoke(main, ["exporter", *args])  # usage errors
        assert result.exit_code == 2 and says in result.stderr, result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = _one_error_line(["exporter", "--uri", "sim:///nothing-needed",
                                "--listen", f"127.0.0.1:{port}"])
    assert line == f"error: cannot listen on 127.0.0.1:{port}: address already in use"


def test_the_command_is_registered() -> None:
    result = CliRunner().invoke(main, ["exporter", "--help"])
    assert result.exit_code == 0
    assert "--web-config-file" in result.stdout and "127.0.0.1:9177" in result.stdout


# -- a real exporter process over a real daemon ------------------------------------------------

class ExporterProcess:
    """``xvirt exporter`` as a child process on a free port (read from its first line)."""

    def __init__(self, *args: str) -> None:
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"xvirt-exporter-{uuidlib.uuid4().hex}"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "xvirt", "exporter", "--listen", "127.0.0.1:0", *args],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving (http://\S+/)metrics", self.text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the exporter did not start: {self.text()}")
            time.sleep(0.02)
        self.url = found.group(1)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.unlink(missing_ok=True)


def _create(daemon: DaemonProcess, *names: str) -> list[str]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      base_url="http://localhost") as admin:
        out = []
        for name in names:
            r = admin.post("/xvirt/host", data={"op": "create", "name": name,
                                                "memory_kib": "262144", "vcpus": "1"})
            assert r.status_code == 200, r.text
            out.append(name)
        return out


def test_a_killed_daemon_gives_up_0_fast_and_the_exporter_reconnects(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(start=False, tcp=False, token=False)
    exporter: ExporterProcess | None = None
    try:
        daemon.start()
        _create(daemon, "a", "b")
        # The driver would retry a dead daemon for 30 s: the scrape deadline must win.
        exporter = ExporterProcess("--uri", f"{daemon.unix_uri}?timeout=30",
                                   "--scrape-timeout", "1")
        with httpx.Client(base_url=exporter.url, timeout=10) as client:
            up = parse_samples(client.get("/metrics").text)
            assert up[("xvirt_up", frozenset())] == 1
            names = {dict(k[1])["name"] for k in up if k[0] == "xvirt_domain_info"}
            assert names == {"Domain-0", "a", "b"}
            daemon.kill()
            for _ in range(3):
                start = time.monotonic()
                down = parse_samples(client.get("/metrics").text)
                elapsed = time.monotonic() - start
                assert down[("xvirt_up", frozenset())] == 0
                assert {k[0] for k in down if k[0].startswith("xvirt_")} == {
                    "xvirt_up", "xvirt_scrape_duration_seconds", "xvirt_exporter_build_info",
                    "xvirt_exporter_requests_total", "xvirt_exporter_requests_in_flight"}
                assert elapsed < 2.5, elapsed  # the 1 s deadline, not the driver's 30 s
            daemon.start()
            deadline = time.monotonic() + 20
            while parse_samples(client.get("/metrics").text)[("xvirt_up", frozenset())] != 1:
                assert time.monotonic() < deadline, exporter.text()
            back = parse_samples(client.get("/metrics").text)
            assert {dict(k[1])["name"] for k in back if k[0] == "xvirt_domain_info"} == names
        assert exporter.stop() == 0
        log = exporter.text()
        assert "Traceback" not in log
        assert "cannot read the host, serving xvirt_up 0" in log
        assert log.count("the host answers, serving its metrics") == 2
    finally:
        if exporter is not None:
            exporter.cleanup()


def test_a_host_that_is_not_there_at_start_still_gets_an_exporter(tmp_path: Path) -> None:
    exporter = ExporterProcess("--uri", f"xend+unix://{tmp_path}/absent.sock?timeout=0.2",
                               "--scrape-timeout", "2")
    try:
        with httpx.Client(base_url=exporter.url, timeout=10) as client:
            start = time.monotonic()
            down = parse_samples(client.get("/metrics").text)
            about_host = {k: v for k, v in down.items()
                          if k[0].startswith("xvirt_") and not k[0].startswith("xvirt_exporter")}
            assert about_host == {("xvirt_up", frozenset()): 0,
                                  ("xvirt_scrape_duration_seconds", frozenset()):
                                      down[("xvirt_scrape_duration_seconds", frozenset())]}
            assert time.monotonic() - start < 2.5
            assert client.get("/").status_code == 200
        assert exporter.stop() == 0
        assert "Traceback" not in exporter.text()
    finally:
        exporter.cleanup()
