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
    "CREDIT_CAP_PER_VCPU",
    "CREDIT_WEIGHT_MAX",
    "DEFAULT_SCHEDULER",
    "DOMID_FIRST_RESERVED",
    "MAX_TOKEN_FILE_BYTES",
    "MAX_VCPUS",
    "MAX_WAIT_S",
    "Affect",
    "ConnStats",
    "DomainEvent",
    "DomainFailure",
    "DomainInfo",
    "DomainMetadata",
    "DomainSample",
    "DomainSettings",
    "DomainState",
    "EventKind",
    "GuestType",
    "HostCapabilities",
    "HostInfo",
    "Identity",
    "MetadataElement",
    "MetadataKind",
    "NodeCpuStats",
    "NodeMemoryStats",
    "SchedulerParams",
    "Survey",
    "VcpuInfo",
    "VcpuState",
    "check_domid",
    "check_image",
    "check_image_name",
    "check_metadata",
    "check_name",
    "check_scheduler",
    "guest_types",
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
    #: A domain's title (libvirt's ``<title>``) was set or removed: not a lifecycle change.
    TITLE_CHANGED = "title_changed"
    #: A domain's description (libvirt's ``<description>``) was set or removed.
    DESCRIPTION_CHANGED = "description_changed"
    #: One of a domain's metadata elements was set or removed. The event's ``name`` is
    #: the element's namespace URI (not the domain's name: the domain keeps it).
    METADATA_CHANGED = "metadata_changed"

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
        """Only a definition or a domain's settings changed: no live domain appeared,
        left, moved or was renamed (what holds an ID is as it was: the cache skips it)."""
        return self in _DEFINING

    @property
    def lifecycle(self) -> bool:
        """A lifecycle change (``Connection.events()`` yields these unless told more)."""
        return self not in _METADATA

    @property
    def metadata(self) -> MetadataKind | None:
        """Which of a domain's metadata changed, for the three metadata kinds."""
        return _METADATA.get(self)


class MetadataKind(enum.Enum):
    """A domain's metadata, as libvirt's ``VIR_DOMAIN_METADATA_*`` (the same numbers)."""

    DESCRIPTION = 0
    TITLE = 1
    ELEMENT = 2


_REMOVING = frozenset({EventKind.DESTROYED, EventKind.SHUTDOWN, EventKind.SAVED})
_ADDING = frozenset({EventKind.CREATED, EventKind.RESTORED, EventKind.STARTED})
_MOVING = frozenset({EventKind.REBOOTED, EventKind.MIGRATED})
_METADATA = {EventKind.TITLE_CHANGED: MetadataKind.TITLE,
             EventKind.DESCRIPTION_CHANGED: MetadataKind.DESCRIPTION,
             EventKind.METADATA_CHANGED: MetadataKind.ELEMENT}
_DEFINING = frozenset({EventKind.DEFINED, EventKind.UNDEFINED, *_METADATA})


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
    #: The statistics groups the caller named (``sample(groups=...)``), else None.
    stats: DomainStats | None = None


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
    """A lifecycle change (or, when asked for, a metadata change), as
    ``Connection.events()`` yields it.

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
    #: The namespace URI of the metadata element a ``METADATA_CHANGED`` event is about.
    uri: str | None = None


# -- what a domain has beyond its configuration, and what a host tells of itself --------

#: Xen's limit on a guest's vCPUs (HVM_MAX_VCPUS): the largest maximum a domain may have.
MAX_VCPUS = 128
#: The credit scheduler's bounds (xend's ``domain_sched_credit_set``, libxl's checks):
#: a weight in 1..CREDIT_WEIGHT_MAX, a cap in 0..CREDIT_CAP_PER_VCPU x the domain's
#: maximum vCPUs (percent of one physical CPU; 0 is no cap).
CREDIT_WEIGHT_MAX = 65535
CREDIT_CAP_PER_VCPU = 100
#: The scheduler of xvirt's hosts, as Xen's ``xen_scheduler`` names it.
DEFAULT_SCHEDULER = "credit"


class Affect(enum.Flag):
    """Which of a domain's two states a call is about, as libvirt's
    ``VIR_DOMAIN_AFFECT_*`` (the same numbers): the running domain (LIVE), its
    definition (CONFIG, what it starts from next time), or both. CURRENT (no flag) is
    the running domain while it runs and its definition otherwise."""

    CURRENT = 0
    LIVE = 1
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class MetadataElement:
    """A piece of an application's own XML kept with a domain (libvirt's metadata
    element): its namespace ``uri``, the prefix (``key``) it is written with in the
    domain's XML, and the element itself (``xml``), without its namespace, as
    libvirt's ``virDomainGetMetadata`` returns it."""

    uri: str
    key: str
    xml: str


@dataclass(frozen=True, slots=True)
class DomainMetadata:
    """A domain's title (one line), description and metadata elements (at most one per
    namespace URI, in the order they were first set)."""

    title: str | None = None
    description: str | None = None
    elements: tuple[MetadataElement, ...] = ()

    def get(self, kind: MetadataKind, uri: str | None = None) -> str | None:
        """The title, the description, or the element of namespace ``uri``; None if
        the domain has none."""
        if kind is MetadataKind.TITLE:
            return self.title
        if kind is MetadataKind.DESCRIPTION:
            return self.description
        return next((e.xml for e in self.elements if e.uri == uri), None)

    def replaced(self, kind: MetadataKind, value: str | None, *, key: str | None = None,
                 uri: str | None = None) -> DomainMetadata:
        """A copy with the title, description or element of ``uri`` set to ``value``
        (None or empty: removed, as libvirt removes it)."""
        value = value or None
        if kind is MetadataKind.TITLE:
            return DomainMetadata(value, self.description, self.elements)
        if kind is MetadataKind.DESCRIPTION:
            return DomainMetadata(self.title, value, self.elements)
        if uri is None:
            raise InvalidArgumentError("a metadata element needs its namespace URI")
        kept = list(self.elements)
        at = next((i for i, e in enumerate(kept) if e.uri == uri), None)
        if value is None:
            if at is not None:
                del kept[at]
        else:
            if key is None:
                raise InvalidArgumentError("a metadata element needs a key (its prefix)")
            element = MetadataElement(uri, key, value)
            if at is None:
                kept.append(element)
            else:
                kept[at] = element
        return DomainMetadata(self.title, self.description, tuple(kept))


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """What a domain has beyond its :class:`~xvirt.DomainConfig`: how many vCPUs are
    online (``vcpus``, as ``DomainInfo.vcpus``) and how many it may bring online
    (``max_vcpus``, fixed while it runs), and its metadata. One running domain's or one
    definition's (``Domain.settings(affect)``)."""

    vcpus: int
    max_vcpus: int
    metadata: DomainMetadata = DomainMetadata()


@dataclass(frozen=True, slots=True)
class SchedulerParams:
    """Xen's credit scheduler's share of a running domain: its ``weight`` against the
    others' (1..65535, 256 by default) and its ``cap``, the most CPU it may take in
    percent of one physical CPU (0: no cap)."""

    weight: int = 256
    cap: int = 0


class VcpuState(enum.Enum):
    """A vCPU's state, as libvirt's ``virVcpuState`` (the same numbers) and as libxl
    reads Xen's flags: neither running nor blocked (a paused domain's, an offline one)
    is OFFLINE."""

    OFFLINE = 0
    RUNNING = 1
    BLOCKED = 2


@dataclass(frozen=True, slots=True)
class VcpuInfo:
    """One online vCPU of a running domain: ``cpu`` is the physical CPU it last ran on,
    ``affinity`` the physical CPUs it may run on (one flag per host CPU)."""

    number: int
    state: VcpuState
    cpu_time_ns: int
    cpu: int
    affinity: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class NodeMemoryStats:
    """The host's memory (one NUMA cell's, or all of it), as libvirt's
    ``virNodeGetMemoryStats`` gives it: buffers and cached are part of what is used."""

    total_kib: int
    free_kib: int
    buffers_kib: int
    cached_kib: int


@dataclass(frozen=True, slots=True)
class NodeCpuStats:
    """Time the host's CPUs (one, or all summed) spent in each mode since the host
    booted, as libvirt's ``virNodeGetCPUStats`` gives it; the four add up to the time
    since boot, per CPU."""

    kernel_ns: int
    user_ns: int
    idle_ns: int
    iowait_ns: int


@dataclass(frozen=True, slots=True)
class GuestType:
    """One kind of guest a host runs, as libvirt's capabilities list it: an OS type
    (``xen``: paravirtualised, ``hvm``: fully virtualised) on an architecture."""

    os_type: str
    arch: str
    wordsize: int
    #: For 32-bit x86 guests: whether they may run with PAE, and without it.
    pae: bool = False
    nonpae: bool = False


@dataclass(frozen=True, slots=True)
class HostCapabilities:
    """What a host is and runs: its node facts and the kinds of guest it takes."""

    host: HostInfo
    scheduler: str
    guests: tuple[GuestType, ...]


#: Xen's ``xen_caps`` words -> (libvirt's OS type, architecture, word size, PAE).
_XEN_CAPS = re.compile(r"(xen|hvm)-\d+\.\d+-(x86_32|x86_64|ia64|aarch64|armv7l)(p)?")
_CAPS_ARCH = {"x86_32": ("i686", 32), "x86_64": ("x86_64", 64), "ia64": ("ia64", 64),
              "aarch64": ("aarch64", 64), "armv7l": ("armv7l", 32)}


def guest_types(xen_caps: str) -> tuple[GuestType, ...]:
    """The guests Xen's ``xen_caps`` (``xen-3.0-x86_64 hvm-3.0-x86_32p ...``) says a
    host runs, as libvirt's Xen driver reads it: ``xen`` -> PV, ``hvm`` -> HVM, a
    trailing ``p`` PAE; words it does not know are skipped, and repeats dropped."""
    found: dict[tuple[str, str], GuestType] = {}
    for word in xen_caps.split():
        m = _XEN_CAPS.fullmatch(word)
        if m is None:
            continue
        arch, wordsize = _CAPS_ARCH[m[2]]
        os_type = "xen" if m[1] == "xen" else "hvm"
        seen = found.get((os_type, arch), GuestType(os_type, arch, wordsize))
        if arch == "i686":  # Xen says x86_32 with PAE (p) and without as two words
            seen = GuestType(os_type, arch, wordsize, seen.pae or bool(m[3]),
                             seen.nonpae or not m[3])
        found[os_type, arch] = seen
    return tuple(found.values())


def check_scheduler(weight: object, cap: object, max_vcpus: int) -> tuple[int | None, int | None]:
    """A credit scheduler change as xend's ``domain_sched_credit_set`` checked it: each
    of ``weight`` (1..65535) and ``cap`` (0..100 x ``max_vcpus``) an int, or None to
    keep it."""
    def whole(value: object, what: str, high: int, low: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgumentError(f"the scheduler's {what} must be an integer, not "
                                       f"{type(value).__name__} {value!r}", op="set_scheduler")
        if not low <= value <= high:
            raise InvalidArgumentError(f"the scheduler's {what} {value} is out of range "
                                       f"{low}..{high}", op="set_scheduler")
        return value

    return (whole(weight, "weight", CREDIT_WEIGHT_MAX, 1),
            whole(cap, "cap", CREDIT_CAP_PER_VCPU * max_vcpus, 0))


#: The most characters a title, description or metadata element may hold: they live in
#: every record and answer of their domain, so a client may not make those unbounded.
_METADATA_MAX = 64 * 1024


def check_metadata(kind: object, value: object, key: object = None,
                   uri: object = None) -> tuple[MetadataKind, str | None, str | None,
                                                str | None]:
    """A metadata change as a host accepts it: ``(kind, value, key, uri)``, value None
    for a removal. A title is one line; an element needs its namespace ``uri`` and its
    ``key`` (an XML name, when set); the title and description take neither. The XML
    of an element is the face's to check (libvirt's parser); the host keeps text."""
    if not isinstance(kind, MetadataKind):
        raise InvalidArgumentError(f"unknown metadata type {kind!r}", op="set_metadata")
    text_value, text_key, text_uri = (_metadata_text(what, text) for what, text in (
        ("value", value), ("key", key), ("uri", uri)))
    text_value = text_value or None
    if kind is MetadataKind.ELEMENT:
        if not text_uri:
            raise InvalidArgumentError("a metadata element needs its namespace URI",
                                       op="set_metadata")
        if text_value is None:
            return kind, None, None, text_uri
        if text_key is None or not _XML_NAME.fullmatch(text_key):
            raise InvalidArgumentError(f"a metadata element's key must be an XML name, not "
                                       f"{key!r}", op="set_metadata")
        return kind, text_value, text_key, text_uri
    if text_key is not None or text_uri is not None:
        raise InvalidArgumentError(f"the {kind.name.lower()} takes no key or URI",
                                   op="set_metadata")
    if kind is MetadataKind.TITLE and text_value is not None and "\n" in text_value:
        raise InvalidArgumentError("a title must not contain newlines", op="set_metadata")
    return kind, text_value, None, None


def _metadata_text(what: str, text: object) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgumentError(f"the metadata {what} must be a string, not "
                                   f"{type(text).__name__}", op="set_metadata")
    if "\x00" in text or len(text) > _METADATA_MAX:
        raise InvalidArgumentError(f"the metadata {what} holds a NUL or is longer than "
                                   f"{_METADATA_MAX} characters", op="set_metadata")
    return text


#: An XML name without a colon (a namespace prefix), as libvirt checks a metadata key.
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


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


def check_image(image: object) -> str:
    """The image as given, if it is a plain name in the host's image directory
    (``check_image_name``) or an absolute path naming a file. Whether a path is
    allowed is the host's to say: the embedded host takes any the process may
    write, a daemon only its image directory."""
    if not isinstance(image, str) or not image.startswith("/"):
        return check_image_name(image)
    shown = image.replace("\x00", "\\0")
    if "\x00" in image:
        raise InvalidArgumentError("an image path must not contain NUL", name=shown)
    try:
        os.fsencode(image)
    except UnicodeError:  # a lone surrogate: no file can have this name
        raise InvalidArgumentError(
            "an image path must be encodable as a file name",
            name=image.encode("utf-8", "backslashreplace").decode()) from None
    if image.endswith("/") or os.path.basename(image) in (".", ".."):
        raise InvalidArgumentError("an image path must name a file, not a directory",
                                   name=image)
    return image


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


# Last: xvirt.stats speaks of DomainState, defined above; DomainSample's annotation
# names its DomainStats (resolved when the hints are read, after both modules loaded).
from xvirt.stats import DomainStats  # noqa: E402
