"""The exporter's limits (issue 16, item 6): what a client may make it read, and what a
wrong password may make it compute; and ``HEAD /metrics``.

The attacks: one request with a 100 MiB header was read whole (resident memory 34 ->
216 MB); 16 clients sending a wrong password slowed a real scrape from 0.07 s to
1.4-2.5 s, since each paid bcrypt; ``HEAD /metrics`` was a 405. What a wrong password
costs is counted here exactly (bcrypt checks); what it does to a scrape's time is
measured by ``benchmarks/exporter_attack.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry

import xvirt
from xvirt.testing.prometheus import parse_samples
from xvirt.tools import webconfig
from xvirt.tools.exporter import (
    AUTH_FAILURE_DELAY_S,
    AUTH_HELD_MAX,
    MAX_REQUEST_BODY_BYTES,
    MAX_REQUEST_HEADER_BYTES,
    Exporter,
    exporter_app,
)
from xvirt.tools.webconfig import BasicAuth, WebConfig

CLIENTS = 16


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


GOOD = _basic("prometheus", "right password")


@pytest.fixture
def host(make_sim_host: Callable[..., xvirt.sim.Host]) -> xvirt.sim.Host:
    h = make_sim_host()
    h.create("web1")
    return h


@pytest.fixture
def exporter(host: xvirt.sim.Host) -> Iterator[Exporter]:
    """An exporter with basic auth; bcrypt at cost 10, as ``htpasswd -nBC 10`` makes."""
    users = {"prometheus": bcrypt.hashpw(b"right password", bcrypt.gensalt(rounds=10))}
    with Exporter(host.uri, scrape_timeout_s=5, web_config=WebConfig(users=users)) as e:
        yield e


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def _exporter_process(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                    str]]:
    """``xvirt exporter`` as a child process; yields it and its base URL."""
    log_path = tmp_path / "exporter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xvirt", "exporter", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving (http://\S+/)metrics",
                                      log_path.read_text(errors="replace"))):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_huge_request_header_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    total = 64 * 1024 * 1024
    with _exporter_process(tmp_path, "--uri", "sim:///huge-header") as (proc, url):
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/metrics").status_code == 200  # warm: a scrape's memory
        before = _rss_mib(proc.pid)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        sent, answer = 0, b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            chunk = b"a" * 65536
            with contextlib.suppress(OSError):  # the exporter hung up: the point
                while sent < total:
                    s.sendall(chunk)
                    sent += len(chunk)
            with contextlib.suppress(OSError):  # a reset may beat the answer to us
                answer = s.recv(4096)
        growth = _rss_mib(proc.pid) - before
        # it stopped reading at its limit: what got through is the kernel's buffers
        assert sent < total // 4, sent
        assert answer == b"" or answer.startswith(b"HTTP/1.1 413 "), answer
        assert growth < 8.0, growth  # was the whole header: +182 MB for 100 MiB
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/metrics").status_code == 200  # and it serves on


def test_header_and_body_limits(exporter: Exporter) -> None:
    with httpx.Client(base_url=exporter.url, timeout=10) as client:
        small = {"X-Pad": "a" * (MAX_REQUEST_HEADER_BYTES // 2), **GOOD}
        assert client.get("/metrics", headers=small).status_code == 200
        big = {"X-Pad": "a" * MAX_REQUEST_HEADER_BYTES, **GOOD}
        assert client.get("/metrics", headers=big).status_code == 413
    with httpx.Client(base_url=exporter.url, timeout=10) as client:
        body = b"x" * (MAX_REQUEST_BODY_BYTES + 1)
        assert client.post("/metrics", content=body, headers=GOOD).status_code == 413
    host, port = exporter.address
    with socket.create_connection((host, port), timeout=10) as s:  # a body never sent
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413 ")


def test_head_metrics_is_a_get_without_a_body(exporter: Exporter) -> None:
    with httpx.Client(base_url=exporter.url, timeout=10,
                      headers={"Accept-Encoding": "identity"}) as client:
        head = client.head("/metrics", headers=GOOD)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("text/plain; version=0.0.4")
        get = client.get("/metrics", headers=GOOD)  # on the same kept-alive connection
        assert get.status_code == 200
        assert parse_samples(get.text)[("xvirt_up", frozenset())] == 1
        # the length HEAD announced is a GET's (the scrapes differ only in figures)
        assert abs(int(head.headers["content-length"]) - len(get.content)) < 64
        denied = client.head("/metrics", headers=_basic("prometheus", "wrong"))
        assert denied.status_code == 401 and denied.content == b""


def _hammer(url: str, headers: Callable[[int], dict[str, str]], rounds: int) -> list[int]:
    """CLIENTS clients at once, each sending ``rounds`` requests; every status."""
    statuses: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            go.wait(10)
            for r in range(rounds):
                answer = c.get("/metrics", headers=headers(n * rounds + r))
                if answer.status_code == 429:
                    assert answer.headers["Retry-After"] == "1"
                with lock:
                    statuses.append(answer.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_a_repeated_wrong_password_costs_bcrypt_once(exporter: Exporter) -> None:
    auth = exporter.auth
    assert auth is not None
    rounds = 4
    assert CLIENTS <= AUTH_HELD_MAX  # so every refusal below is held back
    start = time.monotonic()
    statuses = _hammer(exporter.url, lambda _: _basic("prometheus", "guess"), rounds=rounds)
    # every refusal was held back (CLIENTS < AUTH_HELD_MAX): a looping client waits
    assert time.monotonic() - start >= rounds * AUTH_FAILURE_DELAY_S
    assert len(statuses) == CLIENTS * rounds and set(statuses) <= {401, 429}
    assert auth.verifications == 1
    assert auth.remembered_failures + auth.busy == CLIENTS * rounds - 1
    assert statuses.count(429) == auth.busy  # only while that one check ran
    with httpx.Client(base_url=exporter.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/metrics", headers=GOOD).status_code == 200
    assert auth.verifications == 2  # the right password, once


def test_new_wrong_passwords_never_run_two_bcrypt_checks_at_once(
        exporter: Exporter, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = exporter.auth
    assert auth is not None
    with httpx.Client(base_url=exporter.url, timeout=10) as client:
        assert client.get("/metrics", headers=GOOD).status_code == 200  # remembered
    running, most = 0, 0
    lock = threading.Lock()
    real = bcrypt.checkpw

    def watched(password: bytes, hashed: bytes) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(password, hashed)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", watched)
    scrapes: list[int] = []
    stop = threading.Event()

    def scraper() -> None:  # Prometheus, remembered credentials, in the middle of it
        with httpx.Client(base_url=exporter.url, timeout=30) as c:
            while not stop.is_set():
                scrapes.append(c.get("/metrics", headers=GOOD).status_code)

    before = auth.verifications
    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        statuses = _hammer(exporter.url, lambda n: _basic("prometheus", f"guess {n}"), rounds=3)
    finally:
        stop.set()
        thread.join(30)
    assert set(statuses) <= {401, 429} and len(statuses) == CLIENTS * 3
    assert most == 1  # one bcrypt at a time, whatever the number of clients
    assert auth.verifications - before == statuses.count(401) >= 1
    assert statuses.count(429) == auth.busy > 0
    assert scrapes and set(scrapes) == {200}  # never queued behind them


def test_refused_answers_are_held_back_but_only_so_many_at_once() -> None:
    """Held answers cost sleeping threads: past ``held_max`` of them, refusals are
    answered at once, so the server's threads are never all asleep."""
    delay, held_max, callers = 0.5, 2, 5
    app = exporter_app(CollectorRegistry(), BasicAuth({"u": bcrypt.hashpw(
        b"pw", bcrypt.gensalt(rounds=4))}), failure_delay_s=delay, held_max=held_max)
    go = threading.Barrier(callers)
    took: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}  # no credentials
        go.wait(10)
        start = time.monotonic()
        app(environ, lambda status, headers, exc_info=None: None)
        with lock:
            took.append(time.monotonic() - start)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(took) == callers
    assert sum(t >= delay for t in took) == held_max, took
    assert sum(t < delay / 2 for t in took) == callers - held_max, took
