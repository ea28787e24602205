"""The libvirt driver's account of who is alive where, and the events that keep
the cache exact: what a Xen host's event log gives for free, made from
observations.

libvirt has no generation: its lifecycle events arrive after the fact, on
another thread, and may be older than an answer already in hand. So the
driver never applies a libvirt event directly. Every libvirt answer that
names domains (lookupByID, lookupByUUID, listAllDomains...) is an
*observation*, taken under the driver's lock, and the mirror turns the
difference between it and what it held into numbered ``HostEvent``s; the
answer then carries the number of the last one as its generation. A libvirt
event only makes the driver observe the domain it names again.

Each domain's (ID, name) in the mirror thus comes from one observation, the
latest, and observations are applied in the order they were made. That is
what the cache's proof of C1 needs (see docs/architecture.md).

Defined (inactive) domains are never members: an observation with ID -1 is
one of a domain not live. The one kind of libvirt event recorded as it comes
is a change of definition (DEFINED, UNDEFINED): it changes nothing live, so
its order against observations cannot mislead the cache, which ignores it;
it is there for ``Connection.events()`` readers.

Pure bookkeeping: no libvirt, no I/O, no lock (the driver holds its own).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from xvirt.host.events import EventLog
from xvirt.model import EventKind
from xvirt.planes import HostEvent

__all__ = ["Mirror"]


class Mirror:
    """Live domains as last observed, and the event log that records each change."""

    def __init__(self, capacity: int = 4096) -> None:
        self._log = EventLog(capacity)
        self._where: dict[str, tuple[int, str]] = {}  # uuid -> (id, name)
        self._by_id: dict[int, str] = {}
        # id -> the UUID last observed there, live or not: the last ``capacity`` IDs.
        self._last_at: OrderedDict[int, str] = OrderedDict()
        self._capacity = capacity

    @property
    def generation(self) -> int:
        return self._log.latest

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._where

    def domid(self, uuid: str) -> int | None:
        seen = self._where.get(uuid)
        return None if seen is None else seen[0]

    def holder(self, domid: int) -> str | None:
        return self._by_id.get(domid)

    def agrees(self, uuid: str, domid: int, name: str) -> bool:
        """Whether an observation of ``uuid`` live at ``domid`` named ``name`` would
        change nothing (the hot path skips :meth:`saw`)."""
        return self._where.get(uuid) == (domid, name)

    def departed(self, domid: int) -> str | None:
        """The UUID last observed at ``domid`` if the mirror holds it departed.

        Its departure is an observation like any other, true when it was made:
        perhaps before the call now under way began (the worker observes on
        libvirt's events), and the domain back since under another ID, with no
        event about it delivered yet. A cache still placing it at ``domid`` learns
        of that departure only now, from this call's generation, and would take it
        for current; so a call that finds ``domid`` contradicting that cache
        (nobody there, or another UUID) observes this one again before answering.
        """
        uuid = self._last_at.get(domid)
        return uuid if uuid is not None and uuid not in self._where else None

    def since(self, after: int) -> tuple[tuple[HostEvent, ...], bool]:
        return self._log.since(after)

    # -- observations ----------------------------------------------------------------

    def saw(self, domid: int, uuid: str, name: str,
            arrival: EventKind = EventKind.CREATED) -> str | None:
        """``uuid`` was live at ``domid`` named ``name``.

        Returns the UUID the mirror believed at ``domid`` before, if another
        (or, believing nobody there, the one it last saw there and holds
        departed, see :meth:`departed`): where that one is now is unknown, and
        the caller must observe it by UUID before answering anyone.

        A negative ``domid`` is libvirt's way of saying the domain is defined and
        not running: that is an observation of it not live (C1: no lookup by ID
        may find an inactive domain, no census may list one).
        """
        if domid < 0:
            self.gone(uuid)
            return None
        displaced = self._by_id.get(domid)
        if displaced == uuid:
            displaced = None
        if displaced is not None:
            del self._by_id[domid]  # its location is unknown until observed again
        else:
            gone = self.departed(domid)  # (IDs come back after a libvirtd restart)
            displaced = gone if gone != uuid else None
        self._last_at[domid] = uuid
        self._last_at.move_to_end(domid)
        if len(self._last_at) > self._capacity:
            self._last_at.popitem(last=False)
        seen = self._where.get(uuid)
        if seen is None:
            self._where[uuid] = (domid, name)
            self._by_id[domid] = uuid
            kind = arrival if arrival.adds or arrival.moves else EventKind.CREATED
            self._log.append(kind, domid, uuid, name=name)
            return displaced
        old_id, old_name = seen
        if old_id != domid:
            if self._by_id.get(old_id) == uuid:
                del self._by_id[old_id]
            self._by_id[domid] = uuid
            self._log.append(EventKind.REBOOTED, domid, uuid, old_id=old_id)
        if old_name != name:
            self._log.append(EventKind.RENAMED, domid, uuid, name=name)
        self._where[uuid] = (domid, name)
        return displaced

    def gone(self, uuid: str, kind: EventKind = EventKind.DESTROYED) -> None:
        """``uuid`` is not live (no such domain, or defined but not running)."""
        seen = self._where.pop(uuid, None)
        if seen is None:
            return
        if self._by_id.get(seen[0]) == uuid:
            del self._by_id[seen[0]]
        self._log.append(kind if kind.removes else EventKind.DESTROYED, seen[0], uuid)

    def vacant(self, domid: int) -> str | None:
        """Nobody is live at ``domid``. Returns whom the mirror believed there:
        gone or moved, the caller must observe it by UUID to know which."""
        uuid = self._by_id.pop(domid, None)
        return uuid

    def holds_exactly(self, ids: Iterable[int]) -> bool:
        """Whether ``ids`` are exactly the IDs the mirror places its live domains at
        (every one of which it knows where: none displaced)."""
        return len(self._by_id) == len(self._where) and set(ids) == self._by_id.keys()

    def census(self, members: Iterable[tuple[int, str, str]]) -> None:
        """Exactly these ``(id, uuid, name)`` are live: a complete observation."""
        live = {uuid: (domid, name) for domid, uuid, name in members if domid >= 0}
        if live == self._where and len(self._by_id) == len(self._where):
            return  # the steady state: nothing changed, and _by_id (a subset) agrees
        for uuid in [u for u in self._where if u not in live]:
            self.gone(uuid)
        for uuid, (domid, name) in sorted(live.items(), key=lambda item: item[1][0]):
            self.saw(domid, uuid, name)
        # Every displaced domain was resolved by the same complete observation.
        self._by_id = {domid: uuid for uuid, (domid, _) in self._where.items()}

    def definition(self, uuid: str, name: str, kind: EventKind) -> None:
        """``uuid``'s definition was made, replaced or removed (libvirt's DEFINED and
        UNDEFINED events; ``kind`` says which). Nothing live changes: the event takes
        the ID and name the domain is live under as last observed, so it agrees with
        the log around it, else ID -1 and the definition's ``name``."""
        if not kind.definition_only:
            raise ValueError(f"{kind} is not a change of definition")
        domid, live_name = self._where.get(uuid, (-1, name))
        self._log.append(kind, domid, uuid, name=live_name)

    def note(self, uuid: str, kind: EventKind) -> None:
        """A change that leaves identity alone (paused, resumed, crashed in place)."""
        seen = self._where.get(uuid)
        if seen is not None:
            self._log.append(kind, seen[0], uuid)
