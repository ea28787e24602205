"""The statistics codec both sides of ``GET /xvirt/stats`` use: what is encoded is
decoded as it was, and anything malformed is a ProtocolError, never a wrong figure."""

from __future__ import annotations

import json
import random

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


def _at(kind: str, name: str) -> int:
    """Where ``name`` is in a row of ``kind``, as the answer's fields say."""
    return int(GOOD["fields"][kind].index(name))


def _broken(change: str) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    dom = doc["domains"][0]
    blocks, nets = dom[_at("domain", "blocks")], dom[_at("domain", "nets")]
    if change == "negative":
        blocks[0][_at("block", "rd_reqs")] = -1
    elif change == "bool":
        dom[_at("domain", "cpu")][_at("cpu", "time_ns")] = True
    elif change == "float":
        nets[0][_at("net", "rx_bytes")] = 1.5
    elif change == "lacking":
        del nets[0][-1]
    elif change == "state":
        dom[_at("domain", "state")] = "sleepy"
    elif change == "vcpu":
        dom[_at("domain", "vcpus")][0] = [0]
    elif change == "vcpu-state":
        dom[_at("domain", "vcpus")][0][_at("vcpu", "state")] = 7
    elif change == "group":
        dom[_at("domain", "missing")] = ["disk"]
    elif change == "required-null":
        blocks[0][_at("block", "rd_bytes")] = None
    elif change == "name-a-number":
        blocks[0][_at("block", "name")] = 3
    elif change == "uuid":
        dom[_at("domain", "uuid")] = None
    elif change == "not-a-list":
        doc["domains"] = {}
    elif change == "no-fields":
        del doc["fields"]
    elif change == "field-left-out":
        doc["fields"]["net"].remove("tx_drop")
    elif change == "field-named-twice":
        doc["fields"]["cpu"] = ["time_ns", "time_ns", "system_ns"]
    return json.dumps(doc).encode()


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b'{"domains": null}', b'{"domains": [7]}',
    *(_broken(c) for c in ("negative", "bool", "float", "lacking", "state", "vcpu",
                           "vcpu-state", "group", "required-null", "name-a-number", "uuid",
                           "not-a-list", "no-fields", "field-left-out", "field-named-twice"))])
def test_a_malformed_answer_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed statistics answer"):
        decode_stats(body)


def test_a_malformed_figure_is_named_with_its_domain() -> None:
    with pytest.raises(ProtocolError, match=r"domain 0: blocks\[\]\.rd_reqs is -1"):
        decode_stats(_broken("negative"))


@given(st.lists(STATS, max_size=4), st.randoms(use_true_random=False))
def test_fields_are_read_by_name_in_any_order_and_new_ones_skipped(
        found: list[DomainStats], rnd: random.Random) -> None:
    """A writer that orders its fields otherwise, or says more (a newer daemon), is read
    the same: the reader finds each field by its name in ``fields``."""
    doc = json.loads(encode_stats(found))
    shuffled: dict[str, list[int]] = {}
    for kind, names in doc["fields"].items():
        order = list(range(len(names) + 1))  # one more: a field this reader does not know
        rnd.shuffle(order)
        shuffled[kind] = order
        doc["fields"][kind] = [names[i] if i < len(names) else "new_field" for i in order]

    def rewrite(kind: str, row: list[object]) -> list[object]:
        return [row[i] if i < len(row) else "?" for i in shuffled[kind]]

    for k, dom in enumerate(doc["domains"]):
        at = {name: i for i, name in enumerate(json.loads(encode_stats([]))["fields"]["domain"])}
        for kind, key in (("cpu", "cpu"), ("balloon", "balloon")):
            if dom[at[key]] is not None:
                dom[at[key]] = rewrite(kind, dom[at[key]])
        for kind, key in (("vcpu", "vcpus"), ("block", "blocks"), ("net", "nets")):
            if dom[at[key]] is not None:
                dom[at[key]] = [rewrite(kind, row) for row in dom[at[key]]]
        doc["domains"][k] = rewrite("domain", dom)
    assert decode_stats(json.dumps(doc)) == found


def test_rows_say_each_field_name_once_per_answer() -> None:
    """The field names are in the answer once, not once per domain: an answer for 100
    domains with every group is less than half the 104,213 bytes it took as objects."""
    one = DomainStats(
        "6f1c2d3e-4a5b-4c6d-8e7f-901234567890", "web", 3, DomainState.RUNNING,
        CpuStats(10**12, 6 * 10**11, 4 * 10**11), BalloonStats(262144, 262144),
        (VcpuStats(0, VcpuState.RUNNING, 10**12),),
        (BlockStats("xvda", "/var/lib/xen/images/web.img", *[10**9] * 9),),
        (NetStats("vif3.0", "00:16:3e:12:34:56", "xenbr0", *[10**9] * 8),))
    body = encode_stats([one] * 100)
    assert body.count('"tx_drop"') == 1
    assert len(body) < 104_213 / 2
