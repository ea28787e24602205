"""A Xen-semantics host: the truth that drivers report and tests check against.

It keeps what matters to identity on Xen: 16-bit domain IDs with Domain-0 at
0, guests numbered by a forward rover (or at random) below 0x7FF0, new IDs on
reboot, migration and restore, UUIDs returned with every data-plane answer,
unique names, a boot identity that changes only when the host reboots, and a
numbered event log whose newest number is the generation every answer
carries. One lock makes each request atomic, which is what lets act-if-identity
(C4) check and act in one step.

Managed domains (xend's ``xm new``/``start``/``delete``) are kept as definitions by
UUID, whether they run or not: a defined domain that does not run has a name and a
UUID and no ID, is never on the data plane, and gets a new ID when started; one that
stops (shutdown, destroy, save, a host reboot) is shut off, not gone. Names are
unique among running and defined domains together.

The machine's figures stay physically possible, as a Xen host's do: a domain that
would not fit in the memory left is refused (create, start, restore), and when the
running domains want more CPU than the host's CPUs give, each gets the same share of
what it wants, so the CPU time they use in any interval is at most the interval times
the CPUs.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Protocol

from xvirt.clock import Clock, SystemClock
from xvirt.errors import (
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    XvirtError,
)
from xvirt.host.devices import (
    check_disks,
    check_nics,
    default_disks,
    default_nics,
    disk_stats,
    nic_stats,
)
from xvirt.host.events import EventLog
from xvirt.host.ids import DomidAllocator
from xvirt.host.images import ImageStore, SavedDomain, check_image, check_vcpu_times
from xvirt.hotpath import tuple_new
from xvirt.model import (
    DEFAULT_SCHEDULER,
    DOMID_FIRST_RESERVED,
    MAX_VCPUS,
    MAX_WAIT_S,
    Affect,
    DomainMetadata,
    DomainSettings,
    DomainState,
    EventKind,
    HostCapabilities,
    HostInfo,
    MetadataKind,
    NodeCpuStats,
    NodeMemoryStats,
    SchedulerParams,
    VcpuInfo,
    VcpuState,
    check_domid,
    check_metadata,
    check_name,
    check_scheduler,
    guest_types,
    parse_uuid,
)
from xvirt.planes import (
    Census,
    DataRow,
    Definition,
    DiskConfig,
    DomainConfig,
    EventBatch,
    HostEvent,
    IdAnswer,
    IdOwner,
    NicConfig,
    Op,
    Resolution,
    Resolved,
    TableSnapshot,
    Unanswered,
)
from xvirt.stats import BalloonStats, CpuStats, DomainStats, StatGroup, VcpuStats

__all__ = [
    "DOM0_MEMORY_KIB",
    "DOM0_UUID",
    "DomainRecord",
    "HostChange",
    "HostModel",
    "HostObserver",
    "HostState",
    "JournalEntry",
    "LiveDomain",
    "default_memory_kib",
    "even_vcpu_times",
]

DOM0_UUID = "00000000-0000-0000-0000-000000000000"
DOM0_NAME = "Domain-0"
_IDLE_LOAD = 0.01  # fraction of a vCPU a blocked (idle) guest still burns
_RUNNABLE = frozenset({DomainState.RUNNING, DomainState.BLOCKED})
#: Domain-0's memory (Xen's ``dom0_mem``): part of what the host's domains use.
DOM0_MEMORY_KIB = 2 * 1024 * 1024
#: A host given no memory size has room for Domain-0 and a guest of this size in every
#: guest ID it can give, in whole steps of the second figure, at least one step: a host
#: can be filled with small guests (as the benchmarks' 5000-guest hosts are), and a
#: host with a small ID space is an ordinary 64 GiB one.
_MEMORY_PER_GUEST_KIB, _MEMORY_STEP_KIB = 256 * 1024, 64 * 1024 * 1024
#: When the domains want more CPU than the host has, each gets the same fraction of
#: what it wants: the largest power of this step below 1 that fits, so that the
#: fraction, and with it every domain's rate, changes only when the domains' wants
#: cross a step (not at every domain that comes or goes on a busy host).
_SHARE_STEP = 2 ** (1 / 8)
#: Slack kept below the host's CPUs, against the rounding of a sum of float rates.
_CPU_MARGIN = 1e-9
#: What the domains want is summed in these units of a CPU (integers: the sum is exact
#: in any order, so a host reloaded from its store shares its CPUs exactly as before).
_DEMAND_UNITS = 2**50


def default_memory_kib(max_domid: int) -> int:
    """The memory of a host of IDs 1..``max_domid`` given no size (see above)."""
    need = DOM0_MEMORY_KIB + max_domid * _MEMORY_PER_GUEST_KIB
    return max(1, -(-need // _MEMORY_STEP_KIB)) * _MEMORY_STEP_KIB


def _fitting_share(cpus: float, demand: float) -> float:
    """The largest ``_SHARE_STEP ** -k`` (k >= 0) at which ``demand`` (CPUs' worth)
    fits in ``cpus``, with a margin against rounding."""
    limit = cpus * (1 - _CPU_MARGIN)
    if demand <= limit:
        return 1.0
    k = math.ceil(8 * math.log2(demand / limit))
    while _SHARE_STEP ** -k * demand > limit:  # the logarithm's rounding
        k += 1
    return float(_SHARE_STEP ** -k)


def _units(demand: float) -> int:
    """``demand`` (CPUs' worth) in :data:`_DEMAND_UNITS`."""
    return round(demand * _DEMAND_UNITS)


#: Characters a journal entry's fields keep at most: entries are capped in number, and
#: this caps each one's size, whatever a request put in an op name or an error.
_JOURNAL_FIELD_MAX = {"op": 128, "uuid": 64, "outcome": 512, "origin": 32}


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """A domain as the host knows it: the truth tests compare with."""

    id: int
    uuid: str
    name: str
    state: DomainState
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    cpu_time_ns: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One action the host took or refused. ``origin`` is ``client`` for
    requests that came through a driver's act-if-identity, ``host`` for the
    host's own operations (tests, demo activity, admin). ``domid`` is -1 when
    the action never had a domain ID (a restore that failed)."""

    op: str
    domid: int
    uuid: str
    outcome: str
    origin: str = "host"


@dataclass(frozen=True, slots=True)
class LiveDomain:
    """Everything that makes up a live domain, for whoever keeps or mirrors the host
    (a state file, a shared-memory table). CPU time at host-clock instant ``t`` is
    ``cpu_ns + (t - since) * 1e9 * rate``: it grows without anything being rewritten.
    ``vcpu_ns`` is each vCPU's part of ``cpu_ns``; what it ran after ``since`` is shared
    among the ``vcpus`` online (see ``_Domain.vcpu_times``)."""

    id: int
    uuid: str
    name: str
    state: DomainState
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    os_type: str
    load: float
    cpu_ns: int
    since: float
    rate: float
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    #: The most vCPUs it may bring online (``vcpus`` are online); 0: as many as ``vcpus``.
    max_vcpus: int = 0
    sched_weight: int = 256
    sched_cap: int = 0
    metadata: DomainMetadata = field(default_factory=DomainMetadata)
    #: Each vCPU's CPU time at ``since`` (``vcpu_limit`` of them, summing to ``cpu_ns``);
    #: () (a domain kept before they were): ``cpu_ns`` shared evenly among those online.
    vcpu_ns: tuple[int, ...] = ()

    def cpu_time(self, now: float) -> int:
        return self.cpu_ns + int((now - self.since) * 1e9 * self.rate)

    @property
    def vcpu_limit(self) -> int:
        """The most vCPUs it may have online."""
        return max(self.max_vcpus, self.vcpus)


@dataclass(frozen=True, slots=True)
class HostChange:
    """What one request changed, handed to observers before its lock is released,
    so nothing an answer acknowledged can be missing from what they keep."""

    boot_id: str
    generation: int
    reset: bool  # a new boot: forget every domain and event before this change
    domains: tuple[LiveDomain, ...]  # added or changed, in their current form
    vacated_ids: tuple[int, ...]  # IDs no domain holds any more
    gone_uuids: tuple[str, ...]  # domains that no longer exist
    events: tuple[HostEvent, ...]
    journal: tuple[JournalEntry, ...]
    rover: int
    daemon_epoch: int
    #: UUIDs of the wedged domains (stall()) at this change: a runtime fault that a
    #: mirror of the data plane shows, and a store need not keep.
    stalled: frozenset[str] = frozenset()
    #: Managed domains' definitions added or replaced, in their current form (running
    #: or not: a definition is the control plane's, never the data plane's).
    definitions: tuple[SavedDomain, ...] = ()
    #: UUIDs whose definitions were removed. A reset (new boot) keeps definitions, as
    #: xend kept its managed domains' configurations across a host reboot.
    undefined: tuple[str, ...] = ()
    #: When this boot began, on the host's clock (the node's CPU statistics count from it).
    booted_at: float = 0.0


@dataclass(frozen=True, slots=True)
class HostState:
    """A host as an observer kept it: enough to bring the same host back."""

    boot_id: str
    generation: int
    domains: tuple[LiveDomain, ...]
    events: tuple[HostEvent, ...]
    journal: tuple[JournalEntry, ...]
    rover: int
    daemon_epoch: int
    #: Every managed domain's definition, running or not (none in a host kept before
    #: domains could be defined).
    definitions: tuple[SavedDomain, ...] = ()
    #: When this boot began, on the host's clock; None in a host kept before it was
    #: (the boot is then taken to begin when the host is loaded).
    booted_at: float | None = None


class HostObserver(Protocol):
    def commit(self, change: HostChange) -> None: ...


class _Committed:
    """The host as its observers last accepted it: what a refused commit rolls back
    to. Kept change by change (O(change)), since a refusal is rare and a copy of the
    whole host per request is not."""

    def __init__(self, state: HostState, event_capacity: int, journal_capacity: int | None
                 ) -> None:
        self.boot_id = state.boot_id
        self.generation = state.generation
        self.domains = {d.uuid: d for d in state.domains}
        self.events: deque[HostEvent] = deque(state.events, maxlen=event_capacity)
        self.journal: deque[JournalEntry] = deque(state.journal, maxlen=journal_capacity)
        self.rover = state.rover
        self.daemon_epoch = state.daemon_epoch
        self.definitions = {d.uuid: d for d in state.definitions}
        self.booted_at = state.booted_at

    def apply(self, change: HostChange) -> None:
        if change.reset:
            self.domains.clear()
            self.events.clear()
        for uuid in change.gone_uuids:
            self.domains.pop(uuid, None)
        for dom in change.domains:
            self.domains[dom.uuid] = dom
        for uuid in change.undefined:
            self.definitions.pop(uuid, None)
        for spec in change.definitions:
            self.definitions[spec.uuid] = spec
        self.events.extend(change.events)
        self.journal.extend(change.journal)
        self.boot_id, self.generation = change.boot_id, change.generation
        self.rover, self.daemon_epoch = change.rover, change.daemon_epoch
        self.booted_at = change.booted_at

    def state(self) -> HostState:
        return HostState(self.boot_id, self.generation,
                         tuple(sorted(self.domains.values(), key=lambda d: d.id)),
                         tuple(self.events), tuple(self.journal), self.rover,
                         self.daemon_epoch, _sorted_by_name(self.definitions.values()),
                         self.booted_at)


def _sorted_by_name(specs: Iterable[SavedDomain]) -> tuple[SavedDomain, ...]:
    return tuple(sorted(specs, key=lambda s: s.name))


def _config(spec: SavedDomain) -> DomainConfig:
    return DomainConfig(spec.memory_kib, spec.max_memory_kib, spec.vcpus, spec.os_type,
                        spec.disks, spec.nics)


def _bounded(entry: JournalEntry) -> JournalEntry:
    """``entry`` with each text field cut to its ``_JOURNAL_FIELD_MAX`` (marked)."""
    if all(len(getattr(entry, name)) <= most for name, most in _JOURNAL_FIELD_MAX.items()):
        return entry
    cut = {name: text if len(text := getattr(entry, name)) <= most
           else f"{text[:most - 16]}...(+{len(text) - most + 16})"
           for name, most in _JOURNAL_FIELD_MAX.items()}
    return JournalEntry(cut["op"], entry.domid, cut["uuid"], cut["outcome"], cut["origin"])


class _Domain:
    __slots__ = (
        "cpu_ns",
        "demand",
        "disks",
        "id",
        "load",
        "max_memory_kib",
        "max_vcpus",
        "memory_kib",
        "metadata",
        "name",
        "nics",
        "os_type",
        "rate",
        "sched_cap",
        "sched_weight",
        "since",
        "state",
        "uuid",
        "vcpu_ns",
        "vcpus",
    )

    def __init__(self, domid: int, spec: SavedDomain, now: float, share: float = 1.0) -> None:
        self.id = domid
        self.uuid = spec.uuid
        self.name = spec.name
        self.state = DomainState.RUNNING
        self.memory_kib = spec.memory_kib
        self.max_memory_kib = spec.max_memory_kib
        self.vcpus = spec.vcpus
        self.load = spec.load
        self.os_type = spec.os_type
        self.cpu_ns = spec.cpu_time_ns
        self.since = now
        self.disks = spec.disks
        self.nics = spec.nics
        self.max_vcpus = spec.vcpu_limit
        #: Each vCPU's CPU time at ``since`` (see ``vcpu_times``).
        self.vcpu_ns = spec.vcpu_times_ns or even_vcpu_times(
            spec.cpu_time_ns, spec.vcpus, spec.vcpu_limit)
        self.sched_weight = spec.sched_weight
        self.sched_cap = spec.sched_cap
        self.metadata = spec.metadata
        self.demand = self._wanted()
        self.rate = self.demand * share

    def spec(self, now: float) -> SavedDomain:
        """What brings this domain back elsewhere: everything but its ID and state."""
        total = max(self.cpu_ns, self.cpu_time(now))  # as rebase: never back
        return SavedDomain(self.uuid, self.name, self.memory_kib, self.max_memory_kib,
                           self.vcpus, total, self.os_type, self.load,
                           self.disks, self.nics, self.max_vcpus, self.sched_weight,
                           self.sched_cap, self.metadata, self._times_at(total))

    def live(self) -> LiveDomain:
        return LiveDomain(self.id, self.uuid, self.name, self.state, self.memory_kib,
                          self.max_memory_kib, self.vcpus, self.os_type, self.load,
                          self.cpu_ns, self.since, self.rate, self.disks, self.nics,
                          self.max_vcpus, self.sched_weight, self.sched_cap, self.metadata,
                          self.vcpu_ns)

    @classmethod
    def from_live(cls, live: LiveDomain) -> _Domain:
        """The domain ``live`` describes; InvalidArgumentError when its per-vCPU times
        cannot be its (a state kept by something else than this host)."""
        spec = SavedDomain(live.uuid, live.name, live.memory_kib, live.max_memory_kib,
                           live.vcpus, live.cpu_ns, live.os_type, live.load, live.disks,
                           live.nics, live.max_vcpus, live.sched_weight, live.sched_cap,
                           live.metadata, live.vcpu_ns)
        try:
            if live.vcpus < 1:
                raise ValueError(f"{live.vcpus} vCPUs online")
            check_vcpu_times(spec)
        except ValueError as exc:
            raise InvalidArgumentError(f"saved host state is inconsistent: domain "
                                       f"{live.name!r}: {exc}", domid=live.id,
                                       uuid=live.uuid, name=live.name) from None
        dom = cls(live.id, spec, live.since)
        dom.state = live.state
        dom.demand = dom._wanted()
        dom.rate = dom.demand  # until the host that takes it in says its share
        return dom

    def settings(self) -> DomainSettings:
        return DomainSettings(self.vcpus, self.max_vcpus, self.metadata)

    def _wanted(self) -> float:
        """CPUs' worth it would burn in its current state with the host to itself."""
        if self.state is DomainState.RUNNING:
            return self.load * self.vcpus
        if self.state is DomainState.BLOCKED:
            return _IDLE_LOAD * self.vcpus
        return 0.0

    def cpu_time(self, now: float) -> int:
        return self.cpu_ns + int((now - self.since) * 1e9 * self.rate)

    def _times_at(self, total: int) -> tuple[int, ...]:
        """Every vCPU's time (``max_vcpus`` of them) once the domain's reaches ``total``:
        what it ran since ``since`` goes to the vCPUs online all that while (a rebase
        folds it in before their number changes); the others keep theirs."""
        n = self.vcpus
        ran = _split(max(0, total - self.cpu_ns), n)
        return tuple(t + r for t, r in zip(self.vcpu_ns[:n], ran, strict=True)
                     ) + self.vcpu_ns[n:]

    def vcpu_times(self, now: float) -> tuple[int, ...]:
        """The online vCPUs' times at ``now``, as Xen's ``vcpuinfo`` tells them: each
        vCPU's own, grown only while it was online, summing (with the offline ones'
        kept times) to the domain's CPU time; a vCPU brought online takes nothing from
        the others."""
        n = self.vcpus
        ran = _split(max(0, self.cpu_time(now) - self.cpu_ns), n)
        return tuple(t + r for t, r in zip(self.vcpu_ns[:n], ran, strict=True))

    def rebase(self, now: float, share: float, *, state: DomainState | None = None,
               vcpus: int | None = None) -> None:
        """From ``now`` on, burn ``share`` of what it wants, in ``state`` with ``vcpus``
        online (each unchanged when None); the CPU time so far is kept, each vCPU's too."""
        total = max(self.cpu_ns, self.cpu_time(now))  # never back (a clock step)
        if total != self.cpu_ns:
            self.vcpu_ns = self._times_at(total)  # to those online until now
        self.cpu_ns = total
        self.since = now
        if state is not None:
            self.state = state
        if vcpus is not None:
            self.vcpus = vcpus
        self.demand = self._wanted()
        self.rate = self.demand * share

    def row(self, now: float) -> DataRow:
        # The hot path of every data-plane call: cpu_time() in line.
        return tuple_new(DataRow, (  # no named-tuple __new__ (xvirt.hotpath)
            self.id, self.uuid, self.state, self.memory_kib, self.max_memory_kib, self.vcpus,
            self.cpu_ns + int((now - self.since) * 1e9 * self.rate)))

    def record(self, now: float) -> DomainRecord:
        return DomainRecord(
            self.id,
            self.uuid,
            self.name,
            self.state,
            self.memory_kib,
            self.max_memory_kib,
            self.vcpus,
            self.cpu_time(now),
        )

    def resolved(self) -> Resolved:
        return Resolved(
            self.id,
            self.uuid,
            self.name,
            DomainConfig(self.memory_kib, self.max_memory_kib, self.vcpus, self.os_type,
                         self.disks, self.nics),
        )


def _refusal(dom: _Domain, op: Op, message: str) -> OperationFailedError:
    return OperationFailedError(message, domid=dom.id, uuid=dom.uuid, name=dom.name, op=op.value)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{what} must be a positive integer, not {value!r}")
    return value


def _checked_config(
    name: str, memory_kib: int, max_memory_kib: int | None, vcpus: int, load: float,
    os_type: str, disks: Iterable[DiskConfig] | None, nics: Iterable[NicConfig] | None,
) -> tuple[int, tuple[DiskConfig, ...], tuple[NicConfig, ...] | None]:
    """What ``create`` and ``define`` both check before taking the lock: the maximum
    memory, the disks (the defaults for None) and the NICs (None: the defaults, which
    need the UUID)."""
    check_name(name)
    _positive_int(memory_kib, "memory_kib")
    max_kib = memory_kib if max_memory_kib is None else _positive_int(
        max_memory_kib, "max_memory_kib")
    if max_kib < memory_kib:
        raise InvalidArgumentError(
            f"max_memory_kib ({max_kib}) is below memory_kib ({memory_kib})", name=name
        )
    _positive_int(vcpus, "vcpus")
    if not 0.0 <= load <= 1.0:
        raise InvalidArgumentError(f"load must be within 0..1, not {load}", name=name)
    if not isinstance(os_type, str):
        raise InvalidArgumentError(f"os_type must be a string, not {os_type!r}", name=name)
    try:
        disk_specs = default_disks(name) if disks is None else check_disks(disks)
        nic_specs = None if nics is None else check_nics(nics)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(exc.message, name=name) from None
    return max_kib, disk_specs, nic_specs


def _checked_extras(name: str, vcpus: int, max_vcpus: int | None,
                    metadata: DomainMetadata | None) -> tuple[int, DomainMetadata]:
    """The maximum vCPUs (``vcpus`` when None; at least ``vcpus``, at most Xen's
    MAX_VCPUS) and the metadata (none when None) ``create`` and ``define`` take."""
    if max_vcpus is None:
        limit = vcpus
    else:
        limit = _positive_int(max_vcpus, "max_vcpus")
        if not vcpus <= limit <= max(MAX_VCPUS, vcpus):
            raise InvalidArgumentError(
                f"max_vcpus ({limit}) must be within vcpus ({vcpus})..{MAX_VCPUS}", name=name)
    if metadata is None:
        return limit, DomainMetadata()
    if not isinstance(metadata, DomainMetadata):
        raise InvalidArgumentError(f"metadata must be a DomainMetadata, not "
                                   f"{type(metadata).__name__}", name=name)
    checked = DomainMetadata()
    try:
        for kind, value in ((MetadataKind.TITLE, metadata.title),
                            (MetadataKind.DESCRIPTION, metadata.description)):
            checked = checked.replaced(kind, check_metadata(kind, value)[1])
        for e in metadata.elements:
            _, xml, key, uri = check_metadata(MetadataKind.ELEMENT, e.xml, e.key, e.uri)
            checked = checked.replaced(MetadataKind.ELEMENT, xml, key=key, uri=uri)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(exc.message, name=name) from None
    return limit, checked


#: What ``xen_caps`` says a 64-bit Xen host runs, as ``xl info`` shows it.
XEN_CAPS = "xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
#: Domain-0's page cache, as the node's memory statistics show it: fractions of its memory.
_BUFFERS_SHARE, _CACHED_SHARE = 1 / 32, 1 / 4
#: A vCPU's state from its domain's, as libxl reads Xen's flags (neither running nor
#: blocked, a paused domain's vCPU included, is offline).
_VCPU_STATES = {DomainState.RUNNING: VcpuState.RUNNING, DomainState.BLOCKED: VcpuState.BLOCKED}


def _split(total_ns: int, count: int) -> tuple[int, ...]:
    """``total_ns`` shared evenly among ``count`` vCPUs, the remainder a nanosecond
    each on the lowest: then every share only grows as the total does (the whole
    remainder on vCPU 0 would give some of it back each time the total reached a
    multiple of ``count``)."""
    whole, rest = divmod(total_ns, count)
    return tuple(whole + 1 if i < rest else whole for i in range(count))


def even_vcpu_times(total_ns: int, online: int, limit: int) -> tuple[int, ...]:
    """Per-vCPU times (``limit`` of them) for a domain known only by its CPU time
    ``total_ns`` (a new domain, an image or state file from before per-vCPU times
    were kept): shared evenly among the ``online`` lowest, the others at 0."""
    return _split(total_ns, online) + (0,) * (limit - online)


def _user_share(uuid: str) -> int:
    """The percentage (55-84) of a domain's CPU time spent in its guest's user mode:
    fixed per domain, so user and system time both only grow with the total."""
    return 55 + int(uuid.replace("-", "")[-4:], 16) % 30


def _domain_stats(dom: _Domain, groups: frozenset[StatGroup], now: float) -> DomainStats:
    """``groups`` of ``dom`` at ``now`` (lock held). Every counter is a function of the
    domain's CPU time (see :mod:`xvirt.host.devices`): it grows only while the domain
    runs and restarts at 0 when it reboots."""
    total = max(0, dom.cpu_time(now))
    cpu = balloon = vcpus = blocks = nets = None
    if StatGroup.CPU in groups:
        user = total * _user_share(dom.uuid) // 100
        cpu = CpuStats(total, user, total - user)
    if StatGroup.BALLOON in groups:  # a Xen guest's balloon driver reports no more
        balloon = BalloonStats(dom.memory_kib, dom.max_memory_kib)
    if StatGroup.VCPU in groups:
        state = _VCPU_STATES.get(dom.state, VcpuState.OFFLINE)
        vcpus = tuple(VcpuStats(i, state, t) for i, t in enumerate(dom.vcpu_times(now)))
    if StatGroup.BLOCK in groups:
        blocks = tuple(disk_stats(dom.uuid, disk, total) for disk in dom.disks)
    if StatGroup.NET in groups:
        nets = tuple(nic_stats(dom.uuid, dom.id, i, nic, total)
                     for i, nic in enumerate(dom.nics))
    return DomainStats(dom.uuid, dom.name, dom.id,
                       dom.state if StatGroup.STATE in groups else None,
                       cpu, balloon, vcpus, blocks, nets)


class HostModel:
    """One Xen-style host. Thread-safe: every public method is atomic."""

    def __init__(
        self,
        name: str = "default",
        *,
        id_policy: str = "sequential",
        max_domid: int = DOMID_FIRST_RESERVED - 1,
        control_latency_ms: float = 0.0,
        image_dir: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        event_capacity: int = 4096,
        journal_capacity: int = 100_000,
        cpus: int = 8,
        memory_kib: int | None = None,
    ) -> None:
        """``cpus`` and ``memory_kib`` are the machine's: the domains never use more CPU
        time than ``cpus`` give (they share them when they want more), and a domain
        that would not fit in the memory left is refused, as Xen refuses it. No
        ``memory_kib``: :func:`default_memory_kib` of ``max_domid``."""
        if not 0 <= control_latency_ms <= MAX_WAIT_S * 1000:  # also refuses NaN and inf
            raise InvalidArgumentError(
                f"control_latency_ms must be a number in 0..{MAX_WAIT_S * 1000:.0f}, "
                f"not {control_latency_ms}"
            )
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.control_latency_ms = float(control_latency_ms)
        self._rng = random.Random(seed)
        self._ids = DomidAllocator(id_policy, max_domid, self._rng)
        self._cpus = _positive_int(cpus, "cpus")
        self._memory_kib = (default_memory_kib(self._ids.max_domid) if memory_kib is None
                            else _positive_int(memory_kib, "memory_kib"))
        if self._memory_kib < DOM0_MEMORY_KIB:
            raise InvalidArgumentError(
                f"memory_kib ({self._memory_kib}) leaves no room for Domain-0's "
                f"{DOM0_MEMORY_KIB} KiB")
        self._event_capacity = _positive_int(event_capacity, "event_capacity")
        self._images = ImageStore(image_dir, label=name)  # last: may create a directory
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._journal: deque[JournalEntry] = deque(maxlen=journal_capacity)
        self._tickers: list[Callable[[HostModel, float], None]] = []
        self._ticking = False
        self._tick_instant = 0.0  # the instant of the request running the tickers
        self._closed = False
        self._waits_ended = False  # end_waits(): event waits answer at once from now on
        self._waiting = 0  # callers in an event wait, now
        self._stalled: set[str] = set()  # UUIDs whose figures never come (stall())
        self.daemon_epoch = 0
        self._observers: list[HostObserver] = []
        self._committed: _Committed | None = None  # what observers last accepted, if any
        self._touched: dict[str, None] = {}  # uuids changed since the last commit, in order
        self._vacated: set[int] = set()
        self._journalled = 0  # entries appended since the last commit
        self._journal_total = 0  # the number of the newest entry (numbered from 1 per run)
        self._committed_seq = 0
        self._reset = False
        self._depth = 0
        # Managed domains (xend's ``xm new``): a definition per UUID, running or not. A
        # name is held by one UUID among running AND defined domains, and a running
        # managed domain's name is its definition's (rename renames both).
        self._defs: dict[str, SavedDomain] = {}
        self._def_names: dict[str, str] = {}  # name -> UUID of each definition
        self._defs_touched: dict[str, None] = {}  # definitions changed since the last commit
        self._boot(first=True)

    # -- boot ---------------------------------------------------------------

    def _boot(self, *, first: bool = False) -> None:
        if not first:
            self._commit()  # what happened before the reboot belongs to the old boot
            self._reset = True
            self._touched.clear()
            self._vacated.clear()
            self._committed_seq = 0
            self._stalled.clear()  # a new boot: none of those domains exists
        self.boot_id = str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))
        self._events = EventLog(self._event_capacity)
        self._ids.reset()
        now = self.clock.now()
        self._booted_at = now
        dom0 = _Domain(0, SavedDomain(DOM0_UUID, DOM0_NAME, DOM0_MEMORY_KIB, DOM0_MEMORY_KIB,
                                      min(self._cpus, 4), 0, "linux", 0.05), now)
        # What the running domains use: kept as they come and go, so that admitting one
        # is O(1) however many run. ``_share`` is the fraction of what it wants each
        # domain gets (below 1 when they want more CPUs than the host has).
        self._used_kib = dom0.memory_kib
        self._demand = _units(dom0.demand)
        self._share = 1.0
        self._by_id: dict[int, _Domain] = {0: dom0}
        self._by_uuid: dict[str, _Domain] = {DOM0_UUID: dom0}
        self._by_name: dict[str, _Domain] = {DOM0_NAME: dom0}
        if not first:
            self._touch(dom0)  # the new boot's Domain-0 is part of the reset
            self._changed.notify_all()

    def reboot_host(self) -> None:
        """A new boot identity: every guest is gone, IDs start again. Images stay."""
        with self._lock:
            self._check_open()
            self._log(JournalEntry("reboot_host", 0, DOM0_UUID, "ok"))
            self._boot()
            self._commit()

    def restart_daemon(self) -> None:
        """The management daemon restarts; the hypervisor, its domains and boot identity stay."""
        with self._lock:
            self._check_open()
            self.daemon_epoch += 1
            self._log(JournalEntry("restart_daemon", 0, DOM0_UUID, "ok"))
            self._commit()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        self._images.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def end_waits(self) -> None:
        """Answer every event wait now, with the events so far (none, for most), and
        every later one at once: a server stopping lets its long polls answer rather
        than cut them off, while the host still serves."""
        with self._lock:
            self._waits_ended = True
            self._changed.notify_all()

    @property
    def event_waiters(self) -> int:
        """How many callers are waiting in :meth:`events_since` now."""
        with self._lock:
            return self._waiting

    # -- keeping and mirroring the host ---------------------------------------------

    def add_observer(self, observer: HostObserver) -> None:
        """Hand every later change to ``observer.commit`` inside the request that made it.

        The first observer is the one that keeps the host (a store): a change it
        refuses is undone, so the host never serves what it could not keep."""
        with self._lock:
            self._commit()
            self._observers.append(observer)
            if self._committed is None:
                self._committed = _Committed(self._state(), self._event_capacity,
                                             self._journal.maxlen)

    def state(self) -> HostState:
        """The whole host, for a first save or a first mirror."""
        with self._lock:
            return self._state()

    def _state(self) -> HostState:
        doms = tuple(d.live() for d in self._by_id.values())
        events, _ = self._events.since(self._events.oldest_available)
        return HostState(self.boot_id, self._events.latest, doms, events,
                         tuple(self._journal), self._ids.rover, self.daemon_epoch,
                         _sorted_by_name(self._defs.values()), self._booted_at)

    def load(self, state: HostState) -> None:
        """Become the host ``state`` describes (a daemon starting again): same boot,
        same domains with the same IDs, events numbered on from where they were."""
        state = replace(state, journal=tuple(map(_bounded, state.journal)))  # older files
        with self._lock:
            self._check_open()
            self._become(state)
            self._journal_total = len(state.journal)
            if self._committed is not None:
                self._committed = _Committed(state, self._event_capacity, self._journal.maxlen)

    def _become(self, state: HostState) -> None:
        """``load``'s work, lock held: also how a refused commit is undone. Checked
        whole before anything changes."""
        events = EventLog.resume(self._event_capacity, state.generation, state.events)
        doms = [_Domain.from_live(live) for live in state.domains]
        by_id = {d.id: d for d in doms}
        by_uuid = {d.uuid: d for d in doms}
        by_name = {d.name: d for d in doms}
        if len(by_id) != len(doms) or len(by_uuid) != len(doms) or len(
                by_name) != len(doms) or 0 not in by_id:
            raise InvalidArgumentError("saved host state is inconsistent: duplicate "
                                       "IDs, UUIDs or names, or no Domain-0")
        defs = {s.uuid: s for s in state.definitions}
        def_names = {s.name: s.uuid for s in state.definitions}
        if len(defs) != len(state.definitions) or len(def_names) != len(defs) or (
                DOM0_UUID in defs) or any(
                by_name[n].uuid != u for n, u in def_names.items() if n in by_name) or any(
                defs[u].name != d.name for u, d in by_uuid.items() if u in defs):
            raise InvalidArgumentError(
                "saved host state is inconsistent: a name held by two domains (running or "
                "defined), a UUID defined twice, a definition of Domain-0, or a running "
                "managed domain whose name is not its definition's")
        self.boot_id = state.boot_id
        self._events = events
        self._ids.resume(state.rover)
        self._by_id, self._by_uuid, self._by_name = by_id, by_uuid, by_name
        self._used_kib = sum(d.memory_kib for d in doms)
        self._demand = sum(_units(d.demand) for d in doms)
        self._share = _fitting_share(self._cpus, self._demand / _DEMAND_UNITS)
        for d in doms:  # the rates as the host had them (a store keeps none)
            d.rate = d.demand * self._share
        self._defs, self._def_names = defs, def_names
        self._defs_touched.clear()
        self._stalled &= by_uuid.keys()
        self._journal.clear()
        self._journal.extend(state.journal)
        self.daemon_epoch = state.daemon_epoch
        self._booted_at = self.clock.now() if state.booted_at is None else state.booted_at
        self._touched.clear()
        self._vacated.clear()
        self._journalled = 0
        self._committed_seq = state.generation
        self._reset = False
        self._changed.notify_all()

    def tick(self) -> None:
        """Let scheduled activity (demo churn) catch up with the clock, as any request
        does; a daemon calls this so readers of a shared table see it too."""
        with self._mutation():
            pass

    @contextmanager
    def _mutation(self) -> Iterator[float]:
        """A request that may change the host: observers see its changes before the
        lock is released, even when it fails half-way (a refusal is journalled).
        Nested requests (a batch, a ticker's actions) commit once, at the outermost."""
        with self._lock:
            self._depth += 1
            try:
                yield self._enter()
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._commit()

    def batch(self) -> contextlib.AbstractContextManager[float]:
        """Several changes as one request: atomic for readers, one commit for observers
        (an administrator creating a thousand guests pays for one durable write)."""
        return self._mutation()

    def _log(self, entry: JournalEntry) -> None:
        self._journal.append(_bounded(entry))
        self._journalled += 1
        self._journal_total += 1

    def _touch(self, dom: _Domain) -> None:
        self._touched[dom.uuid] = None

    def _commit(self) -> None:
        """Hand what changed since the last commit to the observers (lock held), then
        settle the images it staged: a kill before the observers kept the change
        leaves them to be undone, never a domain without its image."""
        self._notify()
        self._images.settle()

    def _notify(self) -> None:
        if not self._observers:
            self._touched.clear()
            self._vacated.clear()
            self._defs_touched.clear()
            self._journalled = 0
            self._committed_seq = self._events.latest
            self._reset = False
            return
        latest = self._events.latest
        if not (self._touched or self._vacated or self._journalled or self._reset
                or self._defs_touched or latest != self._committed_seq):
            return
        live = tuple(self._by_uuid[u].live() for u in self._touched if u in self._by_uuid)
        gone = tuple(u for u in self._touched if u not in self._by_uuid)
        vacated = tuple(sorted(i for i in self._vacated if i not in self._by_id))
        events, _ = self._events.since(self._committed_seq)
        journal = tuple(islice(reversed(self._journal), self._journalled))[::-1]
        defined = tuple(self._defs[u] for u in self._defs_touched if u in self._defs)
        undefined = tuple(u for u in self._defs_touched if u not in self._defs)
        change = HostChange(self.boot_id, latest, self._reset, live, vacated, gone, events,
                            journal, self._ids.rover, self.daemon_epoch,
                            frozenset(self._stalled), defined, undefined, self._booted_at)
        committed = self._committed
        try:
            self._observers[0].commit(change)  # the keeper: refused, and nothing happened
        except Exception as exc:
            if committed is None:
                raise
            self._roll_back(committed)
            why = exc.message if isinstance(exc, XvirtError) else f"{type(exc).__name__}: {exc}"
            raise OperationFailedError(
                f"the host could not keep this change, so it was undone: {why}",
                op="commit") from exc
        if committed is not None:
            committed.apply(change)
        self._touched.clear()
        self._vacated.clear()
        self._defs_touched.clear()
        self._journalled = 0
        self._committed_seq = latest
        self._reset = False
        for observer in self._observers[1:]:  # mirrors of what the keeper accepted
            observer.commit(change)

    def _roll_back(self, committed: _Committed) -> None:
        """Undo everything since the last accepted commit (lock held): domains, IDs,
        events, journal and the request's staged images, as if it never ran."""
        self._images.abandon()
        self._journal_total -= self._journalled  # their numbers are given again
        self._become(committed.state())

    def _check_open(self) -> None:
        if self._closed:
            raise HostUnreachableError(f"host {self.name!r} is closed", uri=f"sim:///{self.name}")

    # -- activity hooks (demo churn) -----------------------------------------

    def add_ticker(self, ticker: Callable[[HostModel, float], None]) -> None:
        """Call ``ticker(host, now)`` at the start of every request, under the lock,
        so scripted activity happens on the host's own clock without a thread."""
        with self._lock:
            self._tickers.append(ticker)

    def _enter(self) -> float:
        """Start a request: checks, runs tickers, returns the request's instant."""
        if self._closed:
            self._check_open()  # raises
        if self._ticking:
            # A ticker's own request (the demo host creating a guest): it happens at the
            # instant of the request that runs the tickers, or that request would read
            # the new domain before it began (a negative CPU time).
            return self._tick_instant
        now = self.clock.now()
        if self._tickers:
            self._ticking, self._tick_instant = True, now
            try:
                for ticker in self._tickers:
                    ticker(self, now)
            finally:
                self._ticking = False
        return now

    # -- truth, for tests and tools --------------------------------------------

    def domains(self) -> list[DomainRecord]:
        with self._lock:
            now = self._enter()
            return [d.record(now) for d in sorted(self._by_id.values(), key=lambda d: d.id)]

    def domain(self, domid: int) -> DomainRecord:
        with self._lock:
            now = self._enter()
            return self._get(domid, "domain").record(now)

    def journal(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._journal)

    def journal_page(self, after: int, limit: int) -> tuple[int, int, list[JournalEntry]]:
        """The number of the oldest entry held, of the newest, and at most ``limit``
        entries numbered after ``after``, oldest first: a journal read a page at a time
        (entries are numbered from 1 in this model's life; older ones fall off the end)."""
        with self._lock:
            last = self._journal_total
            first = last - len(self._journal) + 1
            skip = max(0, after + 1 - first)
            return first, last, list(islice(self._journal, skip, skip + max(0, limit)))

    @property
    def generation(self) -> int:
        with self._lock:
            return self._events.latest

    def images(self) -> list[str]:
        return self._images.names()

    @property
    def image_dir(self) -> str:
        return str(self._images.path)

    @property
    def id_policy(self) -> str:
        return self._ids.policy

    @property
    def max_domid(self) -> int:
        return self._ids.max_domid

    def live_view(self) -> tuple[str, int, float, tuple[LiveDomain, ...]]:
        """Boot identity, generation, instant and every domain, in ID order, atomically:
        what a control plane lists."""
        with self._lock:
            now = self._enter()
            doms = tuple(d.live() for d in sorted(self._by_id.values(), key=lambda d: d.id))
            return self.boot_id, self._events.latest, now, doms

    def lookup(self, key: str) -> tuple[str, int, float, LiveDomain | None]:
        """One domain by name, decimal ID or UUID, tried in that order as xend did."""
        with self._lock:
            now = self._enter()
            dom = self._by_name.get(key)
            if dom is None and key.isdigit() and key.isascii() and len(key) < 6:
                dom = self._by_id.get(int(key))
            if dom is None:
                try:
                    dom = self._by_uuid.get(parse_uuid(key))
                except InvalidArgumentError:
                    dom = None
            return self.boot_id, self._events.latest, now, dom.live() if dom else None

    def lookup_uuid(self, uuid: str) -> tuple[str, int, float, LiveDomain | None]:
        """The running domain with this UUID, by UUID alone (``lookup`` tries names
        first: a domain may be *named* like another's UUID)."""
        u = parse_uuid(uuid)
        with self._lock:
            now = self._enter()
            dom = self._by_uuid.get(u)
            return self.boot_id, self._events.latest, now, dom.live() if dom else None

    def journal_refusal(self, op: str, domid: int, uuid: str, outcome: str) -> None:
        """Record a request refused before it reached a domain (e.g. not authenticated)."""
        with self._mutation():
            self._log(JournalEntry(op, domid, uuid, f"refused: {outcome}", "client"))

    # -- data plane -------------------------------------------------------------

    def data_snapshot(self) -> TableSnapshot:
        with self._lock:
            now = self._enter()
            stalled = self._stalled
            rows = tuple(d.row(now) for d in self._by_id.values() if d.uuid not in stalled)
            unanswered = tuple(Unanswered(d.id, d.uuid, self._no_answer(d))
                               for d in self._by_id.values() if d.uuid in stalled)
            return TableSnapshot(self.boot_id, self._events.latest, rows,
                                 unanswered=unanswered)

    def domain_stats(self, groups: frozenset[StatGroup],
                     uuids: Iterable[str] | None = None) -> list[DomainStats]:
        """The statistics ``groups`` of the live domains ``uuids`` (None: every one,
        Domain-0 included), in ID order, read at one instant: one request. A UUID no
        live domain has is left out; a wedged domain (``stall``) has every group asked
        in ``missing``. Counters follow the domain's CPU time: they do not grow while
        it is paused and restart at 0 at a reboot."""
        wanted = None if uuids is None else {parse_uuid(u) for u in uuids}
        with self._lock:
            now = self._enter()
            doms = (self._by_id.values() if wanted is None else
                    [d for u in wanted if (d := self._by_uuid.get(u)) is not None])
            stalled = self._stalled
            return [DomainStats(d.uuid, d.name, d.id, missing=groups)
                    if d.uuid in stalled else _domain_stats(d, groups, now)
                    for d in sorted(doms, key=lambda d: d.id)]

    # -- fault injection: a wedged domain ----------------------------------------

    def stall(self, domid: int) -> None:
        """From now on the domain's figures never come (a wedged domain): snapshots
        list it as unanswered and info by ID raises. It follows the domain's UUID.
        A mutation touching the domain, so observers (a daemon's table) see it."""
        with self._mutation():
            dom = self._get(domid, "stall")
            self._stalled.add(dom.uuid)
            self._touch(dom)

    def unstall(self, domid: int) -> None:
        with self._mutation():
            dom = self._get(domid, "unstall")
            self._stalled.discard(dom.uuid)
            self._touch(dom)

    def _no_answer(self, dom: _Domain) -> OperationFailedError:
        return OperationFailedError(f"domain {dom.id} ({dom.name}) did not answer",
                                    domid=dom.id, uuid=dom.uuid, op="info")

    def data_census(self) -> Census:
        """Who is alive, without the runtime figures listing does not need."""
        with self._lock:
            self._enter()
            members = tuple((d.id, d.uuid) for d in self._by_id.values())
            return Census(self.boot_id, self._events.latest, members)

    def data_owner(self, domid: int) -> IdOwner:
        """Who holds ``domid``: what a lookup by ID validates with, without the
        runtime figures (and their CPU-time arithmetic) it does not need."""
        with self._lock:
            self._enter()
            dom = self._by_id.get(domid)
            return tuple_new(IdOwner, (self.boot_id, self._events.latest,
                                        dom.uuid if dom else None, None))

    def data_info(self, domid: int) -> IdAnswer:
        with self._lock:
            now = self._enter()
            dom = self._by_id.get(domid)
            if dom is None:
                return tuple_new(IdAnswer, (self.boot_id, self._events.latest, None))
            if dom.uuid in self._stalled:
                raise self._no_answer(dom)
            return tuple_new(IdAnswer, (self.boot_id, self._events.latest, dom.row(now)))

    # -- control plane ----------------------------------------------------------

    def resolve(self, uuids: Iterable[str] = (), ids: Iterable[int] = ()) -> Resolution:
        with self._lock:
            self._enter()
            found: dict[str, Resolved] = {}
            for u in uuids:
                dom = self._by_uuid.get(u)
                if dom is not None:
                    found[dom.uuid] = dom.resolved()
            for i in ids:
                dom = self._by_id.get(i)
                if dom is not None:
                    found[dom.uuid] = dom.resolved()
            return Resolution(self.boot_id, self._events.latest, tuple(found.values()))

    def resolve_names(self, names: Iterable[str]) -> Resolution:
        with self._lock:
            self._enter()
            found = tuple(
                self._by_name[n].resolved() for n in names if n in self._by_name
            )
            return Resolution(self.boot_id, self._events.latest, found)

    def list_all(self) -> Resolution:
        with self._lock:
            self._enter()
            doms = tuple(d.resolved() for d in sorted(self._by_id.values(), key=lambda d: d.id))
            return Resolution(self.boot_id, self._events.latest, doms)

    def node_info(self) -> HostInfo:
        with self._lock:
            self._enter()
            used = self._used_kib
            return HostInfo(
                hostname=f"{self.name}.sim",
                hypervisor="Xen",
                version="4.17.0-xvirt-sim",
                arch="x86_64",
                cpus=self._cpus,
                cpu_mhz=2400,
                nodes=1,
                sockets_per_node=1,
                cores_per_socket=max(1, self._cpus // 2),
                threads_per_core=2 if self._cpus >= 2 else 1,
                memory_kib=self._memory_kib,
                free_memory_kib=max(0, self._memory_kib - used),
                boot_id=self.boot_id,
            )

    @property
    def xen_caps(self) -> str:
        """What guests the host runs, as Xen's ``xen_caps`` says it."""
        return XEN_CAPS

    def capabilities(self) -> HostCapabilities:
        """The node's facts, its scheduler and the guests it runs (``xen_caps``)."""
        return HostCapabilities(self.node_info(), DEFAULT_SCHEDULER, guest_types(XEN_CAPS))

    def node_memory_stats(self, cell: int | None = None) -> NodeMemoryStats:
        """The node's memory (``cell`` None: all of it; this host has one NUMA cell,
        0): total and free as ``node_info`` says them, buffers and cached Domain-0's
        page cache (part of what is used)."""
        self._check_index(cell, 1, "cell", "node_memory_stats")
        with self._lock:
            self._enter()
            used = self._used_kib
            dom0 = self._by_id[0].memory_kib
        free = max(0, self._memory_kib - used)
        buffers = min(int(dom0 * _BUFFERS_SHARE), self._memory_kib - free)
        cached = min(int(dom0 * _CACHED_SHARE), self._memory_kib - free - buffers)
        return NodeMemoryStats(self._memory_kib, free, buffers, cached)

    def node_cpu_stats(self, cpu: int | None = None) -> NodeCpuStats:
        """Time the node's CPUs (``cpu`` None: all, summed) spent in each mode since
        this boot began, on the host's clock: each CPU's four figures add up to the
        time since boot, and each grows with the clock (never backwards in a boot)."""
        self._check_index(cpu, self._cpus, "cpu", "node_cpu_stats")
        with self._lock:
            self._enter()
            elapsed = max(0, int((self.clock.now() - self._booted_at) * 1e9))
        totals = [0, 0, 0, 0]
        for i in range(self._cpus) if cpu is None else (cpu,):
            user = elapsed * (15 + 3 * i % 11) // 100  # CPUs are not all equally busy
            kernel, iowait = elapsed * 4 // 100, elapsed // 100
            for k, v in enumerate((kernel, user, elapsed - kernel - user - iowait, iowait)):
                totals[k] += v
        return NodeCpuStats(*totals)

    @staticmethod
    def _check_index(value: object, count: int, what: str, op: str) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise InvalidArgumentError(
                f"{what} {value!r} does not exist on this host (0..{count - 1})", op=op)

    # -- vCPUs, the credit scheduler, metadata (by UUID: no ID to misdirect, C4) -------

    def _affected(self, uuid: str, affect: Affect, op: str
                  ) -> tuple[_Domain | None, SavedDomain | None]:
        """The running domain and the definition ``affect`` names (lock held), as
        libvirt resolves ``VIR_DOMAIN_AFFECT_*``: CURRENT is the running domain while it
        runs, else its definition; a running one asked of a domain that does not run,
        or a definition of a transient domain, is refused (OperationFailedError)."""
        if not isinstance(affect, Affect):
            raise InvalidArgumentError(f"affect must be an Affect, not {affect!r}", op=op)
        dom = self._by_uuid.get(uuid)
        spec = self._defs.get(uuid)
        if dom is None and spec is None:
            raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, op=op)
        if affect is Affect.CURRENT:
            affect = Affect.LIVE if dom is not None else Affect.CONFIG
        name = dom.name if dom is not None else spec.name if spec is not None else None
        if Affect.LIVE in affect and dom is None:
            raise OperationFailedError("domain is not running", uuid=uuid, name=name, op=op)
        if Affect.CONFIG in affect and spec is None:
            raise OperationFailedError("transient domains do not have any persistent config",
                                       uuid=uuid, name=name, op=op)
        return (dom if Affect.LIVE in affect else None,
                spec if Affect.CONFIG in affect else None)

    def settings(self, uuid: str, affect: Affect = Affect.CURRENT) -> DomainSettings:
        """The online and maximum vCPUs and the metadata of the running domain or of
        its definition (``affect``: one of them, not both)."""
        u = parse_uuid(uuid)
        if affect == Affect.LIVE | Affect.CONFIG:
            raise InvalidArgumentError("ask for the running domain's settings or its "
                                       "definition's, not both", uuid=u, op="settings")
        with self._lock:
            self._enter()
            dom, spec = self._affected(u, affect, "settings")
            if dom is not None:
                return dom.settings()
            assert spec is not None
            return DomainSettings(spec.vcpus, spec.vcpu_limit, spec.metadata)

    def set_vcpus(self, uuid: str, count: int, *, affect: Affect = Affect.CURRENT,
                  maximum: bool = False, origin: str = "host") -> None:
        """Bring ``count`` vCPUs online (xend's ``vcpu_set``), up to the domain's
        maximum, in the running domain or its definition (``affect``); ``maximum``
        changes a definition's maximum instead (a running domain's is fixed), taking its
        online count down with it. Not a lifecycle change: no event."""
        u = parse_uuid(uuid)
        op = "set_vcpus"
        with self._mutation() as now:
            dom, spec = None, None
            try:
                if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                    raise InvalidArgumentError(f"a vCPU count must be a positive integer, "
                                               f"not {count!r}", uuid=u, op=op)
                if not isinstance(affect, Affect):
                    raise InvalidArgumentError(f"affect must be an Affect, not {affect!r}",
                                               uuid=u, op=op)
                if maximum and Affect.LIVE in affect:
                    raise InvalidArgumentError("a running domain's maximum vCPUs cannot "
                                               "change", uuid=u, op=op)
                dom, spec = self._affected(u, affect, op)
                if maximum and dom is not None:  # CURRENT of a running domain
                    raise InvalidArgumentError("a running domain's maximum vCPUs cannot "
                                               "change", uuid=u, op=op)
                limit = MAX_VCPUS if maximum else min(
                    x.max_vcpus if isinstance(x, _Domain) else x.vcpu_limit
                    for x in (dom, spec) if x is not None)
                if count > limit:
                    raise InvalidArgumentError(
                        f"requested vcpus is greater than max allowable vcpus for the "
                        f"domain: {count} > {limit}", uuid=u, op=op)
            except (InvalidArgumentError, OperationFailedError, NoDomainError) as exc:
                domid = dom.id if dom is not None else -1
                self._log(JournalEntry(op, domid, u, f"failed: {exc.message}", origin))
                raise
            if dom is not None:
                self._restate(dom, now, vcpus=count)
            if spec is not None:
                self._redefine(replace(spec, max_vcpus=count, vcpus=min(spec.vcpus, count))
                               if maximum else replace(spec, vcpus=count,
                                                       max_vcpus=spec.vcpu_limit))
            self._log(JournalEntry(op, dom.id if dom is not None else -1, u, "ok", origin))

    def vcpu_info(self, uuid: str) -> tuple[VcpuInfo, ...]:
        """The running domain's online vCPUs, as Xen's ``vcpuinfo`` tells them: each
        one's own CPU time (``_Domain.vcpu_times``), each on a physical CPU of its own
        where there are enough, free to run on any (no pinning)."""
        u = parse_uuid(uuid)
        with self._lock:
            now = self._enter()
            dom, _ = self._affected(u, Affect.LIVE, "vcpu_info")
            assert dom is not None
            times, domid = dom.vcpu_times(now), dom.id  # as the stats
            state = _VCPU_STATES.get(dom.state, VcpuState.OFFLINE)
        everywhere = (True,) * self._cpus
        return tuple(VcpuInfo(i, state, t, (domid + i) % self._cpus, everywhere)
                     for i, t in enumerate(times))

    def scheduler(self, uuid: str) -> SchedulerParams:
        """The running domain's credit scheduler share (xend's ``domain_sched_credit_get``)."""
        u = parse_uuid(uuid)
        with self._lock:
            self._enter()
            dom, _ = self._affected(u, Affect.LIVE, "scheduler")
            assert dom is not None
            return SchedulerParams(dom.sched_weight, dom.sched_cap)

    def set_scheduler(self, uuid: str, *, weight: int | None = None, cap: int | None = None,
                      origin: str = "host") -> SchedulerParams:
        """Change the running domain's credit scheduler share, each of ``weight`` and
        ``cap`` left as it is when None (xend's ``domain_sched_credit_set``); returns
        the share now. The cap is at most 100 per vCPU of the domain's maximum."""
        u = parse_uuid(uuid)
        op = "sched_credit_set"
        with self._mutation():
            dom: _Domain | None = None
            try:
                dom, _ = self._affected(u, Affect.LIVE, op)
                assert dom is not None
                new_weight, new_cap = check_scheduler(weight, cap, dom.max_vcpus)
            except (InvalidArgumentError, OperationFailedError, NoDomainError) as exc:
                domid = dom.id if dom is not None else -1
                self._log(JournalEntry(op, domid, u, f"failed: {exc.message}", origin))
                raise
            if new_weight is not None:
                dom.sched_weight = new_weight
            if new_cap is not None:
                dom.sched_cap = new_cap
            self._touch(dom)
            self._log(JournalEntry(op, dom.id, u, "ok", origin))
            return SchedulerParams(dom.sched_weight, dom.sched_cap)

    def set_metadata(self, uuid: str, kind: MetadataKind, value: str | None, *,
                     key: str | None = None, uri: str | None = None,
                     affect: Affect = Affect.CURRENT, origin: str = "host") -> None:
        """Set (or, with None or "", remove) the title, the description or the
        metadata element of namespace ``uri`` (written with prefix ``key``) of the
        running domain or its definition (``affect``). One event says which changed
        (its ``name`` is the element's URI), as libvirt's METADATA_CHANGE does."""
        u = parse_uuid(uuid)
        op = "set_metadata"
        with self._mutation():
            dom, spec = None, None
            try:
                kind, text, key, uri = check_metadata(kind, value, key, uri)
                dom, spec = self._affected(u, affect, op)
            except (InvalidArgumentError, OperationFailedError, NoDomainError) as exc:
                domid = dom.id if dom is not None else -1
                self._log(JournalEntry(op, domid, u, f"failed: {exc.message}", origin))
                raise
            if dom is not None:
                dom.metadata = dom.metadata.replaced(kind, text, key=key, uri=uri)
                self._touch(dom)
            if spec is not None:
                self._redefine(replace(spec, metadata=spec.metadata.replaced(
                    kind, text, key=key, uri=uri)))
            running = self._by_uuid.get(u)
            domid = running.id if running is not None else -1
            changed = {MetadataKind.TITLE: EventKind.TITLE_CHANGED,
                       MetadataKind.DESCRIPTION: EventKind.DESCRIPTION_CHANGED,
                       MetadataKind.ELEMENT: EventKind.METADATA_CHANGED}[kind]
            self._events.append(changed, domid, u, name=uri)
            self._log(JournalEntry(op, domid, u, "ok", origin))
            self._changed.notify_all()

    def _redefine(self, spec: SavedDomain) -> None:
        """Replace a definition by a changed copy (same UUID and name; lock held)."""
        self._defs[spec.uuid] = spec
        self._defs_touched[spec.uuid] = None

    def act(self, op: Op, domid: int, expected_uuid: str, arg: str | None = None,
            *, origin: str = "client") -> None:
        """Check that ``domid`` is ``expected_uuid`` and act, in one atomic step (C4).

        A mismatch is journalled and raised as NoDomainError; nothing is done.
        """
        check_domid(domid)
        expected_uuid = parse_uuid(expected_uuid)
        with self._mutation():
            dom = self._by_id.get(domid)
            if dom is None or dom.uuid != expected_uuid:
                outcome = "refused: no such domain" if dom is None else "refused: identity mismatch"
                self._log(JournalEntry(op.value, domid, expected_uuid, outcome, origin))
                raise NoDomainError(
                    f"domain {domid} is not {expected_uuid} any more",
                    domid=domid,
                    uuid=expected_uuid,
                    op=op.value,
                )
            self._perform(op, dom, arg, origin=origin)

    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        """Events after ``after``; waits up to ``timeout`` real seconds for one."""
        with self._lock:
            self._enter()
            if timeout > 0 and after == self._events.latest and not self._waits_ended:
                self._waiting += 1
                try:
                    self._changed.wait_for(
                        lambda: self._closed or self._waits_ended
                        or self._events.latest != after, timeout
                    )
                finally:
                    self._waiting -= 1
                self._check_open()
            events, complete = self._events.since(after)
            return EventBatch(self.boot_id, self._events.latest, events, complete)

    # -- lifecycle ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        memory_kib: int = 524288,
        max_memory_kib: int | None = None,
        vcpus: int = 1,
        uuid: str | None = None,
        load: float = 0.25,
        os_type: str = "linux",
        cpu_time_ns: int = 0,
        disks: Iterable[DiskConfig] | None = None,
        nics: Iterable[NicConfig] | None = None,
        paused: bool = False,
        max_vcpus: int | None = None,
        metadata: DomainMetadata | None = None,
        origin: str = "host",
    ) -> DomainRecord:
        """Start a new guest (running, or paused as xend creates them) and return it;
        ``cpu_time_ns`` lets a demo start guests that have been running for a while.

        ``disks``/``nics`` None gives the defaults (``/var/lib/xen/images/<name>.img``
        on xvda; one vif on xenbr0 with a MAC from the UUID); ``()`` gives none.
        ``vcpus`` are online, ``max_vcpus`` (default: as many) the most it may bring
        online; ``metadata`` its title, description and metadata elements."""
        if isinstance(cpu_time_ns, bool) or not isinstance(cpu_time_ns, int) or cpu_time_ns < 0:
            raise InvalidArgumentError(
                f"cpu_time_ns must be a non-negative integer, not {cpu_time_ns!r}", name=name
            )
        max_kib, disk_specs, nic_specs = _checked_config(
            name, memory_kib, max_memory_kib, vcpus, load, os_type, disks, nics)
        limit, meta = _checked_extras(name, vcpus, max_vcpus, metadata)
        with self._mutation() as now:
            u = parse_uuid(uuid) if uuid is not None else self._new_uuid()
            spec = SavedDomain(u, name, memory_kib, max_kib, vcpus, cpu_time_ns, os_type, load,
                               disk_specs, default_nics(u) if nic_specs is None else nic_specs,
                               limit, metadata=meta)
            dom = self._admit(spec, now, "create", EventKind.CREATED, may_be_defined=False)
            if paused:
                self._restate(dom, now, state=DomainState.PAUSED)
            self._log(JournalEntry("create", dom.id, dom.uuid, "ok", origin))
            return dom.record(now)

    def destroy(self, domid: int) -> None:
        self._host_op(Op.DESTROY, domid)

    def shutdown(self, domid: int) -> None:
        self._host_op(Op.SHUTDOWN, domid)

    def pause(self, domid: int) -> None:
        self._host_op(Op.PAUSE, domid)

    def resume(self, domid: int) -> None:
        self._host_op(Op.RESUME, domid)

    def reboot(self, domid: int) -> DomainRecord:
        """Reboot: same UUID and name, a new ID (Xen destroys and rebuilds the domain)."""
        return self._host_op(Op.REBOOT, domid)

    def migrate(self, domid: int) -> DomainRecord:
        """Local migration: same UUID and name, a new ID."""
        return self._host_op(Op.MIGRATE, domid)

    def save(self, domid: int, image: str) -> None:
        """Save the guest to ``image`` and remove it. ``image`` is a plain name in the
        image directory, or an absolute path the host's process may write: the
        embedded host acts for its own process only; the daemon, which acts for other
        users, passes names only."""
        self._host_op(Op.SAVE, domid, image)

    def rename(self, domid: int, new_name: str) -> None:
        self._host_op(Op.RENAME, domid, new_name)

    def crash(self, domid: int) -> None:
        """The guest crashes and is preserved (on_crash=preserve) until destroyed."""
        with self._mutation() as now:
            dom = self._get(domid, "crash")
            self._guest_only(dom, "crash")
            self._restate(dom, now, state=DomainState.CRASHED)
            self._events.append(EventKind.CRASHED, dom.id, dom.uuid)
            self._log(JournalEntry("crash", dom.id, dom.uuid, "ok"))
            self._changed.notify_all()

    def set_blocked(self, domid: int, blocked: bool = True) -> None:
        """Mark a running guest idle (blocked) or busy again; not a lifecycle event."""
        with self._mutation() as now:
            dom = self._get(domid, "set_blocked")
            if dom.state in _RUNNABLE:
                self._restate(dom, now,
                              state=DomainState.BLOCKED if blocked else DomainState.RUNNING)

    def restore(self, image: str, *, origin: str = "host") -> DomainRecord:
        """Bring a saved domain back: same UUID and name, a new ID. ``image`` is a name
        in the image directory or an absolute path (see ``save``). The image stays, as
        xm and libvirt leave it: while the domain runs, its UUID refuses a second
        restore; once it is gone, the image brings it back again."""
        check_image(image)
        with self._mutation() as now:
            saved = self._images.read(image)
            try:  # a managed domain saved while running comes back, still defined
                dom = self._admit(saved, now, "restore", EventKind.RESTORED, may_be_defined=True)
            except OperationFailedError as exc:  # say why in the journal
                self._log(
                    JournalEntry("restore", -1, saved.uuid, f"failed: {exc.message}", origin)
                )
                raise
            self._log(JournalEntry("restore", dom.id, dom.uuid, "ok", origin))
            return dom.record(now)

    # -- managed (defined) domains ---------------------------------------------------

    def define(
        self,
        name: str,
        *,
        memory_kib: int = 524288,
        max_memory_kib: int | None = None,
        vcpus: int = 1,
        uuid: str | None = None,
        os_type: str = "linux",
        load: float = 0.25,
        disks: Iterable[DiskConfig] | None = None,
        nics: Iterable[NicConfig] | None = None,
        max_vcpus: int | None = None,
        metadata: DomainMetadata | None = None,
        origin: str = "host",
    ) -> Definition:
        """Define a managed domain without starting it (xend's ``op=new``, ``xm new``).

        Arguments are validated as ``create``'s (``load`` is what it burns once started).
        The UUID of a defined domain replaces its definition (the running domain, if
        any, keeps its configuration until it is started again); the UUID of a running
        transient domain makes it persistent, under its current name only. A name
        another UUID holds, running or defined, is refused, and so is Domain-0."""
        max_kib, disk_specs, nic_specs = _checked_config(
            name, memory_kib, max_memory_kib, vcpus, load, os_type, disks, nics)
        limit, meta = _checked_extras(name, vcpus, max_vcpus, metadata)
        wanted = parse_uuid(uuid) if uuid is not None else None
        with self._mutation():
            u = wanted if wanted is not None else self._new_uuid()
            running = self._by_uuid.get(u)
            domid = running.id if running is not None else -1
            try:
                if u == DOM0_UUID:
                    raise OperationFailedError("Domain-0 cannot be defined", domid=0, uuid=u,
                                               name=name, op="define")
                if running is not None and running.name != name:
                    raise OperationFailedError(
                        f"domain {u} is running as {running.name!r}: a running domain is "
                        f"defined under its own name (rename it first)",
                        domid=domid, uuid=u, name=name, op="define")
                self._check_name_free(name, u, "define")
            except OperationFailedError as exc:
                self._log(JournalEntry("define", domid, u, f"failed: {exc.message}", origin))
                raise
            spec = SavedDomain(u, name, memory_kib, max_kib, vcpus, 0, os_type, load,
                               disk_specs, default_nics(u) if nic_specs is None else nic_specs,
                               limit, metadata=meta)
            old = self._defs.get(u)
            if old is not None:
                del self._def_names[old.name]
            self._defs[u] = spec
            self._def_names[name] = u
            self._defs_touched[u] = None
            self._events.append(EventKind.DEFINED, domid, u, name=name)
            self._log(JournalEntry("define", domid, u, "ok", origin))
            self._changed.notify_all()
            answer = self._definition(u)
            assert answer is not None
            return answer

    def start(self, uuid: str, *, origin: str = "host") -> DomainRecord:
        """Boot the defined, not running domain ``uuid`` (xend's ``op=start``): a new ID
        from the allocator, CPU time 0, running; it stays defined. NoDomainError when
        no such domain is defined, OperationFailedError when it runs already."""
        u = parse_uuid(uuid)
        with self._mutation() as now:
            running = self._by_uuid.get(u)
            spec = self._defs.get(u)
            try:
                if running is not None:
                    raise OperationFailedError(
                        f"domain {running.name!r} is already running (ID {running.id})",
                        domid=running.id, uuid=u, name=running.name, op="start")
                if spec is None:
                    raise NoDomainError(f"no domain with UUID {u} is defined", uuid=u,
                                        op="start")
                dom = self._admit(replace(spec, cpu_time_ns=0, vcpu_times_ns=()), now,
                                  "start", EventKind.STARTED, may_be_defined=True)
            except (OperationFailedError, NoDomainError) as exc:
                outcome = ("refused: no such domain" if isinstance(exc, NoDomainError)
                           else f"failed: {exc.message}")
                self._log(JournalEntry("start", running.id if running else -1, u, outcome,
                                       origin))
                raise
            self._log(JournalEntry("start", dom.id, u, "ok", origin))
            return dom.record(now)

    def undefine(self, uuid: str, *, origin: str = "host") -> None:
        """Remove the definition of ``uuid`` (xend's ``op=delete``, journalled as
        ``delete``). A running domain is refused (OperationFailedError: stop it first),
        a UUID with no definition is NoDomainError."""
        u = parse_uuid(uuid)
        with self._mutation():
            running = self._by_uuid.get(u)
            spec = self._defs.get(u)
            try:
                if running is not None:
                    raise OperationFailedError(
                        f"domain {running.name!r} is running (ID {running.id}): only a "
                        "domain that is shut off can be undefined",
                        domid=running.id, uuid=u, name=running.name, op="undefine")
                if spec is None:
                    raise NoDomainError(f"no domain with UUID {u} is defined", uuid=u,
                                        op="undefine")
            except (OperationFailedError, NoDomainError) as exc:
                outcome = ("refused: no such domain" if isinstance(exc, NoDomainError)
                           else f"failed: {exc.message}")
                self._log(JournalEntry("delete", running.id if running else -1, u, outcome,
                                       origin))
                raise
            del self._defs[u]
            del self._def_names[spec.name]
            self._defs_touched[u] = None
            self._events.append(EventKind.UNDEFINED, -1, u, name=spec.name)
            self._log(JournalEntry("delete", -1, u, "ok", origin))
            self._changed.notify_all()

    def find(self, *, uuid: str | None = None, name: str | None = None
             ) -> tuple[str, int, Definition | None]:
        """Boot identity, generation and the domain with that UUID or name (exactly one
        given), running (``id`` set; ``persistent`` when defined; its live configuration)
        or defined and shut off (``id`` None; its definition), or None: atomically."""
        if (uuid is None) == (name is None):
            raise InvalidArgumentError("find takes exactly one of uuid and name", op="find")
        if name is not None and not isinstance(name, str):
            raise InvalidArgumentError(f"a name is a string, not {name!r}", op="find")
        wanted = parse_uuid(uuid) if uuid is not None else None
        with self._lock:
            self._enter()
            if wanted is None:
                assert name is not None
                dom = self._by_name.get(name)
                wanted = dom.uuid if dom is not None else self._def_names.get(name)
            answer = self._definition(wanted) if wanted is not None else None
            return self.boot_id, self._events.latest, answer

    def defined(self) -> tuple[str, int, tuple[Definition, ...]]:
        """Boot identity, generation and every domain defined and shut off, by name
        (xend's ``GET /xend/domain?state=halted``): running ones are not listed."""
        with self._lock:
            self._enter()
            inactive = tuple(Definition(s.uuid, s.name, None, True, _config(s))
                             for s in _sorted_by_name(self._defs.values())
                             if s.uuid not in self._by_uuid)
            return self.boot_id, self._events.latest, inactive

    def _definition(self, uuid: str) -> Definition | None:
        """The control plane's view of ``uuid`` (lock held)."""
        dom = self._by_uuid.get(uuid)
        spec = self._defs.get(uuid)
        if dom is not None:
            return Definition(uuid, dom.name, dom.id, spec is not None, dom.resolved().config)
        if spec is not None:
            return Definition(uuid, spec.name, None, True, _config(spec))
        return None

    def _check_name_free(self, name: str, uuid: str, op: str) -> None:
        """Refuse ``name`` when a domain other than ``uuid`` holds it, running or defined."""
        dom = self._by_name.get(name)
        if dom is not None and dom.uuid != uuid:
            raise OperationFailedError(f"a domain named {name!r} already exists", name=name,
                                       uuid=uuid, op=op)
        holder = self._def_names.get(name)
        if holder is not None and holder != uuid:
            raise OperationFailedError(
                f"a domain named {name!r} already exists (defined, shut off: {holder})",
                name=name, uuid=uuid, op=op)

    # -- internals ------------------------------------------------------------------

    def _new_uuid(self) -> str:
        while True:
            u = str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))
            if u not in self._by_uuid and u not in self._defs:
                return u

    def _get(self, domid: int, op: str) -> _Domain:
        check_domid(domid)
        dom = self._by_id.get(domid)
        if dom is None:
            raise NoDomainError(f"no domain with ID {domid}", domid=domid, op=op)
        return dom

    @staticmethod
    def _guest_only(dom: _Domain, op: str) -> None:
        if dom.id == 0:
            raise OperationFailedError(
                f"Domain-0 cannot {op}", domid=0, uuid=dom.uuid, name=dom.name, op=op
            )

    def _admit(self, spec: SavedDomain, now: float, op: str, kind: EventKind, *,
               may_be_defined: bool) -> _Domain:
        """Run ``spec`` under a new ID. ``may_be_defined``: its UUID may be a defined,
        shut-off domain's (start, restore), under that definition's name only."""
        uuid, name = spec.uuid, spec.name
        self._check_name_free(name, uuid, op)
        if uuid in self._by_uuid:
            raise OperationFailedError(
                f"a domain with UUID {uuid} already exists", uuid=uuid, name=name, op=op
            )
        defined = self._defs.get(uuid)
        if defined is not None and not may_be_defined:
            raise OperationFailedError(
                f"a domain with UUID {uuid} is already defined (as {defined.name!r})",
                uuid=uuid, name=name, op=op)
        if defined is not None and defined.name != name:
            raise OperationFailedError(
                f"domain {uuid} is defined as {defined.name!r}, not {name!r}: a managed "
                "domain runs under its definition's name", uuid=uuid, name=name, op=op)
        free = self._memory_kib - self._used_kib
        if spec.memory_kib > free:  # xend: "I need N KiB but only have M"
            raise OperationFailedError(
                f"not enough free memory on host {self.name!r} to run {name!r}: it needs "
                f"{spec.memory_kib} KiB, {free} KiB of {self._memory_kib} KiB are free",
                uuid=uuid, name=name, op=op)
        domid = self._ids.allocate(self._by_id, len(self._by_id) - 1)
        dom = _Domain(domid, spec, now, self._share)
        self._by_id[domid] = dom
        self._by_uuid[uuid] = dom
        self._by_name[name] = dom
        self._used_kib += dom.memory_kib
        self._demand += _units(dom.demand)
        self._touch(dom)
        self._rebalance(now)
        # A restored or started domain's event names it: its name is its image's or its
        # definition's, which the last name it ran under need not be (xend's events
        # carried no names; this host's do where a client could not know it otherwise).
        self._events.append(kind, domid, uuid,
                            name=None if kind is EventKind.CREATED else name)
        self._changed.notify_all()
        return dom

    def _remove(self, dom: _Domain, kind: EventKind, now: float) -> None:
        del self._by_id[dom.id]
        del self._by_uuid[dom.uuid]
        del self._by_name[dom.name]
        self._used_kib -= dom.memory_kib
        self._demand -= _units(dom.demand)
        self._rebalance(now)
        self._stalled.discard(dom.uuid)  # the wedge goes with it: a restore is a new start
        self._touch(dom)
        self._vacated.add(dom.id)
        self._events.append(kind, dom.id, dom.uuid)

    def _restate(self, dom: _Domain, now: float, *, state: DomainState | None = None,
                 vcpus: int | None = None) -> None:
        """Put ``dom`` in ``state`` with ``vcpus`` online from ``now`` (lock held), and
        share the CPUs again if it now wants more or less of them."""
        before = _units(dom.demand)
        dom.rebase(now, self._share, state=state, vcpus=vcpus)
        self._demand += _units(dom.demand) - before
        self._touch(dom)
        self._rebalance(now)

    def _rebalance(self, now: float) -> None:
        """Keep what the domains burn within the host's CPUs (lock held): when they want
        more than it has, each gets the same share of what it wants (see
        ``_SHARE_STEP``), every domain's rate changing at ``now`` when the share does.
        So the CPU time the domains use in any interval is at most its length times
        the host's CPUs."""
        share = _fitting_share(self._cpus, self._demand / _DEMAND_UNITS)
        if share == self._share:
            return
        self._share = share
        for dom in self._by_id.values():
            if dom.demand:
                dom.rebase(now, share)
                self._touch(dom)

    def _host_op(self, op: Op, domid: int, arg: str | None = None) -> DomainRecord:
        with self._mutation() as now:
            dom = self._get(domid, op.value)
            self._perform(op, dom, arg, origin="host")
            return dom.record(now)

    def _perform(self, op: Op, dom: _Domain, arg: str | None, *, origin: str) -> None:
        """Apply ``op`` to ``dom`` (lock held) and journal the outcome."""
        before = dom.id
        try:
            self._apply(op, dom, arg)
        except (OperationFailedError, InvalidArgumentError) as exc:
            self._log(JournalEntry(op.value, before, dom.uuid, f"failed: {exc.message}", origin))
            raise
        self._log(JournalEntry(op.value, before, dom.uuid, "ok", origin))
        self._changed.notify_all()

    def _apply(self, op: Op, dom: _Domain, arg: str | None) -> None:
        now = self.clock.now()
        if op is not Op.RENAME:
            self._guest_only(dom, op.value)
        if op is Op.PAUSE:
            if dom.state not in _RUNNABLE:
                raise _refusal(dom, op, f"domain is {dom.state.value}, not running")
            self._restate(dom, now, state=DomainState.PAUSED)
            self._events.append(EventKind.PAUSED, dom.id, dom.uuid)
        elif op is Op.RESUME:
            if dom.state is not DomainState.PAUSED:
                raise _refusal(dom, op, f"domain is {dom.state.value}, not paused")
            self._restate(dom, now, state=DomainState.RUNNING)
            self._events.append(EventKind.RESUMED, dom.id, dom.uuid)
        elif op is Op.DESTROY:
            self._remove(dom, EventKind.DESTROYED, now)
        elif op is Op.SHUTDOWN:
            if dom.state not in _RUNNABLE and dom.state is not DomainState.PAUSED:
                raise _refusal(dom, op, f"domain is {dom.state.value}")
            self._remove(dom, EventKind.SHUTDOWN, now)
        elif op in (Op.REBOOT, Op.MIGRATE):
            self._move(dom, EventKind.REBOOTED if op is Op.REBOOT else EventKind.MIGRATED, now,
                       reset_cpu=op is Op.REBOOT)
        elif op is Op.SAVE:
            image = check_image(arg)
            # raises before the domain is touched; replaces no image whose domain is gone
            self._images.stage(image, dom.spec(now), running=self._by_uuid)
            self._remove(dom, EventKind.SAVED, now)
        elif op is Op.RENAME:
            new = check_name(arg)
            self._guest_only(dom, "rename")
            if new != dom.name:
                if new in self._by_name or self._def_names.get(new, dom.uuid) != dom.uuid:
                    raise _refusal(dom, op, f"a domain named {new!r} already exists")
                del self._by_name[dom.name]
                dom.name = new
                self._by_name[new] = dom
                self._touch(dom)
                spec = self._defs.get(dom.uuid)
                if spec is not None:  # a managed domain's definition follows its name
                    del self._def_names[spec.name]
                    self._defs[dom.uuid] = replace(spec, name=new)
                    self._def_names[new] = dom.uuid
                    self._defs_touched[dom.uuid] = None
                self._events.append(EventKind.RENAMED, dom.id, dom.uuid, name=new)
        else:  # pragma: no cover - every Op is handled above
            raise AssertionError(op)

    def _move(self, dom: _Domain, kind: EventKind, now: float, *, reset_cpu: bool) -> None:
        old = dom.id
        new = self._ids.allocate(self._by_id, len(self._by_id) - 1)
        del self._by_id[old]
        self._vacated.add(old)
        dom.id = new
        self._by_id[new] = dom
        if reset_cpu:
            dom.cpu_ns = 0
            dom.vcpu_ns = (0,) * dom.max_vcpus
            dom.since = now
        self._restate(dom, now, state=DomainState.RUNNING)
        self._events.append(kind, new, dom.uuid, old_id=old)
