"""``xvirt top``: virt-top / xentop for xvirt hosts, interactive or in batch.

Data comes only from the public API: ``conn.host_info()`` once per host (and
again only after the host failed to answer, since it may have rebooted or been
replaced), then one ``conn.survey(groups)`` per refresh, which in steady state costs
zero control-plane requests: the block and network statistics groups only while
their columns are shown (one more data-plane call), and the count of inactive
domains (one control-plane request) only for the CSV, which has a column for it;
each refresh's cost is read from ``conn.stats()``, in the JSON and, with ``--cost``,
in the header. The arithmetic is in
:mod:`xvirt.tools.top_model`, the screen in :mod:`xvirt.tools.top_screen`; this module
fetches, loops and writes the batch, CSV (virt-top's layout) and JSON outputs.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, NoReturn, Protocol

import click

import xvirt
from xvirt.clock import Clock, SystemClock
from xvirt.tools import format as fmt
from xvirt.tools.common import URI_META_KEY
from xvirt.tools.top_model import (
    SORT_KEYS,
    SORT_LABELS,
    STATE_LEGEND,
    Cost,
    CpuTracker,
    HostFrame,
    columns,
    key_lines,
    parse_delay,
    row_cells,
    sorted_lines,
    state_counts,
    summary_lines,
)

__all__ = [
    "CSV_DOMAIN_COLUMNS",
    "CSV_HOST_COLUMNS",
    "DEFAULT_DELAY_S",
    "CsvWriter",
    "Fleet",
    "HostConnection",
    "HostWatcher",
    "JsonWriter",
    "TextWriter",
    "TopEnv",
    "open_readonly",
    "top_command",
]

#: virt-top's default delay between refreshes (``-d``), in seconds.
DEFAULT_DELAY_S = 3.0

#: virt-top's CSV columns: the host's, then these for each domain, in ID order.
CSV_HOST_COLUMNS = (
    "Hostname", "Time", "Arch", "Physical CPUs", "Count", "Running", "Blocked", "Paused",
    "Shutdown", "Shutoff", "Crashed", "Active", "Inactive", "%CPU",
    "Total hardware memory (KB)", "Total memory (KB)", "Total guest memory (KB)",
    "Total CPU time (ns)",
)
CSV_DOMAIN_COLUMNS = (
    "Domain ID", "Domain name", "CPU (ns)", "%CPU", "Mem (bytes)", "%Mem",
    "Block RDRQ", "Block WRRQ", "Net RXBY", "Net TXBY",
)

_ZERO_STATS = xvirt.ConnStats(0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class TopEnv:
    """What top takes from its surroundings, so tests can give it a ManualClock
    (``CliRunner().invoke(main, args, obj=TopEnv(clock=...))``) and never sleep.

    ``clock`` measures elapsed time and does the batch loop's waiting; ``wall``
    gives the time of day printed with each refresh; ``opener`` opens a host
    (tests wrap connections to stall or count them)."""

    clock: Clock = field(default_factory=SystemClock)
    wall: Callable[[], float] = time.time
    opener: Callable[[str], HostConnection] = field(default=lambda uri: open_readonly(uri))


# -- fetching ---------------------------------------------------------------------------

class HostConnection(Protocol):
    """What top asks of a connection: :class:`xvirt.Connection` is one; tests give
    wrappers that stall or count."""

    def host_info(self) -> xvirt.HostInfo: ...

    def survey(self, groups: Iterable[xvirt.StatGroup] = ...) -> xvirt.Survey: ...

    def list_defined(self) -> list[xvirt.Definition]: ...

    def stats(self) -> xvirt.ConnStats: ...

    def close(self) -> None: ...


def open_readonly(uri: str) -> HostConnection:
    """How top opens a host: read-only, through the public API."""
    return xvirt.open(uri, readonly=True)


class HostWatcher:
    """One host: its connection, its facts (fetched once) and its CPU and I/O deltas.

    :meth:`refresh` never raises an xvirt error: a host that does not answer
    gives a frame saying why, and the next refresh tries again (reopening the
    connection if it was never made; an open one reconnects by itself). ``groups``
    are the statistics groups each survey asks for (none: nothing more is asked); a
    host that reports none (UnsupportedError) is surveyed without them from then on,
    its I/O columns ``-``. ``inactive``: count the domains defined and not running
    (one control-plane request per refresh)."""

    def __init__(self, uri: str, clock: Clock,
                 opener: Callable[[str], HostConnection] = open_readonly, *,
                 groups: frozenset[xvirt.StatGroup] = frozenset(),
                 inactive: bool = False) -> None:
        self.uri = uri
        self.groups = groups
        self._inactive = inactive
        self._stats_refused = False
        self._clock = clock
        self._opener = opener
        self._conn: HostConnection | None = None
        self._info: xvirt.HostInfo | None = None
        self._info_stale = True
        self._tracker = CpuTracker()
        self._closed = False

    @property
    def info(self) -> xvirt.HostInfo | None:
        """The host's facts as last learnt (None until it first answered)."""
        return self._info

    @property
    def connection(self) -> HostConnection | None:
        """The connection, once open: its ``stats()`` are what each frame's cost is from."""
        return self._conn

    def connect(self) -> None:
        """Open the read-only connection now (raises what ``xvirt.open`` raises)."""
        if self._closed:  # a refresh still under way when top quit must not reopen it
            raise xvirt.ConnectionClosedError("xvirt top is closing", uri=self.uri)
        if self._conn is None:
            self._conn = self._opener(self.uri)

    def refresh(self) -> HostFrame:
        before = self._conn.stats() if self._conn is not None else _ZERO_STATS
        try:
            self.connect()
            assert self._conn is not None
            conn = self._conn
            if self._info_stale:
                self._learn_host(conn.host_info())
            assert self._info is not None
            # The CPU times are read at some instant of the survey: time both ends.
            started = self._clock.now()
            survey = self._survey(conn)
            finished = self._clock.now()
            inactive = self._count_inactive(conn)
        except xvirt.XvirtError as exc:
            self._info_stale = True  # when it answers again it may be another boot
            after = self._conn.stats() if self._conn is not None else _ZERO_STATS
            return HostFrame(self.uri, self._info, None, (), Cost.between(before, after),
                             error=str(exc) or type(exc).__name__)
        rows, elapsed = self._tracker.step(started, survey, self._info.cpus,
                                           self._info.memory_kib, finished=finished)
        return HostFrame(self.uri, self._info, elapsed, rows,
                         Cost.between(before, conn.stats()), inactive=inactive)

    def _survey(self, conn: HostConnection) -> xvirt.Survey:
        if not self.groups or self._stats_refused:
            return conn.survey()
        try:
            return conn.survey(self.groups)
        except xvirt.UnsupportedError:
            self._stats_refused = True  # an older host: its I/O columns stay "-"
            return conn.survey()

    def _count_inactive(self, conn: HostConnection) -> int | None:
        if not self._inactive:
            return None
        try:
            return len(conn.list_defined())
        except xvirt.UnsupportedError:
            self._inactive = False
            return None

    def _learn_host(self, info: xvirt.HostInfo) -> None:
        if self._info is not None and info.boot_id != self._info.boot_id:
            self._tracker.reset()  # a new boot: no figure from before it means anything now
        self._info = info
        self._info_stale = False

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()


class _Slot:
    """One host's place in the fleet: the refresh under way (at most one) and the
    newest frame it gave that has not been shown yet."""

    def __init__(self, watcher: HostWatcher) -> None:
        self.watcher = watcher
        self.running_since: float | None = None  # on the fleet's clock
        self.ready: HostFrame | None = None
        self.crash: BaseException | None = None


class Fleet:
    """The hosts of one ``xvirt top``, each refreshed on its own schedule.

    Each host's refresh runs on a thread of its own, and a host has at most one
    under way. :meth:`refresh` starts one for every host that has none, waits for
    those up to ``wait_s`` seconds, and answers at once for the rest: a host
    still busy (a daemon restarting, a hung guest's host) is a frame saying how
    long it has been refreshing, so one slow or absent host never delays the
    others; when it answers, its frame is shown at the next refresh. The threads
    are daemons: quitting never waits for a host that does not answer."""

    def __init__(self, uris: Sequence[str], clock: Clock,
                 opener: Callable[[str], HostConnection] = open_readonly, *,
                 groups: frozenset[xvirt.StatGroup] = frozenset(),
                 inactive: bool = False) -> None:
        self._clock = clock
        self.watchers = [HostWatcher(uri, clock, opener, groups=groups, inactive=inactive)
                         for uri in uris]
        self._slots = [_Slot(w) for w in self.watchers]
        self._done = threading.Condition()

    def connect(self, *, strict: bool) -> None:
        """Open every connection; an unreachable host raises only when ``strict``
        (the interactive view shows it and keeps retrying); anything else, such as
        a malformed URI or a refused login, always raises: retrying cannot help."""
        for watcher in self.watchers:
            try:
                watcher.connect()
            except xvirt.HostUnreachableError:
                if strict:
                    raise

    def refresh(self, wait_s: float | None = None) -> list[HostFrame]:
        """A frame per host, in the order given. Hosts with no refresh under way start
        one; those are waited for up to ``wait_s`` real seconds (None: until they
        answer), hosts already busy not at all."""
        started: list[_Slot] = []
        with self._done:
            for slot in self._slots:
                if slot.running_since is None:
                    slot.running_since = self._clock.now()
                    started.append(slot)
        for slot in started:
            threading.Thread(target=self._run, args=(slot,), daemon=True,
                             name=f"xvirt-top {slot.watcher.uri}").start()
        with self._done:
            self._done.wait_for(lambda: all(s.running_since is None for s in started),
                                timeout=wait_s)
            crashes = [s.crash for s in self._slots if s.crash is not None]
            if crashes:
                raise crashes[0]
            frames = []
            for slot in self._slots:
                if slot.ready is not None:
                    frames.append(slot.ready)
                    slot.ready = None
                else:
                    assert slot.running_since is not None  # idle slots were started above
                    frames.append(self._pending(slot, self._clock.now() - slot.running_since))
            return frames

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` real seconds until no refresh is under way; True if none is."""
        with self._done:
            return self._done.wait_for(
                lambda: all(s.running_since is None for s in self._slots), timeout=timeout)

    def _run(self, slot: _Slot) -> None:
        try:
            frame = slot.watcher.refresh()
        except BaseException as exc:  # a bug, not a host's error: raised by refresh()
            with self._done:
                slot.crash = exc
                slot.running_since = None
                self._done.notify_all()
            return
        with self._done:
            slot.ready = frame
            slot.running_since = None
            self._done.notify_all()

    @staticmethod
    def _pending(slot: _Slot, busy_s: float) -> HostFrame:
        watcher = slot.watcher
        return HostFrame(watcher.uri, watcher.info, None, (), Cost(0, 0),
                         error=f"no answer yet: refreshing for {busy_s:.1f} s",
                         pending_s=busy_s)

    def close(self) -> None:
        for watcher in self.watchers:
            watcher.close()


# -- outputs ----------------------------------------------------------------------------

class Writer(Protocol):
    def write(self, frames: Sequence[HostFrame], wall: float) -> None: ...


def _clock_text(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


_LEFT = frozenset({"HOST", "S", "NAME"})  # words; the other columns are numbers


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns separated by two spaces, numbers right-aligned and words left-aligned
    as in top, the last column (the name) unpadded; cells escaped so a name cannot
    break a line."""
    table = [[fmt.safe_text(c) for c in header], *([fmt.safe_text(c) for c in r] for r in rows)]
    widths = [max(fmt.display_width(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for r in table:
        cells = []
        for name, cell, width in zip(header[:-1], r, widths, strict=False):
            pad = " " * (width - fmt.display_width(cell))
            cells.append(cell + pad if name in _LEFT else pad + cell)
        lines.append("  ".join([*cells, r[-1]]).rstrip() + "\n")
    return "".join(lines)


class TextWriter:
    """Batch mode's plain text, like ``top -b``: a block per refresh, with the domain
    columns ``shown`` (:func:`~xvirt.tools.top_model.columns`); with ``cost``, each
    host's header says what its refresh cost."""

    def __init__(self, out: IO[str], delay_s: float, sort: str,
                 shown: Sequence[str] = columns(), *, cost: bool = False) -> None:
        self._out, self._delay, self._sort = out, delay_s, sort
        self._shown = tuple(shown)
        self._cost = cost

    def write(self, frames: Sequence[HostFrame], wall: float) -> None:
        parts = [f"xvirt top - {_clock_text(wall)}  delay {self._delay:g} s  "
                 f"sorted by {SORT_LABELS[self._sort]}\n"]
        for frame in frames:
            parts.extend(line + "\n"
                         for line in summary_lines(frame, self._delay, cost=self._cost))
        parts.append("\n")
        several = len(frames) > 1
        header = ("HOST", *self._shown) if several else self._shown
        lines = sorted_lines(frames, self._sort)
        parts.append(_table(header, [
            ((f.label,) if several else ()) + row_cells(r, self._shown) for f, r in lines]))
        for f, r in lines:
            if r.error is not None:
                parts.append(f"no answer from {r.name} (ID {r.id}) on {f.label}: {r.error}\n")
        parts.append("\n")
        self._out.write("".join(parts))
        self._out.flush()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


class CsvWriter:
    """virt-top's CSV: a header row, then one row per host per refresh (its columns,
    then each domain's, in ID order). A host that did not answer gets no row for
    that refresh. Block and network I/O are each domain's since the previous refresh,
    as virt-top writes them; a figure not known (the first refresh that sees a domain,
    a host that reports no statistics, columns turned off) is left empty, as virt-top
    leaves statistics it could not get."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._csv = csv.writer(out)
        self._csv.writerow([*CSV_HOST_COLUMNS, *CSV_DOMAIN_COLUMNS])
        out.flush()

    def write(self, frames: Sequence[HostFrame], wall: float) -> None:
        for frame in frames:
            if frame.error is None and frame.info is not None:
                self._csv.writerow(self._row(frame, frame.info, _clock_text(wall)))
        self._out.flush()

    @staticmethod
    def _row(frame: HostFrame, info: xvirt.HostInfo, clock: str) -> list[str]:
        c = state_counts(frame.rows)
        delta = frame.cpu_delta_ns
        # virt-top's columns are libvirt's states, which virsh's words name (Xen's
        # dying is "in shutdown", its shut down "shut off": xvirt.tools.format).
        row = [
            info.hostname, clock, info.arch, str(info.cpus), str(len(frame.rows)),
            str(c["running"]), str(c["idle"]), str(c["paused"]), str(c["in shutdown"]),
            str(c["shut off"]), str(c["crashed"]), str(len(frame.rows)),
            "" if frame.inactive is None else str(frame.inactive),
            _number(frame.cpu_percent), str(info.memory_kib), str(frame.used_memory_kib),
            str(frame.guest_memory_kib), "" if delta is None else str(delta),
        ]
        for r in frame.rows:
            row += [
                str(r.id), r.name,
                "" if r.cpu_delta_ns is None else str(r.cpu_delta_ns), _number(r.cpu_percent),
                "" if r.memory_kib is None else str(r.memory_kib * 1024),
                "" if r.memory_kib is None or info.memory_kib <= 0
                else str(100 * r.memory_kib // info.memory_kib),
                *("" if v is None else str(v)
                  for v in (r.rd_reqs, r.wr_reqs, r.rx_bytes, r.tx_bytes)),
            ]
        return row


class JsonWriter:
    """One JSON object per refresh, one per line; names carry their units."""

    def __init__(self, out: IO[str], delay_s: float) -> None:
        self._out, self._delay, self._iteration = out, delay_s, 0

    def write(self, frames: Sequence[HostFrame], wall: float) -> None:
        self._iteration += 1
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall)),
            "iteration": self._iteration,
            "delay_s": self._delay,
            "hosts": [host_dict(f) for f in frames],
        }
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()


def host_dict(frame: HostFrame) -> dict[str, object]:
    """One host of a JSON refresh; figures unknown at this refresh are null."""
    info = frame.info
    return {
        "uri": frame.uri,
        "hostname": None if info is None else info.hostname,
        "arch": None if info is None else info.arch,
        "cpus": None if info is None else info.cpus,
        "memory_kib": None if info is None else info.memory_kib,
        "used_memory_kib": frame.used_memory_kib,
        "guest_memory_kib": frame.guest_memory_kib,
        "elapsed_s": frame.elapsed_s,
        "cpu_percent": frame.cpu_percent,
        "cpu_delta_ns": frame.cpu_delta_ns,
        "domains_by_state": state_counts(frame.rows),
        "cost": {"control_requests": frame.cost.control_requests,
                 "data_calls": frame.cost.data_calls},
        "error": frame.error,
        "pending_s": frame.pending_s,
        "inactive": frame.inactive,
        "domains": [
            {"id": r.id, "name": r.name, "uuid": r.uuid, "state": fmt.state_word(r.state),
             "memory_kib": r.memory_kib, "memory_percent": r.memory_percent,
             "vcpus": r.vcpus, "cpu_time_ns": r.cpu_time_ns, "cpu_delta_ns": r.cpu_delta_ns,
             "cpu_percent": r.cpu_percent,
             # since the previous refresh, as the CSV (null: unknown or not asked for)
             "block_rd_reqs": r.rd_reqs, "block_wr_reqs": r.wr_reqs,
             "block_rd_bytes": r.rd_bytes, "block_wr_bytes": r.wr_bytes,
             "net_rx_bytes": r.rx_bytes, "net_tx_bytes": r.tx_bytes,
             "devices": [{"kind": d.kind, "device": d.device, "source": d.source,
                          **({"rd_bytes": d.a_bytes, "wr_bytes": d.b_bytes,
                              "rd_reqs": d.a_count, "wr_reqs": d.b_count}
                             if d.kind == "block" else
                             {"rx_bytes": d.a_bytes, "tx_bytes": d.b_bytes,
                              "rx_packets": d.a_count, "tx_packets": d.b_count})}
                         for d in r.devices]}
            for r in frame.rows if r.state is not None
        ],
        "failures": [{"id": r.id, "name": r.name, "uuid": r.uuid, "error": r.error}
                     for r in frame.rows if r.state is None],
    }


# -- the loops ----------------------------------------------------------------------------

def run_batch(fetch: Callable[[], Sequence[HostFrame]], writers: Sequence[Writer], env: TopEnv,
              delay_s: float, iterations: int | None) -> None:
    """Refresh every ``delay_s`` seconds (the wait on ``env.clock``) until
    ``iterations`` refreshes have been written, or for ever."""
    done = 0
    while True:
        started = env.clock.now()
        frames = fetch()
        wall = env.wall()
        for writer in writers:
            writer.write(frames, wall)
        done += 1
        if iterations is not None and done >= iterations:
            return
        env.clock.sleep(max(0.0, started + delay_s - env.clock.now()))


def _default_uri() -> str:
    """The URI given before the subcommand (``xvirt -c URI top``), else the one
    ``xvirt.open(None)`` opens: named up front so a host that is down can still be
    named on the screen."""
    ctx = click.get_current_context(silent=True)
    given = None if ctx is None else ctx.find_root().meta.get(URI_META_KEY)
    return given if isinstance(given, str) else xvirt.default_uri()


def _fail(message: str) -> NoReturn:
    """As the other commands: one ``error:`` line on stderr, exit status 1."""
    click.echo("error: " + " ".join(message.splitlines()), err=True)
    raise click.exceptions.Exit(1)


def _iterations(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise click.BadParameter(f"a whole number >= 1, not {text!r}",
                                 param_hint="'-n' / '--iterations'")
    return int(text)


def _open_csv(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write the CSV file {path!r}: {exc.strerror or exc}")


_HELP = "\n".join([
    "Show the domains of one or more hosts, refreshed, as virt-top and xentop do.",
    "",
    "%CPU is the share of the host's CPUs a domain used since the previous refresh "
    "(blank on the first refresh that sees it); RDRQ/WRRQ (RDBY/WRBY) and RXBY/TXBY "
    "are the block and network I/O since then.",
    "",
    "\b", *STATE_LEGEND,
    "",
    "\b", "Keys on the screen:", *key_lines(),
])


@click.command("top", help=_HELP)
@click.option("-b", "--batch", is_flag=True,
              help="Print plain text at each refresh instead of the full-screen view.")
@click.option("-n", "--iterations", metavar="N", default=None,
              help="Stop after N refreshes [default: never].")
@click.option("-d", "--delay", metavar="SECONDS", default=str(DEFAULT_DELAY_S),
              show_default=True, help="Seconds between refreshes.")
@click.option("-o", "--sort", type=click.Choice(SORT_KEYS), default="cpu", show_default=True,
              help="Sort order (keys c/P, m/M, t/T, i, n change it on the screen).")
@click.option("--csv", "csv_path", metavar="FILE",
              help="Also write virt-top's CSV layout to FILE ('-': stdout, instead of text).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per refresh, one per line (implies --batch).")
@click.option("-c", "--connect", "--uri", "uris", metavar="URI", multiple=True,
              help="Host to watch; repeat to watch several in one view [default: "
                   "$XVIRT_DEFAULT_URI, $LIBVIRT_DEFAULT_URI, sim:///default].")
@click.option("--block-in-bytes", is_flag=True,
              help="Block I/O in bytes (RDBY, WRBY) instead of requests (key B on the screen).")
@click.option("--no-block", "--no-csv-block", "no_block", is_flag=True,
              help="No block columns, and no block statistics asked of the hosts.")
@click.option("--no-net", "--no-csv-net", "no_net", is_flag=True,
              help="No network columns, and no network statistics asked of the hosts.")
@click.option("--cost", is_flag=True,
              help="Also show what each refresh cost each host's connection: "
                   "control-plane requests and data-plane calls (xvirt's cache at work).")
@click.pass_context
def top_command(ctx: click.Context, batch: bool, iterations: str | None, delay: str, sort: str,
                csv_path: str | None, as_json: bool, uris: tuple[str, ...],
                block_in_bytes: bool, no_block: bool, no_net: bool, cost: bool) -> None:
    """``xvirt top`` (its help, with the keys, is ``_HELP``)."""
    env = ctx.find_object(TopEnv) or TopEnv()
    try:
        delay_s = parse_delay(delay)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'-d' / '--delay'") from None
    count = _iterations(iterations)
    if as_json and csv_path == "-":
        raise click.UsageError("--json and --csv - both want stdout; give --csv a file name")
    interactive = not (batch or as_json or csv_path == "-")
    if interactive and not (sys.stdin.isatty() and sys.stdout.isatty()):
        _fail("the full-screen view needs a terminal; use --batch, --json or --csv -")
    groups = frozenset({*(() if no_block else (xvirt.StatGroup.BLOCK,)),
                        *(() if no_net else (xvirt.StatGroup.NET,))})
    shown = columns(block=not no_block, net=not no_net, block_bytes=block_in_bytes)
    # Only the CSV has a column for the inactive domains: only it pays for their count.
    fleet = Fleet(list(uris) or [_default_uri()], env.clock, env.opener, groups=groups,
                  inactive=csv_path is not None)
    csv_out: IO[str] | None = None
    try:
        try:
            fleet.connect(strict=not interactive)
        except xvirt.XvirtError as exc:
            _fail(str(exc))
        writers: list[Writer] = []
        if csv_path is not None:
            csv_out = _open_csv(csv_path)
            writers.append(CsvWriter(csv_out))
        if as_json:
            writers.append(JsonWriter(sys.stdout, delay_s))
        elif csv_path != "-":
            writers.append(TextWriter(sys.stdout, delay_s, sort, shown, cost=cost))
        if interactive:
            _run_screen(fleet, env, [w for w in writers if not isinstance(w, TextWriter)],
                        delay_s, sort, count, block=not no_block, net=not no_net,
                        block_bytes=block_in_bytes, cost=cost)
        else:
            # Ctrl-C ends batch mode, as it ends top -b: what was written stands (flushed
            # here), and the command ends as every interrupted one does (status 130).
            try:
                run_batch(lambda: fleet.refresh(wait_s=delay_s), writers, env, delay_s, count)
            except KeyboardInterrupt:
                for out in (sys.stdout, csv_out):
                    if out is not None:
                        with contextlib.suppress(OSError, ValueError):
                            out.flush()
                raise
    finally:
        fleet.close()
        if csv_out is not None and csv_out is not sys.stdout:
            csv_out.close()


def _run_screen(fleet: Fleet, env: TopEnv, writers: Sequence[Writer], delay_s: float, sort: str,
                iterations: int | None, *, block: bool = True, net: bool = True,
                block_bytes: bool = False, cost: bool = False) -> None:
    from xvirt.tools.top_screen import TopApp  # Textual loads only for the screen

    def fetch() -> list[HostFrame]:
        frames = fleet.refresh(wait_s=app.delay_s)  # the delay as the user last set it
        for writer in writers:  # the CSV file, if any: virt-top logs it from the screen too
            writer.write(frames, env.wall())
        return frames

    app = TopApp(fetch, delay_s=delay_s, sort=sort, iterations=iterations, wall=env.wall,
                 block=block, net=net, block_bytes=block_bytes, cost=cost)
    app.run()
