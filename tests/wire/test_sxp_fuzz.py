"""Fuzzing the S-expression parser: arbitrary bytes and text, mutations of real xend
captures and of the writer's output, in strict and lenient mode.

The contract: ``parse`` returns a tree or raises ProtocolError naming an offset (never
another exception), in bounded time, without keeping memory; what it returns writes
back (``dumps``) to text that parses strictly to the same tree; strict success implies
the same answer leniently. The default run is short and derandomized; with
``XVIRT_LONG_RUN=1`` each target runs ``XVIRT_FUZZ_EXAMPLES`` (default 1,000,000)
random inputs in rounds of fresh Hypothesis engines (scripts/long-run-fuzz).
"""

from __future__ import annotations

import contextlib
import gc
import random
import re
import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from tests.fuzzing import LONG, fuzz, fuzz_settings
from tests.realdata import REALDATA
from xvirt.errors import ProtocolError
from xvirt.wire.sxp import Sx, dumps, join_continuations, parse

PER_INPUT_S = 2.0  # "no hang": a generous bound per input, far above the linear parse time


# -- the oracle -------------------------------------------------------------------------------


_OFFSET = re.compile(r"offset (\d+): ")


def check(data: str | bytes) -> Sx | None:
    """Parse strictly and leniently; check every clause of the contract; the strict tree."""
    results: dict[bool, Sx | None] = {}
    for lenient in (False, True):
        t0 = time.perf_counter()
        try:
            sx: Sx | None = parse(data, lenient=lenient)
        except ProtocolError as e:
            m = _OFFSET.match(e.message)
            assert m is not None, e.message
            assert int(m.group(1)) <= (len(data) if isinstance(data, bytes)
                                       else len(data.encode("utf-8", "surrogatepass")))
            sx = None
        assert time.perf_counter() - t0 < PER_INPUT_S
        if sx is not None:
            again = dumps(sx)
            assert parse(again) == sx
            assert parse(again.encode("utf-8", "surrogatepass")) == sx
        results[lenient] = sx
    if results[False] is not None:
        assert results[True] == results[False]
    return results[False]


def check_round_trip(sx: Sx) -> None:
    """What ``dumps`` writes parses back to the same tree: text, UTF-8 bytes, leniently."""
    text = dumps(sx)
    assert parse(text) == sx
    assert parse(text.encode("utf-8", "surrogatepass")) == sx
    assert parse(text, lenient=True) == sx


def _depth(sx: Sx) -> int:
    depth, stack = 0, [(sx, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, list):
            depth = max(depth, d)
            stack += [(child, d + 1) for child in node]
    return depth


# -- inputs ------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    texts = [
        "(a)", "()", "a", "''", '""', "(a 'b c' \"d'e\")", "('\\x00' '\\u00e9' '\\U0001F600')",
        "(domain (domid 1) (name 'x y') (image (linux (args 'a\\nb'))))", "(xend.err 'boom')",
    ]
    if REALDATA is not None:
        for d in ("domains", "domains-unbalanced"):
            for p in sorted((REALDATA / "xend" / d).glob("*.sexpr")):
                texts.append(join_continuations(p.read_text()))
    return texts


CORPUS = _corpus()
_INTERESTING = [b"(", b")", b"'", b'"', b"\\", b" ", b"\n", b"\x00", b"\\x", b"\\u", b"\\U",
                b"\\x0", b"\\'", b'\\"', b"\xff", b"\xc3", b"\xe2\x82", b"(((", b")))"]

atoms = st.text(max_size=12) | st.sampled_from(
    ["", "a", "'", '"', "\\", "(", ")", " ", "\x00", "\ud800", "é", "\\x41", "a b"])
trees: st.SearchStrategy[Sx] = st.recursive(
    atoms, lambda kids: st.lists(kids, max_size=5), max_leaves=16)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus text or a written tree, then a few byte-level edits."""
    base = draw(st.sampled_from(CORPUS) | trees.map(dumps))
    data = bytearray(base.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 5))
        at = draw(st.integers(0, len(data)))
        if kind == 0:  # insert something the grammar cares about
            data[at:at] = draw(st.sampled_from(_INTERESTING) | st.binary(max_size=4))
        elif kind == 1:  # delete a span
            data[at:at + draw(st.integers(1, 16))] = b""
        elif kind == 2 and at < len(data):  # flip a byte
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == 3:  # truncate
            del data[at:]
        elif kind == 4:  # duplicate a span
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
        else:  # splice in a piece of another corpus text
            other = draw(st.sampled_from(CORPUS)).encode("utf-8")
            i = draw(st.integers(0, len(other)))
            data[at:at] = other[i:i + draw(st.integers(1, 64))]
    return bytes(data)


# -- targets -----------------------------------------------------------------------------------


def test_fuzz_sxp_arbitrary_bytes_and_text() -> None:
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(st.binary(max_size=512) | st.text(max_size=256)
               | st.text(st.sampled_from(list("()'\"\\ \n\x00ab")), max_size=256))
        def one(data: str | bytes) -> None:
            n[0] += 1
            sx = check(data)
            target(float(_depth(sx)) if sx is not None else 0.0, label="depth")
        return one

    fuzz("sxp arbitrary", 600, run, lambda: n[0])


def test_fuzz_sxp_mutations_of_captures_and_writer_output() -> None:
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(mutated(), st.booleans())
        def one(data: bytes, as_text: bool) -> None:
            n[0] += 1
            text: str | bytes = data
            if as_text:
                text = data.decode("utf-8", "surrogateescape")  # lone surrogates too
            sx = check(text)
            target(float(len(dumps(sx))) if sx is not None else 0.0, label="parsed size")
        return one

    fuzz("sxp mutations", 300, run, lambda: n[0])


def test_fuzz_sxp_round_trip_of_every_tree() -> None:
    n = [0]

    def run(k: int) -> Callable[[], None]:
        @fuzz_settings(k)
        @given(trees)
        def one(sx: Sx) -> None:
            n[0] += 1
            check_round_trip(sx)
            target(float(_depth(sx)), label="depth")
        return one

    fuzz("sxp round trip", 200, run, lambda: n[0])


@pytest.mark.parametrize("depth", [1, 99, 100, 101, 5000])
def test_nesting_is_refused_past_the_limit_only(depth: int) -> None:
    tree: Sx = "x"
    for _ in range(depth):
        tree = [tree]
    text = dumps(tree)
    if depth <= 100:
        assert parse(text) == tree
    else:
        with pytest.raises(ProtocolError, match="nested deeper than 100"):
            parse(text)
        with pytest.raises(ProtocolError, match="nested deeper than 100"):
            parse(text[:depth], lenient=True)  # only the openings


# -- no hang, no memory growth --------------------------------------------------------------


def _random_inputs(rng: random.Random, count: int) -> list[bytes]:
    """Mutations without Hypothesis, so that its bookkeeping is not counted as ours."""
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(CORPUS).encode("utf-8"))
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                data[at:at] = rng.choice(_INTERESTING)
            else:
                del data[at:at + rng.randrange(1, 16)]
        out.append(bytes(data))
    return out


def test_parse_keeps_no_memory_across_a_batch() -> None:
    rng = random.Random(8)
    batch = 20_000 if LONG else 200
    inputs = _random_inputs(rng, batch)
    for data in inputs:  # warm up: regex caches, interned strings
        check(data)
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(3 if LONG else 1):
            for data in inputs:
                check(data)
        gc.collect()
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 64 * 1024, f"{current} bytes still held after {batch} inputs"


@pytest.mark.parametrize("text", [
    "(" * 200_000,
    "'" + "\\" * 1_000_000,
    "(" + "'\\x" * 300_000 + "'",
    "a" * 1_000_000 + ")",
    "(" + " '' " * 100_000 + ")",
    "(" + "\\\"" * 400_000,
])
def test_hostile_megabyte_inputs_are_answered_quickly(text: str) -> None:
    for data in (text, text.encode("utf-8")):
        t0 = time.perf_counter()
        for lenient in (False, True):
            with contextlib.suppress(ProtocolError):
                parse(data, lenient=lenient)
        assert time.perf_counter() - t0 < PER_INPUT_S


def test_the_corpus_holds_the_real_captures() -> None:
    if REALDATA is None:
        pytest.skip("no shared/realdata beside the repository")
    assert len(CORPUS) > 20
    strict = [check(t) for t in CORPUS]
    assert sum(sx is not None for sx in strict) >= 20  # the balanced captures parse
