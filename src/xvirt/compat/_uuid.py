"""libvirt's UUID parsing (virUUIDParse), byte for byte, so a string is accepted or
refused exactly as ``lookupByUUIDString`` on real libvirt does: dashes and spaces
between digit pairs, GLib's ASCII whitespace around, 32 hex digits."""

from __future__ import annotations

__all__ = ["parse"]

_HEX = frozenset(b"0123456789abcdefABCDEF")
_SPACE = frozenset(b" \t\n\f\r")  # g_ascii_isspace: not \v
_SEPARATORS = frozenset(b"- ")


def parse(text: str) -> str | None:
    """The canonical UUID, or None when libvirt would say "Invalid UUID".

    Encodes as the binding does (UTF-8; a lone surrogate raises UnicodeEncodeError,
    a NUL raises ValueError, both before libvirt is reached)."""
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError("embedded null character")
    i, n = 0, len(raw)
    while i < n and raw[i] in _SPACE:
        i += 1
    digits: list[str] = []
    while len(digits) < 16:
        if i >= n:
            return None
        if raw[i] in _SEPARATORS:
            i += 1
            continue
        if raw[i] not in _HEX or i + 1 >= n or raw[i + 1] not in _HEX:
            return None
        digits.append(raw[i:i + 2].decode("ascii").lower())
        i += 2
    if any(b not in _SPACE for b in raw[i:]):
        return None
    d = "".join(digits)
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}"
