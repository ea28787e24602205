"""A domain's disks and network interfaces: validation and Xen's defaults.

The host model checks devices here once, when a domain is created (and again
when an image is restored), so everything downstream (records, the state file,
images) can trust them. A domain created without devices gets what a plain
``xm create`` of a one-disk guest would give it: a file-backed ``xvda`` in
Xen's usual image directory and one vif on ``xenbr0`` whose MAC is in Xen's
own OUI, derived from the UUID so the same domain always gets the same MAC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from xvirt.errors import InvalidArgumentError
from xvirt.model import parse_mac
from xvirt.planes import DiskConfig, NicConfig

__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_IMAGE_ROOT",
    "XEN_OUI",
    "check_disks",
    "check_nics",
    "default_disks",
    "default_nics",
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
