"""The embedded driver: a host model in this process, reached through the
same interface as a remote one, with every call counted and the control
plane's latency injectable (``sim:///lab?control_latency_ms=50``) so the
2006 figures can be reproduced without a network.

Save and restore take a name in the host's image directory or any absolute path
this process may write or read: the host acts for this process alone (a daemon,
which acts for others, keeps to its directory). Restore leaves the image."""

from __future__ import annotations

from collections.abc import Sequence

from xvirt.drivers.base import Driver, PlaneCounters
from xvirt.errors import NoDomainError, OperationFailedError
from xvirt.host.hypervisor import HostModel
from xvirt.model import (
    Affect,
    DomainMetadata,
    DomainSettings,
    HostCapabilities,
    HostInfo,
    MetadataKind,
    NodeCpuStats,
    NodeMemoryStats,
    SchedulerParams,
    VcpuInfo,
)
from xvirt.planes import (
    Census,
    Definition,
    DomainConfig,
    EventBatch,
    IdAnswer,
    IdOwner,
    Op,
    Resolution,
    TableSnapshot,
)
from xvirt.stats import DomainStats, StatGroup

__all__ = ["DOMAIN_TIMEOUT_MS", "EmbeddedDriver"]

#: How long a data-plane call waits for one domain's figures before giving up.
DOMAIN_TIMEOUT_MS = 2000.0


class EmbeddedDriver(Driver):
    def __init__(
        self,
        host: HostModel,
        *,
        uri: str,
        readonly: bool = False,
        control_latency_ms: float | None = None,
        domain_timeout_ms: float | None = None,
    ) -> None:
        self.host = host
        self.uri = uri
        self.readonly = readonly
        self.counters = PlaneCounters()
        # The libvirt face turns a path in it into a plain name; any other absolute
        # path reaches the host as it is, which takes it: it acts for this process.
        self.image_dir = host.image_dir or None
        self._latency_s = (
            host.control_latency_ms if control_latency_ms is None else control_latency_ms
        ) / 1000.0
        self._domain_timeout_s = (
            DOMAIN_TIMEOUT_MS if domain_timeout_ms is None else domain_timeout_ms) / 1000.0

    def _control(self) -> None:
        self.counters.control()
        if self._latency_s > 0:
            self.host.clock.sleep(self._latency_s)

    # data plane

    def _wait_in_vain(self, timeout_s: float | None = None) -> None:
        """A wedged domain's answer never comes: the call waits its per-domain
        timeout, or ``timeout_s`` if shorter (on the host's clock: tests do not really
        wait), then gives up."""
        self.host.clock.sleep(self._domain_timeout_s if timeout_s is None
                              else min(self._domain_timeout_s, timeout_s))

    def snapshot(self) -> TableSnapshot:
        self.counters.data()
        snap = self.host.data_snapshot()
        if snap.unanswered:  # the waits overlap: one timeout for all of them
            self._wait_in_vain()
        return snap

    def info_by_id(self, domid: int) -> IdAnswer:
        self.counters.data()
        try:
            return self.host.data_info(domid)
        except OperationFailedError:
            self._wait_in_vain()
            raise

    def info_by_uuid(self, uuid: str, domid_hint: int) -> IdAnswer:
        self.counters.data()  # info_by_id's body: this is the hot path, one frame less
        try:
            return self.host.data_info(domid_hint)
        except OperationFailedError:
            self._wait_in_vain()
            raise

    def census(self) -> Census:
        self.counters.data()
        return self.host.data_census()

    def domain_stats(self, groups: frozenset[StatGroup], uuids: Sequence[str] | None = None,
                     *, timeout_s: float | None = None) -> list[DomainStats]:
        """One data call answered by the host model; a wedged domain's groups are
        ``missing`` once the call has waited its per-domain timeout (or ``timeout_s``,
        if shorter) for them."""
        self.counters.data()
        found = self.host.domain_stats(groups, uuids)
        if groups and any(s.missing for s in found):  # the waits overlap, as snapshot's
            self._wait_in_vain(timeout_s)
        return found

    def identify(self, domid: int) -> IdOwner:
        self.counters.data()
        return self.host.data_owner(domid)

    # control plane

    def resolve(self, uuids: Sequence[str] = (), ids: Sequence[int] = ()) -> Resolution:
        self._control()
        return self.host.resolve(uuids, ids)

    def resolve_names(self, names: Sequence[str]) -> Resolution:
        self._control()
        return self.host.resolve_names(names)

    def list_all(self) -> Resolution:
        self._control()
        return self.host.list_all()

    def act(self, op: Op, domid: int, expected_uuid: str, arg: str | None = None) -> None:
        self._control()
        self.host.act(op, domid, expected_uuid, arg)

    def restore(self, image: str) -> Resolution:
        self._control()
        rec = self.host.restore(image, origin="client")
        answer = self.host.resolve([rec.uuid])
        if not answer.domains:  # destroyed by someone else between the two steps
            raise NoDomainError("restored domain vanished at once", uuid=rec.uuid, op="restore")
        return answer

    def host_info(self) -> HostInfo:
        self._control()
        return self.host.node_info()

    # defined (managed) domains: control-plane requests, by UUID where they act

    def find(self, *, uuid: str | None = None, name: str | None = None) -> Definition | None:
        self._control()
        return self.host.find(uuid=uuid, name=name)[2]

    def list_defined(self) -> tuple[Definition, ...]:
        self._control()
        return self.host.defined()[2]

    def define(self, name: str, config: DomainConfig, uuid: str | None = None) -> Definition:
        """The configuration is taken as it is: its devices (none, if it names none)
        and no defaults, as xend's ``op=new`` takes the ``(vm ...)`` it is sent."""
        self._control()
        return self.host.define(
            name, memory_kib=config.memory_kib, max_memory_kib=config.max_memory_kib,
            vcpus=config.vcpus, uuid=uuid, os_type=config.os_type, disks=config.disks,
            nics=config.nics, origin="client")

    def define_domain(self, name: str, config: DomainConfig, *, uuid: str | None = None,
                      max_vcpus: int | None = None,
                      metadata: DomainMetadata | None = None) -> Definition:
        self._control()
        return self.host.define(
            name, memory_kib=config.memory_kib, max_memory_kib=config.max_memory_kib,
            vcpus=config.vcpus, uuid=uuid, os_type=config.os_type, disks=config.disks,
            nics=config.nics, max_vcpus=max_vcpus, metadata=metadata, origin="client")

    def start(self, uuid: str) -> None:
        self._control()
        self.host.start(uuid, origin="client")

    def undefine(self, uuid: str) -> None:
        self._control()
        self.host.undefine(uuid, origin="client")

    # what a Xen host has beyond identity and lifecycle: one control request each

    def create(self, name: str, config: DomainConfig, *, uuid: str | None = None,
               max_vcpus: int | None = None, metadata: DomainMetadata | None = None,
               paused: bool = False) -> Resolution:
        """The configuration as it is, its devices (none, if it names none) and no
        defaults, as ``define`` takes it."""
        self._control()
        rec = self.host.create(
            name, memory_kib=config.memory_kib, max_memory_kib=config.max_memory_kib,
            vcpus=config.vcpus, uuid=uuid, os_type=config.os_type, disks=config.disks,
            nics=config.nics, paused=paused, max_vcpus=max_vcpus, metadata=metadata,
            origin="client")
        answer = self.host.resolve([rec.uuid])
        if not answer.domains:  # destroyed by someone else between the two steps
            raise NoDomainError("created domain vanished at once", uuid=rec.uuid, op="create")
        return answer

    def capabilities(self) -> HostCapabilities:
        self._control()
        return self.host.capabilities()

    def node_memory_stats(self, cell: int | None = None) -> NodeMemoryStats:
        self._control()
        return self.host.node_memory_stats(cell)

    def node_cpu_stats(self, cpu: int | None = None) -> NodeCpuStats:
        self._control()
        return self.host.node_cpu_stats(cpu)

    def domain_settings(self, uuid: str, affect: Affect = Affect.CURRENT) -> DomainSettings:
        self._control()
        return self.host.settings(uuid, affect)

    def set_vcpus(self, uuid: str, count: int, *, affect: Affect = Affect.CURRENT,
                  maximum: bool = False) -> None:
        self._control()
        self.host.set_vcpus(uuid, count, affect=affect, maximum=maximum, origin="client")

    def vcpu_info(self, uuid: str) -> tuple[VcpuInfo, ...]:
        self._control()
        return self.host.vcpu_info(uuid)

    def scheduler(self, uuid: str) -> SchedulerParams:
        self._control()
        return self.host.scheduler(uuid)

    def set_scheduler(self, uuid: str, *, weight: int | None = None,
                      cap: int | None = None) -> SchedulerParams:
        self._control()
        return self.host.set_scheduler(uuid, weight=weight, cap=cap, origin="client")

    def set_metadata(self, uuid: str, kind: MetadataKind, value: str | None, *,
                     key: str | None = None, uri: str | None = None,
                     affect: Affect = Affect.CURRENT) -> None:
        self._control()
        self.host.set_metadata(uuid, kind, value, key=key, uri=uri, affect=affect,
                               origin="client")

    # events

    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        self.counters.event()
        return self.host.events_since(after, timeout)

    def close(self, *, wait: bool = True) -> None:
        """Nothing to release: the host belongs to whoever created it."""
