"""A change the host's keeper refuses never happened: model, events, journal and images
are exactly as before, and the request fails with a named error.

The keeper here is an observer that refuses on demand, as a store that cannot write
does; tests/daemon/test_store_faults.py does the same with a real daemon's SQLite.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import OperationFailedError, XvirtError
from xvirt.host.hypervisor import HostChange, HostModel


class Keeper:
    """Accepts commits, or refuses the next ``refuse`` of them; keeps what it accepted."""

    def __init__(self) -> None:
        self.refuse = 0
        self.accepted: list[HostChange] = []

    def commit(self, change: HostChange) -> None:
        if self.refuse:
            self.refuse -= 1
            raise OperationFailedError("disk full (refused on purpose)")
        self.accepted.append(change)


class Mirror:
    """A second observer: sees only what the keeper accepted."""

    def __init__(self) -> None:
        self.seen: list[HostChange] = []

    def commit(self, change: HostChange) -> None:
        self.seen.append(change)


def _host(tmp_path: Path) -> tuple[HostModel, Keeper, Mirror]:
    host = HostModel("refusals", clock=ManualClock(), image_dir=tmp_path / "images", seed=7,
                     max_domid=16)
    keeper, mirror = Keeper(), Mirror()
    host.add_observer(keeper)
    host.add_observer(mirror)
    return host, keeper, mirror


SPARE = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # a managed domain, shut off
SVC = "4f77abd2-3019-58e8-3bab-6fbf2118f880"  # a managed domain, running


def _setup(host: HostModel) -> None:
    host.create("web")
    host.create("db")
    host.save(_by_name(host, "db"), "db.img")  # an image to restore
    host.define("spare", uuid=SPARE)
    host.define("svc", uuid=SVC)
    host.start(SVC)


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[tuple[HostModel, Keeper, Mirror]]:
    host, keeper, mirror = _host(tmp_path)
    _setup(host)
    yield host, keeper, mirror
    host.close()


def _everything(host: HostModel) -> tuple[object, ...]:
    """All a client or a restart could see of the host."""
    state = host.state()
    return (state, sorted(os.listdir(host.image_dir)), host.events_since(0, 0.0),
            host.journal(), host.generation, host.boot_id)


def _by_name(host: HostModel, name: str) -> int:
    """The domain's ID, or one no domain holds (the action then fails as it should)."""
    return next((r.id for r in host.domains() if r.name == name), 15)


MUTATIONS: dict[str, Callable[[HostModel], object]] = {
    "create": lambda h: h.create("new"),
    "destroy": lambda h: h.destroy(_by_name(h, "web")),
    "shutdown": lambda h: h.shutdown(_by_name(h, "web")),
    "pause": lambda h: h.pause(_by_name(h, "web")),
    "reboot": lambda h: h.reboot(_by_name(h, "web")),
    "migrate": lambda h: h.migrate(_by_name(h, "web")),
    "rename": lambda h: h.rename(_by_name(h, "web"), "www"),
    "save": lambda h: h.save(_by_name(h, "web"), "web.img"),
    "restore": lambda h: h.restore("db.img"),
    "crash": lambda h: h.crash(_by_name(h, "web")),
    "reboot_host": lambda h: h.reboot_host(),
    "restart_daemon": lambda h: h.restart_daemon(),
    "a batch": lambda h: _batch(h),
    "define": lambda h: h.define("new-def"),
    "redefine": lambda h: h.define("spare2", uuid=SPARE, memory_kib=1024),
    "start": lambda h: h.start(SPARE),
    "undefine": lambda h: h.undefine(SPARE),
    "destroy a managed domain": lambda h: h.destroy(_by_name(h, "svc")),
    "save a managed domain": lambda h: h.save(_by_name(h, "svc"), "svc.img"),
    "rename a managed domain": lambda h: h.rename(_by_name(h, "svc"), "svc2"),
}


def _batch(h: HostModel) -> None:
    with h.batch():
        h.create("b1")
        h.destroy(_by_name(h, "web"))
        h.create("b2")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_refused_change_leaves_everything_as_before(
        kept: tuple[HostModel, Keeper, Mirror], name: str) -> None:
    host, keeper, mirror = kept
    before, seen = _everything(host), len(mirror.seen)
    keeper.refuse = 1
    with pytest.raises(OperationFailedError, match="could not keep this change") as err:
        MUTATIONS[name](host)
    assert err.value.op == "commit" and "disk full" in err.value.message
    assert _everything(host) == before
    assert len(mirror.seen) == seen  # the table never showed it
    MUTATIONS[name](host)  # and once the keeper accepts, the same change goes through
    assert _everything(host) != before and len(mirror.seen) > seen


def test_a_refused_save_leaves_no_image_and_a_refused_restore_keeps_it(
        kept: tuple[HostModel, Keeper, Mirror]) -> None:
    host, keeper, _ = kept
    keeper.refuse = 2
    with pytest.raises(OperationFailedError):
        host.save(_by_name(host, "web"), "web.img")
    with pytest.raises(OperationFailedError):
        host.restore("db.img")
    assert sorted(os.listdir(host.image_dir)) == ["db.img"]  # no staging left either
    assert [r.name for r in host.domains()] == ["Domain-0", "web", "svc"]


def test_after_a_refusal_the_next_changes_number_on_without_a_gap(
        kept: tuple[HostModel, Keeper, Mirror]) -> None:
    host, keeper, _ = kept
    latest = host.generation
    keeper.refuse = 1
    with pytest.raises(OperationFailedError):
        host.create("lost")
    host.create("kept")
    events = [e for change in keeper.accepted for e in change.events]
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == host.generation == latest + 1
    assert "lost" not in {r.name for r in host.domains()}


def test_a_refused_destroy_then_the_same_name_is_one_domain(
        kept: tuple[HostModel, Keeper, Mirror]) -> None:
    host, keeper, _ = kept
    keeper.refuse = 1
    with pytest.raises(OperationFailedError):
        host.destroy(_by_name(host, "web"))
    with pytest.raises(XvirtError, match="web"):  # it still exists: the name is taken
        host.create("web")
    assert [r.name for r in host.domains()].count("web") == 1


Kept = tuple[dict[str, tuple[int, str]], dict[str, str]]


def _replay(start: dict[str, tuple[int, str]], changes: list[HostChange]) -> Kept:
    """What a store that held ``start`` and kept only ``changes`` would hold: the
    domains (uuid -> (id, name)) and the definitions (uuid -> name)."""
    doms = dict(start)
    defs: dict[str, str] = {}
    for change in changes:
        if change.reset:
            doms.clear()  # a new boot: the definitions stay
        for uuid in change.gone_uuids:
            doms.pop(uuid, None)
        for d in change.domains:
            doms[d.uuid] = (d.id, d.name)
        for uuid in change.undefined:
            defs.pop(uuid, None)
        for spec in change.definitions:
            defs[spec.uuid] = spec.name
    return doms, defs


def _truth(host: HostModel) -> Kept:
    return ({r.uuid: (r.id, r.name) for r in host.domains()},
            {s.uuid: s.name for s in host.state().definitions})


OPS = st.lists(st.tuples(st.sampled_from(sorted(MUTATIONS)), st.booleans()), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_host_is_always_what_its_keeper_accepted(tmp_path_factory: pytest.TempPathFactory,
                                                      ops: list[tuple[str, bool]]) -> None:
    """Any mix of accepted and refused changes: the host equals the replay of what the
    keeper accepted, so a restart from the store brings back what clients were told."""
    host, keeper, _ = _host(tmp_path_factory.mktemp("h"))
    start = {r.uuid: (r.id, r.name) for r in host.domains()}  # as the observers began
    try:
        _setup(host)
        for name, refuse in ops:
            keeper.refuse = int(refuse)
            with contextlib.suppress(XvirtError):
                MUTATIONS[name](host)
            keeper.refuse = 0
            assert _replay(start, keeper.accepted) == _truth(host)
    finally:
        host.close()
