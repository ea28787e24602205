"""A domain's disks and network interfaces: validation and Xen's defaults.

The host model checks devices here once, when a domain is created (and again
when an image is restored), so everything downstream (records, the state file,
images) can trust them. A domain created without devices gets what a plain
``xm create`` of a one-disk guest would give it: a file-backed ``xvda`` in
Xen's usual image directory and one vif on ``xenbr0`` whose MAC is in Xen's
own OUI, derived from the UUID so the same domain always gets the same MAC.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

from xvirt.errors import InvalidArgumentError
from xvirt.model import parse_mac
from xvirt.planes import DiskConfig, NicConfig
from xvirt.stats import BlockStats, NetStats

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_BRIDGE",
    "DEFAULT_IMAGE_ROOT",
    "XEN_OUI",
    "check_disks",
    "check_nics",
    "default_disks",
    "default_nics",
    "disk_stats",
    "nic_stats",
]

DEFAULT_IMAGE_ROOT = "/var/lib/xen/images"
DEFAULT_BRIDGE = "xenbr0"
XEN_OUI = "00:16:3e"  # the prefix xend's randomMAC used
# Xen's virtual block device names: xvd*, and the emulated IDE/SCSI hd*/sd*,
# optionally with a partition number (PV guests may be given xvda1).
_TARGET = re.compile(r"(?:xvd|hd|sd)[a-z]{1,3}(?:[1-9][0-9]?)?")
_IFNAMSIZ = 15  # a Linux interface name is at most 15 bytes


def default_disks(name: str) -> tuple[DiskConfig, ...]:
    return (DiskConfig(f"{DEFAULT_IMAGE_ROOT}/{name}.img", "xvda"),)


def default_nics(uuid: str) -> tuple[NicConfig, ...]:
    """One vif on xenbr0; the MAC is Xen's OUI then the UUID's first three bytes,
    the top bit cleared as xend's randomMAC kept it."""
    raw = bytes.fromhex(uuid.replace("-", "")[:6])
    tail = bytes([raw[0] & 0x7F, raw[1], raw[2]])
    return (NicConfig(f"{XEN_OUI}:{tail.hex(':')}", DEFAULT_BRIDGE),)


# -- what the devices did: counters that grow with the domain's activity -------------
#
# A device's counters are a function of the domain's *activity*, its CPU time (it
# grows only while the domain runs, not while it is paused or crashed, restarts at 0
# at a reboot, and is kept across save, restore, migration and a daemon restart),
# and of rates drawn once from a hash of the domain's UUID and the device, so one
# domain's devices differ from each other and from other domains' and the same
# domain always does the same I/O for the same CPU. Every count is a floor of a
# non-negative rate times the activity: 0 at 0, never negative, never going back.

#: Bytes a block request moves (rd/wr bytes are requests times this).
BLOCK_SIZE = 4096
_NS_PER_S = 10**9


def _draw(uuid: str, device: str) -> tuple[int, ...]:
    """Eight numbers in 0..65535 from ``uuid`` and ``device``: a device's rates."""
    digest = hashlib.blake2b(f"{uuid}/{device}".encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 2], "big") for i in range(0, 16, 2))


# A scrape of a 5000-domain host reads every device: a device's rates are drawn once
# (and kept for the 65536 devices read last), so a reading is a few products.

@lru_cache(maxsize=1 << 16)
def _disk_rates(uuid: str, target: str, readonly: bool) -> tuple[int, int, int, int, int, int]:
    """Reads and writes per CPU second, flushes per 64 writes, and the latency (ns) of
    each."""
    d = _draw(uuid, target)
    return (20 + d[0] % 512, 0 if readonly else 10 + d[1] % 256, 1 + d[2] % 8,
            50_000 + d[3] % 1024 * 1000, 50_000 + d[4] % 1024 * 1000,
            50_000 + d[5] % 1024 * 1000)


@lru_cache(maxsize=1 << 16)
def _nic_rates(uuid: str, mac: str) -> tuple[int, int, int, int]:
    """Packets in and out per CPU second, and the size of each."""
    d = _draw(uuid, mac)
    return 50 + d[0] % 4096, 20 + d[1] % 2048, 64 + d[2] % 1437, 64 + d[3] % 1437


@lru_cache(maxsize=1 << 16)
def _disk_size(uuid: str, target: str, source: str) -> tuple[int, int, int]:
    """``(capacity, allocation, physical)`` in bytes: 8-71 GiB as the guest sees it; an
    image file holds 25-74% of it (sparse: physical is what it holds), a device
    (``/dev/...``) all of it."""
    d = _draw(uuid, f"{target}#size")
    capacity = (8 + d[0] % 64) * 2**30
    if source.startswith("/dev/"):
        return capacity, capacity, capacity
    held = capacity // 100 * (25 + d[1] % 50)
    return capacity, held, held


def disk_stats(uuid: str, disk: DiskConfig, activity_ns: int) -> BlockStats:
    """``disk``'s I/O after ``activity_ns`` of its domain's CPU time: 20-531 reads
    and (unless read-only) 10-265 writes per CPU second, 1-8 flushes per 64 writes,
    each taking 50-1074 us; and its size (:func:`_disk_size`), which is the disk's,
    not its domain's life's: the same after a reboot."""
    rd_rate, wr_rate, fl_per_64, rd_lat, wr_lat, fl_lat = _disk_rates(
        uuid, disk.target, disk.readonly)
    active = max(0, activity_ns)
    rd = active * rd_rate // _NS_PER_S
    wr = active * wr_rate // _NS_PER_S
    fl = wr * fl_per_64 // 64
    capacity, allocation, physical = _disk_size(uuid, disk.target, disk.source)
    return BlockStats(disk.target, disk.source, rd, rd * BLOCK_SIZE, rd * rd_lat,
                      wr, wr * BLOCK_SIZE, wr * wr_lat, fl, fl * fl_lat, errors=0,
                      capacity_bytes=capacity, allocation_bytes=allocation,
                      physical_bytes=physical)


def nic_stats(uuid: str, domid: int, index: int, nic: NicConfig,
              activity_ns: int) -> NetStats:
    """The ``index``-th NIC's traffic after ``activity_ns`` of its domain's CPU time,
    as Xen names its back end (``vif<domid>.<index>``): 50-4145 packets in and
    20-2067 out per CPU second, of 64-1500 bytes each; no errors, no drops."""
    rx_rate, tx_rate, rx_size, tx_size = _nic_rates(uuid, nic.mac)
    active = max(0, activity_ns)
    rx = active * rx_rate // _NS_PER_S
    tx = active * tx_rate // _NS_PER_S
    return NetStats(f"vif{domid}.{index}", nic.mac, nic.bridge, rx * rx_size, rx, 0, 0,
                    tx * tx_size, tx, 0, 0)


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, not {value!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise InvalidArgumentError(f"{what} {value!r} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeError:  # a lone surrogate: no file or interface can be named so
        raise InvalidArgumentError(f"{what} {value!r} is not valid Unicode") from None
    return value


def check_disks(disks: object) -> tuple[DiskConfig, ...]:
    """The disks as a tuple, if every one is usable and no two share a target."""
    if isinstance(disks, str | bytes) or not isinstance(disks, Iterable):
        raise InvalidArgumentError(f"disks must be a sequence of DiskConfig, not {disks!r}")
    out: list[DiskConfig] = []
    for disk in disks:
        if not isinstance(disk, DiskConfig):
            raise InvalidArgumentError(f"a disk must be a DiskConfig, not {disk!r}")
        _check_text(disk.source, "a disk's source")
        if not isinstance(disk.target, str) or not _TARGET.fullmatch(disk.target):
            raise InvalidArgumentError(
                f"disk target {disk.target!r} is not a Xen device name like xvda, hda or sda")
        if not isinstance(disk.readonly, bool):
            raise InvalidArgumentError(f"a disk's readonly must be a bool, not {disk.readonly!r}")
        if any(d.target == disk.target for d in out):
            raise InvalidArgumentError(f"two disks on target {disk.target!r}")
        out.append(disk)
    return tuple(out)


def check_nics(nics: object) -> tuple[NicConfig, ...]:
    """The interfaces as a tuple with canonical MACs, if every MAC is a distinct
    unicast address and every bridge a possible interface name."""
    if isinstance(nics, str | bytes) or not isinstance(nics, Iterable):
        raise InvalidArgumentError(f"nics must be a sequence of NicConfig, not {nics!r}")
    out: list[NicConfig] = []
    for nic in nics:
        if not isinstance(nic, NicConfig):
            raise InvalidArgumentError(f"an interface must be a NicConfig, not {nic!r}")
        mac = parse_mac(nic.mac)
        if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
            raise InvalidArgumentError(f"MAC address {nic.mac!r} is not a unicast address")
        if any(n.mac == mac for n in out):
            raise InvalidArgumentError(f"two interfaces with MAC address {mac}")
        bridge = nic.bridge
        if bridge is not None:
            _check_text(bridge, "a bridge name")
            if len(bridge.encode()) > _IFNAMSIZ or any(c in bridge for c in " /:"):
                raise InvalidArgumentError(
                    f"bridge {bridge!r} is not an interface name (at most {_IFNAMSIZ} bytes, "
                    "no spaces, '/' or ':')")
        out.append(NicConfig(mac, bridge))
    return tuple(out)
