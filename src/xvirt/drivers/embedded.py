"""The embedded driver: a host model in this process, reached through the
same interface as a remote one, with every call counted and the control
plane's latency injectable (``sim:///lab?control_latency_ms=50``) so the
2006 figures can be reproduced without a network."""

from __future__ import annotations

from collections.abc import Sequence

from xvirt.drivers.base import Driver, PlaneCounters
from xvirt.errors import NoDomainError, OperationFailedError
from xvirt.host.hypervisor import HostModel
from xvirt.model import HostInfo
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
        self.image_dir = host.image_dir or None  # save(path) in the libvirt face needs it
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

    def _wait_in_vain(self) -> None:
        """A wedged domain's answer never comes: the call waits its per-domain
        timeout (on the host's clock: tests do not really wait), then gives up."""
        self.host.clock.sleep(self._domain_timeout_s)

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

    def start(self, uuid: str) -> None:
        self._control()
        self.host.start(uuid, origin="client")

    def undefine(self, uuid: str) -> None:
        self._control()
        self.host.undefine(uuid, origin="client")

    # events

    def events_since(self, after: int, timeout: float = 0.0) -> EventBatch:
        self.counters.event()
        return self.host.events_since(after, timeout)

    def close(self) -> None:
        """Nothing to release: the host belongs to whoever created it."""
