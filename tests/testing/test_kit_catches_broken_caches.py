"""The conformance kit must fail on caches that break the contract: a kit that
cannot fail proves nothing. Each test breaks the real cache (or, for defined
domains, the connection or the embedded driver) in one known way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import Phase

from xvirt.cache import IdentityCache
from xvirt.connection import Connection
from xvirt.drivers.embedded import EmbeddedDriver
from xvirt.model import EventKind, Identity
from xvirt.planes import Definition, HostEvent
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


# -- defined (shut-off) domains: the kit must fail on each of these too -------------------

_find = EmbeddedDriver.find
_list_defined = EmbeddedDriver.list_defined


def _never_ask_the_control_plane(self: Connection, live: Callable[[], Any],
                                 defined: Callable[[Any], Any], **_: Any) -> Any:
    """Before defined domains: what the data plane does not know does not exist."""
    return live()


def _remember_definitions(self: EmbeddedDriver, *, uuid: str | None = None,
                          name: str | None = None) -> Definition | None:
    """A driver that caches what the control plane said: an undefined domain lives on."""
    memo: dict[tuple[str | None, str | None], Definition] = self.__dict__.setdefault(
        "_memo", {})
    found = _find(self, uuid=uuid, name=name)
    if found is not None and found.id is None:
        memo[uuid, name] = found
    return found if found is not None else memo.get((uuid, name))


def _running_only(self: EmbeddedDriver, *, uuid: str | None = None,
                  name: str | None = None) -> Definition | None:
    """Finds running domains only: a shut-off one is not there."""
    found = _find(self, uuid=uuid, name=name)
    return found if found is not None and found.id is not None else None


def _list_the_first_only(self: EmbeddedDriver) -> tuple[Definition, ...]:
    return _list_defined(self)[:1]


@pytest.mark.parametrize(("owner", "method", "broken"), [
    (Connection, "_live_or_defined", _never_ask_the_control_plane),
    (EmbeddedDriver, "find", _remember_definitions),
    (EmbeddedDriver, "find", _running_only),
    (EmbeddedDriver, "list_defined", _list_the_first_only),
])
def test_kit_catches_broken_defined_domains(
    monkeypatch: pytest.MonkeyPatch, owner: type, method: str, broken: Callable[..., object]
) -> None:
    monkeypatch.setattr(owner, method, broken)
    with pytest.raises(Exception) as caught:
        check_driver(lambda: SimTarget(max_domid=6), max_examples=40, derandomize=True,
                     database=None, phases=[Phase.explicit, Phase.generate])
    text = repr(caught.value) + "".join(
        repr(e) for e in getattr(caught.value, "exceptions", ())
    )
    assert "violated" in text, text
