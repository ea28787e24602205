"""The daemon's connection limit and timeouts hold under a flood of idle and slow clients.

A real daemon with small limits (2 workers, 6 open connections counting its two
listeners, a 1 s idle timeout) is flooded, over TCP and its unix socket, with
more connections than it may hold: some that never send a byte, some that send
half a request and stop, and some that send a request one byte every 0.2 s (so
waitress's own idle clock, which any byte resets, never cuts them). A normal
client arriving after all of them must still be answered within a bound, and
every hostile connection must be closed by the daemon.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from xvirt.testing.daemon import DaemonProcess

IDLE_TIMEOUT_S = 1
CONNECTION_LIMIT = 6  # the two listeners count: four client connections at once
WORKERS = 2
IDLE_EACH = 3  # per listener
HALF_SENT_EACH = 1
SLOW_EACH = 2  # per listener: four slow clients alone fill every slot
ANSWER_BOUND_S = 9.0  # four waves of hostile clients, each cut after about 1.25 s
CUT_DEADLINE_S = 11.0
SLOW_BYTE_EVERY_S = 0.2


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A daemon with the small limits above, over TCP (no token) and its unix socket."""
    return make_daemon(tcp=True, token=False, extra=(
        "--workers", str(WORKERS), "--connection-limit", str(CONNECTION_LIMIT),
        "--idle-timeout", str(IDLE_TIMEOUT_S)))


@dataclass
class Hostile:
    kind: str
    sock: socket.socket
    cut_at: float | None = None
    sent: int = 0
    errors: list[str] = field(default_factory=list)


def _connect(daemon: DaemonProcess, unix: bool) -> socket.socket:
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(daemon.socket))
    else:
        assert daemon.port is not None
        s = socket.create_connection(("127.0.0.1", daemon.port))
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the daemon has closed the connection (EOF or reset); never blocks."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(4096) == b""  # a hostile client gets no answer, only EOF
    except OSError:
        return True


def _slow_sender(h: Hostile, stop: threading.Event, start: float) -> None:
    """A request header that never ends, a byte at a time, until the daemon cuts us."""
    data = b"GET /xend/node/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    while not stop.is_set():
        if _closed_by_peer(h.sock):
            h.cut_at = time.monotonic() - start
            return
        try:
            h.sock.send(data[h.sent % len(data):][:1])
            h.sent += 1
        except OSError:
            h.cut_at = time.monotonic() - start
            return
        stop.wait(SLOW_BYTE_EVERY_S)


def test_idle_and_slow_clients_cannot_starve_a_normal_one(daemon: DaemonProcess) -> None:
    start = time.monotonic()
    stop = threading.Event()
    hostiles: list[Hostile] = []
    threads: list[threading.Thread] = []
    try:
        for unix in (False, True):
            for _ in range(IDLE_EACH):
                hostiles.append(Hostile("idle", _connect(daemon, unix)))
            for _ in range(HALF_SENT_EACH):
                s = _connect(daemon, unix)
                s.sendall(b"POST /xend/domain/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                          b"\r\nop=cre")
                hostiles.append(Hostile("half-sent", s))
            for _ in range(SLOW_EACH):
                h = Hostile("slow", _connect(daemon, unix))
                hostiles.append(h)
                t = threading.Thread(target=_slow_sender, args=(h, stop, start), daemon=True)
                threads.append(t)
                t.start()
        assert len(hostiles) > CONNECTION_LIMIT

        # A normal client, queued behind all of them, over each listener.
        answered: dict[str, float] = {}
        for name, transport in (
            ("unix", httpx.HTTPTransport(uds=str(daemon.socket))),
            ("tcp", httpx.HTTPTransport()),
        ):
            base = "http://localhost" if name == "unix" else f"http://127.0.0.1:{daemon.port}"
            t0 = time.monotonic()
            with httpx.Client(transport=transport, base_url=base,
                              timeout=ANSWER_BOUND_S + 5) as client:
                response = client.get("/xend/node/")
            assert response.status_code == 200
            assert response.headers["X-Xvirt-Boot"]
            answered[name] = time.monotonic() - t0
        assert answered["unix"] < ANSWER_BOUND_S, answered
        assert answered["tcp"] < ANSWER_BOUND_S, answered

        # Every hostile connection is cut by the daemon (polled, with a deadline).
        while True:
            now = time.monotonic() - start
            for h in hostiles:
                if h.kind != "slow" and h.cut_at is None and _closed_by_peer(h.sock):
                    h.cut_at = now
            if all(h.cut_at is not None for h in hostiles) or now > CUT_DEADLINE_S:
                break
            time.sleep(0.05)
        left = [(h.kind, h.sent) for h in hostiles if h.cut_at is None]
        assert not left, f"the daemon did not cut these connections: {left}"
        slow = [h for h in hostiles if h.kind == "slow"]
        # the slow clients were still sending when cut: waitress's idle clock never ran out
        assert all(h.sent * SLOW_BYTE_EVERY_S > IDLE_TIMEOUT_S for h in slow), [
            (h.sent, h.cut_at) for h in slow]

        # And the daemon is fine afterwards: a burst of normal requests, promptly answered.
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                          base_url="http://localhost", timeout=5) as client:
            t0 = time.monotonic()
            for _ in range(20):
                assert client.get("/xend/domain").status_code == 200
            assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for h in hostiles:
            with contextlib.suppress(OSError):
                h.sock.close()
