"""2006 mode (``?cache=off``): every lookup is one control-plane request, as before xvirt.

It exists so the old behaviour can be measured beside the cache on the same
host and driver. It behaves as libvirt's xend driver did: opening the
connection asks the daemon for the node record, each lookup by ID, name or
UUID asks the daemon for that domain's record, and a handle remembers the ID
it was found at to aim data-plane calls, asking again when the ID no longer
holds that UUID. It stays correct (every answer is checked by UUID); it is
only slow.
"""

from __future__ import annotations

import threading

from xvirt.drivers.base import Driver
from xvirt.errors import NoDomainError, OperationFailedError
from xvirt.lookup import CacheCounts
from xvirt.model import DomainFailure, DomainInfo, DomainSample, Identity, Survey
from xvirt.planes import Census, Resolution, TableSnapshot

__all__ = ["DirectLookup"]

_TRIES = 4


class DirectLookup:
    """:class:`xvirt.lookup.Lookup` without the cache: it holds only what handles were
    last found as (to aim data-plane calls) and how many requests it made."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._uri = driver.uri
        self._lock = threading.Lock()
        self._seen: dict[str, Identity] = {}  # what handles were last found as
        self._asked = 0
        driver.host_info()  # libvirt's open: GET /xend/node/ for xend_config_format

    def _found(self, answer: Resolution, what: str, **ctx: object) -> Identity:
        with self._lock:
            self._asked += 1
            if not answer.domains:
                raise NoDomainError(f"no domain {what}", uri=self._uri, **ctx)  # type: ignore[arg-type]
            d = answer.domains[0]
            ident = Identity(d.uuid, d.name, d.id)
            self._seen[d.uuid] = ident
            return ident

    def counts(self) -> CacheCounts:
        with self._lock:
            return CacheCounts(0, self._asked, 0, 0)

    def snapshot(self) -> TableSnapshot:
        return self._driver.snapshot()

    def census(self) -> Census:
        return self._driver.census()

    def list_ids(self) -> list[int]:
        ids = self._driver.list_ids()
        return [domid for domid, _ in self.census().members] if ids is None else list(ids)

    def survey(self) -> Survey:
        snap = self._driver.snapshot()
        names = {d.uuid: d.name for d in self._driver.list_all().domains}
        return Survey(
            sorted((DomainSample(Identity(r.uuid, names[r.uuid], r.id), r.info())
                    for r in snap.rows if r.uuid in names), key=lambda s: s.identity.id),
            sorted((DomainFailure(Identity(u.uuid, names[u.uuid], u.id), u.error)
                    for u in snap.unanswered if u.uuid in names), key=lambda f: f.identity.id),
        )

    def lookup_by_id(self, domid: int) -> Identity:
        return self._found(self._driver.resolve(ids=[domid]), f"with ID {domid}", domid=domid)

    def lookup_by_name(self, name: str) -> Identity:
        return self._found(self._driver.resolve_names([name]), f"named {name!r}", name=name)

    def current(self, uuid: str) -> Identity:
        return self._found(self._driver.resolve(uuids=[uuid]), f"with UUID {uuid}", uuid=uuid)

    def info(self, uuid: str) -> DomainInfo:
        domid = self.domid_hint(uuid)
        for _ in range(_TRIES):
            row = self._driver.info_by_id(domid).row
            if row is not None and row.uuid == uuid:
                return row.info()
            domid = self.current(uuid).id  # the ID went to someone else: ask again
        raise OperationFailedError(f"domain {uuid} kept changing ID; try again", uuid=uuid,
                                   uri=self._uri, op="info")

    def domid_hint(self, uuid: str) -> int:
        with self._lock:
            ident = self._seen.get(uuid)
        return ident.id if ident is not None else self.current(uuid).id

    def relocate(self, uuid: str, missed: int) -> int:
        return self.current(uuid).id

    def merge(self, answer: Resolution) -> None:
        with self._lock:
            for d in answer.domains:
                self._seen[d.uuid] = Identity(d.uuid, d.name, d.id)

    def name_hint(self, uuid: str) -> str | None:
        with self._lock:
            ident = self._seen.get(uuid)
        return ident.name if ident is not None else None
