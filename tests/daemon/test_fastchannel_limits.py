"""Fast-channel exhaustion (issue 16, item 4): idle clients are closed and give their slot
back, a frame trickled a byte at a time does not hold one, and a client the daemon turns
away (every slot taken: ERROR BUSY) reads over HTTP, counted, instead of failing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import xvirt
import xvirt.drivers.xend as xend
from xvirt.daemon.fastchannel_server import IDLE_TIMEOUT_S, FastChannelServer
from xvirt.drivers.xend import XendDriver
from xvirt.model import DomainState
from xvirt.planes import DataRow, IdAnswer, TableSnapshot
from xvirt.testing.daemon import DaemonProcess
from xvirt.wire.fastchannel import ErrorCode, Opcode
from xvirt.wire.fastchannel_client import FastChannelClient, FastChannelRefused

URI = "xend+unix:///limits"
BOOT = "0b0e1d00-0000-4000-8000-000000000001"


class _Source:
    """Two domains, always the same answers."""

    table_path = "/nowhere/table"
    instance = "limits"

    def _row(self, domid: int) -> DataRow:
        return DataRow(domid, str(uuidlib.UUID(int=domid + 1)), DomainState.RUNNING, 1, 1, 1, 0)

    def data_snapshot(self) -> TableSnapshot:
        return TableSnapshot(BOOT, 1, (self._row(0), self._row(1)))

    def data_info(self, domid: int) -> IdAnswer:
        return IdAnswer(BOOT, 1, self._row(domid) if domid < 2 else None)


def _until(done: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {within} s"
        time.sleep(0.01)


def _closed_by_peer(sock: socket.socket) -> bool:
    """The peer hung up: end of file (any ERROR frame before it is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "fast.sock")


def test_the_default_idle_timeout_is_two_minutes() -> None:
    assert IDLE_TIMEOUT_S == 120.0
    assert xend.KEEPALIVE_S < IDLE_TIMEOUT_S / 2  # a reading client is never idle


def test_idle_clients_are_closed_and_give_their_slots_back(sock_path: str) -> None:
    """Before: idle clients were kept for ever, so 64 of them refused everyone else."""
    with FastChannelServer(sock_path, _Source(), max_clients=2, idle_timeout=0.2) as srv:
        idle = [FastChannelClient(srv.path, uri=URI) for _ in range(2)]
        with pytest.raises(FastChannelRefused, match="too many clients") as err:
            FastChannelClient(srv.path, uri=URI)
        assert err.value.uri == URI and srv.refused == 1
        _until(lambda: srv.client_count == 0, "idle client closed")
        assert srv.reaped == 2 and not any(c.alive() for c in idle)
        with FastChannelClient(srv.path, uri=URI) as fresh:
            assert fresh.info(1).row is not None
        for c in idle:
            c.close()


def test_a_client_that_keeps_alive_is_not_closed(sock_path: str) -> None:
    with FastChannelServer(sock_path, _Source(), idle_timeout=0.3) as srv, \
            FastChannelClient(srv.path, uri=URI) as c:
        deadline = time.monotonic() + 0.9  # three idle timeouts
        while time.monotonic() < deadline:
            c.keepalive(0.1)  # a PING only when 0.1 s passed since the last exchange
            time.sleep(0.02)
        assert c.alive() and srv.reaped == 0
        assert c.info(0).row is not None


def test_a_frame_trickled_a_byte_at_a_time_does_not_hold_a_slot(sock_path: str) -> None:
    """Before: the I/O timeout was per recv, so a byte every few seconds kept a slot."""
    with FastChannelServer(sock_path, _Source(), io_timeout=0.3) as srv, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(srv.path)
        frame = struct.pack(">IB", 1 + 2, Opcode.INFO) + b"\x00"  # one byte short
        started = time.monotonic()
        for byte in frame:
            s.sendall(bytes([byte]))
            time.sleep(0.05)  # each byte well within the I/O timeout
        s.settimeout(2.0)
        reply = s.recv(4096)
        assert reply[4] == Opcode.ERROR and reply[5] == ErrorCode.BAD_REQUEST
        assert b"not finished" in reply
        assert time.monotonic() - started < 1.0
        _until(lambda: srv.client_count == 0, "the trickling client dropped")


# -- through a real daemon -----------------------------------------------------------------------

@pytest.fixture
def fast_daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = make_daemon(tcp=False, extra=("--fast-idle-timeout", "0.5"))
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost") as admin:
        for name in ("g1", "g2"):
            admin.post("/xvirt/host", data={"op": "create", "name": name, "memory_kib": "131072",
                                            "vcpus": "1"}).raise_for_status()
    return d


@pytest.fixture
def hogs(fast_daemon: DaemonProcess) -> Iterator[list[socket.socket]]:
    """Every one of the daemon's 64 fast-channel slots, held by a silent client."""
    held = []
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(fast_daemon.state_dir / "fast.sock"))
            held.append(s)
        yield held
    finally:
        for s in held:
            s.close()


def test_a_client_refused_by_a_full_fast_channel_reads_over_http_counted(
        fast_daemon: DaemonProcess, hogs: list[socket.socket],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the 65th client got "too many clients", retried for 10 s, then failed."""
    monkeypatch.setattr(xend, "FAST_RETRY_S", 0.2)
    time.sleep(0.05)  # let the daemon accept every hog
    started = time.monotonic()
    with xvirt.open(fast_daemon.unix_uri + "?timeout=3", readonly=True) as conn:
        driver = conn._driver
        assert isinstance(driver, XendDriver)
        ids = conn.list_domain_ids()
        assert len(ids) == 3
        sample = conn.sample()
        assert {s.identity.name for s in sample} == {"Domain-0", "g1", "g2"}
        assert conn.lookup_by_name("g1").info().state is xvirt.DomainState.RUNNING
        assert time.monotonic() - started < 2.0
        assert driver.counters.data_fallbacks >= 3
        assert driver.fallback_reason is not None and "too many clients" in \
            driver.fallback_reason
        assert driver._reader is None and driver._fast is None  # HTTP it was
        # The idle hogs are closed by the daemon; the driver takes a slot again.
        _until(lambda: all(_closed_by_peer(s) for s in hogs), "idle hogs closed", 5.0)
        time.sleep(0.2)  # FAST_RETRY_S
        conn.sample()
        assert driver._reader is not None  # the table again
        before = driver.counters.data_fallbacks
        for domid in ids:
            conn.lookup_by_id(domid).info()
        assert driver.counters.data_fallbacks == before


def test_a_table_reader_is_kept_alive_and_an_idle_one_reconnects_unseen(
        fast_daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xend, "KEEPALIVE_S", 0.1)
    with xvirt.open(fast_daemon.unix_uri, readonly=True) as conn:
        driver = conn._driver
        assert isinstance(driver, XendDriver)
        dom = conn.lookup_by_name("g1")
        dom.info()
        fast = driver._fast
        deadline = time.monotonic() + 1.2  # more than twice the daemon's idle timeout
        while time.monotonic() < deadline:
            dom.info()  # from the table; a PING every 0.1 s on the socket
            time.sleep(0.02)
        assert driver._fast is fast and fast is not None and fast.alive()
        time.sleep(0.8)  # idle for longer than the daemon's idle timeout: closed
        assert not fast.alive()
        started = time.monotonic()
        assert dom.info().state is xvirt.DomainState.RUNNING  # no error, no pause
        assert time.monotonic() - started < 0.5
        assert driver._fast is not fast and driver._reader is not None
        assert driver.counters.data_fallbacks == 0


_READ_AS_CHILD = """
import json, sys
import xvirt
with xvirt.open(sys.argv[1], readonly=True) as conn:
    names = sorted(s.identity.name for s in conn.sample())
    driver = conn._driver
    print(json.dumps([names, driver.counters.data_fallbacks, driver.fallback_reason]))
"""


def test_a_fast_socket_this_user_may_not_open_is_read_over_http(
        fast_daemon: DaemonProcess) -> None:
    """Before: "Permission denied" on the fast channel was retried for the URI's timeout."""
    fast_sock = fast_daemon.state_dir / "fast.sock"
    if os.geteuid() != 0:
        fast_sock.chmod(0)
        with xvirt.open(fast_daemon.unix_uri, readonly=True) as conn:
            names = sorted(s.identity.name for s in conn.sample())
            driver = conn._driver
            assert isinstance(driver, XendDriver)
            result = [names, driver.counters.data_fallbacks, driver.fallback_reason]
    else:  # root ignores the mode: the fast socket is made another user's, and the child
        # that reads gives up the capability that lets root ignore that
        if shutil.which("setpriv") is None:
            pytest.skip("as root, a permission-denied socket needs setpriv to drop "
                        "CAP_DAC_OVERRIDE, and there is none here")
        os.chown(fast_sock, 65534, 65534)
        done = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--",
             sys.executable, "-c", _READ_AS_CHILD, fast_daemon.unix_uri],
            capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0 and "setpriv" in done.stderr:
            pytest.skip(f"cannot drop capabilities here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    names, fallbacks, reason = result
    assert names == ["Domain-0", "g1", "g2"]
    assert fallbacks >= 1 and "Permission denied" in reason and str(fast_sock) in reason
