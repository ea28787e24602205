"""The data plane over HTTP: what the daemon encodes is what the driver decodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import OperationFailedError, ProtocolError
from xvirt.model import DomainState
from xvirt.planes import DataRow, Unanswered
from xvirt.wire import sxp
from xvirt.wire.dataplane import encode_table, parse_table

BOOT = "0b0e1d00-0000-4000-8000-000000000001"

rows = st.builds(
    DataRow,
    st.integers(0, 0x7FEF),
    st.uuids().map(str),
    # a row is a running domain: never SHUTOFF (defined, no ID), which reads as "------"
    st.sampled_from([s for s in DomainState if s is not DomainState.SHUTOFF]),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
    st.integers(0, 2**31),
    st.integers(0, 2**63),
)


@given(st.sampled_from(["table", "info"]), st.integers(0, 2**62), st.lists(rows, max_size=5),
       st.lists(st.tuples(st.integers(0, 0x7FEF), st.uuids().map(str)), max_size=3))
def test_a_table_survives_the_round_trip(head: str, generation: int, table: list[DataRow],
                                         wedged: list[tuple[int, str]]) -> None:
    missing = [Unanswered(d, u, OperationFailedError(f"domain {d} did not answer"))
               for d, u in wedged]
    text = sxp.dumps(encode_table(head, BOOT, generation, table, missing))
    snap = parse_table(sxp.parse(text), "xend://here")
    assert (snap.boot_id, snap.generation, list(snap.rows)) == (BOOT, generation, table)
    assert [(u.id, u.uuid, u.error.message, u.error.uri) for u in snap.unanswered] == [
        (d, u, f"domain {d} did not answer", "xend://here") for d, u in wedged]


def test_a_malformed_unanswered_domain_is_a_protocol_error() -> None:
    rec = sxp.parse("(table (boot_id b) (generation 3) (unanswered (domid x) (uuid u)))")
    with pytest.raises(ProtocolError, match="malformed unanswered"):
        parse_table(rec, "xend://odd")
    rec = sxp.parse("(table (boot_id b) (generation 3) (unanswered (domid 4) (uuid u)))")
    (miss,) = parse_table(rec, "xend://odd").unanswered
    assert (miss.id, miss.uuid, miss.error.uri) == (4, "u", "xend://odd")
    assert str(miss.error.message) == "domain 4 did not answer"


@pytest.mark.parametrize("text", [
    "(domains)",
    "(table (generation 3))",
    "(table (boot_id b) (generation x))",
    "(table (boot_id b) (generation 3) (row (domid 1)))",
])
def test_malformed_tables_are_protocol_errors_naming_the_uri(text: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_table(sxp.parse(text), "xend://odd")
    assert exc.value.uri == "xend://odd"
