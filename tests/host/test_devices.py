"""Disk and interface validation, and Xen's default devices."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import InvalidArgumentError
from xvirt.host.devices import (
    check_disks,
    check_nics,
    default_disks,
    default_nics,
)
from xvirt.model import parse_mac
from xvirt.planes import DiskConfig, NicConfig


def test_default_disk_is_a_file_on_xvda() -> None:
    assert default_disks("web 1") == (DiskConfig("/var/lib/xen/images/web 1.img", "xvda"),)


@pytest.mark.parametrize(
    ("uuid", "mac"),
    [
        ("6695eb01-f6a4-8304-79aa-97f2502e193f", "00:16:3e:66:95:eb"),
        ("f695eb01-f6a4-8304-79aa-97f2502e193f", "00:16:3e:76:95:eb"),  # top bit cleared
        ("00000000-0000-0000-0000-000000000001", "00:16:3e:00:00:00"),
    ],
)
def test_default_nic_mac_is_xens_oui_then_the_uuid(uuid: str, mac: str) -> None:
    assert default_nics(uuid) == (NicConfig(mac, "xenbr0"),)


@given(st.uuids())
def test_default_nics_always_pass_validation(u: uuidlib.UUID) -> None:
    nics = default_nics(str(u))
    assert check_nics(nics) == nics
    assert nics[0].mac.startswith("00:16:3e:") and int(nics[0].mac[9:11], 16) < 0x80


@pytest.mark.parametrize("target", ["xvda", "xvdz", "xvdaa", "xvda1", "hda", "hdc", "sda",
                                    "sdb12"])
def test_xen_device_names_are_targets(target: str) -> None:
    assert check_disks([DiskConfig("/x", target)]) == (DiskConfig("/x", target),)


@pytest.mark.parametrize(
    ("disks", "words"),
    [
        ("xvda", "sequence of DiskConfig"),
        (5, "sequence of DiskConfig"),
        ([("/x", "xvda")], "must be a DiskConfig"),
        ([DiskConfig("", "xvda")], "source must be a non-empty string"),
        ([DiskConfig(None, "xvda")], "source must be a non-empty string"),  # type: ignore[arg-type]
        ([DiskConfig("/a\x00b", "xvda")], "control characters"),
        ([DiskConfig("/a\ud800", "xvda")], "not valid Unicode"),
        ([DiskConfig("/x", "vda")], "not a Xen device name"),
        ([DiskConfig("/x", "xvd")], "not a Xen device name"),
        ([DiskConfig("/x", "xvda0")], "not a Xen device name"),
        ([DiskConfig("/x", "XVDA")], "not a Xen device name"),
        ([DiskConfig("/x", "hda:cdrom")], "not a Xen device name"),
        ([DiskConfig("/x", "xvda", "yes")], "readonly must be a bool"),  # type: ignore[arg-type]
        ([DiskConfig("/x", "xvda"), DiskConfig("/y", "xvda")], "two disks on target 'xvda'"),
    ],
)
def test_bad_disks_are_refused_saying_what(disks: object, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        check_disks(disks)


def test_macs_are_canonical_lower_case() -> None:
    assert parse_mac("00:16:3E:AB:cd:0F") == "00:16:3e:ab:cd:0f"
    assert check_nics([NicConfig("02:AA:00:00:00:01")]) == (NicConfig("02:aa:00:00:00:01"),)


@pytest.mark.parametrize(
    ("nics", "words"),
    [
        ("00:16:3e:00:00:01", "sequence of NicConfig"),
        ([("00:16:3e:00:00:01", "xenbr0")], "must be a NicConfig"),
        ([NicConfig("00:16:3e:00:00")], "not six hex octets"),
        ([NicConfig("00-16-3e-00-00-01")], "not six hex octets"),
        ([NicConfig("00:16:3e:00:00:0g")], "not six hex octets"),
        ([NicConfig(" 00:16:3e:00:00:01")], "not six hex octets"),
        ([NicConfig(5)], "not six hex octets"),  # type: ignore[arg-type]
        ([NicConfig("01:00:5e:00:00:01")], "not a unicast address"),  # multicast
        ([NicConfig("ff:ff:ff:ff:ff:ff")], "not a unicast address"),  # broadcast
        ([NicConfig("00:00:00:00:00:00")], "not a unicast address"),
        ([NicConfig("00:16:3e:00:00:01"), NicConfig("00:16:3E:00:00:01")], "two interfaces"),
        ([NicConfig("00:16:3e:00:00:01", "")], "bridge name must be a non-empty"),
        ([NicConfig("00:16:3e:00:00:01", "a b")], "not an interface name"),
        ([NicConfig("00:16:3e:00:00:01", "a/b")], "not an interface name"),
        ([NicConfig("00:16:3e:00:00:01", "x" * 16)], "not an interface name"),
        ([NicConfig("00:16:3e:00:00:01", "tab\t")], "control characters"),
    ],
)
def test_bad_nics_are_refused_saying_what(nics: object, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        check_nics(nics)
