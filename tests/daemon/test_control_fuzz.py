"""Fuzzing the control plane's WSGI application in process: methods, paths, query
strings, form bodies and headers, on trusted (unix) and token (TCP) listeners.

The contract: the application always answers (an exception out of it is a 500 with
a traceback in a real server), with a status it documents; a failure carries an
``X-Xvirt-Error`` kind and, when it has an S-expression body, an ``(xend.err ...)``
one; a 500 only ever comes from a named xvirt error (kind ``failed``); headers are
valid HTTP (latin-1, no line breaks); Content-Length is right; each request takes
bounded time; nothing is kept once a host is dropped. Each input gets a fresh host.
Short and derandomized by default; ``XVIRT_LONG_RUN=1`` runs ``XVIRT_FUZZ_EXAMPLES``
(default 1,000,000) random inputs (scripts/long-run-fuzz).
"""

from __future__ import annotations

import gc
import io
import random
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from tests.fuzzing import LONG, fuzz, fuzz_settings
from xvirt.clock import ManualClock
from xvirt.daemon import control
from xvirt.daemon.control import ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel
from xvirt.wire import records, sxp

PER_INPUT_S = 3.0  # a create of count=32751 domains is the slowest legitimate request
TOKEN = "fuzz-token-0123456789"
WEB_UUID = "5f0a6a0e-7e57-4b1d-9000-000000000001"
OFF_UUID = "5f0a6a0e-7e57-4b1d-9000-0000000000ff"  # defined, shut off
STATUSES = {200, 201, 202, 400, 401, 404, 405, 406, 413, 500, 501}


@pytest.fixture(autouse=True)
def _short_long_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The events long poll is bounded by design (10 s): shorten it so that the fuzz
    still goes through the waiting path without spending its time there."""
    monkeypatch.setattr(control, "MAX_EVENT_WAIT_S", 0.001)


# -- one request ------------------------------------------------------------------------------


class Host:
    """A fresh host with two guests, one domain defined and shut off, and a throwaway
    image directory."""

    def __init__(self, base: Path) -> None:
        self.dir = tempfile.mkdtemp(dir=base)
        self.model = HostModel("fuzz", clock=ManualClock(), image_dir=Path(self.dir) / "img",
                               seed=5)
        self.model.create("web", memory_kib=512 * 1024, vcpus=2, uuid=WEB_UUID)
        self.model.create("db", memory_kib=1024 * 1024)
        self.model.define("off", memory_kib=256 * 1024, uuid=OFF_UUID)

    def close(self) -> None:
        self.model.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def call(app: ControlApp, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Run one request; check the answer is well-formed HTTP; return status, headers, body."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append((status, headers))

    t0 = time.perf_counter()
    chunks = app(environ, start_response)  # any exception here fails the test
    assert time.perf_counter() - t0 < PER_INPUT_S
    assert len(seen) == 1
    status_line, header_list = seen[0]
    code_text, _, reason = status_line.partition(" ")
    code = int(code_text)
    assert code in STATUSES and reason and reason != "Error", status_line
    for name, value in header_list:
        assert isinstance(name, str) and isinstance(value, str)
        name.encode("latin-1")
        value.encode("latin-1")
        assert not any(c in name + value for c in "\r\n\x00"), (name, value)
    headers = dict(header_list)
    assert len(headers) == len(header_list), header_list  # no header twice
    body = b"".join(chunks)
    assert headers["Content-Length"] == str(len(body))
    assert b"Traceback" not in body
    kind = headers.get("X-Xvirt-Error")
    if code >= 400:
        assert kind, (status_line, body)
        if headers["Content-Type"] == "application/sxp" and body:
            assert records.parse_error(sxp.parse(body)) is not None, body
    else:
        assert kind is None
        if headers["Content-Type"] == "application/sxp" and body:
            sxp.parse(body)  # every success body is one strict S-expression
    if code == 500:
        assert kind == "failed", (status_line, body)  # a named error, translated
    return code, headers, body


def environ_of(method: str, path: str, query: str, body: bytes, length: str | None,
               extra: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "localhost", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
    }
    if length is not None:
        env["CONTENT_LENGTH"] = length
    env.update(extra)
    return env


# -- inputs ------------------------------------------------------------------------------------

_ROUTES = ["/xend/node", "/xend/node/", "/xend/domain", "/xend/domain/", "/xend/domain/web",
           "/xend/domain/db", "/xend/domain/0", "/xend/domain/1", "/xend/domain/2",
           f"/xend/domain/{WEB_UUID}", "/xend/domain/nosuch", "/xend/domain/99999",
           "/xend/domain/off", f"/xend/domain/{OFF_UUID}", "/xend/domain/new",
           "/xvirt/resolve", "/xvirt/events", "/xvirt/table", "/xvirt/table/", "/xvirt/table/1",
           "/xvirt/table/70000", "/xvirt/fast", "/xvirt/host", "/xvirt/host/",
           "/xvirt/host/domains", "/xvirt/host/defined", "/xvirt/host/journal", "/xvirt/", "/",
           ""]
_KEYS = ["op", "detail", "state", "after", "timeout", "uuid", "id", "name", "all", "domid",
         "memory_kib", "vcpus", "count", "image", "file", "reason", "expected_uuid", "config",
         "blocked"]
_CONFIG = sxp.dumps(records.vm_config("new", 256 * 1024, 512 * 1024, 2))
_OFF_CONFIG = sxp.dumps(records.vm_config("off", 64 * 1024, 64 * 1024, 1, OFF_UUID))
_VALUES = ["", "0", "1", "2", "3", "-1", "web", "db", "new", "x", "pause", "unpause", "destroy",
           "save", "rename", "migrate", "shutdown", "create", "restore", "reboot", "poweroff",
           "halt", "vcpuinfo", "wait_for_devices", "crash", "resume", "set_blocked", "stall",
           "unstall", "reboot_host", "paused", "running", "halted", "blocked", "crashed", "all",
           "new", "start", "delete", "define", "undefine", "defined", "inactive", "active",
           OFF_UUID, "off", _OFF_CONFIG,
           _CONFIG.replace("(vm", "(domain"),
           "nan", "inf", "1e3", "0.5", "\u00b2", "\u0663", "\x00", "99999999999999999999", "32751",
           "32752", "65535", WEB_UUID, WEB_UUID.upper(), "snap.img", "../etc/passwd",
           "/var/lib/xvirt/x.img", _CONFIG, _CONFIG[:-1], _CONFIG.replace("256", "-5"),
           "(vm (name a) (memory 1))"]
_LENGTHS = ["", "0", "-1", "1", "+5", " 5", "\u00b2", "\u0663", "5\u00b2", "1e3", "0x10",
            "99999999999999999999", str(control.MAX_BODY + 1)]

values = st.sampled_from(_VALUES) | st.text(max_size=12)
keys = st.sampled_from(_KEYS) | st.text(max_size=8)
fields = st.lists(st.tuples(keys, values), max_size=6)


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")  # what a WSGI server puts in PATH_INFO and headers


@st.composite
def form_text(draw: st.DrawFn) -> str:
    pairs = draw(fields)
    how = draw(st.integers(0, 3))
    if how == 0:
        return urlencode(pairs)
    if how == 1:  # unencoded, as a careless client writes it
        return "&".join(f"{k}={v}" for k, v in pairs)
    if how == 2:
        return "&".join(f"{quote(k)}={quote(v, safe='%')}" for k, v in pairs) + draw(
            st.sampled_from(["", "&", "%", "%zz", "%ff", "%00", ";", "=", "&&=&"]))
    return draw(st.text(max_size=40))


@st.composite
def requests(draw: st.DrawFn) -> tuple[bool, str | None, dict[str, Any]]:
    method = draw(st.sampled_from(["GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
                                   "get", ""]) | st.text(max_size=6))
    path = draw(st.sampled_from(_ROUTES))
    suffix = draw(st.sampled_from(["", "", "/", "//", "x", "/x", "%2F", "\u00e9", "\x00", "/.."])
                  | st.binary(max_size=8).map(_latin1))
    path += suffix
    if draw(st.integers(0, 9)) == 0:
        path = _latin1(draw(st.binary(max_size=24)))
    query = draw(form_text())
    if draw(st.booleans()):
        query = _latin1(query.encode("utf-8", "surrogatepass"))
    if draw(st.integers(0, 9)) == 0:
        query = _latin1(draw(st.binary(max_size=24)))
    body = draw(form_text()).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=64))
    length: str | None = str(len(body))
    if draw(st.integers(0, 4)) == 0:
        length = draw(st.sampled_from([*_LENGTHS, None]) | st.text(max_size=4))
    trusted = draw(st.booleans())
    token = draw(st.sampled_from([TOKEN, None]))
    extra: dict[str, str] = {}
    auth = draw(st.sampled_from([None, f"Bearer {TOKEN}", "Bearer wrong", "Bearer ", "Basic x",
                                 f"bearer {TOKEN}", f"Bearer {TOKEN}\u00e9"])
                | st.binary(max_size=12).map(_latin1))
    if auth is not None:
        extra["HTTP_AUTHORIZATION"] = auth
    for name, value in draw(st.lists(st.tuples(
            st.sampled_from(["HTTP_X_XVIRT_BOOT", "HTTP_X_XVIRT_GENERATION", "HTTP_HOST",
                             "HTTP_ACCEPT", "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING"]),
            st.binary(max_size=12).map(_latin1)), max_size=3)):
        extra[name] = value
    return trusted, token, environ_of(method, path, query, body, length, extra)


# -- targets -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="xvirt-control-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_fuzz_control_plane_requests(base: Path) -> None:
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(st.lists(requests(), min_size=1, max_size=3))
        def one(reqs: list[tuple[bool, str | None, dict[str, Any]]]) -> None:
            host = Host(base)
            codes = []
            try:
                for trusted, token, environ in reqs:  # a few in a row, on one host
                    n[0] += 1
                    app = ControlApp(host.model, ControlSettings(
                        token=token, fast_socket="/run/x/fast.sock", instance="i1"),
                        trusted=trusted)
                    codes.append(call(app, environ)[0])
            finally:
                host.close()
            # steer towards requests that get past the checks, and towards variety
            target(float(sum(c < 300 for c in codes)), label="successes")
            target(float(len(set(codes))), label="distinct statuses")
        return one

    fuzz("control plane", 120, run, lambda: n[0])


@st.composite
def managed_requests(draw: st.DrawFn) -> tuple[bool, str | None, dict[str, Any]]:
    """Requests aimed at managed domains: op=new/start/delete with any config, key and
    expected_uuid, and the listing's state filters, well-formed or not."""
    op = draw(st.sampled_from(["new", "start", "delete"]))
    if draw(st.integers(0, 4)) == 0:
        query = urlencode([("state", draw(st.sampled_from(
            ["halted", "inactive", "all", "running", "active", "paused", ""]) | values)),
                           ("detail", draw(st.sampled_from(["1", "0", ""]) | values))])
        path = draw(st.sampled_from(["/xend/domain", "/xend/domain/"]))
        return draw(st.booleans()), TOKEN, environ_of("GET", path, query, b"", "0", {})
    path = "/xend/domain/" if op == "new" else draw(st.sampled_from(
        ["/xend/domain/off", f"/xend/domain/{OFF_UUID}", "/xend/domain/web",
         f"/xend/domain/{WEB_UUID}", "/xend/domain/nosuch", "/xend/domain/1",
         "/xend/domain/", "/xend/domain/off/x"]) | values.map(lambda v: "/xend/domain/" + v))
    pairs = [("op", op)]
    for key in draw(st.lists(st.sampled_from(["config", "expected_uuid", "name"]), max_size=3)):
        pairs.append((key, draw(st.sampled_from([_CONFIG, _OFF_CONFIG, OFF_UUID, WEB_UUID])
                                | values)))
    body = urlencode(pairs).encode("utf-8", "surrogatepass")
    auth = draw(st.sampled_from([{}, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"},
                                 {"HTTP_AUTHORIZATION": "Bearer wrong"}]))
    return (draw(st.booleans()), draw(st.sampled_from([TOKEN, None])),
            environ_of("POST", path, "", body, str(len(body)), auth))


def test_fuzz_managed_domain_requests(base: Path) -> None:
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(st.lists(managed_requests(), min_size=1, max_size=4))
        def one(reqs: list[tuple[bool, str | None, dict[str, Any]]]) -> None:
            host = Host(base)
            codes = []
            try:
                for trusted, token, environ in reqs:
                    n[0] += 1
                    app = ControlApp(host.model, ControlSettings(token=token), trusted=trusted)
                    codes.append(call(app, environ)[0])
                # whatever happened, each name is held once, running or defined
                running = [d.name for d in host.model.domains()]
                halted = [d.name for d in host.model.defined()[2]]
                assert len(set(running + halted)) == len(running) + len(halted)
            finally:
                host.close()
            target(float(sum(c < 300 for c in codes)), label="successes")
        return one

    fuzz("control plane: managed domains", 120, run, lambda: n[0])


@pytest.mark.parametrize("length", _LENGTHS)
def test_any_content_length_gets_an_answer(base: Path, length: str) -> None:
    host = Host(base)
    try:
        app = ControlApp(host.model, ControlSettings(), trusted=True)
        code, headers, _ = call(app, environ_of("POST", "/xend/domain/web", "", b"op=pause",
                                                length, {}))
        well_formed = (length.isascii() and length.isdigit()) or length == ""
        if not well_formed:
            assert (code, headers["X-Xvirt-Error"]) == (400, "invalid")
    finally:
        host.close()


def test_unicode_digits_in_content_length_are_a_400_not_a_crash(base: Path) -> None:
    """Regression: ``"²".isdigit()`` is true but ``int("²")`` raises ValueError, which
    escaped the application as a 500 with a traceback."""
    host = Host(base)
    try:
        app = ControlApp(host.model, ControlSettings(), trusted=True)
        for length in ("\u00b2", "\u0663", "1\u00b9"):
            code, headers, body = call(app, environ_of("POST", "/xend/domain/web", "",
                                                       b"op=pause", length, {}))
            assert (code, headers["X-Xvirt-Error"]) == (400, "invalid")
            assert b"Content-Length" in body
    finally:
        host.close()


def test_control_plane_keeps_no_memory_across_a_batch(base: Path) -> None:
    rng = random.Random(8)
    batch = 2_000 if LONG else 150

    def one_batch() -> None:
        host = Host(base)
        try:
            apps = [ControlApp(host.model, ControlSettings(token=TOKEN), trusted=t)
                    for t in (True, False)]
            for _ in range(batch):
                path = rng.choice(_ROUTES) + rng.choice(["", "/", "x"])
                pairs = [(rng.choice(_KEYS), rng.choice(_VALUES))
                         for _ in range(rng.randrange(4))]
                method = rng.choice(["GET", "POST", "HEAD", "PUT"])
                call(rng.choice(apps), environ_of(method, path, urlencode(pairs),
                                                  urlencode(pairs).encode(),
                                                  str(len(urlencode(pairs))), {}))
        finally:
            host.close()

    one_batch()  # warm up: caches that are bounded and filled once
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(3 if LONG else 1):
            one_batch()
        gc.collect()
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 256 * 1024, f"{current} bytes still held after {batch} requests"
