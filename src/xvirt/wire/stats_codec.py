"""Domain statistics on the wire: ``GET /xvirt/stats?groups=block,net&uuid=...``.

One codec for both sides, so the daemon's answer and the xend driver's reading of it
cannot drift apart: the groups asked (a comma-separated list of libvirt's group
names) and the answer, a JSON document ``{"domains": [...]}`` with one object per
domain whose keys are :mod:`xvirt.stats`' field names (a group not asked is null).
JSON rather than S-expressions: the figures are many small integers and nulls that
an S-expression would spell out as strings, and a scrape of thousands of domains
reads them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

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


def encode_groups(groups: Iterable[StatGroup]) -> str:
    """``groups`` as the query's ``groups=`` value, in libvirt's order."""
    chosen = set(groups)
    return ",".join(g.value for g in StatGroup if g in chosen)


def decode_groups(text: str) -> frozenset[StatGroup]:
    """The groups a query names; an unknown one is an InvalidArgumentError."""
    return check_groups([g for g in text.split(",") if g], op="domain_stats")


def _figures(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {f.name: getattr(value, f.name) for f in fields(value)}


def encode_stats(found: Sequence[DomainStats]) -> str:
    """The answer to a statistics request."""
    return json.dumps({"domains": [{
        "uuid": s.uuid, "name": s.name, "id": s.id,
        "state": None if s.state is None else s.state.value,
        "cpu": _figures(s.cpu), "balloon": _figures(s.balloon),
        "vcpus": None if s.vcpus is None else [
            {"number": v.number, "state": v.state.value, "time_ns": v.time_ns}
            for v in s.vcpus],
        "blocks": None if s.blocks is None else [_figures(b) for b in s.blocks],
        "nets": None if s.nets is None else [_figures(n) for n in s.nets],
        "missing": [g.value for g in StatGroup if g in s.missing],
    } for s in found]}, separators=(",", ":"))


def _bad(what: str) -> ProtocolError:
    return ProtocolError(f"malformed statistics answer: {what}", op="domain_stats")


def _int(value: object, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{what} is {value!r}, not a non-negative integer")
    return value


def _text(value: object, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(f"{what} is {value!r}, not a string")
    return value


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what} is not an object")
    return value


def _list(value: object, what: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(f"{what} is not a list")
    return value


def _decode_figures(cls: type[_Figures], value: object, what: str) -> _Figures:
    """A figures dataclass whose fields are all integers or names, each key present:
    a required one must not be null (its default says whether it may be)."""
    obj = _object(value, what)
    args: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            raise _bad(f"{what} lacks {f.name!r}")
        optional = f.default is None or f.name in ("rd_time_ns", "wr_time_ns", "path",
                                                   "mac", "bridge")
        check = _text if f.name in _TEXT_FIELDS else _int
        args[f.name] = check(obj[f.name], f"{what}.{f.name}", optional=optional)
    return cls(**args)


def _decode_domain(value: object, k: int) -> DomainStats:
    what = f"domain {k}"
    obj = _object(value, what)
    try:
        state = None if obj.get("state") is None else DomainState(obj["state"])
        missing = frozenset(StatGroup(g) for g in _list(obj.get("missing"), what) or ())
        vcpus = _list(obj.get("vcpus"), f"{what}.vcpus")
        decoded_vcpus = None if vcpus is None else tuple(
            VcpuStats(_int(v["number"], "vcpu number"), VcpuState(v["state"]),
                      _int(v["time_ns"], "vcpu time_ns"))
            for v in map(lambda v: _object(v, f"{what}.vcpus[]"), vcpus))
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad(f"{what}: {exc!r}") from None
    blocks = _list(obj.get("blocks"), f"{what}.blocks")
    nets = _list(obj.get("nets"), f"{what}.nets")
    return DomainStats(
        _text(obj.get("uuid"), f"{what}.uuid"), _text(obj.get("name"), f"{what}.name"),
        _int(obj.get("id"), f"{what}.id", optional=True), state,
        None if obj.get("cpu") is None else _decode_figures(CpuStats, obj["cpu"],
                                                             f"{what}.cpu"),
        None if obj.get("balloon") is None else _decode_figures(
            BalloonStats, obj["balloon"], f"{what}.balloon"),
        decoded_vcpus,
        None if blocks is None else tuple(_decode_figures(BlockStats, b, f"{what}.blocks[]")
                                          for b in blocks),
        None if nets is None else tuple(_decode_figures(NetStats, n, f"{what}.nets[]")
                                        for n in nets),
        missing)


def decode_stats(body: bytes | str) -> list[DomainStats]:
    """The domains of a statistics answer; anything malformed is a ProtocolError."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not JSON ({exc})") from None
    domains = _list(_object(document, "the answer").get("domains"), "domains")
    if domains is None:
        raise _bad("no 'domains' list")
    return [_decode_domain(d, k) for k, d in enumerate(domains)]

