"""Why a domain is in its state: ``virDomainGetState``'s reason, on xvirt's own hosts.

libvirt's drivers record the reason when they change a domain's state (booted,
unpaused, restored, destroyed, saved...), and say UNKNOWN where they did not see
the change happen (libxl, reconnecting to running guests after libvirtd restarts,
says RUNNING_UNKNOWN or PAUSED_UNKNOWN; an inactive domain it has not seen stop is
SHUTOFF_UNKNOWN). An xvirt host keeps no reasons: it keeps a numbered log of
lifecycle events. The face therefore gives libvirt's reason for the last change it
saw happen to the domain, and UNKNOWN where it saw none:

* a connection starts following the host's events (``Connection.events()``) just
  before its first action (start, suspend, destroy, define...), so every change
  from then on, by this script or anyone else, is seen, in order;
* a reason is given only when it agrees with the state the host reports now (a
  domain last seen booted that is shut off now was stopped unseen: UNKNOWN);
* Xen's own state flags say some reasons outright: a domain in Xen's ``s`` state
  (shut down, not yet destroyed) is SHUTOFF_SHUTDOWN whatever was seen.

What it cannot know: changes before the connection's first action (a monitoring
script that never acts sees only UNKNOWN reasons, as libvirt after a restart), and
changes lost when more than the host's event capacity (4096) happen between two
questions (the event stream then goes on from the newest, and a reason may be stale).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from xvirt.compat import _constants as c
from xvirt.connection import Connection, EventStream
from xvirt.model import DomainEvent, DomainState, EventKind

__all__ = ["Reasons", "reason_for"]

# For each xvirt state, the reason each last-seen change gives; any other: UNKNOWN (0).
_BY_STATE: dict[DomainState, dict[EventKind, int]] = {
    DomainState.RUNNING: {
        EventKind.CREATED: c.VIR_DOMAIN_RUNNING_BOOTED,
        EventKind.STARTED: c.VIR_DOMAIN_RUNNING_BOOTED,
        EventKind.REBOOTED: c.VIR_DOMAIN_RUNNING_BOOTED,  # Xen reboots boot anew
        EventKind.RESUMED: c.VIR_DOMAIN_RUNNING_UNPAUSED,
        EventKind.RESTORED: c.VIR_DOMAIN_RUNNING_RESTORED,
        EventKind.MIGRATED: c.VIR_DOMAIN_RUNNING_MIGRATED,
    },
    DomainState.PAUSED: {
        EventKind.PAUSED: c.VIR_DOMAIN_PAUSED_USER,
        EventKind.CREATED: c.VIR_DOMAIN_PAUSED_USER,  # created paused (xm create -p)
    },
    DomainState.CRASHED: {
        EventKind.CRASHED: c.VIR_DOMAIN_CRASHED_PANICKED,
    },
    DomainState.SHUTOFF: {
        EventKind.SHUTDOWN: c.VIR_DOMAIN_SHUTOFF_SHUTDOWN,
        EventKind.DESTROYED: c.VIR_DOMAIN_SHUTOFF_DESTROYED,
        EventKind.SAVED: c.VIR_DOMAIN_SHUTOFF_SAVED,
    },
}

#: Reasons Xen's state flags say by themselves.
_FIXED: dict[DomainState, int] = {
    DomainState.SHUTDOWN: c.VIR_DOMAIN_SHUTOFF_SHUTDOWN,  # 's': the guest shut down
}


def reason_for(state: DomainState, last: EventKind | None) -> int:
    """libvirt's reason for a domain in ``state`` whose last change seen was ``last``
    (None: none seen)."""
    fixed = _FIXED.get(state)
    if fixed is not None:
        return fixed
    if last is None:
        return 0  # every state's *_UNKNOWN
    return _BY_STATE.get(state, {}).get(last, 0)


class Reasons:
    """One connection's record of the last lifecycle change seen per domain.

    Thread-safe. Memory is bounded: the ``CAPACITY`` domains changed most recently
    are remembered; an older one's reason is UNKNOWN again."""

    CAPACITY = 4096

    def __init__(self, xconn: Connection) -> None:
        self._xconn = xconn
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._last: OrderedDict[str, EventKind] = OrderedDict()

    @property
    def watching(self) -> bool:
        return self._stream is not None

    def watch(self) -> None:
        """Follow the host's events from now on (once: one data-plane call). Called
        before this connection acts, so the change it makes is seen."""
        with self._lock:
            if self._stream is None:
                self._stream = self._xconn.events(timeout=0)

    def reason(self, uuid: str, state: DomainState) -> int:
        """The reason for ``uuid`` in ``state``, after catching up with the host's
        events (one event request while watching, none otherwise)."""
        with self._lock:
            self._catch_up()
            return reason_for(state, self._last.get(uuid))

    def reasons(self) -> dict[str, EventKind]:
        """Caught up: the last change seen of every remembered domain (for bulk answers)."""
        with self._lock:
            self._catch_up()
            return dict(self._last)

    def _catch_up(self) -> None:
        if self._stream is None:
            return
        for event in self._stream:  # ends when nothing more is there (timeout 0)
            self._note(event)

    def _note(self, event: DomainEvent) -> None:
        if event.kind is EventKind.UNDEFINED:
            self._last.pop(event.uuid, None)
            return
        if event.kind in (EventKind.DEFINED, EventKind.RENAMED):
            return  # neither changes a domain's state, nor why it is in it
        self._last[event.uuid] = event.kind
        self._last.move_to_end(event.uuid)
        while len(self._last) > self.CAPACITY:
            self._last.popitem(last=False)
