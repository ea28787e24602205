"""The shapes of xend's records, written by our daemon and read by the xend driver.

Both sides use these functions, so what the daemon writes is exactly what the
driver reads, and both agree with the captures of real xend in
``realdata/xend/domains/``.

Reading follows libvirt where it matters for compatibility: lookup by path
with the first match winning, numbers read like C ``strtol`` with base 0
(``0x1f`` is hex and, as in C, a leading ``0`` means octal; xend writes
Python ``str(int)``, which never has one), a missing number reads as 0, and
state letters are ranked c s d p b r. It is stricter than libvirt where
libvirt silently read garbage: a number with junk in it, a negative count or
a value out of range is a ProtocolError naming the field, as is a missing or
invalid uuid or name.

Memory travels in MiB, as xend stored it. KiB amounts are rounded *up* to
whole MiB, so no domain is shown smaller than it is (or as 0 MiB); to lose
nothing, our records also carry ``(memory_kib N)`` and ``(maxmem_kib N)``.
The reader prefers those, but only while they agree with the MiB field:
a client that edits ``memory`` in a record and sends it back (libvirt's
autostart sequence sends whole records back) is obeyed. Real xend records
lack the extensions and read as MiB * 1024.

Devices are xend's ``(device (vbd (dev xvda) (uname file:/img) (mode w)))`` and
``(device (vif (mac 00:16:3e:..) (bridge xenbr0) (script vif-bridge)))``
entries. Reading takes ``vbd``, ``tap`` and ``tap2`` as disks and ``vif`` as
interfaces and skips every other kind (vfb, vkbd, console, pci); ``uname`` is
kept as given (``file:``, ``phy:``, ``tap:aio:`` ...); ``dev`` loses xend's
``ioemu:`` prefix and ``:disk``/``:cdrom`` suffix; mode ``r`` means read-only.
An empty CD-ROM drive has no ``uname`` and reads as source ``""``.

vCPUs are xend's: ``(vcpus N)`` is how many the domain may have, ``(vcpu_avail B)``
the bitmap of those online (libvirt counted its bits, capped at ``vcpus``); a record
without ``vcpu_avail`` has them all online. The credit scheduler's share is
``(cpu_weight W) (cpu_cap C)`` (a value that is not a whole number, as old xend's
``1.0``, reads as unknown). libvirt's metadata, which xend had not, travels in
extension fields: ``(xvirt_title T)``, ``(xvirt_description D)`` and
``(xvirt_metadata (element (uri U) (key K) (xml X)) ...)``.

Managed domains (xend >= 3.0.4): a domain defined and not running has a record
with no ``domid`` (libvirt's test for "inactive") and the state ``------``,
which reads as SHUTOFF there (on a running domain it means runnable, RUNNING).
Our records also say whether the domain is persistent (managed: its definition
outlives it) in the extension field ``(xvirt_persistent 1)`` or ``0``, named as
the node record's ``xvirt_`` fields are; real xend writes none, and a record
without it reads as persistent exactly when it has no domid (what can be
inactive is managed), and as unknown otherwise.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from xvirt.errors import InvalidArgumentError, ProtocolError
from xvirt.model import (
    DOMID_FIRST_RESERVED,
    DomainMetadata,
    DomainSettings,
    DomainState,
    MetadataElement,
    SchedulerParams,
    VcpuInfo,
    VcpuState,
    check_name,
    parse_mac,
    parse_uuid,
)
from xvirt.planes import DiskConfig, DomainConfig, NicConfig
from xvirt.wire.sxp import Sx, child, children, dumps, value

__all__ = [
    "ParsedDomain",
    "VmConfig",
    "device_entries",
    "domain_record",
    "error_sexpr",
    "metadata_fields",
    "node_record",
    "parse_devices",
    "parse_domain_record",
    "parse_error",
    "parse_metadata",
    "parse_node_record",
    "parse_sched_credit",
    "parse_settings",
    "parse_state_flags",
    "parse_vcpuinfo",
    "parse_vm_config",
    "sched_credit_record",
    "settings_record",
    "state_flags",
    "vcpuinfo_record",
    "vcpus_fields",
    "vm_config",
]

_FLAG_ORDER = "rbpscd"  # the positions of xend's six state letters
_PRIORITY = (  # libvirt tested the letters in this order
    DomainState.CRASHED,
    DomainState.SHUTDOWN,
    DomainState.DYING,
    DomainState.PAUSED,
    DomainState.BLOCKED,
    DomainState.RUNNING,
)
_C_SPACE = " \t\n\r\f\v"
_INT = re.compile(rf"[{_C_SPACE}]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|0([0-7]*)|([1-9][0-9]*))"
                  rf"[{_C_SPACE}]*")
_FLOAT = re.compile(
    rf"[{_C_SPACE}]*\+?(?:(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]*))?|\.(?P<frac2>[0-9]+))"
    rf"(?:[eE](?P<exp>[+-]?[0-9]+))?[{_C_SPACE}]*"
)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1  # C long on the LP64 hosts xend ran on
_NS_MAX = 2**64 - 1  # libvirt kept CPU time in an unsigned long long
_NUMBER_CHARS = 64  # longer number texts are refused before any conversion
_DISK_KINDS = ("vbd", "tap", "tap2")
_READONLY_MODES = ("r", "ro")
_WRITABLE_MODES = ("w", "rw", "w!", "")


# -- state letters ---------------------------------------------------------------------------


def state_flags(state: DomainState) -> str:
    """xend's six-letter state string (positions r b p s c d), e.g. ``-b----``."""
    return state.flags()


def parse_state_flags(flags: str, *, active: bool = True) -> DomainState:
    """The state a six-letter xend string means, the highest-ranked letter winning.

    ``------`` on an active domain (runnable, waiting for a CPU: common in
    ``xm list``) reads as RUNNING, where libvirt said NOSTATE, which xvirt has no
    state for; on an inactive one (``active`` False: no domid) it is SHUTOFF.
    """
    if len(flags) != 6 or any(
        c not in ("-", want) for c, want in zip(flags, _FLAG_ORDER, strict=True)
    ):
        raise ProtocolError(
            f"state {flags!r} is not six letters in the order {_FLAG_ORDER} (or '-')"
        )
    return next((s for s in _PRIORITY if s.letter in flags),
                DomainState.RUNNING if active else DomainState.SHUTOFF)


# -- numbers, as libvirt read them -------------------------------------------------------------


def _strtol(text: str, field: str) -> int:
    m = _INT.fullmatch(text) if len(text) <= _NUMBER_CHARS else None
    if m is None:
        raise ProtocolError(f"field {field!r}: {text!r} is not an integer")
    sign, hex_digits, octal_digits, decimal_digits = m.groups()
    if hex_digits is not None:
        n = int(hex_digits, 16)
    elif octal_digits is not None:
        n = int(octal_digits or "0", 8)
    else:
        n = int(decimal_digits)
    n = -n if sign == "-" else n
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ProtocolError(f"field {field!r}: {text!r} is out of range")
    return n


def _count(rec: Sx, path: str) -> int | None:
    """A non-negative integer field; None when missing or present but empty."""
    text = value(rec, path)
    if not text:
        return None
    n = _strtol(text, path.rsplit("/", 1)[-1])
    if n < 0:
        raise ProtocolError(f"field {path.rsplit('/', 1)[-1]!r}: {text!r} is negative")
    return n


def _seconds_to_ns(text: str, field: str) -> int:
    """strtod-style seconds to integer ns, exactly (no float rounding), truncated as
    libvirt's cast did."""
    m = _FLOAT.fullmatch(text) if len(text) <= _NUMBER_CHARS else None
    if m is None:
        raise ProtocolError(f"field {field!r}: {text!r} is not a number of seconds")
    whole: str = m["whole"] or ""
    frac: str = m["frac"] or m["frac2"] or ""
    exp = int(m["exp"] or "0")
    digits = int(whole + frac or "0")
    shift = exp - len(frac) + 9  # ns = digits * 10**shift
    if digits and shift > 20:  # >= 10**21 ns; checked before any big power is built
        raise ProtocolError(f"field {field!r}: {text!r} is out of range")
    ns: int = digits * 10**shift if shift >= 0 else digits // 10 ** min(-shift, _NUMBER_CHARS)
    if ns > _NS_MAX:
        raise ProtocolError(f"field {field!r}: {text!r} is out of range")
    return ns


def _mib(kib: int) -> int:
    return -(-kib // 1024)


def _memory_kib(rec: Sx, head: str, mib_field: str, kib_field: str) -> int | None:
    mib = _count(rec, f"{head}/{mib_field}")
    kib = _count(rec, f"{head}/{kib_field}")
    if kib is not None and (mib is None or _mib(kib) == mib):
        return kib
    return None if mib is None else mib * 1024


def _os_type(rec: Sx) -> str:
    """``hvm`` if the image has an ``hvm`` part (libvirt's test), else the kind of its
    first part (real xend only knows ``linux``), else ``linux``."""
    image = child(rec, "image")
    if image is None:
        return "linux"
    if child(image, "hvm") is not None:
        return "hvm"
    for part in image[1:]:
        if isinstance(part, list) and part and isinstance(part[0], str):
            return part[0]
    return "linux"


def _check_head(sx: Sx, heads: tuple[str, ...]) -> str:
    if isinstance(sx, str) or not sx or not isinstance(sx[0], str) or sx[0] not in heads:
        wanted = " or ".join(f"({h} ...)" for h in heads)
        raise ProtocolError(f"expected a {wanted} record, found {dumps(sx)[:60]}")
    return sx[0]


# -- domain records (answers) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedDomain:
    """A ``(domain ...)`` record as the xend driver needs it; memory in KiB."""

    domid: int | None  # None: inactive (a managed domain that is not running)
    uuid: str  # canonical dashed lower case
    name: str
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    os_type: str
    state: DomainState | None  # None: the record has no state field
    cpu_time_ns: int | None  # None: the record has no cpu_time field
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    #: Whether the domain is managed (its definition outlives it): the record's
    #: ``xvirt_persistent``; without it, True when inactive, else None (unknown).
    persistent: bool | None = None
    #: The most vCPUs it may have (``vcpus`` are those online); 0: as many as ``vcpus``.
    max_vcpus: int = 0
    #: The credit scheduler's share, where the record says it.
    sched: SchedulerParams | None = None
    metadata: DomainMetadata = dataclasses.field(default_factory=DomainMetadata)

    def config(self) -> DomainConfig:
        return DomainConfig(self.memory_kib, self.max_memory_kib, self.vcpus, self.os_type,
                            self.disks, self.nics)

    def settings(self) -> DomainSettings:
        return DomainSettings(self.vcpus, max(self.max_vcpus, self.vcpus), self.metadata)


def domain_record(
    *,
    domid: int | None,
    uuid: str,
    name: str,
    memory_kib: int,
    max_memory_kib: int,
    vcpus: int,
    os_type: str,
    state: DomainState | None,
    cpu_time_ns: int | None,
    disks: tuple[DiskConfig, ...] = (),
    nics: tuple[NicConfig, ...] = (),
    persistent: bool | None = None,
    max_vcpus: int | None = None,
    sched: SchedulerParams | None = None,
    metadata: DomainMetadata | None = None,
) -> Sx:
    """A ``(domain ...)`` record in newer xend's style: dashed uuid, bare atoms.

    ``domid`` None makes an inactive record (no domid field, as xend >= 3.0.4
    wrote a managed domain that is not running); ``state`` and ``cpu_time_ns``
    None leave their fields out; SHUTOFF (``------``) is an inactive domain's
    state only. ``persistent`` None leaves ``xvirt_persistent`` out. ``vcpus`` are
    online, ``max_vcpus`` (None: as many) the most it may have; ``sched`` and
    ``metadata`` None leave their fields out. Devices follow the image.
    """
    _check_counts(memory_kib=memory_kib, max_memory_kib=max_memory_kib, vcpus=vcpus)
    rec: list[Sx] = ["domain"]
    if domid is not None:
        if not 0 <= domid < DOMID_FIRST_RESERVED:
            raise InvalidArgumentError(f"domain ID {domid} is out of range", domid=domid)
        if state is DomainState.SHUTOFF:
            # "------" on a running domain means runnable: the reader could not tell
            raise InvalidArgumentError(f"domain {domid} runs, so it cannot be shut off",
                                       domid=domid, uuid=uuid, name=name)
        rec.append(["domid", str(domid)])
    rec += [
        ["uuid", parse_uuid(uuid)],
        ["name", name],
        *_memory_fields(memory_kib, max_memory_kib),
        *vcpus_fields(vcpus, max_vcpus),
    ]
    if sched is not None:
        rec += [["cpu_weight", str(sched.weight)], ["cpu_cap", str(sched.cap)]]
    if metadata is not None:
        rec += metadata_fields(metadata)
    if state is not None:
        rec.append(["state", state_flags(state)])
    if cpu_time_ns is not None:
        if cpu_time_ns < 0:
            raise InvalidArgumentError(f"cpu_time_ns must not be negative, not {cpu_time_ns}")
        rec.append(["cpu_time", f"{cpu_time_ns // 10**9}.{cpu_time_ns % 10**9:09d}"])
    if persistent is not None:
        rec.append(["xvirt_persistent", "1" if persistent else "0"])
    rec.append(["image", [os_type]])
    rec += device_entries(disks, nics)
    return rec


def parse_domain_record(sx: Sx) -> ParsedDomain:
    """Read a ``(domain ...)`` answer; ProtocolError names the field that is wrong."""
    _check_head(sx, ("domain",))
    domid = _count(sx, "domain/domid")
    if domid is not None and domid >= DOMID_FIRST_RESERVED:
        raise ProtocolError(f"field 'domid': {domid} is out of range", domid=domid)
    cpu_time = value(sx, "domain/cpu_time")
    state = value(sx, "domain/state")
    disks, nics = parse_devices(sx)
    persistent = value(sx, "domain/xvirt_persistent")
    if persistent not in (None, "0", "1"):
        raise ProtocolError(f"field 'xvirt_persistent': {persistent!r} is not 0 or 1")
    online, most = _vcpus(sx, "domain")
    return ParsedDomain(
        domid=domid,
        uuid=_required_uuid(sx, "domain", ProtocolError),
        name=_required_name(sx, "domain", ProtocolError),
        memory_kib=_memory_kib(sx, "domain", "memory", "memory_kib") or 0,
        max_memory_kib=_memory_kib(sx, "domain", "maxmem", "maxmem_kib") or 0,
        vcpus=online,
        max_vcpus=most if most != online else 0,
        sched=_sched(sx, "domain"),
        metadata=parse_metadata(sx, "domain"),
        os_type=_os_type(sx),
        state=parse_state_flags(state, active=domid is not None) if state else None,
        cpu_time_ns=_seconds_to_ns(cpu_time, "cpu_time") if cpu_time else None,
        disks=disks,
        nics=nics,
        persistent=(persistent == "1") if persistent is not None else (
            True if domid is None else None),
    )


# -- vCPUs, the credit scheduler and metadata ----------------------------------------------

_BITMAP = re.compile(r"\+?(?:0[xX]([0-9a-fA-F]{1,64})|([0-9]{1,80}))")


def vcpus_fields(vcpus: int, max_vcpus: int | None = None) -> list[Sx]:
    """``(vcpus N)``, and when fewer than ``max_vcpus`` are online, xend's
    ``(vcpus MAX) (vcpu_avail BITMAP)`` with the first ``vcpus`` bits set."""
    _check_counts(vcpus=vcpus)
    if max_vcpus is None or max_vcpus == vcpus:
        return [["vcpus", str(vcpus)]]
    _check_counts(max_vcpus=max_vcpus)
    if max_vcpus < vcpus:
        raise InvalidArgumentError(f"{vcpus} vCPUs online is more than the maximum, "
                                   f"{max_vcpus}")
    return [["vcpus", str(max_vcpus)], ["vcpu_avail", str((1 << vcpus) - 1)]]


def _vcpus(sx: Sx, head: str) -> tuple[int, int]:
    """(online, maximum) vCPUs of a record or config: the online ones are the set bits
    of ``vcpu_avail``, at most ``vcpus`` (libvirt's reading), or all when it is absent."""
    most = _count(sx, f"{head}/vcpus") or 0
    avail = value(sx, f"{head}/vcpu_avail")
    if not avail:
        return most, most
    m = _BITMAP.fullmatch(avail.strip())
    if m is None:
        raise ProtocolError(f"field 'vcpu_avail': {avail[:80]!r} is not a bitmap")
    bits = int(m[1], 16) if m[1] is not None else int(m[2])
    return min(bin(bits).count("1"), most), most


def _sched(sx: Sx, head: str) -> SchedulerParams | None:
    """``cpu_weight``/``cpu_cap`` where both are whole numbers (a missing cap is 0);
    None otherwise (old xend wrote a weight of ``1.0``, another scheduler's)."""
    weight, cap = value(sx, f"{head}/cpu_weight"), value(sx, f"{head}/cpu_cap")
    try:
        w = _strtol(weight, "cpu_weight") if weight else None
        c = _strtol(cap, "cpu_cap") if cap else 0
    except ProtocolError:
        return None
    if w is None or w < 0 or c < 0:
        return None
    return SchedulerParams(w, c)


def metadata_fields(metadata: DomainMetadata) -> list[Sx]:
    """``(xvirt_title T) (xvirt_description D) (xvirt_metadata (element (uri U) (key K)
    (xml X)) ...)``, each only when there is something to say."""
    out: list[Sx] = []
    if metadata.title is not None:
        out.append(["xvirt_title", metadata.title])
    if metadata.description is not None:
        out.append(["xvirt_description", metadata.description])
    if metadata.elements:
        elements: list[Sx] = [["element", ["uri", e.uri], ["key", e.key], ["xml", e.xml]]
                              for e in metadata.elements]
        out.append(["xvirt_metadata", *elements])
    return out


def parse_metadata(sx: Sx, head: str) -> DomainMetadata:
    """The metadata extension fields of a ``head`` record (none: no metadata)."""
    title = value(sx, f"{head}/xvirt_title")
    description = value(sx, f"{head}/xvirt_description")
    elements: list[MetadataElement] = []
    meta = child(sx, "xvirt_metadata") if isinstance(sx, list) else None
    for n, item in enumerate(children(meta, "element") if meta is not None else [], 1):
        uri, key, xml = (value(item, f"element/{k}") for k in ("uri", "key", "xml"))
        if not uri or not key or not xml:
            raise ProtocolError(f"metadata element {n} lacks its uri, key or xml: "
                                f"{dumps(item)[:60]}")
        elements.append(MetadataElement(uri, key, xml))
    if len({e.uri for e in elements}) != len(elements):
        raise ProtocolError("two metadata elements have the same namespace URI")
    return DomainMetadata(title or None, description or None, tuple(elements))


def settings_record(settings: DomainSettings) -> Sx:
    """``(settings (vcpus N) (max_vcpus M) <metadata fields>)``: a domain's settings, as
    ``GET /xend/domain/<dom>?op=xvirt_settings`` answers them."""
    return ["settings", ["vcpus", str(settings.vcpus)], ["max_vcpus", str(settings.max_vcpus)],
            *metadata_fields(settings.metadata)]


def parse_settings(sx: Sx) -> DomainSettings:
    _check_head(sx, ("settings",))
    vcpus, most = _count(sx, "settings/vcpus"), _count(sx, "settings/max_vcpus")
    if not vcpus or not most or most < vcpus:
        raise ProtocolError(f"malformed vCPU counts in {dumps(sx)[:80]}")
    return DomainSettings(vcpus, most, parse_metadata(sx, "settings"))


def sched_credit_record(params: SchedulerParams) -> Sx:
    """``(domain_sched_credit (weight W) (cap C))``: xend's ``domain_sched_credit_get``."""
    return ["domain_sched_credit", ["weight", str(params.weight)], ["cap", str(params.cap)]]


def parse_sched_credit(sx: Sx) -> SchedulerParams:
    _check_head(sx, ("domain_sched_credit",))
    weight, cap = _count(sx, "domain_sched_credit/weight"), _count(
        sx, "domain_sched_credit/cap")
    if weight is None or cap is None:
        raise ProtocolError(f"malformed scheduler answer {dumps(sx)[:80]}")
    return SchedulerParams(weight, cap)


def vcpuinfo_record(vcpus: tuple[VcpuInfo, ...]) -> Sx:
    """xend's ``op=vcpuinfo`` answer: ``((vcpu (number N) (online 1) (blocked 0/1)
    (running 0/1) (cpu_time S) (cpu N) (cpumap (0 1 ...))) ...)``, CPU time in seconds."""
    return [["vcpu", ["number", str(v.number)],
             ["online", "0" if v.state is VcpuState.OFFLINE else "1"],
             ["blocked", "1" if v.state is VcpuState.BLOCKED else "0"],
             ["running", "1" if v.state is VcpuState.RUNNING else "0"],
             ["cpu_time", f"{v.cpu_time_ns // 10**9}.{v.cpu_time_ns % 10**9:09d}"],
             ["cpu", str(v.cpu)],
             ["cpumap", [str(i) for i, on in enumerate(v.affinity) if on]]]
            for v in vcpus]


def parse_vcpuinfo(sx: Sx) -> tuple[VcpuInfo, ...]:
    """An ``op=vcpuinfo`` answer read as libvirt's xend driver read it: running, then
    blocked, else offline; the affinity as long as the highest CPU any vCPU names."""
    if isinstance(sx, str):
        raise ProtocolError("expected a list of (vcpu ...) items")
    items: list[tuple[int, VcpuState, int, int, set[int]]] = []
    for n, item in enumerate(sx, 1):
        if isinstance(item, str) or not item or item[0] != "vcpu":
            raise ProtocolError(f"vcpuinfo item {n} is not (vcpu ...)")
        number = _count(item, "vcpu/number")
        cpu = value(item, "vcpu/cpu")
        cpu_time = value(item, "vcpu/cpu_time") or "0"
        if number is None or cpu is None:
            raise ProtocolError(f"vcpuinfo item {n} lacks its number or cpu")
        state = (VcpuState.RUNNING if value(item, "vcpu/running") == "1" else
                 VcpuState.BLOCKED if value(item, "vcpu/blocked") == "1" else VcpuState.OFFLINE)
        cpumap = child(item, "cpumap")
        allowed: set[int] = set()
        for entry in cpumap[1:] if cpumap is not None else []:
            for atom in entry if isinstance(entry, list) else [entry]:
                if not isinstance(atom, str):
                    raise ProtocolError(f"vcpuinfo item {n}: malformed cpumap")
                index = _strtol(atom, "cpumap")
                if not 0 <= index < 4096:
                    raise ProtocolError(f"vcpuinfo item {n}: CPU {index} is out of range")
                allowed.add(index)
        items.append((number, state, _seconds_to_ns(cpu_time, "cpu_time"),
                      _strtol(cpu, "cpu"), allowed))
    width = max((max(a, default=-1) + 1 for *_, a in items), default=0)
    width = max([width] + [c + 1 for _, _, _, c, _ in items])
    return tuple(VcpuInfo(num, state, ns, cpu, tuple(i in allowed for i in range(width)))
                 for num, state, ns, cpu, allowed in items)


def _required_uuid(sx: Sx, head: str, error: type[ProtocolError | InvalidArgumentError]) -> str:
    text = value(sx, f"{head}/uuid")
    if not text:
        raise error(f"the {head} record has no field 'uuid'")
    try:
        return parse_uuid(text)
    except InvalidArgumentError:
        raise error(f"field 'uuid': {text!r} is not a UUID", uuid=text) from None


def _required_name(sx: Sx, head: str, error: type[ProtocolError | InvalidArgumentError]) -> str:
    text = value(sx, f"{head}/name")
    if not text:
        raise error(f"the {head} record has no field 'name'")
    try:
        return check_name(text)
    except InvalidArgumentError as e:
        raise error(f"field 'name': {e.message}", name=text) from None


def _memory_fields(memory_kib: int, max_memory_kib: int) -> list[Sx]:
    return [
        ["memory", str(_mib(memory_kib))],
        ["maxmem", str(_mib(max_memory_kib))],
        ["memory_kib", str(memory_kib)],
        ["maxmem_kib", str(max_memory_kib)],
    ]


def _check_counts(**counts: int) -> None:
    for field, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError(f"{field} must be a non-negative integer, not {n!r}")


# -- devices --------------------------------------------------------------------------------


def device_entries(disks: tuple[DiskConfig, ...], nics: tuple[NicConfig, ...]) -> list[Sx]:
    """``(device (vbd ...))`` for each disk, then ``(device (vif ...))`` for each interface."""
    out: list[Sx] = [
        ["device", ["vbd", ["dev", d.target], ["uname", d.source],
                    ["mode", "r" if d.readonly else "w"]]]
        for d in disks
    ]
    for n in nics:
        vif: list[Sx] = ["vif", ["mac", n.mac]]
        if n.bridge is not None:
            vif += [["bridge", n.bridge], ["script", "vif-bridge"]]
        out.append(["device", vif])
    return out


def _device_field(dev: list[Sx], key: str, where: str) -> str | None:
    """A device's field as text; None when absent; a list value is malformed."""
    item = child(dev, key)
    if item is None:
        return None
    if len(item) == 1:
        return ""
    if len(item) != 2 or not isinstance(item[1], str):
        raise ProtocolError(f"{where}: field {key!r} is not one value: {dumps(item)[:60]}")
    return item[1]


def _disk(dev: list[Sx], where: str) -> DiskConfig:
    target = _device_field(dev, "dev", where)
    if target and target.startswith("ioemu:"):
        target = target[len("ioemu:"):]
    target = (target or "").partition(":")[0]  # hda:disk, hdc:cdrom
    if not target:
        raise ProtocolError(f"{where}: no device name in field 'dev'")
    mode = _device_field(dev, "mode", where) or ""
    if mode not in _READONLY_MODES + _WRITABLE_MODES:
        raise ProtocolError(f"{where}: field 'mode' is {mode!r}, not r or w")
    return DiskConfig(_device_field(dev, "uname", where) or "", target, mode in _READONLY_MODES)


def _nic(dev: list[Sx], where: str) -> NicConfig:
    mac = _device_field(dev, "mac", where)
    if not mac:
        raise ProtocolError(f"{where}: no field 'mac'")
    try:
        mac = parse_mac(mac)
    except InvalidArgumentError as exc:
        raise ProtocolError(f"{where}: field 'mac': {exc.message}") from None
    return NicConfig(mac, _device_field(dev, "bridge", where) or None)


def parse_devices(sx: Sx) -> tuple[tuple[DiskConfig, ...], tuple[NicConfig, ...]]:
    """The disks and interfaces of a domain record or config, in their order.

    Kinds other than disks and vifs are skipped; a ``device`` entry that is not
    ``(device (kind ...))``, or a disk or vif missing what names it, is a
    ProtocolError saying which entry."""
    disks: list[DiskConfig] = []
    nics: list[NicConfig] = []
    for n, entry in enumerate(children(sx, "device"), 1):
        body = entry[1:]
        if len(body) != 1 or isinstance(body[0], str) or not body[0] or not isinstance(
                body[0][0], str):
            raise ProtocolError(f"device {n} is not (device (kind ...)): {dumps(entry)[:60]}")
        dev = body[0]
        kind = dev[0]
        where = f"device {n} ({kind})"
        if kind in _DISK_KINDS:
            disks.append(_disk(dev, where))
        elif kind == "vif":
            nics.append(_nic(dev, where))
    return tuple(disks), tuple(nics)


# -- configs (what clients send with op=create and op=new) ------------------------------------


@dataclass(frozen=True, slots=True)
class VmConfig:
    """What a client asks xend to create or define; memory in KiB."""

    name: str
    uuid: str | None  # None: let the host choose
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    os_type: str
    # None: the config names no disk or vif, and the host gives the defaults;
    # otherwise the config's devices are all the domain gets.
    disks: tuple[DiskConfig, ...] | None = None
    nics: tuple[NicConfig, ...] | None = None
    #: The most vCPUs it may have (``vcpus`` are online): ``(vcpus N)`` with
    #: ``(vcpu_avail B)``.
    max_vcpus: int | None = None
    metadata: DomainMetadata = dataclasses.field(default_factory=DomainMetadata)


def vm_config(
    name: str,
    memory_kib: int,
    max_memory_kib: int,
    vcpus: int,
    uuid: str | None = None,
    os_type: str = "linux",
    disks: tuple[DiskConfig, ...] = (),
    nics: tuple[NicConfig, ...] = (),
    max_vcpus: int | None = None,
    metadata: DomainMetadata | None = None,
) -> Sx:
    """``(vm (name x) (memory M) (maxmem M) (vcpus n) (uuid u) (image (linux))
    (device ...) ...)``, as libvirt sent it, plus our KiB extensions; with
    ``max_vcpus`` above ``vcpus``, xend's ``(vcpus MAX) (vcpu_avail B)``, and the
    metadata extension fields."""
    _check_counts(memory_kib=memory_kib, max_memory_kib=max_memory_kib, vcpus=vcpus)
    mem = _memory_fields(memory_kib, max_memory_kib)
    cfg: list[Sx] = ["vm", ["name", name], mem[0], mem[1], *vcpus_fields(vcpus, max_vcpus)]
    if uuid is not None:
        cfg.append(["uuid", parse_uuid(uuid)])
    cfg += [mem[2], mem[3]]
    if metadata is not None:
        cfg += metadata_fields(metadata)
    cfg += [["image", [os_type]], *device_entries(disks, nics)]
    return cfg


def parse_vm_config(sx: Sx) -> VmConfig:
    """Read a config sent with ``op=create``/``op=new``.

    The head is ``vm``, or ``domain`` when a client sends back an edited
    record (libvirt's autostart sequence). A malformed shape or number is a
    ProtocolError; a well-formed but unusable value (bad name or uuid, no
    memory, maxmem below memory, no vcpus) is an InvalidArgumentError. A
    missing maxmem means memory; missing vcpus means 1, as in xend. Device
    values (targets, MACs, bridges) are the host's to judge when it creates.
    """
    head = _check_head(sx, ("vm", "domain"))
    name = _required_name(sx, head, InvalidArgumentError)
    uuid = _required_uuid(sx, head, InvalidArgumentError) if value(sx, f"{head}/uuid") else None
    memory = _memory_kib(sx, head, "memory", "memory_kib")
    if not memory:
        raise InvalidArgumentError(f"the config of {name!r} sets no memory", name=name)
    max_memory = _memory_kib(sx, head, "maxmem", "maxmem_kib") or memory
    if max_memory < memory:
        raise InvalidArgumentError(
            f"maxmem ({max_memory} KiB) is below memory ({memory} KiB)", name=name
        )
    most = _count(sx, f"{head}/vcpus")
    if most == 0:
        raise InvalidArgumentError("vcpus must be at least 1", name=name)
    online, _ = _vcpus(sx, head) if most else (1, 1)
    if online == 0:
        raise InvalidArgumentError("vcpu_avail brings no vCPU online", name=name)
    max_vcpus = most if most is not None and most != online else None
    metadata = parse_metadata(sx, head)
    disks, nics = parse_devices(sx)
    if not disks and not nics:
        return VmConfig(name, uuid, memory, max_memory, online, _os_type(sx),
                        max_vcpus=max_vcpus, metadata=metadata)
    return VmConfig(name, uuid, memory, max_memory, online, _os_type(sx), disks, nics,
                    max_vcpus, metadata)


# -- errors and the node record ---------------------------------------------------------------


def error_sexpr(message: str) -> Sx:
    """xend's error answer, ``(xend.err '<message>')``."""
    return ["xend.err", message]


def parse_error(sx: Sx) -> str | None:
    """The message of an ``(xend.err ...)`` answer, or None if ``sx`` is not one."""
    if isinstance(sx, str) or not sx or sx[0] != "xend.err":
        return None
    rest = sx[1:]
    if len(rest) == 1 and isinstance(rest[0], str):
        return rest[0]
    return " ".join(dumps(item) for item in rest)


def node_record(fields: Mapping[str, str | int]) -> Sx:
    """``(node (key value) ...)``, in the mapping's order."""
    rec: list[Sx] = ["node"]
    for key, val in fields.items():
        if not key:
            raise InvalidArgumentError("a node field needs a non-empty name")
        rec.append([key, str(val)])
    return rec


def parse_node_record(sx: Sx) -> dict[str, str]:
    """The ``(node ...)`` fields as text; the first of a repeated key wins.

    ``(key)`` gives ``""``; a value that is not one atom (newer xend's
    ``cpu_topology``) is kept as its S-expression text.
    """
    _check_head(sx, ("node",))
    out: dict[str, str] = {}
    for i, item in enumerate(sx[1:], 1):
        if isinstance(item, str) or not item or not isinstance(item[0], str):
            raise ProtocolError(f"node record item {i} is not a (key value) list: {dumps(item)}")
        rest = item[1:]
        if len(rest) == 1 and isinstance(rest[0], str):
            text = rest[0]
        else:
            text = " ".join(dumps(x) for x in rest)
        out.setdefault(item[0], text)
    return out
