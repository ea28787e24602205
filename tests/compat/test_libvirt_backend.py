"""The face over xvirt's libvirt driver on libvirt's test driver answers as
libvirt-python itself does (the captures in realdata/libvirt)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

import xvirt.compat.libvirt as face

from .helpers import CAPTURE, err

URI = "test:///default"


@pytest.fixture(scope="module")
def conn() -> Iterator[face.virConnect]:
    c = face.open(URI)
    yield c
    c.close()


def test_it_is_the_libvirt_driver(conn: face.virConnect) -> None:
    assert (conn.getURI(), conn._xvirt.uri) == (URI, "libvirt:" + URI)


def test_connection_answers(conn: face.virConnect) -> None:
    assert conn.getLibVersion() == CAPTURE["conn.getLibVersion()"]
    assert face.getVersion() == CAPTURE["libvirt.getVersion()"]
    assert conn.getVersion() == CAPTURE["conn.getVersion()"]
    assert conn.getType() == CAPTURE["conn.getType()"]
    assert conn.listDomainsID() == CAPTURE["conn.listDomainsID()"]
    assert conn.numOfDomains() == CAPTURE["conn.numOfDomains()"]
    assert conn.listDefinedDomains() == CAPTURE["conn.listDefinedDomains()"]
    assert conn.getInfo() == CAPTURE["conn.getInfo()"]


def test_domain_answers(conn: face.virConnect) -> None:
    dom = conn.lookupByName("test")
    assert dom.name() == CAPTURE["dom.name()"]
    assert dom.ID() == CAPTURE["dom.ID()"]
    assert dom.UUIDString() == CAPTURE["dom.UUIDString()"]
    assert dom.UUID().hex() == CAPTURE["dom.UUID()_hex"]
    assert dom.isActive() == CAPTURE["dom.isActive()"]
    assert dom.isPersistent() == CAPTURE["dom.isPersistent()"]
    # libvirt's own answer (the test driver says 'linux' whatever the XML holds).
    assert dom.OSType() == CAPTURE["dom.OSType()"] == "linux"
    assert dom.XMLDesc(0) == dom._real_dom().XMLDesc(0) and ">hvm</type>" in dom.XMLDesc(0)
    assert dom.maxMemory() == CAPTURE["dom.maxMemory()"]
    assert dom.maxVcpus() == CAPTURE["dom.maxVcpus()"]
    assert dom.state() == CAPTURE["dom.state()"]
    info = dom.info()
    assert info[:4] == CAPTURE["dom.info()"][:4] and isinstance(info[4], int)
    assert conn.lookupByID(1).name() == CAPTURE["lookupByID(1).name()"]
    root = ET.fromstring(dom.XMLDesc())
    assert (root.get("type"), root.get("id"), root.findtext("name")) == ("test", "1", "test")


def test_listing_and_stats(conn: face.virConnect) -> None:
    assert [[d.name(), d.ID(), d.UUIDString()] for d in conn.listAllDomains(0)] == CAPTURE[
        "conn.listAllDomains(0)"]
    assert [d.name() for d in conn.listAllDomains(face.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == (
        CAPTURE["conn.listAllDomains(ACTIVE)"])
    assert conn.listAllDomains(face.VIR_CONNECT_LIST_DOMAINS_INACTIVE) == []
    stats = conn.getAllDomainStats(face.VIR_DOMAIN_STATS_STATE)
    expected = CAPTURE["conn.getAllDomainStats()"]
    assert [(d.name(), r) for d, r in stats] == [(e["domain"], e["record"]) for e in expected]


CALLS: dict[str, Any] = {
    "conn.lookupByID(999)": lambda c: c.lookupByID(999),
    "conn.lookupByName('nope')": lambda c: c.lookupByName("nope"),
    "conn.lookupByID(-1)": lambda c: c.lookupByID(-1),
    "conn.lookupByUUIDString('not-a-uuid')": lambda c: c.lookupByUUIDString("not-a-uuid"),
    "conn.lookupByUUIDString('00000000-0000-0000-0000-000000000000')":
        lambda c: c.lookupByUUIDString("00000000-0000-0000-0000-000000000000"),
}


@pytest.mark.parametrize("case", [e for e in CAPTURE["errors"] if e["call"] in CALLS],
                         ids=lambda e: e["call"])
def test_errors_as_captured(conn: face.virConnect, case: dict[str, Any]) -> None:
    assert err(lambda: CALLS[case["call"]](conn)) == (
        case["get_error_code"], case["get_error_domain"], case["get_error_message"])


def test_read_only_as_real_libvirt() -> None:
    ro = face.openReadOnly(URI)
    assert err(ro.lookupByID(1).suspend) == (
        29, 20, "operation forbidden: read only access prevents virDomainSuspend")
    assert ro.lookupByID(1).state()[0] == face.VIR_DOMAIN_RUNNING
    ro.close()
