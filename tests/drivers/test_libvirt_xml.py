"""Domain XML <-> DomainConfig, including what libvirt's test driver really sends, and
the guest kind chosen from a host's capabilities (libvirt's test driver as captured,
QEMU and Xen as libvirt's capabilities format writes them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.realdata import REALDATA
from xvirt.drivers.libvirt_xml import (
    GuestKind,
    check_definition,
    choose_guest,
    config_from_xml,
    domain_xml,
    guest_kinds,
    uuid_from_xml,
)
from xvirt.errors import InvalidArgumentError, ProtocolError
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

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


# -- capabilities -> guest kind ----------------------------------------------------------------

QEMU_CAPS = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>hvm</os_type><arch name='i686'><wordsize>32</wordsize>
    <emulator>/usr/bin/qemu-system-i386</emulator><machine>pc</machine>
    <domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>
    <emulator>/usr/bin/qemu-system-x86_64</emulator><machine>pc</machine>
    <domain type='qemu'/>%s</arch></guest>
</capabilities>"""
XEN_CAPS = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>xen</os_type><arch name='x86_64'><wordsize>64</wordsize>
    <emulator>/usr/lib/xen/bin/qemu-system-i386</emulator><machine>xenpv</machine>
    <domain type='xen'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>
    <emulator>/usr/lib/xen/bin/qemu-system-i386</emulator><machine>xenfv</machine>
    <domain type='xen'/></arch></guest>
</capabilities>"""


def test_the_test_drivers_captured_capabilities() -> None:
    if REALDATA is None:
        pytest.skip("realdata is not beside this checkout")
    caps = (REALDATA / "libvirt" / "virsh-test-default" / "capabilities.stdout").read_text()
    kinds, arch = guest_kinds(caps, uri=URI)
    assert arch == "i686" and {k.os_type for k in kinds} == {"hvm", "xen"}
    test_hv = "/usr/bin/test-hv"
    assert choose_guest(caps, "hvm", uri=URI) == GuestKind("hvm", "i686", "test", test_hv)
    assert choose_guest(caps, "linux", uri=URI) == GuestKind("xen", "i686", "test", test_hv)
    with pytest.raises(InvalidArgumentError, match="'exe'") as info:
        choose_guest(caps, "exe", uri=URI, name="g")
    assert (info.value.uri, info.value.op, info.value.name) == (URI, "define", "g")


def test_qemu_gets_kvm_where_offered_on_the_hosts_arch_and_pv_runs_as_hvm() -> None:
    emulator = "/usr/bin/qemu-system-x86_64"
    with_kvm = QEMU_CAPS % "<domain type='kvm'><emulator>/usr/bin/kvm</emulator></domain>"
    assert choose_guest(with_kvm, "hvm", uri=URI) == GuestKind(
        "hvm", "x86_64", "kvm", "/usr/bin/kvm")  # a domain type's own emulator first
    assert choose_guest(QEMU_CAPS % "", "linux", uri=URI) == GuestKind(
        "hvm", "x86_64", "qemu", emulator)


def test_xen_runs_pv_guests_as_xen_and_hvm_as_hvm() -> None:
    assert choose_guest(XEN_CAPS, "linux", uri=URI).os_type == "xen"
    assert choose_guest(XEN_CAPS, "hvm", uri=URI).os_type == "hvm"
    assert {choose_guest(XEN_CAPS, t, uri=URI).domain_type for t in ("linux", "hvm")} == {"xen"}


@pytest.mark.parametrize("caps", ["<capabilities", "<domain/>"])
def test_malformed_capabilities_are_a_protocol_error(caps: str) -> None:
    with pytest.raises(ProtocolError):
        guest_kinds(caps, uri=URI)


# -- DomainConfig -> domain XML -> DomainConfig --------------------------------------------------

# What XML carries as given: no control character but tab and newline (and no carriage
# return in an element's text), no lone surrogate, no U+FFFE/U+FFFF.
_XML_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters=[
    *map(chr, range(0, 9)), "\x0b", "\x0c", *map(chr, range(0x0d, 0x20)), "\ufffe", "\uffff"])
_TEXT = st.text(_XML_CHARS, min_size=1, max_size=10)
_GUEST = GuestKind("hvm", "x86_64", "kvm", "/usr/bin/qemu-system-x86_64")


@st.composite
def configs(draw: st.DrawFn) -> DomainConfig:
    max_kib = draw(st.integers(1, 2**40))
    return DomainConfig(
        memory_kib=draw(st.integers(1, max_kib)), max_memory_kib=max_kib,
        vcpus=draw(st.integers(1, 4096)), os_type=_GUEST.os_type,
        disks=tuple(draw(st.lists(st.builds(DiskConfig, _TEXT, _TEXT, st.booleans()),
                                  max_size=3))),
        nics=tuple(draw(st.lists(st.builds(NicConfig, _TEXT | st.just(""),
                                           st.none() | _TEXT), max_size=3))))


@given(name=_TEXT, config=configs(), uuid=st.none() | st.uuids().map(str))
def test_domain_xml_carries_the_configuration_as_given(
        name: str, config: DomainConfig, uuid: str | None) -> None:
    """Names, paths, bridges with '<', '&', quotes, tabs, newlines: escaped by the XML
    writer, read back as given (libvirt's parser is an XML parser too)."""
    xml = domain_xml(name, config, uuid, _GUEST, uri=URI)
    root = ET.fromstring(xml)
    assert root.findtext("name") == name and root.findtext("uuid") == uuid
    assert root.get("type") == "kvm" and root.findtext("devices/emulator") == _GUEST.emulator
    assert config_from_xml(xml, uri=URI) == config


@pytest.mark.parametrize(("name", "config", "uuid", "what"), [
    ("", DomainConfig(1, 1, 1), None, "needs a name"),
    ("a\rb", DomainConfig(1, 1, 1), None, "XML cannot carry"),
    ("a\x00b", DomainConfig(1, 1, 1), None, "XML cannot carry"),
    ("a\udc80", DomainConfig(1, 1, 1), None, "XML cannot carry"),
    ("g", DomainConfig(1, 1, 1), "{not-a-uuid}", "invalid UUID"),
    ("g", DomainConfig(2, 1, 1), None, "above max_memory_kib"),
    ("g", DomainConfig(0, 1, 1), None, "memory_kib"),
    ("g", DomainConfig(1, 1, 0), None, "vcpus"),
    ("g", DomainConfig(1, 1, 1, os_type="h\x01"), None, "OS type"),
    ("g", DomainConfig(1, 1, 1, disks=(DiskConfig("", "vda"),)), None, "source is empty"),
    ("g", DomainConfig(1, 1, 1, disks=(DiskConfig("/x", "vd\x1b"),)), None, "target"),
    ("g", DomainConfig(1, 1, 1, nics=(NicConfig("", ""),)), None, "bridge's name"),
    ("g", DomainConfig(1, 1, 1, nics=(NicConfig("\x7f\x00", None),)), None, "MAC"),
])
def test_what_libvirt_would_refuse_or_change_is_refused_first(
        name: str, config: DomainConfig, uuid: str | None, what: str) -> None:
    with pytest.raises(InvalidArgumentError, match=what) as info:
        check_definition(name, config, uuid, uri=URI)
    assert (info.value.uri, info.value.op) == (URI, "define")
