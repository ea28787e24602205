"""Public value types and the validation of user-supplied identifiers.

All value types are frozen: they are facts observed at one instant, shared
freely between threads. Field names carry their units (``_kib``, ``_ns``).
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import NamedTuple

from xvirt.errors import InvalidArgumentError, XvirtError

__all__ = [
    "DOMID_FIRST_RESERVED",
    "MAX_TOKEN_FILE_BYTES",
    "MAX_WAIT_S",
    "ConnStats",
    "DomainEvent",
    "DomainFailure",
    "DomainInfo",
    "DomainSample",
    "DomainState",
    "EventKind",
    "HostInfo",
    "Identity",
    "Survey",
    "check_domid",
    "check_image_name",
    "check_name",
    "parse_mac",
    "parse_uuid",
    "read_token_file",
]

#: Xen reserves domain IDs from 0x7FF0 up (DOMID_SELF, DOMID_IO, ...).
DOMID_FIRST_RESERVED = 0x7FF0
#: The longest configured wait or latency (a day): longer ones overflow the platform's
#: timers, and none is meant.
MAX_WAIT_S = 86400.0


class DomainState(enum.Enum):
    """Xen's domain state flags, most significant first (c s d p b r)."""

    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    DYING = "dying"
    #: Defined but not running: no ID, no flag set (xend shows ``------``).
    SHUTOFF = "shutoff"

    @property
    def letter(self) -> str:
        return _LETTERS.get(self, "-")

    def flags(self) -> str:
        """xend's six-character state string, e.g. ``-b----``."""
        return "".join(
            letter if state is self else "-" for state, letter in _LETTERS.items()
        )


_LETTERS = {
    DomainState.RUNNING: "r",
    DomainState.BLOCKED: "b",
    DomainState.PAUSED: "p",
    DomainState.SHUTDOWN: "s",
    DomainState.CRASHED: "c",
    DomainState.DYING: "d",
}


class EventKind(enum.Enum):
    """Lifecycle changes a host reports."""

    CREATED = "created"
    DESTROYED = "destroyed"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    SAVED = "saved"
    RESTORED = "restored"
    REBOOTED = "rebooted"
    MIGRATED = "migrated"
    RENAMED = "renamed"
    PAUSED = "paused"
    RESUMED = "resumed"
    #: A defined (managed) domain was booted: it now has an ID.
    STARTED = "started"
    #: A domain was defined, or its definition replaced; it has no ID (-1) unless running.
    DEFINED = "defined"
    #: A domain's definition was removed; it had no ID (it was not running).
    UNDEFINED = "undefined"

    @property
    def removes(self) -> bool:
        """The domain no longer exists after this event."""
        return self in _REMOVING

    @property
    def adds(self) -> bool:
        """A domain unknown before this event exists after it."""
        return self in _ADDING

    @property
    def moves(self) -> bool:
        """The domain keeps its UUID and name but gets a new ID."""
        return self in _MOVING

    @property
    def definition_only(self) -> bool:
        """Only a definition changed: no live domain appeared, left, moved or was renamed."""
        return self in _DEFINING


_REMOVING = frozenset({EventKind.DESTROYED, EventKind.SHUTDOWN, EventKind.SAVED})
_ADDING = frozenset({EventKind.CREATED, EventKind.RESTORED, EventKind.STARTED})
_MOVING = frozenset({EventKind.REBOOTED, EventKind.MIGRATED})
_DEFINING = frozenset({EventKind.DEFINED, EventKind.UNDEFINED})


class Identity(NamedTuple):
    """Who a domain is at one instant: the triple C1 is about.

    ``Identity`` and ``DomainInfo`` are named tuples (immutable, with named
    fields) because one of each is built on every lookup and info call: a
    tuple is built four times faster than a frozen dataclass."""

    uuid: str
    name: str
    #: -1 while the domain is defined and not running (libvirt's convention;
    #: ``Domain.id`` says None).
    id: int


class DomainInfo(NamedTuple):
    """What ``Domain.info()`` returns, straight from the data plane."""

    state: DomainState
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    cpu_time_ns: int


@dataclass(frozen=True, slots=True)
class DomainSample:
    """One domain in a bulk sample: who it is and what it is doing.

    ``info`` is from the sample's single data-plane snapshot; ``identity`` held
    at one instant of the same call (C1).
    """

    identity: Identity
    info: DomainInfo


@dataclass(frozen=True, slots=True)
class DomainFailure:
    """A live domain of a survey whose figures could not be read: ``error`` says
    why (an error of the layer below, or no answer within the per-domain timeout)."""

    identity: Identity
    error: XvirtError


@dataclass(frozen=True, slots=True)
class Survey:
    """Every live domain at one instant: those that answered, with their figures,
    and those that did not, with the reason. One bad domain never hides the rest."""

    samples: list[DomainSample]
    failures: list[DomainFailure]


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Node facts, as xend's ``/xend/node`` and libvirt's ``getInfo`` give them."""

    hostname: str
    hypervisor: str
    version: str
    arch: str
    cpus: int
    cpu_mhz: int
    nodes: int
    sockets_per_node: int
    cores_per_socket: int
    threads_per_core: int
    memory_kib: int
    free_memory_kib: int
    boot_id: str


@dataclass(frozen=True, slots=True)
class ConnStats:
    """Exact counters of one connection; tests assert them and tools print them."""

    control_requests: int
    data_calls: int
    event_requests: int
    cache_hits: int
    cache_misses: int
    evictions: int
    cache_size: int


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """A lifecycle change, as ``Connection.events()`` yields it.

    ``name`` is the domain's name as known when the event is delivered (the
    new one for a rename); None only when the domain was gone before its name
    could be learnt. ``old_id`` is set when the ID changed (reboot, migrate).
    """

    seq: int
    kind: EventKind
    uuid: str
    id: int | None  # None for a domain defined or undefined while not running
    name: str | None
    old_id: int | None = None


# -- validation of what users pass in ---------------------------------------

_HEX = frozenset("0123456789abcdefABCDEF")


def parse_uuid(value: object) -> str:
    """Canonical lower-case dashed form of a UUID given loosely, as libvirt accepts it.

    Accepts 32 hex digits with dashes or spaces anywhere and surrounding
    whitespace (libvirt does); refuses braces, wrong lengths and anything else.
    """
    import uuid as _uuid

    if isinstance(value, _uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidArgumentError(f"a UUID must be a string, not {type(value).__name__}")
    digits = value.strip().replace("-", "").replace(" ", "")
    if len(digits) != 32 or not _HEX.issuperset(digits):
        raise InvalidArgumentError(f"invalid UUID {value!r}", uuid=value)
    d = digits.lower()
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}"


def check_domid(value: object) -> int:
    """A domain ID as a caller may ask for it: an int in Xen's 16-bit range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"a domain ID must be an integer, not {type(value).__name__} {value!r}"
        )
    if value < 0 or value >= DOMID_FIRST_RESERVED:
        raise InvalidArgumentError(
            f"domain ID {value} is out of range 0..{DOMID_FIRST_RESERVED - 1}", domid=value
        )
    return value


def check_name(value: object) -> str:
    """A domain name: a non-empty string without control characters or slashes."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"a domain name must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgumentError("a domain name must not be empty or blank")
    if len(value) > 255:
        raise InvalidArgumentError("a domain name must be at most 255 characters", name=value)
    if any(ord(c) < 32 or c in "/\x7f" for c in value):
        raise InvalidArgumentError(
            "a domain name must not contain '/' or control characters", name=value
        )
    return value


# -- names the host and its clients both check ---------------------------------------------

_MAX_IMAGE_NAME = 255
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")

def check_image_name(name: object) -> str:
    """The name as given, if it can only ever mean a file inside the image directory."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"an image name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidArgumentError("an image name must not be empty")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_IMAGE_NAME:
        raise InvalidArgumentError(f"image name longer than {_MAX_IMAGE_NAME} bytes",
                                   name=name[:64])
    bad = [c for c in ("/", "\\", "\x00") if c in name]
    if bad or name in (".", "..") or name.startswith("."):
        raise InvalidArgumentError(
            "an image name must be a plain file name (no '/', '\\', NUL, or leading '.')",
            name=name.replace("\x00", "\\0"),
        )
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise InvalidArgumentError("an image name must not contain control characters", name=name)
    try:
        os.fsencode(name)
    except UnicodeError:  # a lone surrogate: no file can have this name
        raise InvalidArgumentError(
            "an image name must be encodable as a file name",
            name=name.encode("utf-8", "backslashreplace").decode(),
        ) from None
    return name

def parse_mac(text: object) -> str:
    """A MAC address as six colon-separated hex octets, in lower case."""
    if not isinstance(text, str) or not _MAC.fullmatch(text):
        raise InvalidArgumentError(f"MAC address {text!r} is not six hex octets like "
                                   "00:16:3e:12:34:56")
    return text.lower()


# -- files named by users ------------------------------------------------------------------

#: The most of a token file that is read: a token is one short line, and a path such as
#: ``/dev/zero`` must be refused, not read until memory runs out.
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: str | os.PathLike[str], *, uri: str | None = None) -> str:
    """The bearer token in ``path``: its first non-blank line, stripped.

    At most :data:`MAX_TOKEN_FILE_BYTES` are read. The token must be printable ASCII
    (it travels in an HTTP header). Errors name the file, never the token."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise InvalidArgumentError(f"cannot read token file {shown!r}: {reason}",
                                   uri=uri) from None
    line, newline, _ = data.lstrip().partition(b"\n")
    if not newline and len(data) > MAX_TOKEN_FILE_BYTES:
        raise InvalidArgumentError(
            f"token file {shown!r} holds no token line within its first "
            f"{MAX_TOKEN_FILE_BYTES} bytes (a token is one short line)", uri=uri)
    token = line.strip()
    if not token:
        raise InvalidArgumentError(f"token file {shown!r} is empty", uri=uri)
    if not all(0x20 <= b < 0x7F for b in token):
        raise InvalidArgumentError(
            f"the token in {shown!r} must be printable ASCII (it is sent in an HTTP header)",
            uri=uri)
    return token.decode("ascii")
