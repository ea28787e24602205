"""xvirt on a real QEMU host (``xvirt.testing.qemu``), both ways: libvirt's embedded QEMU
driver in this process (KVM where /dev/kvm opens) and a private libvirtd run as ``nobody``
over its socket (TCG). Every answer xvirt gives must agree with what the host says itself:
``virsh -c URI`` for the daemon; the binding in this process for the embedded driver, which
virsh cannot attach to (one process per embedded root). Each test prints and records
(``record_property("accel", ...)``) whether its guests ran under KVM or TCG.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from xvirt.errors import NoDomainError
from xvirt.model import DomainState
from xvirt.testing.conformance import CapabilitySkipped
from xvirt.testing.qemu import (
    KVM_DEVICE,
    DaemonQemu,
    EmbeddedQemu,
    QemuError,
    QemuHost,
    kvm_usable,
    pid_running,
)
from xvirt.testing.qemu_target import check_qemu

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/qemu-system-x86_64"),
    reason="needs root and qemu-system-x86 (scripts/test installs it)")

VIRSH = "/usr/bin/virsh"
_STATES = {1: "running", 2: "idle", 3: "paused", 4: "in shutdown", 5: "shut off",
           6: "crashed", 7: "pmsuspended"}


@pytest.fixture(scope="module", params=["embedded", "libvirtd"])
def qemu(request: pytest.FixtureRequest) -> Iterator[QemuHost]:
    """One QEMU host for the module, each way; everything it started is gone after."""
    kvm_mode = os.stat(KVM_DEVICE).st_mode if os.path.exists(KVM_DEVICE) else None
    host: QemuHost = EmbeddedQemu() if request.param == "embedded" else DaemonQemu()
    daemon_pid = host.daemon.pid if isinstance(host, DaemonQemu) else None
    try:
        yield host
    finally:
        host.close()
    assert host.qemu_pids() == []
    assert daemon_pid is None or not pid_running(daemon_pid)
    if kvm_mode is not None:
        assert os.stat(KVM_DEVICE).st_mode == kvm_mode


@pytest.fixture
def accel(qemu: QemuHost, record_property: Any) -> str:
    """KVM or TCG, said out loud for every test."""
    print(f"{qemu.kind}: {qemu.accel}")
    record_property("accel", f"{qemu.kind}:{qemu.accel}")
    return qemu.accel


@pytest.fixture
def xconn(qemu: QemuHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[xvirt.Connection]:
    """xvirt on the same host, saving where QEMU's user may write."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(qemu.image_dir))
    conn = xvirt.open("libvirt:" + qemu.uri)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def guests(qemu: QemuHost) -> Iterator[list[Any]]:
    """Four guests (two with a disk and a NIC, one persistent), gone after the test."""
    doms = [qemu.boot(f"t{i}", disk=i % 2 == 0, nic=i % 2 == 0, persistent=i == 1)
            for i in range(4)]
    yield doms
    qemu.clear()


class Reference:
    """What the host says itself, in virsh's words."""

    def __init__(self, qemu: QemuHost) -> None:
        self.qemu = qemu

    def _virsh(self, *args: str) -> str:
        out = subprocess.run([VIRSH, "-q", "-c", self.qemu.uri, *args], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def ids(self) -> list[int]:
        if isinstance(self.qemu, DaemonQemu):
            return sorted(int(line.split()[0]) for line in self._virsh("list").splitlines()
                          if line.strip())
        return sorted(self.qemu.conn.listDomainsID())

    def dominfo(self, name: str) -> dict[str, str]:
        if isinstance(self.qemu, DaemonQemu):
            return {k.strip(): v.strip() for k, v in
                    (line.split(":", 1) for line in self._virsh("dominfo", name).splitlines()
                     if ":" in line)}
        dom = self.qemu.conn.lookupByName(name)
        state, max_kib, kib, vcpus, cpu_ns = dom.info()
        return {"Id": str(dom.ID()) if dom.isActive() else "-", "Name": dom.name(),
                "UUID": dom.UUIDString(), "State": _STATES[state], "CPU(s)": str(vcpus),
                "CPU time": f"{cpu_ns / 1e9:.1f}s", "Max memory": f"{max_kib} KiB",
                "Used memory": f"{kib} KiB"}


def agree(xconn: xvirt.Connection, ref: Reference) -> None:
    """Every live domain, by every lookup, as the host says."""
    ids = xconn.list_domain_ids()
    assert ids == ref.ids()
    samples = {s.identity.id: s for s in xconn.sample()}
    assert sorted(samples) == ids
    for domid in ids:
        dom = xconn.lookup_by_id(domid)
        info = dom.info()
        told = ref.dominfo(dom.name)
        assert told["Id"] == str(domid) == str(dom.id)
        assert told["UUID"] == dom.uuid
        assert xconn.lookup_by_name(dom.name).uuid == dom.uuid
        assert xconn.lookup_by_uuid(dom.uuid).id == domid
        assert told["State"] == info.state.value == samples[domid].info.state.value
        assert told["CPU(s)"] == str(info.vcpus) == "1"
        assert told["Max memory"] == f"{info.max_memory_kib} KiB" == "32768 KiB"
        assert told["Used memory"] == f"{info.memory_kib} KiB"
        assert samples[domid].identity.uuid == dom.uuid
        assert 0 < info.cpu_time_ns <= float(told["CPU time"].rstrip("s")) * 1e9 + 1e8


def test_the_harness_says_kvm_or_tcg(qemu: QemuHost, accel: str) -> None:
    """KVM exactly where QEMU's user can open /dev/kvm, and QEMU really runs that way."""
    user = None if isinstance(qemu, EmbeddedQemu) else qemu.account
    assert accel == ("KVM" if kvm_usable(user) else "TCG")
    if isinstance(qemu, DaemonQemu):
        assert accel == "TCG"  # /dev/kvm is root's alone here
    dom = qemu.boot("probe")
    try:
        (pid,) = qemu.qemu_pids()
        assert qemu.qemu_pid("probe") == pid
        with pytest.raises(QemuError):
            qemu.qemu_pid("prob")  # a prefix of a guest's name is not that guest
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"-accel") + 1] == accel.lower().encode()
        owner = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        assert int(owner) == (0 if isinstance(qemu, EmbeddedQemu) else qemu.account.pw_uid)
    finally:
        dom.destroy()


def test_xvirt_agrees_with_the_host(qemu: QemuHost, accel: str, guests: list[Any],
                                    xconn: xvirt.Connection) -> None:
    ref = Reference(qemu)
    agree(xconn, ref)
    assert xconn.defined_names() == []
    assert {xconn.lookup_by_name(d.name()).id for d in guests} == {d.ID() for d in guests}


def test_the_lifecycle_agrees_with_the_host(qemu: QemuHost, accel: str, guests: list[Any],
                                            xconn: xvirt.Connection) -> None:
    """Pause, resume, save, restore to a new ID (the handle follows), destroy."""
    ref = Reference(qemu)
    agree(xconn, ref)
    first, persistent, third = (xconn.lookup_by_name(n) for n in ("t0", "t1", "t2"))

    first.pause()
    assert first.info().state is DomainState.PAUSED
    assert ref.dominfo("t0")["State"] == "paused"
    agree(xconn, ref)
    first.resume()
    assert ref.dominfo("t0")["State"] == "running"

    old_id = third.id
    third.save("t2.save")
    assert old_id not in xconn.list_domain_ids()
    assert old_id not in ref.ids()
    restored = xconn.restore("t2.save")
    assert restored.uuid == third.uuid and restored.name == "t2"
    assert restored.id != old_id and third.id == restored.id  # the old handle follows
    assert ref.dominfo("t2")["Id"] == str(restored.id)
    agree(xconn, ref)

    gone_id = persistent.id
    persistent.destroy()
    assert persistent.info().state is DomainState.SHUTOFF  # it keeps its definition
    assert persistent.id is None
    with pytest.raises(NoDomainError):
        xconn.lookup_by_id(gone_id)
    assert gone_id not in ref.ids()
    assert xconn.defined_names() == ["t1"]  # a persistent guest keeps its definition
    agree(xconn, ref)


def test_the_conformance_kit_holds_on_real_qemu(qemu: QemuHost, accel: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A few short derandomized histories: create, destroy, shutdown, pause, resume,
    save/restore to a new ID, reboot/migrate as stop and start, shutdown and reboot
    requests through handles (accepted, without effect: no OS); and defined guests:
    defined by the host and through ``Connection.define``, started on real QEMU, shut off
    again when stopped, undefined."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(qemu.image_dir))
    started = time.monotonic()
    with pytest.warns(CapabilitySkipped, match="crash.*rename_definition"):
        report = check_qemu(qemu, max_examples=4, stateful_step_count=25, derandomize=True)
    print(f"{qemu.kind} ({accel}): {report} in {time.monotonic() - started:.1f} s")
    assert report.steps >= 80 and report.moves >= 1 and report.requests >= 1, report
    assert report.defines >= 8 and report.client_defines >= 4, report
    assert report.starts >= 4 and report.handle_starts >= 1, report
    assert report.undefines >= 4 and report.handle_undefines >= 1, report
    assert report.kept_defined >= 1, report
    assert report.skipped == {"crash", "rename", "rename_definition", "shutdown_paused",
                              "reboot_host", "restart_daemon"}, report


#: libvirt 9.0 lets a process open qemu:///embed 16 times in all (see xvirt.testing.qemu).
LIBVIRT_EMBED_OPENS = 16


def test_the_host_opens_any_number_of_times(qemu: QemuHost, accel: str) -> None:
    """Three times the opens libvirt allows an embedded root, every way a process opens
    one: each connection works, sees the harness's guest, and closing it leaves the
    harness's own connection working."""
    lv = qemu.lv
    dom = qemu.boot("opens")
    try:
        auth = [[lv.VIR_CRED_AUTHNAME], lambda _creds, _opaque: 0, None]
        ways = [lambda: lv.open(qemu.uri), lambda: lv.openReadOnly(qemu.uri),
                lambda: lv.openAuth(qemu.uri, auth, 0),
                lambda: lv.openAuth(qemu.uri, auth, lv.VIR_CONNECT_RO)]
        for i in range(3 * LIBVIRT_EMBED_OPENS):
            conn = ways[i % len(ways)]()
            assert conn.lookupByName("opens").ID() == dom.ID()
            assert conn.close() >= 0
        for _ in range(LIBVIRT_EMBED_OPENS + 1):
            with xvirt.open("libvirt:" + qemu.uri, readonly=True) as xconn:
                assert xconn.list_domain_ids() == [dom.ID()]
        assert qemu.conn.lookupByName("opens").ID() == dom.ID()
    finally:
        dom.destroy()


def test_a_handle_on_the_embedded_connection_closes_alone(qemu: QemuHost, accel: str) -> None:
    """A handle's close ends its own event callbacks and calls, as libvirt's close does, and
    nothing of the other handles; a read-only handle is refused writes by libvirt."""
    if not isinstance(qemu, EmbeddedQemu):
        pytest.skip("only the embedded driver's opens are handles on one connection")
    lv = qemu.lv
    first, second = lv.open(qemu.uri), lv.open(qemu.uri)
    assert type(first) is not lv.virConnect and type(second) is type(first)
    seen: dict[str, list[int]] = {"first": [], "second": []}
    for name, conn in (("first", first), ("second", second)):
        conn.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                    lambda _c, _d, event, _detail, who: seen[who].append(event),
                                    name)
    assert first.close() == 1
    with pytest.raises(lv.libvirtError):
        first.listAllDomains(0)
    with pytest.raises(lv.libvirtError):
        first.close()
    dom = qemu.boot("alone")
    dom.destroy()
    deadline = time.monotonic() + 10
    while seen["second"].count(lv.VIR_DOMAIN_EVENT_STOPPED) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lv.VIR_DOMAIN_EVENT_STARTED in seen["second"]
    assert lv.VIR_DOMAIN_EVENT_STOPPED in seen["second"]
    assert seen["first"] == []
    assert second.close() == 1
    readonly = lv.openReadOnly(qemu.uri)
    with pytest.raises(lv.libvirtError, match="read only"):
        readonly.createXML(qemu.xml("refused"), 0)
    readonly.close()
    other = lv.open("test:///default")  # any other URI is libvirt's own connection
    assert type(other) is lv.virConnect
    other.close()


def test_close_stops_every_process_by_pid() -> None:
    """A daemon with running guests: close kills the guests and the daemon, and removes
    the directory; nothing is left to find by name either."""
    with DaemonQemu() as host:
        host.boot_many(2, devices_every=2)
        pids = [*host.qemu_pids(), host.daemon.pid]
        assert len(pids) == 3
        state_dir = host.state_dir
    assert not any(pid_running(pid) for pid in pids)
    assert not state_dir.exists()
