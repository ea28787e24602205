"""The libvirt driver: ``libvirt:<any libvirt URI>`` through libvirt-python.

libvirt is not a Xen host: every call is an RPC (or, for ``test:///``, a call
into the library), names come with every answer, handles are by UUID, and
there is no generation. This driver maps it onto the driver interface:

* data plane: ``listAllDomains`` (census), ``listDomainsID`` (the IDs, with a
  census only when they changed), ``getAllDomainStats`` of the state group with
  NOWAIT plus ``info()`` per domain (snapshot: nothing that asks a guest's QEMU
  monitor; through a daemon the ``info()`` calls overlap over a few more
  connections, see libvirt_fanout.py), ``lookupByUUIDString`` of the UUID the mirror believes
  at the ID, ``lookupByID`` only when that fails (identify: a hash, not a scan),
  ``info()`` on a UUID handle (info_by_uuid); ``getAllDomainStats`` or
  ``domainListGetStats`` of the groups asked, with NOWAIT, on a lane given the
  driver's ``timeout``, each domain asked on its own when it does not answer in
  time (domain_stats: see "Statistics" in docs/architecture.md and
  libvirt_stats.py);
* control plane: lookups by UUID and name for ``resolve``, ``XMLDesc`` for the
  configuration, the actions, ``restore``, ``getInfo`` and friends, and the
  defined (inactive) domains: ``find``, ``list_defined``, ``define``, ``start``,
  ``undefine`` (their costs in libvirt calls are in "Defined domains" below);
* events: a local log made by :class:`Mirror` from observations (see
  libvirt_mirror.py); libvirt's lifecycle events, delivered on the event loop
  thread, make a worker thread observe the named domain again.

Calls that read libvirt's own domain list (lookups, listings, the state stats
group: no domain job, no guest) hold the driver's lock, so observations reach
the mirror in the order they were made. Calls that may wait on a guest
(``info()``, ``XMLDesc``, actions, save and restore) are made without it: a hung
guest holds up its own callers only. What such a call finds (the domain gone)
is applied afterwards, under the lock, only if nothing was observed since it
began; otherwise the domain is observed again (see ``_apply_departure``).

Two connections where libvirt is reached through a daemon that serves one host
to every connection (``qemu:///system``, ``test+unix:///default``...): the
calls are made on one kept out of libvirt's event loop (no wake-up of the loop
thread and no keepalive timer reset per call: see libvirt_loop.py), except the
calls that may wait on a guest (actions, ``XMLDesc``, save and restore, define,
start, undefine), which go, with libvirt's events and keepalive, on the other,
opened when first needed (such a call, or ``follow_events``):
libvirt's client makes a call queued behind one that waits for its reply wait
for the connection's next keepalive, so no lookup may share a connection with
them. Everywhere else (``test:///``, ``qemu:///embed``) one connection does all.
A daemon that stops answering altogether holds up the calls already made on
the first connection until it answers or dies, as it would a libvirt-python
script's; keepalive on the second notices it within ~16 s, and the calls made
from then on reconnect.

A lost connection (close callback, keepalive, or a failed call) is reopened
until ``timeout`` runs out, then
reported as HostUnreachableError; after reopening, one census brings the
mirror up to date. Only reads are retried: an action whose fate is unknown is
reported, not repeated.

Counting, exactly: ``data_calls`` and ``control_requests`` are the libvirt
calls made for the data- and control-plane methods; ``event_requests`` the
calls the worker makes to observe domains that events named. Reading the
local event log costs no call and is not counted. A handle's ``ID()``,
``name()`` and ``UUIDString()`` are not calls: libvirt answers them from the
handle, as the lookup that made it told them.

Defined domains. A libvirt domain that is defined and not running (inactive,
ID -1) is never live here: no lookup by ID, census or snapshot names it, and a
lookup that finds one is an observation of it not live. Only the control-plane
calls below see it; each counts every libvirt call it makes (n: domains listed):

* ``find``: ``lookupByUUIDString``/``lookupByName``, then ``info()`` and
  ``OSType()`` (the configuration's figures: libvirt answers both from its own
  records, never from a guest's QEMU), and ``isPersistent()`` for a running
  domain (an inactive one is persistent: a transient domain that stops is
  gone): 4 calls for a running domain, 3 for an inactive one, 1 for none;
* ``list_defined``: ``listAllDomains(INACTIVE)``, then ``info()`` and
  ``OSType()`` of each: 1 + 2n;
* ``define``: ``getCapabilities`` (which domain type, OS type and emulator this
  hypervisor takes), ``defineXML``, then ``info()`` and ``OSType()`` of the
  result: 4;
* ``start``: ``lookupByUUIDString``, ``create()``, and ``lookupByUUIDString``
  again to observe it running (its STARTED event comes from that): 3;
* ``undefine``: ``lookupByUUIDString`` (its ID answers ``isActive``: libvirt's
  isActive is "its ID is not -1"), ``undefine()``: 2.

A refusal costs the calls made up to it: 0 for arguments that cannot be sent
(checked first), 1 for ``start`` or ``undefine`` of a running (or unknown)
domain or an OS type the host does not run, 2 for a definition libvirt
refuses. A call that may wait (every one
but the lookups and the listing: on QEMU ``defineXML`` may probe the emulator,
``create``, ``undefine`` take a domain job) is made without the driver's lock,
as the actions are; a lost connection is reopened within ``timeout`` for the
reads, and reported (fate unknown) for ``define``, ``start`` and ``undefine``.
libvirt's DEFINED and UNDEFINED events are logged as they come (no call; see
libvirt_mirror.py), a STARTED/BOOTED one as STARTED when the domain is
persistent (one more call, ``isPersistent``, for a domain not yet observed).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from xvirt.clock import Clock, SystemClock
from xvirt.drivers.base import (
    CONNECTION_LOST,
    Driver,
    PlaneCounters,
    check_sendable,
    sendable,
)
from xvirt.drivers.closing import close_when_free
from xvirt.drivers.libvirt_errors import translate
from xvirt.drivers.libvirt_fanout import Fanout
from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.drivers.libvirt_mirror import Mirror
from xvirt.drivers.libvirt_stats import (
    BULK_GROUPS,
    GUEST_GROUPS,
    JOB_MARKS,
    Lane,
    Lanes,
    Nic,
    connection_alive,
    fill_from_calls,
    net_names,
    read_devices,
    stats_bits,
    stats_from_record,
)
from xvirt.drivers.libvirt_xml import (
    check_definition,
    choose_guest,
    config_from_xml,
    domain_xml,
    uuid_from_xml,
)
from xvirt.errors import (
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    UnsupportedError,
    XvirtError,
)
from xvirt.hotpath import tuple_new
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.libvirt_api.constants import (
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
    VIR_CONNECT_LIST_DOMAINS_ACTIVE,
    VIR_CONNECT_LIST_DOMAINS_INACTIVE,
    VIR_DOMAIN_BLOCKED,
    VIR_DOMAIN_CRASHED,
    VIR_DOMAIN_EVENT_CRASHED,
    VIR_DOMAIN_EVENT_DEFINED,
    VIR_DOMAIN_EVENT_RESUMED,
    VIR_DOMAIN_EVENT_STARTED,
    VIR_DOMAIN_EVENT_STARTED_BOOTED,
    VIR_DOMAIN_EVENT_STARTED_MIGRATED,
    VIR_DOMAIN_EVENT_STARTED_RESTORED,
    VIR_DOMAIN_EVENT_STOPPED,
    VIR_DOMAIN_EVENT_STOPPED_CRASHED,
    VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
    VIR_DOMAIN_EVENT_STOPPED_SAVED,
    VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN,
    VIR_DOMAIN_EVENT_SUSPENDED,
    VIR_DOMAIN_EVENT_UNDEFINED,
    VIR_DOMAIN_NOSTATE,
    VIR_DOMAIN_PAUSED,
    VIR_DOMAIN_PMSUSPENDED,
    VIR_DOMAIN_RUNNING,
    VIR_DOMAIN_SHUTDOWN,
    VIR_DOMAIN_STATS_STATE,
    VIR_ERR_NO_DOMAIN,
)
from xvirt.model import DomainState, EventKind, HostInfo, parse_uuid
from xvirt.planes import (
    Census,
    DataRow,
    Definition,
    DomainConfig,
    EventBatch,
    IdAnswer,
    IdOwner,
    Op,
    Resolution,
    Resolved,
    TableSnapshot,
    Unanswered,
)
from xvirt.stats import ALL_GROUPS, DomainStats, StatGroup, check_groups

__all__ = ["LibvirtDriver", "default_image_dir", "domain_state"]

T = TypeVar("T")

# libvirt's virDomainState values -> Xen's flags. SHUTOFF is not live.
_STATES = {
    # Xen shows a domain with no state as "------", i.e. blocked.
    VIR_DOMAIN_NOSTATE: DomainState.BLOCKED,
    VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    # "in shutdown": on its way down, Xen's dying (libvirt's Xen driver maps them so).
    VIR_DOMAIN_SHUTDOWN: DomainState.DYING,
    VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    VIR_DOMAIN_PMSUSPENDED: DomainState.PAUSED,
}

# libvirt lifecycle events (virDomainEventType, detail) -> what to record.
_ARRIVALS = {  # STARTED details
    VIR_DOMAIN_EVENT_STARTED_MIGRATED: EventKind.MIGRATED,
    VIR_DOMAIN_EVENT_STARTED_RESTORED: EventKind.RESTORED,
}
_DEFINITIONS = {  # events of definitions: nothing live changes
    VIR_DOMAIN_EVENT_DEFINED: EventKind.DEFINED,
    VIR_DOMAIN_EVENT_UNDEFINED: EventKind.UNDEFINED,
}
_DEPARTURES = {  # STOPPED details
    VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: EventKind.SHUTDOWN,
    VIR_DOMAIN_EVENT_STOPPED_DESTROYED: EventKind.DESTROYED,
    VIR_DOMAIN_EVENT_STOPPED_CRASHED: EventKind.CRASHED,
    VIR_DOMAIN_EVENT_STOPPED_SAVED: EventKind.SAVED,
}

# Only the state group: on QEMU every other group with the figures (cpu-total, balloon,
# vcpu) asks each guest's QEMU monitor (~70 ms per group per 50 guests) and waits on a
# hung one; state is read from libvirt's own domain objects. NOWAIT: never wait for a
# domain's job (libvirt skips what it cannot read at once).
_STATS = VIR_DOMAIN_STATS_STATE
_STATS_FLAGS = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
_RECONNECT_PAUSE_S = 0.1
# A snapshot of at least _FANOUT_MIN domains through a daemon spreads its info() calls
# over _FANOUT_LANES more connections (see libvirt_fanout.py): 3 ways in all measured
# 1.7x faster than one at 30 domains, 4 ways no better on 2 cores.
_FANOUT_MIN = 8
_FANOUT_LANES = 2
# domain_stats: a statistics call that does not answer within the driver's timeout is
# made again for each domain on its own, on up to this many lanes at once. Idle lanes
# notice the driver closed within _STATS_POLL_S.
_STATS_LANES = 8
# The fewest domains a part of a split statistics call holds.
_SPLIT_MIN = 2
# How long a domain's disk count, read from its XML, is trusted for a split call.
_DEVICES_TTL_S = 60.0
_STATS_POLL_S = 1.0


def domain_state(code: int) -> DomainState | None:
    """Xen's state for libvirt's virDomainState; None for shut off (not live)."""
    return _STATES.get(code)


def default_image_dir() -> str:
    """``$XVIRT_LIBVIRT_IMAGE_DIR``, else a directory of the user's own."""
    env = os.environ.get("XVIRT_LIBVIRT_IMAGE_DIR")
    if env:
        return os.path.abspath(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "xvirt", "libvirt-images")


def _through_daemon(target: str) -> bool:
    """Whether libvirt reaches ``target`` through a daemon's socket (an RPC per call)
    rather than a driver in this process (``test:///``, ``qemu:///embed``)."""
    parts = urlsplit(target)
    transport = "+" in parts.scheme or bool(parts.netloc)
    return transport or parts.path in ("/system", "/session")


def _shared_host(target: str) -> bool:
    """Whether every connection to ``target`` sees one host: so for any daemon's
    driver but the test driver's, whose every open of a host file is a host of
    its own (only ``/default`` is shared)."""
    parts = urlsplit(target)
    return parts.scheme.split("+")[0] != "test" or parts.path == "/default"


def _running(doms: list[Any]) -> list[Any]:
    """The domains of an ACTIVE listing that were running when listed.

    libvirt filters the list on activity first and names each domain after, each
    under its own lock (virDomainObjListExport): one that stopped in between
    comes out with ID -1. It was seen not running; it is not a member."""
    return [d for d in doms if d.ID() >= 0]


@dataclass(frozen=True, slots=True)
class _StatsCall:
    """One statistics call, as prepared under the driver's lock."""

    groups: frozenset[StatGroup]
    bits: int  # libvirt's group bits
    flags: int  # ACTIVE, and NOWAIT where libvirt takes it
    conn: Any  # the driver's connection; None: each lane's own
    wanted: frozenset[str] | None  # the UUIDs asked that are live; None: every live domain
    handles: Mapping[str, Any]  # a handle on the driver's connection for each of ``wanted``
    every: bool  # getAllDomainStats (filtered to ``wanted``), not domainListGetStats
    want_disks: bool = False  # read each domain's disk count from its XML (a split call)


class _LaneLost(Exception):
    """A lane's own connection died under a statistics call: asked again on a new one."""


class LibvirtDriver(Driver):
    """One libvirt connection, as an xvirt driver."""

    def __init__(
        self,
        uri: str,
        target: str,
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        image_dir: str | None = None,
        clock: Clock | None = None,
        binding: Any = None,
        auth: Sequence[Any] | None = None,
    ) -> None:
        self.uri = uri
        self.target = target
        self.readonly = readonly
        self._auth = auth  # libvirt's [credtypes, callback, cbdata], for every open
        self.counters = PlaneCounters()
        self.image_dir = image_dir or default_image_dir()
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._lv: Any = binding if binding is not None else real_libvirt()
        self._loop = ensure_event_loop(self._lv)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._mirror = Mirror()
        self._published = 0  # the generation waiters were last woken for
        self._handles: dict[str, Any] = {}  # uuid -> virDomain, for calls by UUID
        # The same for calls that may wait (on the watched connection: see _waiting_handle);
        # the same dict when there is one connection.
        self._waiting: dict[str, Any] = self._handles
        # Bumped by every libvirt call made under the lock (each may be an observation):
        # a call made without it applies what it saw only if nothing was observed since
        # it began (see _apply_departure).
        self._epoch = 0
        self._stats_flags = _STATS_FLAGS
        self._boot = f"libvirt-{_uuid.uuid4()}"
        self._closed = False
        self._lost = False
        self._conn: Any = None  # the calls are made on this one
        self._watched: Any = None  # libvirt's events come on this one (maybe the same)
        self._split = False  # two connections (see _connect)
        self._following = False  # someone waits for events: watch from the start
        self._following_events = False  # our lifecycle callback is registered
        # (uuid, event, detail, name) of each libvirt event, for the worker.
        self._work: queue.SimpleQueue[tuple[str, int, int, str] | None] = queue.SimpleQueue()
        # Started by the first event, not here: starting a thread waits for it to run
        # (0.3-1.5 ms on a loaded machine), which was most of what opening cost beyond
        # libvirt's own open, and a connection that never sees an event never needs it.
        self._worker: threading.Thread | None = None
        self._fanout: Fanout | None = None  # started by the first snapshot that pays
        self._worker_lock = threading.Lock()
        # domain_stats: its lanes (started by its first call), each domain's NICs' MAC and
        # bridge by device name as of the ID they were read at, and the keys that tell
        # a group NOWAIT skipped on this hypervisor (see libvirt_stats.py).
        self._stats_lanes: Lanes | None = None
        self._nics: dict[str, tuple[int, dict[str, Nic]]] = {}
        self._disks: dict[str, tuple[int, float, int]] = {}  # (ID, read at, disks)
        self._lane_lookups = 0  # lookups made on lanes' own connections (so far)
        self._nics_lock = threading.Lock()
        hypervisor = urlsplit(target).scheme.split("+")[0]
        self._job_marks = JOB_MARKS.get(hypervisor, {})
        self._guest_groups = GUEST_GROUPS.get(hypervisor, frozenset())
        bulk = BULK_GROUPS.get(hypervisor)
        self._per_domain_groups = frozenset() if bulk is None else ALL_GROUPS - bulk
        with self._lock:
            self._connect()

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> None:
        """Open the connection the calls are made on. Where that is a daemon's that
        serves one host to every connection, it is kept out of the event loop (see
        libvirt_loop.py: no call on it wakes the loop thread or resets keepalive's timer),
        and libvirt's events, keepalive and the calls that may wait get a second one,
        opened when first needed (:meth:`_watched_conn`): a monitor that only lists and
        reads never opens it. Otherwise the one connection does all, from the start."""
        self._split = self._loop is not None and _through_daemon(self.target) \
            and _shared_host(self.target)
        if self._split:
            assert self._loop is not None
            with self._loop.unwatched():
                conn = self._open()
        else:
            conn = self._open()
        self._conn, self._watched = conn, None
        self._waiting = {} if self._split else self._handles
        self._lost = False
        # Drivers without a close callback (test:///) cannot lose their connection.
        with contextlib.suppress(self._lv.libvirtError):
            conn.registerCloseCallback(self._on_close, None)
        if not self._split or self._following:
            self._watched_conn()

    def _watched_conn(self) -> Any:
        """(Lock held) The connection libvirt's events come on, with keepalive where a
        daemon can go silent, and the calls that may wait go on; opened with all that
        on first need."""
        if self._watched is not None:
            return self._watched
        lv = self._lv
        watched = self._open() if self._split else self._conn
        if watched is not self._conn:
            with contextlib.suppress(lv.libvirtError):
                watched.registerCloseCallback(self._on_close, None)
        if _through_daemon(self.target):
            with contextlib.suppress(lv.libvirtError):
                watched.setKeepAlive(1, 15)  # a silent daemon is noticed within ~16 s
        # libvirt's legacy registration, not domainEventRegisterAny: libvirt refuses a
        # second Any registration of one event ID on a connection, and a program that
        # shares this connection (the compat face passes its calls through) must be free
        # to make its own. Legacy callbacks share one registration per connection.
        try:
            watched.domainEventRegister(self._on_event, None)
            self._following_events = True
        except lv.libvirtError:
            self._following_events = False  # no events: snapshots and validation keep C1-C7
        self._watched = watched
        return watched

    def follow_events(self) -> None:
        """libvirt's lifecycle events from now on, and after every reconnect: they make
        the log timely (without them it has what lookups and snapshots observe)."""
        with self._lock:
            self._following = True
            if not self._closed and not self._lost and self._conn is not None:
                self._watched_conn()

    def binding_connection(self) -> Any:
        """The libvirt-python connection that carries libvirt's events, keepalive and
        the calls that may wait, for a caller that needs libvirt itself for what xvirt
        does not carry (the compat face passes such calls through). Reconnects where
        the connection was lost; after that the object is a new one, so ask again
        rather than keep it."""
        with self._lock:
            if self._closed:
                raise HostUnreachableError("the libvirt connection is closed", uri=self.uri)
            if self._lost or self._conn is None or self._is_lost():
                self._reconnect()
            return self._watched_conn()

    def _open(self) -> Any:
        lv = self._lv
        try:
            if self._auth is not None:
                flags = lv.VIR_CONNECT_RO if self.readonly else 0
                conn = lv.openAuth(self.target, list(self._auth), flags)
            elif self.readonly:
                conn = lv.openReadOnly(self.target)
            else:
                conn = lv.open(self.target)
        except lv.libvirtError as exc:
            raise translate(exc, uri=self.uri, op="open") from None
        if conn is None:
            raise HostUnreachableError(f"libvirt could not open {self.target!r}", uri=self.uri)
        return conn

    def _disconnect(self) -> None:
        """(Lock held) Close both connections; the events stop first."""
        conn, watched = self._conn, self._watched
        self._conn = self._watched = None
        self._handles.clear()  # each holds its connection open
        self._waiting.clear()
        lv = self._lv
        if watched is not None and self._following_events:
            # libvirt-python's dispatcher iterates this dict on the loop thread: give the
            # connection a copy to change, so an event being delivered is not disturbed.
            callbacks = getattr(watched, "domainEventCallbacks", None)
            if isinstance(callbacks, dict):
                watched.domainEventCallbacks = dict(callbacks)
            with contextlib.suppress(lv.libvirtError, KeyError, AttributeError):
                watched.domainEventDeregister(self._on_event)
        self._following_events = False
        for each in {id(c): c for c in (watched, conn) if c is not None}.values():
            with contextlib.suppress(lv.libvirtError):
                each.unregisterCloseCallback()
            with contextlib.suppress(lv.libvirtError):
                each.close()

    def _on_close(self, _conn: Any, _reason: int, _opaque: object) -> None:
        self._lost = True  # on the event loop thread: no lock, no call

    def _on_event(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: object) -> None:
        # UUIDString() and name() read the handle the event brought: no call to libvirt.
        with contextlib.suppress(self._lv.libvirtError):
            self._work.put((dom.UUIDString(), event, detail, dom.name()))
        if self._worker is None:
            self._start_worker()

    def _start_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None and not self._closed:
                self._worker = threading.Thread(target=self._observe_events, daemon=True,
                                                name=f"xvirt-libvirt-worker {self.target}")
                self._worker.start()

    def _reconnect(self) -> None:
        """Open again until the deadline; then one census brings the mirror up to
        date (what changed while the connection was down produces events)."""
        deadline = self._clock.now() + self._timeout
        lv = self._lv
        while True:
            self._disconnect()
            try:
                self._connect()
                self.counters.data()
                doms = _running(self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE))
            except (XvirtError, lv.libvirtError) as exc:
                if self._clock.now() >= deadline:
                    reason = exc.message if isinstance(exc, XvirtError) \
                        else exc.get_error_message()
                    raise HostUnreachableError(
                        f"libvirt at {self.target!r} is unreachable: {reason}",
                        uri=self.uri) from None
                self._clock.sleep(_RECONNECT_PAUSE_S)
                continue
            self._epoch += 1
            self._handles.clear()
            self._mirror.census(self._remember(d) for d in doms)
            self._publish()
            return

    def _call(self, count: Callable[[], object], fn: Callable[[], T], *, retry: bool = True,
              op: str | None = None, uuid: str | None = None,
              domid: int | None = None, name: str | None = None) -> T:
        """One libvirt call under the lock, counted; errors translated; reads survive a
        reconnect. Only for calls that read libvirt's own domain list (lookups,
        listings, the state stats group): they take no domain job and never talk to a
        guest, so no guest can hold them up."""
        if self._closed:
            raise HostUnreachableError("the libvirt connection is closed", uri=self.uri)
        lv = self._lv
        for _ in range(2):
            if self._lost or self._conn is None:
                self._reconnect()
            count()
            self._epoch += 1
            try:
                return fn()
            except lv.libvirtError as exc:
                # A dying connection fails with various codes (a system error, an RPC
                # error, "client socket is closed" as an internal error): ask it.
                if not self._is_lost():
                    raise translate(exc, uri=self.uri, op=op, uuid=uuid, domid=domid,
                                    name=name) from None
                self._lost = True
                if not retry:
                    raise HostUnreachableError(
                        f"the connection to libvirt was lost during {op or 'a call'}; "
                        "whether it took effect is unknown", uri=self.uri, op=op, uuid=uuid,
                        domid=domid, name=name, libvirt_code=exc.get_error_code()) from None
        raise HostUnreachableError(f"libvirt at {self.target!r} keeps dropping the connection",
                                   uri=self.uri, op=op)

    def _is_lost(self) -> bool:
        try:
            return self._lost or not self._conn.isAlive() or (
                self._watched is not None and not self._watched.isAlive())
        except self._lv.libvirtError:
            return True

    def _unlocked(self, count: Callable[[], object], prepare: Callable[[], Callable[[], T]],
                  *, retry: bool = True, op: str, uuid: str | None = None,
                  domid: int | None = None, first: tuple[Any, Callable[[], T]] | None = None,
                  name: str | None = None) -> T:
        """One libvirt call made WITHOUT the driver's lock: a call that may wait on a
        guest (a domain job, its QEMU monitor, a hypervisor that does not answer) must
        hold up that guest's callers only, never the connection's.

        ``prepare`` runs under the lock (it may reconnect or look the domain up) and
        returns the call. Nothing the call answers is applied to the mirror here: the
        caller does it under the lock, see :meth:`_apply_departure`. ``first``, the
        connection and call a caller already prepared under the lock, saves the hot
        path taking it again."""
        lv = self._lv
        for _ in range(2):
            if first is not None:
                (conn, fn), first = first, None
            else:
                with self._lock:
                    if self._closed:
                        raise HostUnreachableError("the libvirt connection is closed",
                                                   uri=self.uri, op=op)
                    if self._lost or self._conn is None:
                        self._reconnect()
                    conn = self._conn
                    fn = prepare()
            count()
            try:
                return fn()
            except lv.libvirtError as exc:
                self._failed(exc, conn, op=op, uuid=uuid, domid=domid, name=name)
                if not retry:
                    raise HostUnreachableError(
                        f"the connection to libvirt was lost during {op}; whether it took "
                        "effect is unknown", uri=self.uri, op=op, uuid=uuid, domid=domid,
                        name=name, libvirt_code=exc.get_error_code()) from None
        raise HostUnreachableError(f"libvirt at {self.target!r} keeps dropping the connection",
                                   uri=self.uri, op=op)

    def _failed(self, exc: Any, conn: Any, *, op: str, uuid: str | None = None,
                domid: int | None = None, name: str | None = None) -> None:
        """A call made without the lock on ``conn`` failed: raise its error, translated,
        unless the connection is lost (then marked lost, for the caller to retry)."""
        with self._lock:
            if conn is self._conn and not self._is_lost():
                raise translate(exc, uri=self.uri, op=op, uuid=uuid, domid=domid,
                                name=name) from None
            if conn is self._conn:
                self._lost = True

    def _apply_departure(self, uuid: str, since: int, count: Callable[[], object],
                         kind: EventKind = EventKind.DESTROYED) -> Any | None:
        """A call made without the lock found ``uuid`` not live (lock held now).

        Observations must reach the mirror in the order they were made. If no call
        was made under the lock since ``since`` (the epoch when that call began),
        nothing observed can be newer than this finding: apply it. Otherwise its
        order is unknown: observe the domain again, by UUID, now. Returns the
        domain's handle if that observation finds it live."""
        if self._epoch == since:
            self._gone(uuid, kind)
            return None
        return self._observe_uuid(uuid, count, departure=kind)

    # -- observations (lock held) ---------------------------------------------------------

    def _publish(self) -> None:
        """Wake event waiters, only when an observation produced events."""
        if self._mirror.generation != self._published or self._closed:
            self._published = self._mirror.generation
            self._changed.notify_all()

    def _remember(self, dom: Any) -> tuple[int, str, str]:
        uuid = dom.UUIDString()
        (self._handles if dom.connect() is self._conn else self._waiting)[uuid] = dom
        return dom.ID(), uuid, dom.name()

    def _saw(self, dom: Any, count: Callable[[], object],
             arrival: EventKind = EventKind.CREATED) -> tuple[int, str, str]:
        domid, uuid, name = self._remember(dom)
        displaced = self._mirror.saw(domid, uuid, name, arrival)
        if displaced is not None:
            self._observe_uuid(displaced, count)
        return domid, uuid, name

    def _gone(self, uuid: str, kind: EventKind = EventKind.DESTROYED) -> None:
        self._handles.pop(uuid, None)
        self._waiting.pop(uuid, None)
        self._mirror.gone(uuid, kind)

    def _observe_uuid(self, uuid: str, count: Callable[[], object],
                      arrival: EventKind = EventKind.CREATED,
                      departure: EventKind = EventKind.DESTROYED, *,
                      waiting: bool = False) -> Any | None:
        """Where ``uuid`` is now (one call); its handle, or None when not live; with
        ``waiting``, a handle for calls that may wait (see :meth:`_waiting_handle`)."""
        try:
            dom = self._call(count, lambda: (self._watched_conn() if waiting else self._conn)
                             .lookupByUUIDString(uuid), uuid=uuid)
        except NoDomainError:
            self._gone(uuid, departure)
            return None
        if dom.ID() < 0:  # defined, not running: not a live domain
            self._gone(uuid, departure)
            return None
        self._saw(dom, count, arrival)
        return dom

    def _observe_boot(self, uuid: str) -> None:
        """A domain libvirt says booted, not yet observed: a persistent one is a defined
        domain started (STARTED), a transient one a domain created (CREATED). Two calls
        (the lookup, ``isPersistent``), both reads of libvirt's own records (no job, no
        guest: the same domain-object lock a lookup takes), so made under the lock, as
        every observation is."""
        count = self.counters.event
        try:
            dom = self._call(count, lambda: self._conn.lookupByUUIDString(uuid),
                             op="lookupByUUIDString", uuid=uuid)
        except NoDomainError:
            self._gone(uuid)
            return
        if dom.ID() < 0:  # stopped again already: not live
            self._gone(uuid)
            return
        persistent = self._call(count, dom.isPersistent, op="isPersistent", uuid=uuid)
        self._saw(dom, count, EventKind.STARTED if persistent else EventKind.CREATED)

    def _census_members(self, count: Callable[[], object]) -> list[tuple[int, str, str]]:
        """One ``listAllDomains(ACTIVE)``, applied; ``(id, uuid, name)`` of each member
        (asked of each handle once: each is a call into the binding)."""
        doms = _running(self._call(
            count, lambda: self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE),
            op="listAllDomains"))
        handles = {}
        members = []
        for dom in doms:
            uuid = dom.UUIDString()
            handles[uuid] = dom
            members.append((dom.ID(), uuid, dom.name()))
        self._mirror.census(members)
        self._keep_handles(handles)
        return members

    def _keep_handles(self, handles: dict[str, Any]) -> None:
        """(Lock held) A census's handles replace those held: of the domains not in it,
        none is kept (C7), for calls that may wait either."""
        if self._waiting is self._handles:
            self._waiting = handles
        else:
            self._waiting = {u: d for u, d in self._waiting.items() if u in handles}
        self._handles = handles

    def _census_call(self, count: Callable[[], object]) -> list[Any]:
        doms: list[Any] = _running(self._call(
            count, lambda: self._conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE),
            op="listAllDomains"))
        members = [self._remember(d) for d in doms]
        self._mirror.census(members)
        self._keep_handles({uuid: self._handles[uuid] for _, uuid, _ in members})
        return doms

    def _observe_events(self) -> None:
        """The worker: observe again each domain a libvirt event named (a change of
        definition is logged as it comes: see _observe_event)."""
        while True:
            item = self._work.get()
            if item is None:
                return
            uuid, event, detail, name = item
            with self._lock:
                if self._closed:
                    return
                try:
                    self._observe_event(uuid, event, detail, name)
                except XvirtError:
                    pass  # the connection is gone: the next caller reconnects and takes a census
                finally:
                    self._publish()

    def _observe_event(self, uuid: str, event: int, detail: int, name: str) -> None:
        if event in _DEFINITIONS:
            # A definition made, replaced or removed changes nothing live: logged as it
            # comes, under the ID and name the domain is live with, if it is (no call).
            self._mirror.definition(uuid, name, _DEFINITIONS[event])
            return
        arrival = _ARRIVALS.get(detail, EventKind.CREATED) \
            if event == VIR_DOMAIN_EVENT_STARTED else EventKind.CREATED
        departure = _DEPARTURES.get(detail, EventKind.DESTROYED) \
            if event == VIR_DOMAIN_EVENT_STOPPED else EventKind.DESTROYED
        known = uuid in self._mirror
        if event == VIR_DOMAIN_EVENT_STARTED and detail == VIR_DOMAIN_EVENT_STARTED_BOOTED \
                and not known:
            self._observe_boot(uuid)
            return
        dom = self._observe_uuid(uuid, self.counters.event, arrival, departure)
        if dom is None or not known:
            return
        if event == VIR_DOMAIN_EVENT_SUSPENDED:
            self._mirror.note(uuid, EventKind.PAUSED)
        elif event == VIR_DOMAIN_EVENT_RESUMED:
            self._mirror.note(uuid, EventKind.RESUMED)
        elif event == VIR_DOMAIN_EVENT_CRASHED:
            self._mirror.note(uuid, EventKind.CRASHED)

    # -- data plane -----------------------------------------------------------------------

    def census(self) -> Census:
        with self._lock:
            members = self._census_members(self.counters.data)
            self._publish()
            return Census(self._boot, self._mirror.generation,
                          tuple((domid, uuid) for domid, uuid, _ in members),
                          tuple(name for _, _, name in members))

    def list_ids(self) -> Sequence[int]:
        """``listDomainsID()`` (IDs only: no handle made per domain, a few bytes each over
        a socket), under the lock; a census besides, in the same call, only when those
        IDs are not exactly where the mirror places its live domains (one arrived, left
        or moved: the census makes that an observation, and keeps the mirror to the
        live set, C7). Either answer is the live IDs at one instant of the call."""
        with self._lock:
            ids: list[int] = self._call(self.counters.data, lambda: self._conn.listDomainsID(),
                                        op="listDomainsID")
            if self._mirror.holds_exactly(ids):
                return ids
            members = self._census_members(self.counters.data)
            self._publish()
            return [domid for domid, _, _ in members]

    def _stats_records(self) -> list[tuple[int, str, str, Any, int | None]]:
        """Who is live, with the state of the same instant: one ``getAllDomainStats``
        of the state group (lock held; applied to the mirror as a census). Each as
        ``(id, uuid, name, handle, state)``: every accessor of a handle is a call into
        libvirt (a microsecond or two), so each is asked once."""
        try:
            try:
                found = self._call(self.counters.data, lambda: self._conn.getAllDomainStats(
                    _STATS, self._stats_flags), op="getAllDomainStats")
            except (InvalidArgumentError, UnsupportedError):
                if self._stats_flags == VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE:
                    raise
                self._stats_flags = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE  # libvirt < 4.5
                found = self._call(self.counters.data, lambda: self._conn.getAllDomainStats(
                    _STATS, self._stats_flags), op="getAllDomainStats")
        except UnsupportedError:
            return [(domid, uuid, name, self._handles[uuid], None)
                    for domid, uuid, name in self._census_members(self.counters.data)]
        records = []
        handles = {}
        for dom, stats in found:
            domid = dom.ID()
            if domid < 0:
                continue  # see _running
            uuid = dom.UUIDString()
            handles[uuid] = dom
            records.append((domid, uuid, dom.name(), dom, stats.get("state.state")))
        self._mirror.census((domid, uuid, name) for domid, uuid, name, _, _ in records)
        self._keep_handles(handles)
        return records

    def _fanout_for(self, domains: int) -> Fanout | None:
        """(Lock held) The lanes for a snapshot of ``domains``, started on first use;
        None where there are none: one connection (an in-process driver, a test host
        file), or too few domains for the hand-over to pay."""
        if not self._split or domains < _FANOUT_MIN or self._closed:
            return None
        if self._fanout is None:
            self._fanout = Fanout(self._open_unwatched, self._lv, _FANOUT_LANES,
                                  self.counters.data, self._timeout,
                                  f"xvirt-libvirt-info {self.target}")
        return self._fanout

    def _open_unwatched(self) -> Any:
        assert self._loop is not None
        with self._loop.unwatched():
            return self._open()

    def snapshot(self) -> TableSnapshot:
        """One ``getAllDomainStats(STATE)`` under the lock, then ``info()`` for each
        domain without it: the figures (CPU time, memory, vCPUs) libvirt reads without
        the guest's QEMU monitor. A domain whose ``info()`` fails is that domain's
        failure (``unanswered``), never the host's."""
        with self._lock:
            records = self._stats_records()
            since = self._epoch
            generation = self._mirror.generation
            conn = self._conn
            fanout = self._fanout_for(len(records))
            self._publish()
        rows: list[DataRow] = []
        names: list[str] = []
        unanswered: list[Unanswered] = []
        departed: list[tuple[int, str, str]] = []
        row_of = self._row
        answered: dict[str, Sequence[int]] = {}
        lanes_from = len(records)  # where the lanes' domains begin, in ``records``
        if fanout is not None:
            # Lane i gets every (lanes + 1)-th domain from the i-th on; this thread
            # takes the rest meanwhile, then whatever a lane could not answer.
            ways = fanout.lanes + 1
            jobs = fanout.start([[r[1] for r in records[i::ways]] for i in range(1, ways)],
                                {r[1] for r in records})
            lanes_from = len(records[0::ways])
            records = [r for i in range(ways) for r in records[i::ways]]
        for k, (domid, uuid, name, dom, state) in enumerate(records):
            # The figures, from info(), a later call: the domain may have stopped and
            # started again under another ID since, so ID and state come from the
            # record, one instant (C1).
            if k == lanes_from and fanout is not None:
                answered = fanout.finish(jobs)
            try:
                info = answered.get(uuid)
                if info is None:
                    info = self._info(dom, conn, uuid, domid)
            except NoDomainError:
                departed.append((domid, uuid, name))
                continue
            except CONNECTION_LOST:
                raise  # the host, not this domain: nothing can be answered
            except XvirtError as exc:  # this domain only: the others are served
                unanswered.append(Unanswered(domid, uuid, exc, name))
                continue
            row = row_of(domid, uuid, info, state)
            if row is None:
                departed.append((domid, uuid, name))
                continue
            rows.append(row)
            names.append(name)
        if departed:
            state_of = {uuid: state for _, uuid, _, _, state in records}
            with self._lock:
                exact = self._epoch == since
                for domid, uuid, name in departed:
                    again = self._apply_departure(uuid, since, self.counters.data)
                    if again is None:
                        continue  # gone, observed in order
                    # Live after all (it left its ID and came back under another since
                    # the record, or never left): a member at the record's instant. Its
                    # ID and state stay the record's; figures from its new handle (one
                    # call, under the lock: a race's rare path).
                    try:
                        info = self._call(self.counters.data, again.info, op="info",
                                          uuid=uuid, domid=domid)
                        row = self._row(domid, uuid, info, state_of[uuid])
                    except XvirtError as exc:
                        if isinstance(exc, CONNECTION_LOST):
                            raise
                        row, error_ = None, exc
                    else:
                        error_ = NoDomainError(f"domain {domid} ({uuid}) vanished during "
                                               "info()", uri=self.uri, op="info", uuid=uuid,
                                               domid=domid)
                    if row is not None:
                        rows.append(row)
                        names.append(name)
                    else:
                        unanswered.append(Unanswered(domid, uuid, error_, name))
                # The members are the live set at the current generation only when no
                # other observation came between; else at the census's (the cache then
                # has events past it and leaves the membership to them).
                if exact:
                    generation = self._mirror.generation
                self._publish()
        return TableSnapshot(self._boot, generation, tuple(rows), tuple(names),
                             tuple(unanswered))

    def identify(self, domid: int) -> IdOwner:
        """Who holds ``domid``: one ``lookupByUUIDString`` of the UUID the mirror
        believes there (libvirt hashes UUIDs), ``lookupByID`` (a scan of every
        domain) only when that domain is no longer at ``domid``.

        Either call is one observation of one instant; at that instant no other
        domain can hold the ID the believed one reports, so "it is at ``domid``"
        answers who holds ``domid`` exactly as ``lookupByID`` would (C1)."""
        with self._lock:
            believed = self._mirror.holder(domid)
            if believed is not None:
                dom = self._lookup_uuid(believed)
                if dom is not None and dom.ID() == domid:
                    name = dom.name()
                    self._handles[believed] = dom
                    if not self._mirror.agrees(believed, domid, name):
                        self._mirror.saw(domid, believed, name)  # renamed: nobody displaced
                        self._publish()
                    return tuple_new(IdOwner, (self._boot, self._mirror.generation, believed,
                                               name))
                # Gone or moved, observed in this call: only lookupByID can say who is there.
                if dom is None or dom.ID() < 0:
                    self._gone(believed)
                else:
                    self._saw(dom, self.counters.data)
            try:
                dom = self._call(self.counters.data, lambda: self._conn.lookupByID(domid),
                                 op="lookupByID", domid=domid)
            except NoDomainError:
                # Nobody there: whom the mirror believed there, or, if it holds that
                # one departed, the one it last saw there (see Mirror.departed), unless
                # this very call has just observed it.
                suspect = self._mirror.vacant(domid) or self._mirror.departed(domid)
                if suspect is not None and suspect != believed:
                    self._observe_uuid(suspect, self.counters.data)
                self._publish()
                return IdOwner(self._boot, self._mirror.generation, None)
            _, uuid, name = self._saw(dom, self.counters.data)
            self._publish()
            return IdOwner(self._boot, self._mirror.generation, uuid, name)

    def _lookup_uuid(self, uuid: str) -> Any | None:
        """(Lock held) ``lookupByUUIDString``, counted on the data plane; None when no
        domain has ``uuid``. :meth:`_call` inlined: this is every lookup's one call."""
        conn = self._conn
        if conn is not None and not self._lost:
            self.counters.data()
            self._epoch += 1
            try:
                return conn.lookupByUUIDString(uuid)
            except self._lv.libvirtError as exc:
                if exc.get_error_code() == VIR_ERR_NO_DOMAIN:
                    return None
                if not self._is_lost():
                    raise translate(exc, uri=self.uri, op="lookupByUUIDString",
                                    uuid=uuid) from None
                self._lost = True  # _call reconnects and asks again, as for any read
        try:
            return self._call(self.counters.data, lambda: self._conn.lookupByUUIDString(uuid),
                              op="lookupByUUIDString", uuid=uuid)
        except NoDomainError:
            return None

    def info_by_uuid(self, uuid: str, domid_hint: int) -> IdAnswer:
        """``info()`` on the domain's UUID handle, made without the driver's lock: a
        guest that does not answer holds up its own callers only."""
        with self._lock:
            dom = self._handles.get(uuid)
            if dom is None or self._lost or self._closed:
                dom = self._observe_uuid(uuid, self.counters.data)
                if dom is None:
                    self._publish()
                    return IdAnswer(self._boot, self._mirror.generation, None)
            since = self._epoch
            conn = self._conn
            known = self._mirror.domid(uuid)  # where it is as last observed
            generation = self._mirror.generation
        try:
            info = self._info(dom, conn, uuid)
        except NoDomainError:
            info = None
        row = None if info is None else self._row(
            domid_hint if known is None else known, uuid, info)
        if row is not None:
            return tuple_new(IdAnswer, (self._boot, generation, row))
        with self._lock:
            self._apply_departure(uuid, since, self.counters.data)
            self._publish()
            return IdAnswer(self._boot, self._mirror.generation, None)

    def _info(self, dom: Any, conn: Any, uuid: str, domid: int | None = None) -> Any:
        """``dom.info()`` without the driver's lock, counted: the hot path is
        :meth:`_unlocked`'s first try, inlined; a failure goes through it (translated,
        or retried on the UUID's handle after a reconnect)."""
        self.counters.data()
        try:
            return dom.info()
        except self._lv.libvirtError as exc:
            self._failed(exc, conn, op="info", uuid=uuid, domid=domid)
            return self._unlocked(self.counters.data, partial(self._handle_call, uuid, "info"),
                                  op="info", uuid=uuid, domid=domid)

    def _handle_call(self, uuid: str, method: str, *args: object) -> Callable[[], Any]:
        """(Lock held) ``method(*args)`` of the domain's current handle, looked up by
        UUID if none is held (a reconnect drops them all)."""
        fn = getattr(self._handle(uuid, method), method)
        return partial(fn, *args) if args else fn

    def info_by_id(self, domid: int) -> IdAnswer:
        owner = self.identify(domid)
        if owner.uuid is None:
            return IdAnswer(owner.boot_id, owner.generation, None)
        return self.info_by_uuid(owner.uuid, domid)

    @staticmethod
    def _row(domid: int, uuid: str, info: Sequence[int],
             state_code: int | None = None) -> DataRow | None:
        """``info()``'s figures; the state too unless ``state_code`` (of the call
        that gave ``domid``) is known. None when ``info()`` says shut off."""
        state = _STATES.get(info[0])
        if state is None or domid < 0:
            return None  # shut off: not a live domain
        if state_code is not None:
            state = _STATES.get(state_code, state)
        return tuple_new(DataRow, (domid, uuid, state, int(info[2]), int(info[1]),
                                   int(info[3]), int(info[4])))

    # -- statistics (issue 19) ---------------------------------------------------------------

    def domain_stats(self, groups: frozenset[StatGroup], uuids: Sequence[str] | None = None,
                     *, timeout_s: float | None = None) -> list[DomainStats]:
        """One libvirt statistics call, with NOWAIT, made on a lane without the driver's
        lock and given a deadline: ``getAllDomainStats`` for every live domain (or for a
        list of UUIDs that holds every domain the driver knows live, a survey's), else
        ``domainListGetStats`` of the UUIDs' handles. A domain gone meanwhile is left
        out; a group whose keys its record lacks is ``missing``. If the call does not
        answer in time (a guest whose QEMU is stopped and whose job was free: libvirt
        takes the job and waits on its monitor), each domain is asked on its own
        (:meth:`_stats_one_by_one`). Identity (ID, name) is the call's.

        Where the hypervisor makes libvirt wait on each guest for some groups
        (:data:`GUEST_GROUPS`: QEMU's monitor), those are asked apart from the others,
        split across the lanes (:meth:`_stats_split`).

        The deadline: ``timeout_s`` in all (half for the call, half for what follows
        when it does not answer), else the driver's ``timeout`` for each.

        Counted on the data plane: the call (each part of a split one); the first time,
        or after a reconnect, a lookup of each UUID asked that the driver holds no handle
        for (under the lock: an observation), and, where the lanes have connections of
        their own, one per UUID on the lane's connection; with the net group (and, on a
        split call, the block group), one ``XMLDesc`` of each domain whose devices are
        not known at its current ID."""
        op = "domain_stats"
        chosen = check_groups(groups, op=op, uri=self.uri)
        wanted = None if uuids is None else frozenset(self._uuid(u, op) for u in uuids)
        if wanted is not None and not wanted:
            return []
        each_s = self._timeout if timeout_s is None else min(self._timeout, timeout_s / 2)
        # Two tries of a lost connection, one of libvirt refusing NOWAIT (< 4.5).
        for _ in range(3):
            call, lanes = self._prepare_stats(chosen, wanted)
            if call is None:
                return []  # none of the UUIDs asked is live
            guest = chosen & self._guest_groups
            first = call if not guest else replace(
                call, groups=(chosen - guest) | {StatGroup.STATE},
                bits=stats_bits((chosen - guest) | {StatGroup.STATE}),
                want_disks=StatGroup.BLOCK in guest)
            started = self._clock.now()
            (outcome,) = lanes.run([partial(self._stats_job, first)], each_s)
            if outcome is None:
                return self._stats_one_by_one(call, lanes, each_s)
            if outcome.error is None:
                found = outcome.value or []
                if guest:
                    left_s = 2 * each_s - (self._clock.now() - started)
                    found = self._stats_split(call, lanes, guest, found, left_s)
                return self._stats_answer(call, found)
            self._stats_failed(outcome.error, first)  # raises, or returns to try again
        raise HostUnreachableError(f"libvirt at {self.target!r} keeps dropping the connection",
                                   uri=self.uri, op=op)

    def _stats_split(self, call: _StatsCall, lanes: Lanes, guest: frozenset[StatGroup],
                     found: Sequence[tuple[Any, Mapping[str, Any]]],
                     deadline_s: float) -> list[tuple[Any, Mapping[str, Any]]]:
        """The ``guest`` groups of the live domains the first call (``found``: the other
        groups) answered, asked in up to ``_STATS_LANES`` parts at once, each a
        ``domainListGetStats`` on a lane of its own, so that libvirt's waits on the
        guests overlap (through a daemon, on connections of their own). The block group
        is asked only of the domains whose XML, at their current ID and read within
        ``_DEVICES_TTL_S``, names a disk: QEMU's answer costs a monitor round trip per
        guest, disk or none; the others answer ``block.count`` 0. Each of the two kinds
        (with disks, without) has a share of the ``_STATS_LANES`` lanes by its domains
        times its groups, and is split in that many parts of one size, each of at
        least ``_SPLIT_MIN`` domains (at most ``_STATS_LANES`` + 1 parts, run on at most
        ``_STATS_LANES`` lanes). The parts get half of ``deadline_s``; the domains of a
        part that did not answer in that time (or failed) are then asked one by one
        within the rest (the stopped guest whose job the abandoned part holds is
        skipped by NOWAIT then, its other figures served), and a domain that still did
        not answer has its guest groups missing."""
        records: dict[str, dict[str, Any]] = {}
        handles: dict[str, Any] = {}
        with_disks: list[str] = []
        without: list[str] = []
        now = self._clock.now()
        for dom, record in found:
            domid = dom.ID()
            uuid = dom.UUIDString()
            if domid < 0 or (call.wanted is not None and uuid not in call.wanted):
                continue
            records[uuid] = dict(record)
            handles[uuid] = dom
            with self._nics_lock:
                known = self._disks.get(uuid)
            if StatGroup.BLOCK in guest and known is not None and known[0] == domid \
                    and now - known[1] < _DEVICES_TTL_S and known[2] == 0:
                without.append(uuid)
            else:
                with_disks.append(uuid)
        parts: list[_StatsCall] = []
        families = [(uuids, groups) for uuids, groups in
                    ((with_disks, guest), (without, guest - {StatGroup.BLOCK}))
                    if uuids and groups]
        work = sum(len(uuids) * len(groups) for uuids, groups in families)
        for uuids, groups in families:
            share = max(1, round(_STATS_LANES * len(uuids) * len(groups) / work))
            size = max(_SPLIT_MIN, -(-len(uuids) // share))
            count = -(-len(uuids) // size)
            for i in range(count):
                chunk = uuids[i::count]
                parts.append(replace(call, groups=groups, bits=stats_bits(groups),
                                     wanted=frozenset(chunk), every=False,
                                     handles={u: handles[u] for u in chunk},
                                     want_disks=False))
        if StatGroup.BLOCK in guest:
            for uuid in without:
                records[uuid]["block.count"] = 0
        until = self._clock.now() + max(deadline_s, 0.0)
        for wait in (0.5, 1.0):  # the parts, then each domain of a part that did not answer
            left = until - self._clock.now()
            outcomes = lanes.run([partial(self._stats_job, part) for part in parts],
                                 max(left * wait, 0.0), min(len(parts), _STATS_LANES))
            unanswered = []
            for part, outcome in zip(parts, outcomes, strict=True):
                if outcome is None or outcome.error is not None:
                    unanswered.append(part)
                    continue
                for dom, record in outcome.value or []:
                    mine = records.get(dom.UUIDString())
                    if mine is not None:
                        mine.update(record)
            if wait == 1.0 or not unanswered:
                break
            parts = [replace(part, wanted=frozenset((uuid,)), handles={uuid: dom})
                     for part in unanswered for uuid, dom in part.handles.items()]
        return [(handles[uuid], record) for uuid, record in records.items()]

    def _prepare_stats(self, groups: frozenset[StatGroup],
                       wanted: frozenset[str] | None) -> tuple[_StatsCall | None, Lanes]:
        """(Takes the lock) What one statistics call needs: the handles of the UUIDs
        asked (a UUID whose handle is not held is looked up: an observation; one not
        live is left out; None when none is), and the lanes, started on first use.
        Through a daemon whose connections share one host (``_split``) each lane has a
        connection of its own; elsewhere the lanes use the driver's."""
        with self._lock:
            if self._closed:
                raise HostUnreachableError("the libvirt connection is closed", uri=self.uri,
                                           op="domain_stats")
            if self._lost or self._conn is None:
                self._reconnect()
            handles: dict[str, Any] = {}
            every = wanted is None
            if wanted is not None:
                for uuid in wanted:
                    dom = self._handles.get(uuid)
                    if dom is None:
                        dom = self._observe_uuid(uuid, self.counters.data)
                    if dom is not None:
                        handles[uuid] = dom
                # Every domain known live asked for: getAllDomainStats needs no handle.
                every = len(handles) >= len(self._handles) \
                    and self._handles.keys() <= handles.keys()
            self._publish()
            if self._stats_lanes is None:
                # Closed with the driver: within a second of close() (which does not
                # know them), at once where it closes them.
                self._stats_lanes = Lanes(self._open_unwatched if self._split else None,
                                          f"xvirt-libvirt-stats {self.target}",
                                          keep=_STATS_LANES + 1, poll_s=_STATS_POLL_S,
                                          closed=lambda: self._closed)
            lanes = self._stats_lanes
            if wanted is not None and not handles:
                return None, lanes
            nowait = self._stats_flags & VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
            return _StatsCall(groups, stats_bits(groups),
                              VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | nowait,
                              None if self._split else self._conn,
                              None if wanted is None else frozenset(handles), handles,
                              every), lanes

    def _stats_job(self, call: _StatsCall, lane: Lane) -> list[tuple[Any, Mapping[str, Any]]]:
        """On a lane: the statistics call, then, with the net group, the XML of each
        domain whose devices are not known (:meth:`_read_devices`). A failure that
        finds the lane's own connection dead drops it (_LaneLost: asked again)."""
        conn = lane.connection() if call.conn is None else call.conn
        try:
            if call.every:
                self.counters.data()
                found = conn.getAllDomainStats(call.bits, call.flags)
            else:
                doms = list(call.handles.values()) if call.conn is not None \
                    else self._lane_handles(lane, conn, call.handles)
                if not doms:
                    return []
                self.counters.data()
                found = conn.domainListGetStats(doms, call.bits, call.flags)
            if call.groups & self._per_domain_groups:
                found = self._fill_per_domain(found, call.groups & self._per_domain_groups)
            if StatGroup.NET in call.groups or call.want_disks:
                self._read_devices(conn, found, call.want_disks)
        except self._lv.libvirtError as exc:
            if call.conn is None and not connection_alive(conn, self._lv):
                lane.drop()
                raise _LaneLost(exc) from None
            raise
        return list(found)

    def _fill_per_domain(self, found: Sequence[tuple[Any, Mapping[str, Any]]],
                         groups: frozenset[StatGroup]) -> list[tuple[Any, Mapping[str, Any]]]:
        """(On a lane) The groups this hypervisor's bulk call leaves out, read per live
        domain (:func:`fill_from_calls`), each call counted on the data plane."""
        return [(dom, record if dom.ID() < 0 else fill_from_calls(
                    dom, record, groups, count=self.counters.data, error=self._lv.libvirtError,
                    uri=self.uri))
                for dom, record in found]

    def _lane_handles(self, lane: Lane, conn: Any, uuids: Mapping[str, Any]) -> list[Any]:
        """(On a lane with its own connection) A handle made on it for each UUID: one
        ``lookupByUUIDString`` the first time; a UUID no domain has is left out. The
        lane keeps those of the domains the driver holds live, and a bounded slack (C7)."""
        if len(lane.handles) > 2 * len(self._handles) + 64:
            with self._lock:
                live = set(self._handles)
            lane.handles = {u: d for u, d in lane.handles.items() if u in live}
        doms = []
        for uuid in uuids:
            dom = lane.handles.get(uuid)
            if dom is None:
                self.counters.data()
                with self._nics_lock:
                    self._lane_lookups += 1
                try:
                    dom = conn.lookupByUUIDString(uuid)
                except self._lv.libvirtError as exc:
                    if exc.get_error_code() == VIR_ERR_NO_DOMAIN:
                        continue  # gone: left out, as the statistics call leaves it
                    raise
                lane.handles[uuid] = dom
            doms.append(dom)
        return doms

    def _read_devices(self, conn: Any, found: Sequence[tuple[Any, Mapping[str, Any]]],
                      disks: bool) -> None:
        """(On a lane) From each domain's XML (one ``XMLDesc``, which libvirt answers
        from its records: no job, no guest): the MAC and bridge of the NICs the records
        name, read once per domain and ID, again when a record names a device the XML
        read did not (a NIC plugged since); with ``disks``, also the number of disks,
        read again after ``_DEVICES_TTL_S`` (a disk plugged into a domain that had none
        is seen within that). A domain whose XML cannot be read keeps what was known."""
        now = self._clock.now()
        for dom, record in found:
            names = net_names(record)
            uuid, domid = dom.UUIDString(), dom.ID()
            if domid < 0:
                continue
            with self._nics_lock:
                nics = self._nics.get(uuid)
                counted = self._disks.get(uuid)
            nics_known = not names or (nics is not None and nics[0] == domid
                                       and all(n in nics[1] for n in names))
            disks_known = not disks or (counted is not None and counted[0] == domid
                                        and now - counted[1] < _DEVICES_TTL_S)
            if nics_known and disks_known:
                continue
            self.counters.data()
            try:
                xml = dom.XMLDesc(0)
            except self._lv.libvirtError:
                if connection_alive(conn, self._lv):
                    continue  # this domain (gone, say), not the connection
                raise
            devices = read_devices(xml, uri=self.uri)
            with self._nics_lock:
                self._nics[uuid] = (domid, devices.nics)
                self._disks[uuid] = (domid, now, devices.disks)

    def _stats_answer(self, call: _StatsCall,
                      found: Sequence[tuple[Any, Mapping[str, Any]]]) -> list[DomainStats]:
        """The records of one call as DomainStats: live domains only (ID and state of the
        record, the call's instant), of the UUIDs asked; then the NIC sources pruned to
        the live domains (C7): to those answered when every live domain was."""
        answers = []
        seen = set()
        for dom, record in found:
            domid = dom.ID()
            if domid < 0:
                continue  # shut off: not live
            uuid = dom.UUIDString()
            if call.wanted is not None and uuid not in call.wanted:
                continue
            nics = None
            if StatGroup.NET in call.groups:
                with self._nics_lock:
                    known = self._nics.get(uuid)
                nics = known[1] if known is not None and known[0] == domid else None
            stats = stats_from_record(uuid, dom.name(), domid, record, call.groups,
                                      state_of=domain_state, nics=nics,
                                      marks=self._job_marks)
            if stats is not None:
                answers.append(stats)
                seen.add(uuid)
        if call.wanted is None:
            self._prune_nics(seen)
        elif max(len(self._nics), len(self._disks)) > len(self._handles) + 16:
            with self._lock:
                live = set(self._handles)
            self._prune_nics(live)
        return answers

    def _prune_nics(self, live: set[str]) -> None:
        with self._nics_lock:
            for uuid in [u for u in self._nics if u not in live]:
                del self._nics[uuid]
            for uuid in [u for u in self._disks if u not in live]:
                del self._disks[uuid]

    def _stats_failed(self, exc: BaseException, call: _StatsCall) -> None:
        """A statistics call failed: return to ask again (a lost connection; libvirt
        refusing NOWAIT, asked again without it and remembered), or raise its error."""
        if isinstance(exc, _LaneLost):
            return  # the lane opens a new connection
        if not isinstance(exc, self._lv.libvirtError):
            raise exc  # opening a lane's connection, a malformed XML: already ours
        op = "domain_stats"
        try:
            if call.conn is not None:
                self._failed(exc, call.conn, op=op)  # raises unless the connection is lost
                return
            raise translate(exc, uri=self.uri, op=op) from None
        except (InvalidArgumentError, UnsupportedError):
            if not call.flags & VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT:
                raise
            with self._lock:
                self._stats_flags = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE  # libvirt < 4.5
            return

    def _stats_one_by_one(self, call: _StatsCall, lanes: Lanes,
                          deadline_s: float) -> list[DomainStats]:
        """The call did not answer within the deadline: each domain asked on its own
        (``domainListGetStats`` of one), up to ``_STATS_LANES`` at once, all within one
        more deadline. A domain that does not answer in time, or whose call fails, has
        every group asked in ``missing`` (ID and name as the driver last observed them).
        Where every live domain was asked, one census first says who they are."""
        with self._lock:
            if call.wanted is None:
                if self._closed:
                    raise HostUnreachableError("the libvirt connection is closed",
                                               uri=self.uri, op="domain_stats")
                members = self._census_members(self.counters.data)
                handles = {uuid: self._handles[uuid] for _, uuid, _ in members}
                conn = None if call.conn is None else self._conn
            else:
                members = [(dom.ID(), uuid, dom.name()) for uuid, dom in call.handles.items()]
                handles, conn = dict(call.handles), call.conn
            self._publish()
        each = [replace(call, conn=conn, wanted=frozenset((uuid,)),
                        handles={uuid: handles[uuid]}, every=False) for _, uuid, _ in members]
        outcomes = lanes.run([partial(self._stats_job, c) for c in each], deadline_s,
                             _STATS_LANES)
        answers: list[DomainStats] = []
        for (domid, uuid, name), one, outcome in zip(members, each, outcomes, strict=True):
            if outcome is not None and outcome.error is None:
                answers += self._stats_answer(one, outcome.value or [])
                continue
            if conn is not None and outcome is not None \
                    and isinstance(outcome.error, self._lv.libvirtError):
                with self._lock:
                    if conn is self._conn and self._is_lost():
                        self._lost = True
                        raise HostUnreachableError(
                            f"the connection to libvirt at {self.target!r} was lost",
                            uri=self.uri, op="domain_stats")
            answers.append(DomainStats(uuid, name, domid, missing=call.groups))
        return answers

    # -- control plane ----------------------------------------------------------------------

    def _resolution(self, doms: Sequence[Any]) -> Resolution:
        found = {}
        for dom in doms:
            domid, uuid, name = self._saw(dom, self.counters.control)
            found[uuid] = Resolved(domid, uuid, name)
        self._publish()
        return Resolution(self._boot, self._mirror.generation, tuple(found.values()))

    def _lookup_all(self, keys: Sequence[T], lookup: Callable[[T], Any], what: str) -> list[Any]:
        doms = []
        for key in keys:
            try:
                dom = self._call(self.counters.control, partial(lookup, key), op=what)
            except NoDomainError:
                continue
            if dom.ID() >= 0:
                doms.append(dom)
        return doms

    def resolve(self, uuids: Sequence[str] = (), ids: Sequence[int] = ()) -> Resolution:
        with self._lock:
            doms = self._lookup_all(uuids, lambda u: self._conn.lookupByUUIDString(u),
                                    "lookupByUUIDString")
            found = {d.UUIDString() for d in doms}
            for uuid in uuids:
                if uuid not in found:
                    self._gone(uuid)
            doms += self._lookup_all(ids, lambda i: self._conn.lookupByID(i), "lookupByID")
            return self._resolution(doms)

    def resolve_names(self, names: Sequence[str]) -> Resolution:
        # libvirt names are UTF-8: a name with a lone surrogate is no domain's name there
        names = [n for n in names if sendable(n)]
        with self._lock:
            return self._resolution(self._lookup_all(
                names, lambda n: self._conn.lookupByName(n), "lookupByName"))

    def list_all(self) -> Resolution:
        with self._lock:
            doms = self._census_call(self.counters.control)
            return self._resolution(doms)

    def _handle(self, uuid: str, op: str) -> Any:
        dom = self._handles.get(uuid)
        if dom is None:
            dom = self._observe_uuid(uuid, self.counters.control)
        if dom is None:
            self._publish()
            raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self.uri, op=op)
        return dom

    def _waiting_handle(self, uuid: str, op: str) -> Any:
        """(Lock held) The live domain's handle for a call that may wait on its guest
        (an action, its XML): one made on the watched connection. libvirt's client lets a
        call queued behind another that waits for its reply wait for the connection's
        next keepalive, and the connection the other calls use has none: a pending
        action there would hold up every lookup."""
        dom = self._waiting.get(uuid)
        if dom is None:
            dom = self._observe_uuid(uuid, self.counters.control, waiting=True)
        if dom is None:
            self._publish()
            raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self.uri, op=op)
        return dom

    def act(self, op: Op, domid: int, expected_uuid: str, arg: str | None = None) -> None:
        """By UUID handle: libvirt names the domain by UUID in the call itself, so the
        action cannot land on a domain that took over the ID (C4). Made without the
        driver's lock: an action waits for the domain's job (a hung guest holds it for
        libvirt's job timeout), and only this caller may wait for that."""
        since = self._epoch
        try:
            self._unlocked(self.counters.control,
                           lambda: self._action(self._waiting_handle(expected_uuid, op.value),
                                                       op, arg),
                           retry=False, op=op.value, uuid=expected_uuid, domid=domid)
        except OperationFailedError:
            with self._lock:
                if self._observe_uuid(expected_uuid, self.counters.control) is None:
                    self._publish()
                    raise NoDomainError(f"no domain with UUID {expected_uuid}",
                                        uuid=expected_uuid, uri=self.uri, op=op.value) from None
                self._publish()
            raise
        except NoDomainError:
            with self._lock:
                self._apply_departure(expected_uuid, since, self.counters.control)
                self._publish()
            raise

    def _action(self, dom: Any, op: Op, arg: str | None) -> Callable[[], object]:
        if op is Op.PAUSE:
            return dom.suspend  # type: ignore[no-any-return]
        if op is Op.RESUME:
            return dom.resume  # type: ignore[no-any-return]
        if op is Op.SHUTDOWN:
            return dom.shutdown  # type: ignore[no-any-return]
        if op is Op.REBOOT:
            return lambda: dom.reboot(0)
        if op is Op.DESTROY:
            return dom.destroy  # type: ignore[no-any-return]
        if op is Op.SAVE:
            path = self._image_path(check_sendable(str(arg), "the image name", uri=self.uri,
                                                   op=op.value))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return lambda: dom.save(path)
        if op is Op.RENAME:
            name = check_sendable(str(arg), "the new name", uri=self.uri, op=op.value)
            return lambda: dom.rename(name, 0)
        raise UnsupportedError(f"libvirt driver cannot {op.value}", op=op.value, uri=self.uri)

    def _image_path(self, image: str) -> str:
        assert self.image_dir is not None
        return os.path.join(self.image_dir, image)

    def restore(self, image: str) -> Resolution:
        path = self._image_path(check_sendable(image, "the image name", uri=self.uri,
                                               op="restore"))
        if not os.path.isfile(path):
            raise NoDomainError(f"no saved image {image!r} in {self.image_dir}",
                                uri=self.uri, op="restore")
        # Both without the lock: they read the image and start a guest.
        xml = self._unlocked(self.counters.control,
                             lambda: partial(self._watched_conn().saveImageGetXMLDesc, path, 0),
                             op="restore")
        uuid = uuid_from_xml(xml, uri=self.uri)
        self._unlocked(self.counters.control, lambda: partial(self._watched_conn().restore, path),
                       retry=False, op="restore", uuid=uuid)
        with self._lock:
            dom = self._observe_uuid(uuid, self.counters.control, EventKind.RESTORED)
            if dom is None:
                self._publish()
                raise NoDomainError("restored domain vanished at once", uuid=uuid,
                                    op="restore", uri=self.uri)
            return self._resolution([dom])

    def domain_config(self, uuid: str) -> DomainConfig:
        """``XMLDesc`` without the driver's lock (on QEMU it may refresh from the guest):
        one call on a live domain's handle; on a defined, inactive domain (which has
        none held) a ``lookupByUUIDString`` first, 2 (its disks and NICs are in its XML
        only, and libvirt answers it from the definition: no guest)."""
        since = self._epoch
        try:
            xml = self._unlocked(self.counters.control,
                                 partial(self._any_handle_call, uuid, "XMLDesc", 0),
                                 op="XMLDesc", uuid=uuid)
        except NoDomainError:
            with self._lock:
                self._apply_departure(uuid, since, self.counters.control)
                self._publish()
            raise
        return config_from_xml(xml, uri=self.uri)

    # -- defined domains (costs: see the module docstring) ----------------------------------

    def _seen(self, dom: Any, count: Callable[[], object]) -> tuple[int, str, str]:
        """(Lock held) Apply what a lookup under the lock found, live or inactive:
        ``(id, uuid, name)``, the ID -1 for an inactive domain, which is not live."""
        uuid, domid, name = dom.UUIDString(), dom.ID(), dom.name()
        if domid >= 0:
            self._saw(dom, count)
        else:
            self._gone(uuid)
        return domid, uuid, name

    def _uuid(self, uuid: str, op: str) -> str:
        """``uuid`` in canonical form (libvirt's own answers use it), or
        InvalidArgumentError before any call."""
        try:
            return parse_uuid(uuid)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(exc.message, uri=self.uri, op=op, uuid=exc.uuid) from None

    def _defined(self, uuid: str, op: str) -> tuple[Any, Any, int, str]:
        """The domain ``uuid`` (canonical), running or not, by one ``lookupByUUIDString``
        under the lock, applied: ``(connection, handle, id, name)``; NoDomainError if
        none."""
        with self._lock:
            try:
                dom = self._call(self.counters.control,
                                 lambda: self._watched_conn().lookupByUUIDString(uuid), op=op,
                                 uuid=uuid)
            except NoDomainError:
                self._gone(uuid)
                self._publish()
                raise NoDomainError(f"no domain with UUID {uuid} is defined", uuid=uuid,
                                    uri=self.uri, op=op) from None
            domid, _, name = self._seen(dom, self.counters.control)
            self._publish()
            return self._conn, dom, domid, name

    def _definition_call(self, uuid: str, method: str, *args: object) -> Callable[[], Any]:
        """(Lock held) ``method(*args)`` of a fresh handle on ``uuid``, running or not:
        how a call on a definition is prepared again after a reconnect."""
        dom = self._call(self.counters.control,
                         lambda: self._watched_conn().lookupByUUIDString(uuid), op=method,
                         uuid=uuid)
        self._seen(dom, self.counters.control)
        self._publish()
        fn = getattr(dom, method)
        return partial(fn, *args) if args else fn

    def _any_handle_call(self, uuid: str, method: str, *args: object) -> Callable[[], Any]:
        """(Lock held) ``method(*args)`` of the live domain's handle held, else of a
        fresh one on ``uuid``, running or not."""
        dom = self._waiting.get(uuid)
        if dom is None or self._lost:
            return self._definition_call(uuid, method, *args)
        fn = getattr(dom, method)
        return partial(fn, *args) if args else fn

    def _on_definition(self, conn: Any, dom: Any, uuid: str, method: str, *,
                       retry: bool = True, op: str | None = None,
                       name: str | None = None) -> Any:
        """``dom.<method>()`` (``dom`` a handle made on ``conn``) without the driver's
        lock, counted on the control plane; again on a fresh handle after a reconnect
        when ``retry``."""
        return self._unlocked(self.counters.control, partial(self._definition_call, uuid, method),
                              retry=retry, op=op or method, uuid=uuid, name=name,
                              first=(conn, getattr(dom, method)))

    def _config(self, conn: Any, dom: Any, uuid: str) -> DomainConfig | None:
        """Two calls: ``info()`` (memory, maximum, vCPUs; of an inactive domain too,
        ``[5, max, memory, vcpus, 0]``) and ``OSType()``; libvirt answers both from its
        records, not from the guest. None where the hypervisor has no ``OSType``."""
        info = self._on_definition(conn, dom, uuid, "info")
        try:
            os_type = self._on_definition(conn, dom, uuid, "OSType")
        except UnsupportedError:
            return None
        return DomainConfig(memory_kib=int(info[2]), max_memory_kib=int(info[1]),
                            vcpus=int(info[3]), os_type=str(os_type))

    def find(self, *, uuid: str | None = None, name: str | None = None) -> Definition | None:
        """By one lookup under the lock (applied: a lookup is an observation), then the
        domain's figures without it. None when the domain goes between the calls."""
        if (uuid is None) == (name is None):
            raise InvalidArgumentError("find takes exactly one of uuid and name",
                                       uri=self.uri, op="find", uuid=uuid, name=name)
        if name is not None and not sendable(name):
            return None  # libvirt names are UTF-8: no domain has this one
        if uuid is not None:
            uuid = self._uuid(uuid, "find")
        with self._lock:
            try:
                if uuid is not None:
                    wanted = uuid
                    dom = self._call(self.counters.control,
                                     lambda: self._watched_conn().lookupByUUIDString(wanted),
                                     op="lookupByUUIDString", uuid=uuid)
                else:
                    called = name
                    dom = self._call(self.counters.control,
                                     lambda: self._watched_conn().lookupByName(called),
                                     op="lookupByName", name=name)
            except NoDomainError:
                if uuid is not None:
                    self._gone(uuid)
                self._publish()
                return None
            domid, found, found_name = self._seen(dom, self.counters.control)
            conn = self._conn
            self._publish()
        try:
            # An inactive libvirt domain is persistent: a transient one that stops is gone.
            persistent = domid < 0 or bool(self._on_definition(conn, dom, found,
                                                               "isPersistent"))
            config = self._config(conn, dom, found)
        except NoDomainError:
            return None
        return Definition(found, found_name, None if domid < 0 else domid, persistent, config)

    def list_defined(self) -> tuple[Definition, ...]:
        """``listAllDomains(INACTIVE)`` under the lock (applied: none of them is live),
        then each one's figures without it; by name. One undefined between the calls is
        left out."""
        with self._lock:
            doms = self._call(self.counters.control, lambda: self._watched_conn().listAllDomains(
                VIR_CONNECT_LIST_DOMAINS_INACTIVE), op="listAllDomains")
            # libvirt filters on activity, then names each domain: one started in between
            # comes out with its ID. It is running, not (only) defined.
            inactive = sorted(((dom.name(), dom.UUIDString(), dom) for dom in doms
                               if dom.ID() < 0), key=lambda item: (item[0], item[1]))
            for _, uuid, _ in inactive:
                self._gone(uuid)
            conn = self._conn
            self._publish()
        found = []
        for name, uuid, dom in inactive:
            try:
                config = self._config(conn, dom, uuid)
            except NoDomainError:
                continue
            found.append(Definition(uuid, name, None, True, config))
        return tuple(found)

    def define(self, name: str, config: DomainConfig, uuid: str | None = None) -> Definition:
        """``defineXML`` of a domain XML for this hypervisor (its capabilities say which
        domain type, OS type and emulator). libvirt itself refuses a name another UUID
        holds, and a new name for a UUID it knows (OperationFailedError), and replaces
        the definition of a UUID it knows (running: it becomes persistent). Nothing is
        applied to the mirror: a definition changes nothing live."""
        uuid = check_definition(name, config, uuid, uri=self.uri)  # before any call
        caps = self._unlocked(self.counters.control, lambda: self._watched_conn().getCapabilities,
                              op="getCapabilities", uuid=uuid, name=name)
        guest = choose_guest(caps, config.os_type, uri=self.uri, name=name)
        xml = domain_xml(name, config, uuid, guest, uri=self.uri)
        used: list[Any] = []  # the connection defineXML went to: the handle's

        def prepare() -> Callable[[], Any]:
            used.append(self._conn)
            return partial(self._watched_conn().defineXML, xml)

        dom = self._unlocked(self.counters.control, prepare, retry=False, op="define",
                             uuid=uuid, name=name)
        conn = used[-1]
        found, domid = dom.UUIDString(), dom.ID()
        try:
            figures = self._config(conn, dom, found)
        except NoDomainError:  # undefined already, by someone else: it was defined
            figures = None
        return Definition(found, dom.name(), None if domid < 0 else domid, True, figures)

    def start(self, uuid: str) -> None:
        """``create()`` of the inactive domain ``uuid``, without the driver's lock (it
        boots the guest), then one lookup to observe it running, so that its STARTED
        event is in the log when this returns (unless libvirt's event had the worker
        observe it first)."""
        op = "start"
        uuid = self._uuid(uuid, op)
        conn, dom, domid, name = self._defined(uuid, op)
        if domid >= 0:
            raise OperationFailedError(f"domain {name!r} is already running (ID {domid})",
                                       uri=self.uri, op=op, uuid=uuid, domid=domid, name=name)
        self._on_definition(conn, dom, uuid, "create", retry=False, op=op, name=name)
        with self._lock:
            self._observe_uuid(uuid, self.counters.control, EventKind.STARTED)
            self._publish()

    def rename_defined(self, uuid: str, new_name: str) -> None:
        """``rename(new_name, 0)`` of the shut-off domain ``uuid`` (libvirt renames only
        inactive domains), by UUID: nothing to misdirect (C4). A running one is
        refused, as libvirt refuses it."""
        op = "rename"
        uuid = self._uuid(uuid, op)
        check_sendable(new_name, "the new name", uri=self.uri, op=op)
        conn, dom, domid, name = self._defined(uuid, op)
        if domid >= 0:
            raise OperationFailedError(
                f"domain {name!r} is running (ID {domid}): libvirt renames only a domain "
                "that is shut off", uri=self.uri, op=op, uuid=uuid, domid=domid, name=name)
        self._unlocked(self.counters.control,
                       partial(self._definition_call, uuid, "rename", new_name, 0),
                       retry=False, op=op, uuid=uuid, name=name,
                       first=(conn, partial(dom.rename, new_name, 0)))

    def undefine(self, uuid: str) -> None:
        """``undefine()`` of the inactive domain ``uuid``; a running one is refused, as
        xend's ``delete`` refuses it (libvirt would make it transient instead).

        The check is the lookup's ID (libvirt's ``isActive`` is "the ID is not -1", so
        asking it would be one more call for the same answer). A domain started between
        the check and ``undefine()`` cannot be excluded (libvirt has no "undefine if
        inactive"): libvirt then undefines it running, which leaves it transient, gone
        when it stops; libvirt's UNDEFINED event reports it with its ID."""
        op = "undefine"
        uuid = self._uuid(uuid, op)
        conn, dom, domid, name = self._defined(uuid, op)
        if domid >= 0:
            raise OperationFailedError(
                f"domain {name!r} is running (ID {domid}): only a domain that is shut off "
                "can be undefined", uri=self.uri, op=op, uuid=uuid, domid=domid, name=name)
        self._on_definition(conn, dom, uuid, "undefine", retry=False, op=op, name=name)

    def host_info(self) -> HostInfo:
        with self._lock:
            c = self.counters.control
            node = self._call(c, lambda: self._conn.getInfo(), op="getInfo")
            hostname = self._call(c, lambda: self._conn.getHostname(), op="getHostname")
            kind = self._call(c, lambda: self._conn.getType(), op="getType")
            version = self._call(c, lambda: self._conn.getVersion(), op="getVersion")
            try:
                free = self._call(c, lambda: self._conn.getFreeMemory(), op="getFreeMemory")
            except UnsupportedError:
                free = 0
        v = int(version)
        return HostInfo(
            hostname=str(hostname), hypervisor=str(kind),
            version=f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}", arch=str(node[0]),
            cpus=int(node[2]), cpu_mhz=int(node[3]), nodes=int(node[4]),
            sockets_per_node=int(node[5]), cores_per_socket=int(node[6]),
            threads_per_core=int(node[7]), memory_kib=int(node[1]) * 1024,
            free_memory_kib=int(free) // 1024, boot_id=self._boot,
        )

    # -- events ---------------------------------------------------------------------------------

    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        """From the local log: the events libvirt's own could not give (numbered, in
        order with every answer). No libvirt call, except that a caller who waits
        (``timeout`` > 0) starts the driver following libvirt's events (see
        :meth:`follow_events`)."""
        if timeout > 0 and not self._following:
            self.follow_events()
        with self._lock:
            if timeout > 0 and after == self._mirror.generation:
                self._changed.wait_for(
                    lambda: self._closed or self._mirror.generation != after, timeout)
            events, complete = self._mirror.since(after)
            return EventBatch(self._boot, self._mirror.generation, events, complete)

    def close(self, *, wait: bool = True) -> None:
        """Close both connections; without ``wait``, never waiting on the lock another
        thread holds: a
        call blocked in libvirt, or at interpreter exit a thread stopped for good while
        holding it (a script that never closed its connection hung there, in
        ``virConnect.__del__``). Closed at once, so no new call starts; the teardown
        runs now if the lock is free, else once it is (drivers/closing.py)."""
        if self._closed:
            return
        self._closed = True
        fanouts: list[Fanout] = []

        def teardown() -> None:  # lock held
            self._publish()  # event waiters wake and see the connection closed
            self._disconnect()
            if self._fanout is not None:
                fanouts.append(self._fanout)
                self._fanout = None

        def stop_helpers() -> None:  # lock not held: the worker and the lanes may want it
            self._work.put(None)
            for fanout in fanouts:
                fanout.close()
            if self._stats_lanes is not None:
                self._stats_lanes.close()

        def disarm() -> None:
            # Interpreter exit. libvirt calls the event loop's Python callbacks holding
            # its own locks, and a thread the exit stopped in one holds them for good:
            # deregistering or closing would then never return (5 exits in 80 hung so
            # even with our lock free), and libvirt-python's finalizer of a connection
            # makes exactly those calls. So make none, and leave that finalizer nothing
            # to do: the process's end closes the sockets.
            for conn in {id(c): c for c in (self._conn, self._watched) if c is not None}.values():
                with contextlib.suppress(TypeError, AttributeError):
                    vars(conn).pop("domainEventCallbacks", None)
                    conn._o = None

        self._closer: threading.Thread | None = close_when_free(
            self._lock, teardown, stop_helpers, at_exit=disarm,
            name=f"xvirt-libvirt-close {self.target}", wait_s=self._timeout if wait else 0.0)
