"""URI -> driver. The only module that knows which schemes exist."""

from __future__ import annotations

import math
import os
from urllib.parse import parse_qsl, urlsplit

from xvirt.drivers.base import Driver
from xvirt.errors import HostUnreachableError, InvalidArgumentError

__all__ = ["DEFAULT_URI", "default_uri", "open_driver"]

DEFAULT_URI = "sim:///default"
SCHEMES = ("sim",)


def default_uri() -> str:
    """``$XVIRT_DEFAULT_URI`` if set, else the embedded demo host."""
    return os.environ.get("XVIRT_DEFAULT_URI") or DEFAULT_URI


def open_driver(uri: str, *, readonly: bool = False) -> Driver:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError(f"a connection URI must be a non-empty string, not {uri!r}")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise InvalidArgumentError(f"malformed URI: {exc}", uri=uri) from None
    if parts.fragment or uri.endswith("#"):
        raise InvalidArgumentError(f"a connection URI has no '#fragment': {uri!r}", uri=uri)
    if parts.scheme == "sim":
        if not uri.startswith("sim:///"):
            raise InvalidArgumentError(
                f"an embedded host URI looks like 'sim:///NAME', not {uri!r}", uri=uri
            )
        return _open_sim(uri, parts.netloc, parts.path, parts.query, readonly)
    if not parts.scheme:
        raise InvalidArgumentError(
            f"URI {uri!r} has no scheme; expected e.g. {DEFAULT_URI!r}", uri=uri
        )
    raise InvalidArgumentError(
        f"unsupported URI scheme {parts.scheme!r}; supported: "
        + ", ".join(f"{s}://" for s in SCHEMES),
        uri=uri,
    )


def _open_sim(uri: str, netloc: str, path: str, query: str, readonly: bool) -> Driver:
    from xvirt import sim
    from xvirt.drivers.sim import SimDriver

    name = path[1:] if path.startswith("/") else path
    if netloc or not name or "/" in name:
        raise InvalidArgumentError(
            f"an embedded host URI looks like 'sim:///NAME', not {uri!r}", uri=uri
        )
    latency: float | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "control_latency_ms":
            raise InvalidArgumentError(
                f"unknown parameter {key!r} in {uri!r}; known: control_latency_ms", uri=uri
            )
        try:
            latency = float(value)
        except ValueError:
            latency = -1.0
        if not 0 <= latency < math.inf:  # also refuses NaN
            raise InvalidArgumentError(
                f"control_latency_ms must be a finite number >= 0, not {value!r}", uri=uri
            )
    host = sim.get(name)
    if host is None or host.closed:
        raise HostUnreachableError(
            f"no embedded host named {name!r} in this process (sim:///default always "
            f"exists; programs create others with xvirt.sim.Host({name!r}))",
            uri=uri,
        )
    return SimDriver(host, uri=uri, readonly=readonly, control_latency_ms=latency)
