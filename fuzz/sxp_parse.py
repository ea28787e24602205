"""libFuzzer (atheris) harness: the S-expression parser, the checks of test_sxp_fuzz.

The first byte of an input picks what the rest is:

- 0: bytes, parsed as bytes (strict and lenient, through ``check``);
- 1: bytes decoded with ``surrogateescape`` (lone surrogates included), parsed as text;
- 2: text drawn by the FuzzedDataProvider (any code point), parsed as text;
- 3: a tree drawn by the FuzzedDataProvider, written and parsed back (``check_round_trip``).

``check`` allows only ProtocolError (naming an offset inside the input) out of
``parse``; any other exception, or a broken clause of the contract, is a crash.

    python fuzz/sxp_parse.py -runs=20000 [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import sys

import _harness
import atheris

with _harness.instrumented():
    from tests.wire.test_sxp_fuzz import CORPUS, check, check_round_trip
    from xvirt.wire.sxp import MAX_DEPTH, Sx

_ATOMS = ["", "a", "'", '"', "\\", "(", ")", " ", "\x00", "\ud800", "\u00e9", "\\x41", "a b",
          "\\u00e9", "\\U0001F600", "\n"]


def draw_tree(fdp: atheris.FuzzedDataProvider) -> Sx:
    """A tree of lists and atoms, at most MAX_DEPTH lists deep (deeper is refused by design)."""
    root: list[Sx] = []
    stack = [root]
    while fdp.remaining_bytes() and len(root) < 64:
        op = fdp.ConsumeIntInRange(0, 3)
        if op == 0 and len(stack) <= MAX_DEPTH - 1:
            new: list[Sx] = []
            stack[-1].append(new)
            stack.append(new)
        elif op == 1 and len(stack) > 1:
            stack.pop()
        elif op == 2:
            stack[-1].append(fdp.PickValueInList(_ATOMS))
        else:
            stack[-1].append(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12)))
    if len(root) == 1 and fdp.ConsumeBool():
        return root[0]  # a lone atom or list, not wrapped
    return root


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        check(rest)
    elif mode == 1:
        check(rest.decode("utf-8", "surrogateescape"))
    elif mode == 2:
        fdp = atheris.FuzzedDataProvider(rest)
        check(fdp.ConsumeUnicode(len(rest)))
    else:
        check_round_trip(draw_tree(atheris.FuzzedDataProvider(rest)))


def seeds() -> list[bytes]:
    """The suite's corpus (with the real xend captures when shared/realdata is there),
    as bytes and as text."""
    out = []
    for text in CORPUS:
        raw = text.encode("utf-8", "surrogatepass")
        out += [b"\x00" + raw, b"\x01" + raw]
    out += [b"\x03" + bytes(range(64)), b"\x02(a 'b' \"c\")"]
    return out


if __name__ == "__main__":
    _harness.main("sxp", one_input, seeds(), max_len=4096, work=_harness.scratch("sxp"))
    sys.exit(0)
