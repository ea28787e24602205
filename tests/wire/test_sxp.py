"""The S-expression parser and writer against xend's captures, xend's writer rules and
hostile input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.realdata import REALDATA
from xvirt.errors import ProtocolError
from xvirt.wire.sxp import (
    MAX_DEPTH,
    Sx,
    child,
    children,
    dumps,
    join_continuations,
    parse,
    value,
)

_ABSENT = pytest.param(None, marks=pytest.mark.skip(reason="realdata/xend is not present"))


def _captures(folder: str) -> list[object]:
    if REALDATA is None:  # pragma: no cover - the captures live beside the project
        return [_ABSENT]
    return [pytest.param(p, id=p.name) for p in sorted((REALDATA / "xend" / folder).iterdir())]


DOMAINS = _captures("domains")
UNBALANCED = _captures("domains-unbalanced")


def _offsets(err: pytest.ExceptionInfo[ProtocolError]) -> list[int]:
    return [int(n) for n in re.findall(r"offset (\d+)", str(err.value))]


# -- the captures ---------------------------------------------------------------------------


def test_all_captures_are_found() -> None:
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    assert len(DOMAINS) == 26
    assert len(UNBALANCED) == 2


@pytest.mark.parametrize("path", DOMAINS)
def test_every_capture_round_trips(path: Path) -> None:
    text = join_continuations(path.read_text())
    sx = parse(text)
    assert isinstance(sx, list) and sx[0] == "domain"
    out = dumps(sx)
    assert "\n" not in out
    assert parse(out) == sx
    assert parse(out.encode()) == sx
    assert dumps(parse(out)) == out
    assert parse(text, lenient=True) == sx


def test_a_continuation_inside_a_quoted_value_is_joined_before_tokenising() -> None:
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    raw = (REALDATA / "xend" / "domains" / "sexpr2xml-pv.sexpr").read_text()
    args = value(parse(join_continuations(raw)), "domain/image/linux/args")
    assert args == (
        " method=http://download.fedora.devel.redhat.com/pub/fedora/linux/"
        "core/test/5.91/x86_64/os  "
    )
    assert "\\" not in dumps(parse(join_continuations(raw)))


def test_the_empty_values_of_the_captures() -> None:
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    domains = REALDATA / "xend" / "domains"

    def load(name: str) -> Sx:
        return parse(join_continuations((domains / name).read_text()))

    crash = load("sexpr2xml-pv-vfb-type-crash.sexpr")
    assert value(crash, "domain/bootloader_args") == ""  # (bootloader_args )
    assert value(crash, "domain/image/linux/kernel") == ""  # (kernel )
    assert child(crash, "cpus") == ["cpus", [[]]]  # (cpus (()))
    assert value(crash, "domain/cpus") is None
    assert value(load("sexpr2xml-fv-empty-kernel.sexpr"), "domain/image/hvm/kernel") == ""
    assert value(crash, "domain/nosuch") is None


@pytest.mark.parametrize("path", UNBALANCED)
def test_unbalanced_captures_are_refused_strictly_and_read_leniently(path: Path) -> None:
    text = path.read_text()
    with pytest.raises(ProtocolError) as err:
        parse(text)
    offsets = _offsets(err)
    assert offsets, str(err.value)
    if path.name == "sexpr2xml-net-routed.sexpr":  # lacks the final ')'
        assert offsets == [len(text), 0]
        assert "expected ')'" in str(err.value) and "end of input" in str(err.value)
    else:  # sexpr2xml-pv-vfb-new.sexpr: one ')' too many
        assert offsets[0] == text.rstrip().rindex(")")
        assert "expected end of input" in str(err.value)
    sx = parse(text, lenient=True)
    assert isinstance(sx, list) and sx[0] == "domain"
    assert value(sx, "domain/name") == "pvtest"
    assert value(sx, "domain/uuid") == "596a5d2171f48fb2e068e2386a5c413e"
    assert len(children(sx, "device")) == 2
    assert parse(dumps(sx)) == sx


# -- syntax ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(a b)", ["a", "b"]),
        ("  (a\t(b c)\r\n())  \n", ["a", ["b", "c"], []]),
        ("atom", "atom"),
        ("()", []),
        ("(a'b c\"d)", ["a'b", 'c"d']),  # quotes inside a bare atom are plain characters
        ("('a b' \"c'd\")", ["a b", "c'd"]),
        ("('(x)' '')", ["(x)", ""]),
        ("(k 'a\\'b' \"q\\\"\")", ["k", "a'b", 'q"']),
        (r"('\n\t\r\\' '\x41\u00e9\U0001F600')", ["\n\t\r\\", "A\u00e9\U0001f600"]),
        (r"('\q\x4\U00110000')", ["\\q\\x4\\U00110000"]),  # unknown escapes stay as they are
        ("(a(b)c)", ["a", ["b"], "c"]),
        ("('a'(b))", ["a", ["b"]]),
        ("(\u00e9t\u00e9 \f)", ["\u00e9t\u00e9", "\f"]),  # only space, tab, CR, LF separate
    ],
)
def test_syntax(text: str, expected: Sx) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "offset", "words"),
    [
        ("", 0, "expected an S-expression, found end of input"),
        ("   \n", 4, "found end of input"),
        (")", 0, "found ')' with no list open"),
        ("(a (b)", 6, "expected ')' to close the list opened at offset 0"),
        ("(a (b c", 7, "close the list opened at offset 3"),
        ("(a 'bc", 6, "to close the quoted atom opened at offset 3"),
        ('(a "b\\"', 7, "quoted atom opened at offset 3"),
        ("(a) b", 4, "expected end of input after the complete expression, found 'b'"),
        ("(a))", 3, "found ')'"),
        ("a b", 2, "expected end of input"),
        ("(k 'v'x)", 6, "expected whitespace or a parenthesis after the quoted atom"),
        ("(a\x00)", 2, "NUL"),
        ("(a b\x00c)", 4, "NUL"),
        ("('a\x00')", 3, "NUL"),
        ("('a\\\x00')", 4, "NUL"),
    ],
)
def test_errors_name_the_offset_and_what_was_expected(text: str, offset: int, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse(text)
    assert _offsets(err)[0] == offset, str(err.value)
    assert words in str(err.value)
    assert str(err.value).startswith(f"offset {offset}: ")


def test_lenient_relaxes_only_the_two_libvirt_quirks() -> None:
    assert parse("(a (b c", lenient=True) == ["a", ["b", "c"]]
    assert parse("(a) junk ) (", lenient=True) == ["a"]
    assert parse("a b", lenient=True) == "a"
    for bad in ("", ")", "(a 'b", "(a\x00)", "(k 'v'x)", "(" * (MAX_DEPTH + 1)):
        with pytest.raises(ProtocolError):
            parse(bad, lenient=True)


def test_text_after_the_expression_is_not_read_leniently() -> None:
    # Neither NUL nor a broken quote after the first expression matters to libvirt.
    assert parse("(a)\x00 'unterminated", lenient=True) == ["a"]


# -- bytes ----------------------------------------------------------------------------------


def test_bytes_are_utf8_and_offsets_count_bytes() -> None:
    assert parse("(n '\u00e9t\u00e9')".encode()) == ["n", "\u00e9t\u00e9"]
    with pytest.raises(ProtocolError) as err:
        parse("(\u00e9\u00e9 'x".encode())  # the quote is character 4 but byte 6
    assert _offsets(err) == [8, 6]
    with pytest.raises(ProtocolError) as err:
        parse("(\u00e9\u00e9 'x")
    assert _offsets(err) == [6, 4]


def test_invalid_utf8_is_refused_at_its_byte_offset() -> None:
    with pytest.raises(ProtocolError) as err:
        parse(b"(abc \xff)")
    assert _offsets(err) == [5]
    assert "UTF-8" in str(err.value)


def test_other_input_types_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse(42)  # type: ignore[arg-type]


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_deep_nesting_is_refused_not_a_recursion_error(size: int) -> None:
    for text in ("(" * size, "(" * size + ")" * size, "(" * size + "a"):
        with pytest.raises(ProtocolError) as err:
            parse(text)
        assert _offsets(err) == [MAX_DEPTH]
        assert "deeper than" in str(err.value)


def test_the_depth_limit_is_exact() -> None:
    ok = "(" * MAX_DEPTH + ")" * MAX_DEPTH
    assert dumps(parse(ok)) == ok
    with pytest.raises(ProtocolError):
        parse("(" + ok + ")")
    assert parse("((a))", max_depth=2) == [["a"]]
    with pytest.raises(ProtocolError):
        parse("((a))", max_depth=1)


def test_deep_trees_are_written_without_recursion() -> None:
    sx: Sx = []
    for _ in range(100_000):
        sx = [sx]
    out = dumps(sx)
    assert out == "(" * 100_001 + ")" * 100_001
    assert dumps(parse(out, max_depth=200_000)) == out  # == on such a tree would recurse


def test_input_beyond_max_bytes_is_refused() -> None:
    assert parse("(" + "a " * 10 + ")", max_bytes=22) == ["a"] * 10
    for text in ("(" + "a " * 10 + ")x", b"(" + b"a " * 10 + b")x"):
        with pytest.raises(ProtocolError) as err:
            parse(text, max_bytes=22)
        assert "limit of 22 bytes" in str(err.value)
    with pytest.raises(ProtocolError):  # 12 characters, but 22 bytes of UTF-8
        parse("(" + "\u00e9" * 10 + ")", max_bytes=21)
    with pytest.raises(ProtocolError):
        parse(b" " * (4 * 1024 * 1024 + 1))


def test_large_inputs_are_read_in_one_pass() -> None:
    # Sizes that would overflow any recursion or quadratic step, and stay under 4 MiB.
    flat = "(" + " ".join(["ab"] * 1_000_000) + ")"
    assert len(parse(flat)) == 1_000_000
    quoted = "('" + "\\\\" * 1_000_000 + "')"
    assert parse(quoted) == ["\\" * 1_000_000]
    assert parse("('" + "\\'" * 1_000_000 + "')") == ["'" * 1_000_000]
    with pytest.raises(ProtocolError):
        parse("('" + "\\'" * 1_000_000)
    with pytest.raises(ProtocolError):
        parse("(" + ")" * 2_000_000)


# -- the writer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sx", "text"),
    [
        (["domain", ["domid", "6"], ["name", "pvtest"]], "(domain (domid 6) (name pvtest))"),
        (["k", "a-b.c_d:e/f~g"], "(k a-b.c_d:e/f~g)"),
        (["k", ""], "(k '')"),
        (["k", "two words"], "(k 'two words')"),
        (["k", "it's"], '(k "it\'s")'),
        (["k", "it's \"q\""], "(k 'it\\'s \"q\"')"),
        (["k", "a\nb\\"], "(k 'a\\nb\\\\')"),
        (["k", "(x)"], "(k '(x)')"),
        (["k", "\u00e9"], "(k '\u00e9')"),
        (["k", "\x00"], "(k '\\x00')"),
        ([[], [[]]], "(() (()))"),
        ("", "''"),
        ("atom", "atom"),
    ],
)
def test_dumps_follows_xend_sxp_show(sx: Sx, text: str) -> None:
    assert dumps(sx) == text
    assert parse(text) == sx


def test_dumps_refuses_what_is_not_an_sexpression() -> None:
    with pytest.raises(TypeError):
        dumps(["memory", 420])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        dumps(["k", None])  # type: ignore[list-item]


# -- lookups --------------------------------------------------------------------------------

RECORD = parse(
    "(domain (domid 6) (name x) (bootloader ) (device (vbd (dev a))) (device (vif (mac m)))"
    " (image (hvm (kernel '') (notes (A 1)))) (name second) (cpus (())))"
)


def test_child_and_children() -> None:
    assert child(RECORD, "domid") == ["domid", "6"]
    assert child(RECORD, "name") == ["name", "x"]  # the first match wins
    assert [d[1] for d in children(RECORD, "device")] == [["vbd", ["dev", "a"]],
                                                           ["vif", ["mac", "m"]]]
    assert child(RECORD, "nosuch") is None
    assert children(RECORD, "nosuch") == []
    assert child("atom", "x") is None
    assert children("atom", "x") == []
    assert children(parse("((domain (a 1)) (domain (a 2)))"), "domain") == [
        ["domain", ["a", "1"]],
        ["domain", ["a", "2"]],
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("domain/domid", "6"),
        ("domain/name", "x"),
        ("domain/bootloader", ""),
        ("domain/image/hvm/kernel", ""),
        ("domain/image/hvm/notes/A", "1"),
        ("domain/device/vbd/dev", "a"),  # the first device
        ("domain/device/vif/mac", None),  # lookup does not search later matches
        ("domain/image", None),  # the value is a list, not an atom
        ("domain/cpus", None),
        ("domain/nosuch", None),
        ("domain/image/linux/kernel", None),
        ("vm/name", None),  # the first element names the list itself
        ("domain", None),
    ],
)
def test_value(path: str, expected: str | None) -> None:
    assert value(RECORD, path) == expected


def test_value_of_atoms_and_empty_lists() -> None:
    assert value("domain", "domain") is None
    assert value([], "domain") is None
    assert value(["domain"], "domain") == ""


def test_join_continuations() -> None:
    assert join_continuations("(a 'b\\\nc')\\\n") == "(a 'bc')"
    assert join_continuations("('a\\\\b' \\x)") == "('a\\\\b' \\x)"


# -- properties -----------------------------------------------------------------------------

_SYNTAX_CHARS = st.sampled_from(list("()'\"\\ \t\r\n\x00\f\x7fx0\u00e9\U0001f600"))
_PIECES = st.one_of(_SYNTAX_CHARS, st.sampled_from(["\\x41", "\\'", "''", '\\"', "\\u00e9"]))
# Strings in the tree include arbitrary unicode (lone surrogates too), empty strings and
# every character and escape-like piece the syntax gives a meaning.
_ATOMS = st.one_of(
    st.text(
        st.one_of(
            st.characters(),
            st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Zl"]),
            _SYNTAX_CHARS,
        )
    ),
    st.lists(_PIECES, max_size=12).map("".join),
    st.just(""),
)
_TREES: st.SearchStrategy[Sx] = st.recursive(
    _ATOMS, lambda inner: st.lists(inner, max_size=6), max_leaves=40
)


@settings(max_examples=1000, deadline=None)
@given(_TREES)
def test_round_trip_law(sx: Sx) -> None:
    text = dumps(sx)
    assert "\n" not in text and "\x00" not in text
    assert parse(text) == sx
    assert parse(text.encode("utf-8")) == sx  # what goes on the wire is valid UTF-8
    assert parse(text, lenient=True) == sx
    assert dumps(parse(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(_TREES, min_size=1, max_size=6))
def test_lenient_closes_what_is_missing_at_the_end(items: list[Sx]) -> None:
    text = dumps(items)
    assert text.endswith(")")
    assert parse(text[:-1], lenient=True) == items
    assert parse(text + " (trailing) junk", lenient=True) == items
    with pytest.raises(ProtocolError):
        parse(text[:-1])


def _parse_or_refuse(data: str | bytes) -> None:
    for lenient in (False, True):
        try:
            sx = parse(data, lenient=lenient, max_depth=20, max_bytes=5000)
        except ProtocolError as e:
            assert re.match(r"offset \d+: ", str(e)), str(e)
        else:
            assert parse(dumps(sx)) == sx


_GARBAGE_CHARS = st.sampled_from(list("()()'\"\\ \n\x00ab"))


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(), st.text(_GARBAGE_CHARS, max_size=200)))
def test_arbitrary_text_parses_or_raises_protocol_error(data: str) -> None:
    _parse_or_refuse(data)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(),
        st.text(_GARBAGE_CHARS, max_size=200).map(str.encode),
        st.binary(max_size=40).map(lambda b: b"(a '" + b + b"')"),
    )
)
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    _parse_or_refuse(data)
