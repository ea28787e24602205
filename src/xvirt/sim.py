"""Embedded hosts for demos and tests, as libvirt's test driver offers.

A ``Host`` registers itself by name, so ``xvirt.open("sim:///lab")`` reaches
that very host; ``sim:///default`` is created on first use with demo content.

    host = xvirt.sim.Host("lab", id_policy="random", max_domid=64, cpus=8,
                          memory_kib=64 * 1024 * 1024)
    rec = host.create("web1", memory_kib=524288, vcpus=2,
                      disks=[xvirt.sim.DiskConfig("phy:/dev/vg0/web1", "xvda")],
                      nics=[xvirt.sim.NicConfig("00:16:3e:00:00:01", "xenbr0")])

``Host`` is a facade: it holds a host model and shows only what DESIGN.md
promises (the truth, the lifecycle, host-wide events) and the fault hooks tests
use. The model's planes (data snapshots, act-if-identity, resolution, state for
a daemon's store) are for drivers, reached through ``_model_of``, not here.

Every public name of this module is in ``__all__`` (tests/test_public_api.py checks
it): what it imports only to work is bound under a private alias.
"""

import os as _os
import threading as _threading
from collections.abc import Iterable as _Iterable
from contextlib import AbstractContextManager as _AbstractContextManager
from typing import Any as _Any

from xvirt.clock import Clock as _Clock
from xvirt.errors import InvalidArgumentError as _InvalidArgumentError
from xvirt.host.demo import MEMORY_KIB as _DEMO_MEMORY_KIB
from xvirt.host.demo import populate as _populate
from xvirt.host.hypervisor import DOM0_UUID, DomainRecord, JournalEntry
from xvirt.host.hypervisor import HostModel as _HostModel
from xvirt.model import DOMID_FIRST_RESERVED as _DOMID_FIRST_RESERVED
from xvirt.planes import Definition, DiskConfig, NicConfig

__all__ = ["DEFAULT_SEED", "DOM0_UUID", "Definition", "DiskConfig", "DomainRecord", "Host",
           "JournalEntry", "NicConfig", "get", "names"]

#: The seed of the hosts xvirt makes itself (``sim:///default``, ``sim:///NAME?guests=N``):
#: every process sees the same UUIDs, so one command's output can be fed to the next.
DEFAULT_SEED = 2006
_registry: dict[str, "Host"] = {}
_registry_lock = _threading.Lock()


class Host:
    """An embedded Xen-semantics host, reachable as ``sim:///<name>`` until closed.

    Every call is atomic (one lock in the model). Domain IDs change on reboot,
    migration and restore; UUIDs and names do not: tests compare what a
    connection reports with ``domains()``, the truth.

    The machine has ``cpus`` CPUs and ``memory_kib`` of memory, and its figures stay
    possible: the domains share the CPUs when they want more than there are, and a
    domain that would not fit in the memory left is refused (OperationFailedError,
    saying what it needs and what is free). Without ``memory_kib`` a host has room for
    a 256 MiB guest in each of its ``max_domid`` IDs (at least 64 GiB); a ``demo`` host
    is the demo's 64 GiB machine."""

    __slots__ = ("_model",)

    def __init__(
        self,
        name: str,
        *,
        id_policy: str = "sequential",
        max_domid: int = _DOMID_FIRST_RESERVED - 1,
        control_latency_ms: float = 0.0,
        image_dir: str | _os.PathLike[str] | None = None,
        clock: _Clock | None = None,
        seed: int | None = None,
        demo: bool = False,
        cpus: int = 8,
        memory_kib: int | None = None,
        **options: _Any,
    ) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in "/?#%"):
            raise _InvalidArgumentError(f"invalid embedded host name {name!r}")
        model = _HostModel(
            name,
            id_policy=id_policy,
            max_domid=max_domid,
            control_latency_ms=control_latency_ms,
            image_dir=image_dir,
            clock=clock,
            seed=seed,
            cpus=cpus,
            memory_kib=_DEMO_MEMORY_KIB if memory_kib is None and demo else memory_kib,
            **options,
        )
        self._model = model
        with _registry_lock:
            if name in _registry:
                model.close()
                raise _InvalidArgumentError(
                    f"an embedded host named {name!r} already exists; close it first"
                )
            _registry[name] = self
        if demo:
            _populate(model)

    def __repr__(self) -> str:
        return f"<xvirt.sim.Host {self.uri}{' (closed)' if self.closed else ''}>"

    # -- identity and settings ------------------------------------------------------

    @property
    def name(self) -> str:
        """The registered name: ``sim:///<name>`` reaches this host."""
        return self._model.name

    @property
    def uri(self) -> str:
        """The URI that opens a connection to this very host."""
        return f"sim:///{self.name}"

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran: every later call raises HostUnreachableError."""
        return self._model.closed

    @property
    def boot_id(self) -> str:
        """This boot's identity; ``reboot_host()`` changes it (connections forget IDs)."""
        return self._model.boot_id

    @property
    def generation(self) -> int:
        """The number of the newest host event: every answer a driver gets carries it."""
        return self._model.generation

    @property
    def id_policy(self) -> str:
        """``sequential`` (Xen's rover) or ``random`` (reuse is common)."""
        return self._model.id_policy

    @property
    def max_domid(self) -> int:
        """The highest guest ID; a small one makes tests see IDs reused."""
        return self._model.max_domid

    @property
    def control_latency_ms(self) -> float:
        """What each control-plane request costs a driver (the 2006 figures)."""
        return self._model.control_latency_ms

    @property
    def image_dir(self) -> str:
        """Where ``save`` writes images given by name: for ``sim:///default`` the user's
        ``$XDG_STATE_HOME/xvirt/sim-default-images`` (``~/.local/state/...``), so that
        another process can restore them; for any other host given none, a private
        temporary directory."""
        return self._model.image_dir

    # -- the truth ------------------------------------------------------------------

    def domains(self) -> list[DomainRecord]:
        """Every live domain, Domain-0 first, in ID order: what tests compare with."""
        return self._model.domains()

    def domain(self, domid: int) -> DomainRecord:
        """The live domain holding ``domid``; NoDomainError if none does."""
        return self._model.domain(domid)

    def journal(self) -> list[JournalEntry]:
        """Every action taken or refused, oldest first: how tests check C4."""
        return self._model.journal()

    def images(self) -> list[str]:
        """The names of the saved images in ``image_dir``."""
        return self._model.images()

    # -- lifecycle ------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        memory_kib: int = 524288,
        max_memory_kib: int | None = None,
        vcpus: int = 1,
        uuid: str | None = None,
        load: float = 0.25,
        os_type: str = "linux",
        cpu_time_ns: int = 0,
        disks: _Iterable[DiskConfig] | None = None,
        nics: _Iterable[NicConfig] | None = None,
        paused: bool = False,
    ) -> DomainRecord:
        """Start a guest (running, or ``paused``) and return it. ``load`` is the share of
        each vCPU it burns; ``disks``/``nics`` None gives one root disk and one vif."""
        return self._model.create(
            name, memory_kib=memory_kib, max_memory_kib=max_memory_kib, vcpus=vcpus,
            uuid=uuid, load=load, os_type=os_type, cpu_time_ns=cpu_time_ns, disks=disks,
            nics=nics, paused=paused)

    def destroy(self, domid: int) -> None:
        """Remove the domain at once (``xm destroy``)."""
        self._model.destroy(domid)

    def shutdown(self, domid: int) -> None:
        """Shut the guest down; it is gone afterwards, its ID free for reuse."""
        self._model.shutdown(domid)

    def pause(self, domid: int) -> None:
        """Pause a running guest: it keeps its ID and stops burning CPU."""
        self._model.pause(domid)

    def resume(self, domid: int) -> None:
        """Resume a paused guest."""
        self._model.resume(domid)

    def reboot(self, domid: int) -> DomainRecord:
        """Reboot: same UUID and name, a new ID (Xen destroys and rebuilds the domain)."""
        return self._model.reboot(domid)

    def migrate(self, domid: int) -> DomainRecord:
        """Local migration: same UUID and name, a new ID."""
        return self._model.migrate(domid)

    def save(self, domid: int, image: str) -> None:
        """Save the guest to ``image`` (a name in ``image_dir``, or a path): it is gone."""
        self._model.save(domid, image)

    def restore(self, image: str) -> DomainRecord:
        """Bring a saved guest back: same UUID and name, a new ID. The image stays (a
        second restore is refused while the guest runs)."""
        return self._model.restore(image)

    def rename(self, domid: int, new_name: str) -> None:
        """Rename a guest; connections see it through the control plane and as an event."""
        self._model.rename(domid, new_name)

    # -- managed (defined) domains --------------------------------------------------

    def define(
        self,
        name: str,
        *,
        memory_kib: int = 524288,
        max_memory_kib: int | None = None,
        vcpus: int = 1,
        uuid: str | None = None,
        os_type: str = "linux",
        load: float = 0.25,
        disks: _Iterable[DiskConfig] | None = None,
        nics: _Iterable[NicConfig] | None = None,
    ) -> Definition:
        """Define a managed domain without starting it (``xm new``): a name and UUID, no
        ID. The UUID of a defined domain replaces its definition; that of a running
        guest makes it persistent (same name). A name another domain holds is refused."""
        return self._model.define(
            name, memory_kib=memory_kib, max_memory_kib=max_memory_kib, vcpus=vcpus,
            uuid=uuid, os_type=os_type, load=load, disks=disks, nics=nics)

    def start(self, uuid: str) -> DomainRecord:
        """Boot a defined, shut-off domain (``xm start``): it gets a new ID and stays
        defined, so shutdown, destroy or save leave it shut off, not gone."""
        return self._model.start(uuid)

    def undefine(self, uuid: str) -> None:
        """Remove a shut-off domain's definition (``xm delete``); a running one is refused."""
        self._model.undefine(uuid)

    def defined_domains(self) -> list[Definition]:
        """The defined domains that are shut off (no ID), by name: what ``xvirt list
        --all`` adds to the running ones."""
        return list(self._model.defined()[2])

    # -- host-wide events -----------------------------------------------------------

    def restart_daemon(self) -> None:
        """The management daemon restarts; domains, IDs and boot identity stay."""
        self._model.restart_daemon()

    def reboot_host(self) -> None:
        """A new boot identity: every guest is gone and IDs start again. Images stay."""
        self._model.reboot_host()

    # -- test hooks: what guests and time do on their own ---------------------------

    def crash(self, domid: int) -> None:
        """Fault hook: the guest crashes and is kept (on_crash=preserve) until destroyed."""
        self._model.crash(domid)

    def stall(self, domid: int) -> None:
        """Fault hook: the domain wedges; its figures never come until ``unstall``
        (snapshots list it as unanswered, info by ID times out)."""
        self._model.stall(domid)

    def unstall(self, domid: int) -> None:
        """Fault hook: a wedged domain answers again."""
        self._model.unstall(domid)

    def set_blocked(self, domid: int, blocked: bool = True) -> None:
        """Mark a running guest idle (blocked) or busy again: its CPU time slows; not
        a lifecycle event, so tests see state change without an ID change."""
        self._model.set_blocked(domid, blocked)

    def batch(self) -> _AbstractContextManager[float]:
        """Several changes as one request: readers see all or none of them."""
        return self._model.batch()

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Unregister and discard the host (its auto-created image directory too).
        Idempotent; closing a stale host never unregisters a newer one of its name."""
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]
        self._model.close()

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _model_of(host: Host) -> _HostModel:
    """The host model behind ``host``, for the embedded driver (xvirt.uri) and for
    tests of model internals. Private on purpose: the planes it serves are the
    driver interface, not the embedded host's public surface."""
    return host._model


def get(name: str) -> Host | None:
    """The registered host of that name; ``default`` is created with demo content."""
    with _registry_lock:
        host = _registry.get(name)
    if host is None and name == "default":
        try:
            host = Host("default", demo=True, seed=DEFAULT_SEED)
        except _InvalidArgumentError:  # another thread created it first
            with _registry_lock:
                host = _registry.get(name)
    return host


def names() -> list[str]:
    """The names of the registered hosts, sorted."""
    with _registry_lock:
        return sorted(_registry)
