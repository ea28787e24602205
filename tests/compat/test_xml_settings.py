"""The domain XML the face writes and reads back (issue 18): what ``XMLDesc`` writes,
``createXML``/``defineXML`` read back to the same configuration, vCPU maximum and
metadata (hypothesis); metadata elements as libvirt keeps them; the capabilities XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xvirt.compat.libvirt as face
from xvirt.compat._xml import (
    capabilities_xml,
    domain_xml,
    metadata_element,
    parse_domain_xml,
)
from xvirt.host.hypervisor import XEN_CAPS
from xvirt.model import (
    DomainMetadata,
    DomainSettings,
    HostCapabilities,
    HostInfo,
    Identity,
    MetadataElement,
    guest_types,
)
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

# Text XML 1.0 can carry (no control characters but tab and newline), as a title cannot
# hold a newline and no text keeps a carriage return through an XML parser.
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
_name = _text.filter(lambda t: "/" not in t and t.strip() == t)
_multiline = st.lists(_text, min_size=1, max_size=3).map("\n".join)
_tag = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_element = st.builds(lambda tag, attr, text: f"<{tag} a=\"{attr}\">{text}</{tag}>",
                     _tag, st.from_regex(r"[a-z0-9 ]{0,6}", fullmatch=True),
                     st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True))
_elements = st.lists(st.tuples(st.from_regex(r"urn:x-[a-z]{1,6}", fullmatch=True), _tag,
                               _element), max_size=3, unique_by=lambda e: e[0])
_metadata = st.builds(
    lambda t, d, es: DomainMetadata(t, d, tuple(MetadataElement(u, k, x) for u, k, x in es)),
    st.none() | _text, st.none() | _multiline, _elements)
_disks = st.lists(st.builds(DiskConfig, _text, st.sampled_from(["xvda", "xvdb", "hda", "sdc"]),
                            st.booleans()), max_size=2, unique_by=lambda d: d.target)
_nics = st.lists(st.builds(NicConfig, st.sampled_from(["00:16:3e:00:00:01", "00:16:3e:aa:bb:cc"]),
                           _tag), max_size=2, unique_by=lambda n: n.mac)


@given(name=_name, memory=st.integers(1, 2**30), extra=st.integers(0, 2**30),
       vcpus=st.integers(1, 16), more=st.integers(0, 16), os_type=st.sampled_from(
           ["linux", "hvm"]), disks=_disks, nics=_nics, meta=_metadata, running=st.booleans())
def test_what_xml_desc_writes_reads_back_the_same(
        name: str, memory: int, extra: int, vcpus: int, more: int, os_type: str,
        disks: list[DiskConfig], nics: list[NicConfig], meta: DomainMetadata,
        running: bool) -> None:
    config = DomainConfig(memory, memory + extra, vcpus, os_type, tuple(disks), tuple(nics))
    settings = DomainSettings(vcpus, vcpus + more, meta)
    text = domain_xml("xen", Identity(UUID, name, 3 if running else -1), config,
                      inactive=False, settings=settings)
    parsed = parse_domain_xml(text, "xen")
    assert (parsed.name, parsed.uuid, parsed.config) == (name, UUID, config)
    assert (parsed.max_vcpus, parsed.metadata) == (vcpus + more, meta)
    # and once more: the round trip is a fixed point
    again = domain_xml("xen", Identity(UUID, name, 3), parsed.config, inactive=False,
                       settings=DomainSettings(vcpus, vcpus + more, parsed.metadata))
    assert parse_domain_xml(again, "xen") == parsed


def test_metadata_in_the_domain_xml_as_libvirt_writes_it() -> None:
    meta = DomainMetadata("T", "D", (MetadataElement("urn:a", "app",
                                                      "<role x=\"1\"><sub/></role>"),))
    text = domain_xml("xen", Identity(UUID, "g", 1), DomainConfig(1024, 1024, 1),
                      inactive=False, settings=DomainSettings(1, 2, meta))
    root = ET.fromstring(text)
    assert [c.tag for c in root][:6] == ["name", "uuid", "title", "description", "metadata",
                                         "memory"]  # libvirt's order
    assert "<app:role xmlns:app=\"urn:a\" x=\"1\">" in text  # the key is the prefix
    vcpu = root.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("2", "1")
    bare = ET.fromstring(domain_xml("xen", Identity(UUID, "g", 1), DomainConfig(1024, 1024, 1),
                                    inactive=False,
                                    settings=DomainSettings(1, 1, DomainMetadata())))
    assert [c.tag for c in bare].count("metadata") == 0
    assert bare.find("vcpu").get("current") is None  # type: ignore[union-attr]


def test_elements_without_a_namespace_and_repeats_are_not_kept() -> None:
    """libvirt's API reaches an element by its namespace only: the first of each."""
    parsed = parse_domain_xml(
        "<domain type='xen'><name>g</name><memory>1024</memory><os><type>linux</type></os>"
        "<metadata><plain/><a:x xmlns:a='urn:a'/><b:y xmlns:b='urn:a'/>"
        "<c:z xmlns:c='urn:c'>\n   <inner/>\n</c:z></metadata></domain>", "xen")
    assert parsed.metadata.elements == (MetadataElement("urn:a", "a", "<x />"),
                                        MetadataElement("urn:c", "c", "<z>\n  <inner />\n</z>"))


def test_a_metadata_element_as_libvirt_keeps_it() -> None:
    assert metadata_element("<fav colour='blue'>1</fav>") == '<fav colour="blue">1</fav>'
    assert metadata_element("<a>\n   <b>t</b>\n <c/></a>") == "<a>\n  <b>t</b>\n  <c />\n</a>"
    assert metadata_element(metadata_element("<a><b/></a>")) == metadata_element("<a><b/></a>")
    for bad in ("<foo", "<foo/><bar/>", "", "text"):
        with pytest.raises(face.libvirtError) as info:
            metadata_element(bad)
        assert info.value.get_error_code() == face.VIR_ERR_XML_DETAIL
        assert info.value.get_error_message().startswith("(metadata_xml):1: ")


def test_the_capabilities_xml() -> None:
    host = HostInfo("h", "Xen", "4.17", "x86_64", 8, 2400, 1, 1, 4, 2, 8 << 20, 4 << 20, "b")
    root = ET.fromstring(capabilities_xml(HostCapabilities(host, "credit", guest_types(XEN_CAPS))))
    assert root.findtext("host/cpu/arch") == "x86_64"
    topology = root.find("host/cpu/topology")
    assert topology is not None and (topology.get("sockets"), topology.get("cores"),
                                     topology.get("threads")) == ("1", "4", "2")
    cpus = root.findall("host/topology/cells/cell/cpus/cpu")
    assert [c.get("id") for c in cpus] == [str(i) for i in range(8)]
    assert [c.get("siblings") for c in cpus[:4]] == ["0-1", "0-1", "2-3", "2-3"]
    guests = [(g.findtext("os_type"), g.find("arch").get("name"),  # type: ignore[union-attr]
               g.findtext("arch/wordsize"), g.findtext("arch/machine"),
               g.find("arch/loader") is not None, g.find("features/pae") is not None)
              for g in root.findall("guest")]
    assert guests == [("xen", "x86_64", "64", "xenpv", False, False),
                      ("xen", "i686", "32", "xenpv", False, True),
                      ("hvm", "i686", "32", "xenfv", True, True),
                      ("hvm", "x86_64", "64", "xenfv", True, False)]
    assert {d.get("type") for d in root.iter("domain")} == {"xen"}
