"""Any string offered as a domain or image name: shared by the bad-input properties of
every driver."""

from __future__ import annotations

import contextlib

import xvirt


def exercise_name(conn: xvirt.Connection, lookups: tuple[xvirt.Connection, ...],
                  text: str) -> None:
    """Look ``text`` up on each of ``lookups``, then use it as guest ``g0``'s new name and
    as an image name on ``conn``: each either works or raises an xvirt error, and
    ``g0`` keeps its name."""
    for lookup in lookups:
        with contextlib.suppress(xvirt.XvirtError):
            assert lookup.lookup_by_name(text).name == text
    dom = conn.lookup_by_name("g0")
    with contextlib.suppress(xvirt.XvirtError):
        dom.rename(text)
        dom.rename("g0")
    with contextlib.suppress(xvirt.XvirtError):
        dom.save(text)
        assert conn.restore(text) == dom
    with contextlib.suppress(xvirt.XvirtError):
        conn.restore(text)
    assert dom.name == "g0"


def use_name(conn: xvirt.Connection, dom: xvirt.Domain, call: str, text: str) -> None:
    """``text`` given to ``call``: ``rename`` and ``save`` on ``dom``, ``restore`` on
    ``conn``."""
    if call == "rename":
        dom.rename(text)
    elif call == "save":
        dom.save(text)
    else:
        conn.restore(text)
