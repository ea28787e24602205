"""libvirt's listing filters (virConnectListAllDomains, virConnectGetAllDomainStats),
over xvirt's samples (the statistics records themselves: _stats.py).

What xvirt knows decides each filter: running domains are active, defined and
shut-off ones inactive (and persistent); a running domain is persistent when it
has a definition (asked only when a filter needs it); xvirt domains have no
managed save image, autostart, snapshot or checkpoint, so those filters keep all
(NO_*) or none.
"""

from __future__ import annotations

from xvirt.compat import _constants as c

__all__ = [
    "LIST_FLAGS",
    "STATE_BITS",
    "STATS_FILTERS",
    "STATS_FLAGS",
    "Candidate",
    "keep",
    "restricts_persistence",
]

STATE_BITS = (c.VIR_CONNECT_LIST_DOMAINS_RUNNING | c.VIR_CONNECT_LIST_DOMAINS_PAUSED
               | c.VIR_CONNECT_LIST_DOMAINS_SHUTOFF | c.VIR_CONNECT_LIST_DOMAINS_OTHER)
_ACTIVITY = c.VIR_CONNECT_LIST_DOMAINS_ACTIVE | c.VIR_CONNECT_LIST_DOMAINS_INACTIVE
_PERSISTENCE = c.VIR_CONNECT_LIST_DOMAINS_PERSISTENT | c.VIR_CONNECT_LIST_DOMAINS_TRANSIENT
_ABSENT_FEATURES = {  # "has it" bit -> "has not" bit; no xvirt domain has any
    c.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE: c.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE,
    c.VIR_CONNECT_LIST_DOMAINS_AUTOSTART: c.VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART,
    c.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT: c.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT,
    c.VIR_CONNECT_LIST_DOMAINS_HAS_CHECKPOINT: c.VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT,
}
LIST_FLAGS = STATE_BITS | _ACTIVITY | _PERSISTENCE | sum(
    has | has_not for has, has_not in _ABSENT_FEATURES.items())

# getAllDomainStats takes the same filter bits (the same values) and three of its own.
STATS_FILTERS = STATE_BITS | _ACTIVITY | _PERSISTENCE
STATS_FLAGS = (STATS_FILTERS | c.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
               | c.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING
               | c.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS)


class Candidate:
    """A domain as the filters see it."""

    __slots__ = ("active", "persistent", "state")

    def __init__(self, *, active: bool, persistent: bool, state: int | None) -> None:
        self.active = active
        self.persistent = persistent
        self.state = state  # libvirt's virDomainState; None when not asked for


def _pair(flags: int, yes: int, no: int, value: bool) -> bool:
    """libvirt's rule for a pair of filter bits: either, or both, keeps all."""
    if not _restricts(flags, yes, no):
        return True
    return bool(flags & yes) == value


def restricts_persistence(flags: int) -> bool:
    """Whether ``flags`` keep persistent domains only, or transient ones only."""
    return _restricts(flags, c.VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
                      c.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)


def _restricts(flags: int, yes: int, no: int) -> bool:
    return bool(flags & yes) != bool(flags & no)


def keep(flags: int, dom: Candidate) -> bool:
    """Whether a domain passes ``flags``, with libvirt's semantics (each group
    restricts only when one of its bits is set)."""
    if not _pair(flags, c.VIR_CONNECT_LIST_DOMAINS_ACTIVE,
                 c.VIR_CONNECT_LIST_DOMAINS_INACTIVE, dom.active):
        return False
    if not _pair(flags, c.VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
                 c.VIR_CONNECT_LIST_DOMAINS_TRANSIENT, dom.persistent):
        return False
    for has, has_not in _ABSENT_FEATURES.items():
        if not _pair(flags, has, has_not, False):
            return False
    if flags & STATE_BITS:
        state = dom.state if dom.active else c.VIR_DOMAIN_SHUTOFF
        match = {
            c.VIR_DOMAIN_RUNNING: c.VIR_CONNECT_LIST_DOMAINS_RUNNING,
            c.VIR_DOMAIN_PAUSED: c.VIR_CONNECT_LIST_DOMAINS_PAUSED,
            c.VIR_DOMAIN_SHUTOFF: c.VIR_CONNECT_LIST_DOMAINS_SHUTOFF,
        }.get(state if state is not None else -1, c.VIR_CONNECT_LIST_DOMAINS_OTHER)
        return bool(flags & match)
    return True
