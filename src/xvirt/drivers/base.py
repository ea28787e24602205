"""The driver interface: what the cache needs from a host, and nothing more.

Three channels, each counted exactly by ``PlaneCounters``:

* the data plane (hypercalls): fast, knows IDs, UUIDs and runtime state;
* the control plane (the management daemon): slow, knows names and
  configuration, and performs actions;
* the event channel: numbered lifecycle changes.

Every answer carries the host's boot identity and generation (see
``xvirt.planes``). Drivers never cache: the identity cache is the only place
that does. Drivers translate every error of the layers below into
``xvirt.errors`` before it crosses this boundary.
"""

from __future__ import annotations

import abc
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
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
    TableSnapshot,
)
from xvirt.stats import DomainStats, StatGroup

__all__ = ["CONNECTION_LOST", "Driver", "PlaneCounters", "check_sendable", "sendable"]

#: The connection to the host is lost (unreachable, or closed): ``except CONNECTION_LOST``.
CONNECTION_LOST: tuple[type[XvirtError], ...] = (HostUnreachableError, ConnectionClosedError)


def sendable(text: str) -> bool:
    """Whether ``text`` can cross to a host as UTF-8 (HTTP, a C library): a lone
    surrogate (what an undecodable byte of a file name becomes) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return True


def check_sendable(text: str, what: str, *, uri: str, op: str) -> str:
    """``text``, or InvalidArgumentError naming it when it cannot be sent to the host."""
    if sendable(text):
        return text
    raise InvalidArgumentError(
        f"cannot {op}: {what} {text!r} holds a lone surrogate (it is not valid Unicode "
        "text), which cannot be sent to this host", uri=uri, op=op,
        name=text.encode("utf-8", "backslashreplace").decode("utf-8"))


class _Tally:
    """A count bumped from many threads without a lock (the hot path pays for a
    lock round trip twice per domain otherwise).

    ``itertools.count.__next__`` runs in C without releasing the GIL, so each
    bump is atomic. Reading takes a number from the same counter, so reads are
    counted and subtracted; reads are rare and take a lock among themselves."""

    __slots__ = ("_lock", "_reads", "bump")

    def __init__(self) -> None:
        #: Add one: the counter's own C-level call, so no Python frame either.
        self.bump: Callable[[], int] = itertools.count().__next__
        self._reads = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        with self._lock:
            taken = self.bump() - self._reads
            self._reads += 1
        return taken


class PlaneCounters:
    """Exact, thread-safe counts of what was sent on each channel.

    ``data_fallbacks`` counts the data-plane calls (already in ``data_calls``) that
    a driver answered on a slower channel than its usual one because the usual one
    refused it or was found corrupt (the xend driver: HTTP when the daemon's fast
    channel is full, the socket when its table is cut short or corrupt)."""

    __slots__ = ("_control", "_data", "_event", "_fallback", "control", "data", "event",
                 "fallback")

    def __init__(self) -> None:
        self._control, self._data, self._event = _Tally(), _Tally(), _Tally()
        self._fallback = _Tally()
        self.control = self._control.bump
        self.data = self._data.bump
        self.event = self._event.bump
        self.fallback = self._fallback.bump

    @property
    def control_requests(self) -> int:
        return self._control.value

    @property
    def data_calls(self) -> int:
        return self._data.value

    @property
    def event_requests(self) -> int:
        return self._event.value

    @property
    def data_fallbacks(self) -> int:
        return self._fallback.value


class Driver(abc.ABC):
    """One connection to one host."""

    uri: str
    readonly: bool
    counters: PlaneCounters
    #: The directory save images live in, when the client can know it (save(path)
    #: in the libvirt face accepts paths inside it and nothing else).
    image_dir: str | None = None

    # -- data plane ------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self) -> TableSnapshot:
        """The whole domain table in one data-plane call.

        Serves C7 (the cache evicts what a full snapshot no longer shows) and
        C5 (the snapshot names every newcomer, so one request resolves them all).
        """

    @abc.abstractmethod
    def info_by_id(self, domid: int) -> IdAnswer:
        """One domain by ID, always with its UUID, in one data-plane call.

        Serves C1/C2: the UUID in the answer is what validates the cache's
        ID -> UUID index on every lookup.
        """

    # The calls below have answers derived from the two above. A driver
    # overrides them where its data plane answers them for less (libvirt).

    def follow_events(self) -> None:
        """Someone follows the host's events from now on (``Connection.events()``): a
        driver that takes its host's events only when asked starts now. Most always
        have them."""
        return None  # a hook: most drivers have nothing to start

    def domain_stats(self, groups: frozenset[StatGroup], uuids: Sequence[str] | None = None,
                     *, timeout_s: float | None = None) -> list[DomainStats]:
        """The statistics ``groups`` of the live domains ``uuids`` (None: all), in one
        data-plane call (or its parts, where the host waits on each guest); a domain
        gone meanwhile is left out, one that does not answer some groups within
        ``timeout_s`` (None: the driver's own timeout) has them in ``missing``. A
        driver whose host has no such figures says so."""
        raise UnsupportedError(f"{self.uri} does not report domain statistics",
                               uri=self.uri, op="domain_stats")

    def binding_connection(self) -> Any:
        """The library connection under this driver, for what xvirt does not carry
        (libvirt's: the compat face passes calls through it). Only the libvirt driver
        has one."""
        raise UnsupportedError(f"{self.uri} is not reached through libvirt: there is no "
                               "libvirt connection under it", uri=self.uri,
                               op="binding_connection")

    def list_ids(self) -> Sequence[int] | None:
        """The IDs of the live domains, in one data-plane call, where the driver has a
        call cheaper than :meth:`census` for them; None where it has not (the caller
        takes a census, which the cache also learns from)."""
        return None

    def census(self) -> Census:
        """Who is alive: ``(id, uuid)`` of every domain, in one data-plane call."""
        snap = self.snapshot()
        # A wedged (unanswered) domain is alive: leaving it out would read as it gone.
        return Census(snap.boot_id, snap.generation, tuple(sorted(snap.members())))

    def identify(self, domid: int) -> IdOwner:
        """Which UUID holds ``domid`` now, in one data-plane call (C1); two when the
        domain is wedged: who holds an ID does not need its figures."""
        try:
            ans = self.info_by_id(domid)
        except OperationFailedError as exc:
            if exc.domid != domid or exc.uuid is None:
                raise
            census = self.census()
            holder = next((uuid for i, uuid in census.members if i == domid), None)
            return IdOwner(census.boot_id, census.generation, holder)
        return IdOwner(ans.boot_id, ans.generation, None if ans.row is None else ans.row.uuid)

    def info_by_uuid(self, uuid: str, domid_hint: int) -> IdAnswer:
        """Runtime info of ``uuid``, believed to be at ``domid_hint``: the answer's
        row is another domain's, or None, when the belief is stale."""
        return self.info_by_id(domid_hint)

    # -- control plane -----------------------------------------------------------

    @abc.abstractmethod
    def resolve(self, uuids: Sequence[str] = (), ids: Sequence[int] = ()) -> Resolution:
        """Names and configuration of MANY domains in ONE control-plane request (C5).

        Domains that do not exist are simply absent from the answer.
        """

    @abc.abstractmethod
    def resolve_names(self, names: Sequence[str]) -> Resolution:
        """Domains by name, in one control-plane request."""

    @abc.abstractmethod
    def list_all(self) -> Resolution:
        """Every live domain with its name: one control-plane request (the 2006 way)."""

    @abc.abstractmethod
    def act(self, op: Op, domid: int, expected_uuid: str, arg: str | None = None) -> None:
        """Perform ``op`` on ``domid`` only if it is ``expected_uuid``: one request,
        check and act in one step on the host (C4). A mismatch raises NoDomainError
        and does nothing."""

    @abc.abstractmethod
    def restore(self, image: str) -> Resolution:
        """Restore a saved image: one request, answering with the restored domain
        (same UUID and name, a new ID, C3) at the generation that created it."""

    def domain_config(self, uuid: str) -> DomainConfig:
        """One domain's configuration: one control-plane request."""
        for domain in self.resolve(uuids=[uuid]).domains:
            if domain.uuid == uuid and domain.config is not None:
                return domain.config
        raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self.uri)

    # -- defined (managed, persistent) domains ---------------------------------------
    #
    # A domain may be defined and not running: a name and a UUID, no ID (xend's
    # managed domains, libvirt's inactive ones). The data plane knows only running
    # domains, so these calls are all control-plane requests, and the cache keeps
    # nothing from them: a defined domain is asked for each time (C1/C2 trivially).
    # Start and undefine name the domain by UUID, its identity, so no other domain
    # can take the call over (C4 without an ID check).

    @abc.abstractmethod
    def find(self, *, uuid: str | None = None, name: str | None = None) -> Definition | None:
        """One domain by UUID or by name (exactly one given), running or defined,
        in one control-plane request; None when the host has no such domain."""

    @abc.abstractmethod
    def list_defined(self) -> tuple[Definition, ...]:
        """Every domain defined but not running (``id`` None), in one control-plane
        request."""

    @abc.abstractmethod
    def define(self, name: str, config: DomainConfig, uuid: str | None = None) -> Definition:
        """Define a domain without starting it (``xm new``, ``virsh define``): one
        request. Defining the UUID of a defined domain replaces its definition; a name
        or UUID another domain holds is refused (OperationFailedError)."""

    @abc.abstractmethod
    def start(self, uuid: str) -> None:
        """Boot the defined, not running domain ``uuid``: it gets an ID. One request;
        NoDomainError when no such domain is defined, OperationFailedError when it is
        already running."""

    def rename_defined(self, uuid: str, new_name: str) -> None:
        """Rename the defined, not running domain ``uuid``: one request. A host that
        renames only running domains (Xen's ``xm rename``) says so."""
        raise UnsupportedError(f"{self.uri} renames running domains only",
                               uri=self.uri, op="rename", uuid=uuid)

    @abc.abstractmethod
    def undefine(self, uuid: str) -> None:
        """Remove the definition of ``uuid``, which must not be running (as xend's
        ``delete``): one request."""

    def define_domain(self, name: str, config: DomainConfig, *, uuid: str | None = None,
                      max_vcpus: int | None = None,
                      metadata: DomainMetadata | None = None) -> Definition:
        """:meth:`define` with what a domain has beyond its configuration: the most
        vCPUs it may bring online (None: ``config.vcpus``) and its metadata. A driver
        that keeps neither defines plain domains only."""
        if (max_vcpus is None or max_vcpus == config.vcpus) and (
                metadata is None or metadata == DomainMetadata()):
            return self.define(name, config, uuid)
        raise self._unsupported("define a domain with a vCPU maximum or metadata")

    # -- what a Xen host has beyond identity and lifecycle ----------------------------
    #
    # Control-plane requests, one each, by UUID where they name a domain (its identity:
    # no ID is involved, so no other domain can take a change over, C4). A driver
    # whose host lacks them (libvirt's answers them itself, through the libvirt face)
    # leaves them refused: UnsupportedError naming the operation.

    def _unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} is not supported by this driver", uri=self.uri,
                                op=what)

    def create(self, name: str, config: DomainConfig, *, uuid: str | None = None,
               max_vcpus: int | None = None, metadata: DomainMetadata | None = None,
               paused: bool = False) -> Resolution:
        """Start a transient domain at once (``xm create``, libvirt's ``createXML``): it
        has an ID and no definition; running, or ``paused``. Answers with the domain (its
        name, for the cache) at the generation that created it, as :meth:`restore`."""
        raise self._unsupported("create")

    def capabilities(self) -> HostCapabilities:
        """What the host is and the guests it runs."""
        raise self._unsupported("capabilities")

    def node_memory_stats(self, cell: int | None = None) -> NodeMemoryStats:
        """The node's memory: one NUMA cell's, or all of it (None)."""
        raise self._unsupported("node_memory_stats")

    def node_cpu_stats(self, cpu: int | None = None) -> NodeCpuStats:
        """Time the node's CPUs (one, or all summed: None) spent in each mode."""
        raise self._unsupported("node_cpu_stats")

    def domain_settings(self, uuid: str, affect: Affect = Affect.CURRENT) -> DomainSettings:
        """Online and maximum vCPUs and metadata of the running domain or its definition."""
        raise self._unsupported("domain_settings")

    def set_vcpus(self, uuid: str, count: int, *, affect: Affect = Affect.CURRENT,
                  maximum: bool = False) -> None:
        """Bring ``count`` vCPUs online (or, ``maximum``, change a definition's maximum)."""
        raise self._unsupported("set_vcpus")

    def vcpu_info(self, uuid: str) -> tuple[VcpuInfo, ...]:
        """The running domain's online vCPUs."""
        raise self._unsupported("vcpu_info")

    def scheduler(self, uuid: str) -> SchedulerParams:
        """The running domain's credit scheduler share."""
        raise self._unsupported("scheduler")

    def set_scheduler(self, uuid: str, *, weight: int | None = None,
                      cap: int | None = None) -> SchedulerParams:
        """Change the running domain's credit scheduler share (None: keep); the share now."""
        raise self._unsupported("set_scheduler")

    def set_metadata(self, uuid: str, kind: MetadataKind, value: str | None, *,
                     key: str | None = None, uri: str | None = None,
                     affect: Affect = Affect.CURRENT) -> None:
        """Set or (None) remove a title, description or metadata element."""
        raise self._unsupported("set_metadata")

    @abc.abstractmethod
    def host_info(self) -> HostInfo:
        """Node facts, including the boot identity (C8)."""

    # -- events --------------------------------------------------------------------

    @abc.abstractmethod
    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        """Lifecycle events after sequence number ``after``, waiting up to ``timeout``
        seconds for the first. Serves C7 (evictions and renames between snapshots)
        and C8 (a batch from another boot, or an incomplete one, means resnapshot)."""

    @abc.abstractmethod
    def close(self, *, wait: bool = True) -> None:
        """Release the driver's resources. Idempotent. ``wait`` False (a finalizer's
        close): never wait on a lock another thread may hold."""
