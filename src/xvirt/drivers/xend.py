"""The xend driver: a host daemon over HTTP in xend's shape, plus its fast channel.

* Control plane: httpx, keep-alive, over TCP (``xend://host:port``) or the
  daemon's unix socket (``xend+unix:///path``). A single lookup is the request
  libvirt's xend driver made (``GET /xend/domain/<key>?detail=1``); several at
  once are one ``POST /xvirt/resolve`` (C5); every op carries
  ``expected_uuid`` so the daemon checks and acts in one step (C4).
* Data plane: the daemon's shared-memory table read in place (no round trip),
  with the fast-channel socket held open so a dead daemon is noticed within
  ``LIVENESS_S`` (a dead daemon's table stays true: only a daemon changes the
  host, and a new one retires the old table before it serves). ``fast=socket``
  asks the socket instead, and ``fast=http`` (or a daemon on another machine)
  uses ``/xvirt/table`` over HTTP. A table found cut short or corrupt is left for
  the socket (until the fast channel is found again: a new daemon, a new table),
  and a fast channel that refuses this client (every slot taken: ERROR BUSY, or
  a socket this user may not open) for HTTP, retried every ``FAST_RETRY_S``;
  both are counted in ``counters.data_fallbacks``. While it reads the table the
  driver pings the socket every ``KEEPALIVE_S``, so the daemon does not close it
  as idle.
* Managed domains, as libvirt's xend driver reached them: one domain by UUID or
  name is ``GET /xend/domain/<key>?detail=1`` (a silent 404 is None; a record
  without ``domid`` is a domain defined and not running), the defined ones
  ``GET /xend/domain?state=halted&detail=1``, and ``op=new`` (a ``(vm ...)``
  config), ``op=start`` and ``op=delete`` (by UUID) the changes: one request each.
* Events: ``GET /xvirt/events?after=N`` long polls (a longer wait is several polls).
* The image directory comes from the node record's ``xvirt_image_dir``
  extension: read from any ``host_info()``, or fetched (one control request)
  the first time ``image_dir`` is asked before any; real xend has none (None).

Errors of httpx, sockets and the wire format are translated here, never
leaked; a string HTTP cannot carry as UTF-8 (a lone surrogate) is refused here
too. Reads are retried until the daemon answers again or ``timeout``
seconds pass (then HostUnreachableError with the URI), once the daemon has
answered this driver: before that, a missing socket, a refused connection or a
socket we may not open is HostUnreachableError at once, with the system's
reason (a daemon being restarted is ridden out; one never reached is not
waited for). A mutation is sent on a
fresh connection and retried only if it was never sent, so a restart can never
make the daemon apply it twice.
"""

from __future__ import annotations

import errno
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import quote, urlencode

import httpx

from xvirt.clock import Clock, SystemClock
from xvirt.drivers.base import (
    CONNECTION_LOST,
    Driver,
    PlaneCounters,
    check_sendable,
    sendable,
)
from xvirt.drivers.closing import close_when_free
from xvirt.errors import (
    AuthError,
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ProtocolError,
    ReadOnlyError,
    UnsupportedError,
    XvirtError,
)
from xvirt.model import (
    Affect,
    DomainMetadata,
    DomainSettings,
    HostCapabilities,
    HostInfo,
    MetadataKind,
    NodeCpuStats,
    NodeMemoryStats,
    SchedulerParams,
    VcpuInfo,
    guest_types,
    parse_uuid,
)
from xvirt.planes import (
    Census,
    Definition,
    DomainConfig,
    EventBatch,
    IdAnswer,
    IdOwner,
    Op,
    Resolution,
    Resolved,
    TableSnapshot,
)
from xvirt.stats import DomainStats, StatGroup
from xvirt.wire import records, sxp
from xvirt.wire.dataplane import parse_table
from xvirt.wire.events import parse_events
from xvirt.wire.fastchannel_client import FastChannelClient, FastChannelRefused
from xvirt.wire.stats_codec import decode_stats, encode_groups
from xvirt.wire.table_reader import TableReader

__all__ = ["XendDriver"]

T = TypeVar("T")
FAST_MODES = ("auto", "table", "socket", "http")
#: xend:// is plain HTTP, so TLS is never used; handing httpx this (secure-default,
#: empty) context spares it loading the CA bundle, which costs ~40 ms per client.
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
#: The largest answer parsed. A resolve of every domain of the largest host (32 751,
#: each with its configuration, about 330 bytes) is some 11 MB: the parser's default
#: (4 MiB, sized for requests) would refuse it; a bound stays against a runaway server.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: The shortest wait for an answer, so that ``timeout=0`` still lets one be read.
MIN_READ_S = 0.1
#: How long a liveness check of the daemon holds on the fast path.
LIVENESS_S = 0.05
#: A table reader pings the fast-channel socket this often, well inside the daemon's
#: idle timeout (120 s by default), so the daemon does not close it as idle.
KEEPALIVE_S = 30.0
#: How long data-plane calls go over HTTP after the fast channel refused this client
#: (every slot taken), before the driver asks for a slot again.
FAST_RETRY_S = 5.0
#: Connection failures that mean nothing is there to wait for, when the daemon has never
#: answered this driver: a missing socket (or path), a refused connection, no permission.
_NOBODY_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ECONNREFUSED, errno.EACCES,
                           errno.EPERM})
#: The longest wait one long poll for events asks (the daemon refuses more, and may answer
#: sooner): a longer timeout is several polls.
MAX_POLL_S = 3600.0
#: The pause before polling again when the daemon answered a long poll at once (it does
#: when too many clients wait), so that a busy daemon is not polled in a tight loop.
POLL_PAUSE_S = 0.25

_OPS: dict[Op, dict[str, str]] = {
    Op.PAUSE: {"op": "pause"},
    Op.RESUME: {"op": "unpause"},
    Op.SHUTDOWN: {"op": "shutdown", "reason": "poweroff"},
    Op.REBOOT: {"op": "shutdown", "reason": "reboot"},
    Op.DESTROY: {"op": "destroy"},
    Op.SAVE: {"op": "save"},
    Op.RENAME: {"op": "rename"},
    Op.MIGRATE: {"op": "migrate", "destination": "localhost"},
}
_ARG_FIELD = {Op.SAVE: "file", Op.RENAME: "name"}
#: The most domains a statistics request names in its query; more are asked as all.
STATS_UUIDS_IN_QUERY = 64

_ERRORS: dict[str, type[XvirtError]] = {
    "no-domain": NoDomainError,
    "invalid": InvalidArgumentError,
    "auth": AuthError,
    "failed": OperationFailedError,
    "unsupported": UnsupportedError,
    "protocol": ProtocolError,
    "not-found": UnsupportedError,
}


#: ``affect=`` as the daemon reads it.
_AFFECT_FIELD = {Affect.CURRENT: "current", Affect.LIVE: "live", Affect.CONFIG: "config",
                 Affect.LIVE | Affect.CONFIG: "both"}


def _affect(affect: Affect) -> str:
    if not isinstance(affect, Affect):
        raise InvalidArgumentError(f"affect must be an Affect, not {affect!r}")
    return _AFFECT_FIELD[affect]


def _census(reader: TableReader, _domid: int) -> Census:
    return reader.census()


class _Transient(Exception):
    """The daemon could not be reached for this attempt; safe to try again.

    ``nobody`` is the system's reason when the connection itself was refused (see
    ``_NOBODY_THERE``): a daemon never reached is then reported at once."""

    def __init__(self, message: str, nobody: str | None = None) -> None:
        super().__init__(message)
        self.nobody = nobody


def _nobody_there(exc: BaseException) -> str | None:
    """The system's reason when ``exc`` (or what caused it: httpx wraps the OSError
    twice) is a missing socket, a refused connection or a permission denied."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; never loop on a cyclic one
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _NOBODY_THERE:
            return seen.strerror or os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


class XendDriver(Driver):
    def __init__(
        self,
        uri: str,
        *,
        base_url: str = "http://localhost:8000",
        unix_socket: str | None = None,
        readonly: bool = False,
        token: str | None = None,
        timeout: float = 10.0,
        fast: str = "auto",
        clock: Clock | None = None,
    ) -> None:
        if fast not in FAST_MODES:
            raise InvalidArgumentError(
                f"fast must be one of {', '.join(FAST_MODES)}, not {fast!r}", uri=uri)
        self.uri = uri
        self.readonly = readonly
        self.counters = PlaneCounters()
        self._token = token
        self._timeout = timeout
        self._fast_mode = fast
        self._clock = clock or SystemClock()
        self._base_url = base_url
        self._unix_socket = unix_socket
        try:
            self._http = self._client(keepalive=True)
        except httpx.InvalidURL as exc:  # a host name httpx cannot encode (IDNA)
            raise InvalidArgumentError(f"invalid daemon address in {uri!r}: {exc}",
                                       uri=uri) from None
        self._data_lock = threading.Lock()
        self._reader: TableReader | None = None
        self._fast: FastChannelClient | None = None
        self._remote_data = fast == "http"
        self._alive_at = float("-inf")
        self._reached = False  # has the daemon ever answered? (see _retrying)
        self._fast_retry_at = float("-inf")  # no fast channel before this (it refused us)
        self._faulty: list[TableReader] = []  # tables found short or corrupt, closed later
        #: Why the last data-plane fallback happened (counters.data_fallbacks counts them).
        self.fallback_reason: str | None = None
        self._closed = False
        self._image_dir: str | None = None
        self._image_dir_known = False
        self._image_dir_lock = threading.Lock()

    def _client(self, *, keepalive: bool) -> httpx.Client:
        limits = httpx.Limits(max_keepalive_connections=8 if keepalive else 0)
        transport = httpx.HTTPTransport(uds=self._unix_socket, limits=limits, retries=0,
                                        verify=_NO_TLS)
        return httpx.Client(
            transport=transport, base_url=self._base_url, verify=_NO_TLS,
            # an answer that does not come within the URI's timeout is not coming: a
            # stalled daemon must not hold the caller for longer (a long poll sets its own)
            timeout=httpx.Timeout(max(self._timeout, MIN_READ_S),
                                  connect=min(2.0, self._timeout + 0.1)),
            headers={"Accept-Encoding": "identity", "Accept": "application/sxp"},
        )

    # -- plumbing -------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it gets through or ``timeout`` seconds have passed."""
        deadline = self._clock.now() + self._timeout
        pause = 0.02
        while True:
            try:
                return attempt()
            except _Transient as exc:
                if self._closed:
                    raise HostUnreachableError("the driver is closed", uri=self.uri) from None
                if exc.nobody is not None and not self._reached:
                    # Never reached: nothing is there to ride out (only a daemon that
                    # answered before gets the wait: C8), so say so now, and why.
                    raise HostUnreachableError(
                        f"cannot connect to the xend daemon at "
                        f"{self._unix_socket or self._base_url}: {exc.nobody}",
                        uri=self.uri) from None
                if self._clock.now() + pause > deadline:
                    raise HostUnreachableError(
                        f"the xend daemon did not answer within {self._timeout:g} s ({exc})",
                        uri=self.uri) from None
                self._clock.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _send(self, method: str, path: str, *, params: dict[str, str] | None = None,
              form: list[tuple[str, str]] | None = None, mutation: bool = False,
              read_timeout: float | None = None) -> httpx.Response:
        """One HTTP exchange; transport failures become _Transient when a retry is safe."""
        headers = {}
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if mutation and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = urlencode(form).encode("ascii") if form is not None else None
        timeout = httpx.Timeout(read_timeout + 5.0, connect=2.0) if read_timeout else None
        if mutation:
            # a fresh connection: a failure to connect means the request was never sent
            with self._client(keepalive=False) as client:
                try:
                    response = client.request(method, path, params=params, content=body,
                                              headers=headers)
                    self._reached = True
                    return response
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise _Transient(str(exc) or type(exc).__name__,
                                     _nobody_there(exc)) from None
                except httpx.TransportError as exc:
                    # The dead daemon's table may miss this very change (it may be
                    # committed, not yet published): later reads must wait for the
                    # next daemon, or a caller re-checking would be told it failed.
                    self._drop_fast()
                    raise OperationFailedError(
                        f"the daemon went away before answering; the outcome of {path} is "
                        f"unknown ({type(exc).__name__})", uri=self.uri) from None
        try:
            if timeout is None:
                response = self._http.request(method, path, params=params, content=body,
                                              headers=headers)
            else:
                response = self._http.request(method, path, params=params, content=body,
                                              headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__, _nobody_there(exc)) from None
        except RuntimeError as exc:  # the client was closed under us
            raise HostUnreachableError(f"the driver is closed ({exc})", uri=self.uri) from None
        self._reached = True
        return response

    def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
              form: list[tuple[str, str]] | None = None, mutation: bool = False,
              read_timeout: float | None = None, op: str | None = None,
              silent_404: bool = False) -> tuple[httpx.Response, sxp.Sx | None]:
        response = self._retrying(lambda: self._send(
            method, path, params=params, form=form, mutation=mutation,
            read_timeout=read_timeout))
        if response.status_code == 404 and silent_404:
            return response, None
        if response.status_code >= 300 or "X-Xvirt-Error" in response.headers:
            raise self._error(response, path, op)
        text = response.content
        try:
            return response, (sxp.parse(text, max_bytes=MAX_ANSWER_BYTES) if text.strip()
                              else None)
        except ProtocolError as exc:
            raise self._stamped(exc) from None

    def _stamped(self, exc: XvirtError) -> XvirtError:
        """``exc`` naming this driver's URI: the wire-format parsers know no URI."""
        if exc.uri is None:
            exc.uri = self.uri
        return exc

    def _error(self, response: httpx.Response, path: str, op: str | None) -> XvirtError:
        kind = response.headers.get("X-Xvirt-Error", "")
        message = response.text.strip()
        try:
            parsed = records.parse_error(sxp.parse(response.content)) if message else None
        except ProtocolError:
            parsed = None
        message = parsed or message or f"HTTP {response.status_code}"
        cls = _ERRORS.get(kind)
        if cls is None:
            cls = OperationFailedError if response.status_code >= 500 else ProtocolError
            message = f"{path}: HTTP {response.status_code}: {message}"
        if response.status_code == 401:
            cls = AuthError
        return cls(message, uri=self.uri, op=op)

    def _meta(self, response: httpx.Response) -> tuple[str, int]:
        boot = response.headers.get("X-Xvirt-Boot")
        gen = response.headers.get("X-Xvirt-Generation", "")
        if not boot or not gen.isdigit():
            raise ProtocolError(
                "the answer lacks the boot identity and generation headers (is this an "
                "xvirt daemon?)", uri=self.uri)
        return boot, int(gen)

    # -- data plane ---------------------------------------------------------------------------

    def _data(self, ask: Callable[[], T]) -> T:
        self.counters.data()
        return self._retrying(lambda: self._data_attempt(ask))

    def _data_attempt(self, ask: Callable[[], T]) -> T:
        try:
            fast = self._fast
            if fast is not None and not fast.alive():
                # Closed by the daemon (idle too long) or the daemon is gone: find out
                # which now (a new slot, or a failing HTTP request), not after a pause.
                self._drop_fast()
            if (self._reader is None and self._fast is None and not self._remote_data
                    and self._clock.now() >= self._fast_retry_at):
                self._discover()
            answer = ask()
            fast = self._fast
            if fast is not None and not fast.alive():
                raise HostUnreachableError("the fast channel closed", uri=self.uri)
            return answer
        except CONNECTION_LOST as exc:
            self._drop_fast()
            raise _Transient(exc.message) from None
        except ProtocolError as exc:
            self._drop_fast()
            raise self._stamped(exc) from None

    def _discover(self) -> None:
        """Find the fast channel (one HTTP request); fall back to HTTP when it is not
        on this machine."""
        with self._data_lock:
            if self._reader is not None or self._fast is not None:
                return
            response = self._send("GET", "/xvirt/fast")
            if response.status_code != 200:
                raise self._error(response, "/xvirt/fast", None)
            rec = sxp.parse(response.content)
            socket_path = sxp.value(rec, "fast/socket")
            if not socket_path or not os.path.exists(socket_path):
                self._remote_data = True  # another machine's daemon: HTTP it is
                return
            try:
                fast = FastChannelClient(socket_path, uri=self.uri, timeout=2.0)
            except FastChannelRefused as exc:
                # Every slot taken (or a socket not ours to open): HTTP answers the same
                # questions; ask for a slot again after FAST_RETRY_S.
                self._fast_retry_at = self._clock.now() + FAST_RETRY_S
                self.fallback_reason = exc.message
                return
            try:
                if self._fast_mode in ("auto", "table"):
                    table = fast.hello.table_path
                    try:
                        self._reader = TableReader(table, uri=self.uri)
                    except (ProtocolError, HostUnreachableError) as exc:
                        self.fallback_reason = exc.message  # cut short, or not ours: socket
            except BaseException:
                fast.close()
                raise
            self._fast = fast

    def _drop_fast(self) -> None:
        with self._data_lock:
            self._release_fast()

    def _release_fast(self) -> None:
        """(Data lock held) Close the table and the fast channel."""
        if self._reader is not None:
            self._reader.close()
        for faulty in self._faulty:
            faulty.close()
        if self._fast is not None:
            self._fast.close()
        self._reader = None
        self._faulty.clear()
        self._fast = None

    def _table_fault(self, reader: TableReader, exc: ProtocolError) -> None:
        """The table is cut short or corrupt: leave it to the socket, which answers the
        same questions from the daemon's host model, until the fast channel is found
        again (a new daemon maps a new table). Never a signal, never a wrong answer."""
        with self._data_lock:
            if self._reader is reader:
                self._reader = None
                self._faulty.append(reader)  # another thread may be reading it: close later
        self.fallback_reason = exc.message

    def _fell_back(self, *, socket: bool) -> None:
        """Count a data-plane call answered on a slower channel than the usual one."""
        if (self._fast_mode == "socket") if socket else self._remote_data:
            return
        self.counters.fallback()

    def snapshot(self) -> TableSnapshot:
        def ask() -> TableSnapshot:
            reader = self._reader
            if reader is not None:
                try:
                    return reader.snapshot()
                except ProtocolError as exc:
                    self._table_fault(reader, exc)
            fast = self._fast
            if fast is not None:
                self._fell_back(socket=True)
                return fast.snapshot()
            self._fell_back(socket=False)
            _response, rec = self._call("GET", "/xvirt/table")
            return parse_table(rec, self.uri)
        return self._data(ask)

    def _from_table(self, read: Callable[[TableReader, int], T], domid: int) -> T | None:
        """The hot path: one read of the shared table, or None for the slow path.

        The answer is true even if the daemon just died (nothing else changes
        the host, and a new daemon retires the table before serving); whether
        the daemon lives is checked at most every LIVENESS_S, so a dead one is
        reported promptly."""
        reader, fast = self._reader, self._fast
        if reader is None or fast is None:
            return None
        try:
            answer = read(reader, domid)  # fixed arity: *args forwarding costs 0.4 us
        except CONNECTION_LOST:
            return None  # retired, gone or dropped by another thread: the slow path decides
        except OperationFailedError:  # a wedged domain: an answer, once the daemon lives
            if not fast.alive():
                return None
            self.counters.data()
            raise
        except ProtocolError as exc:  # cut short or corrupt: the socket answers instead
            self._table_fault(reader, exc)
            return None
        now = self._clock.now()
        if now - self._alive_at >= LIVENESS_S:
            if not fast.alive():
                return None
            try:
                fast.keepalive(KEEPALIVE_S)  # one clock read; a PING every KEEPALIVE_S
            except XvirtError:
                return None  # the slow path decides
            self._alive_at = now
        self.counters.data()
        return answer

    def domain_stats(self, groups: frozenset[StatGroup], uuids: Sequence[str] | None = None,
                     *, timeout_s: float | None = None) -> list[DomainStats]:
        """``GET /xvirt/stats`` (xvirt.wire.stats_codec): one data call, over HTTP
        whatever the fast channel (the table carries no statistics). More than
        STATS_UUIDS_IN_QUERY domains are asked as every domain and picked here, so the
        query stays short; a daemon without the route is UnsupportedError. The daemon
        answers from its host's records within its own per-domain timeout, which it
        does not take from the client: ``timeout_s`` is not sent."""
        self.counters.data()
        query: list[tuple[str, str]] = [("groups", encode_groups(groups))]
        few = uuids is not None and len(uuids) <= STATS_UUIDS_IN_QUERY
        if uuids is not None and few:
            query += [("uuid", u) for u in uuids]
        path = f"/xvirt/stats?{urlencode(query)}"
        response = self._retrying(lambda: self._send("GET", path))
        if response.status_code != 200 or "X-Xvirt-Error" in response.headers:
            raise self._error(response, "/xvirt/stats", "domain_stats")
        try:
            found = decode_stats(response.content)
        except ProtocolError as exc:
            raise self._stamped(exc) from None
        if uuids is None or few:
            return found
        wanted = set(uuids)
        return [s for s in found if s.uuid in wanted]

    def census(self) -> Census:
        # A sample starts with a listing: it always asks whether the daemon lives
        # (one poll, no round trip), so a loop notices a death at its next sample.
        self._alive_at = float("-inf")
        answer = self._from_table(_census, 0)
        return super().census() if answer is None else answer

    def identify(self, domid: int) -> IdOwner:
        answer = self._from_table(TableReader.owner, domid)
        return super().identify(domid) if answer is None else answer

    def info_by_id(self, domid: int) -> IdAnswer:
        answer = self._from_table(TableReader.info, domid)
        if answer is not None:
            return answer

        def ask() -> IdAnswer:
            reader = self._reader
            if reader is not None:
                try:
                    return reader.info(domid)
                except ProtocolError as exc:
                    self._table_fault(reader, exc)
            fast = self._fast
            if fast is not None:
                self._fell_back(socket=True)
                return fast.info(domid)
            self._fell_back(socket=False)
            _response, rec = self._call("GET", f"/xvirt/table/{domid}")
            table = parse_table(rec, self.uri)
            for miss in table.unanswered:
                if miss.id == domid:
                    raise miss.error
            return IdAnswer(table.boot_id, table.generation, table.rows[0] if table.rows else None)
        return self._data(ask)

    # -- control plane --------------------------------------------------------------------------

    def _resolution(self, response: httpx.Response, recs: Sequence[sxp.Sx]) -> Resolution:
        boot, gen = self._meta(response)
        domains = []
        for rec in recs:
            try:
                parsed = records.parse_domain_record(rec)
            except ProtocolError as exc:
                raise self._stamped(exc) from None
            if parsed.domid is None:
                continue  # inactive (managed) domains have no identity on the data plane
            domains.append(Resolved(parsed.domid, parsed.uuid, parsed.name, parsed.config()))
        return Resolution(boot, gen, tuple(domains))

    def _lookup(self, key: str) -> Resolution:
        """One domain the way libvirt's xend driver asked: one GET, a silent 404."""
        self.counters.control()
        response, rec = self._call("GET", f"/xend/domain/{key}", params={"detail": "1"},
                                   silent_404=True)
        return self._resolution(response, [rec] if rec is not None else [])

    def _resolve_form(self, form: list[tuple[str, str]]) -> Resolution:
        self.counters.control()
        response, rec = self._call("POST", "/xvirt/resolve", form=form)
        if not isinstance(rec, list) or not rec or rec[0] != "resolution":
            raise ProtocolError("expected a (resolution ...) answer", uri=self.uri)
        return self._resolution(response, rec[1:])

    def resolve(self, uuids: Sequence[str] = (), ids: Sequence[int] = ()) -> Resolution:
        if len(uuids) + len(ids) == 1:
            return self._lookup(uuids[0] if uuids else str(ids[0]))
        return self._resolve_form([("uuid", u) for u in uuids] + [("id", str(i)) for i in ids])

    def resolve_names(self, names: Sequence[str]) -> Resolution:
        # The daemon reads UTF-8: a name with a lone surrogate is no domain's name there.
        names = [n for n in names if sendable(n)]
        if len(names) == 1:
            answer = self._lookup(quote(names[0], safe=""))
            # xend also matches IDs and UUIDs: keep only a domain of that name
            return Resolution(answer.boot_id, answer.generation,
                              tuple(d for d in answer.domains if d.name == names[0]))
        return self._resolve_form([("name", n) for n in names])

    def list_all(self) -> Resolution:
        self.counters.control()
        response, rec = self._call("GET", "/xend/domain", params={"detail": "1"})
        if not isinstance(rec, list):
            raise ProtocolError("expected a list of domain records", uri=self.uri)
        return self._resolution(response, rec)

    def act(self, op: Op, domid: int, expected_uuid: str, arg: str | None = None) -> None:
        if self.readonly:
            raise ReadOnlyError(f"cannot {op.value}: the connection is read-only",
                                op=op.value, uri=self.uri)
        form = [*list(_OPS[op].items()), ("expected_uuid", expected_uuid)]
        if op in _ARG_FIELD:
            what = "the image name" if op is Op.SAVE else "the new name"
            form.append((_ARG_FIELD[op],
                         check_sendable(arg or "", what, uri=self.uri, op=op.value)))
        self.counters.control()
        try:
            self._call("POST", f"/xend/domain/{domid}", form=form, mutation=True, op=op.value)
        except XvirtError as exc:
            exc.domid, exc.uuid = domid, expected_uuid
            raise

    def restore(self, image: str) -> Resolution:
        if self.readonly:
            raise ReadOnlyError("cannot restore: the connection is read-only", op="restore",
                                uri=self.uri)
        check_sendable(image, "the image name", uri=self.uri, op="restore")
        self.counters.control()
        response, rec = self._call("POST", "/xend/domain/", form=[("op", "restore"),
                                                                 ("file", image)],
                                   mutation=True, op="restore")
        if rec is None:
            raise ProtocolError("restore answered without the domain's record", uri=self.uri)
        return self._resolution(response, [rec])

    # -- defined (managed) domains ------------------------------------------------------------

    def _definition(self, rec: sxp.Sx) -> Definition:
        """A ``(domain ...)`` record as a Definition; ``persistent`` from the daemon's
        ``xvirt_persistent`` (real xend: inactive means managed, active unknown: no)."""
        try:
            p = records.parse_domain_record(rec)
        except ProtocolError as exc:
            raise self._stamped(exc) from None
        return Definition(p.uuid, p.name, p.domid, bool(p.persistent), p.config())

    def _writable(self, op: str, *, name: str | None = None, uuid: str | None = None) -> None:
        if self.readonly:
            shown = None if name is None else name.encode("utf-8", "backslashreplace").decode()
            raise ReadOnlyError(f"cannot {op}: the connection is read-only", op=op,
                                uri=self.uri, name=shown, uuid=uuid)

    def _uuid(self, uuid: object, op: str) -> str:
        try:
            return parse_uuid(uuid)
        except InvalidArgumentError as exc:
            exc.uri, exc.op = self.uri, op
            raise

    def find(self, *, uuid: str | None = None, name: str | None = None) -> Definition | None:
        """libvirt's lookup: ``GET /xend/domain/<uuid or name>?detail=1``, a 404 None.

        xend also matches IDs and UUIDs by a name: only a domain of that very name (or
        UUID) is an answer. A name HTTP cannot carry (a lone surrogate) is no domain's
        name on the host: None, without a request, as lookups by name answer."""
        if (uuid is None) == (name is None):
            raise InvalidArgumentError("find takes exactly one of uuid and name",
                                       op="find", uri=self.uri)
        wanted = self._uuid(uuid, "find") if uuid is not None else None
        if wanted is not None:
            key = wanted
        elif name is not None and sendable(name):
            key = quote(name, safe="")
        else:
            return None
        self.counters.control()
        _response, rec = self._call("GET", f"/xend/domain/{key}", params={"detail": "1"},
                                    silent_404=True, op="find")
        if rec is None:
            return None
        found = self._definition(rec)
        matches = found.uuid == wanted if wanted is not None else found.name == name
        return found if matches else None

    def list_defined(self) -> tuple[Definition, ...]:
        """``GET /xend/domain?state=halted&detail=1``: one request. A record with a
        domid (a domain that runs after all) is not an inactive one and is left out."""
        self.counters.control()
        _response, rec = self._call("GET", "/xend/domain",
                                    params={"state": "halted", "detail": "1"},
                                    op="list_defined")
        if rec is None:
            return ()
        if not isinstance(rec, list):
            raise ProtocolError("expected a list of domain records", uri=self.uri,
                                op="list_defined")
        found = (self._definition(r) for r in rec)
        return tuple(d for d in found if d.id is None)

    def define(self, name: str, config: DomainConfig, uuid: str | None = None) -> Definition:
        """``op=new`` with a ``(vm ...)`` config naming exactly ``config``'s devices
        (none if none, as the daemon then defines it): one request. The config always
        crosses (the S-expression writer escapes what UTF-8 cannot hold); the host
        judges its values, as ``create``'s."""
        return self.define_domain(name, config, uuid=uuid)

    def define_domain(self, name: str, config: DomainConfig, *, uuid: str | None = None,
                      max_vcpus: int | None = None,
                      metadata: DomainMetadata | None = None) -> Definition:
        """:meth:`define`, the maximum vCPUs as xend's ``(vcpus N) (vcpu_avail B)`` and
        the metadata in its extension fields, in the same one request."""
        _response, rec = self._send_config("define", "new", name, config, uuid, max_vcpus,
                                           metadata)
        return self._definition(rec)

    def _send_config(self, op: str, xend_op: str, name: str, config: DomainConfig,
                     uuid: str | None, max_vcpus: int | None,
                     metadata: DomainMetadata | None,
                     extra: tuple[tuple[str, str], ...] = ()) -> tuple[httpx.Response, sxp.Sx]:
        """``POST /xend/domain/`` ``op=new`` or ``op=create`` with a ``(vm ...)`` config:
        the record the daemon answers with."""
        self._writable(op, name=name)
        check_sendable(name, "the name", uri=self.uri, op=op)
        wanted = self._uuid(uuid, op) if uuid is not None else None
        try:
            text = sxp.dumps(records.vm_config(
                name, config.memory_kib, config.max_memory_kib, config.vcpus, wanted,
                config.os_type, config.disks, config.nics, max_vcpus, metadata))
        except InvalidArgumentError as exc:
            exc.uri, exc.op, exc.name = self.uri, op, name
            raise
        self.counters.control()
        try:
            response, rec = self._call("POST", "/xend/domain/",
                                       form=[("op", xend_op), ("config", text), *extra],
                                       mutation=True, op=op)
        except XvirtError as exc:
            exc.name, exc.uuid = name, exc.uuid or wanted
            raise
        if rec is None:
            raise ProtocolError(f"{op} answered without the domain's record", uri=self.uri,
                                op=op, name=name)
        return response, rec

    # -- what a Xen host has beyond identity and lifecycle (by UUID) -------------------------

    def create(self, name: str, config: DomainConfig, *, uuid: str | None = None,
               max_vcpus: int | None = None, metadata: DomainMetadata | None = None,
               paused: bool = False) -> Resolution:
        """``op=create``, one request. xend created domains paused and libvirt unpaused
        them with a second request; the extension ``paused=0`` has the daemon start it
        running (one CREATED event, no RESUMED), and ``exact=1`` keeps the devices to
        those named."""
        response, rec = self._send_config("create", "create", name, config, uuid, max_vcpus,
                                          metadata, (("exact", "1"),
                                                     ("paused", "1" if paused else "0")))
        answer = self._resolution(response, [rec])
        if not answer.domains:
            raise ProtocolError("create answered with a domain that does not run",
                                uri=self.uri, op="create", name=name)
        return answer

    def _settings_call(self, op: str, method: str, uuid: str, *,
                       params: dict[str, str] | None = None,
                       form: list[tuple[str, str]] | None = None) -> sxp.Sx | None:
        """One request about the domain ``uuid`` (``expected_uuid``: the daemon answers
        for that UUID only), its errors naming the domain."""
        wanted = self._uuid(uuid, op)
        self.counters.control()
        try:
            if method == "GET":
                _response, rec = self._call("GET", f"/xend/domain/{wanted}",
                                            params={**(params or {}), "expected_uuid": wanted},
                                            op=op)
            else:
                self._writable(op, uuid=wanted)
                _response, rec = self._call(
                    "POST", f"/xend/domain/{wanted}",
                    form=[*(form or []), ("expected_uuid", wanted)], mutation=True, op=op)
        except XvirtError as exc:
            exc.uuid = wanted
            raise
        return rec

    def _parsed(self, rec: sxp.Sx | None, read: Callable[[sxp.Sx], T], op: str) -> T:
        if rec is None:
            raise ProtocolError(f"{op} answered nothing", uri=self.uri, op=op)
        try:
            return read(rec)
        except ProtocolError as exc:
            raise self._stamped(exc) from None

    def domain_settings(self, uuid: str, affect: Affect = Affect.CURRENT) -> DomainSettings:
        """``GET /xend/domain/<uuid>?op=xvirt_settings&affect=...``: one request."""
        rec = self._settings_call("domain_settings", "GET", uuid, params={
            "op": "xvirt_settings", "affect": _affect(affect)})
        return self._parsed(rec, records.parse_settings, "domain_settings")

    def set_vcpus(self, uuid: str, count: int, *, affect: Affect = Affect.CURRENT,
                  maximum: bool = False) -> None:
        """xend's ``op=set_vcpus vcpus=N`` (with ``affect=`` and ``maximum=1``)."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidArgumentError(f"a vCPU count must be an integer, not {count!r}",
                                       uri=self.uri, op="set_vcpus", uuid=uuid)
        self._settings_call("set_vcpus", "POST", uuid, form=[
            ("op", "set_vcpus"), ("vcpus", str(count)), ("affect", _affect(affect)),
            ("maximum", "1" if maximum else "0")])

    def vcpu_info(self, uuid: str) -> tuple[VcpuInfo, ...]:
        """xend's ``GET /xend/domain/<dom>?op=vcpuinfo``: one request."""
        rec = self._settings_call("vcpu_info", "GET", uuid, params={"op": "vcpuinfo"})
        return self._parsed(rec if rec is not None else [], records.parse_vcpuinfo,
                            "vcpu_info")

    def scheduler(self, uuid: str) -> SchedulerParams:
        """xend's ``op=domain_sched_credit_get``: one request."""
        rec = self._settings_call("scheduler", "GET", uuid,
                                  params={"op": "domain_sched_credit_get"})
        return self._parsed(rec, records.parse_sched_credit, "scheduler")

    def set_scheduler(self, uuid: str, *, weight: int | None = None,
                      cap: int | None = None) -> SchedulerParams:
        """xend's ``op=domain_sched_credit_set weight= cap=`` (each only when given)."""
        form = [("op", "domain_sched_credit_set")]
        for field, value in (("weight", weight), ("cap", cap)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(
                    f"the scheduler's {field} must be a non-negative integer, not {value!r}",
                    uri=self.uri, op="set_scheduler", uuid=uuid)
            form.append((field, str(value)))
        rec = self._settings_call("set_scheduler", "POST", uuid, form=form)
        return self._parsed(rec, records.parse_sched_credit, "set_scheduler")

    def set_metadata(self, uuid: str, kind: MetadataKind, value: str | None, *,
                     key: str | None = None, uri: str | None = None,
                     affect: Affect = Affect.CURRENT) -> None:
        """The extension ``op=xvirt_set_metadata``: one request."""
        if not isinstance(kind, MetadataKind):
            raise InvalidArgumentError(f"unknown metadata type {kind!r}", uri=self.uri,
                                       op="set_metadata", uuid=uuid)
        form = [("op", "xvirt_set_metadata"), ("type", kind.name.lower()),
                ("affect", _affect(affect))]
        for field, text in (("value", value), ("key", key), ("uri", uri)):
            if text is not None:
                if not isinstance(text, str):
                    raise InvalidArgumentError(f"the metadata {field} must be a string",
                                               uri=self.uri, op="set_metadata", uuid=uuid)
                form.append((field, check_sendable(text, f"the metadata {field}",
                                                   uri=self.uri, op="set_metadata")))
        self._settings_call("set_metadata", "POST", uuid, form=form)

    def capabilities(self) -> HostCapabilities:
        """From the node record (``GET /xend/node/``, one request): the node's facts,
        ``xen_scheduler`` and the guests ``xen_caps`` names."""
        info, node = self._node_info()
        return HostCapabilities(info, node.get("xen_scheduler") or "credit",
                                guest_types(node.get("xen_caps", "")))

    def node_memory_stats(self, cell: int | None = None) -> NodeMemoryStats:
        """``GET /xvirt/node/memory[?cell=N]``: one request."""
        rec = self._node_stats("memory", "cell", cell)
        return NodeMemoryStats(*(self._stat(rec, "memory_stats", k)
                                 for k in ("total", "free", "buffers", "cached")))

    def node_cpu_stats(self, cpu: int | None = None) -> NodeCpuStats:
        """``GET /xvirt/node/cpu[?cpu=N]``: one request."""
        rec = self._node_stats("cpu", "cpu", cpu)
        return NodeCpuStats(*(self._stat(rec, "cpu_stats", k)
                              for k in ("kernel", "user", "idle", "iowait")))

    def _node_stats(self, what: str, field: str, index: int | None) -> sxp.Sx:
        op = f"node_{what}_stats"
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                  or index < 0):
            raise InvalidArgumentError(f"{field} {index!r} does not exist on this host",
                                       uri=self.uri, op=op)
        self.counters.control()
        _response, rec = self._call("GET", f"/xvirt/node/{what}",
                                    params=None if index is None else {field: str(index)},
                                    op=op)
        if rec is None:
            raise ProtocolError(f"{op} answered nothing", uri=self.uri, op=op)
        return rec

    def _stat(self, rec: sxp.Sx, head: str, key: str) -> int:
        text = sxp.value(rec, f"{head}/{key}") or ""
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise ProtocolError(f"field {key!r} of ({head} ...) is not a count: {text[:40]!r}",
                                uri=self.uri)
        return int(text)

    def _managed(self, op: str, xend_op: str, uuid: str) -> None:
        self._writable(op, uuid=uuid)
        wanted = self._uuid(uuid, op)
        self.counters.control()
        try:
            # expected_uuid: the daemon acts on this UUID, whatever a name may look like
            self._call("POST", f"/xend/domain/{wanted}",
                       form=[("op", xend_op), ("expected_uuid", wanted)], mutation=True, op=op)
        except XvirtError as exc:
            exc.uuid = wanted
            raise

    def start(self, uuid: str) -> None:
        """``op=start`` by UUID: one request."""
        self._managed("start", "start", uuid)

    def undefine(self, uuid: str) -> None:
        """``op=delete`` by UUID (xend's undefine): one request."""
        self._managed("undefine", "delete", uuid)

    @property
    def image_dir(self) -> str | None:
        """Where the daemon keeps save images; learnt from the node record, once."""
        if not self._image_dir_known:
            with self._image_dir_lock:
                if not self._image_dir_known:
                    self.host_info()
        return self._image_dir

    @image_dir.setter
    def image_dir(self, path: str | None) -> None:
        self._image_dir = path
        self._image_dir_known = True

    def host_info(self) -> HostInfo:
        return self._node_info()[0]

    def _node_info(self) -> tuple[HostInfo, dict[str, str]]:
        """``GET /xend/node/`` (one request): the node's facts, and its record's fields."""
        self.counters.control()
        response, rec = self._call("GET", "/xend/node/")
        if rec is None:
            raise ProtocolError("empty node answer", uri=self.uri)
        try:
            node = records.parse_node_record(rec)
        except ProtocolError as exc:
            raise self._stamped(exc) from None
        boot, _ = self._meta(response)
        image_dir = node.get("xvirt_image_dir") or None
        if image_dir is not None and not os.path.isabs(image_dir):
            raise ProtocolError(f"field 'xvirt_image_dir': {image_dir!r} is not an absolute "
                                "path", uri=self.uri)
        self.image_dir = image_dir

        def num(key: str, default: int = 0) -> int:
            text = node.get(key, "")
            return int(text) if text.isdigit() else default

        cpus, nodes = num("nr_cpus", 1), num("nr_nodes", 1)
        cores, threads = num("cores_per_socket", 1), num("threads_per_core", 1)
        sockets = num("sockets_per_node") or max(1, cpus // max(1, nodes * cores * threads))
        return HostInfo(
            hostname=node.get("host", ""), hypervisor="Xen",
            version=node.get("xvirt_version") or
            f"{node.get('xen_major', '?')}.{node.get('xen_minor', '?')}"
            f"{node.get('xen_extra', '')}",
            arch=node.get("machine", ""), cpus=cpus, cpu_mhz=num("cpu_mhz"), nodes=nodes,
            sockets_per_node=sockets, cores_per_socket=cores, threads_per_core=threads,
            memory_kib=num("total_memory_kib") or num("total_memory") * 1024,
            free_memory_kib=num("free_memory_kib") or num("free_memory") * 1024,
            boot_id=boot,
        ), node

    # -- events ------------------------------------------------------------------------------------

    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        """Events after ``after``, waiting up to ``timeout`` seconds for one: as many long
        polls (each counted) as that takes."""
        deadline = self._clock.now() + timeout
        while True:
            started = self._clock.now()
            wait = min(max(deadline - started, 0.0), MAX_POLL_S)
            self.counters.event()
            _response, rec = self._call(
                "GET", "/xvirt/events", params={"after": str(after), "timeout": f"{wait:g}"},
                read_timeout=wait)
            batch = parse_events(rec, self.uri)
            now = self._clock.now()
            if (batch.events or not batch.complete or batch.latest != after
                    or now >= deadline or self._closed):
                return batch
            if now - started < POLL_PAUSE_S:  # answered at once: a busy daemon
                self._clock.sleep(min(POLL_PAUSE_S, deadline - now))

    def close(self, *, wait: bool = True) -> None:
        """Without ``wait``, never waits on the data lock another thread holds: a
        discovery of the fast channel in progress (it waits on the daemon), or at
        interpreter exit a thread stopped for good while holding it. Closed at once; the
        channels are released now if the lock is free (or, with ``wait``, once it is
        within the timeout), else once it is, and at exit by the process's end
        (drivers/closing.py)."""
        if self._closed:
            return
        self._closed = True
        self._closer: threading.Thread | None = close_when_free(
            self._data_lock, self._release_fast, self._http.close,
            name=f"xvirt-xend-close {self.uri}", wait_s=self._timeout if wait else 0.0)

