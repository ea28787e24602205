"""Domain statistics through libvirt's statistics API (issue 19), for the libvirt driver.

Three parts, each the driver's only copy:

* libvirt's keys (``getAllDomainStats``/``domainListGetStats`` records) read into
  xvirt's types (:func:`stats_from_record`). A group whose keys a record lacks is
  ``missing``: libvirt with NOWAIT skips what a domain's job would make it wait for (on
  QEMU, every figure read through the guest's monitor), and a hypervisor driver that
  does not fill a group at all (libvirt 9.0's test driver fills ``state`` only) leaves
  it out the same way. A figure libvirt leaves out inside a group it did fill is None.
* The NICs' MAC and bridge, which the statistics lack, from the domain XML
  (:func:`nic_sources`), by the host-side device name both carry.
* The groups a hypervisor driver's bulk call leaves out entirely (:data:`BULK_GROUPS`),
  read per domain with the calls that driver does answer (:func:`fill_from_calls`), into
  the same keys, so one reader serves both.
* :class:`Lanes`: the threads the statistics calls are made on, so that a call can be
  given a deadline. A call libvirt makes wait (a guest whose QEMU is stopped: libvirt
  takes the domain's job and waits on its monitor, for ever) is abandoned at the
  deadline with its thread, and with its connection where lanes have their own: a
  call queued on a connection behind one that waits for its reply waits too (see
  docs/architecture.md, "No guest can freeze the rest"), so a connection whose call
  was abandoned carries nothing else, and is closed once that call returns.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from xvirt.drivers.libvirt_xml import parse_domain
from xvirt.libvirt_api.constants import (
    VIR_DOMAIN_AFFECT_LIVE,
    VIR_DOMAIN_STATS_BALLOON,
    VIR_DOMAIN_STATS_BLOCK,
    VIR_DOMAIN_STATS_CPU_TOTAL,
    VIR_DOMAIN_STATS_INTERFACE,
    VIR_DOMAIN_STATS_STATE,
    VIR_DOMAIN_STATS_VCPU,
    VIR_DOMAIN_VCPU_MAXIMUM,
    VIR_ERR_NO_DOMAIN,
)
from xvirt.model import DomainState, VcpuState
from xvirt.stats import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainStats,
    NetStats,
    StatGroup,
    VcpuStats,
)

__all__ = [
    "BULK_GROUPS",
    "GROUP_BITS",
    "GUEST_GROUPS",
    "JOB_MARKS",
    "Devices",
    "Lane",
    "Lanes",
    "Nic",
    "Outcome",
    "connection_alive",
    "fill_from_calls",
    "net_names",
    "nic_sources",
    "read_devices",
    "stats_bits",
    "stats_from_record",
]

T = TypeVar("T")

#: Each group's libvirt bit (virDomainStatsTypes).
GROUP_BITS: Mapping[StatGroup, int] = {
    StatGroup.STATE: VIR_DOMAIN_STATS_STATE,
    StatGroup.CPU: VIR_DOMAIN_STATS_CPU_TOTAL,
    StatGroup.BALLOON: VIR_DOMAIN_STATS_BALLOON,
    StatGroup.VCPU: VIR_DOMAIN_STATS_VCPU,
    StatGroup.BLOCK: VIR_DOMAIN_STATS_BLOCK,
    StatGroup.NET: VIR_DOMAIN_STATS_INTERFACE,
}

#: Per hypervisor driver (the URI's scheme), keys libvirt adds to a group only when it
#: held the domain's job, where the group's other keys come without it. QEMU's balloon
#: group gives ``balloon.current``/``maximum`` from libvirt's own records either way,
#: and the guest's figures with ``balloon.rss`` (read from /proc right after the
#: monitor answered) only with the job: a record without ``balloon.rss`` is one NOWAIT
#: skipped, its balloon group not answered. (Measured on libvirt 9.0, KVM and TCG.)
JOB_MARKS: Mapping[str, Mapping[StatGroup, tuple[str, ...]]] = {
    "qemu": {StatGroup.BALLOON: ("balloon.rss",)},
}

#: Per hypervisor driver (the URI's scheme), the only groups its ``getAllDomainStats``
#: fills, where it answers the per-domain calls for the others: libvirt 9.0's test
#: driver fills ``state`` alone, and answers ``getCPUStats``, ``memoryStats``,
#: ``vcpus``, ``blockStats``, ``blockInfo`` and ``interfaceStats``. Drivers not named
#: fill every group they have (a group they lack stays ``missing``).
BULK_GROUPS: Mapping[str, frozenset[StatGroup]] = {
    "test": frozenset({StatGroup.STATE}),
}

#: Per hypervisor driver, the groups for which libvirt waits on each guest: QEMU's
#: monitor (balloon, vCPU and block figures: a round trip per guest, disk or none) or its
#: job (the CPU group: it measured as costly per guest, 0.6 ms at 20 TCG guests, with a
#: third of that libvirtd's CPU). A call asking any of them is split across the lanes so
#: those waits overlap, and its block group asked only of domains with a disk.
GUEST_GROUPS: Mapping[str, frozenset[StatGroup]] = {
    "qemu": frozenset({StatGroup.CPU, StatGroup.BALLOON, StatGroup.VCPU, StatGroup.BLOCK}),
}

#: A NIC's (MAC, bridge), by its host-side device name.
Nic = tuple[str | None, str | None]

_VCPU_STATES = {s.value: s for s in VcpuState}
_NET_COUNTERS = ("rx.bytes", "rx.pkts", "rx.errs", "rx.drop",
                 "tx.bytes", "tx.pkts", "tx.errs", "tx.drop")
_BALLOON_FIGURES = ("swap_in", "swap_out", "major_fault", "minor_fault", "unused",
                    "available", "usable", "disk_caches", "rss")


def stats_bits(groups: frozenset[StatGroup]) -> int:
    """libvirt's stats bits for ``groups``; the state group for none (libvirt's 0 would
    mean every group it has, the expensive ones included)."""
    bits = 0
    for group in groups:
        bits |= GROUP_BITS[group]
    return bits or VIR_DOMAIN_STATS_STATE


def _int(record: Mapping[str, Any], key: str) -> int | None:
    value = record.get(key)
    return None if value is None else int(value)


def _cpu(record: Mapping[str, Any], _nics: Mapping[str, Nic]) -> CpuStats | None:
    time_ns = _int(record, "cpu.time")
    if time_ns is None:
        return None
    return CpuStats(time_ns, _int(record, "cpu.user"), _int(record, "cpu.system"))


def _balloon(record: Mapping[str, Any], _nics: Mapping[str, Nic]) -> BalloonStats | None:
    current, maximum = _int(record, "balloon.current"), _int(record, "balloon.maximum")
    if current is None or maximum is None:
        return None
    (swap_in, swap_out, major, minor, unused, available, usable, caches,
     rss) = (_int(record, f"balloon.{key}") for key in _BALLOON_FIGURES)
    return BalloonStats(current, maximum, swap_in_kib=swap_in, swap_out_kib=swap_out,
                        major_faults=major, minor_faults=minor, unused_kib=unused,
                        available_kib=available, usable_kib=usable,
                        disk_caches_kib=caches, rss_kib=rss)


def _vcpus(record: Mapping[str, Any],
           _nics: Mapping[str, Nic]) -> tuple[VcpuStats, ...] | None:
    """Every online vCPU libvirt reports: its keys are numbered by vCPU number (which
    can have gaps once vCPUs are unplugged), so every number up to the maximum is
    asked."""
    current, maximum = _int(record, "vcpu.current"), _int(record, "vcpu.maximum")
    if current is None:
        return None
    found = []
    for n in range(max(current, maximum or 0)):
        code = _int(record, f"vcpu.{n}.state")
        if code is None:
            continue
        time_ns = _int(record, f"vcpu.{n}.time")
        state = _VCPU_STATES.get(code)
        if time_ns is None or state is None:
            return None  # not the keys of an answered group
        found.append(VcpuStats(n, state, time_ns))
    return tuple(found)


def _blocks(record: Mapping[str, Any],
            _nics: Mapping[str, Nic]) -> tuple[BlockStats, ...] | None:
    """Every disk with a backing: an empty drive (a CD-ROM without a medium) has a name
    and nothing else, so it is left out; a disk with a backing and no counters is one
    whose figures were not read (NOWAIT skipped the guest's monitor)."""
    count = _int(record, "block.count")
    if count is None:
        return None
    found = []
    for n in range(count):
        p = f"block.{n}."
        name = record.get(p + "name")
        path = record.get(p + "path")
        rd_reqs, rd_bytes = _int(record, p + "rd.reqs"), _int(record, p + "rd.bytes")
        wr_reqs, wr_bytes = _int(record, p + "wr.reqs"), _int(record, p + "wr.bytes")
        if rd_reqs is None and rd_bytes is None and wr_reqs is None and wr_bytes is None \
                and path is None and name is not None:
            continue  # no medium: nothing to read or write
        if name is None or rd_reqs is None or rd_bytes is None or wr_reqs is None \
                or wr_bytes is None:
            return None
        found.append(BlockStats(
            str(name), None if path is None else str(path), rd_reqs, rd_bytes,
            _int(record, p + "rd.times"), wr_reqs, wr_bytes, _int(record, p + "wr.times"),
            fl_reqs=_int(record, p + "fl.reqs"), fl_time_ns=_int(record, p + "fl.times"),
            errors=_int(record, p + "errors"), capacity_bytes=_int(record, p + "capacity"),
            allocation_bytes=_int(record, p + "allocation"),
            physical_bytes=_int(record, p + "physical")))
    return tuple(found)


def net_names(record: Mapping[str, Any]) -> list[str]:
    """The host-side device names of the NICs a record reports figures for."""
    names = []
    for n in range(_int(record, "net.count") or 0):
        name = record.get(f"net.{n}.name")
        if name is not None:
            names.append(str(name))
    return names


def _nets(record: Mapping[str, Any],
          nics: Mapping[str, Nic]) -> tuple[NetStats, ...] | None:
    """Every NIC with a host-side device: libvirt counts the others (user-mode
    networking has none) in ``net.count`` and reports nothing else for them."""
    count = _int(record, "net.count")
    if count is None:
        return None
    found = []
    for n in range(count):
        name = record.get(f"net.{n}.name")
        if name is None:
            continue
        figures = []
        for key in _NET_COUNTERS:
            figure = _int(record, f"net.{n}.{key}")
            if figure is None:
                return None
            figures.append(figure)
        mac, bridge = nics.get(str(name), (None, None))
        found.append(NetStats(str(name), mac, bridge, *figures))
    return tuple(found)


_READERS: tuple[tuple[StatGroup, Callable[[Mapping[str, Any], Mapping[str, Nic]], Any]], ...] = (
    (StatGroup.CPU, _cpu), (StatGroup.BALLOON, _balloon), (StatGroup.VCPU, _vcpus),
    (StatGroup.BLOCK, _blocks), (StatGroup.NET, _nets))


def stats_from_record(uuid: str, name: str, domid: int, record: Mapping[str, Any],
                      groups: frozenset[StatGroup], *,
                      state_of: Callable[[int], DomainState | None],
                      nics: Mapping[str, Nic] | None = None,
                      marks: Mapping[StatGroup, tuple[str, ...]] | None = None,
                      ) -> DomainStats | None:
    """The ``groups`` of one libvirt record; None when its state says shut off (not
    live). ``nics``: MAC and bridge by device name; ``marks``: the hypervisor's
    :data:`JOB_MARKS`."""
    missing = set()
    state = None
    if StatGroup.STATE in groups:
        code = _int(record, "state.state")
        if code is None:
            missing.add(StatGroup.STATE)
        else:
            state = state_of(code)
            if state is None:
                return None
    found: dict[StatGroup, Any] = {}
    for group, read in _READERS:
        if group not in groups:
            continue
        value = None
        if marks is None or all(key in record for key in marks.get(group, ())):
            value = read(record, nics or {})
        if value is None:
            missing.add(group)
        found[group] = value
    return DomainStats(uuid, name, domid, state, cpu=found.get(StatGroup.CPU),
                       balloon=found.get(StatGroup.BALLOON), vcpus=found.get(StatGroup.VCPU),
                       blocks=found.get(StatGroup.BLOCK), nets=found.get(StatGroup.NET),
                       missing=frozenset(missing))


@dataclass(frozen=True, slots=True)
class Devices:
    """What a domain's XML says of its devices, for its statistics."""

    disks: int  # <disk> elements with a target
    nics: dict[str, Nic]  # by host-side device (:func:`nic_sources`)


def read_devices(xml: str, *, uri: str) -> Devices:
    """The disks and NICs of a running domain's XML."""
    root = parse_domain(xml, uri)
    return Devices(len(_disks_of(root)), _nics_of(root))


def nic_sources(xml: str, *, uri: str) -> dict[str, Nic]:
    """``{host-side device: (MAC, bridge)}`` of a running domain's XML: ``<target
    dev>``, ``<mac address>`` and ``<source bridge>`` (a ``network`` interface's live
    XML names its bridge there too). A NIC without a host-side device (user-mode
    networking) has no statistics to match, and is left out."""
    return _nics_of(parse_domain(xml, uri))


def _nics_of(root: ET.Element) -> dict[str, Nic]:
    found: dict[str, Nic] = {}
    for nic in root.iterfind("devices/interface"):
        target = nic.find("target")
        dev = None if target is None else target.get("dev")
        if not dev:
            continue
        mac = nic.find("mac")
        source = nic.find("source")
        found[dev] = ((None if mac is None else mac.get("address")) or None,
                      (None if source is None else source.get("bridge")) or None)
    return found


# -- the groups a bulk call leaves out, per domain ----------------------------------------


def _devices(xml: str, *, uri: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``([(disk target, source)], [NIC host-side device])`` of a domain's XML, in
    document order (libvirt's order in the statistics records)."""
    root = parse_domain(xml, uri)
    return _disks_of(root), list(_nics_of(root))


def _disks_of(root: ET.Element) -> list[tuple[str, str | None]]:
    disks = []
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        dev = None if target is None else target.get("dev")
        if not dev:
            continue
        source = disk.find("source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("name")
        disks.append((dev, path or None))
    return disks


def _counter(value: Any) -> int | None:
    """A counter from a per-domain call: libvirt's -1 means "not reported"."""
    figure = int(value)
    return None if figure < 0 else figure


def fill_from_calls(dom: Any, record: Mapping[str, Any], groups: frozenset[StatGroup], *,
                    count: Callable[[], object], error: type[Exception],
                    uri: str) -> dict[str, Any]:
    """``record`` with the keys of each group in ``groups`` it lacks (apart from
    ``state``), read by the per-domain calls into libvirt's own statistics keys.
    ``count`` is called before each call (a data-plane call). A domain gone meanwhile
    (NO_DOMAIN) keeps the record it had: its groups stay missing, as NOWAIT leaves
    them; any other libvirt ``error`` is raised."""
    filled = dict(record)

    def ask(method: Callable[..., Any], *args: Any) -> Any:
        count()
        return method(*args)

    try:
        if StatGroup.CPU in groups and "cpu.time" not in record:
            (total,) = ask(dom.getCPUStats, True)
            for key, name in (("cpu_time", "cpu.time"), ("user_time", "cpu.user"),
                              ("system_time", "cpu.system")):
                if key in total:
                    filled[name] = int(total[key])
        if StatGroup.BALLOON in groups and "balloon.current" not in record:
            info = ask(dom.info)
            memory = ask(dom.memoryStats)
            filled["balloon.current"] = int(memory.get("actual", info[2]))
            filled["balloon.maximum"] = int(info[1])
            for key in _BALLOON_FIGURES:
                if key in memory:
                    filled[f"balloon.{key}"] = int(memory[key])
        if StatGroup.VCPU in groups and "vcpu.current" not in record:
            vcpus, _ = ask(dom.vcpus)
            filled["vcpu.current"] = len(vcpus)
            filled["vcpu.maximum"] = int(ask(dom.vcpusFlags, VIR_DOMAIN_AFFECT_LIVE
                                             | VIR_DOMAIN_VCPU_MAXIMUM))
            for number, state, time_ns, _cpu in vcpus:
                filled[f"vcpu.{number}.state"] = int(state)
                filled[f"vcpu.{number}.time"] = int(time_ns)
        wants_block = StatGroup.BLOCK in groups and "block.count" not in record
        wants_net = StatGroup.NET in groups and "net.count" not in record
        if wants_block or wants_net:
            disks, nics = _devices(ask(dom.XMLDesc, 0), uri=uri)
            if wants_block:
                filled["block.count"] = len(disks)
                for n, (dev, path) in enumerate(disks):
                    p = f"block.{n}."
                    filled[p + "name"] = dev
                    if path is not None:
                        filled[p + "path"] = path
                    rd_reqs, rd_bytes, wr_reqs, wr_bytes, errors = ask(dom.blockStats, dev)
                    capacity, allocation, physical = ask(dom.blockInfo, dev, 0)
                    for key, value in (("rd.reqs", rd_reqs), ("rd.bytes", rd_bytes),
                                       ("wr.reqs", wr_reqs), ("wr.bytes", wr_bytes),
                                       ("errors", errors), ("capacity", capacity),
                                       ("allocation", allocation), ("physical", physical)):
                        figure = _counter(value)
                        if figure is not None:
                            filled[p + key] = figure
            if wants_net:
                filled["net.count"] = len(nics)
                for n, dev in enumerate(nics):
                    filled[f"net.{n}.name"] = dev
                    figures = ask(dom.interfaceStats, dev)
                    for key, value in zip(_NET_COUNTERS, figures, strict=True):
                        filled[f"net.{n}.{key}"] = int(value)
    except error as exc:
        if exc.get_error_code() == VIR_ERR_NO_DOMAIN:  # type: ignore[attr-defined]
            return dict(record)
        raise
    return filled


# -- lanes: calls with a deadline ---------------------------------------------------------


def connection_alive(conn: Any, binding: Any) -> bool:
    """libvirt's own view of a connection (no call to the daemon)."""
    try:
        return bool(conn.isAlive())
    except binding.libvirtError:
        return False


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """A job's return value, or what it raised."""

    value: T | None = None
    error: BaseException | None = None


class _Batch(Generic[T]):
    """Jobs the lanes take one at a time, each lane the next one left (so a lane held
    up by one job holds up no other): done when every job answered, or over when its
    caller stopped waiting."""

    def __init__(self, jobs: Sequence[Callable[[Lane], T]]) -> None:
        self._jobs = list(jobs)
        self._next = 0
        self._left = len(self._jobs)
        self._outcomes: list[Outcome[T] | None] = [None] * len(self._jobs)
        self._lock = threading.Lock()
        self._over = False
        self.done = threading.Event()
        if not self._jobs:
            self.done.set()

    def work(self, lane: Lane) -> None:
        while True:
            with self._lock:
                if self._over or self._next >= len(self._jobs):
                    return
                i, self._next = self._next, self._next + 1
                lane.busy = True
            try:
                outcome: Outcome[T] = Outcome(value=self._jobs[i](lane))
            except Exception as exc:  # handed to the caller, who knows what it means
                outcome = Outcome(error=exc)
            with self._lock:
                lane.busy = False
                if self._over:
                    return  # too late: the caller has its answer
                self._outcomes[i] = outcome
                self._left -= 1
                if self._left == 0:
                    self.done.set()

    def finish(self, lanes: Sequence[Lane]) -> list[Outcome[T] | None]:
        """Stop: the outcomes so far (None: no answer); a lane still in a job is
        abandoned (it finishes that job, then leaves)."""
        with self._lock:
            self._over = True
            for lane in lanes:
                if lane.busy:
                    lane.abandoned = True
            return list(self._outcomes)


class Lane:
    """One thread, and, where the lanes have connections of their own, one connection
    (opened by the lane's first job that needs it) and a handle per domain it was asked
    about: a domain handle belongs to the connection that made it."""

    def __init__(self, pool: Lanes, name: str) -> None:
        self.conn: Any = None
        self.handles: dict[str, Any] = {}
        self.busy = False
        self.abandoned = False
        self._pool = pool
        self._work: queue.SimpleQueue[_Batch[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def connection(self) -> Any:
        """The lane's own connection, opened now if it has none."""
        if self.conn is None:
            self.conn = self._pool.open_conn()
            self.handles = {}
        return self.conn

    def drop(self) -> None:
        """Forget the connection (closed) and its handles: the next job opens another."""
        conn, self.conn, self.handles = self.conn, None, {}
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def submit(self, batch: _Batch[Any] | None) -> None:
        self._work.put(batch)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                batch = self._work.get(timeout=self._pool.poll_s)
            except queue.Empty:
                if self._pool.retire(self, time.monotonic() - idle_since):
                    break
                continue  # still wanted, or handed work as it timed out (it is queued)
            if batch is None:
                break
            batch.work(self)
            if not self._pool.release(self):
                break
            idle_since = time.monotonic()
        self.drop()


class Lanes:
    """Threads for calls that need a deadline, kept for the next call: at most
    ``keep`` idle, each leaving after ``idle_s`` without work, or within ``poll_s`` of
    ``closed()`` saying its owner is closed (or at once on :meth:`close`). ``open_conn``:
    each lane has a connection of its own (through a daemon, where calls on one
    connection wait for each other); None: the jobs use the driver's own (an in-process
    driver, whose calls never wait for each other)."""

    def __init__(self, open_conn: Callable[[], Any] | None, name: str, *, keep: int = 2,
                 idle_s: float = 60.0, poll_s: float = 1.0,
                 closed: Callable[[], bool] | None = None) -> None:
        self._open = open_conn
        self._name = name
        self.keep = keep
        self.idle_s = idle_s
        self.poll_s = min(poll_s, idle_s)
        self._owner_closed = closed or (lambda: False)
        self._lock = threading.Lock()
        self._idle: list[Lane] = []
        self._serial = itertools.count()
        self._closed = False
        self.abandoned = 0  # lanes left behind in a call that did not answer in time

    @property
    def own_connections(self) -> bool:
        return self._open is not None

    def open_conn(self) -> Any:
        assert self._open is not None, "these lanes use the driver's connection"
        return self._open()

    def run(self, jobs: Sequence[Callable[[Lane], T]], deadline_s: float,
            width: int = 1) -> list[Outcome[T] | None]:
        """Run ``jobs`` on up to ``width`` lanes; each job's outcome, None for those
        that did not answer within ``deadline_s`` (from now) or never started."""
        if not jobs:
            return []
        batch: _Batch[T] = _Batch(jobs)
        wanted = max(1, min(width, len(jobs)))
        with self._lock:
            lanes = [self._idle.pop() for _ in range(min(wanted, len(self._idle)))]
        while len(lanes) < wanted:
            try:
                lanes.append(Lane(self, f"{self._name} {next(self._serial)}"))
            except RuntimeError:  # no new thread at interpreter exit: fewer lanes
                break
        for lane in lanes:
            lane.submit(batch)
        batch.done.wait(deadline_s)
        outcomes = batch.finish(lanes)
        with self._lock:
            self.abandoned += sum(lane.abandoned for lane in lanes)
        return outcomes

    def release(self, lane: Lane) -> bool:
        """A lane done with a batch: kept idle (True), or told to leave."""
        closed = self._owner_closed()
        with self._lock:
            if lane.abandoned or self._closed or closed or len(self._idle) >= self.keep:
                return False
            self._idle.append(lane)
            return True

    def retire(self, lane: Lane, idle_for: float) -> bool:
        """A lane idle for ``idle_for`` seconds: leaves (True) after ``idle_s`` or once
        the owner is closed, unless it was just handed work."""
        closed = self._owner_closed()
        with self._lock:
            if lane in self._idle and (closed or idle_for >= self.idle_s):
                self._idle.remove(lane)
                return True
            return False  # still wanted, or handed a batch (or None) meanwhile: queued

    def close(self) -> None:
        """The idle lanes leave now (closing their connections); a busy one when its
        call returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for lane in idle:
            lane.submit(None)
