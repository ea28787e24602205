"""What ``xvirt top`` shows, computed from facts already fetched: no I/O, no clock.

%CPU follows virt-top: a domain's share is ``100 * delta cpu_time_ns / (elapsed
ns * host CPUs)`` and the host's is the sum of its domains'. The previous figure
is found by UUID, never by ID: IDs change on reboot, migration and restore and
are reused, so a figure kept by ID would subtract one domain's CPU time from
another's and show a spike (or a negative share) that never happened.

The elapsed time is that between the two readings of the CPU times. A survey
reads them at some instant between its start and its end, so each survey is
timed at both ends and the elapsed time is the longest the two readings can be
apart (this end minus the previous start): the share is then never above what
the domain used (a domain never above 100% per vCPU, a host never above 100%
per CPU, whatever a survey's duration), and exact when surveys take no time.
When the readings' interval is not known to within a factor of two (a survey
that took long against the delay, as during a daemon restart) the share is
unknown (``-``) rather than a guess: before, the start of a slow survey was
taken as the reading's instant and a host showed 171.6% on 2 CPUs.

Block and network figures follow virt-top too: RDRQ/WRRQ (or RDBY/WRBY, virt-top's
``B``), RXBY/TXBY are what each domain did since the previous refresh, summed over its
disks and NICs, from the statistics the survey carries (``survey(groups)``); per device
for virt-top's block (``3``) and network (``2``) views. A counter that went back (the
domain rebooted) or a device not seen before gives ``-`` rather than a negative figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import xvirt
from xvirt.tools import format as fmt

__all__ = [
    "COLUMNS",
    "DEVICE_COLUMNS",
    "HEADER_WIDTH",
    "KEYS",
    "SORT_KEYS",
    "SORT_LABELS",
    "STATE_LEGEND",
    "Cost",
    "CpuTracker",
    "DeviceRow",
    "DomainRow",
    "HostFrame",
    "columns",
    "cpu_time_text",
    "device_cells",
    "device_lines",
    "key_lines",
    "parse_delay",
    "row_cells",
    "sorted_lines",
    "state_counts",
    "summary_lines",
]

#: Sort orders, as virt-top's ``-o`` names them.
SORT_KEYS: Final = ("cpu", "mem", "time", "id", "name", "netrx", "nettx", "blockrdrq",
                    "blockwrrq")
SORT_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {"cpu": "%CPU", "mem": "memory", "time": "CPU time", "id": "ID", "name": "name",
     "netrx": "bytes received", "nettx": "bytes sent", "blockrdrq": "read requests",
     "blockwrrq": "write requests"}
)
#: The columns of a domain row, in display order (as virt-top: I/O after the state,
#: NAME last), with block and network shown and block I/O in requests. ``S`` is
#: virt-top's state column: one letter (:func:`xvirt.tools.format.state_letter`).
COLUMNS: Final = ("ID", "S", "RDRQ", "WRRQ", "RXBY", "TXBY", "%CPU", "%MEM", "MEM(k)",
                  "VCPUS", "TIME", "NAME")
#: The columns of virt-top's block (``3``) and network (``2``) views: one row per device.
DEVICE_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "block": ("ID", "DEVICE", "RDBY", "WRBY", "RDRQ", "WRRQ", "SOURCE", "NAME"),
    "net": ("ID", "DEVICE", "RXBY", "TXBY", "RXPK", "TXPK", "BRIDGE", "NAME"),
})
#: Word for a domain whose figures could not be read, in state counts.
NO_ANSWER: Final = "no answer"
#: The columns each header line keeps within: a classic 80-column terminal, less the
#: screen's one-column margin on each side.
HEADER_WIDTH: Final = 78
#: The states a header always counts; the others only when some domain is in them.
_ALWAYS_COUNTED = ("running", "idle", "paused")
#: Every key of the screen and what it does, as the help screen (h or ?) lists them.
KEYS: Final = (
    (("c", "P"), "sort by %CPU"),
    (("m", "M"), "sort by memory"),
    (("t", "T"), "sort by CPU time"),
    (("i",), "sort by ID"),
    (("n",), "sort by name"),
    (("B",), "block I/O in bytes, or in requests"),
    (("0",), "the domains"),
    (("2",), "network view: a row per network interface"),
    (("3",), "block view: a row per disk"),
    (("d", "s"), "set the delay between refreshes"),
    (("space",), "refresh now"),
    (("h", "?"), "show these keys"),
    (("q",), "quit"),
)
#: What the letters of the ``S`` column say (virt-top's letters for virsh's words).
STATE_LEGEND: Final = ("S (state): R running, S idle, P paused, D in shutdown, O shut off,",
                       "X crashed, ? no answer")


def key_lines(indent: str = "  ") -> list[str]:
    """:data:`KEYS` as aligned lines, for the help screen and ``xvirt top --help``."""
    width = max(len(", ".join(keys)) for keys, _ in KEYS)
    return [f"{indent}{', '.join(keys):<{width}}  {what}" for keys, what in KEYS]
#: A share is shown only when the longest the two readings can be apart is at most this
#: many times the shortest (both surveys quick against the time between them).
MAX_ELAPSED_SPREAD: Final = 2.0


def columns(*, block: bool = True, net: bool = True,
            block_bytes: bool = False) -> tuple[str, ...]:
    """The domain columns shown: block I/O in requests (RDRQ/WRRQ) or, with
    ``block_bytes`` (virt-top's ``B``), in bytes (RDBY/WRBY); without ``block`` or
    ``net`` their columns are left out (and their statistics not asked for)."""
    out: list[str] = []
    for name in COLUMNS:
        if name in ("RDRQ", "WRRQ"):
            if block:
                out.append({"RDRQ": "RDBY", "WRRQ": "WRBY"}[name] if block_bytes else name)
        elif name in ("RXBY", "TXBY"):
            if net:
                out.append(name)
        else:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One disk (``kind`` "block": ``a`` reads, ``b`` writes) or NIC ("net": ``a``
    received by the guest, ``b`` sent) of a domain, and what it did since the previous
    refresh: bytes and requests (packets); None where unknown."""

    kind: str
    device: str
    source: str | None
    a_bytes: int | None
    b_bytes: int | None
    a_count: int | None
    b_count: int | None


#: A device's counters at one refresh: (a bytes, b bytes, a count, b count).
_Counters = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class DomainRow:
    """One domain at one refresh. ``state`` None: it did not answer (``error`` says why).

    ``cpu_delta_ns`` and ``cpu_percent`` are None when there is nothing to
    subtract: the first refresh that sees the domain, or its CPU time restarted
    (a reboot resets it), or no time elapsed."""

    uuid: str
    id: int
    name: str
    state: xvirt.DomainState | None
    memory_kib: int | None
    vcpus: int | None
    cpu_time_ns: int | None
    cpu_delta_ns: int | None
    cpu_percent: float | None
    memory_percent: float | None
    error: str | None = None
    #: Since the previous refresh, summed over the domain's disks and NICs: None when
    #: not asked for, or not known for every device.
    rd_reqs: int | None = None
    wr_reqs: int | None = None
    rd_bytes: int | None = None
    wr_bytes: int | None = None
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    #: Each disk and NIC, when the statistics were asked for.
    devices: tuple[DeviceRow, ...] = ()


@dataclass(frozen=True, slots=True)
class Cost:
    """What one refresh cost one connection, from ``conn.stats()`` before and after."""

    control_requests: int
    data_calls: int

    @classmethod
    def between(cls, before: xvirt.ConnStats, after: xvirt.ConnStats) -> Cost:
        return cls(after.control_requests - before.control_requests,
                   after.data_calls - before.data_calls)


@dataclass(frozen=True, slots=True)
class HostFrame:
    """One host at one refresh. ``info`` is the last host facts known (None until the
    host first answered); ``error`` says why this refresh got no domains."""

    uri: str
    info: xvirt.HostInfo | None
    elapsed_s: float | None
    rows: tuple[DomainRow, ...]
    cost: Cost
    error: str | None = None
    #: Seconds the host's refresh has been under way when it had not answered by the
    #: time this frame was shown (``error`` says so too); None for a frame it answered.
    pending_s: float | None = None
    #: Domains defined and not running (libvirt's inactive), when counted.
    inactive: int | None = None

    @property
    def label(self) -> str:
        """The host's own name once known, else the URI it was asked for by."""
        return self.info.hostname if self.info is not None else self.uri

    @property
    def used_memory_kib(self) -> int:
        """Sum of the memory of the domains that answered (Domain-0 included)."""
        return sum(r.memory_kib for r in self.rows if r.memory_kib is not None)

    @property
    def guest_memory_kib(self) -> int:
        """:attr:`used_memory_kib` without Domain-0 (virt-top's "guest memory")."""
        return sum(r.memory_kib for r in self.rows if r.memory_kib is not None and r.id != 0)

    @property
    def cpu_percent(self) -> float | None:
        """virt-top's host %CPU: the sum of the domains' (None on a first refresh)."""
        if self.elapsed_s is None or self.error is not None:
            return None
        return sum(r.cpu_percent for r in self.rows if r.cpu_percent is not None)

    @property
    def cpu_delta_ns(self) -> int | None:
        """CPU time all domains used since the previous refresh (None on a first one)."""
        if self.elapsed_s is None or self.error is not None:
            return None
        return sum(r.cpu_delta_ns for r in self.rows if r.cpu_delta_ns is not None)


class CpuTracker:
    """Each domain's CPU time at the previous refresh, by UUID, and when that was.

    Only the domains of the previous refresh are kept (as virt-top does), so a
    domain that did not answer, or was away, starts again with a blank %CPU
    instead of an average over a gap the elapsed time would not match."""

    def __init__(self) -> None:
        self._previous: dict[str, int] = {}
        self._devices: dict[str, dict[tuple[str, str], _Counters]] = {}
        self._when: tuple[float, float] | None = None  # the previous survey's start, end

    def reset(self) -> None:
        """Forget everything: the host is another one (a new boot)."""
        self._previous.clear()
        self._devices.clear()
        self._when = None

    def step(self, now: float, survey: xvirt.Survey, cpus: int, host_memory_kib: int, *,
             finished: float | None = None) -> tuple[tuple[DomainRow, ...], float | None]:
        """Rows for ``survey``, begun at ``now`` and ended at ``finished`` (seconds;
        default ``now``), and the elapsed seconds since the previous step: the longest
        its CPU times and the previous ones can be apart (None on the first step, or
        when that is more than :data:`MAX_ELAPSED_SPREAD` times the shortest)."""
        end = now if finished is None else max(now, finished)
        elapsed = None if self._when is None else end - self._when[0]
        shortest = None if self._when is None else now - self._when[1]
        if (elapsed is not None and shortest is not None
                and elapsed > MAX_ELAPSED_SPREAD * shortest):
            elapsed = None  # the readings' interval is not known well enough for a share
        usable = elapsed is not None and elapsed > 0 and cpus > 0
        capacity_ns = (elapsed or 0.0) * 1e9 * cpus
        rows: list[DomainRow] = []
        current: dict[str, int] = {}
        devices: dict[str, dict[tuple[str, str], _Counters]] = {}
        for sample in survey.samples:
            ident, info = sample.identity, sample.info
            current[ident.uuid] = info.cpu_time_ns
            before = self._previous.get(ident.uuid)
            delta = None
            if usable and before is not None and info.cpu_time_ns >= before:
                delta = info.cpu_time_ns - before
            io = _io(sample.stats, self._devices.get(ident.uuid, {}))
            if sample.stats is not None:
                devices[ident.uuid] = io.counters
            rows.append(DomainRow(
                uuid=ident.uuid, id=ident.id, name=ident.name, state=info.state,
                memory_kib=info.memory_kib, vcpus=info.vcpus, cpu_time_ns=info.cpu_time_ns,
                cpu_delta_ns=delta,
                cpu_percent=None if delta is None else 100.0 * delta / capacity_ns,
                memory_percent=(100.0 * info.memory_kib / host_memory_kib
                                if host_memory_kib > 0 else None),
                rd_reqs=io.sums[0], wr_reqs=io.sums[1], rd_bytes=io.sums[2],
                wr_bytes=io.sums[3], rx_bytes=io.sums[4], tx_bytes=io.sums[5],
                devices=io.rows,
            ))
        for failure in survey.failures:
            ident = failure.identity
            rows.append(DomainRow(
                uuid=ident.uuid, id=ident.id, name=ident.name, state=None, memory_kib=None,
                vcpus=None, cpu_time_ns=None, cpu_delta_ns=None, cpu_percent=None,
                memory_percent=None, error=str(failure.error) or NO_ANSWER,
            ))
        self._previous = current
        self._devices = devices
        self._when = (now, end)
        rows.sort(key=lambda r: r.id)
        return tuple(rows), elapsed


@dataclass(frozen=True, slots=True)
class _Io:
    """One domain's devices at one refresh: their counters (kept for the next), their
    rows, and the domain's sums (rd reqs, wr reqs, rd bytes, wr bytes, rx, tx bytes)."""

    counters: dict[tuple[str, str], _Counters]
    rows: tuple[DeviceRow, ...]
    sums: tuple[int | None, ...]


_NO_IO = _Io({}, (), (None,) * 6)


def _io(stats: xvirt.DomainStats | None,
        before: Mapping[tuple[str, str], _Counters]) -> _Io:
    """The devices of ``stats`` against their counters at the previous refresh."""
    if stats is None:
        return _NO_IO
    counters: dict[tuple[str, str], _Counters] = {}
    rows: list[DeviceRow] = []
    for disk in stats.blocks or ():
        counters["block", disk.name] = (disk.rd_bytes, disk.wr_bytes, disk.rd_reqs,
                                        disk.wr_reqs)
        rows.append(_device_row("block", disk.name, disk.path, counters["block", disk.name],
                                before.get(("block", disk.name))))
    for nic in stats.nets or ():
        counters["net", nic.name] = (nic.rx_bytes, nic.tx_bytes, nic.rx_packets,
                                     nic.tx_packets)
        rows.append(_device_row("net", nic.name, nic.bridge, counters["net", nic.name],
                                before.get(("net", nic.name))))

    def total(kind: str, field: str, known: bool) -> int | None:
        if not known:
            return None
        values = [getattr(r, field) for r in rows if r.kind == kind]
        return None if any(v is None for v in values) else sum(values)

    blocks, nets = stats.blocks is not None, stats.nets is not None
    return _Io(counters, tuple(rows), (
        total("block", "a_count", blocks), total("block", "b_count", blocks),
        total("block", "a_bytes", blocks), total("block", "b_bytes", blocks),
        total("net", "a_bytes", nets), total("net", "b_bytes", nets)))


def _device_row(kind: str, device: str, source: str | None, now: _Counters,
                before: _Counters | None) -> DeviceRow:
    if before is None or any(n < b for n, b in zip(now, before, strict=True)):
        return DeviceRow(kind, device, source, None, None, None, None)  # new, or reset
    a_bytes, b_bytes, a_count, b_count = (n - b for n, b in zip(now, before, strict=True))
    return DeviceRow(kind, device, source, a_bytes, b_bytes, a_count, b_count)


def parse_delay(text: str) -> float:
    """A delay in seconds as a user types it: a finite number > 0 (ValueError if not)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):  # also refuses NaN
        raise ValueError(f"a delay is a number of seconds > 0, not {text.strip()!r}")
    return value


# -- sorting ------------------------------------------------------------------------

def _sort_value(row: DomainRow, key: str) -> float | str:
    if key == "cpu":
        return row.cpu_percent if row.cpu_percent is not None else -1.0
    if key == "mem":
        return row.memory_kib if row.memory_kib is not None else -1
    if key == "time":
        return row.cpu_time_ns if row.cpu_time_ns is not None else -1
    if key == "id":
        return row.id
    if key == "name":
        return row.name
    if key in _IO_SORT:
        value = getattr(row, _IO_SORT[key])
        return -1 if value is None else value
    raise ValueError(f"unknown sort key {key!r}; known: {', '.join(SORT_KEYS)}")


_IO_SORT = {"netrx": "rx_bytes", "nettx": "tx_bytes", "blockrdrq": "rd_reqs",
            "blockwrrq": "wr_reqs"}
_BIGGEST_FIRST = ("cpu", "mem", "time", *_IO_SORT)


def sorted_lines(frames: Iterable[HostFrame], key: str) -> list[tuple[HostFrame, DomainRow]]:
    """Every domain of every host, in ``key`` order: biggest first for %CPU, memory
    and CPU time (unknown figures last), smallest first for ID and name; ties by
    host, then ID, so the order is stable from one refresh to the next."""
    lines = [(f, r) for f in frames for r in f.rows]
    lines.sort(key=lambda fr: (fr[0].label, fr[1].id))
    lines.sort(key=lambda fr: _sort_value(fr[1], key), reverse=key in _BIGGEST_FIRST)
    return lines


def device_lines(frames: Iterable[HostFrame], kind: str
                 ) -> list[tuple[HostFrame, DomainRow, DeviceRow]]:
    """Every disk (``kind`` "block") or NIC ("net") of every domain, by host, domain ID
    and device: virt-top's block and network views."""
    lines = [(f, r, d) for f in frames for r in f.rows for d in r.devices if d.kind == kind]
    lines.sort(key=lambda frd: (frd[0].label, frd[1].id, frd[2].device))
    return lines


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def device_cells(row: DomainRow, device: DeviceRow) -> tuple[str, ...]:
    """A device's cells under ``DEVICE_COLUMNS[device.kind]``."""
    return (str(row.id), device.device, _count(device.a_bytes), _count(device.b_bytes),
            _count(device.a_count), _count(device.b_count), device.source or "-", row.name)


# -- text shared by the screen and batch mode -----------------------------------------

def cpu_time_text(cpu_time_ns: int) -> str:
    """CPU time as top's TIME+ column: minutes:seconds.hundredths."""
    hundredths = cpu_time_ns // 10_000_000
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes}:{rest // 100:02d}.{rest % 100:02d}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def row_cells(row: DomainRow, shown: Sequence[str] = COLUMNS) -> tuple[str, ...]:
    """A row's cells under ``shown`` (:data:`COLUMNS`, or what :func:`columns` gives);
    ``-`` where a figure is unknown, ``?`` as the state of a domain that did not answer."""
    cells = {
        "ID": str(row.id),
        "S": "?" if row.state is None else fmt.state_letter(row.state),
        "RDRQ": _count(row.rd_reqs), "WRRQ": _count(row.wr_reqs),
        "RDBY": _count(row.rd_bytes), "WRBY": _count(row.wr_bytes),
        "RXBY": _count(row.rx_bytes), "TXBY": _count(row.tx_bytes),
        "%CPU": _percent(row.cpu_percent),
        "%MEM": _percent(row.memory_percent),
        "MEM(k)": "-" if row.memory_kib is None else str(row.memory_kib),
        "VCPUS": "-" if row.vcpus is None else str(row.vcpus),
        "TIME": "-" if row.cpu_time_ns is None else cpu_time_text(row.cpu_time_ns),
        "NAME": row.name,
    }
    return tuple(cells[name] for name in shown)


def state_counts(rows: Sequence[DomainRow]) -> dict[str, int]:
    """Domains by state in virsh's words (every word a state has, zeros included, in
    virsh's order), then those that did not answer."""
    used = set(fmt.STATE_WORDS.values())
    counts = {word: 0 for word in fmt.VIRSH_WORDS if word in used}
    counts[NO_ANSWER] = 0
    for r in rows:
        counts[NO_ANSWER if r.state is None else fmt.state_word(r.state)] += 1
    return counts


def _size(kib: int) -> str:
    """Memory as a person reads it: GiB, or TiB from 1024 GiB on."""
    gib = kib / 1048576
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.1f} GiB"


def _plural(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' * (count != 1)}"


def _wrapped(text: str) -> list[str]:
    """``text`` broken into lines of at most :data:`HEADER_WIDTH` columns, the
    continuations indented under it."""
    indent = " " * (len(text) - len(text.lstrip(" ")) + 2)
    return textwrap.wrap(text, HEADER_WIDTH, subsequent_indent=indent,
                         break_on_hyphens=False) or [""]


def _cut(text: str, columns: int) -> str:
    """``text`` within ``columns`` (at least 4), cut with ``...`` when longer."""
    if fmt.display_width(text) <= columns:
        return text
    kept = ""
    for ch in text:
        if fmt.display_width(kept + ch) > columns - 3:
            break
        kept += ch
    return kept + "..."


def _label(hostname: str, uri: str, columns: int) -> str:
    """``hostname (uri)`` within ``columns``: the URI cut first, then the name alone."""
    full = f"{hostname} ({uri})"
    if fmt.display_width(full) <= columns:
        return full
    room = columns - fmt.display_width(hostname) - 3  # " (" and ")"
    if room >= 12:  # enough of the URI to tell one host from another
        return f"{hostname} ({_cut(uri, room)})"
    return _cut(hostname, columns)


def summary_lines(frame: HostFrame, delay_s: float, *, cost: bool = False) -> list[str]:
    """The header of one host, each line within :data:`HEADER_WIDTH` columns: who it
    is and its machine, its domains by state, the host's %CPU and the memory its
    domains use; with ``cost``, what the refresh cost this connection (control-plane
    requests, data-plane calls); or why it could not be read."""
    info = frame.info
    name = frame.uri if info is None else f"{info.hostname} ({frame.uri})"
    if frame.pending_s is not None:
        return _wrapped(f"{name}: no answer yet: refreshing for {frame.pending_s:.1f} s "
                        "(the other hosts are not held up)")
    if frame.error is not None:
        return _wrapped(f"{name}: unreachable: {frame.error} (retrying every {delay_s:g} s)")
    assert info is not None  # a refresh without error has the host's facts
    machine = f"  {info.arch}  {info.cpus} CPUs  {_size(info.memory_kib)} memory"
    counts = state_counts(frame.rows)
    by_state = ", ".join(f"{n} {word}" for word, n in counts.items()
                         if n or word in _ALWAYS_COUNTED)
    inactive = "" if frame.inactive is None else f"; {frame.inactive} inactive"
    used = frame.used_memory_kib
    share = f" ({100 * used / info.memory_kib:.1f}%)" if info.memory_kib > 0 else ""
    lines = [
        _label(info.hostname, frame.uri, max(4, HEADER_WIDTH - len(machine))) + machine,
        *_wrapped(f"  {_plural(len(frame.rows), 'domain')}: {by_state}{inactive}"),
        f"  %CPU {_percent(frame.cpu_percent)}  memory used by domains {_size(used)}{share}",
    ]
    if cost:
        lines.append(
            f"  refresh cost: {_plural(frame.cost.control_requests, 'control-plane request')}"
            f", {_plural(frame.cost.data_calls, 'data-plane call')}")
    return lines
