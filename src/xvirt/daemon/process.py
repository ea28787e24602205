"""``xvirt daemon``: one host served the way xend served it, plus the fast channel.

The process wires four things around one HostModel:

* a state store (``host.sqlite`` in the state directory) written inside every
  request, so the host outlives the daemon: restarted after SIGTERM or kill -9
  it comes back with the same domains, IDs, boot identity and event numbers;
* the control plane (``control.ControlApp``) on waitress, on a 0600 unix socket
  and/or loopback TCP, each listener with its own socket map, worker pool,
  connection limit and idle timeout (so no number of TCP clients can take the
  unix socket's slots), and a request-size limit;
* the fast channel: the shared-memory domain table, mirrored inside every
  request, and its unix socket (table discovery, liveness, and the same two
  questions answered over a socket);
* a ticker thread, so scheduled demo activity happens even when every client
  reads only the shared table.

Shutdown on SIGTERM/SIGINT is graceful: listeners close first, event long polls
answer at once with the events so far, requests in flight finish (within
``shutdown_grace_s``), then the table is marked retired and the sockets removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import stat
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from xvirt.clock import WallClock
from xvirt.daemon.control import MAX_BODY, ControlApp, ControlSettings, StartResponse
from xvirt.daemon.fastchannel_server import IDLE_TIMEOUT_S, FastChannelServer
from xvirt.daemon.store import HostStore
from xvirt.daemon.table_writer import LiveRow, TableWriter, retire_abandoned
from xvirt.errors import InvalidArgumentError, OperationFailedError, XvirtError
from xvirt.host import demo
from xvirt.host.hypervisor import HostChange, HostModel, HostState
from xvirt.host.images import ImageStore
from xvirt.model import MAX_WAIT_S, read_token_file
from xvirt.planes import IdAnswer, TableSnapshot
from xvirt.wire.table import TABLE_MAGIC

__all__ = ["Daemon", "DaemonConfig", "default_state_dir"]

_DEMO_MARK = "demo"
TICK_S = 1.0
SWEEP_S = 0.25  # how often the serve loop looks for idle and slow connections


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "xvirt" / "daemon"


@dataclass
class DaemonConfig:
    state_dir: Path = field(default_factory=default_state_dir)
    unix_socket: Path | None = None  # default: <state_dir>/xend.sock; see no_unix
    no_unix: bool = False
    tcp: tuple[str, int] | None = None
    token_file: Path | None = None
    control_latency_ms: float = 0.0
    empty: bool = False
    reboot_host: bool = False
    workers: int = 8
    connection_limit: int = 100
    idle_timeout_s: int = 30
    fast_idle_timeout_s: float = IDLE_TIMEOUT_S  # a fast-channel client that sends nothing
    id_policy: str = "sequential"
    max_domid: int = 0x7FEF
    name: str = "xend"
    #: On stopping: how long requests in flight may take to finish, and the worker
    #: threads to end (each), before their connections are closed.
    shutdown_grace_s: float = 5.0

    @property
    def socket_path(self) -> Path | None:
        if self.no_unix:
            return None
        return self.unix_socket or self.state_dir / "xend.sock"

    @property
    def fast_socket_path(self) -> Path:
        return self.state_dir / "fast.sock"

    @property
    def table_path(self) -> Path:
        return self.state_dir / "table"


class _Keeper:
    """The store as the host's keeper (its first observer): a commit it refuses is
    undone by the host and refused to the client. It says in the log when the store
    starts refusing and when it accepts again, and takes injected refusals (fault
    injection through the administration route). A change goes to the store whole:
    the managed domains' definitions it carries are written in the same transaction
    as its domains, so a refused definition is undone with the rest."""

    def __init__(self, store: HostStore, say: Callable[[str], None]) -> None:
        self._store = store
        self._say = say
        self._refuse = 0
        self._spare = 0  # commits still accepted before the refusals begin
        self._failing = False

    def refuse(self, count: int, after: int = 0) -> None:
        """Accept ``after`` more commits, then refuse ``count``, as a store that cannot
        write would (``after`` N-1, ``count`` 1: the Nth commit from now)."""
        self._spare, self._refuse = after, count

    def commit(self, change: HostChange) -> None:
        try:
            if self._spare:
                self._spare -= 1
            elif self._refuse:
                self._refuse -= 1
                raise OperationFailedError(
                    f"cannot save the host's state to {str(self._store.path)!r}: the commit "
                    "was refused on purpose (fault injection)", op="commit")
            self._store.commit(change)
        except XvirtError as exc:
            if not self._failing:
                self._failing = True
                self._say(f"{exc.message}: refusing changes until the state can be stored "
                          "again; reads are still served")
            raise
        if self._failing:
            self._failing = False
            self._say("the host's state can be stored again: accepting changes")


class _TableMirror:
    """Keeps the shared table equal to the host, inside each request (an observer)."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer

    def commit(self, change: HostChange) -> None:
        stalled = change.stalled
        rows = [LiveRow(d.id, d.uuid, d.state, d.memory_kib, d.max_memory_kib, d.vcpus,
                        d.cpu_ns, d.since, d.rate, d.uuid in stalled) for d in change.domains]
        self.writer.publish(change.boot_id, change.generation, rows, change.vacated_ids,
                            reset=change.reset)


class _FastSource:
    """What the fast-channel socket answers from."""

    def __init__(self, host: HostModel, table_path: str, instance: str) -> None:
        self._host = host
        self.table_path = table_path
        self.instance = instance

    def data_snapshot(self) -> TableSnapshot:
        return self._host.data_snapshot()

    def data_info(self, domid: int) -> IdAnswer:
        return self._host.data_info(domid)


def read_token(path: Path) -> str:
    """The bearer token: the file's first non-blank line, of at least 16 characters (the
    file is read only so far: see xvirt.model.read_token_file)."""
    token = read_token_file(path)
    if len(token) < 16:
        raise InvalidArgumentError(
            f"token file {str(path)!r} must hold a token of at least 16 characters")
    return token


@dataclass
class _Listener:
    """One listener's own waitress socket map and worker pool: waitress counts a
    server's connections in its map, so separate maps are separate limits."""

    name: str
    map: dict[int, Any]
    dispatcher: ThreadedTaskDispatcher
    server: Any = None


class _AllMaps(Mapping[int, Any]):
    """Every listener's socket map, read as one by the single poll loop (``poll2``
    reads ``items``, ``get`` and truth); each server still counts only its own."""

    def __init__(self, listeners: list[_Listener]) -> None:
        self._listeners = listeners

    def __getitem__(self, fd: int) -> Any:
        for listener in self._listeners:
            if fd in listener.map:
                return listener.map[fd]
        raise KeyError(fd)

    def __iter__(self) -> Iterator[int]:
        return iter([fd for listener in self._listeners for fd in listener.map])

    def __len__(self) -> int:
        return sum(len(listener.map) for listener in self._listeners)


class Daemon:
    """One host daemon. ``start`` binds everything; ``serve`` runs until ``stop``."""

    def __init__(self, config: DaemonConfig, *, log: TextIO = sys.stderr) -> None:
        self.config = config
        self._log = log
        self._stop = threading.Event()
        self._lockfd: int | None = None
        self._listeners: list[_Listener] = []
        self._maps = _AllMaps(self._listeners)
        self._unix_identity: tuple[int, int] | None = None  # (st_dev, st_ino) we bound
        self._fast: FastChannelServer | None = None
        self._writer: TableWriter | None = None
        self._store: HostStore | None = None
        self._ticker: threading.Thread | None = None
        self._partial: dict[int, tuple[object, float]] = {}  # fd -> (request, first seen)
        self.host: HostModel | None = None
        self.tcp_address: tuple[str, int] | None = None

    def say(self, message: str) -> None:
        print(f"xvirt daemon: {message}", file=self._log, flush=True)

    # -- start --------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        if not 0 <= cfg.control_latency_ms <= MAX_WAIT_S * 1000:  # also refuses NaN, inf
            raise InvalidArgumentError(
                f"control latency must be a number of ms in 0..{MAX_WAIT_S * 1000:.0f}, "
                f"not {cfg.control_latency_ms}")
        if cfg.workers < 1 or cfg.connection_limit < 1:
            raise InvalidArgumentError("workers and connection limit must be at least 1")
        if cfg.tcp is None and cfg.no_unix:
            raise InvalidArgumentError("nothing to listen on: give --listen or keep the "
                                       "unix socket")
        token = read_token(cfg.token_file) if cfg.token_file else None
        try:
            cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if cfg.state_dir.stat().st_mode & 0o077:
                # The host's state, its images and the table are the daemon's alone; the
                # files in it follow the umask, so the directory is what keeps them private.
                cfg.state_dir.chmod(0o700)
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot use state directory {str(cfg.state_dir)!r}: {exc.strerror}") from None
        self._lock_state_dir()
        try:
            self._claim_paths()
        except BaseException:
            self._unlock()
            raise
        host, keeper = self._open_host()
        instance = str(uuidlib.uuid4())
        retire_abandoned(str(cfg.table_path))  # a killed daemon's readers must let go
        self._writer = TableWriter(str(cfg.table_path))
        mirror = _TableMirror(self._writer)
        state = host.state()
        self._writer.publish(state.boot_id, state.generation,
                             [LiveRow(d.id, d.uuid, d.state, d.memory_kib, d.max_memory_kib,
                                      d.vcpus, d.cpu_ns, d.since, d.rate)
                              for d in state.domains], (), reset=True)
        host.add_observer(mirror)
        if cfg.reboot_host:
            host.reboot_host()
            self.say(f"host rebooted: new boot identity {host.boot_id}")
        self._fast = FastChannelServer(
            str(cfg.fast_socket_path), _FastSource(host, str(cfg.table_path), instance),
            idle_timeout=cfg.fast_idle_timeout_s)
        self._fast.start()
        settings = ControlSettings(
            token=token, control_latency_s=cfg.control_latency_ms / 1000.0,
            fast_socket=str(cfg.fast_socket_path), table_path=str(cfg.table_path),
            instance=instance, max_event_waiters=max(1, cfg.workers // 2),
            refuse_commits=keeper.refuse)
        self._bind(host, settings)
        self._ticker = threading.Thread(target=self._tick, name="xvirt-ticker", daemon=True)
        self._ticker.start()
        where = []
        if cfg.socket_path:
            where.append(f"unix:{cfg.socket_path}")
        if self.tcp_address:
            where.append(f"http://{self.tcp_address[0]}:{self.tcp_address[1]}")
        self.say(f"serving host {host.boot_id} ({len(state.domains)} domains running, "
                 f"{len(state.definitions)} defined, generation "
                 f"{host.generation}) on {', '.join(where)}; state in {cfg.state_dir}")

    def _lock_state_dir(self) -> None:
        """One daemon per state directory; the lock dies with the process (kill -9 too)."""
        path = self.config.state_dir / "lock"
        try:  # never through a symbolic link, never anything but a regular file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot use lock file {str(path)!r}: {_what_is_at(path)} is there "
                f"({exc.strerror})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgumentError(
                    f"cannot use lock file {str(path)!r}: {_what_is_at(path)} is there")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise InvalidArgumentError(
                    f"another daemon serves state directory {str(self.config.state_dir)!r}"
                ) from None
            raise
        except BaseException:
            os.close(fd)
            raise
        self._lockfd = fd

    def _unlock(self) -> None:
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None

    def _claim_paths(self) -> None:
        """Make sure every path the daemon is about to create holds nothing but what a
        daemon of this state directory left there (a socket no one listens on, an old
        table): anything else is refused with its name, never replaced. Called with
        the state directory's lock held, so no daemon of ours is starting beside us."""
        cfg = self.config
        if cfg.socket_path is not None:
            _claim_socket_path(cfg.socket_path, "control socket")
        _claim_socket_path(cfg.fast_socket_path, "fast-channel socket")
        _claim_table_path(cfg.table_path)

    def _open_host(self) -> tuple[HostModel, _Keeper]:
        cfg = self.config
        store = HostStore(cfg.state_dir)
        self._store = store
        saved = store.load()
        for line in store.repairs:
            self.say(f"state: {line}")
        demo_mark = cfg.state_dir / _DEMO_MARK
        # The demo host is the embedded demo's machine (64 GiB); an empty one is sized
        # for its ID space (HostModel's default), so that the guests a caller makes fit.
        is_demo = demo_mark.exists() if saved is not None else not cfg.empty
        host = HostModel(cfg.name, clock=WallClock(), image_dir=cfg.state_dir / "images",
                         id_policy=cfg.id_policy, max_domid=cfg.max_domid,
                         memory_kib=demo.MEMORY_KIB if is_demo else None)
        self.host = host
        keeper = _Keeper(store, self.say)
        if saved is not None:
            self._recover_images(saved)
            try:
                host.load(saved)
            except XvirtError as exc:
                raise InvalidArgumentError(
                    f"state file {str(store.path)!r} cannot be loaded: {exc.message}") from None
            if demo_mark.exists():
                host.add_ticker(demo.BatchChurn.resume(host))
            host.add_observer(keeper)
            host.restart_daemon()
            self.say(f"resumed host state (daemon start #{host.daemon_epoch})")
            return host, keeper
        if not cfg.empty:
            demo.populate(host, churn=True)
            demo_mark.write_text("demo content with batch churn\n")
        store.save(host.state())
        host.add_observer(keeper)
        return host, keeper

    def _recover_images(self, saved: HostState) -> None:
        """Settle or undo the image of a save the last daemon was killed in the middle
        of, from what its store committed (see ``images``; a restore leaves its image
        and stages nothing, though an older daemon's may have)."""
        live = {d.uuid for d in saved.domains}
        for line in ImageStore(self.config.state_dir / "images").recover(live):
            self.say(f"images: {line}")

    def _bind(self, host: HostModel, settings: ControlSettings) -> None:
        """A server per listener, each with its own socket map and worker pool, so each
        has its own connection limit and idle timeout: any number of TCP clients,
        idle or busy, leaves the unix socket (the administrator's path) its slots."""
        cfg = self.config
        common: dict[str, Any] = dict(
            # waitress counts its listener and its wake-up pipe in the map as well
            connection_limit=cfg.connection_limit + 2,
            channel_timeout=cfg.idle_timeout_s, max_request_body_size=MAX_BODY,
            max_request_header_size=64 * 1024, ident="xvirt", clear_untrusted_proxy_headers=True,
            asyncore_use_poll=True, cleanup_interval=max(1, min(cfg.idle_timeout_s, 30) // 2),
        )
        if cfg.socket_path:
            listener = self._listener("unix")
            sock = self._bind_unix(cfg.socket_path)
            listener.server = create_server(
                self._closing(ControlApp(host, settings, trusted=True)), map=listener.map,
                _dispatcher=listener.dispatcher, sockets=[sock], **common)
        if cfg.tcp:
            listener = self._listener("tcp")
            server = create_server(self._closing(ControlApp(host, settings, trusted=False)),
                                   map=listener.map,
                                   _dispatcher=listener.dispatcher, host=cfg.tcp[0],
                                   port=cfg.tcp[1], **common)
            listener.server = server
            host_, port = server.getsockname()  # type: ignore[union-attr]
            self.tcp_address = (str(host_), int(port))

    def _closing(self, app: ControlApp) -> Callable[[dict[str, Any], StartResponse], list[bytes]]:
        """``app``, whose answers close their connection once the daemon is stopping: a
        client polling for events on a kept-alive connection would otherwise be served
        poll after poll until the connection is cut under one."""
        stopping = self._stop

        def serve(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
            if not stopping.is_set():
                return app(environ, start_response)

            def closing(status: str, headers: list[tuple[str, str]]) -> Any:
                return start_response(status, [*headers, ("Connection", "close")])

            return app(environ, closing)

        return serve

    def _listener(self, name: str) -> _Listener:
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(self.config.workers)
        listener = _Listener(name, {}, dispatcher)
        self._listeners.append(listener)
        return listener

    def _bind_unix(self, path: Path) -> socket.socket:
        """The control socket, bound here (not by waitress, which removes any socket in
        the way): mode 0600 before it listens, and its identity kept so shutdown
        removes this file and no other."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)  # nobody can connect before listen(): no window
            info = os.lstat(path)
        except OSError as exc:
            sock.close()
            raise InvalidArgumentError(
                f"cannot create control socket {str(path)!r}: {exc.strerror or exc}") from None
        self._unix_identity = (info.st_dev, info.st_ino)
        return sock

    def _tick(self) -> None:
        host = self.host
        assert host is not None
        while not self._stop.wait(TICK_S):
            with contextlib.suppress(XvirtError):
                host.tick()

    # -- run and stop ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def serve(self) -> None:
        """Run the server loop until ``stop`` (or a signal); then shut down gracefully."""
        next_sweep = 0.0
        while not self._stop.is_set():
            wasyncore.poll2(0.2, self._maps)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_S
                self._sweep(now)
        self._shutdown()

    def _sweep(self, now: float) -> None:
        """Cut connections that hold a slot without using it: idle ones, and ones whose
        request has been arriving for longer than the idle timeout (a client sending a
        byte at a time keeps waitress's own idle clock fresh, and would hold its slot
        for ever). A request being served or an answer being sent is never cut. Each
        connection is judged by its own listener's idle timeout."""
        seen: dict[int, tuple[object, float]] = {}
        for fd, channel in list(self._maps.items()):
            if not isinstance(channel, HTTPChannel) or channel.will_close:
                continue
            timeout = float(channel.adj.channel_timeout)
            if channel.requests or channel.total_outbufs_len:
                continue  # busy: a worker has it, or its answer is going out
            partial = channel.request
            if partial is None:
                # idle between requests: waitress's wall-clock stamp of the last byte
                if time.time() - channel.last_activity > timeout:
                    channel.will_close = True
                continue
            first = self._partial.get(fd)
            started = first[1] if first is not None and first[0] is partial else now
            seen[fd] = (partial, started)
            if now - started > timeout:
                channel.will_close = True
        self._partial = seen

    def stop(self) -> None:
        self._stop.set()

    def _shutdown(self) -> None:
        for listener in self._listeners:
            if listener.server is not None:
                # stop accepting; waitress's own close() would close its wake-up pipe
                # too, which the workers still finishing requests pull (close_all
                # closes it once they are done)
                wasyncore.dispatcher.close(listener.server)
        if self.host is not None:
            self.host.end_waits()  # event long polls answer now, with what they have
        # let requests in flight finish and their answers go out
        grace = self.config.shutdown_grace_s
        until = time.monotonic() + grace
        while time.monotonic() < until and any(getattr(ch, "requests", None) or getattr(
                ch, "total_outbufs_len", 0) for ch in list(self._maps.values())):
            wasyncore.poll2(0.1, self._maps)
        for listener in self._listeners:
            listener.dispatcher.shutdown(cancel_pending=True, timeout=grace)  # type: ignore[arg-type]
            wasyncore.close_all(listener.map)
        if self._fast is not None:
            self._fast.close()
        if self._writer is not None:
            self._writer.close()  # marks the table retired: readers stop answering from it
        if self.host is not None:
            self.host.close()
        if self._store is not None:
            self._store.close()
        path = self.config.socket_path
        if path is not None and self._unix_identity is not None:
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if (info.st_dev, info.st_ino) == self._unix_identity:  # ours, not a newcomer
                    path.unlink()
        self._unlock()
        self.say("stopped")


def _what_is_at(path: Path) -> str:
    """What stands at ``path``, in words, for an error that names it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "nothing"
    except OSError as exc:
        return f"something that cannot be examined ({exc.strerror})"
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISLNK, "a symbolic link"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((word for test, word in kinds if test(mode)), "a special file")


def _claim_socket_path(path: Path, what: str) -> None:
    """Make ``path`` free for a new socket: remove a socket no one listens on (a killed
    daemon's); refuse anything else, a live socket or anything not a socket (a file
    given by mistake to ``--unix`` is never deleted), with an error naming both."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot use {str(path)!r} as the {what}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise InvalidArgumentError(
            f"refusing to replace {str(path)!r} with the {what}: {_what_is_at(path)} is "
            "there, not a stale socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except ConnectionRefusedError:
        os.unlink(path)  # stale: its server is gone
        return
    except FileNotFoundError:
        return  # gone meanwhile
    except OSError as exc:  # a busy server (timeout), a socket we may not use: not stale
        raise InvalidArgumentError(
            f"refusing to replace {str(path)!r} with the {what}: a socket that did not "
            f"refuse a connection is there ({exc.strerror or type(exc).__name__})") from None
    finally:
        probe.close()
    raise InvalidArgumentError(f"another server is listening on {str(path)!r} (the {what})")


def _claim_table_path(path: Path) -> None:
    """The table is replaced by a rename, which would silently drop whatever stood
    there: only nothing, an empty file or an xvirt table (a killed daemon's) may be."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidArgumentError(f"cannot use {str(path)!r} as the table: "
                                   f"{exc.strerror}") from None
    if stat.S_ISREG(mode):
        try:
            with open(path, "rb") as f:
                head = f.read(len(TABLE_MAGIC))
        except OSError as exc:
            raise InvalidArgumentError(f"cannot use {str(path)!r} as the table: "
                                       f"{exc.strerror}") from None
        if head in (b"", TABLE_MAGIC):
            return
        raise InvalidArgumentError(
            f"refusing to replace {str(path)!r} with the table: a regular file that is "
            "not an xvirt table is there")
    raise InvalidArgumentError(f"refusing to replace {str(path)!r} with the table: "
                               f"{_what_is_at(path)} is there")


def run(config: DaemonConfig, *, on_ready: Callable[[Daemon], None] | None = None) -> int:
    """The ``xvirt daemon`` command: start, serve until signalled, stop."""
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    daemon.start()
    if on_ready is not None:
        on_ready(daemon)
    daemon.serve()
    return 0
