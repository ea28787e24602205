"""What the tools print, as pure functions of facts already fetched.

Text follows virsh's layouts byte for byte (libvirt 9.0 ``vshTable`` and
``dominfo``), so eyes and scripts used to virsh read xvirt the same way; JSON
uses xvirt's own names and units, which are stable. A state has one vocabulary
everywhere: virsh's word (:func:`state_word`, in text and JSON alike) and, in
``xvirt top``'s state column, virt-top's letter for that same word
(:func:`state_letter`). No I/O here, so tests can pin every character.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

import xvirt

__all__ = [
    "DOMAIN_KEYS",
    "STATE_LETTERS",
    "STATE_WORDS",
    "VIRSH_WORDS",
    "cpu_seconds",
    "display_width",
    "domain_dict",
    "domid_text",
    "dominfo_text",
    "list_text",
    "render_table",
    "safe_text",
    "state_letter",
    "state_word",
    "to_json",
]

#: virsh's word for each of libvirt's domain states (libvirt 9.0
#: ``virshDomainStateToString``, NOSTATE aside) with virt-top's letter for it (its
#: ``S`` column, ``show_state``): the one vocabulary of states xvirt prints.
VIRSH_WORDS: Final[Mapping[str, str]] = MappingProxyType({
    "running": "R",
    "idle": "S",
    "paused": "P",
    "in shutdown": "D",
    "shut off": "O",
    "crashed": "X",
    "pmsuspended": "M",
})

#: virsh's word for each state, as libvirt's xend driver (and xvirt's libvirt face)
#: reads Xen's flags: shut down (``s``) is SHUTOFF, dying (``d``) is SHUTDOWN, on its
#: way out; blocked is virsh's ``idle``. Used for text and JSON alike.
STATE_WORDS: Final[Mapping[xvirt.DomainState, str]] = MappingProxyType(
    {
        xvirt.DomainState.RUNNING: "running",
        xvirt.DomainState.BLOCKED: "idle",
        xvirt.DomainState.PAUSED: "paused",
        xvirt.DomainState.SHUTDOWN: "shut off",
        xvirt.DomainState.CRASHED: "crashed",
        xvirt.DomainState.DYING: "in shutdown",
        xvirt.DomainState.SHUTOFF: "shut off",
    }
)

#: virt-top's letter for each state: the letter of its virsh word, so top and virsh agree.
STATE_LETTERS: Final[Mapping[xvirt.DomainState, str]] = MappingProxyType(
    {state: VIRSH_WORDS[word] for state, word in STATE_WORDS.items()})

#: The keys of a domain in JSON output, in output order. Scripts rely on them.
DOMAIN_KEYS: Final = (
    "id",
    "name",
    "uuid",
    "state",
    "memory_kib",
    "max_memory_kib",
    "vcpus",
    "cpu_time_ns",
)


#: One domain as a tool shows it: who it is and what it is doing.
DomainView = xvirt.DomainSample


def state_word(state: xvirt.DomainState) -> str:
    """The word virsh prints for ``state`` (``blocked`` is virsh's ``idle``)."""
    return STATE_WORDS[state]


def state_letter(state: xvirt.DomainState) -> str:
    """The letter virt-top shows for ``state`` (R, S, P, D, O, X)."""
    return STATE_LETTERS[state]


def safe_text(text: str) -> str:
    """``text`` with unprintable characters escaped, as virsh's table does, so a
    name can never break a line or hide part of the output."""
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2,
    combining marks 0, so columns stay aligned for any name."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table laid out as libvirt's vshTable does.

    Each cell is preceded by one space and padded to its column's width plus
    two (the last cell is not padded); the rule under the header has width + 3
    dashes per column. Cells are escaped with :func:`safe_text`.
    """
    table = [[safe_text(cell) for cell in header]]
    table.extend([safe_text(cell) for cell in row] for row in rows)
    if any(len(row) != len(header) for row in table):
        raise ValueError("every row must have one cell per header column")
    widths = [max(display_width(row[i]) for row in table) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts: list[str] = []
        for i, cell in enumerate(row):
            parts.append(" " + cell)
            if i < len(row) - 1:
                parts.append(" " * (widths[i] - display_width(cell) + 2))
        return "".join(parts) + "\n"

    rule = "".join("-" * (w + 3) for w in widths) + "\n"
    return line(table[0]) + rule + "".join(line(row) for row in table[1:])


def list_text(views: Iterable[DomainView]) -> str:
    """``xvirt list`` output: virsh's table and the blank line virsh ends every command with."""
    rows = [(domid_text(v.identity.id), v.identity.name, state_word(v.info.state))
            for v in views]
    return render_table(("Id", "Name", "State"), rows) + "\n"


def domid_text(domid: int) -> str:
    """An ID as virsh prints it: ``-`` for a domain that is not running (-1)."""
    return "-" if domid < 0 else str(domid)


def cpu_seconds(cpu_time_ns: int) -> str:
    """CPU time as virsh's dominfo prints it: seconds with one decimal and ``s``."""
    return f"{cpu_time_ns / 1e9:.1f}s"


def dominfo_text(view: DomainView) -> str:
    """``xvirt dominfo`` output: virsh's ``Label: value`` lines (label padded to 15),
    only the fields xvirt really knows, then virsh's closing blank line. As virsh,
    a domain that has used no CPU time (one not running) has no ``CPU time`` line."""
    ident, info = view.identity, view.info
    fields = (
        ("Id:", domid_text(ident.id)),
        ("Name:", safe_text(ident.name)),
        ("UUID:", ident.uuid),
        ("State:", state_word(info.state)),
        ("CPU(s):", str(info.vcpus)),
        *((("CPU time:", cpu_seconds(info.cpu_time_ns)),) if info.cpu_time_ns else ()),
        ("Max memory:", f"{info.max_memory_kib} KiB"),
        ("Used memory:", f"{info.memory_kib} KiB"),
    )
    return "".join(f"{label:<15} {value}\n" for label, value in fields) + "\n"


def domain_dict(view: DomainView) -> dict[str, str | int | None]:
    """A domain for JSON: xvirt's names and units, ``state`` in virsh's word as the
    text says it (``id`` null for a domain that is not running)."""
    ident, info = view.identity, view.info
    values: tuple[str | int | None, ...] = (
        None if ident.id < 0 else ident.id,
        ident.name,
        ident.uuid,
        state_word(info.state),
        info.memory_kib,
        info.max_memory_kib,
        info.vcpus,
        info.cpu_time_ns,
    )
    return dict(zip(DOMAIN_KEYS, values, strict=True))


def to_json(value: object) -> str:
    """Indented JSON with a final newline; ASCII-only so any terminal or pipe takes it."""
    return json.dumps(value, indent=2) + "\n"
