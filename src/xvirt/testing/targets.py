"""What the conformance kit needs from a driver under test.

A *target* is a host the kit can act on directly (the outside world: other
tools, the guests themselves, an administrator) plus a way to open xvirt
connections to it through the driver under test. The sim target is the
reference; the daemon and libvirt drivers bring their own.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import xvirt
from xvirt.clock import ManualClock
from xvirt.connection import Connection
from xvirt.host.hypervisor import DomainRecord, JournalEntry
from xvirt.planes import Definition

__all__ = ["HostControl", "SimTarget", "StoreFaults", "Target"]


class HostControl(Protocol):
    """The host's truth and the actions of everyone who is not the client.

    ``define``, ``start``, ``undefine`` and ``defined_domains`` are needed only by a
    target whose ``capabilities`` name ``defined`` (a host that keeps domains defined
    and shut off: xend's managed domains, libvirt's inactive ones)."""

    @property
    def boot_id(self) -> str: ...

    @property
    def max_domid(self) -> int: ...

    def domains(self) -> list[DomainRecord]: ...

    def create(self, name: str, *, memory_kib: int = ..., vcpus: int = ...) -> DomainRecord: ...

    def destroy(self, domid: int) -> None: ...

    def shutdown(self, domid: int) -> None: ...

    def pause(self, domid: int) -> None: ...

    def resume(self, domid: int) -> None: ...

    def crash(self, domid: int) -> None: ...

    def reboot(self, domid: int) -> DomainRecord: ...

    def migrate(self, domid: int) -> DomainRecord: ...

    def save(self, domid: int, image: str) -> None: ...

    def restore(self, image: str) -> DomainRecord: ...

    def rename(self, domid: int, new_name: str) -> None: ...

    def reboot_host(self) -> None: ...

    def restart_daemon(self) -> None: ...

    def journal(self) -> list[JournalEntry]: ...

    def define(self, name: str, *, memory_kib: int = ..., vcpus: int = ...,
               uuid: str | None = None) -> Definition:
        """Define a domain without starting it (``uuid``: replace that definition, or
        make that running domain persistent); OperationFailedError for a name another
        domain holds, running or defined."""
        ...

    def start(self, uuid: str) -> DomainRecord:
        """Boot the defined, shut-off domain ``uuid``: NoDomainError when none is
        defined, OperationFailedError when it runs already or no ID is free."""
        ...

    def undefine(self, uuid: str) -> None:
        """Remove a shut-off domain's definition: OperationFailedError while it runs,
        NoDomainError when none is defined."""
        ...

    def defined_domains(self) -> list[Definition]:
        """The truth of the domains defined and shut off (``id`` None)."""
        ...


class StoreFaults(Protocol):
    """A host whose store can be made to refuse (the daemon's): fault injection."""

    def refuse_commits(self, count: int, after: int = 0) -> None: ...


class Target(Protocol):
    """A host under test and the driver that reaches it."""

    @property
    def host(self) -> HostControl: ...

    def connect(self, *, readonly: bool = False) -> Connection: ...

    def close(self) -> None: ...


_serial = itertools.count(1)


class SimTarget:
    """An embedded host with a small, randomly allocated ID space: reuse is frequent."""

    def __init__(self, *, id_policy: str = "random", max_domid: int = 8, seed: int = 0) -> None:
        # A fixed seed makes the host a function of the history, so hypothesis
        # can replay and shrink; the histories themselves supply the variety.
        self.clock = ManualClock()
        self.host = xvirt.sim.Host(
            f"conformance-{next(_serial)}",
            id_policy=id_policy,
            max_domid=max_domid,
            seed=seed,
            clock=self.clock,
        )

    def connect(self, *, readonly: bool = False) -> Connection:
        return xvirt.open(self.host.uri, readonly=readonly)

    def close(self) -> None:
        self.host.close()
