"""The host's lifecycle event log: numbered, bounded, readable from any point.

The sequence number of the newest event is the host's *generation*; every
data-plane answer carries it. A reader that fell further behind than the log
holds is told so (``complete=False``) and must resnapshot.
"""

from __future__ import annotations

import itertools

from xvirt.model import EventKind
from xvirt.planes import HostEvent

__all__ = ["EventLog"]


class EventLog:
    """Events of one boot. Not thread-safe: the host's lock guards it."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("event log capacity must be positive")
        self.capacity = capacity
        self._events: list[HostEvent] = []
        self._base = 1  # seq of self._events[0]
        self.latest = 0

    def append(
        self,
        kind: EventKind,
        domid: int,
        uuid: str,
        *,
        old_id: int | None = None,
        name: str | None = None,
    ) -> HostEvent:
        self.latest += 1
        event = HostEvent(self.latest, kind, domid, uuid, old_id, name)
        self._events.append(event)
        if len(self._events) >= 2 * self.capacity:  # trim in bulk: amortised O(1)
            drop = len(self._events) - self.capacity
            del self._events[:drop]
            self._base += drop
        return event

    @classmethod
    def resume(cls, capacity: int, latest: int, events: tuple[HostEvent, ...]) -> EventLog:
        """A log that goes on numbering from ``latest``, holding the given recent events
        (the newest ones, consecutive, ending at ``latest``)."""
        log = cls(capacity)
        held = list(events[-capacity:])
        if latest < 0 or (held and (held[-1].seq != latest or any(
                b.seq != a.seq + 1 for a, b in itertools.pairwise(held)))):
            raise ValueError("saved events are not consecutive up to the latest sequence number")
        log._events = held
        log._base = held[0].seq if held else latest + 1
        log.latest = latest
        return log

    @property
    def oldest_available(self) -> int:
        """The smallest ``after`` from which every later event is still held."""
        return self._base - 1

    def since(self, after: int) -> tuple[tuple[HostEvent, ...], bool]:
        """Events with seq > after, and whether that is all of them."""
        if after == self.latest:
            return (), True
        if after > self.latest or after < self.oldest_available:
            return (), False
        return tuple(self._events[after + 1 - self._base :]), True
