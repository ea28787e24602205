"""The exporter's collector: every scrape is one survey of the host, made into fresh
metric families, so nothing a scrape serves can be older than that scrape.

Three parts, each with one job:

- :class:`HostReader` owns the exporter's one read-only connection: it opens it
  lazily, asks the control plane for the host's facts once per connection, and
  drops the connection on any error so the next read opens a new one.
- :class:`SurveyRunner` runs each read on a worker thread, at most one in
  flight, and waits for it no longer than the scrape's deadline: a hung host
  costs a scrape its deadline, never more, and never piles up threads.
- :class:`XvirtCollector` is the prometheus_client custom collector: one fresh
  reading per scrape, turned into families by :func:`build_families`, or
  ``xvirt_up 0`` and nothing about domains when no fresh reading came in time.

A scrape asks the host for the statistics groups it collects (``--collect``) in the
same survey, ``Connection.survey(groups)``: one data-plane call for the info and one
for the statistics of every domain, whatever their number. Per-domain series carry
``uuid`` and ``name``; device series also ``target_device`` and ``source_file`` (disks)
or ``source_bridge`` (NICs), as the peers' exporters label them (:data:`PEERS`).

Only the public API (``import xvirt``) is used.
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, fields
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, is_not, mul
from typing import TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

import xvirt
from xvirt.clock import Clock, SystemClock
from xvirt.hotpath import GcPause
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF

__all__ = [
    "ALL_COLLECTORS",
    "DEBIAN_FAMILIES",
    "DEBIAN_RUNTIME_PREFIX",
    "DEFINED",
    "INOVEX_FAMILIES",
    "STATE_CODES",
    "UNKNOWN_STATE",
    "HostReader",
    "PeerFamily",
    "Reading",
    "ScrapeTimeout",
    "SurveyRunner",
    "Waiter",
    "XvirtCollector",
    "build_families",
    "describe_families",
    "gc_paused",
    "parse_collect",
]

#: libvirt's virDomainState codes, as xvirt's libvirt face reports Xen's states.
STATE_CODES: dict[xvirt.DomainState, int] = LIBVIRT_STATE_OF

#: libvirt's name of each virDomainState code a domain of xvirt's can have, and the
#: xvirt states it stands for (Xen's ``dying`` is libvirt's shutdown, "being shut down";
#: Xen's ``shutdown``, a domain that has shut down, is libvirt's shutoff).
_LIBVIRT_STATE_NAMES = {1: "running", 2: "blocked", 3: "paused", 4: "shutdown",
                        5: "shutoff", 6: "crashed"}
_STATE_HELP = ", ".join(
    f"{code} {word} ("
    + "/".join(s.value for s, c in STATE_CODES.items() if c == code) + ")"
    for code, word in sorted(_LIBVIRT_STATE_NAMES.items()))
_VCPU_HELP = ", ".join(f"{s.value} {s.name.lower()}" for s in xvirt.stats.VcpuState)

#: The state label of a live domain whose figures could not be read.
UNKNOWN_STATE = "unknown"

#: What ``--collect`` may name besides the statistics groups: the count of domains
#: defined and not running (libvirt's inactive domains), one control-plane request
#: per scrape.
DEFINED = "defined"
#: Everything the exporter can collect, in ``--collect``'s words (its default).
ALL_COLLECTORS: tuple[str, ...] = (*(g.value for g in xvirt.StatGroup), DEFINED)

_KIB = 1024
_NS = 1e9


def parse_collect(text: str) -> frozenset[str]:
    """``--collect``'s comma-separated names (``all`` for every one) as a set; an
    unknown name is a ValueError naming the known ones."""
    chosen: set[str] = set()
    for word in (w.strip().lower() for w in text.split(",")):
        if word == "all":
            chosen.update(ALL_COLLECTORS)
        elif word in ALL_COLLECTORS:
            chosen.add(word)
        elif word:
            raise ValueError(f"--collect: unknown collector {word!r}; known: all, "
                             f"{', '.join(ALL_COLLECTORS)}")
    if not chosen:
        raise ValueError(f"--collect names nothing; known: all, {', '.join(ALL_COLLECTORS)}")
    return frozenset(chosen)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one successful read saw: one survey (with the statistics ``groups`` it
    asked for), the host's facts (read once per connection), the exporter's counters
    over all its connections so far, and the count of domains defined and not running
    (None when not collected)."""

    survey: xvirt.Survey
    host: xvirt.HostInfo
    stats: xvirt.ConnStats
    groups: frozenset[xvirt.StatGroup] = frozenset()
    defined: int | None = None


def _open_readonly(uri: str | None) -> xvirt.Connection:
    return xvirt.open(uri, readonly=True)


_COUNTED = tuple(f.name for f in fields(xvirt.ConnStats) if f.name != "cache_size")


class HostReader:
    """The exporter's one connection. Not thread-safe: only the survey worker uses it.

    ``collect`` names what is read beside the survey's info (``ALL_COLLECTORS`` by
    default): the statistics groups come with the survey (one more data-plane call,
    none when no group is named; ``state`` costs nothing, the info has it), ``defined``
    is one control-plane request. A host that reports no statistics (UnsupportedError)
    is read without them, for as long as the connection lasts, and ``log`` hears of it
    once. ``stats_timeout_s``: how long the statistics may wait for guests that do not
    answer (the exporter gives a share of its scrape timeout)."""

    def __init__(self, uri: str | None,
                 opener: Callable[[str | None], xvirt.Connection] = _open_readonly, *,
                 collect: Iterable[str] = ALL_COLLECTORS,
                 log: Callable[[str], None] | None = None,
                 stats_timeout_s: float | None = None) -> None:
        self._uri = uri
        self._stats_timeout_s = stats_timeout_s
        self._opener = opener
        self._conn: xvirt.Connection | None = None
        self._host: xvirt.HostInfo | None = None
        chosen = frozenset(collect)
        #: The statistics groups asked of the host (``state``: the survey's info has it).
        self.groups = frozenset(g for g in xvirt.StatGroup if g.value in chosen) - {
            xvirt.StatGroup.STATE}
        self._served_groups = frozenset(g for g in xvirt.StatGroup if g.value in chosen)
        self.count_defined = DEFINED in chosen
        self._log = log or (lambda message: None)
        self._stats_refused = False  # this connection's host reports no statistics
        self._defined_refused = False
        # Counts of the connections already dropped, so the exporter's counters
        # never go back when it reconnects.
        self._retired = dict.fromkeys(_COUNTED, 0)

    def read(self) -> Reading:
        """One survey; any error drops the connection (the next read reopens it)."""
        try:
            if self._conn is None:
                self._conn = self._opener(self._uri)
            conn = self._conn
            if self._host is None:
                self._host = conn.host_info()  # a control-plane request: once per connection
            survey, groups = self._survey(conn)
            defined = self._defined(conn)
            return Reading(survey, self._host, self._totals(conn.stats()), groups, defined)
        except BaseException:
            self.close()
            raise

    def _survey(self, conn: xvirt.Connection) -> tuple[xvirt.Survey, frozenset[xvirt.StatGroup]]:
        if not self.groups or self._stats_refused:
            return conn.survey(), (frozenset() if self._stats_refused else
                                   self._served_groups)
        try:
            return (conn.survey(self.groups, timeout=self._stats_timeout_s),
                    self._served_groups)
        except xvirt.UnsupportedError as exc:
            self._stats_refused = True
            self._log(f"the host reports no statistics, serving its domains without them: "
                      f"{' '.join(str(exc).split())}")
            return conn.survey(), frozenset()

    def _defined(self, conn: xvirt.Connection) -> int | None:
        if not self.count_defined or self._defined_refused:
            return None
        try:
            return len(conn.list_defined())
        except xvirt.UnsupportedError as exc:
            self._defined_refused = True
            self._log(f"the host cannot list its defined domains: {exc}")
            return None

    def _totals(self, stats: xvirt.ConnStats) -> xvirt.ConnStats:
        counted = {name: self._retired[name] + getattr(stats, name) for name in _COUNTED}
        return xvirt.ConnStats(cache_size=stats.cache_size, **counted)

    def close(self) -> None:
        """Drop the connection, keeping its counts."""
        conn, self._conn, self._host = self._conn, None, None
        self._stats_refused = self._defined_refused = False  # the next host may report them
        if conn is None:
            return
        stats = conn.stats()
        for name in _COUNTED:
            self._retired[name] += getattr(stats, name)
        with contextlib.suppress(Exception):  # dropped because it failed: so may closing
            conn.close()


#: Held by every scrape (see xvirt.hotpath.GcPause): the collector's reading and
#: families, the text format's lines.
gc_paused = GcPause()


class ScrapeTimeout(Exception):
    """No fresh reading came before the scrape's deadline."""


#: Waits up to ``timeout`` seconds for a future; True when it is done.
Waiter = Callable[["Future[Reading]", float], bool]


def _wait_done(future: Future[Reading], timeout: float) -> bool:
    wait_futures([future], timeout=max(0.0, timeout))
    return future.done()


class SurveyRunner:
    """Reads on a worker thread, one in flight, each waited for up to a deadline.

    A reading is used only by the scrape that started it, so a scrape never serves
    figures from before it began. When an earlier read is still running (its
    scrape gave up on it), a scrape first waits for it, within its own deadline,
    then starts its own. Workers are daemon threads, so a read stuck on a dead
    host never delays the exporter's exit.
    """

    def __init__(self, read: Callable[[], Reading], *, clock: Clock | None = None,
                 waiter: Waiter = _wait_done) -> None:
        self._read = read
        self._clock = clock or SystemClock()
        self._wait = waiter
        self._in_flight: Future[Reading] | None = None
        self._lock = threading.Lock()  # one scrape waits at a time

    def fresh(self, timeout_s: float) -> Reading:
        """A reading started by this call, or ScrapeTimeout once ``timeout_s`` passed.

        The read's own errors (an xvirt.XvirtError...) are raised as they are."""
        deadline = self._clock.now() + timeout_s
        if not self._lock.acquire(timeout=max(0.0, timeout_s)):
            raise ScrapeTimeout("another scrape is still waiting for the host")
        try:
            earlier = self._in_flight
            if earlier is not None and not self._wait(earlier, deadline - self._clock.now()):
                raise ScrapeTimeout("the previous survey has not finished yet")
            mine = self._start()
            self._in_flight = mine
            if not self._wait(mine, deadline - self._clock.now()):
                raise ScrapeTimeout(f"no answer from the host within {timeout_s:g} s")
            # done, and handed to its scrape: the reading (60,000 objects at 5000
            # domains) then lives no longer than the scrape, so the garbage collector,
            # held off meanwhile, never has it to go through
            self._in_flight = None
            return mine.result()
        finally:
            self._lock.release()

    def close(self, closer: Callable[[], None], timeout_s: float = 1.0) -> bool:
        """Run ``closer`` (e.g. drop the connection) once no read is in flight, waiting
        up to ``timeout_s``; False (and ``closer`` not run) when one still is."""
        if not self._lock.acquire(timeout=timeout_s):
            return False
        try:
            if self._in_flight is not None and not self._wait(self._in_flight, timeout_s):
                return False
            closer()
            return True
        finally:
            self._lock.release()

    def _start(self) -> Future[Reading]:
        future: Future[Reading] = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._read())
            except BaseException as exc:  # handed to the scrape waiting for it
                future.set_exception(exc)

        threading.Thread(target=run, name="xvirt-survey", daemon=True).start()
        return future


# -- families -------------------------------------------------------------------------------

_DOM = ("uuid", "name")
_DISK = (*_DOM, "target_device", "source_file")
_NIC = (*_DOM, "target_device", "source_bridge")
_VCPU = (*_DOM, "vcpu")


def _g(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)


def _c(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels), unit=unit)


#: The balloon figures: (family, its help, the BalloonStats field, counter?, KiB?).
_BALLOON: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("xvirt_domain_balloon_current_bytes", "Memory the balloon gives the guest now.",
     "current_kib", False, True),
    ("xvirt_domain_balloon_maximum_bytes", "Memory the balloon may give the guest.",
     "maximum_kib", False, True),
    ("xvirt_domain_balloon_swap_in_bytes", "Memory the guest read back from swap.",
     "swap_in_kib", True, True),
    ("xvirt_domain_balloon_swap_out_bytes", "Memory the guest wrote out to swap.",
     "swap_out_kib", True, True),
    ("xvirt_domain_balloon_major_faults", "Page faults the guest served from disk.",
     "major_faults", True, False),
    ("xvirt_domain_balloon_minor_faults", "Page faults the guest served without disk.",
     "minor_faults", True, False),
    ("xvirt_domain_balloon_unused_bytes", "Memory the guest leaves unused (its MemFree).",
     "unused_kib", False, True),
    ("xvirt_domain_balloon_available_bytes", "Memory the guest sees (its MemTotal).",
     "available_kib", False, True),
    ("xvirt_domain_balloon_usable_bytes", "Memory the guest could use without swapping "
     "(its MemAvailable).", "usable_kib", False, True),
    ("xvirt_domain_balloon_disk_caches_bytes", "Memory the guest uses as disk cache that it "
     "can give back.", "disk_caches_kib", False, True),
    ("xvirt_domain_balloon_rss_bytes", "Host memory the domain holds (resident set).",
     "rss_kib", False, True),
)

#: The block figures: (family, its help, the BlockStats field, counter?, ns?).
_BLOCK: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("xvirt_domain_block_read_bytes", "Bytes read from the disk.", "rd_bytes", True, False),
    ("xvirt_domain_block_read_requests", "Read requests of the disk.", "rd_reqs", True, False),
    ("xvirt_domain_block_read_seconds", "Time spent reading the disk.", "rd_time_ns", True,
     True),
    ("xvirt_domain_block_write_bytes", "Bytes written to the disk.", "wr_bytes", True, False),
    ("xvirt_domain_block_write_requests", "Write requests of the disk.", "wr_reqs", True,
     False),
    ("xvirt_domain_block_write_seconds", "Time spent writing the disk.", "wr_time_ns", True,
     True),
    ("xvirt_domain_block_flush_requests", "Flush requests of the disk.", "fl_reqs", True,
     False),
    ("xvirt_domain_block_flush_seconds", "Time spent flushing the disk.", "fl_time_ns", True,
     True),
    ("xvirt_domain_block_errors", "I/O errors of the disk.", "errors", True, False),
    ("xvirt_domain_block_capacity_bytes", "Size of the disk as the guest sees it.",
     "capacity_bytes", False, False),
    ("xvirt_domain_block_allocation_bytes", "Bytes of the disk's image written so far.",
     "allocation_bytes", False, False),
    ("xvirt_domain_block_physical_bytes", "Bytes the disk's image takes on the host.",
     "physical_bytes", False, False),
)

#: The NIC figures: (family, its help, the NetStats field, counter?, ns?); all counters.
_NET: tuple[tuple[str, str, str, bool, bool], ...] = tuple(
    (f"xvirt_domain_interface_{way}_{what}", f"{noun} {verb} on the interface.",
     f"{short}_{field}", True, False)
    for way, verb, short in (("receive", "received by the guest", "rx"),
                             ("transmit", "sent by the guest", "tx"))
    for what, noun, field in (("bytes", "Bytes", "bytes"), ("packets", "Packets", "packets"),
                              ("errors", "Errors of packets", "errs"),
                              ("drops", "Packets dropped", "drop")))


class _Families:
    """Every family one scrape may serve, empty: one object per metric name. Those of a
    statistics group exist only when that group is collected (``groups``)."""

    def __init__(self, groups: frozenset[xvirt.StatGroup] = frozenset(),
                 defined: bool = False) -> None:
        dom = _DOM
        self.up = _g("xvirt_up", "1 if this scrape read the host, 0 if it could not (then "
                     "nothing else about the host or its domains is served).")
        self.duration = _g("xvirt_scrape_duration_seconds",
                           "How long this scrape took to read the host.", unit="seconds")
        self.build = InfoMetricFamily(
            "xvirt_exporter_build", "The exporter's version and the Python it runs on.",
            labels=["version", "python_version"])
        self.domain_info = InfoMetricFamily(
            "xvirt_domain", "One series per live domain, to join names and IDs on uuid; "
            f"state is the domain's state, or {UNKNOWN_STATE} when its figures could not be "
            "read.", labels=["uuid", "name", "id", "state"])
        self.scrape_error = _g(
            "xvirt_domain_scrape_error", "1 if some of this live domain's figures could not "
            "be read in this scrape (the others, and the other domains, are served), else 0.",
            dom)
        self.state = _g("xvirt_domain_state", f"Domain state, as libvirt's virDomainState "
                        f"codes: {_STATE_HELP}.", dom)
        self.cpu = _c("xvirt_domain_cpu_seconds", "CPU time the domain has used (reset by a "
                      "reboot).", dom, "seconds")
        self.memory = _g("xvirt_domain_memory_bytes", "Memory the domain has.", dom, "bytes")
        self.memory_max = _g("xvirt_domain_memory_max_bytes", "Memory the domain may grow "
                             "to.", dom, "bytes")
        self.vcpus = _g("xvirt_domain_vcpus", "Virtual CPUs of the domain.", dom)
        self.cpu_user: CounterMetricFamily | None = None
        self.cpu_system: CounterMetricFamily | None = None
        if xvirt.StatGroup.CPU in groups:
            self.cpu_user = _c("xvirt_domain_cpu_user_seconds", "CPU time the domain has "
                               "used in its user mode.", dom, "seconds")
            self.cpu_system = _c("xvirt_domain_cpu_system_seconds", "CPU time the domain has "
                                 "used in its kernel.", dom, "seconds")
        self.balloon = [(_c if counter else _g)(name, doc, dom) for name, doc, _, counter, _
                        in _BALLOON] if xvirt.StatGroup.BALLOON in groups else []
        self.vcpu_state: GaugeMetricFamily | None = None
        self.vcpu_time: CounterMetricFamily | None = None
        if xvirt.StatGroup.VCPU in groups:
            self.vcpu_state = _g("xvirt_domain_vcpu_state", f"State of one vCPU: "
                                 f"{_VCPU_HELP} (libvirt's virVcpuState codes).", _VCPU)
            self.vcpu_time = _c("xvirt_domain_vcpu_seconds", "CPU time one vCPU has used.",
                                _VCPU, "seconds")
        self.block = [(_c if counter else _g)(name, doc, _DISK) for name, doc, _, counter, _
                      in _BLOCK] if xvirt.StatGroup.BLOCK in groups else []
        self.net = [_c(name, doc, _NIC) for name, doc, *_ in _NET] \
            if xvirt.StatGroup.NET in groups else []
        self.domains = _g("xvirt_domains", "Domains by state: the live domains whose figures "
                          "were read (every live state present), and, when collected, the "
                          "domains defined and not running as shutoff.", ["state"])
        self.host_info = InfoMetricFamily(
            "xvirt_host", "The host's identity, read once per connection.",
            labels=["hostname", "hypervisor", "version", "arch"])
        self.host_cpus = _g("xvirt_host_cpus", "Physical CPUs of the host.")
        self.host_memory = _g("xvirt_host_memory_bytes", "Physical memory of the host.",
                              unit="bytes")
        self.control = _c("xvirt_control_plane_requests", "Control-plane (management daemon) "
                          "requests this exporter has sent.")
        self.data = _c("xvirt_data_plane_calls", "Data-plane (hypercall) calls this exporter "
                       "has made.")
        self.events = _c("xvirt_event_requests", "Event requests this exporter has made.")
        self.hits = _c("xvirt_cache_hits", "Identities the cache answered from what it held.")
        self.misses = _c("xvirt_cache_misses", "Lookups the cache had to catch up with the "
                         "host for.")
        self.evictions = _c("xvirt_cache_evictions", "Identities evicted from the cache "
                            "(domains gone).")
        self.entries = _g("xvirt_cache_entries", "Domain identities the cache holds.")

    def all(self) -> list[Metric]:
        out: list[Metric] = []
        for value in vars(self).values():
            if isinstance(value, Metric):
                out.append(value)
            elif isinstance(value, list):
                out.extend(value)
        return out


def describe_families(groups: frozenset[xvirt.StatGroup] = xvirt.stats.ALL_GROUPS
                      ) -> list[Metric]:
    """The families, empty: what the registry checks names against (every group by
    default)."""
    return _Families(groups, defined=True).all()


#: A sample from its fields as one tuple, without namedtuple's Python-level ``__new__``:
#: ``map`` makes a family's samples at C speed (a 5000-domain scrape has 150,000).
_new_sample: Callable[[tuple[object, ...]], Sample] = partial(tuple.__new__, Sample)
#: The fields of a sample after name, labels and value (timestamp, exemplar...): None.
_UNSET = tuple(repeat(None, len(Sample._fields) - 3))


def _series(family: GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily | None,
            labels: Sequence[dict[str, str]], values: Iterable[float | None],
            scale: float | None = 1.0) -> None:
    """One sample per label set and value, skipping the figures the host does not
    report (None: never a made-up 0); each value times ``scale`` (None: as it is).

    What ``add_metric`` does for each, a family at a time: the label sets are the
    callers' (those of one domain or device shared by its series, never changed, so
    the text format writes each once) and the samples are made by ``map``."""
    if family is None:
        return
    name = {"counter": family.name + "_total", "info": family.name + "_info"}.get(
        family.type, family.name)
    figures = list(values)
    kept: Iterable[dict[str, str]] = labels
    if None in figures:
        present = list(map(is_not, figures, repeat(None)))
        kept, figures = compress(labels, present), list(compress(figures, present))
    scaled = figures if scale is None else map(mul, figures, repeat(scale))
    family.samples.extend(map(_new_sample, zip(repeat(name), kept, scaled,
                                               *map(repeat, _UNSET))))


def _figures(family: GaugeMetricFamily | CounterMetricFamily | None,
             labels: Sequence[dict[str, str]], of: Sequence[object], attr: str,
             scale: float = 1.0) -> None:
    """The figure ``attr`` of each of ``of`` (a domain's or a device's statistics)."""
    _series(family, labels, map(attrgetter(attr), of), scale)


def _add_stats(f: _Families, labels: Sequence[dict[str, str]],
               found: Sequence[xvirt.DomainStats]) -> None:
    """The domains' statistics groups (those each answered) into the families;
    ``labels[i]`` is the label set of the domain of ``found[i]``."""
    cpu = [(lab, s.cpu) for lab, s in zip(labels, found, strict=True) if s.cpu is not None]
    if cpu:
        on, cpus = [c[0] for c in cpu], [c[1] for c in cpu]
        _figures(f.cpu_user, on, cpus, "user_ns", 1 / _NS)
        _figures(f.cpu_system, on, cpus, "system_ns", 1 / _NS)
    balloon = [(lab, s.balloon) for lab, s in zip(labels, found, strict=True)
               if s.balloon is not None]
    if balloon and f.balloon:
        on, balloons = [b[0] for b in balloon], [b[1] for b in balloon]
        for family, (_, _, attr, _, kib) in zip(f.balloon, _BALLOON, strict=True):
            _figures(family, on, balloons, attr, _KIB if kib else 1.0)
    vcpu_labels: list[dict[str, str]] = []
    vcpus: list[xvirt.VcpuStats] = []
    disk_labels: list[dict[str, str]] = []
    disks: list[xvirt.BlockStats] = []
    nic_labels: list[dict[str, str]] = []
    nics: list[xvirt.NetStats] = []
    for lab, s in zip(labels, found, strict=True):
        if s.vcpus is not None:
            vcpu_labels += [{**lab, "vcpu": str(v.number)} for v in s.vcpus]
            vcpus += s.vcpus
        if s.blocks is not None:
            for disk in _once_each(s.blocks):
                disk_labels.append({**lab, "target_device": disk.name,
                                    "source_file": disk.path or ""})
                disks.append(disk)
        if s.nets is not None:
            for nic in _once_each(s.nets):
                nic_labels.append({**lab, "target_device": nic.name,
                                   "source_bridge": nic.bridge or ""})
                nics.append(nic)
    if vcpus:
        _series(f.vcpu_state, vcpu_labels, [v.state.value for v in vcpus])
        _figures(f.vcpu_time, vcpu_labels, vcpus, "time_ns", 1 / _NS)
    if disks and f.block:
        for family, (_, _, attr, _, ns) in zip(f.block, _BLOCK, strict=True):
            _figures(family, disk_labels, disks, attr, 1 / _NS if ns else 1.0)
    if nics and f.net:
        for family, (_, _, attr, _, _) in zip(f.net, _NET, strict=True):
            _figures(family, nic_labels, nics, attr)


_Device = TypeVar("_Device", xvirt.BlockStats, xvirt.NetStats)


def _once_each(devices: Sequence[_Device]) -> Sequence[_Device]:
    """``devices`` without a second of a target device's name: a device is one series."""
    if len(devices) < 2:
        return devices
    seen: set[str] = set()
    once = []
    for device in devices:
        if device.name not in seen:
            seen.add(device.name)
            once.append(device)
    return once


def build_families(reading: Reading | None, duration_s: float) -> list[Metric]:
    """The families of one scrape: everything from ``reading``, or, without one, the
    build info, ``xvirt_up 0`` and the duration only. A UUID is served at most once."""
    f = _Families(frozenset() if reading is None else reading.groups,
                  defined=reading is not None and reading.defined is not None)
    f.build.add_metric([], {"version": xvirt.__version__,
                            "python_version": platform.python_version()})
    f.up.add_metric([], 0.0 if reading is None else 1.0)
    f.duration.add_metric([], duration_s)
    if reading is None:
        return [f.up, f.duration, f.build]
    seen: set[str] = set()
    samples = []
    for sample in reading.survey.samples:
        if sample.identity.uuid not in seen:
            seen.add(sample.identity.uuid)
            samples.append(sample)
    idents = [s.identity for s in samples]
    infos = [s.info for s in samples]
    # one label set per domain, shared by all its series (the text format writes it once)
    labels = [{"uuid": i.uuid, "name": i.name} for i in idents]
    _series(f.domain_info, [{"uuid": i.uuid, "name": i.name, "id": str(i.id),
                             "state": info.state.value}
                            for i, info in zip(idents, infos, strict=True)],
            [1] * len(idents), None)
    _series(f.scrape_error, labels, [1.0 if s.stats is not None and s.stats.missing else 0.0
                                     for s in samples])
    _series(f.state, labels, [STATE_CODES[info.state] for info in infos])
    _series(f.cpu, labels, [info.cpu_time_ns / _NS for info in infos])
    _series(f.memory, labels, [info.memory_kib * _KIB for info in infos])
    _series(f.memory_max, labels, [info.max_memory_kib * _KIB for info in infos])
    _figures(f.vcpus, labels, infos, "vcpus")
    answered = [(lab, s.stats) for lab, s in zip(labels, samples, strict=True)
                if s.stats is not None]
    if answered:
        _add_stats(f, [a[0] for a in answered], [a[1] for a in answered])
    for failure in reading.survey.failures:
        ident = failure.identity
        if ident.uuid in seen:
            continue
        seen.add(ident.uuid)
        f.domain_info.add_metric([ident.uuid, ident.name, str(ident.id), UNKNOWN_STATE], {})
        f.scrape_error.add_metric([ident.uuid, ident.name], 1.0)
    # the live domains by state: a sample never holds a shut-off one; those, defined and
    # not running, are counted by a control-plane request when collected
    by_state: dict[xvirt.DomainState, int] = dict.fromkeys(
        (s for s in xvirt.DomainState if s is not xvirt.DomainState.SHUTOFF), 0)
    for state, count in Counter(info.state for info in infos).items():
        by_state[state] = by_state.get(state, 0) + count
    if reading.defined is not None:
        by_state[xvirt.DomainState.SHUTOFF] = reading.defined
    for state, count in by_state.items():
        f.domains.add_metric([state.value], count)
    host = reading.host
    f.host_info.add_metric([host.hostname, host.hypervisor, host.version, host.arch], {})
    f.host_cpus.add_metric([], host.cpus)
    f.host_memory.add_metric([], host.memory_kib * _KIB)
    counts = reading.stats
    f.control.add_metric([], counts.control_requests)
    f.data.add_metric([], counts.data_calls)
    f.events.add_metric([], counts.event_requests)
    f.hits.add_metric([], counts.cache_hits)
    f.misses.add_metric([], counts.cache_misses)
    f.evictions.add_metric([], counts.evictions)
    f.entries.add_metric([], counts.cache_size)
    return f.all()


class XvirtCollector:
    """The custom collector: one fresh reading per scrape, or ``xvirt_up 0``.

    ``log`` hears of the host becoming unreadable (with the reason) and readable
    again, once per change, not once per scrape.
    """

    def __init__(self, runner: SurveyRunner, *, timeout_s: float, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self._runner = runner
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._log = log or (lambda message: None)
        self._state_lock = threading.Lock()
        self._last_up: bool | None = None

    def describe(self) -> Iterable[Metric]:
        return describe_families()

    def collect(self) -> Iterator[Metric]:
        with gc_paused():
            start = self._clock.now()
            reading: Reading | None = None
            reason = ""
            try:
                reading = self._runner.fresh(self._timeout_s)
            except (xvirt.XvirtError, ScrapeTimeout) as exc:
                reason = str(exc)
            except Exception as exc:  # a bug below must cost one scrape, not the exporter
                reason = f"unexpected {type(exc).__name__}: {exc}"
            self._note(reading is not None, reason)
            families = build_families(reading, self._clock.now() - start)
            del reading  # gone before the collector comes back (see gc_paused)
        yield from families

    def _note(self, up: bool, reason: str) -> None:
        with self._state_lock:
            changed, self._last_up = up != self._last_up, up
        if changed and not up:
            self._log(f"cannot read the host, serving xvirt_up 0: {' '.join(reason.split())}")
        elif changed and up:
            self._log("the host answers, serving its metrics")


# -- the peers' families ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PeerFamily:
    """One family a peer's libvirt exporter serves, and xvirt's family with the same
    figure (as served: counters with ``_total``), or None with why, or how to compute
    it, in ``note``. The peers label domains by name as ``domain``: xvirt's ``name``."""

    peer: str
    xvirt: str | None
    note: str = ""


_NO_JOBS = "not served: xvirt's hosts report no background jobs (migration, save progress)"
_NO_POOLS = "not served: xvirt's hosts have no storage pools"


def _io(prefix: str, block: str, net: str) -> tuple[PeerFamily, ...]:
    """The block and interface families both peers name alike."""
    disks = tuple(PeerFamily(f"{prefix}_block_stats_{way}_{what}_total",
                             f"xvirt_domain_block_{way}_{what}_total", block)
                  for way in ("read", "write") for what in ("bytes", "requests"))
    nics = tuple(PeerFamily(f"{prefix}_interface_stats_{way}_{what}_total",
                            f"xvirt_domain_interface_{way}_{what}_total", net)
                 for way in ("receive", "transmit")
                 for what in ("bytes", "packets", "errors", "drops"))
    return disks + nics


_SUM = "sum(xvirt_domains): the live domains by state, and the defined ones as shutoff"

#: Debian's ``prometheus-libvirt-exporter`` 0.2.0 (Kumina's), every family it serves.
DEBIAN_FAMILIES: tuple[PeerFamily, ...] = (
    PeerFamily("libvirt_up", "xvirt_up"),
    PeerFamily("libvirt_domains_number", "xvirt_domains", _SUM),
    PeerFamily("libvirt_domain_state_code", "xvirt_domain_state", "the same codes"),
    PeerFamily("libvirt_domain_info_cpu_time_seconds_total", "xvirt_domain_cpu_seconds_total"),
    PeerFamily("libvirt_domain_info_maximum_memory_bytes", "xvirt_domain_memory_max_bytes"),
    PeerFamily("libvirt_domain_info_memory_usage_bytes", "xvirt_domain_memory_bytes"),
    PeerFamily("libvirt_domain_info_virtual_cpus", "xvirt_domain_vcpus"),
    *_io("libvirt_domain", "labels target_device, source_file",
         "labels target_device, source_bridge"),
    *(PeerFamily(name, name, "the exporter process's own") for name in (
        "process_cpu_seconds_total", "process_max_fds", "process_open_fds",
        "process_resident_memory_bytes", "process_start_time_seconds",
        "process_virtual_memory_bytes", "process_virtual_memory_max_bytes")),
    PeerFamily("promhttp_metric_handler_requests_total", "xvirt_exporter_requests_total",
               "requests of /metrics by HTTP status code"),
    PeerFamily("promhttp_metric_handler_requests_in_flight",
               "xvirt_exporter_requests_in_flight", "requests of /metrics being answered"),
)
#: Debian's exporter's families that are its Go runtime's (``go_*``): Python's instead.
DEBIAN_RUNTIME_PREFIX = "go_"

#: inovex's ``prometheus-libvirt-exporter`` (its current source), every family.
INOVEX_FAMILIES: tuple[PeerFamily, ...] = (
    PeerFamily("libvirt_up", "xvirt_up"),
    PeerFamily("libvirt_domains", "xvirt_domains", _SUM),
    PeerFamily("libvirt_domain_timed_out", "xvirt_domain_scrape_error",
               "1 when some figures of the domain did not come in time"),
    PeerFamily("libvirt_domain_info", "xvirt_domain_info",
               "name, id and state; the OS type is not a label"),
    PeerFamily("libvirt_domain_openstack_info", None,
               "not served: OpenStack Nova's metadata"),
    PeerFamily("libvirt_domain_info_state", "xvirt_domain_state",
               "the same codes; the state's word is xvirt_domain_info's state label"),
    PeerFamily("libvirt_domain_info_maximum_memory_bytes", "xvirt_domain_memory_max_bytes"),
    PeerFamily("libvirt_domain_info_memory_usage_bytes", "xvirt_domain_memory_bytes"),
    PeerFamily("libvirt_domain_info_virtual_cpus", "xvirt_domain_vcpus"),
    PeerFamily("libvirt_domain_info_cpu_time_seconds_total", "xvirt_domain_cpu_seconds_total"),
    *(PeerFamily(f"libvirt_domain_job_info_{what}", None, _NO_JOBS) for what in (
        "type", "time_elapsed_seconds", "time_remaining_seconds", "data_total_bytes",
        "data_processed_bytes", "data_remaining_bytes", "memory_total_bytes",
        "memory_processed_bytes", "memory_remaining_bytes", "file_total_bytes",
        "file_processed_bytes", "file_remaining_bytes")),
    PeerFamily("libvirt_domain_memory_stats_swap_in_bytes",
               "xvirt_domain_balloon_swap_in_bytes_total", "a counter"),
    PeerFamily("libvirt_domain_memory_stats_swap_out_bytes",
               "xvirt_domain_balloon_swap_out_bytes_total", "a counter"),
    PeerFamily("libvirt_domain_memory_stats_unused_bytes", "xvirt_domain_balloon_unused_bytes"),
    PeerFamily("libvirt_domain_memory_stats_available_bytes",
               "xvirt_domain_balloon_available_bytes"),
    PeerFamily("libvirt_domain_memory_stats_usable_bytes", "xvirt_domain_balloon_usable_bytes"),
    PeerFamily("libvirt_domain_memory_stats_rss_bytes", "xvirt_domain_balloon_rss_bytes"),
    PeerFamily("libvirt_domain_memory_stats_actual_balloon_bytes",
               "xvirt_domain_balloon_current_bytes"),
    PeerFamily("libvirt_domain_memory_stats_major_fault_total",
               "xvirt_domain_balloon_major_faults_total"),
    PeerFamily("libvirt_domain_memory_stats_minor_fault_total",
               "xvirt_domain_balloon_minor_faults_total"),
    PeerFamily("libvirt_domain_memory_stats_used_percent", None,
               "computed: 100 * (1 - xvirt_domain_balloon_usable_bytes / "
               "xvirt_domain_balloon_available_bytes)"),
    PeerFamily("libvirt_domain_block_stats_info", None,
               "not served: target_device and source_file label every block series; the "
               "bus, driver and cache are configuration, not statistics"),
    *_io("libvirt_domain", "labels target_device, source_file",
         "labels target_device, source_bridge")[:4],
    PeerFamily("libvirt_domain_block_stats_read_time_seconds_total",
               "xvirt_domain_block_read_seconds_total"),
    PeerFamily("libvirt_domain_block_stats_write_time_seconds_total",
               "xvirt_domain_block_write_seconds_total"),
    PeerFamily("libvirt_domain_block_stats_flush_requests_total",
               "xvirt_domain_block_flush_requests_total"),
    PeerFamily("libvirt_domain_block_stats_flush_time_seconds_total",
               "xvirt_domain_block_flush_seconds_total"),
    PeerFamily("libvirt_domain_block_stats_capacity_bytes", "xvirt_domain_block_capacity_bytes"),
    PeerFamily("libvirt_domain_interface_stats_info", None,
               "not served: target_device and source_bridge label every interface series; "
               "the MAC, model and MTU are configuration"),
    *_io("libvirt_domain", "", "labels target_device, source_bridge")[4:],
    PeerFamily("libvirt_domain_vcpu_current", "xvirt_domain_vcpus"),
    PeerFamily("libvirt_domain_vcpu_maximum", None,
               "not served: a domain's maximum vCPUs is configuration (Domain.settings())"),
    PeerFamily("libvirt_domain_vcpu_state", "xvirt_domain_vcpu_state", "label vcpu"),
    PeerFamily("libvirt_domain_vcpu_time_seconds_total", "xvirt_domain_vcpu_seconds_total",
               "label vcpu"),
    PeerFamily("libvirt_domain_vcpu_wait_seconds_total", None,
               "not served: Xen reports no per-vCPU wait time"),
    PeerFamily("libvirt_domain_vcpu_delay_seconds_total", None,
               "not served: Xen reports no per-vCPU steal time; see the alerts' host "
               "saturation rule"),
    *(PeerFamily(f"libvirt_storage_pool_{what}", None, _NO_POOLS)
      for what in ("state", "capacity_bytes", "allocation_bytes", "available_bytes")),
)
