"""On a libvirt: URI the face is the real binding, accelerated: what it does not
accelerate is libvirt's own answer, on the connection under xvirt's, with the face's
objects wherever libvirt hands back a domain."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt.compat.libvirt as face
from xvirt.compat._passthrough import CONNECT_OWN, DOMAIN_OWN
from xvirt.libvirt_api.binding import real_libvirt

from .helpers import raised

TRANSIENT = """<domain type='test'>
  <name>pt-transient</name>
  <uuid>0b0e5b1a-7d4e-4c4a-9f51-5a1f00000001</uuid>
  <memory unit='KiB'>65536</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>"""


@pytest.fixture
def real() -> Any:
    return real_libvirt()


@pytest.fixture
def conn() -> Iterator[face.virConnect]:
    c = face.open("test:///default")
    yield c
    c.close()


@pytest.fixture
def lv(real: Any) -> Iterator[Any]:
    """Real libvirt-python on the same (shared) test host, for side-by-side answers."""
    c = real.open("test:///default")
    yield c
    c.close()


def test_what_is_not_accelerated_is_libvirts_answer(conn: face.virConnect, lv: Any) -> None:
    dom, ref = conn.lookupByName("test"), lv.lookupByName("test")
    assert conn.getCapabilities() == lv.getCapabilities()
    assert dom.XMLDesc(0) == ref.XMLDesc(0)
    assert dom.OSType() == ref.OSType()
    # (number, state, cpu time, cpu): the time is read at each call
    assert [[v[:2] + v[3:] for v in dom.vcpus()[0]], dom.vcpus()[1]] == \
        [[v[:2] + v[3:] for v in ref.vcpus()[0]], ref.vcpus()[1]]
    assert dom.schedulerType() == ref.schedulerType()
    assert dom.schedulerParameters() == ref.schedulerParameters()
    assert dom.state() == ref.state() and dom.isPersistent() == ref.isPersistent()
    assert conn.getURI() == lv.getURI() == "test:///default"
    assert sorted(n.name() for n in conn.listAllNetworks()) == \
        sorted(n.name() for n in lv.listAllNetworks())
    assert conn.networkLookupByName("default").XMLDesc() == \
        lv.networkLookupByName("default").XMLDesc()
    pool = conn.storagePoolLookupByName("default-pool")
    assert isinstance(pool, real.virStoragePool if (real := real_libvirt()) else object)
    assert pool.connect() is conn._xvirt.libvirt_connection()  # the same connection
    assert conn.listDefinedDomains() == lv.listDefinedDomains()


def test_every_method_of_libvirt_exists_on_the_face(conn: face.virConnect,
                                                    real: Any) -> None:
    dom = conn.lookupByName("test")
    for cls, obj, own in ((real.virConnect, conn, CONNECT_OWN),
                          (real.virDomain, dom, DOMAIN_OWN)):
        public = [n for n in vars(cls) if not n.startswith("_")]
        missing = [n for n in public if not callable(getattr(obj, n, None))]
        assert missing == [], cls.__name__
        assert own <= set(public)


def test_domains_libvirt_hands_back_are_the_faces(conn: face.virConnect) -> None:
    dom = conn.createXML(TRANSIENT, 0)
    try:
        assert isinstance(dom, face.virDomain)
        assert dom.connect() is conn
        assert dom.name() == "pt-transient" and dom.isPersistent() == 0
        assert conn.lookupByName("pt-transient").UUIDString() == dom.UUIDString()
        assert dom.info()[0] == face.VIR_DOMAIN_RUNNING
        # the face's domains given to libvirt are libvirt's handles of the same UUID
        stats = conn.domainListGetStats([dom], face.VIR_DOMAIN_STATS_STATE)
        assert [(type(d), d.UUIDString()) for d, _ in stats] == \
            [(type(dom), dom.UUIDString())]
        assert stats[0][1]["state.state"] == face.VIR_DOMAIN_RUNNING
    finally:
        dom.destroy()
    err = raised(lambda: conn.lookupByName("pt-transient"))
    assert err.get_error_code() == face.VIR_ERR_NO_DOMAIN


def test_a_pointer_from_libvirt_becomes_the_faces_domain(conn: face.virConnect) -> None:
    """As libvirt_qemu makes one: ``libvirt.virDomain(conn, _obj=pointer)``."""
    held = conn.lookupByName("test")  # holds libvirt's handle, and so the pointer
    pointer = held._o
    dom = face.virDomain(conn, _obj=pointer)
    assert isinstance(dom, face.virDomain) and dom.name() == "test"
    assert dom.info()[:4] == held.info()[:4]
    with pytest.raises(TypeError):
        face.virDomain(face.open("sim:///default"), _obj=pointer)


def test_libvirts_errors_are_the_faces(conn: face.virConnect) -> None:
    assert face.libvirtError is real_libvirt().libvirtError
    face.virResetLastError()
    err = raised(lambda: conn.networkLookupByName("no-such-net"))
    assert err.get_error_code() == face.VIR_ERR_NO_NETWORK
    assert face.virGetLastError() == err.err
    assert face.virGetLastErrorCode() == face.VIR_ERR_NO_NETWORK


def test_events_of_any_id_reach_the_script_with_the_faces_objects(
        conn: face.virConnect) -> None:
    """METADATA_CHANGE: one the test driver emits (it has no REBOOT event)."""
    got: list[tuple[object, object, object]] = []
    done = threading.Event()

    def on_change(c: Any, d: Any, kind: int, nsuri: Any, opaque: Any) -> None:
        got.append((c, d, opaque))
        done.set()

    dom = conn.lookupByName("test")
    callback = conn.domainEventRegisterAny(dom, face.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                           on_change, "mine")
    try:
        dom.setMetadata(face.VIR_DOMAIN_METADATA_DESCRIPTION, "seen", None, None, 0)
        assert done.wait(30), "no METADATA_CHANGE event"  # a hang detector, not a timing
    finally:
        conn.domainEventDeregisterAny(callback)
    [(c, d, opaque)] = got
    assert c is conn and opaque == "mine"
    assert isinstance(d, face.virDomain) and d.UUIDString() == dom.UUIDString()


def test_module_names_are_libvirts(real: Any) -> None:
    for name in ("virNetwork", "virStream", "virDomainSnapshot", "virEventAddHandle",
                 "VIR_IP_ADDR_TYPE_IPV4", "_T", "_EventCB", "virInitialize"):
        assert getattr(face, name) is getattr(real, name)
    public = {n for n in dir(real) if not n.startswith("__")}
    assert public <= set(dir(face))
    with pytest.raises(AttributeError):
        face.VIR_NO_SUCH_CONSTANT  # noqa: B018


# -- scripts through `xvirt compat` ----------------------------------------------------------

ASYNCIO_SCRIPT = """
    import asyncio, sys
    import libvirt, libvirtaio, libvirt_qemu, libvirt_lxc

    async def main():
        libvirtaio.virEventRegisterAsyncIOImpl()
        conn = libvirt.open(sys.argv[1])
        seen = asyncio.Queue()
        def cb(c, d, event, detail, opaque):
            seen.put_nowait((type(c).__name__, d.name(), event, detail, opaque))
        cid = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                          cb, "x")
        dom = conn.lookupByName("test")
        dom.suspend()
        dom.resume()
        for _ in range(2):
            print(await asyncio.wait_for(seen.get(), 30))
        conn.domainEventDeregisterAny(cid)
        print(libvirt_qemu.__name__, libvirt_lxc.__name__, type(dom).__name__)
        conn.close()

    asyncio.run(main())
"""

DEFAULT_LOOP_SCRIPT = """
    import sys, threading
    import libvirt

    libvirt.virEventRegisterDefaultImpl()
    def run():
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=run, daemon=True).start()
    conn = libvirt.open(sys.argv[1])
    got = threading.Event()
    seen = []
    def cb(c, d, event, detail, opaque):
        seen.append((d.name(), event, detail))
        if len(seen) == 2:
            got.set()
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
    fired = threading.Event()
    timer = libvirt.virEventAddTimeout(0, lambda t, o: fired.set(), None)
    dom = conn.lookupByName(sys.argv[2])
    dom.suspend()
    dom.resume()
    print(got.wait(30), fired.wait(30))
    libvirt.virEventRemoveTimeout(timer)
    print(seen)
"""


def run(script: str, *args: str, compat: bool, tmp_path: Path) -> list[str]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    argv = [sys.executable, str(path), *args]
    if compat:
        argv = [sys.executable, "-m", "xvirt", "compat", "--", *argv]
    env = {k: v for k, v in os.environ.items() if k != "LIBVIRT_DEFAULT_URI"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                         check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


def test_libvirtaio_and_the_companion_modules_work_under_the_face(tmp_path: Path) -> None:
    expected = run(ASYNCIO_SCRIPT, "test:///default", compat=False, tmp_path=tmp_path)
    assert run(ASYNCIO_SCRIPT, "test:///default", compat=True, tmp_path=tmp_path) == expected
    assert expected[0] == "('virConnect', 'test', 3, 0, 'x')"


def test_the_default_loop_runs_libvirts_events_and_the_faces(tmp_path: Path) -> None:
    expected = run(DEFAULT_LOOP_SCRIPT, "test:///default", "test", compat=False,
                   tmp_path=tmp_path)
    assert expected[0] == "True True"
    assert run(DEFAULT_LOOP_SCRIPT, "test:///default", "test", compat=True,
               tmp_path=tmp_path) == expected
    # xvirt's own host: its events reach the script through libvirt's default loop
    on_sim = run(DEFAULT_LOOP_SCRIPT, "sim:///default", "web1", compat=True,
                 tmp_path=tmp_path)
    assert on_sim == ["True True", str([("web1", face.VIR_DOMAIN_EVENT_SUSPENDED, 0),
                                        ("web1", face.VIR_DOMAIN_EVENT_RESUMED, 0)])]
