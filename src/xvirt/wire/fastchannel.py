"""The daemon's fast channel: a unix socket beside the shared-memory domain table.

The table (``xvirt.wire.table``) answers the data plane without the daemon's
help, which is why it is fast, and also why it cannot say whether the daemon is
still there, nor where the table is. This socket says both: HELLO names the
table, the host's boot identity and the daemon instance (a new instance means a
new table, even at the same path), and a connection that the peer has closed
is a daemon that is gone, which ``FastChannelClient.alive`` sees with one
``poll`` and no round trip. The socket also answers the same two questions
(SNAPSHOT, INFO) itself, as the fallback when the table cannot be mapped and as
the yardstick the table is measured against.

Framing (all integers big-endian)::

    frame   = length:u32  opcode:u8  payload      length counts opcode + payload
    request : HELLO=1 (version:u16)  SNAPSHOT=2 ()  INFO=3 (domid:u16)  PING=4 ()
    reply   : opcode | 0x80 with the payload below, or ERROR=0x7F (code:u8, utf-8 text)

    HELLO    version:u16 boot:16 generation:u64 path_len:u16 path instance_len:u16 instance
    SNAPSHOT boot:16 generation:u64 count:u32, then count rows
    INFO     boot:16 generation:u64 present:u8, then one row if present
    row      id:u16 state:u8 uuid:16 memory_kib:u64 max_memory_kib:u64 vcpus:u32 cpu_ns:u64
    ERROR NO_ANSWER=4 (to INFO): code:u8 domid:u16 uuid:16 utf-8 text

Boot ids and uuids travel as 16 raw bytes, states as the table's codes, and
CPU time is computed when the server answers. A live domain that did not
answer (wedged) is a row whose state is NO_ANSWER (0x80) and whose figures
are zero in a SNAPSHOT (leaving it out would read as the domain gone), and
ERROR NO_ANSWER to an INFO: the host answered, that domain did not, and the
connection stays. A request longer than 1 MiB, an
unknown opcode, a frame cut short or a payload of the wrong size gets an
ERROR (BAD_REQUEST) and the server closes that connection; when the host
model fails, the reply is ERROR (UNAVAILABLE) and the connection stays. Every
connection has its own thread, so a slow or hostile client only ever holds its
own thread (and is dropped if it stalls in the middle of a frame), and at most
``max_clients`` are served at once: one more is sent ERROR (BUSY) and closed.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import selectors
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Protocol

from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    OperationFailedError,
    ProtocolError,
    XvirtError,
)
from xvirt.model import check_domid
from xvirt.planes import DataRow, IdAnswer, TableSnapshot, Unanswered
from xvirt.wire.table import SLOT_COUNT, STATE_CODES, state_of_code, uuid_from_bytes, uuid_to_bytes

__all__ = [
    "MAX_REPLY",
    "MAX_REQUEST",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "FastChannelClient",
    "FastChannelServer",
    "Hello",
    "Opcode",
    "TableSource",
]

PROTOCOL_VERSION = 2  # 2: NO_ANSWER rows and errors (a wedged domain)


class Opcode(enum.IntEnum):
    """Request opcodes; a reply carries ``opcode | REPLY``, or ERROR."""

    HELLO = 1
    SNAPSHOT = 2
    INFO = 3
    PING = 4
    ERROR = 0x7F


class ErrorCode(enum.IntEnum):
    """The first payload byte of an ERROR reply."""

    BAD_REQUEST = 1  # the connection is closed after it
    UNAVAILABLE = 2  # the host could not answer; the connection stays
    BUSY = 3  # too many clients; the connection is closed
    NO_ANSWER = 4  # to INFO: the domain did not answer; the connection stays


REPLY = 0x80
_FRAME = struct.Struct(">IB")
_U16 = struct.Struct(">H")
_HELLO = struct.Struct(">H16sQ")
_SNAP = struct.Struct(">16sQI")
_INFO = struct.Struct(">16sQB")
_ROW = struct.Struct(">HB16sQQIQ")
_ERROR = struct.Struct(">B")
_NO_ANSWER_HEAD = struct.Struct(">BH16s")  # ERROR NO_ANSWER: code, domid, uuid
#: A row's state byte for a live domain that did not answer (its figures are zero).
NO_ANSWER = 0x80

MAX_REQUEST = 1 << 20
#: A snapshot of a full table is the longest reply (about 1.5 MB).
MAX_REPLY = 1 + _SNAP.size + SLOT_COUNT * _ROW.size
_POLLRDHUP: int = getattr(select, "POLLRDHUP", 0)
_DEAD = select.POLLHUP | select.POLLERR | select.POLLNVAL | _POLLRDHUP


def _frame(op: int, payload: bytes = b"") -> bytes:
    return _FRAME.pack(1 + len(payload), op) + payload


def _error_frame(code: ErrorCode, message: str) -> bytes:
    return _frame(Opcode.ERROR, _ERROR.pack(code) + message.encode("utf-8", "replace")[:1000])


def _row(row: DataRow) -> bytes:
    return _ROW.pack(row.id, STATE_CODES[row.state], uuid_to_bytes(row.uuid), row.memory_kib,
                     row.max_memory_kib, row.vcpus, row.cpu_time_ns)


def _unanswered_row(miss: Unanswered) -> bytes:
    return _ROW.pack(miss.id, NO_ANSWER, uuid_to_bytes(miss.uuid), 0, 0, 0, 0)


def _no_answer_error(domid: int, uuid: str, message: str, uri: str) -> OperationFailedError:
    return OperationFailedError(message, uri=uri, domid=domid, uuid=uuid, op="info")


def _unrow(fields: tuple[int, int, bytes, int, int, int, int]) -> DataRow:
    domid, code, uuid, memory, max_memory, vcpus, cpu = fields
    return DataRow(domid, uuid_from_bytes(uuid), state_of_code(code), memory, max_memory,
                   vcpus, cpu)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class Hello:
    """What the daemon says on connecting: where its table is and who it is."""

    version: int
    table_path: str
    boot_id: str
    generation: int
    instance: str


class TableSource(Protocol):
    """What the server answers from: the daemon's host model, or a fake in tests."""

    @property
    def table_path(self) -> str: ...

    @property
    def instance(self) -> str: ...

    def data_snapshot(self) -> TableSnapshot: ...

    def data_info(self, domid: int) -> IdAnswer: ...


# -- server ------------------------------------------------------------------------------


class _BadRequest(Exception):
    """The client broke the framing or sent a bad payload: tell it, then hang up."""


class FastChannelServer:
    """Serves the fast channel on a unix socket (mode 0600), one thread per client."""

    def __init__(
        self,
        path: str,
        source: TableSource,
        *,
        max_clients: int = 64,
        io_timeout: float = 5.0,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, not {max_clients}")
        self.path = os.fspath(path)
        self._source = source
        self._max_clients = max_clients
        self._io_timeout = io_timeout
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._closing = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            # Nobody can connect before listen(), so this chmod leaves no window.
            os.chmod(self.path, 0o600)
            info = os.stat(self.path)
            self._identity = (info.st_dev, info.st_ino)
            listener.listen(min(max_clients, socket.SOMAXCONN))
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()

    def _remove_stale(self) -> None:
        """Remove a socket file no daemon listens on; refuse to touch anything else."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise FileExistsError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a live daemon with a full backlog: do not wait forever
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)  # stale: its daemon is gone
            return
        except FileNotFoundError:
            return
        finally:
            probe.close()
        raise OSError(f"another daemon is listening on {self.path}")

    def __enter__(self) -> FastChannelServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Accept clients on a background thread."""
        with self._lock:
            if self._closing:
                raise ConnectionClosedError(f"fast channel server {self.path} is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._accept_loop, name=f"fastchannel-accept {self.path}", daemon=True
                )
                self._thread.start()

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Stop accepting, disconnect every client, wait for their threads, remove
        the socket file (if it is still ours)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            accept = self._thread
        self._stopped.set()
        self._wake_w.send(b"x")
        if accept is not None:
            accept.join()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            clients = dict(self._clients)
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv
        for thread in clients.values():
            thread.join()
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    except OSError:  # out of descriptors, say: pause, then retry
                        if self._stopped.wait(0.05):
                            return
                        continue
                    self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        thread = threading.Thread(target=self._serve, args=(conn,),
                                  name=f"fastchannel-client {self.path}", daemon=True)
        with self._lock:
            admitted = not self._closing and len(self._clients) < self._max_clients
            if admitted:
                self._clients[conn] = thread
        if not admitted:
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(_error_frame(ErrorCode.BUSY,
                                       f"too many clients (at most {self._max_clients})"))
            conn.close()
            return
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self._io_timeout)
            for op, payload in self._requests(conn):
                conn.sendall(self._answer(op, payload))
        except _BadRequest as exc:
            with contextlib.suppress(OSError):
                conn.sendall(_error_frame(ErrorCode.BAD_REQUEST, str(exc)))
        except OSError:  # the client went away, or stalled while we were sending
            pass
        except Exception as exc:  # a bug here must cost one connection, not the server
            with contextlib.suppress(OSError):
                conn.sendall(_error_frame(ErrorCode.BAD_REQUEST, f"internal error: {exc!r}"))
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            conn.close()

    def _requests(self, conn: socket.socket) -> Iterator[tuple[int, bytes]]:
        """Frames as they arrive; waiting for a frame is unbounded, finishing one is not."""
        buf = bytearray()
        while True:
            while len(buf) >= _FRAME.size:
                length, op = _FRAME.unpack_from(buf)
                if not 1 <= length <= MAX_REQUEST:
                    raise _BadRequest(f"frame length {length} is not in 1..{MAX_REQUEST}")
                if op not in _REQUESTS:
                    raise _BadRequest(f"unknown opcode {op}")
                if len(buf) < 4 + length:
                    break
                payload = bytes(buf[_FRAME.size:4 + length])
                del buf[:4 + length]
                yield op, payload
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if buf:
                    raise _BadRequest(f"frame not finished within {self._io_timeout}s") from None
                continue  # an idle client is fine
            if not chunk:
                if buf:
                    raise _BadRequest(f"connection closed {len(buf)} bytes into a frame")
                return
            buf += chunk

    def _answer(self, op: int, payload: bytes) -> bytes:
        """The reply to one request; raises _BadRequest when the request is malformed."""
        source = self._source
        if op == Opcode.INFO:
            if len(payload) != _U16.size:
                raise _BadRequest(f"INFO takes a 2-byte domid, not {len(payload)} bytes")
            domid = _U16.unpack(payload)[0]
            if domid >= SLOT_COUNT:
                raise _BadRequest(f"domain ID {domid} is out of range 0..{SLOT_COUNT - 1}")
            try:
                return _frame(REPLY | op, _encode_info(source.data_info(domid)))
            except OperationFailedError as exc:
                return _no_answer(domid, exc) or _unavailable(exc)
            except Exception as exc:
                return _unavailable(exc)
        if op == Opcode.SNAPSHOT:
            if payload:
                raise _BadRequest(f"SNAPSHOT takes no payload, not {len(payload)} bytes")
            try:
                return _frame(REPLY | op, _encode_snapshot(source.data_snapshot()))
            except Exception as exc:
                return _unavailable(exc)
        if op == Opcode.PING:
            if payload:
                raise _BadRequest(f"PING takes no payload, not {len(payload)} bytes")
            return _frame(REPLY | op)
        # HELLO, the only opcode left (_requests refused the others)
        if len(payload) != _U16.size:
            raise _BadRequest(f"HELLO takes a 2-byte version, not {len(payload)} bytes")
        version = _U16.unpack(payload)[0]
        if version != PROTOCOL_VERSION:
            raise _BadRequest(f"protocol version {version} is not {PROTOCOL_VERSION}")
        try:
            return _frame(REPLY | op, _encode_hello(source))
        except Exception as exc:
            return _unavailable(exc)


_REQUESTS = frozenset({Opcode.HELLO, Opcode.SNAPSHOT, Opcode.INFO, Opcode.PING})


def _unavailable(exc: Exception) -> bytes:
    what = exc.message if isinstance(exc, XvirtError) else f"{type(exc).__name__}: {exc}"
    return _error_frame(ErrorCode.UNAVAILABLE, f"the host could not answer: {what}")


def _no_answer(domid: int, exc: OperationFailedError) -> bytes | None:
    """ERROR NO_ANSWER when ``exc`` says the asked domain did not answer, else None."""
    if exc.op != "info" or exc.domid != domid or exc.uuid is None:
        return None
    try:
        head = _NO_ANSWER_HEAD.pack(ErrorCode.NO_ANSWER, domid, uuid_to_bytes(exc.uuid))
    except XvirtError:
        return None
    return _frame(Opcode.ERROR, head + exc.message.encode("utf-8", "replace")[:1000])


def _encode_hello(source: TableSource) -> bytes:
    answer = source.data_info(0)  # O(1), and carries boot id and generation
    path = source.table_path.encode("utf-8")
    instance = source.instance.encode("utf-8")
    return b"".join((
        _HELLO.pack(PROTOCOL_VERSION, uuid_to_bytes(answer.boot_id), answer.generation),
        _U16.pack(len(path)), path, _U16.pack(len(instance)), instance,
    ))


def _encode_info(answer: IdAnswer) -> bytes:
    head = _INFO.pack(uuid_to_bytes(answer.boot_id), answer.generation, answer.row is not None)
    return head if answer.row is None else head + _row(answer.row)


def _encode_snapshot(snap: TableSnapshot) -> bytes:
    missing = snap.unanswered
    head = _SNAP.pack(uuid_to_bytes(snap.boot_id), snap.generation,
                      len(snap.rows) + len(missing))
    rows = b"".join([_row(row) for row in snap.rows])
    if not missing:
        return head + rows
    return head + rows + b"".join([_unanswered_row(miss) for miss in missing])


# -- client ------------------------------------------------------------------------------


class FastChannelClient:
    """One connection to a daemon's fast channel. Thread-safe; one request at a time.

    Every failure is an xvirt error: HostUnreachableError (with ``uri``) when the
    daemon is absent, gone, silent for ``timeout`` seconds or refuses us;
    ProtocolError when it sends something malformed. After either, the
    connection is dropped and later calls raise HostUnreachableError: make a
    new client (and read the new HELLO: the table may have moved). The
    exceptions keep the connection: a host model that failed to answer (ERROR
    UNAVAILABLE) raises HostUnreachableError, and a domain that did not answer
    an INFO (ERROR NO_ANSWER) raises OperationFailedError naming it.
    """

    def __init__(self, path: str, *, uri: str, timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.uri = uri
        self._timeout = timeout
        self._lock = threading.Lock()  # one request/reply at a time
        self._poll_lock = threading.Lock()  # poll objects refuse concurrent polls
        self._buf = bytearray()
        self._closed = False
        self._failure: str | None = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise HostUnreachableError(
                f"no daemon at {self.path}: {_reason(exc)}", uri=uri) from exc
        self._sock: socket.socket | None = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | _POLLRDHUP)
        try:
            #: The daemon's HELLO: its table's path, boot id, generation, instance.
            self.hello = self._hello()
        except BaseException:
            self._drop()
            raise

    def __enter__(self) -> FastChannelClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _hello(self) -> Hello:
        body = self._call(Opcode.HELLO, _U16.pack(PROTOCOL_VERSION))
        try:
            version, boot, generation = _HELLO.unpack_from(body)
            at = _HELLO.size
            (n,) = _U16.unpack_from(body, at)
            path = _text(body[at + 2:at + 2 + n], "the table path")
            at += 2 + n
            (m,) = _U16.unpack_from(body, at)
            instance = _text(body[at + 2:at + 2 + m], "the instance id")
            if at + 2 + m != len(body):
                raise ValueError(f"{len(body) - at - 2 - m} bytes too many")
        except (ValueError, struct.error) as exc:
            self._fail(f"bad HELLO reply: {exc}")
        if version != PROTOCOL_VERSION:
            self._fail(f"daemon speaks protocol version {version}, not {PROTOCOL_VERSION}")
        return Hello(version, path, uuid_from_bytes(boot), generation, instance)

    def snapshot(self) -> TableSnapshot:
        """The whole domain table, as the daemon's host model has it now."""
        body = self._call(Opcode.SNAPSHOT)
        try:
            boot, generation, count = _SNAP.unpack_from(body)
            if len(body) != _SNAP.size + count * _ROW.size:
                raise ValueError(f"{len(body)} bytes for {count} rows")
            every = list(_ROW.iter_unpack(memoryview(body)[_SNAP.size:]))
            rows = tuple([_unrow(fields) for fields in every if fields[1] != NO_ANSWER])
            missing: tuple[Unanswered, ...] = ()
            if len(rows) != count:  # rare: a wedged domain
                missing = tuple([self._unanswered(fields) for fields in every
                                 if fields[1] == NO_ANSWER])
        except (ValueError, struct.error) as exc:
            self._fail(f"bad SNAPSHOT reply: {exc}")
        return TableSnapshot(uuid_from_bytes(boot), generation, rows, unanswered=missing)

    def _unanswered(self, fields: tuple[int, int, bytes, int, int, int, int]) -> Unanswered:
        domid, _code, raw, *figures = fields
        if any(figures):
            raise ValueError(f"domain {domid} did not answer, yet has figures {figures}")
        uuid = uuid_from_bytes(raw)
        return Unanswered(domid, uuid, _no_answer_error(
            domid, uuid, f"domain {domid} did not answer", self.uri))

    def info(self, domid: int) -> IdAnswer:
        """Info by domain ID; InvalidArgumentError (no request) for an impossible ID."""
        check_domid(domid)
        try:
            body = self._call(Opcode.INFO, _U16.pack(domid))
        except OperationFailedError as exc:  # ERROR NO_ANSWER
            if exc.domid != domid:
                self._fail(f"asked for domain {domid}, domain {exc.domid} did not answer")
            raise
        try:
            boot, generation, present = _INFO.unpack_from(body)
            if len(body) != _INFO.size + (_ROW.size if present else 0) or present > 1:
                raise ValueError(f"{len(body)} bytes with present={present}")
            row = _unrow(_ROW.unpack_from(body, _INFO.size)) if present else None
            if row is not None and row.id != domid:
                raise ValueError(f"asked for domain {domid}, got domain {row.id}")
        except (ValueError, struct.error) as exc:
            self._fail(f"bad INFO reply: {exc}")
        return IdAnswer(uuid_from_bytes(boot), generation, row)

    def ping(self) -> None:
        """A round trip that asks the host model nothing."""
        if self._call(Opcode.PING):
            self._fail("PONG carries no payload")

    def alive(self) -> bool:
        """Whether the daemon still holds its end open. One poll(0), no round
        trip, nothing read; False once the daemon has exited or closed us."""
        sock = self._sock
        if sock is None or self._failure is not None:
            return False
        with self._poll_lock:
            events = self._poller.poll(0)
        if not events:
            return True
        mask = events[0][1]
        if mask & _DEAD:
            return False
        try:  # readable and no hangup: data, or an end of file POLLRDHUP could not say
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Hang up. Later calls raise ConnectionClosedError; idempotent."""
        self._closed = True
        self._drop()

    # -- plumbing ------------------------------------------------------------------

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a request blocked in recv
            sock.close()

    def _fail(self, why: str) -> NoReturn:
        """The daemon sent something malformed: drop the connection and say so."""
        self._failure = why
        self._drop()
        raise ProtocolError(f"fast channel {self.path}: {why}", uri=self.uri)

    def _lost(self, why: str) -> XvirtError:
        """The connection is gone (or we closed it under a request): drop it, say which."""
        self._failure = why
        self._drop()
        if self._closed:
            return ConnectionClosedError(f"fast channel {self.path} is closed", uri=self.uri)
        return HostUnreachableError(f"fast channel {self.path}: {why}", uri=self.uri)

    def _call(self, op: int, payload: bytes = b"") -> bytes:
        with self._lock:
            sock = self._sock
            if sock is None:
                if self._closed:
                    raise ConnectionClosedError(f"fast channel {self.path} is closed",
                                                uri=self.uri)
                raise HostUnreachableError(
                    f"fast channel {self.path} was dropped ({self._failure})", uri=self.uri)
            try:
                sock.sendall(_frame(op, payload))
            except OSError as exc:
                # A daemon that refused us (BUSY) may have hung up before our request
                # arrived: its reason is waiting to be read.
                reply = self._pending_error(sock)
                raise self._lost(reply or f"cannot send ({_reason(exc)})") from exc
            try:
                reply_op, body = self._read_frame(sock)
            except TimeoutError as exc:
                raise self._lost(f"no answer within {self._timeout}s") from exc
            except OSError as exc:
                raise self._lost(f"connection lost ({_reason(exc)})") from exc
        if reply_op == Opcode.ERROR:
            self._error_reply(op, body)
        if reply_op != REPLY | op:
            self._fail(f"reply opcode {reply_op:#x} to a request {op:#x}")
        return body

    def _read_frame(self, sock: socket.socket) -> tuple[int, bytes]:
        buf = self._buf
        while len(buf) < _FRAME.size:
            self._fill(sock, buf, 65536)
        length, reply_op = _FRAME.unpack_from(buf)
        if not 1 <= length <= MAX_REPLY:
            self._fail(f"reply length {length} is not in 1..{MAX_REPLY}")
        end = 4 + length
        while len(buf) < end:
            self._fill(sock, buf, max(65536, end - len(buf)))
        if len(buf) > end:
            self._fail(f"{len(buf) - end} unexpected bytes after a reply")
        body = bytes(buf[_FRAME.size:end])
        buf.clear()
        return reply_op, body

    def _fill(self, sock: socket.socket, buf: bytearray, size: int) -> None:
        chunk = sock.recv(size)
        if not chunk:
            if buf:
                self._fail(f"daemon hung up {len(buf)} bytes into a reply")
            raise self._lost("the daemon closed the connection")
        buf += chunk

    def _pending_error(self, sock: socket.socket) -> str | None:
        """An ERROR frame already received, read without waiting, as text."""
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
            length, reply_op = _FRAME.unpack_from(data)
            if reply_op != Opcode.ERROR or len(data) != 4 + length:
                return None
            return data[_FRAME.size + 1:].decode("utf-8", "replace")
        except (OSError, struct.error):
            return None

    def _error_reply(self, op: int, body: bytes) -> NoReturn:
        if not body:
            self._fail("empty ERROR reply")
        if body[0] == ErrorCode.NO_ANSWER and op == Opcode.INFO:  # the connection stays
            if len(body) < _NO_ANSWER_HEAD.size:
                self._fail(f"NO_ANSWER error of {len(body)} bytes")
            _code, domid, raw = _NO_ANSWER_HEAD.unpack_from(body)
            text = body[_NO_ANSWER_HEAD.size:].decode("utf-8", "replace")
            raise _no_answer_error(domid, uuid_from_bytes(raw),
                                   text or f"domain {domid} did not answer", self.uri)
        code, text = body[0], body[1:].decode("utf-8", "replace")
        if code == ErrorCode.UNAVAILABLE:  # the connection stays usable
            raise HostUnreachableError(f"daemon at {self.path}: {text}", uri=self.uri)
        if code == ErrorCode.BUSY:
            raise self._lost(f"daemon refused the connection: {text}")
        self._fail(f"daemon refused our request: {text}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
