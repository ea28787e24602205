"""The statistics codec both sides of ``GET /xvirt/stats`` use: what is encoded is
decoded as it was, and anything malformed is a ProtocolError, never a wrong figure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import InvalidArgumentError, ProtocolError
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
)
from xvirt.wire.stats_codec import decode_groups, decode_stats, encode_groups, encode_stats

N = st.integers(0, 2**63 - 1)
MAYBE = st.none() | N
TEXT = st.text(max_size=20)
STATS = st.builds(
    DomainStats, st.uuids().map(str), TEXT, st.none() | st.integers(0, 0x7FEF),
    st.none() | st.sampled_from(DomainState),
    st.none() | st.builds(CpuStats, N, MAYBE, MAYBE),
    st.none() | st.builds(BalloonStats, N, N, *[MAYBE] * 9),
    st.none() | st.lists(st.builds(VcpuStats, st.integers(0, 511), st.sampled_from(VcpuState),
                                   N), max_size=3).map(tuple),
    st.none() | st.lists(st.builds(BlockStats, TEXT, st.none() | TEXT, N, N, MAYBE, N, N,
                                   MAYBE, MAYBE, MAYBE, MAYBE, MAYBE, MAYBE, MAYBE),
                         max_size=3).map(tuple),
    st.none() | st.lists(st.builds(NetStats, TEXT, st.none() | TEXT, st.none() | TEXT,
                                   *[N] * 8), max_size=3).map(tuple),
    st.frozensets(st.sampled_from(StatGroup)))


@given(st.lists(STATS, max_size=4))
def test_what_is_encoded_is_decoded(found: list[DomainStats]) -> None:
    assert decode_stats(encode_stats(found)) == found


@given(st.frozensets(st.sampled_from(StatGroup)))
def test_groups_round_trip_in_libvirts_order(groups: frozenset[StatGroup]) -> None:
    text = encode_groups(groups)
    assert decode_groups(text) == groups
    assert text == ",".join(g.value for g in StatGroup if g in groups)


def test_an_unknown_group_is_refused_by_name() -> None:
    with pytest.raises(InvalidArgumentError, match="'disk'"):
        decode_groups("block,disk")


GOOD = json.loads(encode_stats([DomainStats(
    "6f1c2d3e-4a5b-4c6d-8e7f-901234567890", "web", 3, DomainState.RUNNING,
    CpuStats(10, 6, 4), None, (VcpuStats(0, VcpuState.RUNNING, 10),),
    (BlockStats("xvda", "/srv/web.img", 1, 4096, 5, 0, 0, 0, 0, 0, 0),),
    (NetStats("vif3.0", "00:16:3e:12:34:56", "xenbr0", 1, 1, 0, 0, 1, 1, 0, 0),))]))


def _broken(change: str) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    dom = doc["domains"][0]
    if change == "negative":
        dom["blocks"][0]["rd_reqs"] = -1
    elif change == "bool":
        dom["cpu"]["time_ns"] = True
    elif change == "lacking":
        del dom["nets"][0]["tx_drop"]
    elif change == "state":
        dom["state"] = "sleepy"
    elif change == "vcpu":
        dom["vcpus"][0] = {"number": 0}
    elif change == "group":
        dom["missing"] = ["disk"]
    elif change == "required-null":
        dom["blocks"][0]["rd_bytes"] = None
    elif change == "not-a-list":
        doc["domains"] = {}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b'{"domains": null}', b'{"domains": [7]}',
    *(_broken(c) for c in ("negative", "bool", "lacking", "state", "vcpu", "group",
                           "required-null", "not-a-list"))])
def test_a_malformed_answer_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed statistics answer"):
        decode_stats(body)
