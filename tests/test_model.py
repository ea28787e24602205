"""Value types and the validation of what users pass in."""

from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.errors import InvalidArgumentError
from xvirt.model import (
    DOMID_FIRST_RESERVED,
    ConnStats,
    DomainEvent,
    DomainInfo,
    DomainState,
    EventKind,
    HostInfo,
    Identity,
    check_domid,
    check_name,
    parse_uuid,
)

REALDATA = Path("/work/shared/realdata/libvirt/python-test-default.json")
CANON = "6695eb01-f6a4-8304-79aa-97f2502e193f"


# -- parse_uuid -------------------------------------------------------------------------------


def _libvirt_variants() -> list[tuple[str, bool]]:
    if not REALDATA.exists():  # pragma: no cover - the captures live beside the project
        return []
    data = json.loads(REALDATA.read_text())
    out = []
    for v in data["lookupByUUIDString_variants"]:
        call = v["call"]
        assert call[0] == call[-1] == "'"
        out.append((call[1:-1], not v["raised"]))
    return out


LIBVIRT_VARIANTS = _libvirt_variants()


def test_the_realdata_variants_were_found() -> None:
    if not REALDATA.exists():  # pragma: no cover
        pytest.skip("realdata not present")
    assert len(LIBVIRT_VARIANTS) >= 8
    assert {ok for _, ok in LIBVIRT_VARIANTS} == {True, False}


@pytest.mark.parametrize(("text", "libvirt_accepts"), LIBVIRT_VARIANTS)
def test_parse_uuid_agrees_with_real_libvirt(text: str, libvirt_accepts: bool) -> None:
    if libvirt_accepts:
        assert parse_uuid(text) == CANON
    else:
        with pytest.raises(InvalidArgumentError):
            parse_uuid(text)


@pytest.mark.parametrize(
    "text",
    [
        CANON,
        CANON.upper(),
        CANON.replace("-", ""),
        CANON.replace("-", "").upper(),
        "6695eb01-f6a48304-79aa97f2-502e193f",
        " " + CANON,
        CANON + " ",
        "  " + CANON + "\t\n",
        "-6695eb01-f6a4-8304-79aa-97f2502e193f-",
        "66-95-eb-01-f6-a4-83-04-79-aa-97-f2-50-2e-19-3f",
        "6695eb01 f6a4 8304 79aa 97f2502e193f",  # libvirt allows ' ' between pairs, too
        "66 95 eb 01 f6 a4 83 04 79 aa 97 f2 50 2e 19 3f",
    ],
)
def test_parse_uuid_accepts_what_libvirt_accepts(text: str) -> None:
    assert parse_uuid(text) == CANON


@pytest.mark.parametrize(
    "text",
    [
        "{" + CANON + "}",
        CANON[:-1],
        CANON + "0",
        CANON.replace("-", "")[:31],
        "",
        "   ",
        "not-a-uuid",
        "6695eb01-f6a4-8304-79aa-97f2502e193g",
        "urn:uuid:" + CANON,
        "0x" + CANON.replace("-", "")[2:],
        CANON.replace("-", "_"),
        "\u0666" * 32,  # Arabic-Indic digits are not hex digits
    ],
)
def test_parse_uuid_refuses_malformed_strings(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        parse_uuid(text)
    assert exc.value.uuid == text


@pytest.mark.parametrize("value", [None, 5, b"6695eb01f6a4830479aa97f2502e193f", 1.0, [CANON]])
def test_parse_uuid_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="string"):
        parse_uuid(value)


def test_parse_uuid_accepts_uuid_objects() -> None:
    assert parse_uuid(uuidlib.UUID(CANON)) == CANON


@given(st.uuids())
@settings(max_examples=100)
def test_parse_uuid_round_trips_every_spelling(u: uuidlib.UUID) -> None:
    canon = str(u)
    for spelling in (canon, canon.upper(), u.hex, u.hex.upper(), f"  {canon}  "):
        assert parse_uuid(spelling) == canon
    assert parse_uuid(canon) == parse_uuid(parse_uuid(canon))


@given(st.text(max_size=40))
@settings(max_examples=200)
def test_parse_uuid_accepts_only_32_hex_digits(text: str) -> None:
    digits = "".join(c for c in text.strip() if c not in "- ")
    is_hex = all(c in "0123456789abcdefABCDEF" for c in digits)
    if len(digits) == 32 and is_hex:
        assert parse_uuid(text) == str(uuidlib.UUID(hex=digits))
    else:
        with pytest.raises(InvalidArgumentError):
            parse_uuid(text)


# -- check_domid -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 42, DOMID_FIRST_RESERVED - 1])
def test_check_domid_accepts_the_16_bit_range(value: int) -> None:
    assert check_domid(value) == value


@pytest.mark.parametrize(
    "value",
    [True, False, -1, -(2**40), DOMID_FIRST_RESERVED, 0x7FFF, 0xFFFF, 2**40, 1.0, "1", None,
     1.5],
)
def test_check_domid_refuses(value: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_domid(value)


def test_first_reserved_is_xens() -> None:
    assert DOMID_FIRST_RESERVED == 0x7FF0


@given(st.integers())
def test_check_domid_property(value: int) -> None:
    if 0 <= value < 0x7FF0:
        assert check_domid(value) == value
    else:
        with pytest.raises(InvalidArgumentError) as exc:
            check_domid(value)
        assert exc.value.domid == value


# -- check_name -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "web-1", "Domain-0", "with space", "\u00e9t\u00e9",
                                   "x" * 255, "dots.are.fine", ".leading-dot", "\\"])
def test_check_name_accepts(value: str) -> None:
    assert check_name(value) == value


@pytest.mark.parametrize(
    "value",
    ["", " ", "   ", "a/b", "/", "a\nb", "\x00", "tab\t", "\x1b[31m", "del\x7f", "x" * 256,
     None, 5, b"a"],
)
def test_check_name_refuses(value: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_name(value)


@given(st.text(max_size=300))
@settings(max_examples=200)
def test_check_name_property(value: str) -> None:
    ok = (value.strip() != "" and len(value) <= 255 and "/" not in value
          and not any(ord(c) < 32 or ord(c) == 127 for c in value))
    if ok:
        assert check_name(value) == value
    else:
        with pytest.raises(InvalidArgumentError):
            check_name(value)


# -- DomainState -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "flags"),
    [
        (DomainState.RUNNING, "r-----"),
        (DomainState.BLOCKED, "-b----"),
        (DomainState.PAUSED, "--p---"),
        (DomainState.SHUTDOWN, "---s--"),
        (DomainState.CRASHED, "----c-"),
        (DomainState.DYING, "-----d"),
    ],
)
def test_state_flags_are_xends_six_letters(state: DomainState, flags: str) -> None:
    assert state.flags() == flags
    assert state.letter == flags.strip("-")


def test_every_state_has_a_distinct_letter() -> None:
    """Each of xend's six flags is one state; a defined domain that is not running
    has none set (``------``), as xend lists an inactive managed domain."""
    letters = [s.letter for s in DomainState if s is not DomainState.SHUTOFF]
    assert sorted(letters) == sorted("rbpscd")
    assert DomainState.SHUTOFF.flags() == "------" and DomainState.SHUTOFF.letter == "-"
    assert len({s.flags() for s in DomainState}) == len(DomainState)


def test_flags_match_the_xend_captures() -> None:
    xend = Path("/work/shared/realdata/xend")
    if not xend.exists():  # pragma: no cover
        pytest.skip("realdata not present")
    seen = set()
    for path in xend.rglob("*"):
        if path.is_file():
            for chunk in path.read_text(errors="replace").split("(state ")[1:]:
                seen.add(chunk[:6])
    known = {s.flags() for s in DomainState}
    assert seen, "no (state ...) in the xend captures"
    assert seen <= known


# -- EventKind and the value types ----------------------------------------------------------


def test_event_kind_classes_are_disjoint() -> None:
    for kind in EventKind:
        assert sum((kind.removes, kind.adds, kind.moves)) <= 1
    assert EventKind.RENAMED.removes is EventKind.RENAMED.adds is EventKind.RENAMED.moves is False


@pytest.mark.parametrize(
    "value",
    [
        Identity("u", "n", 1),
        DomainInfo(DomainState.RUNNING, 1, 2, 1, 0),
        ConnStats(0, 0, 0, 0, 0, 0, 0),
        DomainEvent(1, EventKind.CREATED, "u", 1, "n"),
        HostInfo("h", "Xen", "4", "x86_64", 1, 1, 1, 1, 1, 1, 1, 1, "b"),
    ],
)
def test_value_types_are_frozen_and_hashable(value: object) -> None:
    if isinstance(value, tuple):  # the per-call types are named tuples
        field = value._fields[0]  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            setattr(value, field, None)
        assert hash(value) == hash(type(value)(*value))
        return
    field = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)
    assert hash(value) == hash(dataclasses.replace(value))  # type: ignore[type-var]


def test_domain_event_old_id_defaults_to_none() -> None:
    assert DomainEvent(1, EventKind.CREATED, "u", 3, "n").old_id is None
