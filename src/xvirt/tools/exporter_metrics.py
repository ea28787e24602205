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

Only the public API (``import xvirt``) is used.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, fields

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

import xvirt
from xvirt.clock import Clock, SystemClock
from xvirt.libvirt_api.states import LIBVIRT_STATE_OF

__all__ = [
    "STATE_CODES",
    "UNKNOWN_STATE",
    "HostReader",
    "Reading",
    "ScrapeTimeout",
    "SurveyRunner",
    "Waiter",
    "XvirtCollector",
    "build_families",
    "describe_families",
]

#: libvirt's virDomainState codes, as xvirt's libvirt face reports Xen's states.
STATE_CODES: dict[xvirt.DomainState, int] = LIBVIRT_STATE_OF

_STATE_HELP = ", ".join(f"{code} {state.value}" for state, code in STATE_CODES.items())

#: The state label of a live domain whose figures could not be read.
UNKNOWN_STATE = "unknown"

_KIB = 1024
_NS = 1e9


@dataclass(frozen=True, slots=True)
class Reading:
    """What one successful read saw: one survey, the host's facts (read once per
    connection), and the exporter's counters over all its connections so far."""

    survey: xvirt.Survey
    host: xvirt.HostInfo
    stats: xvirt.ConnStats


def _open_readonly(uri: str | None) -> xvirt.Connection:
    return xvirt.open(uri, readonly=True)


_COUNTED = tuple(f.name for f in fields(xvirt.ConnStats) if f.name != "cache_size")


class HostReader:
    """The exporter's one connection. Not thread-safe: only the survey worker uses it."""

    def __init__(self, uri: str | None,
                 opener: Callable[[str | None], xvirt.Connection] = _open_readonly) -> None:
        self._uri = uri
        self._opener = opener
        self._conn: xvirt.Connection | None = None
        self._host: xvirt.HostInfo | None = None
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
            survey = conn.survey()
            return Reading(survey, self._host, self._totals(conn.stats()))
        except BaseException:
            self.close()
            raise

    def _totals(self, stats: xvirt.ConnStats) -> xvirt.ConnStats:
        counted = {name: self._retired[name] + getattr(stats, name) for name in _COUNTED}
        return xvirt.ConnStats(cache_size=stats.cache_size, **counted)

    def close(self) -> None:
        """Drop the connection, keeping its counts."""
        conn, self._conn, self._host = self._conn, None, None
        if conn is None:
            return
        stats = conn.stats()
        for name in _COUNTED:
            self._retired[name] += getattr(stats, name)
        with contextlib.suppress(Exception):  # dropped because it failed: so may closing
            conn.close()


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

class _Families:
    """Every family the exporter serves, empty: one object per metric name."""

    def __init__(self) -> None:
        dom = ["uuid"]
        self.up = GaugeMetricFamily(
            "xvirt_up", "1 if this scrape read the host, 0 if it could not (then nothing "
            "else about the host or its domains is served).")
        self.duration = GaugeMetricFamily(
            "xvirt_scrape_duration_seconds", "How long this scrape took to read the host.",
            unit="seconds")
        self.domain_info = InfoMetricFamily(
            "xvirt_domain", "One series per live domain, to join names and IDs on uuid; "
            f"state is the domain's state, or {UNKNOWN_STATE} when its figures could not be "
            "read.", labels=["uuid", "name", "id", "state"])
        self.scrape_error = GaugeMetricFamily(
            "xvirt_domain_scrape_error", "1 if this live domain's figures could not be read "
            "in this scrape (none of its other series is served), else 0.", labels=dom)
        self.state = GaugeMetricFamily(
            "xvirt_domain_state", f"Domain state: {_STATE_HELP} (libvirt's codes).", labels=dom)
        self.cpu = CounterMetricFamily(
            "xvirt_domain_cpu_seconds", "CPU time the domain has used (reset by a reboot).",
            labels=dom, unit="seconds")
        self.memory = GaugeMetricFamily(
            "xvirt_domain_memory_bytes", "Memory the domain has.", labels=dom, unit="bytes")
        self.memory_max = GaugeMetricFamily(
            "xvirt_domain_memory_max_bytes", "Memory the domain may grow to.", labels=dom,
            unit="bytes")
        self.vcpus = GaugeMetricFamily(
            "xvirt_domain_vcpus", "Virtual CPUs of the domain.", labels=dom)
        self.domains = GaugeMetricFamily(
            "xvirt_domains", "Live domains whose figures were read, by state (every state is "
            "present).", labels=["state"])
        self.host_info = InfoMetricFamily(
            "xvirt_host", "The host's identity, read once per connection.",
            labels=["hostname", "hypervisor", "version", "arch"])
        self.host_cpus = GaugeMetricFamily("xvirt_host_cpus", "Physical CPUs of the host.")
        self.host_memory = GaugeMetricFamily(
            "xvirt_host_memory_bytes", "Physical memory of the host.", unit="bytes")
        self.control = CounterMetricFamily(
            "xvirt_control_plane_requests", "Control-plane (management daemon) requests this "
            "exporter has sent.")
        self.data = CounterMetricFamily(
            "xvirt_data_plane_calls", "Data-plane (hypercall) calls this exporter has made.")
        self.events = CounterMetricFamily(
            "xvirt_event_requests", "Event requests this exporter has made.")
        self.hits = CounterMetricFamily(
            "xvirt_cache_hits", "Identities the cache answered from what it held.")
        self.misses = CounterMetricFamily(
            "xvirt_cache_misses", "Lookups the cache had to catch up with the host for.")
        self.evictions = CounterMetricFamily(
            "xvirt_cache_evictions", "Identities evicted from the cache (domains gone).")
        self.entries = GaugeMetricFamily(
            "xvirt_cache_entries", "Domain identities the cache holds.")

    def all(self) -> list[Metric]:
        return [m for m in vars(self).values() if isinstance(m, Metric)]


def describe_families() -> list[Metric]:
    """The families, empty: what the registry checks names against."""
    return _Families().all()


def build_families(reading: Reading | None, duration_s: float) -> list[Metric]:
    """The families of one scrape: everything from ``reading``, or, without one,
    ``xvirt_up 0`` and the duration only. A UUID is served at most once."""
    f = _Families()
    f.up.add_metric([], 0.0 if reading is None else 1.0)
    f.duration.add_metric([], duration_s)
    if reading is None:
        return [f.up, f.duration]
    seen: set[str] = set()
    # running domains only: a sample never holds a shut-off one (listing those is a
    # control-plane request, which a scrape does not make)
    by_state: dict[xvirt.DomainState, int] = dict.fromkeys(
        (s for s in xvirt.DomainState if s is not xvirt.DomainState.SHUTOFF), 0)
    for sample in reading.survey.samples:
        ident, info = sample.identity, sample.info
        if ident.uuid in seen:
            continue
        seen.add(ident.uuid)
        by_state[info.state] = by_state.get(info.state, 0) + 1
        u = [ident.uuid]
        f.domain_info.add_metric([ident.uuid, ident.name, str(ident.id), info.state.value], {})
        f.scrape_error.add_metric(u, 0.0)
        f.state.add_metric(u, STATE_CODES[info.state])
        f.cpu.add_metric(u, info.cpu_time_ns / _NS)
        f.memory.add_metric(u, info.memory_kib * _KIB)
        f.memory_max.add_metric(u, info.max_memory_kib * _KIB)
        f.vcpus.add_metric(u, info.vcpus)
    for failure in reading.survey.failures:
        ident = failure.identity
        if ident.uuid in seen:
            continue
        seen.add(ident.uuid)
        f.domain_info.add_metric([ident.uuid, ident.name, str(ident.id), UNKNOWN_STATE], {})
        f.scrape_error.add_metric([ident.uuid], 1.0)
    for state, count in by_state.items():
        f.domains.add_metric([state.value], count)
    host = reading.host
    f.host_info.add_metric([host.hostname, host.hypervisor, host.version, host.arch], {})
    f.host_cpus.add_metric([], host.cpus)
    f.host_memory.add_metric([], host.memory_kib * _KIB)
    stats = reading.stats
    f.control.add_metric([], stats.control_requests)
    f.data.add_metric([], stats.data_calls)
    f.events.add_metric([], stats.event_requests)
    f.hits.add_metric([], stats.cache_hits)
    f.misses.add_metric([], stats.cache_misses)
    f.evictions.add_metric([], stats.evictions)
    f.entries.add_metric([], stats.cache_size)
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
        yield from build_families(reading, self._clock.now() - start)

    def _note(self, up: bool, reason: str) -> None:
        with self._state_lock:
            changed, self._last_up = up != self._last_up, up
        if changed and not up:
            self._log(f"cannot read the host, serving xvirt_up 0: {' '.join(reason.split())}")
        elif changed and up:
            self._log("the host answers, serving its metrics")
