"""The binary encodings both data channels share: state codes and raw UUIDs.

The shared table (``xvirt.wire.table``) and the fast channel
(``xvirt.wire.fastchannel``) both carry a domain's state as one byte and its
UUID (and the host's boot identity) as 16 raw bytes. The codes are explicit, so
reordering ``DomainState`` never changes either format.
"""

from __future__ import annotations

import uuid as uuidlib

from xvirt.errors import InvalidArgumentError
from xvirt.model import DomainState

__all__ = [
    "CODE_STATE",
    "STATE_CODES",
    "TEXT_OF",
    "state_of_code",
    "uuid_from_bytes",
    "uuid_to_bytes",
]

#: State codes shared by the table and the socket channel; 0 means "no domain".
STATE_CODES: dict[DomainState, int] = {
    DomainState.RUNNING: 1,
    DomainState.BLOCKED: 2,
    DomainState.PAUSED: 3,
    DomainState.SHUTDOWN: 4,
    DomainState.CRASHED: 5,
    DomainState.DYING: 6,
    DomainState.SHUTOFF: 7,  # never on the data plane (no ID), but every state has a code
}
#: The state of each code, by index; None at 0 (no domain). Readers index it inline.
CODE_STATE: tuple[DomainState | None, ...] = (
    None, *sorted(STATE_CODES, key=lambda state: STATE_CODES[state])
)
assert all(CODE_STATE[code] is state for state, code in STATE_CODES.items())

_CACHE_MAX = 1 << 16
#: Raw UUID -> its text, for the UUIDs seen lately: readers call
#: ``TEXT_OF.get(raw) or uuid_from_bytes(raw)`` (see ``xvirt.hotpath``).
TEXT_OF: dict[bytes, str] = {}
_bytes_of: dict[str, bytes] = {}


def uuid_from_bytes(raw: bytes) -> str:
    """Dashed lower-case text of 16 raw bytes (cached: the same few recur)."""
    text = TEXT_OF.get(raw)
    if text is None:
        if len(raw) != 16:
            raise ValueError(f"a UUID is 16 bytes, not {len(raw)}")
        h = raw.hex()
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if len(TEXT_OF) >= _CACHE_MAX:
            TEXT_OF.clear()
        TEXT_OF[bytes(raw)] = text
    return text


def uuid_to_bytes(text: str) -> bytes:
    """16 raw bytes of a UUID; raises InvalidArgumentError for anything else."""
    raw = _bytes_of.get(text)
    if raw is None:
        try:
            raw = uuidlib.UUID(text).bytes
        except (ValueError, TypeError, AttributeError):
            raise InvalidArgumentError(f"invalid UUID {text!r}", uuid=str(text)) from None
        if len(_bytes_of) >= _CACHE_MAX:
            _bytes_of.clear()
        _bytes_of[text] = raw
    return raw


def state_of_code(code: int) -> DomainState:
    """The state a code stands for; ValueError for 0 (no domain) or an unknown code."""
    state = CODE_STATE[code] if 0 <= code < len(CODE_STATE) else None
    if state is None:
        raise ValueError(f"unknown domain state code {code}")
    return state
