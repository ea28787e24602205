"""libFuzzer (atheris) harness: the control plane's WSGI application, the checks of
test_control_fuzz (``call``: always an answer, a documented status, valid headers, the
right Content-Length, an X-Xvirt-Error kind on failures, a 500 only from a named error).

An input is one to three requests (method, path, query, form body, Content-Length,
listener, token, headers), drawn by a FuzzedDataProvider from the suite's pools of
routes, keys and values and from raw bytes. The application must never raise: any
exception out of it, or a broken check, is a crash.

A host (two guests, an image directory) costs about five requests, so one serves
``HOST_INPUTS`` inputs in a row, or fewer when inputs created more than ``MAX_DOMAINS``
domains; then a fresh one replaces it, so what inputs leave behind stays bounded. An
input can therefore fail only because of those before it on the same host: when one
fails, they are written beside the crash as ``control-history-<pid>.bin`` and
``python fuzz/control_plane.py --replay FILE`` runs them again in order on a fresh host.

    python fuzz/control_plane.py -runs=20000 [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import _harness
import atheris

with _harness.instrumented():
    from tests.daemon.test_control_fuzz import (
        _KEYS,
        _LENGTHS,
        _ROUTES,
        _VALUES,
        TOKEN,
        Host,
        call,
        environ_of,
    )
    from xvirt.daemon import control
    from xvirt.daemon.control import ControlApp, ControlSettings

HOST_INPUTS = 64
MAX_DOMAINS = 64
# as the suite's autouse fixture does: the long poll (10 s by design) goes through its
# waiting path without spending the run there
control.MAX_EVENT_WAIT_S = 0.001

_METHODS = ["GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get", ""]
_SUFFIXES = ["", "", "/", "//", "x", "/x", "%2F", "\u00e9", "\x00", "/.."]
_TAILS = ["", "&", "%", "%zz", "%ff", "%00", ";", "=", "&&=&"]
_AUTH = [None, f"Bearer {TOKEN}", "Bearer wrong", "Bearer ", "Basic x", f"bearer {TOKEN}",
         f"Bearer {TOKEN}\u00e9"]
_HEADERS = ["HTTP_X_XVIRT_BOOT", "HTTP_X_XVIRT_GENERATION", "HTTP_HOST", "HTTP_ACCEPT",
            "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING"]


def _text(fdp: atheris.FuzzedDataProvider, most: int) -> str:
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, most))  # as st.text()


def _latin1(fdp: atheris.FuzzedDataProvider, most: int) -> str:
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, most)).decode("latin-1")


def _pick_or_text(fdp: atheris.FuzzedDataProvider, pool: list[str], most: int) -> str:
    return fdp.PickValueInList(pool) if fdp.ConsumeIntInRange(0, 3) else _text(fdp, most)


def form_text(fdp: atheris.FuzzedDataProvider) -> str:
    """A form (query or body) as the suite's ``form_text`` strategy writes one."""
    pairs = [(_pick_or_text(fdp, _KEYS, 8), _pick_or_text(fdp, _VALUES, 12))
             for _ in range(fdp.ConsumeIntInRange(0, 6))]
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        return urlencode(pairs)
    if how == 1:  # unencoded, as a careless client writes it
        return "&".join(f"{k}={v}" for k, v in pairs)
    if how == 2:
        return "&".join(f"{quote(k)}={quote(v, safe='%')}" for k, v in pairs) + (
            fdp.PickValueInList(_TAILS))
    return _text(fdp, 40)


def request(fdp: atheris.FuzzedDataProvider) -> tuple[bool, str | None, dict[str, Any]]:
    """(trusted listener, token, WSGI environ), as the suite's ``requests`` strategy."""
    method = _pick_or_text(fdp, _METHODS, 6)
    path = fdp.PickValueInList(_ROUTES) + (
        fdp.PickValueInList(_SUFFIXES) if fdp.ConsumeBool() else _latin1(fdp, 8))
    if fdp.ConsumeIntInRange(0, 9) == 0:
        path = _latin1(fdp, 24)
    query = form_text(fdp)
    if fdp.ConsumeBool():
        query = query.encode("utf-8", "surrogatepass").decode("latin-1")
    if fdp.ConsumeIntInRange(0, 9) == 0:
        query = _latin1(fdp, 24)
    body = form_text(fdp).encode("utf-8", "surrogatepass")
    if fdp.ConsumeIntInRange(0, 9) == 0:
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    length: str | None = str(len(body))
    if fdp.ConsumeIntInRange(0, 4) == 0:
        length = fdp.PickValueInList([*_LENGTHS, None]) if fdp.ConsumeBool() else _text(fdp, 4)
    trusted = fdp.ConsumeBool()
    token = TOKEN if fdp.ConsumeBool() else None
    extra: dict[str, str] = {}
    auth = fdp.PickValueInList(_AUTH) if fdp.ConsumeIntInRange(0, 3) else _latin1(fdp, 12)
    if auth is not None:
        extra["HTTP_AUTHORIZATION"] = auth
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        name = fdp.PickValueInList(_HEADERS)
        extra[name] = _latin1(fdp, 12)
    return trusted, token, environ_of(method, path, query, body, length, extra)


class Hosts:
    """The current host, replaced every HOST_INPUTS inputs or once it holds too much."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.host: Host | None = None
        self.history: list[bytes] = []  # the inputs the current host has seen

    def get(self) -> Host:
        host = self.host
        if host is not None and (len(self.history) >= HOST_INPUTS
                                 or len(host.model.live_view()[3]) > MAX_DOMAINS):
            self.close()
            host = None
        if host is None:
            host = self.host = Host(self.base)
        return host

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
        self.host = None
        self.history = []


def run_input(hosts: Hosts, data: bytes) -> None:
    host = hosts.get()
    hosts.history.append(data)
    fdp = atheris.FuzzedDataProvider(data)
    for _ in range(1 + fdp.ConsumeIntInRange(0, 2)):  # a few in a row, on one host
        trusted, token, environ = request(fdp)
        app = ControlApp(host.model, ControlSettings(
            token=token, fast_socket="/run/x/fast.sock", instance="i1"), trusted=trusted)
        call(app, environ)


def _write_history(history: list[bytes]) -> None:
    prefix = next((a.partition("=")[2] for a in sys.argv if a.startswith("-artifact_prefix=")),
                  "")
    path = Path(f"{prefix}control-history-{os.getpid()}.bin")
    path.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in history))
    print(f"{_harness.TAG} control: this host had run {len(history) - 1} inputs before the "
          f"failing one; all {len(history)} are in {path} "
          f"(python fuzz/control_plane.py --replay {path})", file=sys.stderr, flush=True)


def replay(path: Path, base: Path) -> None:
    """Run the inputs of a history file in order on one fresh host."""
    raw = path.read_bytes()
    hosts = Hosts(base)
    at = count = 0
    while at < len(raw):
        (size,) = struct.unpack_from(">I", raw, at)
        run_input(hosts, raw[at + 4:at + 4 + size])
        at += 4 + size
        count += 1
    hosts.close()
    print(f"replayed the {count} inputs of {path}: no failure")


def seeds() -> list[bytes]:
    """A few fixed pseudo-random inputs: the provider reads any bytes as requests."""
    rng = random.Random(5)
    return [rng.randbytes(size) for size in (16, 32, 64, 128, 256) for _ in range(6)]


def main() -> None:
    work = _harness.scratch("control")
    hosts = Hosts(work)
    if len(sys.argv) == 3 and sys.argv[1] == "--replay":
        replay(Path(sys.argv[2]), work)
        return

    def one_input(data: bytes) -> None:
        try:
            run_input(hosts, data)
        except BaseException:
            if len(hosts.history) > 1:
                _write_history(hosts.history)
            raise

    _harness.main("control", one_input, seeds(), max_len=1024, work=work, at_end=hosts.close)


if __name__ == "__main__":
    main()
    sys.exit(0)
