"""The fast channel's socket: framing, strictness, liveness, and errors that never leak."""

from __future__ import annotations

import os
import random
import socket
import stat
import struct
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from xvirt.clock import ManualClock
from xvirt.daemon.fastchannel_server import FastChannelServer
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ProtocolError,
)
from xvirt.model import DomainState
from xvirt.planes import DataRow, IdAnswer, TableSnapshot, Unanswered
from xvirt.wire.fastchannel import (
    MAX_REQUEST,
    NO_ANSWER,
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    Opcode,
)
from xvirt.wire.fastchannel_client import FastChannelClient
from xvirt.wire.table_reader import TableReader

URI = "xen+fast:///test"
BOOT = "0b0e1d00-0000-4000-8000-000000000001"


def _uuid(domid: int) -> str:
    return str(uuidlib.UUID(int=domid + 1000))


class FakeSource:
    """A host model reduced to what the server reads; ``fail`` makes it raise."""

    def __init__(self, rows: int = 3) -> None:
        self.table_path = "/run/xvirt/domains.table"
        self.instance = "daemon-7"
        self.boot_id = BOOT
        self.generation = 42
        self.rows = {
            d: DataRow(d, _uuid(d), DomainState.RUNNING, 1024 * (d + 1), 2048 * (d + 1), 1 + d % 4,
                       10**9 * d)
            for d in range(rows)
        }
        self.fail: Exception | None = None
        self.stalled: set[int] = set()  # wedged domids: listed, their figures never come
        self.calls = 0

    def _no_answer(self, domid: int) -> OperationFailedError:
        return OperationFailedError(f"domain {domid} (guest{domid}) did not answer",
                                    domid=domid, uuid=_uuid(domid), op="info")

    def data_snapshot(self) -> TableSnapshot:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return TableSnapshot(
            self.boot_id, self.generation,
            tuple(r for r in self.rows.values() if r.id not in self.stalled),
            unanswered=tuple(Unanswered(d, _uuid(d), self._no_answer(d))
                             for d in sorted(self.stalled)))

    def data_info(self, domid: int) -> IdAnswer:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if domid in self.stalled:
            raise self._no_answer(domid)
        return IdAnswer(self.boot_id, self.generation, self.rows.get(domid))


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "fast.sock")


@pytest.fixture
def server(sock_path: str, source: FakeSource) -> Iterator[FastChannelServer]:
    with FastChannelServer(sock_path, source, max_clients=8, io_timeout=2.0) as srv:
        yield srv


@pytest.fixture
def client(server: FastChannelServer) -> Iterator[FastChannelClient]:
    with FastChannelClient(server.path, uri=URI, timeout=2.0) as c:
        yield c


def _until(condition: Callable[[], bool], what: str, limit: float = 3.0) -> None:
    """Poll ``condition`` for at most ``limit`` seconds, 5 ms apart."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- a raw peer, for what well-behaved clients and servers never send --------------------------


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3.0)
    s.connect(path)
    return s


def _frame(op: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), op) + payload


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server hangs up."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def _error_of(data: bytes) -> tuple[int, str]:
    length, op = struct.unpack_from(">IB", data)
    assert op == Opcode.ERROR and len(data) == 4 + length, data
    return data[5], data[6:].decode()


# -- the conversation ---------------------------------------------------------------------------


def test_hello_names_the_table_the_boot_and_the_instance(client: FastChannelClient) -> None:
    assert client.hello == Hello(PROTOCOL_VERSION, "/run/xvirt/domains.table", BOOT, 42, "daemon-7")


def test_snapshot_and_info_carry_boot_and_generation(
    client: FastChannelClient, source: FakeSource
) -> None:
    snap = client.snapshot()
    assert snap == TableSnapshot(BOOT, 42, tuple(source.rows.values()))
    assert client.info(1) == IdAnswer(BOOT, 42, source.rows[1])
    assert client.info(500) == IdAnswer(BOOT, 42, None)
    source.generation = 43
    assert client.info(500).generation == 43


def test_every_state_and_large_numbers_survive_the_wire(
    client: FastChannelClient, source: FakeSource
) -> None:
    source.rows = {
        i: DataRow(i, _uuid(i), state, 2**50 + i, 2**51, 2**31, 2**63 + i)
        for i, state in enumerate(DomainState)
    }
    source.rows[32_751] = DataRow(32_751, _uuid(7), DomainState.DYING, 0, 0, 0, 0)
    assert client.snapshot().rows == tuple(source.rows.values())
    assert client.info(32_751).row == source.rows[32_751]


def test_a_full_table_fits_in_one_reply(client: FastChannelClient, source: FakeSource) -> None:
    source.rows = {d: DataRow(d, _uuid(d), DomainState.BLOCKED, 1, 1, 1, d)
                   for d in range(32_752)}
    assert len(client.snapshot().rows) == 32_752


def test_ping(client: FastChannelClient, source: FakeSource) -> None:
    client.ping()
    assert source.calls == 1  # HELLO's boot id; ping itself asks the host nothing


def test_info_refuses_impossible_domids_without_asking(client: FastChannelClient) -> None:
    for bad in (-1, 0x7FF0, True, "1"):
        with pytest.raises(InvalidArgumentError):
            client.info(bad)  # type: ignore[arg-type]
    client.ping()  # the connection is untouched


def test_a_failing_host_is_reported_and_the_connection_stays(
    client: FastChannelClient, source: FakeSource
) -> None:
    source.fail = NoDomainError("host model is shutting down")
    with pytest.raises(HostUnreachableError, match="shutting down") as info:
        client.info(1)
    assert info.value.uri == URI
    with pytest.raises(HostUnreachableError, match="shutting down"):
        client.snapshot()
    source.fail = None
    assert client.info(1).row is not None
    assert client.alive()


def test_malformed_answers_from_the_host_are_refused_not_sent(
    client: FastChannelClient, source: FakeSource
) -> None:
    source.boot_id = "not-a-uuid"
    with pytest.raises(HostUnreachableError, match="could not answer"):
        client.snapshot()
    source.boot_id = BOOT
    source.rows[1] = DataRow(1, _uuid(1), DomainState.RUNNING, -1, 0, 0, 0)
    with pytest.raises(HostUnreachableError, match="could not answer"):
        client.info(1)
    assert client.info(0).row is not None


def test_a_wedged_domain_travels_as_no_answer_and_the_connection_stays(
    client: FastChannelClient, source: FakeSource
) -> None:
    source.stalled = {1}
    snap = client.snapshot()
    assert [r.id for r in snap.rows] == [0, 2]
    ((domid, uuid, error, _name),) = snap.unanswered  # not dropped: that reads as gone
    assert (domid, uuid) == (1, _uuid(1))
    assert isinstance(error, OperationFailedError)
    assert (error.domid, error.uuid, error.op, error.uri) == (1, _uuid(1), "info", URI)
    with pytest.raises(OperationFailedError, match=r"domain 1 \(guest1\) did not answer") as info:
        client.info(1)  # the host answered; that domain did not: not HostUnreachableError
    assert (info.value.domid, info.value.uuid, info.value.op, info.value.uri) == (
        1, _uuid(1), "info", URI)
    assert client.alive()
    assert client.info(2).row == source.rows[2]
    source.stalled = set()
    assert client.info(1).row == source.rows[1]
    assert client.snapshot().unanswered == ()


@contextmanager
def _table_backed(tmp_path: Path, sock_path: str, wedged: int | None = None
                  ) -> Iterator[tuple[TableReader, FastChannelClient, str]]:
    """A server whose source is a table holding domains 0, 3 and 11 (``wedged``
    flagged as not answering), a reader of that table, and a client of the server."""
    clock = ManualClock(500.0)
    with TableWriter(str(tmp_path / "t")) as writer, \
            TableReader(writer.path, wall=clock.now) as reader:
        writer.publish(BOOT, 9, [
            LiveRow(d, _uuid(d), DomainState.RUNNING, 64, 128, 2, 5, 400.0, 0.5, d == wedged)
            for d in (0, 3, 11)
        ])

        class TableBacked:
            table_path = writer.path
            instance = "i"
            data_snapshot = reader.snapshot
            data_info = reader.info

        with FastChannelServer(sock_path, TableBacked()), \
                FastChannelClient(sock_path, uri=URI) as c:
            yield reader, c, writer.path


def test_the_socket_and_the_table_agree_on_a_wedged_domain(
    tmp_path: Path, sock_path: str
) -> None:
    with _table_backed(tmp_path, sock_path, wedged=3) as (reader, c, _):
        mine, theirs = c.snapshot(), reader.snapshot()
        assert mine.rows == theirs.rows
        assert [(u.id, u.uuid) for u in mine.unanswered] == [(3, _uuid(3))]
        assert [(u.id, u.uuid) for u in theirs.unanswered] == [(3, _uuid(3))]
        with pytest.raises(OperationFailedError, match="domain 3 did not answer") as info:
            c.info(3)
        assert (info.value.domid, info.value.uuid) == (3, _uuid(3))
        assert c.info(11) == reader.info(11)


def _one_answer_daemon(path: str, reply: bytes) -> threading.Thread:
    """Answers HELLO properly, then ``reply`` to the next request, and hangs up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    hello = (struct.pack(">H16sQ", PROTOCOL_VERSION, bytes(16), 0) + struct.pack(">H", 0)
             + struct.pack(">H", 0))

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(_frame(0x80 | Opcode.HELLO, hello))
                conn.recv(100)
                conn.sendall(reply)
                conn.recv(100)  # until the client hangs up

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("ask", "reply", "complaint"),
    [
        ("info", _frame(Opcode.ERROR, struct.pack(">BH16s", ErrorCode.NO_ANSWER, 5, bytes(16))),
         "domain 5 did not answer"),
        ("info", _frame(Opcode.ERROR, struct.pack(">BH", ErrorCode.NO_ANSWER, 4)),
         "NO_ANSWER error of"),
        ("snapshot", _frame(0x80 | Opcode.SNAPSHOT, struct.pack(">16sQI", bytes(16), 0, 1)
                            + struct.pack(">HB16sQQIQ", 4, NO_ANSWER, bytes(16), 1, 0, 0, 0)),
         "yet has figures"),
        ("ping", _frame(Opcode.ERROR, struct.pack(">BH16s", ErrorCode.NO_ANSWER, 4, bytes(16))),
         "refused our request"),
    ],
    ids=["other-domain", "short", "figures", "not-to-info"],
)
def test_a_malformed_no_answer_is_a_protocol_error(
    sock_path: str, ask: str, reply: bytes, complaint: str
) -> None:
    thread = _one_answer_daemon(sock_path, reply)
    try:
        with FastChannelClient(sock_path, uri=URI, timeout=2.0) as c:
            call = {"info": lambda: c.info(4), "snapshot": c.snapshot, "ping": c.ping}[ask]
            with pytest.raises(ProtocolError, match=complaint):
                call()
    finally:
        thread.join()


def test_the_socket_and_the_table_agree(tmp_path: Path, sock_path: str) -> None:
    """A server whose source is the table answers what the table answers."""
    with _table_backed(tmp_path, sock_path) as (reader, c, table_path):
        assert c.hello.table_path == table_path
        assert c.snapshot() == reader.snapshot()
        assert c.info(3) == reader.info(3)
        assert c.info(4) == reader.info(4)
        assert c.info(3).row.cpu_time_ns == 5 + 50 * 10**9  # type: ignore[union-attr]


# -- strictness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "complaint"),
    [
        (struct.pack(">IB", MAX_REQUEST + 1, Opcode.PING), "frame length"),
        (struct.pack(">IB", 0, Opcode.PING), "frame length"),
        (_frame(0x42), "unknown opcode"),
        (_frame(Opcode.ERROR), "unknown opcode"),
        (_frame(Opcode.INFO, b"\x00"), "INFO takes"),
        (_frame(Opcode.INFO, b"\x7f\xf0"), "out of range"),
        (_frame(Opcode.SNAPSHOT, b"x"), "SNAPSHOT takes"),
        (_frame(Opcode.PING, b"x"), "PING takes"),
        (_frame(Opcode.HELLO, b""), "HELLO takes"),
        (_frame(Opcode.HELLO, b"\x00\x09"), "protocol version 9"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "frame length"),
    ],
    ids=["oversized", "empty", "unknown", "error-op", "short-info", "domid-range",
         "snapshot-payload", "ping-payload", "hello-empty", "hello-version", "http"],
)
def test_a_bad_request_gets_an_error_and_a_hangup(
    server: FastChannelServer, request_bytes: bytes, complaint: str
) -> None:
    with _raw(server.path) as s:
        s.sendall(request_bytes)
        code, text = _error_of(_read_all(s))
    assert code == ErrorCode.BAD_REQUEST
    assert complaint in text
    with FastChannelClient(server.path, uri=URI) as c:  # and the server serves on
        c.ping()


def test_a_truncated_frame_gets_an_error(server: FastChannelServer) -> None:
    with _raw(server.path) as s:
        s.sendall(_frame(Opcode.INFO, b"\x00\x01")[:-1])
        s.shutdown(socket.SHUT_WR)  # "that is all": the server sees the cut
        code, text = _error_of(_read_all(s))
    assert code == ErrorCode.BAD_REQUEST and "into a frame" in text


def test_requests_may_arrive_split_or_together(server: FastChannelServer) -> None:
    with _raw(server.path) as s:
        two = _frame(Opcode.PING) + _frame(Opcode.PING)
        s.sendall(two[:3])
        s.sendall(two[3:])
        expected = _frame(0x80 | Opcode.PING) * 2
        got = b""
        while len(got) < len(expected):
            got += s.recv(100)
        assert got == expected


def test_a_stalled_client_blocks_nobody_and_is_dropped(
    sock_path: str, source: FakeSource
) -> None:
    with FastChannelServer(sock_path, source, io_timeout=0.2) as srv, _raw(srv.path) as stall:
        stall.sendall(_frame(Opcode.INFO, b"\x00\x01")[:3])  # and then nothing
        with FastChannelClient(srv.path, uri=URI) as c:
            for _ in range(20):
                assert c.info(1).row is not None
        code, text = _error_of(_read_all(stall))
        assert code == ErrorCode.BAD_REQUEST and "not finished" in text


def test_an_idle_client_is_not_dropped(sock_path: str, source: FakeSource) -> None:
    with FastChannelServer(sock_path, source, io_timeout=0.05) as srv, \
            FastChannelClient(srv.path, uri=URI) as c:
        deadline = time.monotonic() + 0.15  # three server timeouts, waiting for a request
        _until(lambda: time.monotonic() > deadline, "idle time")
        c.ping()
        assert c.alive()


def test_a_server_survives_a_storm_of_bad_clients(server: FastChannelServer) -> None:
    rng = random.Random(7)
    garbage = [rng.randbytes(n) for n in (1, 4, 5, 64, 4096)]
    for blob in garbage * 4:
        with _raw(server.path) as s:
            try:
                s.sendall(blob)
                s.shutdown(socket.SHUT_WR)
                _read_all(s)
            except OSError:
                pass  # the server may hang up before reading it all
    with FastChannelClient(server.path, uri=URI) as c:
        assert c.info(0).row is not None
    _until(lambda: server.client_count == 0, "the bad clients' threads to end")


# -- the socket file ----------------------------------------------------------------------------


def test_the_socket_is_private_and_removed_on_close(sock_path: str, source: FakeSource) -> None:
    srv = FastChannelServer(sock_path, source)
    mode = os.stat(sock_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    srv.close()
    srv.close()
    assert not os.path.exists(sock_path)


def test_a_stale_socket_is_replaced(sock_path: str, source: FakeSource) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()  # the file stays, nobody listens: a daemon killed with -9
    with FastChannelServer(sock_path, source) as srv, FastChannelClient(srv.path, uri=URI) as c:
        c.ping()


def test_a_live_daemon_or_a_plain_file_is_left_alone(
    server: FastChannelServer, source: FakeSource, tmp_path: Path
) -> None:
    with pytest.raises(OSError, match="another daemon"):
        FastChannelServer(server.path, source)
    with FastChannelClient(server.path, uri=URI) as c:
        c.ping()
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    with pytest.raises(FileExistsError):
        FastChannelServer(str(plain), source)
    assert plain.read_text() == "keep me"


# -- liveness and failures -----------------------------------------------------------------------


def test_alive_turns_false_when_the_server_closes(
    server: FastChannelServer, client: FastChannelClient
) -> None:
    assert client.alive()
    server.close()
    _until(lambda: not client.alive(), "alive() to notice")
    with pytest.raises(HostUnreachableError) as info:
        client.info(0)
    assert info.value.uri == URI


def test_alive_does_not_read_what_is_waiting(sock_path: str) -> None:
    """A hand-made daemon answers HELLO, then sends a PING reply before the PING:
    alive() must leave it there for ping() to read."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    hello = (struct.pack(">H16sQ", PROTOCOL_VERSION, uuidlib.UUID(BOOT).bytes, 1)
             + struct.pack(">H", 1) + b"t" + struct.pack(">H", 1) + b"i")
    connected, pong_sent = threading.Event(), threading.Event()

    def daemon() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(3.0)
            conn.recv(100)
            conn.sendall(_frame(0x80 | Opcode.HELLO, hello))
            assert connected.wait(3.0)
            conn.sendall(_frame(0x80 | Opcode.PING))  # now in the client's receive queue
            pong_sent.set()
            conn.recv(100)  # the PING, which needs no answer: it was sent already
            conn.recv(100)  # until the client hangs up

    thread = threading.Thread(target=daemon)
    thread.start()
    try:
        with FastChannelClient(sock_path, uri=URI, timeout=2.0) as c:
            assert c.hello.table_path == "t"
            connected.set()
            assert pong_sent.wait(3.0)
            for _ in range(100):
                assert c.alive()
            c.ping()
    finally:
        thread.join()
        listener.close()


def test_no_daemon_means_host_unreachable_with_the_uri(tmp_path: Path) -> None:
    with pytest.raises(HostUnreachableError) as info:
        FastChannelClient(str(tmp_path / "nobody.sock"), uri=URI)
    assert info.value.uri == URI
    assert isinstance(info.value.__cause__, OSError)


def test_a_closed_client_says_closed(client: FastChannelClient) -> None:
    client.close()
    client.close()
    assert not client.alive()
    with pytest.raises(ConnectionClosedError):
        client.ping()


def test_max_clients_is_enforced(sock_path: str, source: FakeSource) -> None:
    with FastChannelServer(sock_path, source, max_clients=2) as srv:
        first = FastChannelClient(srv.path, uri=URI)
        second = FastChannelClient(srv.path, uri=URI)
        with pytest.raises(HostUnreachableError) as info:
            FastChannelClient(srv.path, uri=URI)
        assert info.value.uri == URI
        assert "too many clients" in str(info.value) or "cannot send" in str(info.value)
        first.ping()
        second.ping()
        first.close()
        _until(lambda: srv.client_count < 2, "the server to see a client leave")
        with FastChannelClient(srv.path, uri=URI) as third:
            third.ping()
        second.close()


def _fake_daemon(path: str, reply: bytes) -> threading.Thread:
    """Accepts one client, reads its HELLO, sends ``reply`` and hangs up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(reply)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "complaint"),
    [
        (_frame(0x80 | Opcode.PING), "reply opcode"),
        (struct.pack(">IB", 1 << 24, 0x81), "reply length"),
        (_frame(0x80 | Opcode.HELLO, b"\x00\x01short"), "bad HELLO"),
        (_frame(0x80 | Opcode.HELLO,
                struct.pack(">H16sQ", PROTOCOL_VERSION + 1, bytes(16), 0) + bytes(4)),
         f"protocol version {PROTOCOL_VERSION + 1}"),
        (_frame(0x80 | Opcode.HELLO, b"x" * 40)[:20], "hung up"),
        (_frame(0x80 | Opcode.HELLO, struct.pack(">H16sQ", PROTOCOL_VERSION, bytes(16), 0)
                + bytes(4)) + b"!",
         "unexpected bytes"),
        (_frame(Opcode.ERROR, bytes([ErrorCode.BAD_REQUEST]) + b"you are wrong"),
         "you are wrong"),
        (_frame(Opcode.ERROR), "empty ERROR"),
    ],
    ids=["wrong-op", "oversized", "short", "version", "cut", "extra", "refused", "empty-error"],
)
def test_a_malformed_reply_is_a_protocol_error(
    sock_path: str, reply: bytes, complaint: str
) -> None:
    thread = _fake_daemon(sock_path, reply)
    try:
        with pytest.raises(ProtocolError, match=complaint) as info:
            FastChannelClient(sock_path, uri=URI, timeout=2.0)
        assert info.value.uri == URI
    finally:
        thread.join()


def test_a_daemon_that_says_nothing_times_out(sock_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)  # never accepted: connect works, nobody answers
    try:
        with pytest.raises(HostUnreachableError, match="no answer within") as info:
            FastChannelClient(sock_path, uri=URI, timeout=0.05)
        assert info.value.uri == URI
    finally:
        listener.close()


def test_a_dropped_connection_stays_dropped(
    server: FastChannelServer, client: FastChannelClient
) -> None:
    server.close()
    with pytest.raises(HostUnreachableError):
        client.ping()
    with pytest.raises(HostUnreachableError, match="dropped"):
        client.ping()
    assert not client.alive()


def test_close_wakes_a_request_waiting_in_another_thread(sock_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    hello = (struct.pack(">H16sQ", PROTOCOL_VERSION, bytes(16), 0) + struct.pack(">H", 0)
             + struct.pack(">H", 0))
    accepted: list[socket.socket] = []

    def daemon() -> None:
        conn, _ = listener.accept()
        conn.settimeout(3.0)
        accepted.append(conn)
        conn.recv(100)
        conn.sendall(_frame(0x80 | Opcode.HELLO, hello))

    thread = threading.Thread(target=daemon)
    thread.start()
    c = FastChannelClient(sock_path, uri=URI, timeout=5.0)
    thread.join()
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            c.ping()  # the daemon never answers
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    _until(lambda: bool(accepted[0].recv(100, socket.MSG_PEEK)), "the ping to be sent")
    c.close()
    t.join(timeout=3.0)
    assert not t.is_alive()
    assert isinstance(outcome[0], ConnectionClosedError)
    accepted[0].close()
    listener.close()
