"""Domain statistics on the wire: ``GET /xvirt/stats?groups=block,net&uuid=...``.

One codec for both sides, so the daemon's answer and the xend driver's reading of it
cannot drift apart: the groups asked (a comma-separated list of libvirt's group
names) and the answer, a JSON document of rows, each with its field names said once::

    {"fields": {"domain": ["uuid", "name", "id", "state", "cpu", "balloon", "vcpus",
                           "blocks", "nets", "missing"],
                "cpu": ["time_ns", "user_ns", "system_ns"], "balloon": [...],
                "vcpu": ["number", "state", "time_ns"], "block": [...], "net": [...]},
     "domains": [["6f1c...", "web", 3, "running", [10, 6, 4], null, [[0, 1, 10]],
                  [["xvda", "/srv/web.img", 1, 4096, ...]], [[...]], []], ...]}

A field is named as in :mod:`xvirt.stats`; a group not asked is null, as is a figure
the host does not report. Rows rather than objects: a scrape of a 5000-domain host
reads some 25,000 sets of figures, and rows are a third of the bytes and are read
without a dict each. The reader finds each field it knows by its name in ``fields``,
so a writer may add fields (the reader skips them) but not leave one out. JSON rather
than S-expressions: the figures are many small integers and nulls that an S-expression
would spell out as strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar

from xvirt.errors import ProtocolError
from xvirt.stats import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainState,
    DomainStats,
    NetStats,
    StatGroup,
    VcpuState,
    VcpuStats,
    check_groups,
)

__all__ = ["decode_groups", "decode_stats", "encode_groups", "encode_stats"]

#: The figures' types: integers (counts, bytes, ns, KiB), and names (str).
_Figures = TypeVar("_Figures", CpuStats, BalloonStats, BlockStats, NetStats)
_TEXT_FIELDS = frozenset({"name", "path", "mac", "bridge"})
#: Fields that may be null although their type has no default (a host may not know them).
_MAY_BE_NULL = frozenset({"rd_time_ns", "wr_time_ns", "path", "mac", "bridge"})
_DOMAIN_FIELDS = ("uuid", "name", "id", "state", "cpu", "balloon", "vcpus", "blocks",
                  "nets", "missing")
_KINDS: dict[str, type[Any]] = {"cpu": CpuStats, "balloon": BalloonStats,
                                "vcpu": VcpuStats, "block": BlockStats, "net": NetStats}
_NAMES = {kind: tuple(f.name for f in fields(cls)) for kind, cls in _KINDS.items()}
#: What the writer says its rows hold, written once.
_HEADER = json.dumps({"domain": _DOMAIN_FIELDS, **_NAMES}, separators=(",", ":"))
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_STATES = {s.value: s for s in DomainState}
_VCPU_STATES = {s.value: s for s in VcpuState}
_GROUPS = {g.value: g for g in StatGroup}
_NONE: frozenset[StatGroup] = frozenset()


def encode_groups(groups: Iterable[StatGroup]) -> str:
    """``groups`` as the query's ``groups=`` value, in libvirt's order."""
    chosen = set(groups)
    return ",".join(g.value for g in StatGroup if g in chosen)


def decode_groups(text: str) -> frozenset[StatGroup]:
    """The groups a query names; an unknown one is an InvalidArgumentError."""
    return check_groups([g for g in text.split(",") if g], op="domain_stats")


def encode_stats(found: Sequence[DomainStats]) -> str:
    """The answer to a statistics request."""
    cpu, balloon, block, net = (attrgetter(*_NAMES[k]) for k in ("cpu", "balloon", "block",
                                                                 "net"))
    rows = [(s.uuid, s.name, s.id, None if s.state is None else s.state.value,
             None if s.cpu is None else cpu(s.cpu),
             None if s.balloon is None else balloon(s.balloon),
             None if s.vcpus is None else [(v.number, v.state.value, v.time_ns)
                                           for v in s.vcpus],
             None if s.blocks is None else list(map(block, s.blocks)),
             None if s.nets is None else list(map(net, s.nets)),
             [g.value for g in StatGroup if g in s.missing] if s.missing else ())
            for s in found]
    return f'{{"fields":{_HEADER},"domains":{_ENCODER.encode(rows)}}}'


def _bad(what: str) -> ProtocolError:
    return ProtocolError(f"malformed statistics answer: {what}", op="domain_stats")


def _positions(header: Mapping[str, Any], kind: str,
               names: Sequence[str]) -> tuple[int, Callable[[list[Any]], Any] | None]:
    """The width of ``kind``'s rows as ``header`` says them, and how to pick ``names``
    out of one in their order (None: the row is already in that order)."""
    said = header.get(kind)
    if not isinstance(said, list):
        raise _bad(f"fields.{kind} is not a list")
    index = {name: i for i, name in enumerate(said) if isinstance(name, str)}
    lacking = [n for n in names if n not in index]
    if lacking or len(index) != len(said):
        raise _bad(f"fields.{kind} is {said!r}, not names that include {list(names)!r}")
    wanted = [index[n] for n in names]
    if wanted == list(range(len(said))):
        return len(said), None
    return len(said), itemgetter(*wanted)  # a tuple: every kind has several fields


class _Wrong(Exception):
    """A part of one domain's row that is not what its field holds (where, in words)."""


class _Rows(Generic[_Figures]):
    """Reads one kind's rows into its figures type, checking every figure: a count a
    non-negative integer (not a bool), a name a string, null only where allowed.

    The check is by the row's types, as a tuple: each such pattern is checked field by
    field once, then only looked up (a host's rows have one or two patterns), and its
    counts are checked non-negative together."""

    def __init__(self, cls: type[_Figures], header: Mapping[str, Any], kind: str,
                 label: str) -> None:
        self.cls: type[_Figures] = cls
        self.label = label
        self.names = _NAMES[kind]
        self.width, self.pick = _positions(header, kind, self.names)
        self.allowed = [
            ({str} if f.name in _TEXT_FIELDS else {int})
            | ({type(None)} if f.default is None or f.name in _MAY_BE_NULL else set())
            for f in fields(cls)]
        #: pattern of types -> the counts of a row of that pattern (always a tuple)
        self.patterns: dict[tuple[type, ...], Callable[[Sequence[Any]], tuple[int, ...]]] = {}

    def read(self, row: object) -> _Figures:
        if type(row) is not list or len(row) != self.width:
            raise _Wrong(f"{self.label} is {row!r}, not a list of {self.width} figures")
        values: Sequence[Any] = row if self.pick is None else self.pick(row)
        counts = self.patterns.get(tuple(map(type, values)))
        if counts is None:
            counts = self._learn(values)
        if min(counts(values)) < 0:
            name, v = next((n, v) for n, v in zip(self.names, values, strict=True)
                           if type(v) is int and v < 0)
            raise _Wrong(f"{self.label}.{name} is {v!r}, not a non-negative integer")
        figures: _Figures = self.cls(*values)
        return figures

    def _learn(self, values: Sequence[Any]) -> Callable[[Sequence[Any]], tuple[int, ...]]:
        """The counts' getter of the pattern of ``values``, once each field is checked."""
        for name, allowed, v in zip(self.names, self.allowed, values, strict=True):
            if type(v) not in allowed:
                raise _Wrong(f"{self.label}.{name} is {v!r}, not "
                             + ("a string" if str in allowed else "a non-negative integer"))
        ints = [i for i, v in enumerate(values) if type(v) is int]
        if not ints:  # cannot be: every kind has a count that may not be null
            raise _Wrong(f"{self.label} has no count")
        counts = itemgetter(*ints, ints[0])  # one more: a tuple, even of one count
        self.patterns[tuple(map(type, values))] = counts
        return counts


class _Reader:
    """The rows of one answer, read as its ``fields`` name them."""

    def __init__(self, header: object) -> None:
        if not isinstance(header, dict):
            raise _bad("no 'fields' object")
        self.width, self.pick = _positions(header, "domain", _DOMAIN_FIELDS)
        self.cpu: _Rows[CpuStats] = _Rows(CpuStats, header, "cpu", "cpu")
        self.balloon: _Rows[BalloonStats] = _Rows(BalloonStats, header, "balloon", "balloon")
        self.block: _Rows[BlockStats] = _Rows(BlockStats, header, "block", "blocks[]")
        self.net: _Rows[NetStats] = _Rows(NetStats, header, "net", "nets[]")
        self.vcpu_width, self.vcpu_pick = _positions(header, "vcpu", _NAMES["vcpu"])

    def domain(self, row: object) -> DomainStats:
        """One domain's row; what is malformed is a _Wrong saying where in the row."""
        if type(row) is not list or len(row) != self.width:
            raise _Wrong(f"not a list of {self.width} fields")
        uuid, name, domid, state, cpu, balloon, vcpus, blocks, nets, missing = (
            row if self.pick is None else self.pick(row))
        if type(uuid) is not str or type(name) is not str:
            raise _Wrong(f"uuid {uuid!r} and name {name!r} are not both strings")
        if domid is not None and (type(domid) is not int or domid < 0):
            raise _Wrong(f"id is {domid!r}, not a non-negative integer")
        return DomainStats(
            uuid, name, domid, None if state is None else self._state(state),
            None if cpu is None else self.cpu.read(cpu),
            None if balloon is None else self.balloon.read(balloon),
            None if vcpus is None else tuple(map(self._vcpu, _list(vcpus, "vcpus"))),
            None if blocks is None else tuple(map(self.block.read, _list(blocks, "blocks"))),
            None if nets is None else tuple(map(self.net.read, _list(nets, "nets"))),
            self._missing(missing))

    @staticmethod
    def _state(value: object) -> DomainState:
        state = _STATES.get(value) if type(value) is str else None
        if state is None:
            raise _Wrong(f"state is {value!r}, not a domain state")
        return state

    def _vcpu(self, row: object) -> VcpuStats:
        if type(row) is not list or len(row) != self.vcpu_width:
            raise _Wrong(f"vcpus[] is {row!r}, not a list of {self.vcpu_width} figures")
        number, state, time_ns = row if self.vcpu_pick is None else self.vcpu_pick(row)
        vcpu_state = _VCPU_STATES.get(state) if type(state) is int else None
        if vcpu_state is None:
            raise _Wrong(f"vcpus[].state is {state!r}, not a vCPU state")
        for name, v in (("number", number), ("time_ns", time_ns)):
            if type(v) is not int or v < 0:
                raise _Wrong(f"vcpus[].{name} is {v!r}, not a non-negative integer")
        return VcpuStats(number, vcpu_state, time_ns)

    @staticmethod
    def _missing(value: object) -> frozenset[StatGroup]:
        if value == []:
            return _NONE
        groups = [_GROUPS.get(g) if type(g) is str else None for g in _list(value, "missing")]
        if None in groups:
            raise _Wrong(f"missing is {value!r}, not statistics groups")
        return frozenset(groups)  # type: ignore[arg-type]  # no None: checked


def _list(value: object, what: str) -> list[Any]:
    if type(value) is not list:
        raise _Wrong(f"{what} is not a list")
    return value


def decode_stats(body: bytes | str) -> list[DomainStats]:
    """The domains of a statistics answer; anything malformed is a ProtocolError."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _bad("the answer is not an object")
    reader = _Reader(document.get("fields"))
    domains = document.get("domains")
    if type(domains) is not list:
        raise _bad("no 'domains' list")
    found: list[DomainStats] = []
    try:
        for row in domains:
            found.append(reader.domain(row))
    except _Wrong as exc:
        raise _bad(f"domain {len(found)}: {exc}") from None
    return found
