"""xvirt.sim: embedded hosts register by name and are reachable as sim:///NAME until closed."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest

import xvirt
from xvirt import sim
from xvirt.clock import ManualClock
from xvirt.errors import (
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
)
from xvirt.host.hypervisor import HostModel

_serial = itertools.count()


def _name() -> str:
    return f"sim-test-{next(_serial)}"


def test_a_host_registers_under_its_name() -> None:
    name = _name()
    h = sim.Host(name, clock=ManualClock())
    try:
        assert sim.get(name) is h
        assert name in sim.names()
        assert h.uri == f"sim:///{name}"
        assert isinstance(sim._model_of(h), HostModel)  # the facade holds a model
    finally:
        h.close()


def test_open_reaches_that_very_host() -> None:
    with sim.Host(_name(), clock=ManualClock()) as h:
        rec = h.create("web1", memory_kib=524288, vcpus=2)
        with xvirt.open(h.uri) as conn:
            assert conn.list_domain_ids() == [0, rec.id]
            dom = conn.lookup_by_name("web1")
            assert (dom.uuid, dom.id) == (rec.uuid, rec.id)


def test_a_duplicate_name_is_refused_and_the_first_host_kept() -> None:
    name = _name()
    first = sim.Host(name, clock=ManualClock())
    try:
        rec = first.create("a")
        tmp = Path(tempfile.gettempdir())
        before = set(tmp.glob(f"xvirt-{name}-images-*"))
        with pytest.raises(InvalidArgumentError, match="already exists"):
            sim.Host(name, clock=ManualClock())
        assert set(tmp.glob(f"xvirt-{name}-images-*")) == before  # nothing left behind
        assert sim.get(name) is first
        assert first.domain(rec.id) == rec
    finally:
        first.close()


def test_close_unregisters() -> None:
    name = _name()
    h = sim.Host(name, clock=ManualClock())
    h.close()
    assert sim.get(name) is None
    assert name not in sim.names()
    assert h.closed
    with pytest.raises(HostUnreachableError):
        h.domains()
    with pytest.raises(HostUnreachableError):
        xvirt.open(f"sim:///{name}")
    h.close()  # idempotent


def test_the_name_can_be_reused_after_close() -> None:
    name = _name()
    old = sim.Host(name, clock=ManualClock())
    old.close()
    new = sim.Host(name, clock=ManualClock())
    try:
        assert sim.get(name) is new
        old.close()  # closing the stale host again must not unregister the new one
        assert sim.get(name) is new
    finally:
        new.close()


def test_context_manager_closes() -> None:
    name = _name()
    with sim.Host(name, clock=ManualClock()) as h:
        assert sim.get(name) is h
    assert h.closed
    assert sim.get(name) is None


def test_context_manager_closes_on_error() -> None:
    name = _name()
    with pytest.raises(RuntimeError), sim.Host(name, clock=ManualClock()):
        raise RuntimeError("boom")
    assert sim.get(name) is None


@pytest.mark.parametrize("bad", ["", "a/b", "a?b", None, 5])
def test_invalid_host_names_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        sim.Host(bad, clock=ManualClock())  # type: ignore[arg-type]


def test_invalid_settings_do_not_register() -> None:
    name = _name()
    with pytest.raises(InvalidArgumentError):
        sim.Host(name, id_policy="nope")
    assert sim.get(name) is None


def test_options_reach_the_host_model() -> None:
    with sim.Host(_name(), id_policy="random", max_domid=64, control_latency_ms=5,
                  clock=ManualClock(), seed=3, cpus=4) as h:
        assert (h.id_policy, h.max_domid, h.control_latency_ms) == ("random", 64, 5.0)
        assert sim._model_of(h).node_info().cpus == 4


def test_demo_populates() -> None:
    with sim.Host(_name(), clock=ManualClock(), demo=True) as h:
        names = [d.name for d in h.domains()]
        assert names == ["Domain-0", "web1", "web2", "db1", "cache1", "build1"]
        assert [d.name for d in h.defined_domains()] == ["mail1", "staging1"]
        assert sim._model_of(h).node_info().memory_kib == 64 * 1024 * 1024  # the demo's


def test_the_machine_is_given_and_its_memory_refuses_what_does_not_fit() -> None:
    with sim.Host(_name(), clock=ManualClock(), cpus=2, memory_kib=4 * 1024 * 1024) as h:
        info = sim._model_of(h).node_info()
        assert (info.cpus, info.memory_kib) == (2, 4 * 1024 * 1024)
        h.create("fits", memory_kib=1024 * 1024)
        with pytest.raises(OperationFailedError, match="not enough free memory"):
            h.create("too-big", memory_kib=1024 * 1024 + 1)  # Domain-0 holds 2 GiB


def test_a_populated_5000_guest_host_has_possible_figures() -> None:
    """The benchmarks' `sim:///NAME?guests=5000` hosts still open, within their memory."""
    name = _name()
    try:
        with xvirt.open(f"sim:///{name}?guests=5000", readonly=True) as conn:
            info = conn.host_info()
            used = sum(d.info().memory_kib for d in conn.list_domains())
            assert len(conn.list_domain_ids()) == 5001
            assert used == info.memory_kib - info.free_memory_kib <= info.memory_kib
    finally:
        made = sim.get(name)
        if made is not None:
            made.close()


def test_managed_domains_through_the_facade() -> None:
    with sim.Host(_name(), clock=ManualClock()) as h:
        mail = h.define("mail", memory_kib=2048, vcpus=2)
        assert isinstance(mail, sim.Definition) and mail.id is None and mail.persistent
        assert h.defined_domains() == [mail]
        rec = h.start(mail.uuid)
        assert (rec.uuid, rec.name, rec.memory_kib, rec.vcpus) == (mail.uuid, "mail", 2048, 2)
        assert h.defined_domains() == [] and h.domains()[1] == rec
        with pytest.raises(OperationFailedError):
            h.undefine(mail.uuid)  # it runs
        h.shutdown(rec.id)
        assert h.defined_domains() == [mail]  # shut off, not gone
        h.undefine(mail.uuid)
        assert h.defined_domains() == []
        with pytest.raises(NoDomainError):
            h.start(mail.uuid)
        assert [e.op for e in h.journal()] == ["define", "start", "delete", "shutdown",
                                               "delete", "start"]


def test_get_of_an_unknown_name_is_none() -> None:
    assert sim.get(_name()) is None


def test_get_default_creates_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "_registry", {})
    h = sim.get("default")
    try:
        assert h is not None
        assert sim.get("default") is h
        assert len(h.domains()) > 1
    finally:
        assert h is not None
        h.close()


def test_image_dir_is_used(tmp_path: Path) -> None:
    with sim.Host(_name(), clock=ManualClock(), image_dir=tmp_path / "imgs") as h:
        rec = h.create("a")
        h.save(rec.id, "a.img")
        assert (tmp_path / "imgs" / "a.img").is_file()
        assert h.image_dir == str(tmp_path / "imgs")
