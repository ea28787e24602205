"""The pure formatting functions, pinned against real virsh captures where virsh has a layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import xvirt
from xvirt.tools import format as fmt

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "libvirt"
VIRSH = REALDATA / "virsh-test-default"

# libvirt's test:///default domain, as its README describes it.
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def capture(name: str) -> str:
    path = VIRSH / name
    if not path.exists():
        pytest.skip(f"real capture {path} is not available")
    return path.read_text(encoding="utf-8")


def view(
    domid: int,
    name: str,
    state: xvirt.DomainState = xvirt.DomainState.RUNNING,
    *,
    uuid: str = TEST_UUID,
    memory_kib: int = 2097152,
    max_memory_kib: int = 8388608,
    vcpus: int = 2,
    cpu_time_ns: int = 0,
) -> fmt.DomainView:
    return fmt.DomainView(
        xvirt.Identity(uuid, name, domid),
        xvirt.DomainInfo(state, memory_kib, max_memory_kib, vcpus, cpu_time_ns),
    )


# -- state words ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "word"),
    [
        (xvirt.DomainState.RUNNING, "running"),
        (xvirt.DomainState.BLOCKED, "idle"),
        (xvirt.DomainState.PAUSED, "paused"),
        (xvirt.DomainState.SHUTDOWN, "shut off"),
        (xvirt.DomainState.CRASHED, "crashed"),
        (xvirt.DomainState.DYING, "in shutdown"),
    ],
)
def test_state_words_are_virshs(state: xvirt.DomainState, word: str) -> None:
    assert fmt.state_word(state) == word


def test_every_state_has_a_word() -> None:
    assert set(fmt.STATE_WORDS) == set(xvirt.DomainState)
    assert set(fmt.STATE_LETTERS) == set(xvirt.DomainState)


#: virsh's words by libvirt's virDomainState code (libvirt 9.0 virshDomainStateToString).
VIRSH_WORD_OF_CODE = {1: "running", 2: "idle", 3: "paused", 4: "in shutdown", 5: "shut off",
                      6: "crashed", 7: "pmsuspended"}
#: virt-top's letters by the same codes (virt-top's show_state).
VIRT_TOP_LETTER_OF_CODE = {1: "R", 2: "S", 3: "P", 4: "D", 5: "O", 6: "X", 7: "M"}


@pytest.mark.parametrize("state", list(xvirt.DomainState))
def test_a_state_reads_as_virsh_reads_it_through_the_libvirt_face(
        state: xvirt.DomainState) -> None:
    """virsh on ``xvirt compat`` sees the face's code for a state: xvirt's word and top's
    letter are that code's, so xvirt, virsh and virt-top never name a state apart."""
    from xvirt.libvirt_api.states import LIBVIRT_STATE_OF

    code = LIBVIRT_STATE_OF[state]
    assert fmt.state_word(state) == VIRSH_WORD_OF_CODE[code]
    assert fmt.state_letter(state) == VIRT_TOP_LETTER_OF_CODE[code]


def test_the_vocabulary_is_virshs_words_and_virt_tops_letters() -> None:
    assert dict(fmt.VIRSH_WORDS) == {VIRSH_WORD_OF_CODE[c]: VIRT_TOP_LETTER_OF_CODE[c]
                                     for c in VIRSH_WORD_OF_CODE}
    assert set(fmt.STATE_WORDS.values()) <= set(fmt.VIRSH_WORDS)


@pytest.mark.parametrize("state", list(xvirt.DomainState))
def test_json_says_the_state_in_the_words_the_text_does(state: xvirt.DomainState) -> None:
    domain = view(7, "web1", state)
    word = fmt.domain_dict(domain)["state"]
    assert word == fmt.state_word(state)
    assert f" {word}\n" in fmt.list_text([domain])
    assert f"State:          {word}\n" in fmt.dominfo_text(domain)


# -- list table -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["list.stdout", "list-all.stdout"])
def test_list_text_is_byte_identical_to_virsh(name: str) -> None:
    assert fmt.list_text([view(1, "test")]) == capture(name)


def test_empty_list_keeps_header_rule_and_blank_line() -> None:
    # Widths come from the header alone: (2 + 3) + (4 + 3) + (5 + 3) dashes.
    assert fmt.list_text([]) == " Id   Name   State\n" + "-" * 20 + "\n\n"


def test_columns_grow_with_the_longest_cell() -> None:
    text = fmt.list_text(
        [
            view(0, "Domain-0"),
            view(7, "a-rather-long-name", xvirt.DomainState.DYING),
            view(12345, "x", xvirt.DomainState.PAUSED),
        ]
    )
    assert text.splitlines() == [
        " Id      Name                 State",
        "-" * 43,  # (5 + 3) + (18 + 3) + (11 + 3)
        " 0       Domain-0             running",
        " 7       a-rather-long-name   in shutdown",
        " 12345   x                    paused",
        "",
    ]


def test_wide_characters_count_two_columns() -> None:
    lines = fmt.list_text([view(1, "日本"), view(2, "abc")]).splitlines()
    # "日本" is 4 columns wide, so "State" starts where it would after a 4-char name.
    assert lines[0] == " Id   Name   State"
    assert lines[2] == " 1    日本   running"
    assert lines[3] == " 2    abc    running"


def test_unprintable_characters_are_escaped_not_printed() -> None:
    text = fmt.list_text([view(1, "evil\u2028name\x85")])
    assert "\u2028" not in text and "\x85" not in text
    assert " 1    evil\\u2028name\\x85   running" in text.splitlines()


def test_render_table_refuses_ragged_rows() -> None:
    with pytest.raises(ValueError, match="one cell per header column"):
        fmt.render_table(("a", "b"), [("1",)])


# -- dominfo ------------------------------------------------------------------------


def test_dominfo_lines_are_virshs_lines() -> None:
    """Every line we print is, character for character, the line virsh prints for
    the same facts, in the same order (virsh shows more fields we do not know)."""
    real = capture("dominfo-test.stdout").splitlines()
    ours = fmt.dominfo_text(view(1, "test", cpu_time_ns=1795537796_700000000)).splitlines()
    assert ours[-1] == "" and real[-1] == ""
    positions = [real.index(line) for line in ours[:-1]]
    assert positions == sorted(positions)
    assert [line.split(":")[0] for line in ours[:-1]] == [
        "Id",
        "Name",
        "UUID",
        "State",
        "CPU(s)",
        "CPU time",
        "Max memory",
        "Used memory",
    ]


def test_dominfo_shows_state_word_and_memory() -> None:
    text = fmt.dominfo_text(
        view(
            3,
            "db1",
            xvirt.DomainState.BLOCKED,
            memory_kib=1024,
            max_memory_kib=4096,
            vcpus=4,
            cpu_time_ns=2_260_000_000,
        )
    )
    assert text == (
        "Id:             3\n"
        "Name:           db1\n"
        f"UUID:           {TEST_UUID}\n"
        "State:          idle\n"
        "CPU(s):         4\n"
        "CPU time:       2.3s\n"
        "Max memory:     4096 KiB\n"
        "Used memory:    1024 KiB\n"
        "\n"
    )


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0.0s"), (49_999_999, "0.0s"), (50_000_001, "0.1s"), (61_990_000_000, "62.0s")],
)
def test_cpu_seconds_has_one_decimal(ns: int, text: str) -> None:
    assert fmt.cpu_seconds(ns) == text


# -- JSON ----------------------------------------------------------------------------


def test_domain_dict_has_stable_keys_and_xvirt_values() -> None:
    d = fmt.domain_dict(
        view(
            5,
            "web1",
            xvirt.DomainState.BLOCKED,
            memory_kib=512,
            max_memory_kib=1024,
            vcpus=3,
            cpu_time_ns=42,
        )
    )
    assert list(d) == list(fmt.DOMAIN_KEYS)
    assert d == {
        "id": 5,
        "name": "web1",
        "uuid": TEST_UUID,
        "state": "idle",  # virsh's word, as the text says it
        "memory_kib": 512,
        "max_memory_kib": 1024,
        "vcpus": 3,
        "cpu_time_ns": 42,
    }


def test_to_json_round_trips_any_name() -> None:
    value = [fmt.domain_dict(view(1, '日本\u2028"quoted"'))]
    text = fmt.to_json(value)
    assert text.endswith("\n") and text.isascii()
    assert json.loads(text) == value
