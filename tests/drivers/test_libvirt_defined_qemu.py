"""Defined domains on real QEMU (``xvirt.testing.qemu``), both ways of the harness: the
libvirt driver defines a guest from a DomainConfig as the host's capabilities say (domain
type ``kvm`` exactly where QEMU may use /dev/kvm, else ``qemu``, TCG; their emulator),
starts it (it boots: a QEMU process, an ID, a row in the snapshot), finds it inactive
again by name once destroyed, and undefines it. Every answer is checked against what
libvirt-python says on the harness's own connection. The test prints and records whether
the guest ran under KVM or TCG."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.drivers.libvirt_xml import config_from_xml
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import DomainState
from xvirt.planes import Definition, DiskConfig, DomainConfig, NicConfig, Op
from xvirt.testing.qemu import QEMU_SYSTEM, DaemonQemu, EmbeddedQemu, QemuHost

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(QEMU_SYSTEM),
    reason="needs root and qemu-system-x86 (scripts/test installs it)")

UUID = "9e3d0000-0000-4000-8000-00000000de01"


@pytest.fixture(scope="module", params=["embedded", "libvirtd"])
def qemu(request: pytest.FixtureRequest) -> Iterator[QemuHost]:
    """One QEMU host for the module, each way; everything it started is gone after."""
    host: QemuHost = EmbeddedQemu() if request.param == "embedded" else DaemonQemu()
    try:
        yield host
    finally:
        host.close()
    assert host.qemu_pids() == []


def test_a_defined_guest_boots_stops_and_is_undefined(qemu: QemuHost,
                                                      record_property: Any) -> None:
    print(f"{qemu.kind}: {qemu.accel}")
    record_property("accel", f"{qemu.kind}:{qemu.accel}")
    lv = real_libvirt()
    driver = LibvirtDriver(f"libvirt:{qemu.uri}", qemu.uri)
    try:
        disk = qemu.make_disk("q0")
        config = DomainConfig(32768, 32768, 1, "hvm", disks=(DiskConfig(str(disk), "vda"),),
                              nics=(NicConfig("52:54:00:9e:3d:01", None),))
        made = driver.define("q0", config, UUID)
        dom = qemu.conn.lookupByUUIDString(UUID)
        xml = dom.XMLDesc(0)
        root = ET.fromstring(xml)
        # The capabilities' choice is the harness's: kvm exactly where QEMU opens /dev/kvm.
        assert root.get("type") == qemu.domain_type == ("kvm" if qemu.accel == "KVM"
                                                        else "qemu")
        assert root.findtext("devices/emulator") == QEMU_SYSTEM
        assert made == Definition(UUID, "q0", None, True,
                                  DomainConfig(32768, 32768, 1, dom.OSType()))
        assert dom.OSType() == "hvm" and dom.ID() == -1 and dom.isPersistent() == 1
        got = config_from_xml(xml, uri=driver.uri)
        assert (got.disks, got.nics) == (config.disks, config.nics)
        assert driver.domain_config(UUID) == got
        assert qemu.qemu_pids() == []

        driver.start(UUID)  # it boots
        domid = qemu.conn.lookupByUUIDString(UUID).ID()
        assert domid > 0
        (pid,) = qemu.qemu_pids()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"-accel") + 1] == qemu.accel.lower().encode()
        row = next(r for r in driver.snapshot().rows if r.uuid == UUID)
        assert (row.id, row.state, row.max_memory_kib) == (domid, DomainState.RUNNING, 32768)
        found = driver.find(name="q0")
        assert found is not None and (found.id, found.persistent) == (domid, True)

        driver.act(Op.DESTROY, domid, UUID)  # back to inactive: still defined
        assert qemu.qemu_pids() == []
        found = driver.find(name="q0")
        assert found == Definition(UUID, "q0", None, True, DomainConfig(32768, 32768, 1, "hvm"))
        assert qemu.conn.lookupByName("q0").info()[0] == lv.VIR_DOMAIN_SHUTOFF
        assert UUID not in {uuid for _, uuid in driver.census().members}
        assert driver.identify(domid).uuid is None
        assert [d.uuid for d in driver.list_defined()] == [UUID]

        driver.undefine(UUID)
        assert driver.find(uuid=UUID) is None and driver.list_defined() == ()
        with pytest.raises(lv.libvirtError) as info:
            qemu.conn.lookupByUUIDString(UUID)
        assert info.value.get_error_code() == lv.VIR_ERR_NO_DOMAIN
    finally:
        driver.close()
        qemu.clear()
