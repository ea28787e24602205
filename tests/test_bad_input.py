"""Bad input never escapes as a raw exception (issue 16, item 8): every input below gives
a named xvirt error whose message names the culprit (the option, the value, the URI).
The same inputs against a real daemon are in tests/drivers/test_xend_bad_input.py."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import xvirt
from tests.names import exercise_name
from xvirt.connection import FOREVER_S
from xvirt.daemon.process import read_token
from xvirt.model import MAX_TOKEN_FILE_BYTES, read_token_file
from xvirt.tools.cli import main
from xvirt.tools.webconfig import MAX_WEB_CONFIG_BYTES, WebConfigError, load_web_config

_serial = itertools.count()

#: Strings no driver can send (lone surrogates) beside awkward but valid ones.
AWKWARD = ["\udcff", "\ud800", "a\udfffb", "\udc80.img", "x" * 300, " ", "", "\x00", "a/b",
           "\u2603", "..", "\ufffd"]


def _name(label: str) -> str:
    return f"bad-input-{label}-{next(_serial)}"


def _refused(uri: str) -> xvirt.InvalidArgumentError:
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        xvirt.open(uri).close()
    assert info.value.uri == uri
    return info.value


@pytest.fixture
def host() -> Iterator[xvirt.sim.Host]:
    h = xvirt.sim.Host(_name("host"))
    h.create("g0", memory_kib=65536, vcpus=1)
    yield h
    h.close()


# -- sim:/// URIs ---------------------------------------------------------------------------


@pytest.mark.parametrize("image_dir", ["/dev/null", "/dev/null/sub", "FILE", "/tmp/a%00b"])
def test_an_image_dir_that_cannot_be_made_is_named(tmp_path: Path, image_dir: str) -> None:
    """It was a bare AssertionError: the failure was taken for another thread's host."""
    if image_dir == "FILE":
        (tmp_path / "file").write_text("")
        image_dir = str(tmp_path / "file")
    error = _refused(f"sim:///{_name('imgdir')}?guests=1&image_dir={image_dir}")
    assert "image_dir" in error.message
    assert image_dir.replace("%00", "\\x00") in error.message
    assert xvirt.sim.get(error.uri.split("?")[0][len("sim:///"):]) is None  # nothing left made


def test_a_host_name_the_embedded_host_refuses_is_named() -> None:
    """``%`` may not be in an embedded host's name: guests=N made that a bare AssertionError
    too."""
    error = _refused("sim:///a%25b?guests=1")
    assert "'a%25b'" in error.message


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "-1", "1.5", "30001", ""])
def test_guests_must_be_an_ascii_whole_number(value: str) -> None:
    error = _refused(f"sim:///{_name('guests')}?guests={value}")
    assert "guests" in error.message and repr(value) in error.message


@pytest.mark.parametrize("key", ["control_latency_ms", "domain_timeout_ms"])
@pytest.mark.parametrize("value", ["1e308", "1e10", "inf", "nan", "-1", "x", ""])
def test_waits_in_a_sim_uri_are_bounded(host: xvirt.sim.Host, key: str, value: str) -> None:
    """1e308 was an OverflowError at the first request (the timers overflow)."""
    error = _refused(f"{host.uri}?{key}={value}")
    assert key in error.message and repr(value) in error.message


def test_the_largest_wait_in_a_uri_is_accepted(host: xvirt.sim.Host) -> None:
    with xvirt.open(f"{host.uri}?domain_timeout_ms=86400000&control_latency_ms=0") as conn:
        assert conn.lookup_by_name("g0").name == "g0"


def test_the_embedded_host_refuses_what_its_uri_refuses(tmp_path: Path) -> None:
    with pytest.raises(xvirt.InvalidArgumentError, match="image directory '/a\\\\x00b'"):
        xvirt.sim.Host(_name("nul"), image_dir="/a\x00b")
    with pytest.raises(xvirt.InvalidArgumentError, match="control_latency_ms"):
        xvirt.sim.Host(_name("latency"), control_latency_ms=1e308)


# -- events(timeout=...) ------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [math.inf, -math.inf, math.nan, -1, -0.5, "x", "1", True,
                                     b"1", [1.0]], ids=repr)
def test_an_event_timeout_must_be_finite_seconds(host: xvirt.sim.Host, timeout: object) -> None:
    """inf and nan were OverflowError and ValueError, a string a TypeError."""
    with xvirt.open(host.uri) as conn, pytest.raises(xvirt.InvalidArgumentError) as info:
        conn.events(timeout=timeout)  # type: ignore[arg-type]
    error = info.value
    assert "timeout" in error.message and repr(timeout) in error.message
    assert (error.op, error.uri) == ("events", host.uri)


@pytest.mark.parametrize("timeout", [1e300, 10**400, 1e9, 0, 0.0])
def test_a_huge_event_timeout_is_capped_not_an_overflow(host: xvirt.sim.Host,
                                                        timeout: float) -> None:
    with xvirt.open(host.uri) as conn:
        stream = conn.events(timeout=timeout)
        host.create("g1", memory_kib=65536, vcpus=1)
        event = next(stream)
        assert (event.kind, event.name) == (xvirt.EventKind.CREATED, "g1")
    assert FOREVER_S == 1e9


def test_a_closed_connection_is_reported_before_a_bad_timeout(host: xvirt.sim.Host) -> None:
    conn = xvirt.open(host.uri)
    conn.close()
    with pytest.raises(xvirt.ConnectionClosedError):
        conn.events(timeout=math.nan)


# -- libvirt: URIs ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["test:///def\x00ault", "test:///default?x=\x00",
                                    "test:///def\udcffault", "test:///a\nb", "test:///a\x7fb"],
                         ids=repr)
def test_a_libvirt_uri_libvirt_cannot_take_is_refused(target: str) -> None:
    """A NUL was a ValueError, a lone surrogate a UnicodeEncodeError, from the binding."""
    uri = f"libvirt:{target}"
    error = _refused(uri)
    assert repr(uri) in error.message


@pytest.mark.parametrize("uri", ["sim:///def\tault", "sim:///default\n", "xend://a\rb",
                                 "xend+unix:///tmp/x\x01.sock"], ids=repr)
def test_control_characters_in_any_uri_are_refused(uri: str) -> None:
    """urlsplit drops tabs and newlines: sim:///def<TAB>ault silently opened sim:///default."""
    error = _refused(uri)
    assert repr(uri) in error.message and "control character" in error.message


# -- xend:// URIs ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "00", "65536", "99999", "-1", "x", "\u00b2"])
def test_a_daemon_port_outside_1_65535_is_refused(port: str) -> None:
    """Port 0 silently meant port 8000."""
    uri = f"xend://127.0.0.1:{port}"
    error = _refused(uri)
    assert "port" in error.message and repr(uri) in error.message


@pytest.mark.parametrize("host", ["a\x00b", "a b", "a\tb", "a\udcffb", "\u00e4_b", "\u200b",
                                  "\uff41\uff42"], ids=repr)
def test_a_daemon_host_name_that_cannot_be_sent_is_refused(host: str) -> None:
    """A NUL or an invalid IDNA name was httpx's raw InvalidURL."""
    uri = f"xend://{host}:8000?timeout=0"
    assert repr(uri) in _refused(uri).message


def test_a_nul_in_a_daemon_socket_path_is_refused() -> None:
    uri = "xend+unix:///tmp/a\x00b"
    assert repr(uri) in _refused(uri).message


@pytest.mark.parametrize("value", ["1e308", "1e10", "86401", "inf", "nan", "-1", "x"])
def test_the_daemon_timeout_is_bounded(value: str) -> None:
    """1e10 was an OverflowError at the first request."""
    error = _refused(f"xend://127.0.0.1:8000?timeout={value}")
    assert "timeout" in error.message and repr(value) in error.message


# -- token files ----------------------------------------------------------------------------


def _token_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Paths that must be refused, with a fragment of the reason."""
    long = tmp_path / "long"
    long.write_text("s3cr3t" * 1000)  # no newline within the bound
    accented = tmp_path / "accented"
    accented.write_text("t\u00f6k\u00e9n-0123456789abcdef\n")
    control = tmp_path / "control"
    control.write_bytes(b"tok\x00en-0123456789abcdef\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" * 10 + b"\n")
    empty = tmp_path / "empty"
    empty.write_text("\n\n  \n")
    return {
        "/dev/zero": ("/dev/zero", f"first {MAX_TOKEN_FILE_BYTES} bytes"),
        "long": (str(long), f"first {MAX_TOKEN_FILE_BYTES} bytes"),
        "accented": (str(accented), "printable ASCII"),
        "control": (str(control), "printable ASCII"),
        "binary": (str(binary), "printable ASCII"),
        "empty": (str(empty), "empty"),
        "missing": (str(tmp_path / "missing"), "cannot read"),
        "directory": (str(tmp_path), "cannot read"),
        "nul": ("/tmp/a\x00b", "cannot read"),
    }


@pytest.mark.parametrize("kind", ["/dev/zero", "long", "accented", "control", "binary", "empty",
                                  "missing", "directory", "nul"])
def test_a_bad_token_file_is_named_and_read_only_so_far(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """/dev/zero was read until MemoryError; the token itself is never in the message."""
    path, reason = _token_files(tmp_path)[kind]
    encoded = path.replace("\x00", "%00")
    started = time.monotonic()
    error = _refused(f"xend://127.0.0.1:8000?token_file={encoded}")
    assert reason in error.message and repr(path) in error.message
    assert "s3cr3t" not in str(error) and "0123456789abcdef" not in str(error)
    if kind != "nul":  # (no environment variable can hold a NUL)
        monkeypatch.setenv("XVIRT_TOKEN_FILE", path)
        assert reason in _refused("xend://127.0.0.1:8000").message
    with pytest.raises(xvirt.InvalidArgumentError, match="token") as info:
        read_token(Path(path))  # the daemon's own reader
    assert repr(path) in info.value.message
    assert time.monotonic() - started < 10


def test_a_token_is_the_first_non_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n  \n  0123456789abcdef0123 \r\nsecond line\n")
    assert read_token_file(path) == "0123456789abcdef0123"
    assert read_token(path) == "0123456789abcdef0123"
    with xvirt.open(f"xend://127.0.0.1:8000?token_file={path}"):
        pass


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xvirt", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_daemon_refuses_an_endless_token_file(tmp_path: Path) -> None:
    run = _cli("daemon", "--state-dir", str(tmp_path / "s"), "--empty", "--no-unix",
               "--listen", "127.0.0.1:0", "--token-file", "/dev/zero")
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "/dev/zero" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was made


def test_the_daemon_refuses_an_endless_control_latency(tmp_path: Path) -> None:
    """1e308 ms overflowed the timer at the first control request."""
    run = _cli("daemon", "--state-dir", str(tmp_path / "s"), "--empty", "--no-unix",
               "--listen", "127.0.0.1:0", "--control-latency-ms", "1e308")
    assert run.returncode == 2 and "Traceback" not in run.stderr  # a bad option value
    assert "--control-latency-ms" in run.stderr and "1e+308" in run.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1:\u00b2", "127.0.0.1:65536", "127.0.0.1"])
def test_the_daemon_refuses_a_bad_listen_address(listen: str) -> None:
    result = CliRunner().invoke(main, ["daemon", "--listen", listen])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "HOST:PORT" in result.stderr and repr(listen) in result.stderr


# -- the exporter's options and files ---------------------------------------------------------


@pytest.mark.parametrize(("args", "culprit"), [
    (["--scrape-timeout", "inf"], "--scrape-timeout"),
    (["--scrape-timeout", "nan"], "--scrape-timeout"),
    (["--scrape-timeout", "1e308"], "--scrape-timeout"),
    (["--web-config-file", "/dev/zero"], "/dev/zero"),
    (["--listen", "127.0.0.1:\u00b2"], "--listen"),
])
def test_the_exporter_refuses_bad_options_in_one_line(args: list[str], culprit: str) -> None:
    """A bad option value is a usage error (2, naming the option); a file that cannot be
    used is a failed operation (1, one ``error:`` line)."""
    result = CliRunner().invoke(main, ["exporter", *args])
    assert "Traceback" not in result.stderr
    if culprit.startswith("--"):
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines()[-1].startswith("Error: ") and culprit in result.stderr
        return
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and culprit in lines[0]


def test_a_web_config_file_is_read_only_so_far(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=f"/dev/zero is longer than {MAX_WEB_CONFIG_BYTES}"):
        load_web_config("/dev/zero")
    with pytest.raises(WebConfigError, match="cannot read web config file"):
        load_web_config("/tmp/a\x00b")
    (tmp_path / "latin1.yml").write_bytes(b"# \xe9\n")
    with pytest.raises(WebConfigError, match="cannot read web config file"):
        load_web_config(tmp_path / "latin1.yml")


# -- any string as a name or an image --------------------------------------------------------


TEXT = (st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
        | st.sampled_from(AWKWARD))


@given(TEXT)
@settings(max_examples=150, deadline=None)
def test_any_string_as_a_name_or_an_image_gives_an_xvirt_error_or_works(text: str) -> None:
    with xvirt.sim.Host(_name("prop")) as h:
        h.create("g0", memory_kib=65536, vcpus=1)
        for cache in ("on", "off"):
            with xvirt.open(f"{h.uri}?cache={cache}") as conn:
                exercise_name(conn, (conn,), text)
