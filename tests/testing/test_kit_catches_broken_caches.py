"""The conformance kit must fail on caches that break the contract: a kit that
cannot fail proves nothing. Each test breaks the real cache in one known way."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import Phase

from xvirt.cache import IdentityCache
from xvirt.model import EventKind, Identity
from xvirt.planes import HostEvent
from xvirt.testing import SimTarget, check_driver

_check = IdentityCache._check
_apply = IdentityCache._apply


def _trust_the_id_index(self: IdentityCache, domid: int, expect: str | None) -> Identity | None:
    """The 2006 patch: answer from the ID index without asking the data plane."""
    with self._lock:
        uuid = self._by_id.get(domid)
        entry = self._entries.get(uuid) if uuid is not None else None
        if entry is not None and entry.name is not None and expect in (None, uuid):
            assert uuid is not None
            return Identity(uuid, entry.name, domid)
    return _check(self, domid, expect)


def _ignore_renames(self: IdentityCache, event: HostEvent) -> None:
    if event.kind is not EventKind.RENAMED:
        _apply(self, event)


def _never_flush(self: IdentityCache, boot_id: str, generation: int) -> None:
    if boot_id != self._boot:
        self._boot, self._gen = boot_id, generation
    elif generation > self._gen:
        self._catch_up()


@pytest.mark.parametrize(
    ("method", "broken"),
    [("_check", _trust_the_id_index), ("_apply", _ignore_renames), ("_sync", _never_flush)],
)
def test_kit_catches(
    monkeypatch: pytest.MonkeyPatch, method: str, broken: Callable[..., object]
) -> None:
    monkeypatch.setattr(IdentityCache, method, broken)
    with pytest.raises(Exception) as caught:  # hypothesis may group several failures
        check_driver(
            lambda: SimTarget(max_domid=6),
            max_examples=40,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
    text = repr(caught.value) + "".join(
        repr(e) for e in getattr(caught.value, "exceptions", ())
    )
    assert "violated" in text, text
