"""The value types and checks of a domain's settings (issue 18): metadata kept and
replaced as libvirt keeps it, the credit scheduler's ranges as xend checked them, the
guests Xen's ``xen_caps`` names, Affect as libvirt's VIR_DOMAIN_AFFECT_* numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import InvalidArgumentError
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import (
    Affect,
    DomainMetadata,
    GuestType,
    MetadataElement,
    MetadataKind,
    VcpuState,
    check_metadata,
    check_scheduler,
    guest_types,
)

URIS = st.sampled_from(["urn:a", "urn:b", "urn:c"])
Change = tuple[MetadataKind, str | None, str]


def test_the_numbers_are_libvirts() -> None:
    lv = real_libvirt()
    assert [a.value for a in (Affect.CURRENT, Affect.LIVE, Affect.CONFIG)] == [
        lv.VIR_DOMAIN_AFFECT_CURRENT, lv.VIR_DOMAIN_AFFECT_LIVE, lv.VIR_DOMAIN_AFFECT_CONFIG]
    assert [k.value for k in MetadataKind] == [
        lv.VIR_DOMAIN_METADATA_DESCRIPTION, lv.VIR_DOMAIN_METADATA_TITLE,
        lv.VIR_DOMAIN_METADATA_ELEMENT]
    assert [s.value for s in VcpuState] == [lv.VIR_VCPU_OFFLINE, lv.VIR_VCPU_RUNNING,
                                            lv.VIR_VCPU_BLOCKED]


@given(st.lists(st.tuples(st.sampled_from(list(MetadataKind)),
                          st.none() | st.just("") | st.text(min_size=1, max_size=5), URIS),
                max_size=20))
def test_metadata_holds_the_last_value_set_of_each(changes: list[Change]) -> None:
    """A model of what libvirt keeps: one title, one description, one element per URI
    (in the order first set), a value of None or "" removing it."""
    meta = DomainMetadata()
    expected: dict[tuple[MetadataKind, str | None], str] = {}
    order: list[str] = []
    for kind, value, uri in changes:
        key_uri = uri if kind is MetadataKind.ELEMENT else None
        meta = meta.replaced(kind, value, key="k", uri=key_uri)
        if value:
            expected[kind, key_uri] = value
            if key_uri is not None and key_uri not in order:
                order.append(key_uri)
        else:
            expected.pop((kind, key_uri), None)
            if key_uri in order:
                order.remove(key_uri)
    for kind in MetadataKind:
        for uri in ("urn:a", "urn:b", "urn:c") if kind is MetadataKind.ELEMENT else (None,):
            assert meta.get(kind, uri) == expected.get((kind, uri))
    assert [e.uri for e in meta.elements] == order


def test_an_element_needs_its_uri_and_key() -> None:
    with pytest.raises(InvalidArgumentError):
        DomainMetadata().replaced(MetadataKind.ELEMENT, "<a/>", key="k")
    with pytest.raises(InvalidArgumentError):
        DomainMetadata().replaced(MetadataKind.ELEMENT, "<a/>", uri="urn:a")
    assert DomainMetadata().replaced(MetadataKind.ELEMENT, None, uri="urn:a") == DomainMetadata()


@pytest.mark.parametrize(("args", "result"), [
    ((MetadataKind.TITLE, "t"), (MetadataKind.TITLE, "t", None, None)),
    ((MetadataKind.TITLE, ""), (MetadataKind.TITLE, None, None, None)),
    ((MetadataKind.DESCRIPTION, "a\nb"), (MetadataKind.DESCRIPTION, "a\nb", None, None)),
    ((MetadataKind.ELEMENT, "<a/>", "app", "urn:a"), (MetadataKind.ELEMENT, "<a/>", "app",
                                                       "urn:a")),
    ((MetadataKind.ELEMENT, None, "ignored", "urn:a"), (MetadataKind.ELEMENT, None, None,
                                                         "urn:a")),
])
def test_check_metadata_accepts(args: tuple[object, ...], result: object) -> None:
    assert check_metadata(*args) == result


@pytest.mark.parametrize("args", [
    (MetadataKind.TITLE, "a\nb"), (MetadataKind.TITLE, "t", "k"),
    (MetadataKind.DESCRIPTION, "d", None, "urn:a"), (MetadataKind.ELEMENT, "<a/>", "k"),
    (MetadataKind.ELEMENT, "<a/>", None, "urn:a"), (MetadataKind.ELEMENT, "<a/>", "1k", "urn:a"),
    (MetadataKind.ELEMENT, "<a/>", "a:b", "urn:a"), (MetadataKind.TITLE, 5),
    (MetadataKind.TITLE, "x\x00"), (MetadataKind.TITLE, "x" * 70_000), (1, "t"),
])
def test_check_metadata_refuses(args: tuple[object, ...]) -> None:
    with pytest.raises(InvalidArgumentError):
        check_metadata(*args)


@given(weight=st.none() | st.integers(-5, 70_000), cap=st.none() | st.integers(-5, 1000),
       vcpus=st.integers(1, 8))
def test_check_scheduler_is_xends_ranges(weight: int | None, cap: int | None,
                                         vcpus: int) -> None:
    ok = (weight is None or 1 <= weight <= 65535) and (cap is None or 0 <= cap <= 100 * vcpus)
    if ok:
        assert check_scheduler(weight, cap, vcpus) == (weight, cap)
    else:
        with pytest.raises(InvalidArgumentError):
            check_scheduler(weight, cap, vcpus)


def test_guest_types_as_libvirts_xen_driver_reads_xen_caps() -> None:
    assert guest_types("xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p "
                       "hvm-3.0-x86_64") == (
        GuestType("xen", "x86_64", 64), GuestType("xen", "i686", 32, pae=True),
        GuestType("hvm", "i686", 32, pae=True, nonpae=True), GuestType("hvm", "x86_64", 64))
    assert guest_types("xen-3.0-x86_64 xen-3.0-x86_64 bogus hvm-x-x86_64") == (
        GuestType("xen", "x86_64", 64),)
    assert guest_types("") == ()
    assert MetadataElement("u", "k", "<a/>") == MetadataElement("u", "k", "<a/>")
