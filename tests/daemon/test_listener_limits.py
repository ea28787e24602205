"""Each listener has its own connection limit, idle timeout and workers: no number of
TCP clients, idle or busy, affects the unix socket (the administrator's 0600 path).

The attack (issue 16, item 4): both listeners shared one waitress connection limit,
so 110 idle TCP connections (the limit was 100) made 4 of 5 requests on the unix
socket fail. Here a real daemon with a limit of 8 gets three times that many idle
TCP connections, and TCP clients that keep every TCP worker busy; the unix socket
must answer every request at once, and TCP must really have been full.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from xvirt.testing.daemon import DaemonProcess

LIMIT = 8
FLOOD = 3 * LIMIT
PROMPT_S = 2.0  # an answer on the unix socket (over an idle daemon: milliseconds)


def _unix(daemon: DaemonProcess, timeout: float = PROMPT_S) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                        base_url="http://localhost", timeout=timeout)


def _tcp(daemon: DaemonProcess, timeout: float) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=timeout)


@contextlib.contextmanager
def _idle_connections(daemon: DaemonProcess, count: int) -> Iterator[list[socket.socket]]:
    assert daemon.port is not None
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", daemon.port)))
        yield socks
    finally:
        for s in socks:
            s.close()


def test_idle_tcp_connections_past_the_limit_leave_the_unix_socket_alone(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(tcp=True, token=False, extra=(
        "--connection-limit", str(LIMIT), "--idle-timeout", "60"))
    with _idle_connections(daemon, FLOOD):
        # TCP is full: a new client is not served (its connection waits in the backlog)
        with _tcp(daemon, timeout=1.0) as tcp, pytest.raises(httpx.ReadTimeout):
            tcp.get("/xend/node/")
        # ... and every request on the unix socket, each on a new connection, is
        for _ in range(5):
            t0 = time.monotonic()
            with _unix(daemon) as unix:
                assert unix.get("/xend/node/").status_code == 200
            assert time.monotonic() - t0 < PROMPT_S
        # the unix socket's own limit is its own: LIMIT connections at once are served
        clients = [_unix(daemon) for _ in range(LIMIT)]
        try:
            for c in clients:
                assert c.get("/xvirt/host/domains").status_code == 200
        finally:
            for c in clients:
                c.close()
    # the flood gone, TCP is served again
    with _tcp(daemon, timeout=10.0) as tcp:
        assert tcp.get("/xend/node/").status_code == 200


def test_busy_tcp_clients_leave_the_unix_socket_its_workers(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """Every TCP worker held by a slow control request (``--control-latency-ms``):
    a unix request needs a worker of its own listener, and gets one at once."""
    latency_s = 1.5
    slow = 4  # two asleep in the TCP workers, two queued behind them
    daemon = make_daemon(tcp=True, token=False, extra=(
        "--workers", "2", "--control-latency-ms", str(int(latency_s * 1000))))
    started = threading.Barrier(slow + 1)
    errors: list[BaseException] = []

    def slow_client() -> None:
        try:
            with _tcp(daemon, timeout=30.0) as tcp:
                started.wait(10)
                tcp.get("/xend/node/")  # sleeps latency_s in a TCP worker
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(slow)]
    for t in threads:
        t.start()
    started.wait(10)
    time.sleep(0.3)  # the requests are in, both TCP workers asleep, two queued
    t0 = time.monotonic()
    with _unix(daemon) as unix:
        assert unix.get("/xvirt/host/domains").status_code == 200  # no latency on this route
    waited = time.monotonic() - t0
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert waited < latency_s / 2, waited  # a shared pool made it wait for a TCP worker
