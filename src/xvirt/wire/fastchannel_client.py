"""The client of a daemon's fast channel (the protocol is ``xvirt.wire.fastchannel``).

A connection that the peer has closed is a daemon that is gone, which
``FastChannelClient.alive`` sees with one ``poll`` and no round trip. A daemon
that is there but will not serve this client on its fast channel (every slot
taken, or a socket this user may not open) raises ``FastChannelRefused``, so
the xend driver can read over HTTP instead of waiting for a slot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import NoReturn

from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    OperationFailedError,
    ProtocolError,
    XvirtError,
)
from xvirt.model import check_domid
from xvirt.planes import IdAnswer, TableSnapshot, Unanswered
from xvirt.wire.binary import uuid_from_bytes
from xvirt.wire.fastchannel import (
    FRAME,
    HELLO_HEAD,
    INFO_HEAD,
    MAX_REPLY,
    NO_ANSWER,
    NO_ANSWER_HEAD,
    PROTOCOL_VERSION,
    REPLY,
    ROW,
    SNAPSHOT_HEAD,
    U16,
    ErrorCode,
    Hello,
    Opcode,
    decode_row,
    decode_text,
    frame,
)

__all__ = ["FastChannelClient", "FastChannelRefused"]

_POLLRDHUP: int = getattr(select, "POLLRDHUP", 0)
_DEAD = select.POLLHUP | select.POLLERR | select.POLLNVAL | _POLLRDHUP


class FastChannelRefused(HostUnreachableError):
    """The daemon is there but refuses this client its fast channel: every slot is
    taken (ERROR BUSY), or the socket's permissions keep this user out. Not a dead
    daemon: the same questions can be asked over HTTP."""


_PERMISSION = frozenset({errno.EACCES, errno.EPERM})


def _no_answer_error(domid: int, uuid: str, message: str, uri: str) -> OperationFailedError:
    return OperationFailedError(message, uri=uri, domid=domid, uuid=uuid, op="info")


class FastChannelClient:
    """One connection to a daemon's fast channel. Thread-safe; one request at a time.

    Every failure is an xvirt error: HostUnreachableError (with ``uri``) when the
    daemon is absent, gone, silent for ``timeout`` seconds or refuses us (then its
    subclass FastChannelRefused: every slot taken, or a socket not ours to open);
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
        self._used = time.monotonic()  # the last exchange: keepalive() pings after a while
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            if exc.errno in _PERMISSION:
                raise FastChannelRefused(
                    f"cannot use the fast channel {self.path}: {_reason(exc)}", uri=uri
                ) from exc
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
        body = self._call(Opcode.HELLO, U16.pack(PROTOCOL_VERSION))
        try:
            version, boot, generation = HELLO_HEAD.unpack_from(body)
            at = HELLO_HEAD.size
            (n,) = U16.unpack_from(body, at)
            path = decode_text(body[at + 2:at + 2 + n], "the table path")
            at += 2 + n
            (m,) = U16.unpack_from(body, at)
            instance = decode_text(body[at + 2:at + 2 + m], "the instance id")
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
            boot, generation, count = SNAPSHOT_HEAD.unpack_from(body)
            if len(body) != SNAPSHOT_HEAD.size + count * ROW.size:
                raise ValueError(f"{len(body)} bytes for {count} rows")
            every = list(ROW.iter_unpack(memoryview(body)[SNAPSHOT_HEAD.size:]))
            rows = tuple([decode_row(fields) for fields in every if fields[1] != NO_ANSWER])
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
            body = self._call(Opcode.INFO, U16.pack(domid))
        except OperationFailedError as exc:  # ERROR NO_ANSWER
            if exc.domid != domid:
                self._fail(f"asked for domain {domid}, domain {exc.domid} did not answer")
            raise
        try:
            boot, generation, present = INFO_HEAD.unpack_from(body)
            if len(body) != INFO_HEAD.size + (ROW.size if present else 0) or present > 1:
                raise ValueError(f"{len(body)} bytes with present={present}")
            row = decode_row(ROW.unpack_from(body, INFO_HEAD.size)) if present else None
            if row is not None and row.id != domid:
                raise ValueError(f"asked for domain {domid}, got domain {row.id}")
        except (ValueError, struct.error) as exc:
            self._fail(f"bad INFO reply: {exc}")
        return IdAnswer(uuid_from_bytes(boot), generation, row)

    def ping(self) -> None:
        """A round trip that asks the host model nothing."""
        if self._call(Opcode.PING):
            self._fail("PONG carries no payload")

    def keepalive(self, interval: float) -> None:
        """PING if nothing was exchanged for ``interval`` seconds, so a client that reads
        only the table is not closed as idle by the daemon (which closes clients silent
        for its idle timeout, 120 s by default). Costs one clock read otherwise."""
        if time.monotonic() - self._used >= interval:
            self.ping()

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
                sock.sendall(frame(op, payload))
            except OSError as exc:
                # A daemon that refused us (BUSY) may have hung up before our request
                # arrived: its reason is waiting to be read.
                code, reply = self._pending_error(sock)
                if code == ErrorCode.BUSY:
                    raise self._refused(reply) from exc
                raise self._lost(reply or f"cannot send ({_reason(exc)})") from exc
            try:
                reply_op, body = self._read_frame(sock)
            except TimeoutError as exc:
                raise self._lost(f"no answer within {self._timeout}s") from exc
            except OSError as exc:
                raise self._lost(f"connection lost ({_reason(exc)})") from exc
            self._used = time.monotonic()
        if reply_op == Opcode.ERROR:
            self._error_reply(op, body)
        if reply_op != REPLY | op:
            self._fail(f"reply opcode {reply_op:#x} to a request {op:#x}")
        return body

    def _read_frame(self, sock: socket.socket) -> tuple[int, bytes]:
        buf = self._buf
        while len(buf) < FRAME.size:
            self._fill(sock, buf, 65536)
        length, reply_op = FRAME.unpack_from(buf)
        if not 1 <= length <= MAX_REPLY:
            self._fail(f"reply length {length} is not in 1..{MAX_REPLY}")
        end = 4 + length
        while len(buf) < end:
            self._fill(sock, buf, max(65536, end - len(buf)))
        if len(buf) > end:
            self._fail(f"{len(buf) - end} unexpected bytes after a reply")
        body = bytes(buf[FRAME.size:end])
        buf.clear()
        return reply_op, body

    def _fill(self, sock: socket.socket, buf: bytearray, size: int) -> None:
        chunk = sock.recv(size)
        if not chunk:
            if buf:
                self._fail(f"daemon hung up {len(buf)} bytes into a reply")
            raise self._lost("the daemon closed the connection")
        buf += chunk

    def _pending_error(self, sock: socket.socket) -> tuple[int | None, str | None]:
        """An ERROR frame already received, read without waiting: its code and text."""
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
            length, reply_op = FRAME.unpack_from(data)
            if reply_op != Opcode.ERROR or len(data) != 4 + length or length < 2:
                return None, None
            return data[FRAME.size], data[FRAME.size + 1:].decode("utf-8", "replace")
        except (OSError, struct.error):
            return None, None

    def _refused(self, text: str | None) -> FastChannelRefused:
        """The daemon turned us away (ERROR BUSY): drop the connection, say why."""
        self._failure = f"refused: {text}"
        self._drop()
        return FastChannelRefused(f"daemon at {self.path} refused the fast channel: {text}",
                                  uri=self.uri)

    def _error_reply(self, op: int, body: bytes) -> NoReturn:
        if not body:
            self._fail("empty ERROR reply")
        if body[0] == ErrorCode.NO_ANSWER and op == Opcode.INFO:  # the connection stays
            if len(body) < NO_ANSWER_HEAD.size:
                self._fail(f"NO_ANSWER error of {len(body)} bytes")
            _code, domid, raw = NO_ANSWER_HEAD.unpack_from(body)
            text = body[NO_ANSWER_HEAD.size:].decode("utf-8", "replace")
            raise _no_answer_error(domid, uuid_from_bytes(raw),
                                   text or f"domain {domid} did not answer", self.uri)
        code, text = body[0], body[1:].decode("utf-8", "replace")
        if code == ErrorCode.UNAVAILABLE:  # the connection stays usable
            raise HostUnreachableError(f"daemon at {self.path}: {text}", uri=self.uri)
        if code == ErrorCode.BUSY:
            raise self._refused(text)
        self._fail(f"daemon refused our request: {text}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
