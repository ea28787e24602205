"""xend's S-expression format: one parser, one writer, and record lookups.

The xend driver reads these answers and the daemon writes them, so both sides
share this module and the round-trip law ``parse(dumps(x)) == x`` holds for
every tree of lists and arbitrary unicode strings.

Reading follows libvirt's parser where that is safe and xend's writer
(``sxp.show``) where libvirt was wrong:

- Atoms in single *or* double quotes are understood, and Python-repr escapes
  in them are decoded (``\\n \\t \\r \\\\ \\' \\" \\xNN \\uNNNN \\UNNNNNNNN``;
  any other backslash pair is kept as it is). xend writes ``repr()``, which
  uses double quotes when the text holds a ``'``; libvirt ignored double
  quotes and kept backslashes, which garbled such values.
- Strict by default: our own daemon never sends unbalanced text, so a missing
  ``)`` or text after the expression means a truncated or corrupted answer,
  and it is refused with an error that names the offset. ``lenient=True``
  reproduces libvirt's two tolerances, needed for captures from real xend
  (two of libvirt's own fixtures, ``realdata/xend/domains-unbalanced/``): it
  closes lists still open at the end of input and ignores anything after the
  first complete expression. Nothing else is relaxed.
- A raw NUL is refused in both modes: xend escapes it (``\\x00``), and C
  readers such as libvirt stop at it, so accepting it would make us read
  something other than what they read.

The parser is iterative and linear in the input; depth and size limits turn
hostile input into :class:`ProtocolError`, never ``RecursionError`` or a hang.
Error offsets count bytes when bytes were given and characters for ``str``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeAlias

from xvirt.errors import ProtocolError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "Sx",
    "child",
    "children",
    "dumps",
    "join_continuations",
    "parse",
    "value",
]

Sx: TypeAlias = str | list["Sx"]

MAX_DEPTH = 100
MAX_BYTES = 4 * 1024 * 1024

_SPACE = re.compile(r"[ \t\r\n]*")
_BARE = re.compile(r"[^ \t\r\n()\x00]*")
# The body of a quoted atom: anything but its quote, a backslash or NUL, and
# backslash pairs. It always matches; what stops it says how the atom ended.
_BODY = {
    q: re.compile(rf"[^{q}\\\x00]*(?:\\[^\x00][^{q}\\\x00]*)*") for q in ("'", '"')
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[\s\S])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_SAFE_BARE = re.compile(r"[A-Za-z0-9._:/~-]+")
_DONE = object()


def parse(
    text: str | bytes,
    *,
    lenient: bool = False,
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
) -> Sx:
    """Parse one S-expression; raise ProtocolError naming the offset if malformed."""
    if isinstance(text, bytes | bytearray):
        if len(text) > max_bytes:
            raise ProtocolError(f"offset {max_bytes}: input of {len(text)} bytes exceeds "
                                f"the limit of {max_bytes} bytes")
        try:
            s = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"offset {e.start}: invalid UTF-8 ({e.reason})") from None

        def where(i: int) -> int:  # only called for an error message: O(n) is fine
            return len(s[:i].encode("utf-8"))
    elif isinstance(text, str):
        s = text
        size = len(s) if s.isascii() or len(s) > max_bytes else _utf8_len(s)
        if size > max_bytes:
            raise ProtocolError(f"offset {max_bytes}: input of {size} bytes (UTF-8) exceeds "
                                f"the limit of {max_bytes} bytes")

        def where(i: int) -> int:
            return i
    else:
        raise TypeError(f"parse() takes str or bytes, not {type(text).__name__}")
    return _Parser(s, where).run(lenient, max_depth)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _end(pattern: re.Pattern[str], s: str, pos: int) -> int:
    m = pattern.match(s, pos)
    assert m is not None  # every pattern used here can match the empty string
    return m.end()


class _Parser:
    def __init__(self, s: str, where: Callable[[int], int]) -> None:
        self.s = s
        self.where = where

    def fail(self, pos: int, message: str) -> ProtocolError:
        return ProtocolError(f"offset {self.where(pos)}: {message}")

    def found(self, pos: int) -> str:
        return "end of input" if pos >= len(self.s) else repr(self.s[pos])

    def run(self, lenient: bool, max_depth: int) -> Sx:
        s, n = self.s, len(self.s)
        stack: list[tuple[list[Sx], int]] = []  # open lists and where they opened
        pos = 0
        while True:
            pos = _end(_SPACE, s, pos)
            if pos >= n:
                if not stack:
                    raise self.fail(pos, "expected an S-expression, found end of input")
                if not lenient:
                    opened = self.where(stack[-1][1])
                    raise self.fail(pos, f"expected ')' to close the list opened at offset "
                                    f"{opened}, found end of input")
                result: Sx = stack[0][0]
                break
            c = s[pos]
            if c == "(":
                if len(stack) >= max_depth:
                    raise self.fail(pos, f"lists nested deeper than {max_depth} levels")
                new: list[Sx] = []
                if stack:
                    stack[-1][0].append(new)
                stack.append((new, pos))
                pos += 1
                continue
            if c == ")":
                if not stack:
                    raise self.fail(pos, "expected an S-expression, found ')' with no list open")
                done = stack.pop()[0]
                pos += 1
                if stack:
                    continue
                result = done
                break
            atom, pos = self.atom(pos)
            if not stack:
                result = atom
                break
            stack[-1][0].append(atom)
        if not lenient:
            end = _end(_SPACE, s, pos)
            if end < n:
                raise self.fail(end, "expected end of input after the complete expression, "
                                f"found {self.found(end)}")
        return result

    def atom(self, pos: int) -> tuple[str, int]:
        """Read the atom at ``pos`` (not whitespace or a parenthesis); return it and its end."""
        s = self.s
        q = s[pos]
        if q not in "'\"":
            end = _end(_BARE, s, pos)
            if end < len(s) and s[end] == "\x00":
                raise self.fail(end, _NUL)
            return s[pos:end], end
        end = _end(_BODY[q], s, pos + 1)
        stop = end + 1 if end < len(s) and s[end] == "\\" else end  # backslash before NUL
        if stop < len(s) and s[stop] == "\x00":
            raise self.fail(stop, _NUL)
        if end >= len(s) or s[end] != q:
            raise self.fail(len(s), f"expected {q!r} to close the quoted atom opened at offset "
                            f"{self.where(pos)}, found end of input")
        body = s[pos + 1 : end]
        after = end + 1
        if after < len(s) and s[after] not in " \t\r\n()":
            raise self.fail(after, "expected whitespace or a parenthesis after the quoted atom "
                            f"opened at offset {self.where(pos)}, found {self.found(after)}")
        return (_ESCAPE.sub(_unescape, body) if "\\" in body else body), after


_NUL = "NUL character in input (xend writes it as \\x00)"


def _unescape(m: re.Match[str]) -> str:
    e = m.group(1)
    if e in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[e]
    if len(e) > 1:
        code = int(e[1:], 16)
        if code <= 0x10FFFF:
            return chr(code)
    return m.group(0)


def dumps(sx: Sx) -> str:
    """Write ``sx`` the way xend's ``sxp.show`` does: one line, single spaces.

    Unlike xend, the empty string is written ``''`` (xend wrote nothing, which
    is where ``(bootloader )`` comes from) so that it reads back as itself.
    """
    parts: list[str] = []
    stack: list[Iterator[Sx]] = [iter((sx,))]
    spaced = False
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
            if stack:
                parts.append(")")
                spaced = True
            continue
        if spaced:
            parts.append(" ")
        if isinstance(item, str):
            parts.append(item if _SAFE_BARE.fullmatch(item) else repr(item))
            spaced = True
        elif isinstance(item, list):
            parts.append("(")
            stack.append(iter(item))
            spaced = False
        else:
            raise TypeError(f"an S-expression holds str and list, not {type(item).__name__}")
    return "".join(parts)


def children(sx: Sx, key: str) -> list[list[Sx]]:
    """Every sub-list of ``sx`` whose head atom is ``key``, in order."""
    if isinstance(sx, str):
        return []
    return [item for item in sx if isinstance(item, list) and item and item[0] == key]


def child(sx: Sx, key: str) -> list[Sx] | None:
    """The first sub-list of ``sx`` whose head atom is ``key``, as libvirt looked up."""
    if isinstance(sx, str):
        return None
    for item in sx:
        if isinstance(item, list) and item and item[0] == key:
            return item
    return None


def value(sx: Sx, path: str) -> str | None:
    """The first atom after the head at ``path`` (``"domain/image/hvm/kernel"``).

    The first path element names ``sx`` itself. A key with no value, as in
    ``(bootloader )``, gives ``""`` (present but empty); an absent key, or one
    whose first value is a list, gives None.
    """
    head, *keys = path.split("/")
    if isinstance(sx, str) or not sx or sx[0] != head:
        return None
    node: list[Sx] = sx
    for key in keys:
        found = child(node, key)
        if found is None:
            return None
        node = found
    if len(node) < 2:
        return ""
    first = node[1]
    return first if isinstance(first, str) else None


def join_continuations(text: str) -> str:
    """Undo the line wrapping of libvirt's test fixtures: drop every backslash-newline.

    libvirt's test loader did this before parsing; a wrap can fall inside a
    quoted value, so it must happen before tokenising. Never apply it to what
    xend sent: there a backslash-newline inside quotes is data.
    """
    return text.replace("\\\n", "")
