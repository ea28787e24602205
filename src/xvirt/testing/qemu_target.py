"""The conformance kit's target on real QEMU guests (``xvirt.testing.qemu``).

It is ``LibvirtTarget``'s host with QEMU's guests: the outside world acts through a libvirt
connection of its own, ``create`` makes a transient guest and ``define`` a persistent one
(every third guest with a disk image and a NIC), ``start`` boots a defined guest on real QEMU,
``undefine`` removes an inactive one, a persistent guest that stops stays defined, shut off,
and a reboot or migration is a stop and start or a save and restore. What differs, and why:

- a guest has no OS, so nothing acts on a shutdown or reboot *request*: libvirt accepts one
  (a shutdown only for a running guest) and the guest runs on as it was. ``check_qemu`` runs
  the kit with that one rule changed, in a subclass (the kit's own source stays as it is:
  its derandomized histories, and the coverage floors other suites assert, are drawn from
  it). The outside world's shutdown is the request (refused for a paused guest, so no
  ``shutdown_paused``) followed by a power-off, as a host's shutdown script would do;
- a few short histories on real QEMU, each with a random few rules switched on, could miss
  defined guests altogether: the subclass begins every history with a define, a start and
  an undefine (``defined_guests``) and offers the kit's rule for them twice;
- QEMU's libvirt accepts a pause of a paused guest (and does nothing): the outside world's
  pause refuses it first, as Xen does (``LibvirtHost.pause``);
- QEMU cannot crash on demand, libvirt renames only inactive domains (and refuses a new
  name in a definition of a UUID it knows), and the QEMU host is not rebooted or restarted
  here (its guests would outlive libvirtd): none of ``crash``, ``rename``,
  ``rename_definition``, ``reboot_host``, ``restart_daemon``; the kit names them skipped.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import uuid as _uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule, run_state_machine_as_test

import xvirt
from xvirt.connection import Connection
from xvirt.drivers.libvirt import default_image_dir
from xvirt.errors import OperationFailedError
from xvirt.model import DomainState
from xvirt.planes import DomainConfig
from xvirt.testing.conformance import (
    _RUNNABLE,
    ConformanceReport,
    ContractViolation,
    conformance_machine,
    say_skipped,
)
from xvirt.testing.libvirt_target import LibvirtHost, _refusals
from xvirt.testing.qemu import GUEST_MEMORY_MIB, QemuHost, guest_xml

__all__ = ["QemuKitHost", "QemuReport", "QemuTarget", "check_qemu"]

_REQUESTS = ("shutdown", "reboot")
BYSTANDER = "many"  # bystanders' names: many000, many001...; none of the kit's own
_BYSTANDER_UUIDS = itertools.count(1)  # their UUIDs: none of the kit's or the harness's


class QemuKitHost(LibvirtHost):
    """HostControl over the QEMU host's libvirt, with guests of ``xvirt.testing.qemu``."""

    def __init__(self, qemu: QemuHost, image_dir: str, bystanders: int = 0) -> None:
        self._qemu = qemu
        self._guests = itertools.count(1)
        #: Guests every history begins with beside its own (the long run's many): booted
        #: once, kept running between histories, booted again only if a history ended them.
        self.bystanders = tuple(f"{BYSTANDER}{i:03d}" for i in range(bystanders))
        super().__init__(qemu.uri, image_dir, conn=qemu.conn)

    def _pristine(self) -> None:
        """No guest but the bystanders, each running: a QEMU host has no default one."""
        self._qemu.clear(keep=self.bystanders)
        for i, name in enumerate(self.bystanders):
            try:
                dom = self._conn.lookupByName(name)
            except self._lv.libvirtError:  # a history ended it: another takes its name
                devices = i % 4 == 0
                uuid = str(_uuid.UUID(int=(0xB157 << 112) | next(_BYSTANDER_UUIDS)))
                self._conn.createXML(guest_xml(
                    name, uuid, domain_type=self._qemu.domain_type,
                    disk=self._qemu.make_disk(name) if devices else None, nic=devices), 0)
                continue
            if dom.info()[0] != self._lv.VIR_DOMAIN_RUNNING:
                dom.resume()

    def _new_uuid(self) -> str:
        return str(_uuid.UUID(int=(0x9E3D << 112) | next(self._uuids)))

    def _xml(self, name: str, uuid: str, *, memory_kib: int, vcpus: int) -> str:
        """A guest of the harness's size (the kit's memory figures are a test driver's),
        every third one with a disk image and a NIC."""
        k = next(self._guests)
        devices = k % 3 == 0
        disk = self._qemu.make_disk(f"{name}-{k}") if devices else None
        return guest_xml(name, uuid, domain_type=self._qemu.domain_type, disk=disk,
                         nic=devices)

    @_refusals
    def shutdown(self, domid: int) -> None:
        dom = self._conn.lookupByID(domid)
        dom.shutdown()  # the request: refused for a paused guest, ignored by SeaBIOS
        dom.destroy()


class QemuTarget:
    """Real QEMU guests, reached through xvirt's libvirt driver. Saves go to
    ``default_image_dir()``, which the test points at ``qemu.image_dir`` (QEMU's user must
    be able to write there)."""

    capabilities = frozenset({"defined"})
    #: What a client defines: the harness's guest size (the type and emulator the
    #: driver takes from the host's capabilities).
    client_config = DomainConfig(GUEST_MEMORY_MIB * 1024, GUEST_MEMORY_MIB * 1024, 1, "hvm")

    def __init__(self, qemu: QemuHost, bystanders: int = 0,
                 report: QemuReport | None = None) -> None:
        self.uri = f"libvirt:{qemu.uri}"
        self.host = QemuKitHost(qemu, default_image_dir(), bystanders)
        if report is not None:
            report.most_at_start = max(report.most_at_start, len(self.host.domains()))

    def connect(self, *, readonly: bool = False) -> Connection:
        return xvirt.open(self.uri, readonly=readonly)

    def close(self) -> None:
        self.host._pristine()
        self.host.close()
        gc.collect()


@dataclass
class QemuReport(ConformanceReport):
    """The kit's report, and how many shutdown or reboot requests went through handles."""

    requests: int = 0
    paused_pauses: int = 0  # pauses through handles of guests already paused
    most_at_start: int = 0  # the most guests a history began with (bystanders: --guests)


def check_qemu(qemu: QemuHost, *, max_examples: int = 4, stateful_step_count: int = 15,
               bystanders: int = 0, readers: int = 0, report: QemuReport | None = None,
               **hypothesis_settings: Any) -> QemuReport:
    """``check_driver`` on ``QemuTarget(qemu, bystanders)``, except that a shutdown or
    reboot through a handle is what it is on a guest with no OS: a request, accepted (a
    shutdown only while the guest runs) and without effect on any domain; and every
    history begins with guests defined, started and undefined (``defined_guests``), and
    defines, starts and undefines are drawn twice as often (the kit's rule for them is
    offered twice). ``bystanders``: guests every history begins with, running, which it
    may act on as on its own; ``readers``: client threads judged beside each history."""
    tally = report if report is not None else QemuReport()
    kit: Any = conformance_machine(lambda: QemuTarget(qemu, bystanders, tally), tally,
                                   readers=readers)

    class QemuConformance(kit):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            # libvirt starts a QEMU guest paused and resumes it once QEMU is up, pauses
            # a guest it saves, and shows one asked to shut down as shutting down ("in
            # shutdown": Xen's dying) until it stops: readers may see it so meanwhile.
            self.timeline.passing_states = frozenset({DomainState.PAUSED,
                                                      DomainState.DYING})

        def checked(self) -> None:
            """The host against the model, and recorded for the readers, within a step
            of several actions (what a reader sees in between is then judged against
            it). The truth is read afresh: the invariants' hand-over is for between
            steps."""
            self._handoff = None
            self.host_matches_model()
            self._handoff = None

        @initialize(data=st.data(), by_client=st.booleans())
        def defined_guests(self, data: st.DataObject, by_client: bool) -> None:
            """Every history begins with the kit's own define, start and undefine on real
            QEMU (a few short histories, each with a random few rules switched on, could
            miss them): a guest defined and started, which the history may stop (shut
            off, kept) and start again; one defined and undefined; one defined and left
            shut off. Each by the host or by the client (``Connection.define``, a held
            handle), in turn."""
            self.define(data, "new", by_client)
            self.checked()
            self.manage(data, "start", by_client, False)
            self.checked()
            self.define(data, "new", not by_client)
            self.checked()
            self.manage(data, "undefine", not by_client, False)
            self.checked()
            self.define(data, "new", by_client)

        @precondition(lambda self: self.defines)
        @rule(data=st.data(), op=st.sampled_from(["define", "start", "start", "undefine"]),
              by_client=st.booleans())
        def managed_on_qemu(self, data: st.DataObject, op: str, by_client: bool) -> None:
            """The kit's ``managed`` rule offered once more, without its refusals: a few
            short histories on real QEMU then start, stop and undefine defined guests."""
            self.managed(data, op, by_client, False)

        @precondition(lambda self: bool(self.handles))
        @rule(data=st.data(), op=st.sampled_from(["pause", "resume", "destroy", "save"]))
        def act_through_handle(self, data: st.DataObject, op: str) -> None:
            if op != "pause":
                kit.act_through_handle(self, data, op)
                return
            # A pause through a handle, as the kit's, except of a paused guest: QEMU's
            # libvirt accepts that and does nothing (Xen refuses it). Either answer is
            # right, and no domain may change.
            dom = data.draw(st.sampled_from(self.handles), label="handle")
            ref = self.alive.get(dom.uuid)
            if ref is None or ref.state is not DomainState.PAUSED:
                ok = ref is not None and ref.state in _RUNNABLE
                self.on_one_domain(dom, dom.pause, ok, "handle pause")
                if ok:
                    ref.state = DomainState.PAUSED
                return
            before = self.world()
            with contextlib.suppress(OperationFailedError):
                dom.pause()
            tally.paused_pauses += 1
            if self.world() != before:
                raise ContractViolation(f"C4 violated: a pause of paused {dom.uuid} "
                                        f"changed domains: {before} -> {self.world()}")

        @precondition(lambda self: bool(self.handles))
        @rule(data=st.data(), op=st.sampled_from(_REQUESTS))
        def request_through_handle(self, data: st.DataObject, op: str) -> None:
            dom = data.draw(st.sampled_from(self.handles), label="handle")
            ref = self.alive.get(dom.uuid)
            ok = ref is not None and (op == "reboot" or ref.state is DomainState.RUNNING)
            before = self.world()
            self.expect(ok, getattr(dom, op), f"handle {op} request")
            tally.requests += 1
            after = self.world()
            if after != before:
                raise ContractViolation(f"C4 violated: a {op} request through handle "
                                        f"{dom.uuid} changed domains: {before} -> {after}")

    run_state_machine_as_test(
        QemuConformance,
        settings=settings(max_examples=max_examples, stateful_step_count=stateful_step_count,
                          deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much],
                          **hypothesis_settings))
    say_skipped(tally, f"QemuTarget({qemu.kind}, {qemu.accel})")
    return tally
