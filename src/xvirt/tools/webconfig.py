"""``--web-config-file``: TLS and basic auth in the format of Prometheus' exporter-toolkit.

    tls_server_config:
      cert_file: server.crt        # relative paths are relative to this file
      key_file: server.key
      min_version: TLS12           # TLS10..TLS13; the default is TLS12
    basic_auth_users:
      alice: $2y$10$...            # bcrypt hashes (htpasswd -nBC 10 alice)

It is parsed strictly: an unknown or unsupported key, a missing file or a value
that is not a bcrypt hash stops the exporter at start with a message naming it,
rather than serving with less protection than the file asked for.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from cheroot.ssl.builtin import BuiltinSSLAdapter

__all__ = [
    "BasicAuth",
    "TLSConfig",
    "Verdict",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
    "ssl_adapter",
]

_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "min_version", "max_version")
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
#: Checked against when the user is unknown, so an unknown user costs as long as a
#: wrong password and response times do not tell which user names exist.
_DUMMY_HASH = b"$2b$10$qPlEYmJCR/.KRx2Z5DBk2.52dXyqoVEKd3j5m02vP2c9vE7przFaC"
_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (or, since bcrypt 5, refuses) the rest


class WebConfigError(ValueError):
    """The web config file is wrong; the message says where and why."""


#: The longest web config file read: users and TLS settings fit in far less.
MAX_WEB_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None


@dataclass(frozen=True, slots=True)
class WebConfig:
    """No TLS and no users (an empty file) means plain HTTP, open to all."""

    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)


def load_web_config(path: str | Path) -> WebConfig:
    """The file at ``path``, read to at most MAX_WEB_CONFIG_BYTES (``/dev/zero`` is
    refused, not read until memory runs out)."""
    where = Path(path)
    try:
        with where.open("rb") as f:
            data = f.read(MAX_WEB_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise WebConfigError(f"cannot read web config file {where}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_WEB_CONFIG_BYTES:
        raise WebConfigError(f"web config file {where} is longer than "
                             f"{MAX_WEB_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebConfigError(f"cannot read web config file {where}: {exc}") from None
    return parse_web_config(text, base_dir=where.resolve().parent, where=str(where))


def parse_web_config(text: str, *, base_dir: Path, where: str = "web config") -> WebConfig:
    """The configuration in ``text``; relative file names are taken from ``base_dir``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None
    if doc is None:
        return WebConfig()
    top = _mapping(doc, where, "the file")
    _only(top, _TOP_KEYS, where, "")
    tls = None
    if top.get("tls_server_config") is not None:
        tls = _tls(_mapping(top["tls_server_config"], where, "tls_server_config"), base_dir,
                   where)
    users: dict[str, bytes] = {}
    if top.get("basic_auth_users") is not None:
        users = _users(_mapping(top["basic_auth_users"], where, "basic_auth_users"), where)
    return WebConfig(tls, users)


def _mapping(value: object, where: str, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: {what} must be a mapping, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else f"{type(value).__name__} {value!r}"


def _only(section: Mapping[Any, Any], allowed: tuple[str, ...], where: str,
          prefix: str) -> None:
    for key in section:
        if key not in allowed:
            raise WebConfigError(
                f"{where}: {prefix}{key}: unknown or unsupported key "
                f"(the xvirt exporter supports {', '.join(prefix + k for k in allowed)})")


def _tls(section: dict[Any, Any], base_dir: Path, where: str) -> TLSConfig:
    _only(section, _TLS_KEYS, where, "tls_server_config.")
    files: dict[str, Path] = {}
    for key in ("cert_file", "key_file"):
        value = section.get(key)
        if not isinstance(value, str) or not value:
            raise WebConfigError(f"{where}: tls_server_config.{key} is required "
                                 "(a file name)")
        path = base_dir / value
        try:
            path.open("rb").close()
        except OSError as exc:
            raise WebConfigError(f"{where}: tls_server_config.{key}: {path}: "
                                 f"{exc.strerror or exc}") from None
        files[key] = path
    low = _version(section, "min_version", where) or ssl.TLSVersion.TLSv1_2
    high = _version(section, "max_version", where)
    if high is not None and high < low:
        raise WebConfigError(f"{where}: tls_server_config.max_version is below min_version")
    return TLSConfig(files["cert_file"], files["key_file"], low, high)


def _version(section: dict[Any, Any], key: str, where: str) -> ssl.TLSVersion | None:
    value = section.get(key)
    if value is None:
        return None
    if value not in _VERSIONS:
        raise WebConfigError(f"{where}: tls_server_config.{key}: {value!r} is not one of "
                             f"{', '.join(_VERSIONS)}")
    return _VERSIONS[value]


def _users(section: dict[Any, Any], where: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where}: basic_auth_users: {user!r} is not a user name "
                                 "(a non-empty string without ':')")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise WebConfigError(f"{where}: basic_auth_users.{user}: not a bcrypt hash "
                                 "(expected $2y$, $2b$ or $2a$, a cost and 53 characters)")
        users[user] = hashed.encode("ascii")
    return users


def ssl_adapter(tls: TLSConfig) -> BuiltinSSLAdapter:
    """cheroot's TLS adapter for ``tls``; a certificate and key that do not load or do
    not match are a WebConfigError here, at start, not at the first client."""
    try:
        adapter = BuiltinSSLAdapter(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise WebConfigError(
            f"cannot use tls_server_config.cert_file {tls.cert_file} with key_file "
            f"{tls.key_file}: {' '.join(str(exc).split())}") from None
    context: ssl.SSLContext = adapter.context
    context.minimum_version = tls.min_version
    if tls.max_version is not None:
        context.maximum_version = tls.max_version
    return adapter


class Verdict(enum.Enum):
    """What a basic-auth check says: let in, refuse, or refuse for now (``BUSY``: a
    password that needs bcrypt while another check is running; try again later)."""

    OK = "ok"
    DENIED = "denied"
    BUSY = "busy"


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes.

    bcrypt is slow by design (tens of milliseconds per check at the usual cost), so
    what a wrong password may cost is bounded, not just what a right one costs:

    * Prometheus sends the same credentials on every scrape, so outcomes are
      remembered, successes and failures alike, keyed by a SHA-256 of user, password
      and hash (the password itself is never kept): a repeated guess, or a client
      misconfigured with a wrong password, costs a hash, not bcrypt.
    * At most one bcrypt check runs at a time; a request that would need another
      meanwhile is answered BUSY (429) without one. So any number of clients
      trying new passwords hold at most one CPU, and a scrape with remembered
      credentials never waits for bcrypt. The price: under such a flood a
      credential never seen before may be answered 429 until it ends.
    """

    CACHE_SIZE = 1024  # remembered successes; as many failures again

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = {user.encode("utf-8"): hashed for user, hashed in users.items()}
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()  # held while one bcrypt check runs
        #: bcrypt checks run, failures answered from memory, requests answered BUSY:
        #: counted so tests and benchmarks state what an attack cost, exactly.
        self.verifications = 0
        self.remembered_failures = 0
        self.busy = 0

    def check(self, header: str | None) -> bool:
        """True when ``header`` holds a user's right password (BUSY counts as no)."""
        return self.verdict(header) is Verdict.OK

    def verdict(self, header: str | None) -> Verdict:
        credentials = _basic_credentials(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user, password, hashed or b""))).digest()
        with self._lock:
            if key in self._good:
                self._good.move_to_end(key)
                return Verdict.OK
            if key in self._bad:
                self._bad.move_to_end(key)
                self.remembered_failures += 1
                return Verdict.DENIED
        if not self._bcrypt.acquire(blocking=False):
            with self._lock:
                self.busy += 1
            return Verdict.BUSY
        try:
            with self._lock:
                self.verifications += 1
            # an unknown user costs as long as a wrong password: names do not leak
            good = _checkpw(password, hashed or _DUMMY_HASH) and hashed is not None
        finally:
            self._bcrypt.release()
        with self._lock:
            remembered = self._good if good else self._bad
            remembered[key] = None
            if len(remembered) > self.CACHE_SIZE:
                remembered.popitem(last=False)
        return Verdict.OK if good else Verdict.DENIED


def _checkpw(password: bytes, hashed: bytes) -> bool:
    if len(password) > _BCRYPT_MAX_PASSWORD:
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) of a well-formed Basic header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password
