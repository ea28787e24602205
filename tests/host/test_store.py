"""The host outlives its daemon: what the store keeps is exactly the host."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, XvirtError
from xvirt.host.model import HostModel
from xvirt.host.store import HostStore

OPS = ["create", "destroy", "pause", "resume", "reboot", "migrate", "save", "restore",
       "rename", "crash", "reboot_host", "set_blocked"]


def _host(tmp: Path, clock: ManualClock) -> HostModel:
    return HostModel("kept", clock=clock, image_dir=tmp / "images", id_policy="random",
                     max_domid=6, seed=1)


def _apply(host: HostModel, op: str, pick: int, serial: int) -> None:
    guests = [d for d in host.domains() if d.id != 0]
    try:
        if op == "create":
            host.create(f"g{serial}", memory_kib=1024 * (1 + pick % 4), vcpus=1 + pick % 3)
        elif op == "restore":
            images = host.images()
            if images:
                host.restore(images[pick % len(images)])
        elif op == "reboot_host":
            host.reboot_host()
        elif guests:
            dom = guests[pick % len(guests)]
            if op == "save":
                host.save(dom.id, f"img{serial}")
            elif op == "rename":
                host.rename(dom.id, f"r{serial}")
            elif op == "set_blocked":
                host.set_blocked(dom.id, pick % 2 == 0)
            else:
                getattr(host, op)(dom.id)
    except XvirtError:
        pass  # refusals (wrong state, no free ID) are part of the history


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50)), max_size=40))
def test_a_reloaded_host_is_the_same_host(tmp_path_factory: pytest.TempPathFactory,
                                          history: list[tuple[str, int]]) -> None:
    tmp = tmp_path_factory.mktemp("state")
    clock = ManualClock(1000.0)
    host = _host(tmp, clock)
    store = HostStore(tmp)
    store.save(host.state())
    host.add_observer(store)
    for serial, (op, pick) in enumerate(history):
        clock.advance(1.5)
        _apply(host, op, pick, serial)

    again = _host(tmp, clock)
    saved = HostStore(tmp).load()
    assert saved is not None
    again.load(saved)
    assert again.boot_id == host.boot_id
    assert again.generation == host.generation
    assert again.domains() == host.domains()  # IDs, names, states, CPU time
    assert again.journal() == host.journal()
    events = host.events_since(max(0, host.generation - 10))
    assert again.events_since(max(0, host.generation - 10)) == events
    # and it goes on: events number on from where they were
    if len(host.domains()) <= host.max_domid:
        host.create("after", memory_kib=1024)
        again.create("after", memory_kib=1024)
        assert again.generation == host.generation
    store.close()


def test_nothing_saved_loads_as_none(tmp_path: Path) -> None:
    assert HostStore(tmp_path).load() is None


def test_a_damaged_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "host.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidArgumentError, match=r"host\.sqlite"):
        HostStore(tmp_path).load()


def test_inconsistent_saved_state_is_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    host = _host(tmp_path, clock)
    host.create("a")
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute("UPDATE domains SET id = 0 WHERE name = 'a'")
    db.commit()
    db.close()
    state = store.load()
    assert state is not None
    with pytest.raises(InvalidArgumentError, match="inconsistent"):
        _host(tmp_path, clock).load(state)


def test_every_change_is_committed_before_the_request_returns(tmp_path: Path) -> None:
    clock = ManualClock()
    host = _host(tmp_path, clock)
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    rec = host.create("a")
    host.pause(rec.id)
    # a second reader of the file sees it at once: nothing waits for a later flush
    state = HostStore(tmp_path).load()
    assert state is not None
    assert [(d.name, d.state.value) for d in state.domains] == [("Domain-0", "running"),
                                                                ("a", "paused")]
    assert state.generation == host.generation == 2
    assert [j.op for j in state.journal] == ["create", "pause"]


def test_the_id_rover_goes_on_where_it_was(tmp_path: Path) -> None:
    clock = ManualClock()
    host = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    for name in "abc":
        host.create(name)
    host.destroy(3)
    again = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    saved = HostStore(tmp_path).load()
    assert saved is not None
    again.load(saved)
    assert again.create("d").id == host.create("d").id == 4  # not 3: no early reuse
