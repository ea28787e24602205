"""The face over a real host daemon (the xend driver), started as a process."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._events import LOOP
from xvirt.testing.daemon import DaemonProcess

from .helpers import err
from .test_cost import SAMPLES, costs, face_loop, native_loop

GUESTS = 8


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """One daemon for the module, with GUESTS guests."""
    d = make_module_daemon()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost") as admin:
        for i in range(GUESTS):
            r = admin.post("/xvirt/host", data={"op": "create", "name": f"g{i}",
                                                "memory_kib": "262144", "vcpus": "1"})
            assert r.status_code == 200, r.text
    return d


@pytest.fixture
def conn(daemon: DaemonProcess) -> Iterator[face.virConnect]:
    c = face.open(daemon.unix_uri)
    yield c
    c.close()


def test_reads(daemon: DaemonProcess, conn: face.virConnect) -> None:
    with xvirt.open(daemon.unix_uri) as native:
        truth = {s.identity.id: s for s in native.sample()}
    assert conn.listDomainsID() == sorted(truth)
    for domid, s in truth.items():
        d = conn.lookupByID(domid)
        assert (d.name(), d.UUIDString()) == (s.identity.name, s.identity.uuid)
        assert d.info()[1:4] == [s.info.max_memory_kib, s.info.memory_kib, s.info.vcpus]
    assert conn.getType() == "Xen" and conn.getInfo()[2] > 0
    root = ET.fromstring(conn.lookupByName("g1").XMLDesc())
    assert (root.get("type"), root.findtext("name")) == ("xen", "g1")
    assert len(conn.getAllDomainStats()) == len(truth)


def test_errors_are_xends(conn: face.virConnect) -> None:
    assert err(lambda: conn.lookupByID(999)) == (
        42, face.VIR_FROM_XEND, "Domain not found: no domain with matching id 999")
    assert err(lambda: conn.lookupByName("nope"))[:2] == (42, face.VIR_FROM_XEND)
    assert err(lambda: conn.lookupByID(-1))[:2] == (8, 20)


def test_read_only(daemon: DaemonProcess) -> None:
    ro = face.openReadOnly(daemon.unix_uri)
    assert err(ro.lookupByName("g2").destroy) == (
        29, 20, "operation forbidden: read only access prevents virDomainDestroy")
    assert ro.lookupByName("g2").isActive() == 1
    ro.close()


def test_tcp_without_the_token_is_an_auth_failure(daemon: DaemonProcess) -> None:
    c = face.open(daemon.tcp_uri)
    code, domain, _ = err(c.lookupByName("g3").suspend)
    assert (code, domain) == (face.VIR_ERR_AUTH_FAILED, face.VIR_FROM_XEND)
    assert c.lookupByName("g3").state()[0] != face.VIR_DOMAIN_PAUSED
    c.close()


def test_save_and_restore_paths(conn: face.virConnect, tmp_path: Path) -> None:
    image_dir = conn._xvirt.image_dir
    assert image_dir is not None  # the daemon tells its clients
    dom = conn.lookupByName("g4")
    assert err(lambda: dom.save(str(tmp_path / "g4.img")))[0] == face.VIR_ERR_INVALID_ARG
    assert list(tmp_path.iterdir()) == [] and dom.isActive() == 1
    assert dom.save(os.path.join(image_dir, "g4.img")) == 0
    assert err(dom.isActive)[0] == face.VIR_ERR_NO_DOMAIN  # gone while saved, as libvirt
    assert conn.restore(os.path.join(image_dir, "g4.img")) == 0
    assert dom.isActive() == 1


def test_events_through_the_loop(conn: face.virConnect, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOOP, "registered", False)
    face.virEventRegisterDefaultImpl()
    seen: list[tuple[str, int, int]] = []
    conn.domainEventRegisterAny(None, face.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, o: seen.append((d.name(), ev, det)), None)
    dom = conn.lookupByName("g5")
    dom.suspend()
    dom.resume()
    for _ in range(200):
        if len(seen) >= 2:
            break
        face.virEventRunDefaultImpl()
    assert seen == [("g5", face.VIR_DOMAIN_EVENT_SUSPENDED, face.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
                    ("g5", face.VIR_DOMAIN_EVENT_RESUMED, face.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)]


def test_the_2006_loop_costs_the_same(daemon: DaemonProcess) -> None:
    with xvirt.open(daemon.unix_uri) as native:
        native_loop(native)
        expected = costs(native.stats())
    lv = face.open(daemon.unix_uri)
    face_loop(lv)
    assert costs(lv._xvirt.stats()) == expected
    assert expected[0] == 1 and expected[1] >= SAMPLES
    lv.close()


def test_an_unreachable_daemon(daemon: DaemonProcess) -> None:
    c = face.open(daemon.unix_uri + "?timeout=0.5")
    c.listDomainsID()
    daemon.kill()
    try:
        code, domain, _ = err(c.listDomainsID)
        assert (code, domain) == (face.VIR_ERR_SYSTEM_ERROR, face.VIR_FROM_RPC)
    finally:
        daemon.start()
    assert len(c.listDomainsID()) == GUESTS + 1  # back without the script's help (C8)
    c.close()


