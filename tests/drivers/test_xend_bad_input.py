"""Bad input to the xend driver, against one real daemon for the module (issue 16, item 8):
strings HTTP cannot carry, event timeouts, token files. Each gives a named xvirt error
naming the culprit, and the host is left as it was."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xvirt
from tests.names import exercise_name, use_name
from xvirt.testing.daemon import DaemonProcess

#: Lone surrogates: what an undecodable byte of a file name becomes, and no UTF-8 can hold.
UNSENDABLE = ["\udcff", "\ud800", "a\udfffb", "\udc80.img", "g0\udcff"]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    d = DaemonProcess()
    d.start()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost") as admin:
        r = admin.post("/xvirt/host", data={"op": "create", "name": "g0",
                                            "memory_kib": "262144", "vcpus": "1"})
        assert r.status_code == 200, r.text
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture(scope="module")
def conn(daemon: DaemonProcess) -> Iterator[xvirt.Connection]:
    with xvirt.open(daemon.unix_uri) as c:
        yield c


def _images(conn: xvirt.Connection) -> list[str]:
    assert conn.image_dir is not None
    return sorted(p.name for p in Path(conn.image_dir).iterdir())


def _unchanged(conn: xvirt.Connection) -> None:
    dom = conn.lookup_by_name("g0")
    assert dom.info().state is not xvirt.DomainState.PAUSED
    assert [s.identity.name for s in conn.sample()] == ["Domain-0", "g0"]


@pytest.mark.parametrize("text", UNSENDABLE, ids=repr)
@pytest.mark.parametrize("call", ["rename", "save", "restore"])
def test_a_string_http_cannot_carry_is_an_invalid_argument(
        conn: xvirt.Connection, call: str, text: str) -> None:
    """They were UnicodeEncodeError from urlencode."""
    dom = conn.lookup_by_name("g0")
    before = _images(conn)
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        use_name(conn, dom, call, text)
    error = info.value
    assert error.op == call and error.uri == conn.uri
    # named in the name field (escaped), and why: the driver's check says "lone surrogate";
    # a surrogate no file name can hold is refused before, by the image-name rule
    assert error.name == text.encode("utf-8", "backslashreplace").decode()
    assert f"name={error.name!r}" in str(error)
    assert "lone surrogate" in error.message or "encodable as a file name" in error.message
    str(error).encode("utf-8")  # printable, loggable
    assert _images(conn) == before
    _unchanged(conn)


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("text", UNSENDABLE, ids=repr)
def test_a_name_http_cannot_carry_names_no_domain(daemon: DaemonProcess, cache: str,
                                                   text: str) -> None:
    """With cache=off each lookup is a request: it was a UnicodeEncodeError from quote()."""
    with xvirt.open(f"{daemon.unix_uri}?cache={cache}") as c:
        with pytest.raises(xvirt.NoDomainError) as info:
            c.lookup_by_name(text)
        assert repr(text) in str(info.value)


@pytest.mark.parametrize("timeout", [math.inf, math.nan, "x", -1], ids=repr)
def test_an_event_timeout_must_be_finite_seconds(conn: xvirt.Connection,
                                                 timeout: object) -> None:
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        conn.events(timeout=timeout)  # type: ignore[arg-type]
    assert "timeout" in info.value.message and repr(timeout) in info.value.message
    assert info.value.uri == conn.uri


@pytest.mark.parametrize("timeout", [None, 5000.0, 1e300])
def test_a_long_event_wait_is_taken_in_polls_the_daemon_accepts(
        conn: xvirt.Connection, timeout: float | None) -> None:
    """The daemon refuses a poll longer than 3600 s, so events() (timeout None, asked as
    1e9 s) was an InvalidArgumentError about a '1e+09' the caller never gave."""
    dom = conn.lookup_by_name("g0")
    stream = conn.events(timeout=timeout)
    dom.pause()
    try:
        event = next(stream)
        assert (event.kind, event.name) == (xvirt.EventKind.PAUSED, "g0")
    finally:
        dom.resume()


def test_a_finite_event_wait_longer_than_one_poll_is_kept(conn: xvirt.Connection) -> None:
    """The daemon answers a long poll within 10 s; the driver polls again until the
    caller's timeout, so the stream does not end early. (Short: one poll of 0.3 s.)"""
    started = time.monotonic()
    assert list(conn.events(timeout=0.3)) == []
    assert 0.3 <= time.monotonic() - started < 5


def test_an_endless_token_file_is_refused_on_the_tcp_uri(daemon: DaemonProcess) -> None:
    uri = f"{daemon.tcp_uri}?token_file=/dev/zero"
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        xvirt.open(uri)
    assert "/dev/zero" in info.value.message and info.value.uri == uri


def test_port_0_is_refused_not_the_default_port(daemon: DaemonProcess) -> None:
    uri = "xend://127.0.0.1:0"
    with pytest.raises(xvirt.InvalidArgumentError, match="port") as info:
        xvirt.open(uri)
    assert info.value.uri == uri


TEXT = (st.text(alphabet=st.characters(exclude_categories=()), max_size=24)
        | st.sampled_from([*UNSENDABLE, "", " ", "g0", "Domain-0", "0", "1", "a/b", "..",
                           "\x00", "\u2603", "%00", "%ff", "+", "a b", "x" * 300]))


@given(TEXT)
@settings(max_examples=40, deadline=None)
def test_any_string_as_a_name_or_an_image_gives_an_xvirt_error_or_works(
        daemon: DaemonProcess, text: str) -> None:
    with xvirt.open(daemon.unix_uri) as c, xvirt.open(f"{daemon.unix_uri}?cache=off") as direct:
        exercise_name(c, (c, direct), text)
