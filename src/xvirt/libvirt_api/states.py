"""Xen's domain states as libvirt's ``virDomainState``: the one mapping the face and
the exporter both present.

libvirt's own xend driver mapped Xen's state flags this way: shut down (``s``)
is SHUTOFF and dying (``d``) is SHUTDOWN (on its way out). The libvirt driver
reads the other direction (``xvirt.drivers.libvirt.domain_state``), which is not
this table's inverse: libvirt's NOSTATE reads as Xen's blocked, and SHUTOFF is no
live domain at all.
"""

from __future__ import annotations

from xvirt.libvirt_api.constants import (
    VIR_DOMAIN_BLOCKED,
    VIR_DOMAIN_CRASHED,
    VIR_DOMAIN_PAUSED,
    VIR_DOMAIN_RUNNING,
    VIR_DOMAIN_SHUTDOWN,
    VIR_DOMAIN_SHUTOFF,
)
from xvirt.model import DomainState

__all__ = ["LIBVIRT_STATE_OF"]

#: Xen's state -> libvirt's virDomainState code.
LIBVIRT_STATE_OF: dict[DomainState, int] = {
    DomainState.RUNNING: VIR_DOMAIN_RUNNING,
    DomainState.BLOCKED: VIR_DOMAIN_BLOCKED,
    DomainState.PAUSED: VIR_DOMAIN_PAUSED,
    DomainState.SHUTDOWN: VIR_DOMAIN_SHUTOFF,
    DomainState.CRASHED: VIR_DOMAIN_CRASHED,
    DomainState.DYING: VIR_DOMAIN_SHUTDOWN,
    DomainState.SHUTOFF: VIR_DOMAIN_SHUTOFF,
}
