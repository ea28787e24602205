"""Demo content: a handful of guests with live CPU time, two managed domains defined and
shut off, and batch guests that come and go.

The churn runs on the host's own clock through a ticker (no thread): each
request first catches the schedule up, so the demo behaves the same under a
manual clock in tests and the real clock in tools.
"""

from __future__ import annotations

from collections import deque

from xvirt.errors import OperationFailedError
from xvirt.host.devices import default_disks
from xvirt.host.hypervisor import HostModel
from xvirt.planes import DiskConfig, NicConfig

__all__ = ["MEMORY_KIB", "BatchChurn", "populate"]

#: The demo machine's memory: its domains use 10.5 GiB of it (Domain-0's 2 included),
#: about 14 with the defined ones started and two batch guests running.
MEMORY_KIB = 64 * 1024 * 1024

_GUESTS = (
    # name, memory MiB, vCPUs, load (fraction of each vCPU), idle
    ("web1", 1024, 2, 0.35, False),
    ("web2", 1024, 2, 0.30, False),
    ("db1", 4096, 4, 0.55, False),
    ("cache1", 512, 1, 0.0, True),
    ("build1", 2048, 2, 0.80, False),
)
# Beyond each guest's root disk and one vif on xenbr0 (the defaults), so that a
# configuration view has something to show: xend's other disk kinds and a
# second bridge.
_EXTRA_DISKS = {
    "db1": (DiskConfig("phy:/dev/vg0/db1-data", "xvdb"),),
    "build1": (DiskConfig("file:/var/lib/xen/images/toolchain.iso", "xvdc", readonly=True),),
}
_BRIDGES = {"db1": ("xenbr0", "xenbr1"), "cache1": ("xenbr1",)}
#: Managed domains defined and shut off (``xm new`` without ``xm start``), so that
#: ``xvirt list --all`` has something to show: name, memory MiB, vCPUs, load once
#: started, and a fixed UUID (the same in every process, drawing nothing from the seed).
_DEFINED = (
    ("mail1", 1024, 1, 0.10, "3c9e5b1a-7d24-4f6e-9a81-52d0c7e4b613"),
    ("staging1", 2048, 2, 0.40, "a17f02d8-64b3-4c1e-8e5a-0b9d3f26c7e4"),
)


#: The demo pretends its guests have been up this long, so CPU times look lived-in.
UPTIME_S = 3 * 3600.0


def populate(host: HostModel, *, churn: bool = True) -> None:
    """Fill an empty host with the demo guests, the defined shut-off domains and, by
    default, batch churn."""
    for serial, (name, mib, vcpus, load, idle) in enumerate(_GUESTS, 1):
        burnt = int(UPTIME_S * 1e9 * vcpus * (0.01 if idle else load))
        disks = default_disks(name) + _EXTRA_DISKS.get(name, ())
        nics = tuple(NicConfig(f"00:16:3e:00:{serial:02x}:{i:02x}", bridge)
                     for i, bridge in enumerate(_BRIDGES.get(name, ("xenbr0",))))
        rec = host.create(name, memory_kib=mib * 1024, vcpus=vcpus, load=load,
                          cpu_time_ns=burnt, disks=disks, nics=nics)
        if idle:
            host.set_blocked(rec.id)
    for serial, (name, mib, vcpus, load, uuid) in enumerate(_DEFINED, len(_GUESTS) + 1):
        host.define(name, memory_kib=mib * 1024, vcpus=vcpus, load=load, uuid=uuid,
                    nics=(NicConfig(f"00:16:3e:00:{serial:02x}:00", "xenbr0"),))
    if churn:
        host.add_ticker(BatchChurn(host.clock.now()))


class BatchChurn:
    """A short-lived batch guest starts every ``period`` seconds and lives ``lifetime``."""

    def __init__(self, start: float, *, period: float = 15.0, lifetime: float = 25.0) -> None:
        self.period = period
        self.lifetime = lifetime
        self._next_start = start + period
        self._serial = 0
        self._running: deque[tuple[float, str]] = deque()  # (end time, uuid)

    @classmethod
    def resume(cls, host: HostModel) -> BatchChurn:
        """Churn that goes on after a daemon restart: the batch guests still running
        are adopted and end one lifetime from now (their start times were not kept)."""
        now = host.clock.now()
        churn = cls(now)
        batch = sorted(
            (int(r.name[len("batch-"):]), r.uuid) for r in host.domains()
            if r.name.startswith("batch-") and r.name[len("batch-"):].isdigit()
        )
        for serial, uuid in batch:
            churn._serial = max(churn._serial, serial)
            churn._running.append((now + churn.lifetime, uuid))
        return churn

    def __call__(self, host: HostModel, now: float) -> None:
        # Interleave starts and ends in time order so IDs are allocated as they would be.
        while True:
            next_end = self._running[0][0] if self._running else float("inf")
            if min(next_end, self._next_start) > now:
                return
            if next_end <= self._next_start:
                _, uuid = self._running.popleft()
                for rec in host.domains():
                    if rec.uuid == uuid:
                        host.destroy(rec.id)
                        break
            else:
                start, self._next_start = self._next_start, self._next_start + self.period
                self._serial += 1
                if start + self.lifetime <= now:
                    continue  # nobody was looking while it lived; skip it
                try:
                    rec = host.create(f"batch-{self._serial}", memory_kib=256 * 1024, vcpus=1,
                                      load=0.9)
                except OperationFailedError:
                    continue  # no free ID, or the name is taken: this job never runs
                self._running.append((start + self.lifetime, rec.uuid))
