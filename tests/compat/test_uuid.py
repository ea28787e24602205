"""lookupByUUIDString accepts and refuses UUID strings exactly as real libvirt does
(on test:///default, whose domain has the UUID below)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import libvirt as real  # the real binding
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xvirt
import xvirt.compat.libvirt as face

from .helpers import CAPTURE

TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
OTHER_UUID = "11111111-2222-3333-4444-55555555aaaa"  # on neither host (sim's Domain-0 is 0...0)


@pytest.fixture(scope="module")
def real_conn() -> Iterator[Any]:
    real.registerErrorHandler(lambda _ctx, _err: None, None)
    c = real.open("test:///default")
    yield c
    c.close()
    real.registerErrorHandler(None, None)


@pytest.fixture(scope="module")
def face_conn(make_module_sim_host: Callable[..., xvirt.sim.Host]) -> Iterator[face.virConnect]:
    host = make_module_sim_host()
    host.create("test", uuid=TEST_UUID)
    c = face.open(host.uri)
    yield c
    c.close()


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """found (and whom), refused as invalid, not found, or which Python exception."""
    try:
        return ("found", call().name())
    except (real.libvirtError, face.libvirtError) as e:
        code = e.get_error_code()
        if code == 8:
            return ("invalid", e.get_error_domain(), e.get_error_message())
        return ("not found",) if code == 42 else ("other", code)
    except Exception as e:  # the binding's own refusals (NUL, surrogates)
        return ("raised", type(e).__name__)


_SEPARATORS = st.sampled_from(["", "", "", "-", " ", "--", "- ", "\t", "\v", "x", "{"])
_PADDING = st.text(st.sampled_from(" \t\n\v\f\r\xa0-"), max_size=3)


@st.composite
def uuid_like(draw: st.DrawFn) -> str:
    """The test domain's UUID (or another), re-cased, re-separated, padded, cut."""
    digits = draw(st.sampled_from([TEST_UUID, OTHER_UUID])).replace("-", "")
    digits = "".join(ch.upper() if draw(st.booleans()) else ch for ch in digits)
    body = "".join(ch + draw(_SEPARATORS) for ch in digits)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.text("0123456789abcdefg-} é\x00", max_size=2)) + body[cut:]
    return draw(_PADDING) + body + draw(_PADDING)


_noise = st.text(st.sampled_from("0123456789abcdefABCDEF- \t\n\v{}xé\x00\ud800"), max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(uuid_like(), _noise))
@example(text=TEST_UUID)
@example(text=" " + TEST_UUID.upper().replace("-", "") + "\t")
@example(text="-" + TEST_UUID)
@example(text=TEST_UUID + "-")
@example(text="\v" + TEST_UUID)
@example(text="6-695eb01f6a4830479aa97f2502e193f")
@example(text="")
def test_the_same_strings_as_real_libvirt(real_conn: Any, face_conn: face.virConnect,
                                          text: str) -> None:
    assert outcome(lambda: face_conn.lookupByUUIDString(text)) == outcome(
        lambda: real_conn.lookupByUUIDString(text))


def test_the_captured_variants(face_conn: face.virConnect) -> None:
    for case in CAPTURE["lookupByUUIDString_variants"]:
        text = eval(case["call"])  # the capture names each string as a Python literal
        got = outcome(lambda t=text: face_conn.lookupByUUIDString(t))
        if case["raised"]:
            assert got == ("invalid", case["get_error_domain"], case["get_error_message"])
        else:
            assert got == ("found", case["result_name"])
