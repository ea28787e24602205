"""libvirt's numbers and virsh's words for a domain's state and its reason, shared by
``xvirt domstate`` and ``xvirt domstats``.

A state is printed only as :func:`xvirt.tools.format.state_word` says it; libvirt's
number for it (``state.state`` in ``domstats``) is read from that word, so the word and
the number can never disagree. Reasons: xvirt's own hosts do not say why a domain is in
its state, which libvirt calls reason 0, "unknown" (in every state); on a ``libvirt:``
URI libvirt's own reason is asked for, through the connection's libvirt escape hatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

import xvirt
from xvirt.tools import format as fmt

__all__ = ["STATE_CODES", "libvirt_reasons", "reason_word", "state_code"]

#: libvirt's virDomainState number for each of virsh's state words (libvirt 9.0).
STATE_CODES: Final[Mapping[str, int]] = MappingProxyType({
    "running": 1,
    "idle": 2,
    "paused": 3,
    "in shutdown": 4,
    "shut off": 5,
    "crashed": 6,
    "pmsuspended": 7,
})

#: virsh's word for each reason, by libvirt's state number and the reason's number
#: (libvirt 9.0, virsh-domain-monitor.c: virshDomain*Reason).
_REASONS: Final[Mapping[int, tuple[str, ...]]] = MappingProxyType({
    1: ("unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
        "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy",
        "post-copy failed"),
    2: ("unknown",),
    3: ("unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
        "from snapshot", "shutting down", "creating snapshot", "starting up", "post-copy",
        "post-copy failed", "API error"),
    4: ("unknown", "user"),
    5: ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
        "from snapshot", "daemon"),
    6: ("unknown", "panicked"),
    7: ("unknown",),
})

#: libvirt's VIR_DOMAIN_STATS_STATE: the one statistics group libvirt is asked for here.
_STATS_STATE = 1


def state_code(state: xvirt.DomainState) -> int:
    """libvirt's number for ``state``: that of the word virsh prints for it."""
    return STATE_CODES[fmt.state_word(state)]


def reason_word(code: int, reason: int) -> str:
    """virsh's word for reason ``reason`` of libvirt state ``code``; "unknown" for a
    number virsh does not know, as virsh says it."""
    words = _REASONS.get(code, ())
    return words[reason] if 0 <= reason < len(words) else "unknown"


def libvirt_reasons(conn: xvirt.Connection,
                    states: Iterable[tuple[str, xvirt.DomainState]]) -> dict[str, int]:
    """The reason libvirt gives for each ``(uuid, state)`` it agrees on, by UUID, from one
    call; empty on xvirt's own hosts, which give none (reason 0, unknown). A domain
    whose state libvirt reports otherwise (it changed in between) is left out: a reason
    is shown only beside the state it explains."""
    try:
        lconn = conn.libvirt_connection()
    except xvirt.UnsupportedError:
        return {}
    wanted = {uuid: state_code(state) for uuid, state in states}
    if not wanted:
        return {}
    from xvirt.compat import real_libvirt  # the binding the libvirt driver already loaded

    try:
        records = lconn.getAllDomainStats(_STATS_STATE)
    except real_libvirt().libvirtError as exc:
        raise xvirt.OperationFailedError(f"libvirt did not give the domains' state "
                                         f"reasons: {exc}", uri=conn.uri,
                                         op="domstate") from None
    found: dict[str, int] = {}
    for dom, record in records:
        uuid = dom.UUIDString()
        if uuid in wanted and record.get("state.state") == wanted[uuid]:
            found[uuid] = int(record.get("state.reason", 0))
    return found
