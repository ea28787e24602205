"""Scripts written the way libvirt-python users write them (tests/libvirt_scripts),
importing nothing but libvirt, run (a) with real libvirt-python on libvirt's test
driver and (b) unmodified through `xvirt compat` on the embedded host, on the
daemon and on the libvirt driver. The hosts are given the same guests (names,
UUIDs, memory, vCPUs, OS type, disks, interfaces), so the outputs must agree
line for line once Domain-0, which only Xen hosts have, is left out."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import xvirt
from xvirt.compat import libvirt as face
from xvirt.planes import DomainConfig
from xvirt.testing.daemon import DaemonProcess
from xvirt.wire import records, sxp

SCRIPTS = Path(__file__).resolve().parents[1] / "libvirt_scripts"
GUESTS = 3
SIM_NAME = "scripts"


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    config: DomainConfig


@pytest.fixture(scope="module")
def guests() -> list[Guest]:
    """What `sim:///scripts?guests=3` holds in any process (it is seeded)."""
    with xvirt.open(f"sim:///{SIM_NAME}-reference?guests={GUESTS}") as conn:
        found = [Guest(s.identity.name, s.identity.uuid, conn.lookup_by_uuid(
            s.identity.uuid).config()) for s in conn.sample() if s.identity.id != 0]
    host = xvirt.sim.get(f"{SIM_NAME}-reference")
    assert host is not None
    host.close()
    assert len(found) == GUESTS
    return found


def node_file(path: Path, guests: list[Guest]) -> Path:
    """The same guests as a libvirt test-driver host file."""
    node = ET.Element("node")
    for g in guests:
        dom = ET.SubElement(node, "domain", type="test")
        ET.SubElement(dom, "name").text = g.name
        ET.SubElement(dom, "uuid").text = g.uuid
        ET.SubElement(dom, "memory", unit="KiB").text = str(g.config.max_memory_kib)
        ET.SubElement(dom, "currentMemory", unit="KiB").text = str(g.config.memory_kib)
        ET.SubElement(dom, "vcpu").text = str(g.config.vcpus)
        ET.SubElement(ET.SubElement(dom, "os"), "type").text = g.config.os_type
        devices = ET.SubElement(dom, "devices")
        for disk in g.config.disks:
            d = ET.SubElement(devices, "disk", type="file", device="disk")
            ET.SubElement(d, "source", file=disk.source)
            ET.SubElement(d, "target", dev=disk.target)
            if disk.readonly:
                ET.SubElement(d, "readonly")
        for nic in g.config.nics:
            n = ET.SubElement(devices, "interface", type="bridge")
            ET.SubElement(n, "mac", address=nic.mac)
            if nic.bridge:
                ET.SubElement(n, "source", bridge=nic.bridge)
    ET.ElementTree(node).write(path)
    return path


@dataclass
class Config:
    name: str
    uri: str
    image_dir: Path
    compat: bool


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess], guests: list[Guest]) -> DaemonProcess:
    """One daemon for the module (unix socket only), holding ``guests``."""
    d = make_module_daemon(tcp=False)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost", timeout=30) as http:
        for g in guests:
            cfg = records.vm_config(g.name, g.config.memory_kib, g.config.max_memory_kib,
                                    g.config.vcpus, g.uuid, g.config.os_type,
                                    g.config.disks, g.config.nics)
            http.post("/xend/domain", data={"op": "create",
                                            "config": sxp.dumps(cfg)}).raise_for_status()
            http.post(f"/xend/domain/{g.name}", data={"op": "unpause"}).raise_for_status()
    return d


@pytest.fixture
def configs(guests: list[Guest], daemon: DaemonProcess, tmp_path: Path) -> list[Config]:
    node = node_file(tmp_path / "node.xml", guests)
    sim_images = tmp_path / "sim-images"
    lv_images = tmp_path / "libvirt-images"
    for d in (sim_images, lv_images):
        d.mkdir()
    return [
        Config("libvirt-python", f"test://{node}", tmp_path, compat=False),
        Config("sim", f"sim:///{SIM_NAME}?guests={GUESTS}&image_dir={sim_images}", sim_images,
               compat=True),
        Config("daemon", daemon.unix_uri, daemon.state_dir / "images", compat=True),
        Config("libvirt driver", f"test://{node}", lv_images, compat=True),
    ]


def run(config: Config, script: str, *args: str) -> list[str]:
    env = dict(os.environ, XVIRT_LIBVIRT_IMAGE_DIR=str(config.image_dir))
    env.pop("LIBVIRT_DEFAULT_URI", None)
    argv = [sys.executable, str(SCRIPTS / script), config.uri, *args]
    if config.compat:
        argv = [sys.executable, "-m", "xvirt", "compat", "--", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, f"{config.name}: {script} failed:\n{out.stdout}{out.stderr}"
    return [line for line in out.stdout.splitlines() if "Domain-0" not in line]


def agree(configs: list[Config], script: str, *args: str, ordered: bool = True,
          image_dir: bool = False) -> list[str]:
    """Run the script in every configuration (with the image directory as its last
    argument if asked); every output must equal real libvirt-python's."""
    outputs = {c.name: run(c, script, *args, *([str(c.image_dir)] if image_dir else []))
               for c in configs}
    reference = outputs["libvirt-python"]
    for name, lines in outputs.items():
        got, want = (lines, reference) if ordered else (sorted(lines), sorted(reference))
        assert got == want, f"{name} disagrees with real libvirt-python on {script}"
    return reference


def test_dominfo_reads_the_same_xml_everywhere(configs: list[Config],
                                               guests: list[Guest]) -> None:
    out = agree(configs, "dominfo.py", guests[0].name)
    assert f"Name:      {guests[0].name}" in out
    assert any(line.startswith("disk") for line in out)
    assert any(line.startswith("interface") for line in out)
    missing = agree(configs, "dominfo.py", "no-such-guest")
    assert missing == ["Domain no-such-guest is not running (error 42)"]


def test_the_2006_loop_sees_the_same_domains_everywhere(configs: list[Config],
                                                        guests: list[Guest]) -> None:
    out = agree(configs, "loop2006.py", "3", ordered=False)
    assert len([line for line in out if line.startswith("2 ")]) == GUESTS
    assert "lookupByID(4000): code 42" in out
    assert "lookupByUUIDString('not-a-uuid'): code 8" in out


def test_the_event_printer_gets_the_same_events_everywhere(configs: list[Config],
                                                           guests: list[Guest]) -> None:
    out = agree(configs, "event_printer.py", guests[1].name)
    assert out == [f"{guests[1].name} Suspended Paused", f"{guests[1].name} Resumed Unpaused"]


def test_save_all_saves_and_restores_inside_the_image_directory(
        configs: list[Config], guests: list[Guest]) -> None:
    # libvirt lists domains in no particular order: compare the lines as sets.
    out = agree(configs, "save_all.py", ordered=False, image_dir=True)
    assert sorted(f"saved {g.name}" for g in guests) == sorted(
        line for line in out if line.startswith("saved"))
    assert "running after save: 0 guests" in out
    assert all("same-uuid=True active=1" in line for line in out if line.startswith("restored"))
    assert "save outside the directory: refused" in out


def test_the_2006_loop_through_the_face_on_libvirt_costs_what_libvirt_python_does(
        guests: list[Guest], tmp_path: Path) -> None:
    """libvirt calls, counted exactly: the face adds none to the native API, and the
    native API makes the calls libvirt-python's own loop makes (1 + 2 per domain), plus
    one census the first time (where each domain is: nothing known yet)."""
    uri = f"libvirt:test://{node_file(tmp_path / 'node.xml', guests)}"
    samples = 3

    def native_loop(conn: xvirt.Connection) -> None:
        for _ in range(samples):
            for domid in conn.list_domain_ids():
                dom = conn.lookup_by_id(domid)
                dom.info()
                dom.close()

    # test:///<file> gives every connection a private host: both see the same file.
    with xvirt.open(uri) as native:
        native_loop(native)
        expected = native.stats()
    lv = face.openReadOnly(uri)
    try:
        for _ in range(samples):
            for domid in lv.listDomainsID():
                lv.lookupByID(domid).info()
        got = lv._xvirt.stats()
    finally:
        lv.close()
    assert (got.control_requests, got.data_calls) == (
        expected.control_requests, expected.data_calls) == (0, samples * (1 + 2 * GUESTS) + 1)


def test_scripts_agree_on_libvirts_own_default_host(tmp_path: Path) -> None:
    real = Config("libvirt-python", "test:///default", tmp_path, compat=False)
    through = Config("libvirt driver", "test:///default", tmp_path, compat=True)
    for script, args in (("loop2006.py", ("2",)), ("dominfo.py", ("test",)),
                         ("event_printer.py", ("test",))):
        assert sorted(run(real, script, *args)) == sorted(run(through, script, *args)), script
    assert "0 test 6695eb01-f6a4-8304-79aa-97f2502e193f state=1 mem=2097152 maxmem=8388608 " \
        "vcpus=2" in run(through, "loop2006.py", "1")
