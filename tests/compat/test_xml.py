"""The domain XML builder on its own."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from xvirt.compat._xml import domain_xml
from xvirt.model import Identity
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

IDENT = Identity("6695eb01-f6a4-8304-79aa-97f2502e193f", "test", 1)


def test_buses_from_target_names_and_plain_interfaces() -> None:
    cfg = DomainConfig(2097152, 8388608, 2, "hvm",
                       disks=(DiskConfig("/a", "vda"), DiskConfig("/b", "sdb"),
                              DiskConfig("/c", "hdc"), DiskConfig("/d", "xvdd"),
                              DiskConfig("/e", "fda")),
                       nics=(NicConfig("aa:bb:cc:dd:ee:ff"),))
    root = ET.fromstring(domain_xml("test", IDENT, cfg, inactive=False))
    assert root.get("type") == "test"
    assert [t.get("bus") for t in root.iterfind("devices/disk/target")] == [
        "virtio", "scsi", "ide", "xen", None]
    nic = root.find("devices/interface")
    assert nic is not None and nic.get("type") == "ethernet" and nic.find("source") is None
    # a running domain's NIC names its host-side device, as Xen names it
    assert nic.find("target") is not None and nic.find("target").get("dev") == (  # type: ignore[union-attr]
        f"vif{IDENT.id}.0")
    inactive = ET.fromstring(domain_xml("test", IDENT, cfg, inactive=True))
    assert inactive.find("devices/interface/target") is None
    assert root.findtext("os/type") == "hvm"


def test_no_devices_is_an_empty_devices_element() -> None:
    root = ET.fromstring(domain_xml("xen", IDENT, DomainConfig(1024, 1024, 1), inactive=False))
    devices = root.find("devices")
    assert devices is not None and list(devices) == []


# Text XML 1.0 can carry: no surrogates, controls or noncharacters (U+FFFE, U+FFFF...,
# category Cn with the unassigned), which no XML document may hold at all.
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1,
                max_size=30)


@given(name=_text, source=_text, bridge=_text)
def test_any_text_round_trips(name: str, source: str, bridge: str) -> None:
    cfg = DomainConfig(1024, 2048, 1, disks=(DiskConfig(source, "xvda"),),
                       nics=(NicConfig("00:16:3e:00:00:01", bridge),))
    root = ET.fromstring(domain_xml("xen", Identity(IDENT.uuid, name, 3), cfg, inactive=False))
    assert root.findtext("name") == name
    assert root.find("devices/disk/source").get("file") == source  # type: ignore[union-attr]
    assert root.find("devices/interface/source").get("bridge") == bridge  # type: ignore[union-attr]
