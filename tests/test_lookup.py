"""The Lookup seam: the cache and 2006 mode both satisfy it, and neither inherits
from the other (mypy --strict checks the same through Connection's typed seam)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

import pytest

import xvirt
from xvirt.cache import IdentityCache
from xvirt.connection import Connection, Domain
from xvirt.direct import DirectLookup
from xvirt.lookup import Lookup

IMPLEMENTATIONS = [IdentityCache, DirectLookup]

#: What Connection, Domain and EventStream call on the seam: the protocol, no more.
SEAM = {
    "census", "counts", "current", "domid_hint", "info", "list_ids", "lookup_by_id",
    "lookup_by_name",
    "merge", "name_hint", "relocate", "snapshot", "survey",
}


def _protocol_methods() -> dict[str, Callable[..., object]]:
    return {name: member for name, member in vars(Lookup).items()
            if inspect.isfunction(member) and not name.startswith("_")}


def test_the_protocol_states_exactly_the_seam_with_a_promise_each() -> None:
    methods = _protocol_methods()
    assert set(methods) == SEAM
    for name, method in methods.items():
        assert inspect.getdoc(method), f"Lookup.{name} says nothing of what it promises"


def test_neither_implementation_inherits_from_the_other_or_a_shared_base() -> None:
    assert not issubclass(IdentityCache, DirectLookup)
    assert not issubclass(DirectLookup, IdentityCache)
    for cls in IMPLEMENTATIONS:
        assert cls.__bases__ == (object,), cls.__bases__


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(SEAM))
def test_each_implementation_has_each_method_with_a_compatible_signature(
    cls: type, name: str
) -> None:
    want = inspect.signature(getattr(Lookup, name), eval_str=True)
    impl = getattr(cls, name, None)
    assert callable(impl), f"{cls.__name__} lacks {name}"
    got = inspect.signature(impl, eval_str=True)
    assert got.return_annotation == want.return_annotation, (cls.__name__, name, got)
    have = dict(got.parameters)
    for param in want.parameters.values():
        mine = have.pop(param.name, None)
        assert mine is not None, f"{cls.__name__}.{name} lacks parameter {param.name}"
        assert (mine.kind, mine.annotation) == (param.kind, param.annotation), (
            cls.__name__, name, mine)
        if param.default is not inspect.Parameter.empty:
            assert mine.default == param.default, (cls.__name__, name, mine)
    extra = [p for p in have.values() if p.default is inspect.Parameter.empty
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not extra, f"{cls.__name__}.{name} requires more than the protocol: {extra}"


def test_connection_and_domain_are_typed_against_the_protocol() -> None:
    assert typing.get_type_hints(Connection._live)["return"] is Lookup
    assert typing.get_type_hints(Connection._writable)["return"] is Lookup
    assert typing.get_type_hints(Domain._cache)["return"] is Lookup


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    """One guest, g0, on ``clock``."""
    sim_host.create("g0")
    return sim_host


@pytest.mark.parametrize(("query", "cls"), [("", IdentityCache), ("?cache=off", DirectLookup)])
def test_the_uri_picks_the_implementation(host: xvirt.sim.Host, query: str, cls: type) -> None:
    with xvirt.open(host.uri + query) as conn:
        assert type(conn._cache) is cls
