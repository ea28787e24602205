"""What's inside a guest: block, network, memory and vCPU statistics.

Value types only, shared by every layer: the host model produces them, the drivers
carry them, the public API returns them, the tools and the compat face print them.
A monitoring loop that asks for ``info()`` never pays for them: they are read only
when a caller names the groups it wants (:class:`StatGroup`), as libvirt's
``virConnectGetAllDomainStats`` takes its groups.

Units are in the field names. Counters (bytes, requests, packets, times) only grow
for one domain between reboots and never start negative; a figure the host does
not report is None, never a made-up zero.
"""


import enum as _enum
from collections.abc import Iterable as _Iterable
from dataclasses import dataclass as _dataclass
from dataclasses import field as _field

from xvirt.errors import InvalidArgumentError as _InvalidArgumentError
from xvirt.model import DomainState, VcpuState

__all__ = [
    "ALL_GROUPS",
    "BalloonStats",
    "BlockStats",
    "CpuStats",
    "DomainState",
    "DomainStats",
    "NetStats",
    "StatGroup",
    "VcpuState",
    "VcpuStats",
    "check_groups",
]


class StatGroup(_enum.Enum):
    """A group of figures, named as libvirt names its statistics groups."""

    STATE = "state"
    CPU = "cpu"  # libvirt's cpu-total group
    BALLOON = "balloon"
    VCPU = "vcpu"
    BLOCK = "block"
    NET = "net"  # libvirt's interface group


#: Every group, in libvirt's order.
ALL_GROUPS: frozenset[StatGroup] = frozenset(StatGroup)


def check_groups(groups: StatGroup | str | _Iterable[StatGroup | str], *, op: str,
                 uri: str | None = None) -> frozenset[StatGroup]:
    """``groups`` as a set of StatGroup; a name (``"block"``) is taken too. An unknown
    group is an InvalidArgumentError naming it and the known ones."""
    if isinstance(groups, (str, StatGroup)):
        groups = (groups,)
    chosen = set()
    for group in groups:
        if isinstance(group, StatGroup):
            chosen.add(group)
            continue
        try:
            chosen.add(StatGroup(group))
        except ValueError:
            known = ", ".join(g.value for g in StatGroup)
            raise _InvalidArgumentError(f"unknown statistics group {group!r}; known: {known}",
                                       op=op, uri=uri) from None
    return frozenset(chosen)


@_dataclass(frozen=True, slots=True)
class CpuStats:
    """CPU time the domain used since it booted: all of it, in the guest's user mode
    and in its kernel."""

    time_ns: int
    user_ns: int | None = None
    system_ns: int | None = None


@_dataclass(frozen=True, slots=True)
class BalloonStats:
    """Memory as the balloon driver sees it (libvirt's ``balloon.*``). ``current`` and
    ``maximum`` always; the guest's own figures where its balloon driver reports them."""

    current_kib: int
    maximum_kib: int
    swap_in_kib: int | None = None
    swap_out_kib: int | None = None
    major_faults: int | None = None
    minor_faults: int | None = None
    unused_kib: int | None = None
    available_kib: int | None = None
    usable_kib: int | None = None
    disk_caches_kib: int | None = None
    rss_kib: int | None = None


@_dataclass(frozen=True, slots=True)
class VcpuStats:
    """One vCPU: its number, its state and the CPU time it used."""

    number: int
    state: VcpuState
    time_ns: int


@_dataclass(frozen=True, slots=True)
class BlockStats:
    """One virtual disk: its target device (``xvda``, ``vda``), its backing file, and
    its I/O since the domain booted."""

    name: str
    path: str | None
    rd_reqs: int
    rd_bytes: int
    rd_time_ns: int | None
    wr_reqs: int
    wr_bytes: int
    wr_time_ns: int | None
    fl_reqs: int | None = None
    fl_time_ns: int | None = None
    errors: int | None = None
    capacity_bytes: int | None = None
    allocation_bytes: int | None = None
    physical_bytes: int | None = None


@_dataclass(frozen=True, slots=True)
class NetStats:
    """One virtual NIC: its host-side device (``vif3.0``, ``vnet0``), MAC, bridge,
    and its traffic since the domain booted, as the guest sees it (rx: received by
    the guest)."""

    name: str
    mac: str | None
    bridge: str | None
    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int


@_dataclass(frozen=True, slots=True)
class DomainStats:
    """The groups a caller asked for, of one domain, read at one instant of one call.

    A group not asked for is None. ``missing`` holds the groups asked for that the
    domain did not answer (a guest whose QEMU does not answer, within the call's
    deadline): those are None too, and the others are served."""

    uuid: str
    name: str
    id: int | None
    state: DomainState | None = None
    cpu: CpuStats | None = None
    balloon: BalloonStats | None = None
    vcpus: tuple[VcpuStats, ...] | None = None
    blocks: tuple[BlockStats, ...] | None = None
    nets: tuple[NetStats, ...] | None = None
    missing: frozenset[StatGroup] = _field(default_factory=frozenset)

    @property
    def answered(self) -> bool:
        """Whether every group asked for was answered."""
        return not self.missing
