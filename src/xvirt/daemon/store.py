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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.host.devices import default_disks, default_nics
from xvirt.host.hypervisor import (
    DOM0_UUID,
    HostChange,
    HostState,
    JournalEntry,
    LiveDomain,
    even_vcpu_times,
)
from xvirt.host.images import SavedDomain, check_settings, check_vcpu_times, metadata_from_json
from xvirt.model import DomainMetadata, DomainState, EventKind
from xvirt.planes import DiskConfig, HostEvent, NicConfig

__all__ = ["HostStore"]

# 2 added the domains' devices (JSON lists); a version 1 file gains the columns on
# open, and its domains, stored without devices, get the defaults on load.
# 3 added the managed domains' definitions; an older file gains the (empty) table on
# open. The number changes so that an older daemon refuses a file whose definitions
# it would silently drop.
# 4 added, to running domains and definitions alike, the maximum vCPUs, the credit
# scheduler's weight and cap and the metadata (JSON), and the boot's start to meta; an
# older file gains the columns (NULL: the defaults, as many vCPUs as are online).
# 5 added each running domain's per-vCPU CPU time (a JSON list, ``vcpu_ns``); an older
# file gains the column (NULL: the domain's CPU time shared evenly among its vCPUs
# online, about what the host reported then). The number changes so that an older
# daemon refuses a file whose per-vCPU times it would lose.
_SCHEMA_VERSION = "5"
_READABLE = (None, "1", "2", "3", "4", _SCHEMA_VERSION)
_DEVICE_COLUMNS = ("disks", "nics")
#: Columns of schema 4, in both the domains and the definitions table.
_SETTINGS_COLUMNS = (("max_vcpus", "INTEGER"), ("sched_weight", "INTEGER"),
                     ("sched_cap", "INTEGER"), ("metadata", "TEXT"))
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (
    uuid TEXT PRIMARY KEY, id INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    memory_kib INTEGER NOT NULL, max_memory_kib INTEGER NOT NULL, vcpus INTEGER NOT NULL,
    os_type TEXT NOT NULL, load REAL NOT NULL, cpu_ns INTEGER NOT NULL, since REAL NOT NULL,
    disks TEXT, nics TEXT, max_vcpus INTEGER, sched_weight INTEGER, sched_cap INTEGER,
    metadata TEXT, vcpu_ns TEXT
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
    load REAL NOT NULL, disks TEXT NOT NULL, nics TEXT NOT NULL, max_vcpus INTEGER,
    sched_weight INTEGER, sched_cap INTEGER, metadata TEXT
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
        definitions table (it was written when no domain could be defined), a version
        1 to 3 file the settings columns in both (NULL: the defaults), a version 1 to 4
        file the domains' per-vCPU times (NULL: the even split of their CPU time)."""
        self._add_columns("domains", [(c, "TEXT") for c in _DEVICE_COLUMNS])
        self._db.executescript(_DEFINITIONS_TABLE)
        for table in ("domains", "definitions"):
            self._add_columns(table, _SETTINGS_COLUMNS)
        self._add_columns("domains", [("vcpu_ns", "TEXT")])

    def _add_columns(self, table: str, columns: list[tuple[str, str]] | tuple[
            tuple[str, str], ...]) -> None:
        have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        for column, kind in columns:
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def load(self) -> HostState | None:
        """The saved host, or None when nothing was ever saved here."""
        try:
            meta = self._meta()
            if "boot_id" not in meta:
                return None
            doms = tuple(
                _with_vcpu_times(replace(
                    LiveDomain(i, u, n, DomainState(st), m, mx, v, os_type, load, cpu,
                               since, 0.0, *_devices(u, n, disks, nics)),
                    **_settings(maxv, weight, cap, meta)), vcpu_ns)
                for (u, i, n, st, m, mx, v, os_type, load, cpu, since, disks, nics, maxv,
                     weight, cap, meta, vcpu_ns)
                in self._db.execute(
                    "SELECT uuid, id, name, state, memory_kib, max_memory_kib, vcpus, os_type,"
                    " load, cpu_ns, since, disks, nics, max_vcpus, sched_weight, sched_cap,"
                    " metadata, vcpu_ns FROM domains ORDER BY id"
                )
            )
            for dom in doms:
                saved = SavedDomain(dom.uuid, dom.name, dom.memory_kib, dom.max_memory_kib,
                                    dom.vcpus, dom.cpu_ns, dom.os_type, 0.0, (), (),
                                    dom.max_vcpus, dom.sched_weight, dom.sched_cap,
                                    dom.metadata, dom.vcpu_ns)
                check_settings(saved)
                try:
                    check_vcpu_times(saved)
                except ValueError as exc:
                    raise ValueError(f"domain {dom.name!r}: {exc}") from None
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
                replace(SavedDomain(u, n, m, mx, v, 0, os_type, load,
                                    *_devices(u, n, disks, nics)),
                        **_settings(maxv, weight, cap, meta))
                for (u, n, m, mx, v, os_type, load, disks, nics, maxv, weight, cap, meta)
                in self._db.execute(
                    "SELECT uuid, name, memory_kib, max_memory_kib, vcpus, os_type, load,"
                    " disks, nics, max_vcpus, sched_weight, sched_cap, metadata"
                    " FROM definitions ORDER BY name"
                )
            )
            for spec in definitions:
                check_settings(spec)
            generation = int(meta["generation"])
            kept = _consecutive_tail(events, generation)
            if len(kept) != len(events):
                self.repairs.append(
                    f"kept the last {len(kept)} of {len(events)} saved events (those before "
                    f"seq {kept[0].seq if kept else generation + 1} were not consecutive): "
                    "clients that were further behind take a new snapshot")
            booted_at = meta.get("booted_at")
            return HostState(meta["boot_id"], generation, doms, kept, journal,
                             int(meta["rover"]), int(meta["daemon_epoch"]), definitions,
                             None if booted_at is None else float(booted_at))
        except (sqlite3.Error, KeyError, ValueError, TypeError, InvalidArgumentError) as exc:
            raise InvalidArgumentError(
                f"state file {str(self.path)!r} is damaged: {exc}"
            ) from None

    def save(self, state: HostState) -> None:
        """Replace whatever is stored with ``state`` (a new host, or a first save)."""
        self._write(state.boot_id, state.generation, True, state.domains, (), state.events,
                    state.journal, state.rover, state.daemon_epoch, state.definitions, (),
                    state.booted_at, all_definitions=True)

    def commit(self, change: HostChange) -> None:
        """Write what one request changed. A reset (new boot) forgets the domains and
        events, not the definitions: those outlive a host reboot."""
        self._write(change.boot_id, change.generation, change.reset, change.domains,
                    change.gone_uuids, change.events, change.journal, change.rover,
                    change.daemon_epoch, change.definitions, change.undefined,
                    change.booted_at)

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
        booted_at: float | None,
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
                    "INSERT OR REPLACE INTO domains (uuid, id, name, state, memory_kib,"
                    " max_memory_kib, vcpus, os_type, load, cpu_ns, since, disks, nics,"
                    " max_vcpus, sched_weight, sched_cap, metadata, vcpu_ns)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(d.uuid, d.id, d.name, d.state.value, d.memory_kib, d.max_memory_kib,
                      d.vcpus, d.os_type, d.load, d.cpu_ns, d.since,
                      json.dumps([asdict(x) for x in d.disks]),
                      json.dumps([asdict(x) for x in d.nics]), d.vcpu_limit, d.sched_weight,
                      d.sched_cap, json.dumps(asdict(d.metadata)),
                      json.dumps(d.vcpu_ns) if d.vcpu_ns else None) for d in domains],
                )
                if all_definitions:
                    db.execute("DELETE FROM definitions")
                db.executemany("DELETE FROM definitions WHERE uuid = ?",
                               [(u,) for u in undefined])
                # by UUID first: a change may hand a name from one definition to another
                db.executemany("DELETE FROM definitions WHERE uuid = ?",
                               [(d.uuid,) for d in definitions])
                db.executemany(
                    "INSERT INTO definitions (uuid, name, memory_kib, max_memory_kib, vcpus,"
                    " os_type, load, disks, nics, max_vcpus, sched_weight, sched_cap,"
                    " metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(d.uuid, d.name, d.memory_kib, d.max_memory_kib, d.vcpus, d.os_type,
                      d.load, json.dumps([asdict(x) for x in d.disks]),
                      json.dumps([asdict(x) for x in d.nics]), d.vcpu_limit, d.sched_weight,
                      d.sched_cap, json.dumps(asdict(d.metadata))) for d in definitions],
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
                     ("daemon_epoch", str(daemon_epoch))]
                    + ([] if booted_at is None else [("booted_at", repr(booted_at))]),
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


def _settings(max_vcpus: int | None, weight: int | None, cap: int | None,
              metadata: str | None) -> dict[str, Any]:
    """A row's maximum vCPUs, scheduler share and metadata, as fields; a row written
    before they were stored (NULL) gets the defaults (0: as many vCPUs as are online)."""
    return {"max_vcpus": 0 if max_vcpus is None else max_vcpus,
            "sched_weight": 256 if weight is None else weight,
            "sched_cap": 0 if cap is None else cap,
            "metadata": DomainMetadata() if metadata is None else metadata_from_json(
                json.loads(metadata))}


def _with_vcpu_times(dom: LiveDomain, vcpu_ns: str | None) -> LiveDomain:
    """``dom`` with a row's per-vCPU times; a row written before they were stored
    (NULL) gets its CPU time shared evenly among its vCPUs online (the host then
    reported about that). ValueError when they are not a list (or no vCPU is online)."""
    if dom.vcpus < 1:
        raise ValueError(f"domain {dom.name!r} has {dom.vcpus} vCPUs online")
    if vcpu_ns is None:
        return replace(dom, vcpu_ns=even_vcpu_times(dom.cpu_ns, dom.vcpus, dom.vcpu_limit))
    times = json.loads(vcpu_ns)
    if not isinstance(times, list):
        raise ValueError(f"vCPU times of {dom.name!r} are not a list")
    return replace(dom, vcpu_ns=tuple(times))


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
