"""Domain XML -> DomainConfig, including what libvirt's test driver really sends."""

from __future__ import annotations

import pytest

from xvirt.drivers.libvirt_xml import config_from_xml, uuid_from_xml
from xvirt.errors import ProtocolError
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.planes import DiskConfig, NicConfig

URI = "libvirt:test:///default"


def test_the_test_drivers_default_domain() -> None:
    conn = real_libvirt().open("test:///default")
    try:
        xml = conn.lookupByID(1).XMLDesc(0)
    finally:
        conn.close()
    cfg = config_from_xml(xml, uri=URI)
    assert (cfg.memory_kib, cfg.max_memory_kib, cfg.vcpus) == (2097152, 8388608, 2)
    assert cfg.disks == (DiskConfig("/guest/diskimage1", "vda"),)
    assert cfg.nics == (NicConfig("aa:bb:cc:dd:ee:ff", "default"),)
    assert uuid_from_xml(xml, uri=URI) == "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_units_readonly_disks_and_interfaces() -> None:
    xml = """<domain type='xen'><name>x</name><uuid>u</uuid>
      <memory unit='MiB'>512</memory><currentMemory unit='GiB'>0</currentMemory><vcpu>4</vcpu>
      <os><type>linux</type></os><devices>
      <disk type='block' device='cdrom'><source dev='/dev/sr0'/><target dev='hdc'/>
        <readonly/></disk>
      <disk type='file'><source file='/x'/></disk>
      <interface type='network'><mac address='00:16:3e:00:00:01'/>
        <source network='default'/></interface>
      </devices></domain>"""
    cfg = config_from_xml(xml, uri=URI)
    assert (cfg.max_memory_kib, cfg.memory_kib, cfg.vcpus, cfg.os_type) == (524288, 0, 4, "linux")
    assert cfg.disks == (DiskConfig("/dev/sr0", "hdc", readonly=True),)
    assert cfg.nics == (NicConfig("00:16:3e:00:00:01", "default"),)


@pytest.mark.parametrize("xml", [
    "<domain", "<network/>", "<domain><vcpu>1</vcpu></domain>",
    "<domain><memory unit='parsecs'>1</memory></domain>",
    "<domain><memory>lots</memory></domain>",
    "<domain><memory>1</memory><vcpu>many</vcpu></domain>",
])
def test_malformed_xml_is_a_named_protocol_error(xml: str) -> None:
    with pytest.raises(ProtocolError) as info:
        config_from_xml(xml, uri=URI)
    assert info.value.uri == URI


def test_an_image_without_uuid_is_refused() -> None:
    with pytest.raises(ProtocolError, match="no <uuid>"):
        uuid_from_xml("<domain><name>x</name></domain>", uri=URI)
