"""The seam between a connection and whatever answers its identity questions.

``Connection`` and ``Domain`` ask only what :class:`Lookup` states, so the
identity cache (cache.py) and 2006 mode (direct.py, ``?cache=off``) can stand
in for each other without either inheriting from the other: each keeps only
the state its own way of answering needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from xvirt.model import DomainInfo, Identity, Survey
from xvirt.planes import Census, Resolution, TableSnapshot

__all__ = ["CacheCounts", "Lookup"]


@dataclass(frozen=True, slots=True)
class CacheCounts:
    """What a lookup has answered from memory and what it had to ask for (ConnStats)."""

    hits: int
    misses: int
    evictions: int
    size: int


class Lookup(Protocol):
    """What the connection asks of its identity source; thread-safe, one per connection.

    Every identity returned held, all three parts together, at one instant
    inside the call (C1); NoDomainError means no such domain at such an instant.
    """

    def counts(self) -> CacheCounts:
        """Hits, misses, evictions and entries so far; no I/O."""
        ...

    def snapshot(self) -> TableSnapshot:
        """One data-plane snapshot of every live domain, taken in this call."""
        ...

    def census(self) -> Census:
        """Who is alive (ID, UUID) and the host's generation, from one data-plane call."""
        ...

    def list_ids(self) -> list[int]:
        """The IDs of the live domains at one instant, from one data-plane call where the
        driver has one cheaper than a census (two when it finds the host changed)."""
        ...

    def survey(self) -> Survey:
        """Every live domain with identity and info, or why its info is missing; never partial."""
        ...

    def lookup_by_id(self, domid: int) -> Identity:
        """The domain holding ``domid`` now; NoDomainError when none does."""
        ...

    def lookup_by_name(self, name: str) -> Identity:
        """The domain named ``name`` now; NoDomainError when none is."""
        ...

    def current(self, uuid: str) -> Identity:
        """The validated identity of the domain with this UUID (C3); NoDomainError once gone."""
        ...

    def info(self, uuid: str) -> DomainInfo:
        """Fresh runtime info of the domain with this UUID, checked to be that domain's."""
        ...

    def domid_hint(self, uuid: str) -> int:
        """An ID to aim an act-if-identity request at (the host checks the UUID)."""
        ...

    def relocate(self, uuid: str, missed: int) -> int:
        """Where the domain is now, found not to be at ``missed``; NoDomainError when gone."""
        ...

    def merge(self, answer: Resolution) -> None:
        """Take in a control-plane answer obtained elsewhere (e.g. restore); no I/O."""
        ...

    def name_hint(self, uuid: str) -> str | None:
        """The last name known for this UUID, even if the domain is gone; no I/O."""
        ...
