"""The host's state on disk, so the host outlives its daemon as a hypervisor outlives xend.

Every change is written in the request that made it, inside one SQLite
transaction committed with ``synchronous=FULL`` before the answer goes out: an
acknowledged operation survives SIGTERM, kill -9 or a power cut, and a
half-written change never becomes visible (SQLite's journal rolls it back).
SQLite because it is the standard library's well-kept transactional store:
writing the whole host on each change would cost O(domains) per request, and a
hand-made append log would need its own recovery code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path

from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.host.devices import default_disks, default_nics
from xvirt.host.hypervisor import DOM0_UUID, HostChange, HostState, JournalEntry, LiveDomain
from xvirt.host.images import SavedDomain
from xvirt.model import DomainState, EventKind
from xvirt.planes import DiskConfig, HostEvent, NicConfig

__all__ = ["HostStore"]

# 2 added the domains' devices (JSON lists); a version 1 file gains the columns on
# open, and its domains, stored without devices, get the defaults on load.
# 3 added the managed domains' definitions; an older file gains the (empty) table on
# open. The number changes so that an older daemon refuses a file whose definitions
# it would silently drop.
_SCHEMA_VERSION = "3"
_READABLE = (None, "1", "2", _SCHEMA_VERSION)
_DEVICE_COLUMNS = ("disks", "nics")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (
    uuid TEXT PRIMARY KEY, id INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    memory_kib INTEGER NOT NULL, max_memory_kib INTEGER NOT NULL, vcpus INTEGER NOT NULL,
    os_type TEXT NOT NULL, load REAL NOT NULL, cpu_ns INTEGER NOT NULL, since REAL NOT NULL,
    disks TEXT, nics TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, id INTEGER NOT NULL, uuid TEXT NOT NULL,
    old_id INTEGER, name TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    n INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, domid INTEGER NOT NULL,
    uuid TEXT NOT NULL, outcome TEXT NOT NULL, origin TEXT NOT NULL
);
"""
#: Created only in a file of a schema this store reads (see ``_upgrade``).
_DEFINITIONS_TABLE = """
CREATE TABLE IF NOT EXISTS definitions (
    uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, memory_kib INTEGER NOT NULL,
    max_memory_kib INTEGER NOT NULL, vcpus INTEGER NOT NULL, os_type TEXT NOT NULL,
    load REAL NOT NULL, disks TEXT NOT NULL, nics TEXT NOT NULL
);
"""


class HostStore:
    """One host's state in ``<directory>/host.sqlite``; an observer of a HostModel."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        event_capacity: int = 4096,
        journal_capacity: int = 100_000,
    ) -> None:
        self.path = Path(directory) / "host.sqlite"
        #: What ``load`` repaired, a line each, for the daemon's log.
        self.repairs: list[str] = []
        self._event_capacity = event_capacity
        self._journal_capacity = journal_capacity
        try:
            Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            version = self._meta().get("schema")
            if version in _READABLE:
                self._upgrade()
        except (OSError, sqlite3.Error) as exc:
            raise InvalidArgumentError(f"cannot use state file {str(self.path)!r}: {exc}") from None
        if version not in _READABLE:
            raise InvalidArgumentError(
                f"state file {str(self.path)!r} has schema {version}, expected {_SCHEMA_VERSION}"
            )

    def _upgrade(self) -> None:
        """Bring an older file up to date: a version 1 file's domains table gains the
        device columns (NULL: devices not stored), a version 1 or 2 file an empty
        definitions table (it was written when no domain could be defined)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(domains)")}
        for column in _DEVICE_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE domains ADD COLUMN {column} TEXT")
        self._db.executescript(_DEFINITIONS_TABLE)

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def load(self) -> HostState | None:
        """The saved host, or None when nothing was ever saved here."""
        try:
            meta = self._meta()
            if "boot_id" not in meta:
                return None
            doms = tuple(
                LiveDomain(i, u, n, DomainState(st), m, mx, v, os_type, load, cpu, since, 0.0,
                           *_devices(u, n, disks, nics))
                for (u, i, n, st, m, mx, v, os_type, load, cpu, since, disks, nics)
                in self._db.execute(
                    "SELECT uuid, id, name, state, memory_kib, max_memory_kib, vcpus, os_type,"
                    " load, cpu_ns, since, disks, nics FROM domains ORDER BY id"
                )
            )
            events = tuple(
                HostEvent(seq, EventKind(kind), i, u, old, name)
                for (seq, kind, i, u, old, name) in self._db.execute(
                    "SELECT seq, kind, id, uuid, old_id, name FROM events ORDER BY seq"
                )
            )
            journal = tuple(
                JournalEntry(*row) for row in self._db.execute(
                    "SELECT op, domid, uuid, outcome, origin FROM journal ORDER BY n"
                )
            )
            definitions = tuple(
                SavedDomain(u, n, m, mx, v, 0, os_type, load, *_devices(u, n, disks, nics))
                for (u, n, m, mx, v, os_type, load, disks, nics) in self._db.execute(
                    "SELECT uuid, name, memory_kib, max_memory_kib, vcpus, os_type, load,"
                    " disks, nics FROM definitions ORDER BY name"
                )
            )
            generation = int(meta["generation"])
            kept = _consecutive_tail(events, generation)
            if len(kept) != len(events):
                self.repairs.append(
                    f"kept the last {len(kept)} of {len(events)} saved events (those before "
                    f"seq {kept[0].seq if kept else generation + 1} were not consecutive): "
                    "clients that were further behind take a new snapshot")
            return HostState(meta["boot_id"], generation, doms, kept, journal,
                             int(meta["rover"]), int(meta["daemon_epoch"]), definitions)
        except (sqlite3.Error, KeyError, ValueError, TypeError) as exc:
            raise InvalidArgumentError(
                f"state file {str(self.path)!r} is damaged: {exc}"
            ) from None

    def save(self, state: HostState) -> None:
        """Replace whatever is stored with ``state`` (a new host, or a first save)."""
        self._write(state.boot_id, state.generation, True, state.domains, (), state.events,
                    state.journal, state.rover, state.daemon_epoch, state.definitions, (),
                    all_definitions=True)

    def commit(self, change: HostChange) -> None:
        """Write what one request changed. A reset (new boot) forgets the domains and
        events, not the definitions: those outlive a host reboot."""
        self._write(change.boot_id, change.generation, change.reset, change.domains,
                    change.gone_uuids, change.events, change.journal, change.rover,
                    change.daemon_epoch, change.definitions, change.undefined)

    def _write(
        self,
        boot_id: str,
        generation: int,
        reset: bool,
        domains: tuple[LiveDomain, ...],
        gone: tuple[str, ...],
        events: tuple[HostEvent, ...],
        journal: tuple[JournalEntry, ...],
        rover: int,
        daemon_epoch: int,
        definitions: tuple[SavedDomain, ...],
        undefined: tuple[str, ...],
        *,
        all_definitions: bool = False,
    ) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if reset:
                    db.execute("DELETE FROM domains")
                    db.execute("DELETE FROM events")
                db.executemany("DELETE FROM domains WHERE uuid = ?", [(u,) for u in gone])
                db.executemany(
                    "INSERT OR REPLACE INTO domains VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(d.uuid, d.id, d.name, d.state.value, d.memory_kib, d.max_memory_kib,
                      d.vcpus, d.os_type, d.load, d.cpu_ns, d.since,
                      json.dumps([asdict(x) for x in d.disks]),
                      json.dumps([asdict(x) for x in d.nics])) for d in domains],
                )
                if all_definitions:
                    db.execute("DELETE FROM definitions")
                db.executemany("DELETE FROM definitions WHERE uuid = ?",
                               [(u,) for u in undefined])
                # by UUID first: a change may hand a name from one definition to another
                db.executemany("DELETE FROM definitions WHERE uuid = ?",
                               [(d.uuid,) for d in definitions])
                db.executemany(
                    "INSERT INTO definitions VALUES (?,?,?,?,?,?,?,?,?)",
                    [(d.uuid, d.name, d.memory_kib, d.max_memory_kib, d.vcpus, d.os_type,
                      d.load, json.dumps([asdict(x) for x in d.disks]),
                      json.dumps([asdict(x) for x in d.nics])) for d in definitions],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)",
                    [(e.seq, e.kind.value, e.id, e.uuid, e.old_id, e.name) for e in events],
                )
                if events:
                    db.execute("DELETE FROM events WHERE seq <= ?",
                               (generation - self._event_capacity,))
                db.executemany(
                    "INSERT INTO journal (op, domid, uuid, outcome, origin) VALUES (?,?,?,?,?)",
                    [(j.op, j.domid, j.uuid, j.outcome, j.origin) for j in journal],
                )
                if journal:
                    db.execute("DELETE FROM journal WHERE n <= (SELECT MAX(n) FROM journal) - ?",
                               (self._journal_capacity,))
                db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("schema", _SCHEMA_VERSION), ("boot_id", boot_id),
                     ("generation", str(generation)), ("rover", str(rover)),
                     ("daemon_epoch", str(daemon_epoch))],
                )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OperationFailedError(
                f"cannot save the host's state to {str(self.path)!r}: {exc}"
            ) from None

    def close(self) -> None:
        self._db.close()


def _consecutive_tail(events: tuple[HostEvent, ...], latest: int) -> tuple[HostEvent, ...]:
    """The newest run of consecutive events ending at ``latest`` (none if the newest is
    not ``latest``): what a host can number on from. Older events past a gap are
    dropped; a reader further behind learns that its batch is incomplete."""
    if not events or events[-1].seq != latest:
        return ()
    start = len(events) - 1
    while start > 0 and events[start - 1].seq == events[start].seq - 1:
        start -= 1
    return events[start:]


def _devices(uuid: str, name: str, disks: str | None, nics: str | None
             ) -> tuple[tuple[DiskConfig, ...], tuple[NicConfig, ...]]:
    """A row's devices; a row written before devices were stored (NULL) gets the
    defaults of a domain created without any (Domain-0 has none)."""
    guest = uuid != DOM0_UUID
    return (
        (default_disks(name) if guest else ()) if disks is None else tuple(
            DiskConfig(**d) for d in json.loads(disks)),
        (default_nics(uuid) if guest else ()) if nics is None else tuple(
            NicConfig(**n) for n in json.loads(nics)),
    )
