"""The identity cache: the one place in xvirt that remembers anything.

It maps UUID -> (current ID, name), with ID and name indexes, and knows the
host generation G up to which it has applied every lifecycle event. Its
invariant: every entry is exactly true of the host at generation G (same boot).

Why the contract holds (see docs/architecture.md for the long form):

* C1. Every lookup makes one data-plane call, which says which UUID holds the
  ID at that instant (generation Gh). Before answering, the cache applies
  events up to at least Gh. The host state at the cache's generation Gc >= Gh
  was in force at an instant inside the call (Gc was reached no earlier than
  the data call and no later than now), and the entry is exact at Gc, so the
  returned (ID, name, UUID) all held together at that instant.
* C2. A domain that keeps its ID, name and UUID throughout the call is in the
  data answer and in the entry at Gc; nothing makes the lookup fail. Retries
  happen only when something changed during the call.
* C3. Handles hold only a UUID and ask the cache for the current ID.
* C5. A full snapshot adds every newcomer as an entry without a name; the
  first lookup that needs a name resolves *all* nameless entries in one
  control-plane request, and concurrent lookups wait for that one request.
* C6. Entries belong to the cache, not to handles.
* C7. Events remove gone domains; a snapshot taken at the cache's generation
  removes anything else not in it. The cache holds live domains only.
* C8. Any answer from another boot flushes everything; a daemon restart does
  not change the boot identity or the event sequence, so entries stay.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from xvirt.drivers.base import Driver
from xvirt.errors import NoDomainError, OperationFailedError
from xvirt.hotpath import tuple_new
from xvirt.lookup import CacheCounts
from xvirt.model import DomainFailure, DomainInfo, DomainSample, EventKind, Identity, Survey
from xvirt.planes import Census, HostEvent, IdOwner, Resolution, TableSnapshot

__all__ = ["IdentityCache"]

#: How often a lookup starts again when the domain changed under it.
RETRIES = 8


class _Entry:
    __slots__ = ("domid", "name")

    def __init__(self, domid: int, name: str | None) -> None:
        self.domid = domid
        self.name = name


@dataclass
class _Flight:
    """One control-plane resolve in progress; concurrent misses wait on it."""

    targets: frozenset[str]
    done: threading.Event = field(default_factory=threading.Event)


class _Unknown:
    """Marker: the UUID is live but its name is not known yet."""


_UNKNOWN = _Unknown()


class IdentityCache:
    """Thread-safe; one per connection. Implements :class:`xvirt.lookup.Lookup`."""

    def __init__(self, driver: Driver, *, recent_events: int = 4096, tombstones: int = 1024):
        self._driver = driver
        self._uri = driver.uri
        self._lock = threading.Lock()
        self._boot: str | None = None
        self._gen = 0
        self._entries: dict[str, _Entry] = {}
        self._by_id: dict[int, str] = {}
        self._by_name: dict[str, str] = {}
        self._unnamed: set[str] = set()
        self._full = False  # entries are exactly the live set at self._gen
        self._recent: deque[HostEvent] = deque(maxlen=recent_events)
        self._tombs: OrderedDict[str, str] = OrderedDict()
        self._tomb_limit = tombstones
        self._flight: _Flight | None = None
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    # -- public -----------------------------------------------------------------

    def counts(self) -> CacheCounts:
        with self._lock:
            return CacheCounts(self._hits, self._misses, self._evictions, len(self._entries))

    def snapshot(self) -> TableSnapshot:
        """One data-plane snapshot, applied to the cache (C5 newcomers, C7 evictions)."""
        snap = self._driver.snapshot()
        with self._lock:
            self._sync(snap.boot_id, snap.generation)
            names: Sequence[str | None] | None = snap.names
            if names is not None and snap.unanswered:  # aligned with members()
                names = (*names, *(u.name for u in snap.unanswered))
            self._reconcile(snap.boot_id, snap.generation, snap.members(), names)
        return snap

    def census(self) -> Census:
        """Who is alive, in one data-plane call, applied to the cache like a snapshot."""
        census = self._driver.census()
        with self._lock:
            self._sync(census.boot_id, census.generation)
            self._reconcile(census.boot_id, census.generation, census.members, census.names)
        return census

    def list_ids(self) -> list[int]:
        ids = self._driver.list_ids()
        if ids is None:
            return [domid for domid, _ in self.census().members]
        return list(ids)  # what the driver observed reaches the cache as events

    def survey(self) -> Survey:
        """Every live domain with identity and info (or why its info is missing):
        one snapshot, at most one control-plane request (for all newcomers at once)."""
        why = ""
        for _ in range(RETRIES):
            snap = self.snapshot()
            self._resolve(None)
            with self._lock:
                if self._boot != snap.boot_id:
                    why = "the host rebooted"
                    continue
                samples, failures = [], []
                renamed = self._renamed_since(snap.generation)
                for row in snap.rows:
                    ident = self._named(row.id, row.uuid, renamed)
                    if ident is None:
                        if self._departed(row.uuid, snap.generation):
                            continue
                        why = self._unnameable(row.id, row.uuid, snap.generation, renamed)
                        break  # changed since the snapshot: take a new one
                    samples.append(DomainSample(ident, row.info()))
                else:
                    for miss in snap.unanswered:
                        ident = self._named(miss.id, miss.uuid, renamed)
                        if ident is None:
                            if self._departed(miss.uuid, snap.generation):
                                continue
                            why = self._unnameable(miss.id, miss.uuid, snap.generation, renamed)
                            break
                        failures.append(DomainFailure(ident, miss.error))
                    else:
                        self._hits += len(samples) + len(failures)
                        return Survey(sorted(samples, key=lambda s: s.identity.id),
                                      sorted(failures, key=lambda f: f.identity.id))
        # Never a partial answer: a domain left out would read as a domain gone.
        raise OperationFailedError(
            f"the host kept changing during each of {RETRIES} tries (the last: {why}); "
            "try again", uri=self._uri, op="survey")

    def _unnameable(self, domid: int, uuid: str, gen: int,
                    renamed: frozenset[str] | None) -> str:
        """Why a snapshot's member could not be named: for the error a survey that
        gives up raises."""
        entry = self._entries.get(uuid)
        if renamed is None:
            cause = "the events since are no longer all known"
        elif uuid in renamed:
            cause = "it was renamed since"
        elif entry is None:
            cause = "it is gone and its name was never learnt"
        else:
            cause = "its name is not known yet"
        return (f"domain {domid} ({uuid}) at generation {gen} could not be named at "
                f"{self._gen}: {cause}")

    def _named(self, domid: int, uuid: str, renamed: frozenset[str] | None) -> Identity | None:
        """The identity of a snapshot's member at ``domid``, given the domains renamed
        since the snapshot (None: unknown). None when it cannot say.

        The identity is the one held at the snapshot, the instant of the member's
        figures and state, so a row never pairs a name with a state it never had with
        it: where the domain is now does not matter (it may have moved or gone since);
        its name then is the one it has now (or had when it went) unless it was
        renamed since.
        """
        entry = self._entries.get(uuid)
        name = entry.name if entry is not None else self._tombs.get(uuid)
        if name is None or renamed is None or uuid in renamed:
            return None
        return Identity(uuid, name, domid)  # held at the snapshot: an instant (C1)

    def _departed(self, uuid: str, gen: int) -> bool:
        """Whether a member of the snapshot at ``gen`` whose name nobody can tell any
        more (a newcomer gone before it could be named) is gone now: the cache is
        exact at a later generation and lacks it. Leaving it out is then true to an
        instant of the call for it (C1) and misses no domain alive throughout (C2);
        a new snapshot would only meet the next short-lived newcomer."""
        return self._full and self._gen > gen and uuid not in self._entries

    def _renamed_since(self, gen: int) -> frozenset[str] | None:
        """The domains renamed by the events applied after ``gen`` (computed once per
        survey, not per member); None when some of those events have left the ring."""
        if self._gen == gen:
            return frozenset()
        if not self._recent or self._recent[0].seq > gen + 1:
            return None
        return frozenset(e.uuid for e in self._recent
                         if e.seq > gen and e.kind is EventKind.RENAMED)

    def lookup_by_id(self, domid: int) -> Identity:
        ident = self._check(domid, None)  # the loop below only when the domain moved
        if ident is not None:
            return ident
        for _ in range(RETRIES - 1):
            ident = self._check(domid, None)
            if ident is not None:
                return ident
        raise NoDomainError(
            f"domain {domid} kept changing during the lookup", domid=domid, uri=self._uri
        )

    def current(self, uuid: str) -> Identity:
        """The validated identity of the domain with this UUID (C3)."""
        domid = self.domid_hint(uuid)
        for _ in range(RETRIES):
            ident = self._check(domid, uuid)
            if ident is not None:
                return ident
            domid = self.relocate(uuid, domid)
        # Found alive every time, so not gone (C3): say it moved too often.
        raise OperationFailedError(
            f"domain {uuid} kept changing ID during the call; try again", uuid=uuid,
            uri=self._uri,
        )

    def lookup_by_name(self, name: str) -> Identity:
        for _ in range(RETRIES):
            with self._lock:
                uuid = self._by_name.get(name)
                entry = self._entries.get(uuid) if uuid is not None else None
                domid = entry.domid if entry is not None else None
            if uuid is not None and domid is not None:
                ident = self._check(domid, uuid)
                if ident is not None and ident.name == name:
                    return ident
            # Unknown or stale name: make the cache complete, then it knows or can say no.
            snap = self.snapshot()
            self._resolve(None)
            with self._lock:
                if self._boot != snap.boot_id:
                    continue
                uuid = self._by_name.get(name)
                if uuid is not None:
                    # Exact at self._gen >= snap.generation: an instant inside this call.
                    self._misses += 1
                    return Identity(uuid, name, self._entries[uuid].domid)
                if self._full and not self._unnamed:
                    self._misses += 1
                    raise NoDomainError(
                        f"no domain named {name!r}", name=name, uri=self._uri
                    )
        raise NoDomainError(f"domain {name!r} kept changing during the lookup", name=name,
                            uri=self._uri)

    def info(self, uuid: str) -> DomainInfo:
        """Fresh runtime info of the domain with this UUID: one data call when settled."""
        entry = self._entries.get(uuid)  # a racy read is only a hint: the answer is checked
        domid = entry.domid if entry is not None else self.domid_hint(uuid)
        ans = self._driver.info_by_uuid(uuid, domid)
        row = ans.row
        if (row is not None and row.uuid == uuid and ans.boot_id == self._boot
                and ans.generation <= self._gen):
            return row.info()  # settled, and there: the loop below only when not
        for _ in range(RETRIES):
            if ans.boot_id != self._boot or ans.generation > self._gen:
                with self._lock:
                    self._sync(ans.boot_id, ans.generation)
            row = ans.row
            if row is not None and row.uuid == uuid:
                return row.info()
            domid = self.relocate(uuid, domid)
            ans = self._driver.info_by_uuid(uuid, domid)
        raise OperationFailedError(
            f"domain {uuid} kept changing ID during the call; try again", uuid=uuid,
            uri=self._uri, op="info",
        )

    def domid_hint(self, uuid: str) -> int:
        """Where the cache believes the domain is; a snapshot finds it if unknown.

        Good enough to aim an act-if-identity request: the host checks the UUID.
        """
        with self._lock:
            entry = self._entries.get(uuid)
            if entry is not None:
                return entry.domid
        snap = self.snapshot()
        for row in snap.rows:
            if row.uuid == uuid:
                return row.id
        raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self._uri)

    def relocate(self, uuid: str, missed: int) -> int:
        """Where the domain is now, after it was found not to be at ``missed``.

        Catches up on events first: that usually moves or evicts the entry.
        If the cache still says ``missed`` (a domain can come back to an old ID
        under the random policy) a snapshot decides. NoDomainError when gone.
        """
        with self._lock:
            if self._boot is not None:
                self._catch_up()
            entry = self._entries.get(uuid)
            if entry is not None and entry.domid != missed:
                return entry.domid
            if entry is None and self._full:
                # Exact at a generation reached during this call, and not there.
                raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self._uri)
        snap = self.snapshot()
        for row in snap.rows:
            if row.uuid == uuid:
                return row.id
        raise NoDomainError(f"no domain with UUID {uuid}", uuid=uuid, uri=self._uri)

    def merge(self, answer: Resolution) -> None:
        """Take in a control-plane answer obtained elsewhere (e.g. restore)."""
        with self._lock:
            self._merge(answer, frozenset())

    def name_hint(self, uuid: str) -> str | None:
        """The last name known for this UUID, even if the domain is gone; no I/O."""
        with self._lock:
            entry = self._entries.get(uuid)
            if entry is not None and entry.name is not None:
                return entry.name
            return self._tombs.get(uuid)

    # -- the validated lookup -----------------------------------------------------

    def _check(self, domid: int, expect: str | None) -> Identity | None:
        """Validate ``domid`` on the data plane and name it.

        Returns None when the domain there is not ``expect`` or moved during
        the call (the caller starts again); raises NoDomainError when no
        domain has the ID and none was expected.
        """
        ans = self._driver.identify(domid)
        owner = ans.uuid
        with self._lock:  # the steady state, in line: a settled entry that agrees
            if ans.boot_id == self._boot and ans.generation <= self._gen:
                entry = self._entries.get(owner) if owner is not None else None
                if (entry is not None and entry.domid == domid and entry.name is not None
                        and (expect is None or owner == expect)):
                    self._hits += 1
                    return tuple_new(Identity, (owner, entry.name, domid))
        resolved = False
        while True:
            with self._lock:
                self._sync(ans.boot_id, ans.generation)
                if owner is None or (expect is not None and owner != expect):
                    if expect is None:
                        self._count(resolved)
                        raise NoDomainError(
                            f"no domain with ID {domid}", domid=domid, uri=self._uri
                        )
                    return None
                result = self._known(ans, domid, owner)
                if isinstance(result, Identity):
                    self._count(resolved)
                    return result
            if result is None or resolved:
                return None
            self._resolve(owner)
            resolved = True

    def _known(self, ans: IdOwner, domid: int, uuid: str) -> Identity | _Unknown | None:
        """What the cache (synced to >= ans.generation) says of ``uuid`` at ``domid``."""
        entry = self._entries.get(uuid)
        exact = self._gen == ans.generation  # the answer's name, if any, holds now
        if entry is None:
            if not exact:
                return _UNKNOWN
            entry = self._add(uuid, domid, ans.name)
        if entry.domid != domid:
            return None  # it moved after the data answer
        name = entry.name
        if name is None:
            if not exact or ans.name is None:
                return _UNKNOWN
            name = ans.name
            self._rename(uuid, entry, name)
        return Identity(uuid, name, domid)

    def _count(self, missed: bool) -> None:
        if missed:
            self._misses += 1
        else:
            self._hits += 1

    # -- batched, single-flight resolution (C5) ---------------------------------------

    def _resolve(self, extra: str | None) -> None:
        """Name every nameless entry (and ``extra``) in one control-plane request."""
        while True:
            with self._lock:
                flight = self._flight
                if flight is None:
                    targets = set(self._unnamed)
                    known = self._entries.get(extra) if extra is not None else None
                    if extra is not None and (known is None or known.name is None):
                        targets.add(extra)  # else a flight that just ended named it
                    if not targets:
                        return
                    flight = self._flight = _Flight(frozenset(targets))
                    leader = True
                else:
                    leader = False
            if leader:
                break
            flight.done.wait()
            if extra is None or extra in flight.targets:
                return
        try:
            answer = self._driver.resolve(sorted(flight.targets))
            with self._lock:
                self._merge(answer, flight.targets)
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()

    def _merge(self, answer: Resolution, asked: frozenset[str]) -> None:
        self._sync(answer.boot_id, answer.generation)
        found = {r.uuid: (r.id, r.name) for r in answer.domains}
        if self._gen > answer.generation:
            # Bring the answer forward through the events applied since it was taken.
            if not self._recent or self._recent[0].seq > answer.generation + 1:
                return  # cannot: drop it; whoever needs a name asks again
            # A domain that left since is dropped, even if it came back: a restore
            # brings back the name of its image, which may be an older one, and a
            # defined domain may have run and been renamed in between.
            for e in self._recent:
                if e.seq <= answer.generation or e.uuid not in found:
                    continue
                domid, name = found[e.uuid]
                if e.kind.removes:
                    del found[e.uuid]
                elif e.kind is EventKind.RENAMED and e.name is not None:
                    found[e.uuid] = (domid, e.name)
                elif e.kind.moves:
                    found[e.uuid] = (e.id, name)
        for uuid, (domid, name) in found.items():
            entry = self._entries.get(uuid)
            if entry is None:
                self._add(uuid, domid, name)
            else:
                if entry.domid != domid:
                    self._move(uuid, entry, domid)
                if entry.name != name:
                    self._rename(uuid, entry, name)
        if self._gen == answer.generation:
            for uuid in asked - found.keys():
                self._evict(uuid)  # asked for and absent: gone at this very generation

    # -- keeping the invariant: sync, events, snapshots ---------------------------------

    def _sync(self, boot_id: str, generation: int) -> None:
        """Make the cache exact at a generation >= ``generation`` of boot ``boot_id``."""
        if boot_id != self._boot:
            self._flush()
            self._boot = boot_id
            self._gen = generation
        elif generation > self._gen:
            self._catch_up()

    def _catch_up(self) -> None:
        batch = self._driver.events_since(self._gen)
        if batch.boot_id != self._boot or not batch.complete:
            # Another boot (C8), or events were lost: nothing held can be trusted.
            self._flush()
            self._boot = batch.boot_id
            self._gen = batch.latest
            return
        for event in batch.events:
            if event.seq > self._gen:
                self._apply(event)
                self._gen = event.seq
                self._recent.append(event)

    def _apply(self, event: HostEvent) -> None:
        kind = event.kind
        if kind.definition_only:
            return  # a definition changed; which domain holds which ID did not
        if kind.removes:
            self._evict(event.uuid)
            return
        entry = self._entries.get(event.uuid)
        if entry is None:
            # The event's name (a restore or start names the domain), never the name
            # it had when it left: an image brings back the name it was saved with,
            # which may be an older image's, and a defined domain may have run under
            # another name since. Without one, unknown until asked (one batched request).
            self._add(event.uuid, event.id, event.name)
            return
        if entry.domid != event.id:
            self._move(event.uuid, entry, event.id)
        if kind is EventKind.RENAMED:
            self._rename(event.uuid, entry, event.name)
        elif kind.adds:
            self._rename(event.uuid, entry, event.name)  # back from elsewhere: the event's
            # name, or ask again

    def _reconcile(
        self, boot_id: str, generation: int, members: Sequence[tuple[int, str]],
        names: Sequence[str | None] | None = None,
    ) -> None:
        """Make the entries exactly the live set, when it is of our generation;
        ``names``, when given, are the members' names at that generation."""
        if boot_id != self._boot or generation != self._gen:
            return  # events have already taken us past it
        if self._full and len(self._entries) == len(members):
            return  # events kept the set exact; nothing to do
        live = {uuid: domid for domid, uuid in members}
        named = dict(zip((uuid for _, uuid in members), names, strict=True)) if names else {}
        for uuid in [u for u in self._entries if u not in live]:
            self._evict(uuid)
        for uuid, domid in live.items():
            entry = self._entries.get(uuid)
            if entry is None:
                self._add(uuid, domid, named.get(uuid))
                continue
            if entry.domid != domid:
                self._move(uuid, entry, domid)
            name = named.get(uuid)
            if name is not None and entry.name != name:
                self._rename(uuid, entry, name)
        self._full = True

    # -- index maintenance ----------------------------------------------------------------

    def _add(self, uuid: str, domid: int, name: str | None) -> _Entry:
        self._evict_squatter(uuid, domid)
        entry = _Entry(domid, None)
        self._entries[uuid] = entry
        self._by_id[domid] = uuid
        self._rename(uuid, entry, name)
        return entry

    def _move(self, uuid: str, entry: _Entry, domid: int) -> None:
        if self._by_id.get(entry.domid) == uuid:
            del self._by_id[entry.domid]
        self._evict_squatter(uuid, domid)
        entry.domid = domid
        self._by_id[domid] = uuid

    def _rename(self, uuid: str, entry: _Entry, name: str | None) -> None:
        if entry.name is not None and self._by_name.get(entry.name) == uuid:
            del self._by_name[entry.name]
        entry.name = name
        if name is None:
            self._unnamed.add(uuid)
            return
        self._unnamed.discard(uuid)
        holder = self._by_name.get(name)
        if holder is not None and holder != uuid:
            other = self._entries[holder]
            other.name = None  # its name is stale: names are unique on the host
            self._unnamed.add(holder)
        self._by_name[name] = uuid

    def _evict_squatter(self, uuid: str, domid: int) -> None:
        """Another entry claiming ``domid`` is stale; the cache is no longer known complete."""
        squatter = self._by_id.get(domid)
        if squatter is not None and squatter != uuid:
            self._evict(squatter)
            self._full = False

    def _evict(self, uuid: str) -> None:
        entry = self._entries.pop(uuid, None)
        if entry is None:
            return
        if self._by_id.get(entry.domid) == uuid:
            del self._by_id[entry.domid]
        if entry.name is not None:
            if self._by_name.get(entry.name) == uuid:
                del self._by_name[entry.name]
            self._tombs[uuid] = entry.name
            self._tombs.move_to_end(uuid)
            if len(self._tombs) > self._tomb_limit:
                self._tombs.popitem(last=False)
        self._unnamed.discard(uuid)
        self._evictions += 1

    def _flush(self) -> None:
        for uuid in list(self._entries):
            self._evict(uuid)
        self._full = False
        self._recent.clear()
