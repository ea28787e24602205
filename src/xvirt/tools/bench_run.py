"""The 2006 experiment as a function: one monitoring loop, three ways, one host.

The loop is the one of the 2006 mail: list the domains, look each one up by ID,
read its info, free the handle. It runs

* in **2006 mode** (``?cache=off``): one control-plane request per lookup;
* through the **naive ID cache** of the 2006 patch: an ID's identity is asked
  once and then believed for ever. It lives here only, to be measured: between
  samples the host saves and restores two domains so that they swap IDs, and
  the cache goes on naming each ID after the domain that used to hold it;
* through **xvirt's cache**.

Every answer is checked against the host's truth taken right after the sample
(nothing changes during one), so wrong answers are counted, not assumed; so are
control-plane requests and data-plane calls, from the connections' counters.
Wall time covers the samples only, measured with ``time.perf_counter``.
"""

from __future__ import annotations

import enum
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import xvirt
from xvirt.drivers.base import Driver
from xvirt.uri import open_driver

__all__ = ["BenchHost", "Cell", "ExistingHost", "Mode", "NaiveIdCache", "SimBenchHost", "run"]

#: What one loop reports: who holds each ID, as the mode believes it.
Answers = list[tuple[int, str]]


class Mode(enum.Enum):
    Y2006 = "2006 mode (a request per lookup)"
    NAIVE = "naive ID cache (2006 patch)"
    XVIRT = "xvirt cache"

    @property
    def key(self) -> str:
        return {"Y2006": "2006", "NAIVE": "naive", "XVIRT": "xvirt"}[self.name]


@dataclass
class Cell:
    """One mode at one host size: a figure per run (each run a fresh client)."""

    domains: int
    mode: Mode
    samples: int
    control_requests: list[int] = field(default_factory=list)
    data_calls: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)
    skipped: str | None = None
    #: Whether one of ``domains`` is Domain-0 (Xen hosts); QEMU and test hosts have none.
    domain0: bool = True

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, object]:
        return {"domains": self.domains, "mode": self.mode.key, "samples": self.samples,
                "control_requests": self.control_requests, "data_calls": self.data_calls,
                "seconds": self.seconds, "wrong_answers": self.wrong,
                "skipped": self.skipped, "domain0": self.domain0}


class BenchHost(Protocol):
    """A host the loop runs on, and the outside world acting on it."""

    uri: str
    #: What the report calls this host.
    label: str
    #: How many domains the loop sees (Domain-0 included, where there is one).
    domains: int
    #: Whether the host has a Domain-0 (ID 0): Xen hosts do, QEMU and test hosts do not.
    domain0: bool
    #: Milliseconds each control-plane request costs, where the bench sets it.
    latency_ms: float | None
    #: Whether a churn has happened yet (some hosts cannot be changed).
    churned: bool
    #: Images the bench made and could not delete, to be reported (normally none).
    left_behind: list[str]

    def churn(self) -> bool:
        """Between samples: make two domains swap IDs (save both, restore them
        the other way round); False when this host cannot be changed."""

    def truth(self) -> dict[int, str]:
        """Who holds each ID now (ID -> UUID), from outside the client."""

    def close(self) -> None: ...


class _Client(Protocol):
    def sample(self) -> Answers: ...

    def counts(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


class _PublicClient:
    """The loop through the public API, with or without the cache."""

    def __init__(self, uri: str) -> None:
        self._conn = xvirt.open(uri, readonly=True)

    def sample(self) -> Answers:
        out: Answers = []
        for domid in self._conn.list_domain_ids():
            try:
                dom = self._conn.lookup_by_id(domid)
                dom.info()
            except xvirt.NoDomainError:
                continue  # gone since the listing: not an answer
            out.append((domid, dom.uuid))
            dom.close()
        return out

    def counts(self) -> tuple[int, int]:
        stats = self._conn.stats()
        return stats.control_requests, stats.data_calls

    def close(self) -> None:
        self._conn.close()


class NaiveIdCache:
    """The 2006 patch's cache: ID -> UUID, asked once, never checked again.

    It talks to a bare driver (no xvirt cache in between) because that is what
    it was: a dictionary in front of the control plane."""

    def __init__(self, driver: Driver) -> None:
        self._drv = driver
        self._known: dict[int, str] = {}

    def sample(self) -> Answers:
        out: Answers = []
        ids = sorted(domid for domid, _ in self._drv.census().members)  # IDs, as listed
        for domid in ids:
            uuid = self._known.get(domid)
            if uuid is None:
                found = self._drv.resolve(ids=[domid]).domains
                if not found:
                    continue
                uuid = self._known[domid] = found[0].uuid
            self._drv.info_by_id(domid)  # the figures of whoever holds the ID now
            out.append((domid, uuid))
        return out

    def counts(self) -> tuple[int, int]:
        return self._drv.counters.control_requests, self._drv.counters.data_calls

    def close(self) -> None:
        self._drv.close()


def _client(mode: Mode, uri: str) -> _Client:
    if mode is Mode.XVIRT:
        return _PublicClient(uri)
    if mode is Mode.Y2006:
        return _PublicClient(uri + ("&" if "?" in uri else "?") + "cache=off")
    return NaiveIdCache(open_driver(uri, readonly=True))


# -- hosts -----------------------------------------------------------------------------


_serial = itertools.count(1)


class _Swapper:
    """Picks disjoint pairs of guest IDs in ascending order, cycling.

    On a sequential host whose ID space is exactly full, the two freed IDs are
    the only free ones and the rover has passed both (or wraps to them), so the
    first image restored takes the lower ID: restoring the upper domain first
    swaps the pair."""

    def __init__(self) -> None:
        self._next = 0

    def pair(self, guest_ids: Sequence[int]) -> tuple[int, int] | None:
        ids = sorted(guest_ids)
        if len(ids) < 2:
            return None
        if self._next + 1 >= len(ids):
            self._next = 0
        low, high = ids[self._next], ids[self._next + 1]
        self._next += 2
        return low, high


class SimBenchHost:
    """A private embedded host of ``domains`` domains, its ID space exactly full."""

    def __init__(self, domains: int, *, latency_ms: float = 0.0) -> None:
        if domains < 1:
            raise xvirt.InvalidArgumentError(f"a host has at least Domain-0, not {domains}")
        self._images = tempfile.TemporaryDirectory(prefix="xvirt-bench-")
        guests = domains - 1
        self.host = xvirt.sim.Host(f"bench-{next(_serial)}", max_domid=max(guests, 1),
                                   control_latency_ms=latency_ms, image_dir=self._images.name)
        for i in range(guests):
            self.host.create(f"guest-{i + 1:05d}", memory_kib=262144, vcpus=1)
        self.uri = self.host.uri
        self.label = "embedded, made for the run (its ID space exactly full: IDs are reused)"
        self.domains = domains
        self.domain0 = True
        self.latency_ms: float | None = latency_ms
        self.churned = False
        self.left_behind: list[str] = []  # its images live in a directory deleted at close
        self._swapper = _Swapper()

    def churn(self) -> bool:
        pair = self._swapper.pair([d.id for d in self.host.domains() if d.id != 0])
        if pair is None:
            return False
        low, high = pair
        self.host.save(low, "bench-low")
        self.host.save(high, "bench-high")
        self.host.restore("bench-high")
        self.host.restore("bench-low")
        self.churned = True
        return True

    def truth(self) -> dict[int, str]:
        return {d.id: d.uuid for d in self.host.domains()}

    def close(self) -> None:
        self.host.close()
        self._images.cleanup()


class ExistingHost:
    """Any host the bench did not make: its domains are used as they are.

    The churn goes through a writable xvirt connection (save and restore by
    image name); where that is refused (read-only access, no image directory)
    the samples run without it. Each image has a name of this run's own and is
    deleted once restored (libvirt's restore and xvirt's hosts' keep the file, as
    xm did), so the image directory ends as it began. The truth comes from a
    2006-mode connection, which asks the control plane and caches nothing."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.latency_ms: float | None = None
        self._truth = xvirt.open(uri + ("&" if "?" in uri else "?") + "cache=off",
                                 readonly=True)
        ids = self._truth.list_domain_ids()
        self.domains = len(ids)
        self.domain0 = 0 in ids
        self.label = f"{uri}, its {self.domains} domains as they are"
        self.churned = False
        self._swapper = _Swapper()
        self._tag = f"xvirt-bench-{os.getpid()}-{next(_serial)}"
        #: Images this bench made that it could not delete (their paths, or names).
        self.left_behind: list[str] = []

    def churn(self) -> bool:
        pair = self._swapper.pair([i for i in self._truth.list_domain_ids() if i != 0])
        if pair is None:
            return False
        try:
            conn = xvirt.open(self.uri)
        except xvirt.XvirtError:
            return False
        with conn:
            saved: list[str] = []
            try:
                for domid, image in zip(pair, (f"{self._tag}-low", f"{self._tag}-high"),
                                        strict=True):
                    conn.lookup_by_id(domid).save(image)
                    saved.append(image)
            except xvirt.XvirtError:
                self._restore(conn, saved)  # never leave a guest behind in an image
                return False
            self._restore(conn, saved)
        self.churned = True
        return True

    def _restore(self, conn: xvirt.Connection, images: Sequence[str]) -> None:
        """Restore ``images`` in reverse order, deleting each file the host kept."""
        for image in reversed(images):
            conn.restore(image)
            self._delete(conn.image_dir, image)

    def _delete(self, image_dir: str | None, image: str) -> None:
        if image_dir is None:
            return  # no directory known here: the host keeps its images to itself
        path = os.path.join(image_dir, image)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # already gone (someone else removed it)
        except OSError:
            self.left_behind.append(path)

    def truth(self) -> dict[int, str]:
        return {s.identity.id: s.identity.uuid for s in self._truth.survey().samples}

    def close(self) -> None:
        self._truth.close()


# -- the run ------------------------------------------------------------------------------


def _one_run(host: BenchHost, mode: Mode, samples: int, cell: Cell,
             step: Callable[[], None]) -> None:
    client = _client(mode, host.uri)
    try:
        seconds = 0.0
        wrong = 0
        for s in range(samples):
            if s:
                host.churn()
            start = time.perf_counter()
            answers = client.sample()
            seconds += time.perf_counter() - start
            truth = host.truth()
            wrong += sum(1 for domid, uuid in answers if truth.get(domid) != uuid)
            step()
        requests, calls = client.counts()
    finally:
        client.close()
    cell.control_requests.append(requests)
    cell.data_calls.append(calls)
    cell.seconds.append(seconds)
    cell.wrong.append(wrong)


def run(host: BenchHost, *, samples: int, repeats: int, modes: Sequence[Mode] = tuple(Mode),
        max_run_s: float = 120.0, step: Callable[[], None] = lambda: None,
        finished: Callable[[Cell], None] = lambda cell: None) -> list[Cell]:
    """Every mode on ``host``, ``repeats`` runs of ``samples`` samples each.

    ``step`` is called after each sample and ``finished`` after each run, with the
    cell its figures were added to (progress for a person waiting). A 2006-mode run
    whose sleeping alone (one request per domain per sample at the host's latency)
    would exceed ``max_run_s`` is skipped and says why: its steps are taken at once,
    and ``finished`` is called once for all its runs."""
    cells = []
    for mode in modes:
        cell = Cell(host.domains, mode, samples, domain0=host.domain0)
        slept = samples * host.domains * (host.latency_ms or 0.0) / 1000.0
        if mode is Mode.Y2006 and slept > max_run_s:
            cell.skipped = (f"one run would sleep {slept:.0f} s in control-plane latency "
                            f"alone (limit {max_run_s:g} s)")
            for _ in range(repeats * samples):
                step()
            finished(cell)
        else:
            for _ in range(repeats):
                _one_run(host, mode, samples, cell, step)
                finished(cell)
        cells.append(cell)
    return cells


def hosts_for(uri: str | None, domain_counts: Sequence[int],
              latency_ms: float) -> Iterator[BenchHost]:
    """The hosts of a bench: private embedded ones, one per size, when no URI or
    an embedded one is given; otherwise the one host behind ``uri``, as it is."""
    if uri is None or uri.startswith("sim:"):
        for n in domain_counts:
            yield SimBenchHost(n, latency_ms=latency_ms)
        return
    yield ExistingHost(uri)
