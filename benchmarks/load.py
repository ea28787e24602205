"""Load: 64 monitoring clients and a writer on one real daemon, checked for wrong answers.

One ``xvirt daemon`` process (a few hundred guests) is sampled by 64 concurrent
clients for ``--seconds``: half are threads of one process, half are threads of
four more processes (4 x 8). Each client has its own read-only connection
(``xvirt.open(uri, readonly=True)``) and runs the monitoring loop through the
public API: ``list_domain_ids``, then ``lookup_by_id`` + ``info`` + ``close``
for every ID, then one ``conn.sample()``. Meanwhile one writer churns guests
through the daemon's administration route at a steady rate (create, reboot,
save, restore, destroy, in turn), and a collector follows the host's numbered
events (``/xvirt/events``).

Errors: any exception, except a ``NoDomainError`` that the history shows was a
correct answer (the ID, or the domain, really was gone at some instant of the
call); a ``NoDomainError`` the history contradicts is a wrong answer.

Wrong answers, checked soundly against the host's own history: every client
reads the host generation (the number of the last event, from the shared
table's header: published inside the request that made the change, before any
answer about it goes out) just before and just after each call, so the call
happened within generations [before, after]. Replaying the events from the
snapshot the run started at gives, for each ID, the intervals of generations
during which each UUID held it, and for each UUID the intervals it was alive.
An answer is counted wrong only if no generation in its window had it:

* ``lookup_by_id(i)`` returning UUID u: u never held i within [before, after];
* ``sample()`` entry (i, u, n): the same, or n is not u's name (the writer never
  renames, and names are never reused, so a UUID's name is fixed for life);
* ``lookup_by_id(i)`` raising NoDomainError: one UUID held i over the whole window;
* ``info()`` raising NoDomainError: the UUID was alive over the whole window.

Because the window contains every state the call could have seen, a correct
answer is never flagged (no false alarms); the check is exactly C1 and C2.

Run::

    .venv/bin/python benchmarks/load.py            # the real run (60 s)
    .venv/bin/python benchmarks/load.py --quick    # a smoke run (~10 s)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import httpx

import xvirt
from xvirt.testing.daemon import DaemonProcess, _AdminHost
from xvirt.wire import records, sxp
from xvirt.wire.table_reader import TableReader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO, REPORT, command_line, machine_lines, write_section

CLIENTS = 64
PROCESSES = 4  # x 8 threads; the other 32 clients are threads of one process
GUESTS = 300
WRITER_RATE = 10.0  # writer operations per second
OPS = ("lookup_by_id", "info", "sample")
_K = 1 / math.log(1.02)  # latency histogram: 2% buckets
FOREVER = 1 << 62


# -- latency histograms ---------------------------------------------------------------------


@dataclass
class Latency:
    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[int(math.log(max(seconds, 1e-9) * 1e9) * _K)] += 1
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds

    def merge(self, other: Latency) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile in seconds (within 2%)."""
        if not self.count:
            return float("nan")
        rank = p / 100 * self.count
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return min(math.exp((b + 0.5) / _K) / 1e9, self.max_s)
        return self.max_s


# -- the host's history -----------------------------------------------------------------------


@dataclass
class History:
    """Who held which ID, and which UUID was alive, at every generation of the run."""

    start: int
    holders: dict[int, list[tuple[int, int, str]]]  # id -> (from, until, uuid), until excl.
    alive: dict[str, list[tuple[int, int]]]
    names: dict[str, str]
    latest: int

    def held(self, domid: int, uuid: str, low: int, high: int) -> bool:
        """Did ``uuid`` hold ``domid`` at some generation in [low, high]?"""
        return any(u == uuid and s <= high and e > low
                   for s, e, u in self.holders.get(domid, ()))

    def held_throughout(self, domid: int, low: int, high: int) -> bool:
        return any(s <= low and e > high for s, e, _ in self.holders.get(domid, ()))

    def alive_throughout(self, uuid: str, low: int, high: int) -> bool:
        return any(s <= low and e > high for s, e in self.alive.get(uuid, ()))


class Recorder:
    """Builds a History from the starting snapshot and the events that follow it."""

    def __init__(self, start: int, domains: dict[int, tuple[str, str]]) -> None:
        self.start = start
        self.latest = start
        self.open_ids: dict[int, tuple[int, str]] = {}  # id -> (from, uuid)
        self.open_alive: dict[str, int] = {}
        self.holders: dict[int, list[tuple[int, int, str]]] = {}
        self.alive: dict[str, list[tuple[int, int]]] = {}
        self.names: dict[str, str] = {}
        for domid, (uuid, name) in domains.items():
            self.open_ids[domid] = (start, uuid)
            self.open_alive[uuid] = start
            self.names[uuid] = name

    def _vacate(self, domid: int, seq: int) -> None:
        held = self.open_ids.pop(domid, None)
        if held is not None:
            self.holders.setdefault(domid, []).append((held[0], seq, held[1]))

    def apply(self, seq: int, kind: str, domid: int, uuid: str, old_id: int | None) -> None:
        if seq != self.latest + 1:
            raise RuntimeError(f"event {seq} after {self.latest}: the history has a gap")
        self.latest = seq
        event = xvirt.EventKind(kind)
        if event.moves:
            assert old_id is not None
            self._vacate(old_id, seq)
        if event.removes:
            self._vacate(domid, seq)
            since = self.open_alive.pop(uuid, None)
            if since is not None:
                self.alive.setdefault(uuid, []).append((since, seq))
            return
        if event.adds:
            self.open_alive.setdefault(uuid, seq)
        if event.adds or event.moves:
            self._vacate(domid, seq)
            self.open_ids[domid] = (seq, uuid)

    def history(self) -> History:
        holders = {k: list(v) for k, v in self.holders.items()}
        for domid, (since, uuid) in self.open_ids.items():
            holders.setdefault(domid, []).append((since, FOREVER, uuid))
        alive = {k: list(v) for k, v in self.alive.items()}
        for uuid, since in self.open_alive.items():
            alive.setdefault(uuid, []).append((since, FOREVER))
        return History(self.start, holders, alive, dict(self.names), self.latest)


def _events_body(body: bytes) -> tuple[str, int, bool, list[tuple[int, str, int, str, int | None]]]:
    rec = sxp.parse(body)
    assert isinstance(rec, list) and rec[0] == "events"
    out = []
    for e in sxp.children(rec, "event"):
        old = sxp.value(e, "event/old_id")
        out.append((int(sxp.value(e, "event/seq") or "0"), sxp.value(e, "event/kind") or "",
                    int(sxp.value(e, "event/domid") or "0"), sxp.value(e, "event/uuid") or "",
                    int(old) if old is not None else None))
    return (sxp.value(rec, "events/boot_id") or "", int(sxp.value(rec, "events/latest") or "0"),
            sxp.value(rec, "events/complete") == "1", out)


def collect_events(client: httpx.Client, recorder: Recorder, boot: str,
                   stop: threading.Event, failures: list[str]) -> None:
    """Follow the host's events until ``stop``, then until ``recorder`` has them all."""
    while True:
        stopping = stop.is_set()
        try:
            r = client.get("/xvirt/events", params={
                "after": str(recorder.latest), "timeout": "0" if stopping else "1"})
            r.raise_for_status()
            got_boot, latest, complete, events = _events_body(r.content)
            if got_boot != boot or not complete:
                failures.append(f"event history lost (boot {got_boot}, complete {complete})")
                return
            for ev in events:
                recorder.apply(*ev)
        except Exception as exc:
            failures.append(f"events: {type(exc).__name__}: {exc}")
            return
        if stopping and recorder.latest >= latest:
            return


# -- the writer ---------------------------------------------------------------------------------


@dataclass
class WriterStats:
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def write_loop(admin: _AdminHost, guests: dict[str, int], names: dict[str, str], rate: float,
               stop: threading.Event, stats: WriterStats) -> None:
    """Churn at ``rate`` operations per second: create, reboot, save, restore, destroy."""
    rng = random.Random(8)
    serial = 0
    saved: list[tuple[str, str]] = []  # (image, uuid)
    cycle = ("create", "reboot", "save", "restore", "destroy")
    next_at = time.monotonic()
    step = 0
    while not stop.is_set():
        op = cycle[step % len(cycle)]
        step += 1
        try:
            if op == "create":
                serial += 1
                rec = admin.create(f"load-new-{serial}", memory_kib=262144)
                guests[rec.uuid] = rec.id
                names[rec.uuid] = rec.name
            elif op == "reboot":
                uuid = rng.choice(sorted(guests))
                guests[uuid] = admin.reboot(guests[uuid]).id
            elif op == "save":
                uuid = rng.choice(sorted(guests))
                image = f"load-{serial}-{step}"
                admin.save(guests.pop(uuid), image)
                saved.append((image, uuid))
            elif op == "restore" and saved:
                image, _ = saved.pop(0)
                rec = admin.restore(image)
                guests[rec.uuid] = rec.id
            elif op == "destroy":
                uuid = rng.choice(sorted(guests))
                admin.destroy(guests.pop(uuid))
            stats.ops[op] += 1
        except Exception as exc:
            stats.errors[type(exc).__name__] += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"{op}: {type(exc).__name__}: {exc}")
        next_at += 1.0 / rate
        stop.wait(max(0.0, next_at - time.monotonic()))


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Observations:
    found: set[tuple[int, str, int, int]] = field(default_factory=set)  # id, uuid, window
    sampled: set[tuple[int, str, str, int, int]] = field(default_factory=set)
    id_gone: set[tuple[int, int, int]] = field(default_factory=set)
    uuid_gone: set[tuple[str, int, int]] = field(default_factory=set)


@dataclass
class ClientStats:
    latency: dict[str, Latency] = field(default_factory=lambda: {op: Latency() for op in OPS})
    loops: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    gone_answers: int = 0  # NoDomainError, to be checked against the history


def _error(stats: ClientStats, where: str, exc: BaseException) -> None:
    stats.errors[f"{where}: {type(exc).__name__}"] += 1
    if len(stats.examples) < 5:
        stats.examples.append(f"{where}: {type(exc).__name__}: {exc}")


def client_loop(uri: str, table: str, deadline: list[float], go: threading.Event,
                obs: Observations, stats: ClientStats) -> None:
    """One client: open, wait for ``go``, loop until ``deadline[0]`` (perf_counter)."""
    try:
        conn = xvirt.open(uri, readonly=True)
        reader = TableReader(table, uri="load")
    except Exception as exc:
        _error(stats, "open", exc)
        return
    owner = reader.owner

    def gen() -> int:
        """The host generation now: the shared table's header, read with slot 0."""
        return owner(0).generation

    lookup, info, sample = (stats.latency[op] for op in OPS)
    clock = time.perf_counter
    go.wait()
    try:
        while clock() < deadline[0]:
            try:
                ids = conn.list_domain_ids()
            except Exception as exc:
                _error(stats, "list_domain_ids", exc)
                continue
            for domid in ids:
                before = gen()
                t0 = clock()
                try:
                    dom = conn.lookup_by_id(domid)
                except xvirt.NoDomainError:
                    lookup.add(clock() - t0)
                    obs.id_gone.add((domid, before, gen()))
                    stats.gone_answers += 1
                    continue
                except Exception as exc:
                    _error(stats, "lookup_by_id", exc)
                    continue
                lookup.add(clock() - t0)
                obs.found.add((domid, dom.uuid, before, gen()))
                before = gen()
                t0 = clock()
                try:
                    dom.info()
                    info.add(clock() - t0)
                except xvirt.NoDomainError:
                    info.add(clock() - t0)
                    obs.uuid_gone.add((dom.uuid, before, gen()))
                    stats.gone_answers += 1
                except Exception as exc:
                    _error(stats, "info", exc)
                dom.close()
            before = gen()
            t0 = clock()
            try:
                found = conn.sample()
            except Exception as exc:
                _error(stats, "sample", exc)
                continue
            sample.add(clock() - t0)
            after = gen()
            for s in found:
                ident = s.identity
                obs.sampled.add((ident.id, ident.uuid, ident.name, before, after))
            stats.loops += 1
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        reader.close()


def check(obs: Observations, history: History) -> tuple[int, int, list[str]]:
    """(answers checked, wrong answers, a few examples)."""
    wrong: list[str] = []
    for domid, uuid, low, high in obs.found:
        if not history.held(domid, uuid, low, high):
            wrong.append(f"lookup_by_id({domid}) -> {uuid} in generations {low}..{high}")
    for domid, uuid, name, low, high in obs.sampled:
        if not history.held(domid, uuid, low, high) or history.names.get(uuid) != name:
            wrong.append(f"sample: ({domid}, {uuid}, {name!r}) in generations {low}..{high}")
    for domid, low, high in obs.id_gone:
        if history.held_throughout(domid, low, high):
            wrong.append(f"lookup_by_id({domid}) -> NoDomainError in {low}..{high}")
    for uuid, low, high in obs.uuid_gone:
        if history.alive_throughout(uuid, low, high):
            wrong.append(f"info({uuid}) -> NoDomainError in {low}..{high}")
    checked = len(obs.found) + len(obs.sampled) + len(obs.id_gone) + len(obs.uuid_gone)
    return checked, len(wrong), wrong[:5]


def worker_process(uri: str, table: str, threads: int, seconds: float, ready: Queue[Any],
                   go: MpEvent, history_in: Queue[Any], results: Queue[Any]) -> None:
    """``threads`` clients in this process; report after checking against the history."""
    obs = Observations()
    stats = [ClientStats() for _ in range(threads)]
    started = threading.Event()
    deadline = [0.0]

    pool = [threading.Thread(target=client_loop, args=(uri, table, deadline, started, obs,
                                                       stats[i]), daemon=True)
            for i in range(threads)]
    for t in pool:
        t.start()
    ready.put(os.getpid())
    go.wait()
    deadline[0] = time.perf_counter() + seconds
    started.set()
    for t in pool:
        t.join()
    history: History = history_in.get()
    checked, wrong, examples = check(obs, history)
    total = ClientStats()
    for s in stats:
        for op in OPS:
            total.latency[op].merge(s.latency[op])
        total.loops += s.loops
        total.errors.update(s.errors)
        total.gone_answers += s.gone_answers
        total.examples += s.examples[: 5 - len(total.examples)]
    results.put((os.getpid(), threads, total, checked, wrong, examples))


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    guests: int
    clients: int
    layout: str
    latency: dict[str, Latency]
    loops: int
    errors: Counter[str]
    examples: list[str]
    gone_answers: int
    checked: int
    wrong: int
    wrong_examples: list[str]
    writer: WriterStats
    events: int
    history_failures: list[str]


def _initial(client: httpx.Client) -> tuple[str, int, dict[int, tuple[str, str]]]:
    r = client.get("/xvirt/host/domains")
    r.raise_for_status()
    rec = sxp.parse(r.content)
    assert isinstance(rec, list)
    domains = {}
    for d in rec[1:]:
        p = records.parse_domain_record(d)
        assert p.domid is not None
        domains[p.domid] = (p.uuid, p.name)
    return r.headers["X-Xvirt-Boot"], int(r.headers["X-Xvirt-Generation"]), domains


def run(seconds: float, guests: int, rate: float) -> Result:
    daemon = DaemonProcess(tcp=False)
    daemon.start()
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                          base_url="http://localhost", timeout=300) as client:
            client.post("/xvirt/host", data={
                "op": "create", "name": "load", "count": str(guests),
                "memory_kib": "262144", "vcpus": "1"}).raise_for_status()
            boot, start, domains = _initial(client)
        recorder = Recorder(start, domains)
        layout = [CLIENTS // 2] + [CLIENTS // 2 // PROCESSES] * PROCESSES
        ready: Queue[Any] = ctx.Queue()
        results: Queue[Any] = ctx.Queue()
        go = ctx.Event()
        inboxes: list[Queue[Any]] = []
        for threads in layout:
            inbox: Queue[Any] = ctx.Queue()
            inboxes.append(inbox)
            p = ctx.Process(target=worker_process, args=(
                daemon.unix_uri, str(daemon.state_dir / "table"), threads, seconds, ready, go,
                inbox, results), daemon=True)
            p.start()
            procs.append(p)
        for _ in layout:
            ready.get(timeout=120)

        admin = _AdminHost(daemon, 0x7FEF)
        owned = {uuid: domid for domid, (uuid, _) in domains.items() if domid != 0}
        names = {uuid: name for uuid, name in domains.values()}
        stop = threading.Event()
        writer = WriterStats()
        failures: list[str] = []
        events_client = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                                     base_url="http://localhost", timeout=30)
        threads_ = [
            threading.Thread(target=write_loop, args=(admin, owned, names, rate, stop, writer)),
            threading.Thread(target=collect_events,
                             args=(events_client, recorder, boot, stop, failures)),
        ]
        go.set()
        for t in threads_:
            t.start()
        time.sleep(seconds)  # the clients run for ``seconds`` from ``go``
        stop.set()
        threads_[0].join()
        threads_[1].join()
        events_client.close()
        admin.close()
        recorder.names.update(names)
        history = recorder.history()
        for inbox in inboxes:
            inbox.put(history)
        latency = {op: Latency() for op in OPS}
        total = Result(seconds, guests, CLIENTS,
                       f"1 process x {layout[0]} threads + {PROCESSES} processes x "
                       f"{layout[1]} threads", latency, 0, Counter(), [], 0, 0, 0, [], writer,
                       history.latest - start, failures)
        for _ in layout:
            _pid, _threads, stats, checked, wrong, examples = results.get(timeout=600)
            for op in OPS:
                latency[op].merge(stats.latency[op])
            total.loops += stats.loops
            total.errors.update(stats.errors)
            total.examples += stats.examples[: 5 - len(total.examples)]
            total.gone_answers += stats.gone_answers
            total.checked += checked
            total.wrong += wrong
            total.wrong_examples += examples[: 5 - len(total.wrong_examples)]
        for p in procs:
            p.join(30)
        return total
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        daemon.cleanup()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def render(r: Result, command: str, quick: bool) -> str:
    ops = sum(r.latency[op].count for op in OPS)
    errors = sum(r.errors.values())
    lines = ["## Load: 64 monitoring clients and a writer on one daemon", ""]
    if quick:
        lines += ["> **Smoke run (`--quick`)**: a short run; do not quote these.", ""]
    lines += [*machine_lines(command), "",
              f"One real `xvirt daemon` with {r.guests} guests, sampled for {r.seconds:g} s by "
              f"{r.clients} clients ({r.layout}), each with its own read-only connection over "
              "the unix socket, running the monitoring loop (`list_domain_ids`, then "
              "`lookup_by_id` + `info` + `close` per ID, then `conn.sample()`), while one "
              f"writer churns guests at {WRITER_RATE:g} operations/s through the "
              "administration route (create, reboot, save, restore, destroy in turn). "
              "All of it shares the machine's cores with the daemon.", "",
              "Every answer is checked against the host's event history: it must have held "
              "at some generation between the generations read just before and just after "
              "the call (see the docstring of `benchmarks/load.py`); a `NoDomainError` "
              "counts as a correct answer only when the history shows the ID or domain "
              "really was gone at some instant of the call.", "",
              "| call | calls | p50, ms | p90, ms | p99, ms | max, ms |",
              "|---|---:|---:|---:|---:|---:|"]
    for op in OPS:
        lat = r.latency[op]
        lines.append(f"| `{op}` | {lat.count} | {_ms(lat.percentile(50))} | "
                     f"{_ms(lat.percentile(90))} | {_ms(lat.percentile(99))} | "
                     f"{_ms(lat.max_s)} |")
    lines += ["", "Percentiles are read from 2% histogram buckets.", "",
              "| figure | value |", "|---|---:|",
              f"| operations (lookups, infos, samples) | {ops} |",
              f"| complete monitoring loops | {r.loops} |",
              f"| `NoDomainError` answers (all checked) | {r.gone_answers} |",
              f"| distinct answers checked | {r.checked} |",
              f"| **errors** | **{errors}** |",
              f"| **wrong answers** | **{r.wrong}** |",
              f"| writer operations | {sum(r.writer.ops.values())} |",
              f"| writer errors | {sum(r.writer.errors.values())} |",
              f"| host events during the run | {r.events} |", ""]
    for text in [*r.history_failures, *r.examples, *r.wrong_examples, *r.writer.examples]:
        lines.append(f"- `{text}`")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="load benchmark: 64 clients on one daemon")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run (~10 s)")
    parser.add_argument("--guests", type=int, default=GUESTS)
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else args.seconds
    r = run(seconds, args.guests, WRITER_RATE)
    ops = sum(r.latency[op].count for op in OPS)
    for op in OPS:
        lat = r.latency[op]
        print(f"{op:13s} n={lat.count:8d} p50 {_ms(lat.percentile(50))} p90 "
              f"{_ms(lat.percentile(90))} p99 {_ms(lat.percentile(99))} max {_ms(lat.max_s)} ms")
    print(f"operations {ops}, loops {r.loops}, errors {sum(r.errors.values())} "
          f"{dict(r.errors)}, wrong answers {r.wrong}, NoDomainError answers {r.gone_answers}, "
          f"checked {r.checked}, writer {dict(r.writer.ops)} errors {dict(r.writer.errors)}, "
          f"events {r.events}")
    for text in [*r.history_failures, *r.examples, *r.wrong_examples, *r.writer.examples]:
        print("  ", text)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_section("load", render(r, command, args.quick))
    print(f"wrote {REPORT.relative_to(REPO)}")
    failed = r.wrong or r.history_failures or sum(r.errors.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
