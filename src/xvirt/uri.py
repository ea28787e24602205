"""URI -> driver. The only module that knows which schemes exist."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from xvirt.drivers.base import Driver
from xvirt.errors import HostUnreachableError, InvalidArgumentError
from xvirt.model import MAX_WAIT_S, read_token_file

if TYPE_CHECKING:
    from xvirt import sim

__all__ = [
    "DEFAULT_URI",
    "LIBVIRT_DRIVERS",
    "SCHEMES",
    "default_uri",
    "driver_uri",
    "is_libvirt_uri",
    "open_driver",
    "split_cache_option",
]

DEFAULT_URI = "sim:///default"
SCHEMES = ("sim", "xend", "xend+unix", "libvirt")
#: The drivers libvirt 9 knows (``DRIVER[+TRANSPORT]://...``): a URI naming one, without
#: xvirt's ``libvirt:`` prefix, is still a libvirt URI, as virsh and libvirt-python take it.
LIBVIRT_DRIVERS = frozenset({
    "bhyve", "ch", "esx", "gsx", "hyperv", "interface", "lxc", "network", "nodedev",
    "nwfilter", "openvz", "parallels", "qemu", "remote", "secret", "storage", "test", "vbox",
    "vmwarefusion", "vmwareplayer", "vmwarews", "vpx", "vz", "xen",
})
#: libvirt's remote transports: ``qemu+ssh://host/system``.
LIBVIRT_TRANSPORTS = frozenset({"ext", "libssh", "libssh2", "ssh", "tcp", "tls", "unix"})
#: What an unusable URI's error lists: the forms xvirt opens.
KNOWN_FORMS = ("sim:///NAME", "xend://HOST[:PORT]", "xend+unix:///PATH", "libvirt:URI",
               "or a libvirt URI such as test:///default, qemu:///system, xen:///system, "
               "qemu+ssh://HOST/system")
XEND_PORT = 8000
_XEND_PARAMS = ("timeout", "token_file", "fast")
_MAX_SIM_GUESTS = 30000


def split_cache_option(uri: str) -> tuple[str, bool]:
    """Take ``cache=on|off`` out of any URI: it configures the connection, not the
    driver. ``cache=off`` is 2006 mode (one control-plane request per lookup)."""
    if not isinstance(uri, str) or "?" not in uri:
        return uri, True
    base, _, rest = uri.partition("?")
    query, hash_, fragment = rest.partition("#")
    kept, cache = [], True
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "cache":
            if value not in ("on", "off"):
                raise InvalidArgumentError(f"cache must be 'on' or 'off', not {value!r}", uri=uri)
            cache = value == "on"
        else:
            kept.append(part)
    clean = base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment
    return clean, cache


def default_uri() -> str:
    """``$XVIRT_DEFAULT_URI`` if set, else ``$LIBVIRT_DEFAULT_URI`` (virsh's default, so
    a libvirt host's users need set nothing), else the embedded demo host."""
    return (os.environ.get("XVIRT_DEFAULT_URI") or os.environ.get("LIBVIRT_DEFAULT_URI")
            or DEFAULT_URI)


def is_libvirt_uri(uri: str) -> bool:
    """True for a plain libvirt URI: ``DRIVER[+TRANSPORT]:...`` naming one of libvirt's
    drivers (``test:///default``, ``qemu+ssh://host/system``), not one of xvirt's schemes."""
    scheme, colon, _ = uri.partition(":")
    driver, plus, transport = scheme.lower().partition("+")
    return (bool(colon) and driver in LIBVIRT_DRIVERS
            and (not plus or transport in LIBVIRT_TRANSPORTS))


def driver_uri(uri: str) -> str:
    """``uri`` as xvirt's drivers are chosen by: a plain libvirt URI gets the ``libvirt:``
    prefix (``test:///default`` -> ``libvirt:test:///default``), any other is kept. The one
    rule for ``xvirt.open``, the tools and the libvirt-python face alike."""
    return "libvirt:" + uri if is_libvirt_uri(uri) else uri


def open_driver(uri: str, *, readonly: bool = False,
                auth: Sequence[Any] | None = None) -> Driver:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError(f"a connection URI must be a non-empty string, not {uri!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):  # urlsplit would drop tabs, newlines
        raise InvalidArgumentError(
            f"a connection URI must not contain a NUL, a tab, a newline or another control "
            f"character (percent-encode it): {uri!r}", uri=uri)
    if uri.startswith("libvirt:"):
        return _open_libvirt(uri, uri[len("libvirt:"):], readonly, auth)
    if is_libvirt_uri(uri):
        return _open_libvirt(uri, uri, readonly, auth)
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
    if parts.scheme in ("xend", "xend+unix"):
        return _open_xend(uri, parts.scheme, parts.netloc, parts.path, parts.query, readonly)
    if not parts.scheme:
        raise InvalidArgumentError(
            f"URI {uri!r} has no scheme; known: {', '.join(KNOWN_FORMS)}", uri=uri
        )
    raise InvalidArgumentError(
        f"unsupported URI scheme {parts.scheme!r} in {uri!r}; known: {', '.join(KNOWN_FORMS)}",
        uri=uri,
    )


def _open_sim(uri: str, netloc: str, path: str, query: str, readonly: bool) -> Driver:
    from xvirt import sim
    from xvirt.drivers.embedded import EmbeddedDriver

    name = path[1:] if path.startswith("/") else path
    if netloc or not name or "/" in name:
        raise InvalidArgumentError(
            f"an embedded host URI looks like 'sim:///NAME', not {uri!r}", uri=uri
        )
    latency: float | None = None
    domain_timeout: float | None = None
    guests: int | None = None
    image_dir: str | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "image_dir":
            if not value.startswith("/") or "\x00" in value:
                raise InvalidArgumentError(
                    f"image_dir must be an absolute path without NUL, not {value!r}", uri=uri)
            image_dir = value
            continue
        if key == "guests":
            if not (value.isascii() and value.isdigit()) or int(value) > _MAX_SIM_GUESTS:
                raise InvalidArgumentError(
                    f"guests must be a whole number 0..{_MAX_SIM_GUESTS}, not {value!r}",
                    uri=uri)
            guests = int(value)
            continue
        if key == "control_latency_ms":
            latency = _milliseconds(key, value, uri)
        elif key == "domain_timeout_ms":
            domain_timeout = _milliseconds(key, value, uri)
        else:
            raise InvalidArgumentError(
                f"unknown parameter {key!r} in {uri!r}; known: control_latency_ms, "
                "domain_timeout_ms, guests, image_dir",
                uri=uri)
    host = sim.get(name)
    if host is None and guests is not None:
        host = _populated_host(name, guests, image_dir, uri)
    elif image_dir is not None and (host is None or host.image_dir != image_dir):
        raise InvalidArgumentError(
            "image_dir applies to a host made by this URI (with guests=N)", uri=uri)
    if host is None or host.closed:
        raise HostUnreachableError(
            f"no embedded host named {name!r} in this process (sim:///default always "
            f"exists; programs create others with xvirt.sim.Host({name!r}))",
            uri=uri,
        )
    # The driver serves the model's planes, which the Host facade keeps private.
    return EmbeddedDriver(sim._model_of(host), uri=uri, readonly=readonly,
                          control_latency_ms=latency, domain_timeout_ms=domain_timeout)


def _seconds(key: str, value: str, uri: str, *, scale: float = 1.0) -> float:
    """A wait given in a URI, in 0..MAX_WAIT_S seconds (times ``scale`` for other units)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= MAX_WAIT_S * scale:  # also refuses NaN and inf
        raise InvalidArgumentError(
            f"{key} must be a number in 0..{MAX_WAIT_S * scale:.0f}, not {value!r}", uri=uri)
    return number


def _milliseconds(key: str, value: str, uri: str) -> float:
    return _seconds(key, value, uri, scale=1000.0)


def _populated_host(name: str, guests: int, image_dir: str | None, uri: str) -> sim.Host:
    """``sim:///NAME?guests=N[&image_dir=/path]``: a host of N running guests, made
    on first open in this process (as libvirt's test driver takes a host file in
    its URI), so an unmodified script can be pointed at a host of any size. Seeded:
    the same URI gives the same UUIDs in every process."""
    from xvirt import sim

    try:
        host = sim.Host(name, seed=sim.DEFAULT_SEED, image_dir=image_dir)
    except InvalidArgumentError as exc:
        made = sim.get(name)
        if made is None:  # not another thread's host: this one cannot be made
            what = "image_dir" if image_dir is not None else "the host"
            raise InvalidArgumentError(f"{what}: {exc.message}", uri=uri) from None
        return made  # another thread made it first
    with host.batch():
        for i in range(guests):
            host.create(f"guest-{i + 1:05d}", memory_kib=262144, vcpus=1)
    return host


def _open_xend(uri: str, scheme: str, netloc: str, path: str, query: str,
               readonly: bool) -> Driver:
    from xvirt.drivers.xend import FAST_MODES, XendDriver

    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _XEND_PARAMS:
            raise InvalidArgumentError(
                f"unknown parameter {key!r} in {uri!r}; known: cache, "
                + ", ".join(_XEND_PARAMS), uri=uri)
        options[key] = value
    timeout = _seconds("timeout", options.get("timeout", "10"), uri)
    fast = options.get("fast", "auto")
    if fast not in FAST_MODES:
        raise InvalidArgumentError(
            f"fast must be one of {', '.join(FAST_MODES)}, not {fast!r}", uri=uri)
    token_file = options.get("token_file") or os.environ.get("XVIRT_TOKEN_FILE")
    token = read_token_file(token_file, uri=uri) if token_file else None
    if scheme == "xend+unix":
        if netloc or not path.startswith("/") or path == "/":
            raise InvalidArgumentError(
                f"a daemon socket URI looks like 'xend+unix:///path/to/xend.sock', not {uri!r}",
                uri=uri)
        return XendDriver(uri, unix_socket=path, readonly=readonly, token=token,
                          timeout=timeout, fast=fast)
    try:
        host = urlsplit(f"//{netloc}").hostname
    except ValueError as exc:
        raise InvalidArgumentError(f"malformed address in {uri!r}: {exc}", uri=uri) from None
    try:
        port = urlsplit(f"//{netloc}").port
    except ValueError:
        port = 0
    if port == 0:  # 0 would silently be the default port
        raise InvalidArgumentError(
            f"the port in {uri!r} must be a number in 1..65535 (or left out: {XEND_PORT})",
            uri=uri)
    if not host or path not in ("", "/"):
        raise InvalidArgumentError(
            f"a daemon URI looks like 'xend://HOST[:PORT]' (port {XEND_PORT} by default), "
            f"not {uri!r}", uri=uri)
    if not _printable(host) or " " in host:
        raise InvalidArgumentError(
            f"the host name in {uri!r} has a space, a control character or an "
            "undecodable character", uri=uri)
    address = f"[{host}]" if ":" in host else host
    return XendDriver(uri, base_url=f"http://{address}:{port or XEND_PORT}", readonly=readonly,
                      token=token, timeout=timeout, fast=fast)


def _printable(text: str) -> bool:
    """No control character, and encodable as UTF-8 (no lone surrogate)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return True


def preload_libvirt_driver() -> None:
    """Import the libvirt driver now rather than at the first ``libvirt:`` open.

    The face calls this (with the real binding) when it is imported, as
    ``import libvirt`` loads libvirt-python's C module: the first ``open()``
    would otherwise pay some 30 ms of imports that libvirt-python's users pay
    at import, and be 20-40 times as slow as libvirt's own."""
    import xvirt.drivers.libvirt  # noqa: F401  - the import is the point


def _open_libvirt(uri: str, target: str, readonly: bool,
                  auth: Sequence[Any] | None = None) -> Driver:
    """``libvirt:`` + any libvirt URI; everything after the prefix is libvirt's."""
    if not target.strip() or target != target.strip() or "://" not in target:
        raise InvalidArgumentError(
            f"a libvirt URI looks like 'libvirt:test:///default' or "
            f"'libvirt:qemu:///system', not {uri!r}", uri=uri)
    if not _printable(target):  # libvirt takes a C string: a NUL or a lone surrogate fails
        raise InvalidArgumentError(
            f"the libvirt URI {uri!r} has a NUL, a control character or an undecodable "
            "character (percent-encode it)", uri=uri)
    from xvirt.drivers.libvirt import LibvirtDriver

    return LibvirtDriver(uri, target, readonly=readonly, auth=auth)
