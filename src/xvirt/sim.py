"""Embedded hosts for demos and tests, as libvirt's test driver offers.

A ``Host`` registers itself by name, so ``xvirt.open("sim:///lab")`` reaches
that very host; ``sim:///default`` is created on first use with demo content.

    host = xvirt.sim.Host("lab", id_policy="random", max_domid=64)
    rec = host.create("web1", memory_kib=524288, vcpus=2,
                      disks=[xvirt.sim.DiskConfig("phy:/dev/vg0/web1", "xvda")],
                      nics=[xvirt.sim.NicConfig("00:16:3e:00:00:01", "xenbr0")])
"""

from __future__ import annotations

import os
import threading
from typing import Any

from xvirt.clock import Clock
from xvirt.errors import InvalidArgumentError
from xvirt.host.demo import populate
from xvirt.host.hypervisor import DOM0_UUID, DomainRecord, HostModel, JournalEntry
from xvirt.model import DOMID_FIRST_RESERVED
from xvirt.planes import DiskConfig, NicConfig

__all__ = ["DOM0_UUID", "DiskConfig", "DomainRecord", "Host", "JournalEntry", "NicConfig", "get",
           "names"]

DEFAULT_SEED = 2006
_registry: dict[str, Host] = {}
_registry_lock = threading.Lock()


class Host(HostModel):
    """An embedded Xen-semantics host, reachable as ``sim:///<name>`` until closed."""

    def __init__(
        self,
        name: str,
        *,
        id_policy: str = "sequential",
        max_domid: int = DOMID_FIRST_RESERVED - 1,
        control_latency_ms: float = 0.0,
        image_dir: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        demo: bool = False,
        **options: Any,
    ) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in "/?#%"):
            raise InvalidArgumentError(f"invalid embedded host name {name!r}")
        super().__init__(
            name,
            id_policy=id_policy,
            max_domid=max_domid,
            control_latency_ms=control_latency_ms,
            image_dir=image_dir,
            clock=clock,
            seed=seed,
            **options,
        )
        with _registry_lock:
            if name in _registry:
                super().close()
                raise InvalidArgumentError(
                    f"an embedded host named {name!r} already exists; close it first"
                )
            _registry[name] = self
        if demo:
            populate(self)

    @property
    def uri(self) -> str:
        return f"sim:///{self.name}"

    def close(self) -> None:
        """Unregister and discard the host (its auto-created image directory too)."""
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]
        super().close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(name: str) -> Host | None:
    """The registered host of that name; ``default`` is created with demo content."""
    with _registry_lock:
        host = _registry.get(name)
    if host is None and name == "default":
        try:
            # Seeded: every process sees the same UUIDs, so one command's output
            # can be fed to the next.
            host = Host("default", demo=True, seed=DEFAULT_SEED)
        except InvalidArgumentError:  # another thread created it first
            with _registry_lock:
                host = _registry.get(name)
    return host


def names() -> list[str]:
    with _registry_lock:
        return sorted(_registry)
