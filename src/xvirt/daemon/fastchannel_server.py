"""The daemon's fast-channel server (the protocol is ``xvirt.wire.fastchannel``).

Every connection has its own thread, so a slow or hostile client only ever holds
its own thread (and is dropped if a frame takes longer than ``io_timeout`` to
arrive), and at most ``max_clients`` are served at once: one more is sent ERROR
(BUSY) and closed (the xend driver then reads over HTTP). A client that sends
nothing for ``idle_timeout`` seconds (default ``IDLE_TIMEOUT_S``, 120 s, sshd's
grace time for a login) is closed, so clients that leaked their connection give
their slots back; the xend driver pings every ``KEEPALIVE_S`` while it reads
the table, so only a connection nobody uses is reaped. A request longer than
1 MiB, an unknown opcode, a frame cut short or a payload of the wrong size gets
an ERROR (BAD_REQUEST) and the server closes that connection; when the host
model fails, the reply is ERROR (UNAVAILABLE) and the connection stays.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from xvirt.errors import ConnectionClosedError, OperationFailedError, XvirtError
from xvirt.planes import IdAnswer, TableSnapshot
from xvirt.wire.fastchannel import (
    FRAME,
    MAX_REQUEST,
    PROTOCOL_VERSION,
    REPLY,
    U16,
    ErrorCode,
    Opcode,
    encode_hello,
    encode_info,
    encode_snapshot,
    error_frame,
    frame,
    no_answer_frame,
)
from xvirt.wire.table import SLOT_COUNT

__all__ = ["IDLE_TIMEOUT_S", "FastChannelServer", "TableSource"]

#: How long a client may send nothing before it is closed (its slot freed).
IDLE_TIMEOUT_S = 120.0


class TableSource(Protocol):
    """What the server answers from: the daemon's host model, or a fake in tests."""

    @property
    def table_path(self) -> str: ...

    @property
    def instance(self) -> str: ...

    def data_snapshot(self) -> TableSnapshot: ...

    def data_info(self, domid: int) -> IdAnswer: ...


_REQUESTS = frozenset({Opcode.HELLO, Opcode.SNAPSHOT, Opcode.INFO, Opcode.PING})


def _unavailable(exc: Exception) -> bytes:
    what = exc.message if isinstance(exc, XvirtError) else f"{type(exc).__name__}: {exc}"
    return error_frame(ErrorCode.UNAVAILABLE, f"the host could not answer: {what}")



class _BadRequest(Exception):
    """The client broke the framing or sent a bad payload: tell it, then hang up."""


class _Idle(Exception):
    """The client sent nothing for the idle timeout: hang up, freeing its slot."""


class FastChannelServer:
    """Serves the fast channel on a unix socket (mode 0600), one thread per client."""

    def __init__(
        self,
        path: str,
        source: TableSource,
        *,
        max_clients: int = 64,
        io_timeout: float = 5.0,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, not {max_clients}")
        if not 0 < idle_timeout < float("inf"):
            raise ValueError(f"idle_timeout must be a positive number, not {idle_timeout}")
        self.path = os.fspath(path)
        self._source = source
        self._max_clients = max_clients
        self._io_timeout = io_timeout
        self._idle_timeout = idle_timeout
        #: Clients refused because every slot was taken, and idle clients closed.
        self.refused = 0
        self.reaped = 0
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
            else:
                self.refused += 1
        if not admitted:
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(error_frame(ErrorCode.BUSY,
                                       f"too many clients (at most {self._max_clients})"))
            conn.close()
            return
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            # One timeout for every recv and send, set once (a settimeout per request
            # cost a PING 1.5 us): the deadlines are kept on the clock in _requests.
            conn.settimeout(min(self._io_timeout, self._idle_timeout))
            for op, payload in self._requests(conn):
                conn.sendall(self._answer(op, payload))
        except _Idle:
            with self._lock:
                self.reaped += 1
        except _BadRequest as exc:
            with contextlib.suppress(OSError):
                conn.sendall(error_frame(ErrorCode.BAD_REQUEST, str(exc)))
        except OSError:  # the client went away, or stalled while we were sending
            pass
        except Exception as exc:  # a bug here must cost one connection, not the server
            with contextlib.suppress(OSError):
                conn.sendall(error_frame(ErrorCode.BAD_REQUEST, f"internal error: {exc!r}"))
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            conn.close()

    def _requests(self, conn: socket.socket) -> Iterator[tuple[int, bytes]]:
        """Frames as they arrive. Waiting for a frame is bounded by the idle timeout
        (then _Idle), finishing one by the I/O timeout counted from its first byte
        (then _BadRequest: a byte now and then does not keep a slot)."""
        buf = bytearray()
        clock = time.monotonic
        io_timeout, idle_timeout = self._io_timeout, self._idle_timeout
        late = f"frame not finished within {io_timeout}s"
        quiet_since = frame_since = clock()
        while True:
            while len(buf) >= FRAME.size:
                length, op = FRAME.unpack_from(buf)
                if not 1 <= length <= MAX_REQUEST:
                    raise _BadRequest(f"frame length {length} is not in 1..{MAX_REQUEST}")
                if op not in _REQUESTS:
                    raise _BadRequest(f"unknown opcode {op}")
                if len(buf) < 4 + length:
                    break
                payload = bytes(buf[FRAME.size:4 + length])
                del buf[:4 + length]
                yield op, payload  # answered when the caller comes back
                quiet_since = frame_since = clock()
            try:
                chunk = conn.recv(65536)
            except TimeoutError:  # silent for min(io_timeout, idle_timeout)
                if buf:
                    if io_timeout <= idle_timeout or clock() - frame_since >= io_timeout:
                        raise _BadRequest(late) from None
                elif clock() - quiet_since >= idle_timeout:
                    raise _Idle from None
                continue
            if not chunk:
                if buf:
                    raise _BadRequest(f"connection closed {len(buf)} bytes into a frame")
                return
            if not buf:
                frame_since = clock()
            elif clock() - frame_since >= io_timeout:  # trickled: a byte now and then
                raise _BadRequest(late)
            buf += chunk

    def _answer(self, op: int, payload: bytes) -> bytes:
        """The reply to one request; raises _BadRequest when the request is malformed."""
        source = self._source
        if op == Opcode.INFO:
            if len(payload) != U16.size:
                raise _BadRequest(f"INFO takes a 2-byte domid, not {len(payload)} bytes")
            domid = U16.unpack(payload)[0]
            if domid >= SLOT_COUNT:
                raise _BadRequest(f"domain ID {domid} is out of range 0..{SLOT_COUNT - 1}")
            try:
                return frame(REPLY | op, encode_info(source.data_info(domid)))
            except OperationFailedError as exc:
                return no_answer_frame(domid, exc) or _unavailable(exc)
            except Exception as exc:
                return _unavailable(exc)
        if op == Opcode.SNAPSHOT:
            if payload:
                raise _BadRequest(f"SNAPSHOT takes no payload, not {len(payload)} bytes")
            try:
                return frame(REPLY | op, encode_snapshot(source.data_snapshot()))
            except Exception as exc:
                return _unavailable(exc)
        if op == Opcode.PING:
            if payload:
                raise _BadRequest(f"PING takes no payload, not {len(payload)} bytes")
            return frame(REPLY | op)
        # HELLO, the only opcode left (_requests refused the others)
        if len(payload) != U16.size:
            raise _BadRequest(f"HELLO takes a 2-byte version, not {len(payload)} bytes")
        version = U16.unpack(payload)[0]
        if version != PROTOCOL_VERSION:
            raise _BadRequest(f"protocol version {version} is not {PROTOCOL_VERSION}")
        try:
            hello = encode_hello(source.data_info(0), source.table_path, source.instance)
            return frame(REPLY | op, hello)
        except Exception as exc:
            return _unavailable(exc)


