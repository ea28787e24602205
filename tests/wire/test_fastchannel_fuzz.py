"""Fuzzing the fast channel's framing, both ways, in process.

Server side: arbitrary bytes from a client, cut into arbitrary chunks, optionally with
a stall, go through the server's own connection loop (``_serve``) over a scripted
socket. A reference decoder written from the framing spec says which replies must
come out: one per well-formed request, in order, then one ERROR BAD_REQUEST at the
first bad frame (and nothing after it); never an "internal error".

Client side: arbitrary daemon bytes (and mutations of real replies) are read by a
client; each call returns a value or raises ProtocolError / HostUnreachableError /
ConnectionClosedError, and after a failure that drops the connection nothing more
is read. Real replies for random tables round-trip exactly.

Short and derandomized by default; ``XVIRT_LONG_RUN=1`` runs ``XVIRT_FUZZ_EXAMPLES``
(default 1,000,000) random inputs per target (scripts/long-run-fuzz).
"""

from __future__ import annotations

import gc
import random
import select
import struct
import threading
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from tests.fuzzing import LONG, fuzz, fuzz_settings
from xvirt.daemon.fastchannel_server import FastChannelServer
from xvirt.errors import ConnectionClosedError, HostUnreachableError, ProtocolError
from xvirt.model import DomainState
from xvirt.planes import DataRow, IdAnswer, TableSnapshot
from xvirt.wire.fastchannel import (
    MAX_REQUEST,
    PROTOCOL_VERSION,
    ErrorCode,
    Opcode,
)
from xvirt.wire.fastchannel_client import FastChannelClient
from xvirt.wire.table import SLOT_COUNT

PER_INPUT_S = 2.0
BOOT = "0b0e1d00-0000-4000-8000-000000000001"
URI = "xen+fast:///fuzz"


class Source:
    """What the server answers from; ``fail`` makes the host model raise."""

    table_path = "/run/xvirt/domains.table"
    instance = "daemon-fuzz"

    def __init__(self) -> None:
        self.rows = {d: DataRow(d, str(uuidlib.UUID(int=d + 7)), DomainState.RUNNING,
                                1024, 2048, 1, 10**9 * d) for d in range(3)}
        self.fail = False

    def data_snapshot(self) -> TableSnapshot:
        if self.fail:
            raise RuntimeError("host model is gone")
        return TableSnapshot(BOOT, 42, tuple(self.rows.values()))

    def data_info(self, domid: int) -> IdAnswer:
        if self.fail:
            raise RuntimeError("host model is gone")
        return IdAnswer(BOOT, 42, self.rows.get(domid))


STALL = object()  # in a script: the peer is silent for the whole I/O timeout


class ScriptedSocket:
    """A socket whose peer sends ``script`` (chunks, STALL), then hangs up."""

    def __init__(self, script: list[bytes | object]) -> None:
        self.script = list(script)
        self.sent = bytearray()
        self.closed = False
        self.reads_after_eof = 0

    def settimeout(self, _timeout: float | None) -> None:
        pass

    def recv(self, size: int, _flags: int = 0) -> bytes:
        if not self.script:
            self.reads_after_eof += 1
            assert self.reads_after_eof < 3, "read again after the peer hung up"
            return b""
        item = self.script[0]
        if item is STALL:
            self.script.pop(0)
            raise TimeoutError("timed out")
        assert isinstance(item, bytes)
        if len(item) > size:
            self.script[0] = item[size:]
            return item[:size]
        self.script.pop(0)
        return item

    def sendall(self, data: bytes) -> None:
        assert not self.closed
        self.sent += data

    def shutdown(self, _how: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


# -- the reference: what the spec says the server answers ---------------------------------------

_REQUEST_OPS = {int(op) for op in (Opcode.HELLO, Opcode.SNAPSHOT, Opcode.INFO, Opcode.PING)}


def expected_replies(data: bytes, host_fails: bool) -> tuple[list[tuple[int, int | None]], bool]:
    """(reply opcode, error code or None) per reply, and whether the server hangs up on a
    bad request at the end (rather than at the client's end of input)."""
    out: list[tuple[int, int | None]] = []
    at = 0
    while at < len(data):
        if len(data) - at < 5:
            break  # a header cut short
        length, op = struct.unpack_from(">IB", data, at)
        if not 1 <= length <= MAX_REQUEST or op not in _REQUEST_OPS:
            break
        if len(data) - at < 4 + length:
            break
        payload = data[at + 5:at + 4 + length]
        at += 4 + length
        if op == Opcode.INFO:
            if len(payload) != 2 or struct.unpack(">H", payload)[0] >= SLOT_COUNT:
                break
        elif op in (Opcode.SNAPSHOT, Opcode.PING):
            if payload:
                break
        elif len(payload) != 2 or struct.unpack(">H", payload)[0] != PROTOCOL_VERSION:
            break
        if host_fails and op != Opcode.PING:
            out.append((Opcode.ERROR, ErrorCode.UNAVAILABLE))
        else:
            out.append((0x80 | op, None))
    else:
        return out, False
    out.append((Opcode.ERROR, ErrorCode.BAD_REQUEST))
    return out, True


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    at = 0
    while at < len(data):
        assert len(data) - at >= 5, data[at:]
        length, op = struct.unpack_from(">IB", data, at)
        assert length >= 1 and len(data) - at >= 4 + length, data[at:]
        frames.append((op, data[at + 5:at + 4 + length]))
        at += 4 + length
    return frames


def fuzz_server(path: str) -> tuple[FastChannelServer, Source]:
    """A server bound at ``path`` but never started (no thread): ``serve`` drives it."""
    source = Source()
    return FastChannelServer(path, source, io_timeout=0.01), source


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastChannelServer, Source]]:
    srv, source = fuzz_server(str(tmp_path_factory.mktemp("fast") / "fast.sock"))
    try:
        yield srv, source
    finally:
        srv.close()


def serve(srv: FastChannelServer, script: list[bytes | object]) -> ScriptedSocket:
    conn = ScriptedSocket(script)
    t0 = time.perf_counter()
    srv._serve(conn)  # type: ignore[arg-type]  # the server's own loop, in this thread
    assert time.perf_counter() - t0 < PER_INPUT_S
    assert conn.closed
    return conn


# -- inputs -----------------------------------------------------------------------------------


def _frame(op: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), op) + payload


GOOD_FRAMES = [
    _frame(Opcode.HELLO, struct.pack(">H", PROTOCOL_VERSION)), _frame(Opcode.SNAPSHOT),
    _frame(Opcode.PING), _frame(Opcode.INFO, b"\x00\x01"), _frame(Opcode.INFO, b"\x7f\xef"),
]
BAD_FRAMES = [_frame(Opcode.HELLO, b"\x00\x02"), _frame(Opcode.INFO, b"\x7f\xf0"),
              _frame(Opcode.INFO, b"\xff\xff"), _frame(Opcode.INFO, b"\x00"),
              _frame(Opcode.SNAPSHOT, b"x"), _frame(Opcode.PING, b"\x00"),
              _frame(Opcode.ERROR), _frame(0x81), struct.pack(">IB", 0, 1),
              struct.pack(">IB", MAX_REQUEST, 2), struct.pack(">IB", MAX_REQUEST + 1, 2)]

good_requests = st.sampled_from(GOOD_FRAMES) | st.integers(0, SLOT_COUNT - 1).map(
    lambda d: _frame(Opcode.INFO, struct.pack(">H", d)))

bad_requests = st.one_of(
    st.binary(max_size=12),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=8)).map(
        lambda t: struct.pack(">IB", *t[:2]) + t[2]),
    st.tuples(st.integers(0, 255), st.binary(max_size=6)).map(lambda t: _frame(*t)),
    st.sampled_from(BAD_FRAMES),
)


def cut_script(data: bytes, cuts: list[int]) -> list[bytes | object]:
    """``data`` as the chunks the peer sends, cut at ``cuts`` (sorted offsets)."""
    script: list[bytes | object] = []
    last = 0
    for cut in cuts:
        if cut > last:
            script.append(data[last:cut])
            last = cut
    if last < len(data):
        script.append(data[last:])
    return script


@st.composite
def client_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes | object]]:
    if draw(st.integers(0, 3)) == 0:
        data = draw(st.binary(max_size=64))
    else:
        parts = draw(st.lists(good_requests | bad_requests, max_size=6))
        data = b"".join(parts)
    script = cut_script(data, sorted(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    if draw(st.integers(0, 3)) == 0:
        script.insert(draw(st.integers(0, len(script))), STALL)
    return data, script


# -- server side ------------------------------------------------------------------------------


def _check_server_reply(sent: bytes, data: bytes, script: list[bytes | object],
                        host_fails: bool) -> int:
    frames = split_frames(sent)
    for op, payload in frames:
        if op == Opcode.ERROR:
            assert payload and not payload[1:].decode("utf-8").startswith("internal error"), \
                payload
    got = [(op, payload[0] if op == Opcode.ERROR else None) for op, payload in frames]
    want, hangs_up = expected_replies(data, host_fails)
    if STALL in script:
        # a stall in the middle of a frame ends the conversation early, with BAD_REQUEST
        # (at a frame boundary it is an idle client, which is fine)
        assert got == want or (got[:-1] == want[:len(got) - 1]
                               and got[-1] == (Opcode.ERROR, ErrorCode.BAD_REQUEST)), (got, want)
    else:
        assert got == want, (got, want, hangs_up)
    return len(frames)


def check_server(srv: FastChannelServer, source: Source, data: bytes,
                 script: list[bytes | object], host_fails: bool) -> int:
    """Serve one client's ``script`` (whose bytes are ``data``); check the replies against
    the reference; how many replies there were."""
    source.fail = host_fails
    try:
        conn = serve(srv, script)
    finally:
        source.fail = False
    return _check_server_reply(bytes(conn.sent), data, script, host_fails)


def test_fuzz_fast_channel_server_framing(server: tuple[FastChannelServer, Source]) -> None:
    srv, source = server
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(client_streams(), st.integers(0, 7))
        def one(stream: tuple[bytes, list[bytes | object]], fail: int) -> None:
            n[0] += 1
            data, script = stream
            replies = check_server(srv, source, data, script, fail == 0)
            target(float(replies), label="replies")
        return one

    fuzz("fast channel server", 300, run, lambda: n[0])


def test_a_stall_inside_a_frame_is_a_bad_request_and_at_a_boundary_is_not(
        server: tuple[FastChannelServer, Source]) -> None:
    srv, _ = server
    ping = _frame(Opcode.PING)
    conn = serve(srv, [ping, STALL, ping])
    assert [op for op, _ in split_frames(bytes(conn.sent))] == [0x84, 0x84]
    conn = serve(srv, [ping[:3], STALL, ping[3:]])
    assert [(op, p[:1]) for op, p in split_frames(bytes(conn.sent))] == [
        (Opcode.ERROR, bytes([ErrorCode.BAD_REQUEST]))]


# -- client side ------------------------------------------------------------------------------


def scripted_client(script: list[bytes | object]) -> tuple[FastChannelClient, ScriptedSocket]:
    """A client whose daemon sends ``script``; built as __init__ builds it, minus connect."""
    sock = ScriptedSocket(script)
    c = FastChannelClient.__new__(FastChannelClient)
    c.path, c.uri, c._timeout = "/fuzz/fast.sock", URI, 1.0
    c._lock, c._poll_lock = threading.Lock(), threading.Lock()
    c._buf, c._closed, c._failure, c._used = bytearray(), False, None, 0.0
    c._sock = sock  # type: ignore[assignment]
    c._poller = select.poll()
    return c, sock


def test_the_scripted_client_has_what_a_connected_one_has(
        server: tuple[FastChannelServer, Source], tmp_path: Path) -> None:
    """If the client grows state, the fuzz's way of building one must grow with it."""
    _, source = server
    with FastChannelServer(str(tmp_path / "real.sock"), source) as srv, \
            FastChannelClient(srv.path, uri=URI) as real:
        fake, _ = scripted_client([])
        fake.hello = real.hello
        assert set(vars(fake)) == set(vars(real))


_OK = (ProtocolError, HostUnreachableError, ConnectionClosedError)
Call = tuple[str, int]
calls = st.lists(st.sampled_from([("snapshot", 0), ("ping", 0), ("info", 1), ("info", 0)])
                 | st.integers(0, SLOT_COUNT - 1).map(lambda d: ("info", d)), max_size=4)


def run_client(script: list[bytes | object], todo: list[Call]) -> list[object]:
    """HELLO, then ``todo``; every outcome a value or a named error."""
    c, sock = scripted_client(script)
    outcomes: list[object] = []
    t0 = time.perf_counter()
    try:
        outcomes.append(c._hello())
    except _OK as exc:
        outcomes.append(exc)
    for name, domid in todo:
        dropped = c._sock is None
        try:
            if name == "info":
                outcomes.append(c.info(domid))
            elif name == "snapshot":
                outcomes.append(c.snapshot())
            else:
                c.ping()
                outcomes.append(None)
        except _OK as exc:
            outcomes.append(exc)
            if dropped:  # nothing is read from a dropped connection
                assert isinstance(exc, HostUnreachableError) and "dropped" in exc.message
        if isinstance(outcomes[-1], ProtocolError):
            assert c._sock is None and not c.alive()
    assert time.perf_counter() - t0 < PER_INPUT_S
    c.close()
    with pytest.raises(ConnectionClosedError):
        c.ping()
    del sock
    return outcomes


def _real_reply(srv: FastChannelServer, request: bytes) -> bytes:
    return bytes(serve(srv, [request]).sent)


@st.composite
def daemon_streams(draw: st.DrawFn, real: list[bytes]) -> list[bytes | object]:
    how = draw(st.integers(0, 2))
    if how == 0:
        data = draw(st.binary(max_size=96))
    else:
        data = b"".join(draw(st.lists(st.sampled_from(real), min_size=1, max_size=4)))
        if how == 2:  # mutate real replies
            buf = bytearray(data)
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(buf)))
                kind = draw(st.integers(0, 3))
                if kind == 0 and at < len(buf):
                    buf[at] = draw(st.integers(0, 255))
                elif kind == 1:
                    del buf[at:at + draw(st.integers(1, 8))]
                elif kind == 2:
                    buf[at:at] = draw(st.binary(min_size=1, max_size=8))
                else:
                    del buf[at:]
            data = bytes(buf)
    cut = draw(st.integers(0, len(data)))
    script: list[bytes | object] = [data[:cut], data[cut:]]
    if draw(st.integers(0, 5)) == 0:
        script.insert(draw(st.integers(0, 2)), STALL)
    return [s for s in script if s != b""]


def real_replies(srv: FastChannelServer, source: Source) -> list[bytes]:
    """What the server really answers to each kind of request, errors included."""
    real = [_real_reply(srv, r) for r in (
        _frame(Opcode.HELLO, struct.pack(">H", PROTOCOL_VERSION)), _frame(Opcode.SNAPSHOT),
        _frame(Opcode.PING), _frame(Opcode.INFO, b"\x00\x01"), _frame(Opcode.INFO, b"\x00\x09"),
        _frame(Opcode.ERROR))]
    source.fail = True
    try:
        real.append(_real_reply(srv, _frame(Opcode.SNAPSHOT)))  # ERROR UNAVAILABLE
    finally:
        source.fail = False
    real.append(_frame(Opcode.ERROR, bytes([ErrorCode.BUSY]) + b"too many"))
    return real


def test_fuzz_fast_channel_client_decoding(server: tuple[FastChannelServer, Source]) -> None:
    srv, source = server
    real = real_replies(srv, source)
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(daemon_streams(real), calls)
        def one(script: list[bytes | object], todo: list[Call]) -> None:
            n[0] += 1
            outcomes = run_client(script, todo)
            target(float(sum(not isinstance(o, Exception) for o in outcomes)), label="answers")
        return one

    fuzz("fast channel client", 500, run, lambda: n[0])


Fields = tuple[str, DomainState, int, int, int, int]  # a DataRow's, after its domid


def check_round_trip(srv: FastChannelServer, source: Source, table: dict[int, Fields]) -> None:
    """Serve ``table``; a client reads back exactly its rows, by snapshot and by ID."""
    saved = source.rows
    source.rows = {d: DataRow(d, *f) for d, f in table.items()}
    try:
        ids = [*table, 0]
        replies: list[bytes | object] = [_real_reply(srv, r) for r in [
            _frame(Opcode.HELLO, struct.pack(">H", PROTOCOL_VERSION)),
            _frame(Opcode.SNAPSHOT),
            *[_frame(Opcode.INFO, struct.pack(">H", d)) for d in ids]]]
        c, _ = scripted_client(replies)  # one reply per read: one per request
        assert c._hello().boot_id == BOOT
        assert c.snapshot() == TableSnapshot(BOOT, 42, tuple(source.rows.values()))
        for d in ids:
            assert c.info(d) == IdAnswer(BOOT, 42, source.rows.get(d))
    finally:
        source.rows = saved


def test_fuzz_fast_channel_round_trip(server: tuple[FastChannelServer, Source]) -> None:
    """Whatever table the host has, the client reads back exactly what the server wrote."""
    srv, source = server
    n = [0]
    fields = st.tuples(st.uuids().map(str), st.sampled_from(list(DomainState)),
                       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                       st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(st.dictionaries(st.integers(0, SLOT_COUNT - 1), fields, max_size=8))
        def one(table: dict[int, Fields]) -> None:
            n[0] += 1
            check_round_trip(srv, source, table)
            target(float(len(table)), label="rows")
        return one

    fuzz("fast channel round trip", 150, run, lambda: n[0])


# -- no memory growth ---------------------------------------------------------------------------


def test_fast_channel_keeps_no_memory_across_a_batch(
        server: tuple[FastChannelServer, Source]) -> None:
    srv, _ = server
    rng = random.Random(8)
    batch = 20_000 if LONG else 300
    pool = [_frame(Opcode.PING), _frame(Opcode.SNAPSHOT), _frame(Opcode.INFO, b"\x00\x01"),
            _frame(Opcode.HELLO, b"\x00\x01"), _frame(Opcode.INFO, b"\xff\xff"), b"\x00\x00"]
    inputs = [b"".join(rng.choice(pool) for _ in range(rng.randrange(1, 5)))
              for _ in range(batch)]
    replies = [_real_reply(srv, data) for data in inputs]  # warm up, and the client's inputs
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(3 if LONG else 1):
            for data, reply in zip(inputs, replies, strict=True):
                serve(srv, [data])
                run_client([reply], [("snapshot", 0), ("info", 1)])
        gc.collect()
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 64 * 1024, f"{current} bytes still held after {batch} conversations"
