"""Connection and Domain: the public, synchronous, thread-safe API.

A ``Domain`` is a UUID and a connection (C3); everything else it says is
asked for when needed, through the connection's identity cache. Mutations go
to the host as act-if-identity requests (C4) and never reach the driver on a
read-only connection.

A domain may also be defined and not running (a name and a UUID, no ID). The
data plane, and so the cache, knows only running domains: a lookup the cache
cannot answer asks the control plane once whether the domain is defined
(``_live_or_defined``), and nothing about defined domains is cached.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

from xvirt.cache import RETRIES, IdentityCache
from xvirt.direct import DirectLookup
from xvirt.drivers.base import Driver
from xvirt.errors import (
    ConnectionClosedError,
    HandleClosedError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ReadOnlyError,
    UnsupportedError,
)
from xvirt.lookup import Lookup
from xvirt.model import (
    Affect,
    ConnStats,
    DomainEvent,
    DomainInfo,
    DomainMetadata,
    DomainSample,
    DomainSettings,
    EventKind,
    HostCapabilities,
    HostInfo,
    Identity,
    MetadataKind,
    NodeCpuStats,
    NodeMemoryStats,
    SchedulerParams,
    Survey,
    VcpuInfo,
    check_domid,
    check_image,
    check_name,
    parse_uuid,
)
from xvirt.planes import Definition, DomainConfig, Op
from xvirt.stats import ALL_GROUPS, DomainStats, StatGroup, check_groups

__all__ = ["Connection", "Domain", "EventStream"]

T = TypeVar("T")

#: What an event wait of None (for ever) asks of the driver at each step, and the cap on
#: a finite one: longer waits overflow the platform's timers (about 31 years anyway).
FOREVER_S = 1e9


class Connection:
    """An open connection to one host. Use as a context manager, or call close()."""

    def __init__(self, driver: Driver, *, readonly: bool = False, cache: bool = True) -> None:
        self._driver = driver
        self._cache: Lookup = IdentityCache(driver) if cache else DirectLookup(driver)
        self.uri = driver.uri
        self.readonly = readonly
        self._closed = False

    # -- plumbing ---------------------------------------------------------------

    def _live(self) -> Lookup:
        if self._closed:
            raise ConnectionClosedError("the connection is closed", uri=self.uri)
        return self._cache

    def _writable(self, op: str, uuid: str | None = None) -> Lookup:
        cache = self._live()
        if self.readonly:
            raise ReadOnlyError(
                f"cannot {op}: the connection is read-only", op=op, uuid=uuid, uri=self.uri
            )
        return cache

    def _act(self, op: Op, uuid: str, arg: str | None = None) -> None:
        """Aim at the cache's best idea of the ID; the host checks the UUID (C4)."""
        cache = self._writable(op.value, uuid)
        domid = cache.domid_hint(uuid)
        for _ in range(RETRIES):
            try:
                self._driver.act(op, domid, uuid, arg)
                return
            except NoDomainError:
                domid = cache.relocate(uuid, domid)  # raises when the domain is gone
        # It was found alive every time (relocate raises once it is gone): nothing was
        # done, and the domain exists, so this is not NoDomainError (C3).
        raise OperationFailedError(
            f"cannot {op.value}: the domain kept changing ID; nothing was done, try again",
            uuid=uuid, op=op.value, uri=self.uri,
        )

    # -- listing and lookup -----------------------------------------------------------

    def list_domain_ids(self) -> list[int]:
        """IDs of all live domains, at one instant: one data-plane call (on libvirt a
        second, a census, when the host changed since the last)."""
        return sorted(self._live().list_ids())

    def list_domains(self) -> list[Domain]:
        """Handles of all live domains, in ID order: one data-plane snapshot."""
        rows = sorted(self._live().snapshot().rows, key=lambda r: r.id)
        return [Domain(self, row.uuid) for row in rows]

    def sample(self, groups: Iterable[StatGroup | str] = (), *,
               timeout: float | None = None) -> list[DomainSample]:
        """Identity and info of every live domain, in ID order, from one data-plane
        snapshot and at most one control-plane request: what monitors want. With
        ``groups`` (:class:`xvirt.stats.StatGroup` or their names: ``"block"``,
        ``"net"``...), each sample also carries those statistics, from one more
        data-plane call; without, nothing more is asked. ``timeout``: how long, at most,
        to wait for the statistics (see :meth:`domain_stats`).

        Raises the error of the first domain whose figures could not be read;
        :meth:`survey` reports such domains beside the others instead."""
        found = self.survey(groups, timeout=timeout)
        if found.failures:
            raise found.failures[0].error
        return found.samples

    def survey(self, groups: Iterable[StatGroup | str] = (), *,
               timeout: float | None = None) -> Survey:
        """:meth:`sample`, except that a domain whose figures could not be read
        (an error, or no answer within the per-domain timeout) is reported in
        ``failures`` and the others are still answered: what exporters want. A
        domain that answers its info but not some statistics groups has them in
        its stats' ``missing``."""
        chosen = check_groups(groups, op="survey", uri=self.uri)
        timeout_s = _check_stats_timeout(timeout, "survey", self.uri)
        found = self._live().survey()
        if not chosen or not found.samples:
            return found
        stats = {s.uuid: s for s in self._driver.domain_stats(
            chosen, [s.identity.uuid for s in found.samples], timeout_s=timeout_s)}
        return Survey([replace(s, stats=stats.get(s.identity.uuid) or _unanswered(
            s.identity, chosen)) for s in found.samples], found.failures)

    def domain_stats(self, groups: Iterable[StatGroup | str] = ALL_GROUPS,
                     domains: Iterable[Domain] | None = None, *,
                     timeout: float | None = None) -> list[DomainStats]:
        """The statistics ``groups`` (default: all) of ``domains`` (None: every live
        domain), in ID order, from one data-plane call (on QEMU, the groups libvirt
        waits on each guest for come from up to 8 calls at once). A domain gone
        meanwhile is left out; one that does not answer some groups in time has them
        in ``missing``. ``timeout`` (seconds): how long, at most, to wait for guests
        that do not answer; None: the connection's own timeout."""
        chosen = check_groups(groups, op="domain_stats", uri=self.uri)
        timeout_s = _check_stats_timeout(timeout, "domain_stats", self.uri)
        self._live()
        uuids = None if domains is None else [d.uuid for d in domains]
        found = self._driver.domain_stats(chosen, uuids, timeout_s=timeout_s)
        return sorted(found, key=lambda s: (s.id is None, s.id or 0, s.name))

    def lookup_by_id(self, domid: int) -> Domain:
        ident = self._live().lookup_by_id(_checked(check_domid, domid, "lookup_by_id", self.uri))
        return Domain(self, ident.uuid)

    def lookup_by_name(self, name: str) -> Domain:
        """A running or defined domain by name."""
        cache = self._live()
        checked = _checked(check_name, name, "lookup_by_name", self.uri)
        uuid = self._live_or_defined(lambda: cache.lookup_by_name(checked).uuid,
                                     lambda d: d.uuid, name=checked)
        return Domain(self, uuid)

    def lookup_by_uuid(self, uuid: object) -> Domain:
        """A running or defined domain by UUID (any form ``uuid.UUID`` takes)."""
        cache = self._live()
        checked = _checked(parse_uuid, uuid, "lookup_by_uuid", self.uri)
        self._live_or_defined(lambda: cache.current(checked), lambda d: None, uuid=checked)
        return Domain(self, checked)

    def list_defined(self) -> list[Definition]:
        """Domains defined but not running (xend's managed, libvirt's inactive
        domains): name, UUID and configuration, ``id`` None, in name order; one
        control-plane request. ``lookup_by_uuid(d.uuid)`` gives a handle."""
        self._live()
        return sorted(self._driver.list_defined(), key=lambda d: (d.name, d.uuid))

    def defined_names(self) -> list[str]:
        """Names of the domains defined but not running, sorted (libvirt's
        ``listDefinedDomains``): one control-plane request."""
        return [d.name for d in self.list_defined()]

    def define(self, name: str, config: DomainConfig, *, uuid: object = None,
               max_vcpus: int | None = None, metadata: DomainMetadata | None = None) -> Domain:
        """Define a domain without starting it (``xm new``, ``virsh define``) and
        return its handle; ``start()`` boots it. Defining the UUID of a defined
        domain replaces its definition. ``config.vcpus`` come online when it starts,
        ``max_vcpus`` (default: as many) are the most it may bring online; ``metadata``
        is its title, description and metadata elements. One control request."""
        self._writable("define")
        checked_name, wanted = self._new_domain("define", name, config, uuid, max_vcpus,
                                                metadata)
        if max_vcpus is None and metadata is None:
            found = self._driver.define(checked_name, config, wanted)
        else:
            found = self._driver.define_domain(checked_name, config, uuid=wanted,
                                               max_vcpus=max_vcpus, metadata=metadata)
        return Domain(self, found.uuid)

    def create(self, name: str, config: DomainConfig, *, uuid: object = None,
               max_vcpus: int | None = None, metadata: DomainMetadata | None = None,
               paused: bool = False) -> Domain:
        """Start a transient domain at once (``xm create``, libvirt's ``createXML``) and
        return its handle: it gets an ID and has no definition (stopped, it is gone).
        The configuration is taken as it is: its devices, none if it names none.
        Running, or ``paused``. One control request."""
        self._writable("create")
        checked_name, wanted = self._new_domain("create", name, config, uuid, max_vcpus,
                                                metadata)
        if not isinstance(paused, bool):
            raise InvalidArgumentError(f"paused must be True or False, not {paused!r}",
                                       op="create", uri=self.uri)
        answer = self._driver.create(checked_name, config, uuid=wanted, max_vcpus=max_vcpus,
                                     metadata=metadata, paused=paused)
        cache = self._live()
        cache.merge(answer)  # its name, as a restore's: events of it are named
        return Domain(self, answer.domains[0].uuid)

    def _new_domain(self, op: str, name: object, config: object, uuid: object,
                    max_vcpus: object, metadata: object) -> tuple[str, str | None]:
        """The checked name and UUID of a domain to define or create; the other
        arguments checked as far as a client can (the host judges their values)."""
        checked_name = _checked(check_name, name, op, self.uri)
        if not isinstance(config, DomainConfig):
            raise InvalidArgumentError(
                f"{op} needs a DomainConfig, not {type(config).__name__}", op=op,
                name=checked_name, uri=self.uri)
        if max_vcpus is not None and (isinstance(max_vcpus, bool)
                                      or not isinstance(max_vcpus, int)):
            raise InvalidArgumentError(f"max_vcpus must be an integer or None, not "
                                       f"{max_vcpus!r}", op=op, name=checked_name, uri=self.uri)
        if metadata is not None and not isinstance(metadata, DomainMetadata):
            raise InvalidArgumentError(f"metadata must be a DomainMetadata or None, not "
                                       f"{type(metadata).__name__}", op=op,
                                       name=checked_name, uri=self.uri)
        wanted = None if uuid is None else _checked(parse_uuid, uuid, op, self.uri)
        return checked_name, wanted

    def _live_or_defined(
        self, live: Callable[[], T], defined: Callable[[Definition], T], *,
        uuid: str | None = None, name: str | None = None,
    ) -> T:
        """``live()``, or ``defined(d)`` for a domain defined and not running.

        The data plane is asked first (it knows every running domain), then the
        control plane once; a domain that starts or stops between the two is asked
        again. C1: each answer held at one instant of the call. C2: a domain that
        stays running, or stays defined and not running, is found on the first try."""
        try:
            return live()
        except NoDomainError as exc:
            return self._after_miss(exc, live, defined, uuid=uuid, name=name)

    def _after_miss(
        self, missing: NoDomainError, live: Callable[[], T],
        defined: Callable[[Definition], T], *, uuid: str | None = None,
        name: str | None = None,
    ) -> T:
        """:meth:`_live_or_defined` once the data plane has said no domain runs so.

        ``missing`` is dropped as it is raised: kept in this frame, which its traceback
        holds, it would make a cycle that keeps every caller's frame (and what they
        hold: a libvirt domain, say) alive until the garbage collector runs."""
        for attempt in range(RETRIES):
            found = self._driver.find(uuid=uuid, name=name)
            if found is None:
                try:
                    raise missing
                finally:
                    del missing
            if found.id is None:
                return defined(found)
            if attempt == RETRIES - 1:
                break
            try:
                return live()
            except NoDomainError as exc:
                missing = exc
        raise OperationFailedError(
            "the domain kept starting and stopping while it was looked up; try again",
            uuid=uuid, name=name, uri=self.uri)

    @property
    def image_dir(self) -> str | None:
        """Where ``save`` writes images on the host, when the driver knows it."""
        return self._driver.image_dir

    def restore(self, image: str) -> Domain:
        """Bring a saved domain back: same UUID and name, a new ID. ``image`` is a name
        in the host's image directory or an absolute path (the embedded host takes any
        the process may read; a daemon only its image directory). The image stays, as
        with xm and libvirt; a second restore of it is refused while its domain runs."""
        cache = self._writable("restore")
        _checked(check_image, image, "restore", self.uri)
        answer = self._driver.restore(image)
        cache.merge(answer)
        return Domain(self, answer.domains[0].uuid)

    # -- host ------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        self._live()
        return self._driver.host_info()

    def capabilities(self) -> HostCapabilities:
        """The node's facts, its scheduler and the kinds of guest it runs (Xen's
        ``xen_caps``): one control-plane request."""
        self._live()
        return self._driver.capabilities()

    def node_memory_stats(self, cell: int | None = None) -> NodeMemoryStats:
        """The node's memory in KiB (total, free, buffers, cached): NUMA cell ``cell``'s,
        or all of it (None). One control-plane request."""
        self._live()
        return self._driver.node_memory_stats(_index(cell, "cell", "node_memory_stats",
                                                     self.uri))

    def node_cpu_stats(self, cpu: int | None = None) -> NodeCpuStats:
        """Time CPU ``cpu`` (None: all of them, summed) spent in each mode since the
        host booted, in ns (kernel, user, idle, iowait). One control-plane request."""
        self._live()
        return self._driver.node_cpu_stats(_index(cpu, "cpu", "node_cpu_stats", self.uri))

    def stats(self) -> ConnStats:
        counts = self._cache.counts()
        planes = self._driver.counters
        return ConnStats(
            control_requests=planes.control_requests,
            data_calls=planes.data_calls,
            event_requests=planes.event_requests,
            cache_hits=counts.hits,
            cache_misses=counts.misses,
            evictions=counts.evictions,
            cache_size=counts.size,
        )

    def events(self, *, timeout: float | None = None,
               kinds: Iterable[EventKind] | None = None) -> EventStream:
        """Lifecycle events from now on. Each step waits up to ``timeout`` seconds
        (None: for ever) and the iteration ends when none came in time; ``next()`` on
        the stream after that waits again, from where it left off (nothing that came
        meanwhile is missed), so a loop may poll with a short timeout. ``kinds``
        chooses which (None: every lifecycle kind; the metadata kinds, which are not
        lifecycle changes, only when named)."""
        self._live()  # a closed connection is the first problem, then the arguments
        wanted = frozenset(k for k in EventKind if k.lifecycle) if kinds is None else (
            frozenset(kinds))
        if not all(isinstance(k, EventKind) for k in wanted):
            raise InvalidArgumentError("events(kinds=...) takes EventKind members",
                                       op="events", uri=self.uri)
        return EventStream(self, _check_timeout(timeout, self.uri), wanted)

    def libvirt_connection(self) -> Any:
        """The libvirt-python ``virConnect`` under a ``libvirt:`` URI, for what xvirt does
        not carry (networks, storage, libvirt's own XML, events of every kind): the one
        that carries libvirt's events and keepalive. After a reconnection it is a new
        object, so ask again rather than keep it. UnsupportedError on other URIs."""
        self._live()
        return self._driver.binding_connection()

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, wait: bool = True) -> None:
        """Close the connection. ``wait`` False, for a finalizer: never wait on a lock
        another thread may hold (the teardown then finishes in the background)."""
        if not self._closed:
            self._closed = True
            self._driver.close(wait=wait)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "read-write")
        return f"<xvirt.Connection {self.uri} {state}>"


class Domain:
    """A handle on one domain, by UUID: it follows the domain across ID changes
    and raises NoDomainError once the domain is gone."""

    __slots__ = ("_closed", "_conn", "_uuid")

    def __init__(self, conn: Connection, uuid: str) -> None:
        self._conn = conn
        self._uuid = uuid
        self._closed = False

    def _cache(self) -> Lookup:
        if self._closed:
            raise HandleClosedError("the domain handle is closed", uuid=self._uuid)
        return self._conn._live()

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def connection(self) -> Connection:
        return self._conn

    def identity(self) -> Identity:
        """UUID, name and current ID together, validated at one instant; the ID is
        -1 while the domain is defined and not running."""
        cache = self._cache()
        uuid = self._uuid
        return self._conn._live_or_defined(
            lambda: cache.current(uuid), lambda d: Identity(d.uuid, d.name, -1), uuid=uuid)

    @property
    def name(self) -> str:
        return self.identity().name

    @property
    def id(self) -> int | None:
        """The current ID, re-checked on the data plane; None while the domain is
        defined and not running (virsh shows ``-``)."""
        domid = self.identity().id
        return None if domid < 0 else domid

    def stats(self, groups: Iterable[StatGroup | str] = ALL_GROUPS) -> DomainStats:
        """This running domain's statistics ``groups`` (default: all): one data-plane
        call. NoDomainError once it is gone or not running."""
        chosen = check_groups(groups, op="stats", uri=self._conn.uri)
        self._cache()
        for found in self._conn._driver.domain_stats(chosen, [self._uuid]):
            if found.uuid == self._uuid:
                return found
        raise NoDomainError(f"no running domain with UUID {self._uuid}", uuid=self._uuid,
                            uri=self._conn.uri, op="stats")

    def info(self) -> DomainInfo:
        """State, memory, vCPUs and CPU time; a domain defined and not running is
        shut off, with its configured memory and vCPUs and no CPU time."""
        cache = self._cache()
        uuid = self._uuid
        try:
            return cache.info(uuid)  # the hot path: _live_or_defined's first try, inlined
        except NoDomainError as exc:
            return self._conn._after_miss(exc, lambda: cache.info(uuid), Definition.info,
                                          uuid=uuid)

    def config(self) -> DomainConfig:
        """Memory, vCPUs, OS type, disks and interfaces: one control-plane request
        (two for a domain defined and not running)."""
        self._cache()
        driver = self._conn._driver
        return self._conn._live_or_defined(lambda: driver.domain_config(self._uuid),
                                           Definition.configured, uuid=self._uuid)

    @property
    def persistent(self) -> bool:
        """Whether the domain's definition outlives it (a stopped persistent domain
        is shut off; a transient one is gone): one control-plane request."""
        self._cache()
        found = self._conn._driver.find(uuid=self._uuid)
        if found is None:
            raise NoDomainError(f"no domain with UUID {self._uuid}", uuid=self._uuid,
                                uri=self._conn.uri)
        return found.persistent

    def _act(
        self, op: Op, arg: object = None, check: Callable[[object], str] | None = None
    ) -> None:
        """Closed handle, then read-only, then the argument: the first problem is reported."""
        self._cache()
        self._conn._writable(op.value, self._uuid)
        self._conn._act(op, self._uuid,
                        None if check is None else _checked(check, arg, op.value, self._conn.uri))

    def pause(self) -> None:
        self._act(Op.PAUSE)

    def resume(self) -> None:
        self._act(Op.RESUME)

    def shutdown(self) -> None:
        self._act(Op.SHUTDOWN)

    def reboot(self) -> None:
        self._act(Op.REBOOT)

    def destroy(self) -> None:
        self._act(Op.DESTROY)

    def save(self, image: str) -> None:
        """Save to ``image`` (a name in the host's image directory, or an absolute path:
        see :meth:`Connection.restore`); the domain stops."""
        self._act(Op.SAVE, image, check_image)

    def rename(self, new_name: str) -> None:
        """Rename the domain: a running one through its ID (checked by UUID, C4); a
        defined one that is not running by its UUID, as the host renames those
        (libvirt renames only those), else by defining it again under the new name
        (its UUID, configuration, vCPUs and metadata kept)."""
        self._cache()
        self._conn._writable(Op.RENAME.value, self._uuid)
        name = _checked(check_name, new_name, Op.RENAME.value, self._conn.uri)
        self._conn._live_or_defined(
            lambda: self._conn._act(Op.RENAME, self._uuid, name),
            lambda d: self._rename_defined(name), uuid=self._uuid)

    def _rename_defined(self, name: str) -> None:
        try:
            self._conn._driver.rename_defined(self._uuid, name)
        except UnsupportedError:
            kept = self.settings(Affect.CONFIG)
            self._conn.define(name, self.config(), uuid=self._uuid,
                              max_vcpus=kept.max_vcpus, metadata=kept.metadata)

    def start(self) -> None:
        """Boot a domain that is defined and not running: it gets a new ID."""
        self._cache()
        self._conn._writable("start", self._uuid)
        self._conn._driver.start(self._uuid)

    def undefine(self) -> None:
        """Remove the definition of a domain that is not running; the handle then
        raises NoDomainError."""
        self._cache()
        self._conn._writable("undefine", self._uuid)
        self._conn._driver.undefine(self._uuid)

    # -- vCPUs, the scheduler, metadata: control-plane requests by UUID (C4: no ID to
    # -- misdirect; a domain gone meanwhile is NoDomainError) ---------------------------

    def settings(self, affect: Affect = Affect.CURRENT) -> DomainSettings:
        """Online and maximum vCPUs and the metadata of the running domain (LIVE), of
        its definition (CONFIG), or of whichever it has now (CURRENT: the running one
        while it runs). One control-plane request."""
        self._cache()
        return self._conn._driver.domain_settings(self._uuid, _affect(affect, "settings"))

    def set_vcpus(self, count: int, *, affect: Affect = Affect.CURRENT,
                  maximum: bool = False) -> None:
        """Bring ``count`` vCPUs online (xm vcpu-set), at most the domain's maximum, in
        the running domain, its definition or both (``affect``); ``maximum`` changes a
        definition's maximum instead (a running domain's is fixed). One request."""
        self._cache()
        self._conn._writable("set_vcpus", self._uuid)
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidArgumentError(f"a vCPU count must be an integer, not {count!r}",
                                       op="set_vcpus", uuid=self._uuid, uri=self._conn.uri)
        self._conn._driver.set_vcpus(self._uuid, count, affect=_affect(affect, "set_vcpus"),
                                     maximum=bool(maximum))

    def vcpu_info(self) -> list[VcpuInfo]:
        """The running domain's online vCPUs: state, CPU time, physical CPU, affinity.
        One control-plane request."""
        self._cache()
        return list(self._conn._driver.vcpu_info(self._uuid))

    def scheduler(self) -> SchedulerParams:
        """The running domain's credit scheduler share (xm sched-credit). One request."""
        self._cache()
        return self._conn._driver.scheduler(self._uuid)

    def set_scheduler(self, *, weight: int | None = None,
                      cap: int | None = None) -> SchedulerParams:
        """Change the running domain's credit scheduler share: ``weight`` in 1..65535,
        ``cap`` in 0..100 x its maximum vCPUs (0: none); None keeps one. Returns the
        share now. One control-plane request."""
        self._cache()
        self._conn._writable("set_scheduler", self._uuid)
        return self._conn._driver.set_scheduler(self._uuid, weight=weight, cap=cap)

    def metadata(self, kind: MetadataKind, uri: str | None = None, *,
                 affect: Affect = Affect.CURRENT) -> str | None:
        """The title, the description, or the metadata element of namespace ``uri``
        (the element's XML); None when the domain has none. One request."""
        if not isinstance(kind, MetadataKind):
            raise InvalidArgumentError(f"unknown metadata type {kind!r}", op="metadata",
                                       uuid=self._uuid, uri=self._conn.uri)
        return self.settings(affect).metadata.get(kind, uri)

    def set_metadata(self, kind: MetadataKind, value: str | None, *, key: str | None = None,
                     uri: str | None = None, affect: Affect = Affect.CURRENT) -> None:
        """Set (or, None or "", remove) the title, the description, or the metadata
        element of namespace ``uri``, written with prefix ``key`` (an application's XML
        element, without its namespace). Hosts report it as a metadata event.
        One control-plane request."""
        self._cache()
        self._conn._writable("set_metadata", self._uuid)
        self._conn._driver.set_metadata(self._uuid, kind, value, key=key, uri=uri,
                                        affect=_affect(affect, "set_metadata"))

    def close(self) -> None:
        """Drop the handle. Cached identities stay with the connection (C6)."""
        self._closed = True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Domain):
            return NotImplemented
        return self._uuid == other._uuid and self._conn is other._conn

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        return f"<xvirt.Domain {self._uuid}>"


class EventStream:
    """Iterator of DomainEvent; names come from the connection's cache."""

    def __init__(self, conn: Connection, timeout: float | None,
                 kinds: frozenset[EventKind] | None = None) -> None:
        self._conn = conn
        self._timeout = timeout
        self._kinds = frozenset(k for k in EventKind if k.lifecycle) if kinds is None else kinds
        conn._live()
        conn._driver.follow_events()  # before the census: nothing after it is missed
        snap = conn._live().census()  # "from now on": the current generation
        self._boot = snap.boot_id
        self._after = snap.generation
        self._pending: deque[DomainEvent] = deque()
        self._renamed: OrderedDict[str, str] = OrderedDict()  # names this stream has seen set

    def __iter__(self) -> Iterator[DomainEvent]:
        return self

    def __next__(self) -> DomainEvent:
        while not self._pending:
            if not self._fill():
                raise StopIteration
        return self._pending.popleft()

    def _fill(self) -> bool:
        """Fetch the next batch; False when the wait ran out with nothing new."""
        cache = self._conn._live()
        wait = FOREVER_S if self._timeout is None else self._timeout
        batch = self._conn._driver.events_since(self._after, wait)
        if batch.boot_id != self._boot:
            # The host rebooted: every guest is gone; follow the new boot from its start.
            self._boot, self._after = batch.boot_id, 0
            return True
        if not batch.complete:
            self._after = batch.latest  # events were lost: go on from the newest
            return True
        for e in batch.events:
            if e.kind is EventKind.RENAMED and e.name is not None:
                self._remember(e.uuid, e.name)
            if e.kind not in self._kinds:
                self._after = e.seq
                continue
            if e.kind.metadata is not None:  # its name field is the element's URI
                domid = None if e.id < 0 else e.id
                self._pending.append(DomainEvent(
                    e.seq, e.kind, e.uuid, domid, self._renamed.get(e.uuid)
                    or cache.name_hint(e.uuid), uri=e.name))
                self._after = e.seq
                continue
            if e.kind.definition_only:  # the event names the domain; it may not run
                if e.name is not None:
                    self._remember(e.uuid, e.name)
                domid = None if e.id < 0 else e.id
                self._pending.append(DomainEvent(e.seq, e.kind, e.uuid, domid, e.name))
                self._after = e.seq
                continue
            name = self._renamed.get(e.uuid) or cache.name_hint(e.uuid)
            if name is None and not e.kind.removes:
                try:
                    name = cache.current(e.uuid).name
                except NoDomainError:
                    name = None  # gone before it could be named
            self._pending.append(DomainEvent(e.seq, e.kind, e.uuid, e.id, name, e.old_id))
            self._after = e.seq
        return bool(batch.events) or self._timeout is None

    def _remember(self, uuid: str, name: str) -> None:
        self._renamed[uuid] = name
        self._renamed.move_to_end(uuid)
        if len(self._renamed) > 1024:
            self._renamed.popitem(last=False)


def _checked(check: Callable[[object], T], value: object, op: str, uri: str) -> T:
    """``check(value)``, whose InvalidArgumentError also names the call and the URI."""
    try:
        return check(value)
    except InvalidArgumentError as exc:
        exc.op = exc.op or op
        exc.uri = exc.uri or uri
        raise


def _affect(affect: object, op: str) -> Affect:
    if not isinstance(affect, Affect):
        raise InvalidArgumentError(f"affect must be an Affect, not {affect!r}", op=op)
    return affect


def _index(value: object, what: str, op: str, uri: str) -> int | None:
    """A NUMA cell's or a CPU's number as a caller may give it: None, or an int >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{what} must be a number >= 0 or None, not {value!r}",
                                   op=op, uri=uri)
    return value


def _check_stats_timeout(timeout: object, op: str, uri: str) -> float | None:
    """A statistics call's ``timeout``: None, or positive finite seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise InvalidArgumentError(
            f"timeout must be a positive number of seconds or None, not {timeout!r}",
            uri=uri, op=op)
    return float(timeout)


def _check_timeout(timeout: object, uri: str) -> float | None:
    """An event wait as a caller may give it: None (for ever), or a finite number of
    seconds >= 0, capped at FOREVER_S."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidArgumentError(
            f"events(timeout=...) must be a number of seconds or None, not "
            f"{type(timeout).__name__} {timeout!r}", op="events", uri=uri)
    try:
        seconds = float(timeout)
    except OverflowError:  # an integer beyond any float: for ever, in effect
        seconds = -1.0 if timeout < 0 else FOREVER_S
    if not 0 <= seconds < math.inf:  # also refuses NaN
        raise InvalidArgumentError(
            f"events(timeout=...) must be a finite number of seconds >= 0 (None waits for "
            f"ever), not {timeout!r}", op="events", uri=uri)
    return min(seconds, FOREVER_S)


def _unanswered(identity: Identity, groups: frozenset[StatGroup]) -> DomainStats:
    """The stats of a sampled domain that the statistics call did not answer for."""
    return DomainStats(identity.uuid, identity.name, identity.id, missing=groups)
