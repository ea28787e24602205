"""The event channel over HTTP: what the daemon encodes is what the driver decodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import ProtocolError
from xvirt.model import EventKind
from xvirt.planes import EventBatch, HostEvent
from xvirt.wire import sxp
from xvirt.wire.events import encode_events, parse_events

events = st.builds(
    HostEvent,
    st.integers(1, 2**62),
    st.sampled_from(list(EventKind)),
    st.integers(-1, 0x7FEF),  # -1: a definition changed while the domain had no ID
    st.uuids().map(str),
    st.none() | st.integers(0, 0x7FEF),
    st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                        max_size=20),
)


@given(st.uuids().map(str), st.integers(0, 2**62), st.lists(events, max_size=6), st.booleans())
def test_a_batch_survives_the_round_trip(boot: str, latest: int, batch: list[HostEvent],
                                         complete: bool) -> None:
    sent = EventBatch(boot, latest, tuple(batch), complete)
    assert parse_events(sxp.parse(sxp.dumps(encode_events(sent)))) == sent


@pytest.mark.parametrize("text", [
    "(table)",
    "(events (latest 3) (complete 1))",
    "(events (boot_id b) (latest 3) (complete 2))",
    "(events (boot_id b) (latest 3) (complete 1) (event (seq x)))",
    "(events (boot_id b) (latest 3) (complete 1) (event (seq 1) (kind nonsense)))",
])
def test_malformed_batches_are_protocol_errors_naming_the_uri(text: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_events(sxp.parse(text), "xend://odd")
    assert exc.value.uri == "xend://odd"


@pytest.mark.parametrize("kind", [EventKind.DEFINED, EventKind.UNDEFINED, EventKind.STARTED])
def test_definition_events_travel_with_their_name_and_no_id(kind: EventKind) -> None:
    """DEFINED/UNDEFINED of an inactive domain carry domid -1; STARTED its new ID."""
    domid = 7 if kind is EventKind.STARTED else -1
    sent = EventBatch("boot", 9, (HostEvent(9, kind, domid, "6695eb01-f6a4-8304-79aa-97f2502e193f",
                                            None, "web"),), True)
    wire = sxp.dumps(encode_events(sent))
    assert f"(kind {kind.value}) (domid {domid})" in wire and "(name web)" in wire
    assert parse_events(sxp.parse(wire)) == sent
