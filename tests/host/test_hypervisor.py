"""The Xen-semantics host model: lifecycle, accounting, journal, the planes' answers."""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import (
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
)
from xvirt.host.hypervisor import DOM0_UUID, DomainRecord, HostChange, HostModel, JournalEntry
from xvirt.model import DomainState, HostInfo
from xvirt.planes import DiskConfig, DomainConfig, NicConfig, Op

pytestmark = pytest.mark.clock_start(1000.0)
_serial = itertools.count()


def _host(**kwargs: object) -> HostModel:
    """A host made and closed by the test itself (Hypothesis examples, closing tests)."""
    kwargs.setdefault("clock", ManualClock())
    return HostModel(f"model-test-{next(_serial)}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock) -> HostModel:
    """An empty host model (50 guest IDs, seeded) on ``clock``."""
    return make_host_model(clock=clock, seed=42, max_domid=50)


def _names(h: HostModel) -> list[str]:
    return [d.name for d in h.domains()]


# -- create ---------------------------------------------------------------------------


def test_create_returns_the_running_record(host: HostModel) -> None:
    rec = host.create("web1", memory_kib=524288, max_memory_kib=1048576, vcpus=2)
    assert isinstance(rec, DomainRecord)
    assert rec.name == "web1"
    assert rec.state is DomainState.RUNNING
    assert (rec.memory_kib, rec.max_memory_kib, rec.vcpus) == (524288, 1048576, 2)
    assert rec.cpu_time_ns == 0
    assert host.domain(rec.id) == rec
    assert host.domains() == [host.domain(0), rec]


def test_create_max_memory_defaults_to_memory(host: HostModel) -> None:
    rec = host.create("a", memory_kib=4096)
    assert rec.max_memory_kib == 4096


def test_create_with_explicit_uuid_canonicalises_it(host: HostModel) -> None:
    rec = host.create("a", uuid="6695EB01F6A4830479AA97F2502E193F")
    assert rec.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_generated_uuids_are_unique_and_canonical(host: HostModel) -> None:
    recs = [host.create(f"g{i}") for i in range(40)]
    uuids = [r.uuid for r in recs]
    assert len(set(uuids)) == 40
    assert DOM0_UUID not in uuids
    for u in uuids:
        assert len(u) == 36 and u == u.lower() and u.count("-") == 4


def test_create_refuses_a_taken_name(host: HostModel) -> None:
    a = host.create("a")
    gen = host.generation
    with pytest.raises(OperationFailedError, match="already exists") as exc:
        host.create("a")
    assert exc.value.name == "a"
    with pytest.raises(OperationFailedError):
        host.create("Domain-0")
    assert host.domains() == [host.domain(0), a]
    assert host.generation == gen


def test_create_refuses_a_uuid_in_use(host: HostModel) -> None:
    a = host.create("a")
    with pytest.raises(OperationFailedError, match="UUID") as exc:
        host.create("b", uuid=a.uuid)
    assert exc.value.uuid == a.uuid
    with pytest.raises(OperationFailedError):
        host.create("c", uuid=DOM0_UUID)
    with pytest.raises(OperationFailedError):
        host.create("d", uuid=a.uuid.upper())  # the same UUID, spelt differently
    assert _names(host) == ["Domain-0", "a"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "a/b"},
        {"name": "a\nb"},
        {"name": "x" * 256},
        {"name": None},
        {"name": "ok", "memory_kib": 0},
        {"name": "ok", "memory_kib": -1},
        {"name": "ok", "memory_kib": 1.5},
        {"name": "ok", "memory_kib": True},
        {"name": "ok", "vcpus": 0},
        {"name": "ok", "vcpus": -2},
        {"name": "ok", "vcpus": "2"},
        {"name": "ok", "memory_kib": 2048, "max_memory_kib": 1024},
        {"name": "ok", "max_memory_kib": 0},
        {"name": "ok", "load": -0.1},
        {"name": "ok", "load": 1.5},
        {"name": "ok", "load": math.nan},
        {"name": "ok", "uuid": "not-a-uuid"},
        {"name": "ok", "uuid": 5},
        {"name": "ok", "os_type": None},
        {"name": "ok", "cpu_time_ns": -1},
        {"name": "ok", "cpu_time_ns": 1.5},
        {"name": "ok", "cpu_time_ns": math.nan},
        {"name": "ok", "cpu_time_ns": True},
        {"name": "ok", "cpu_time_ns": "5"},
        {"name": "ok", "uuid": "{6695eb01-f6a4-8304-79aa-97f2502e193f}"},
    ],
)
def test_create_refuses_bad_arguments(host: HostModel, kwargs: dict[str, object]) -> None:
    gen = host.generation
    with pytest.raises(InvalidArgumentError):
        host.create(**kwargs)  # type: ignore[arg-type]
    assert _names(host) == ["Domain-0"]
    assert host.generation == gen


@given(
    name=st.text(min_size=1, max_size=20).filter(
        lambda n: n.strip() and "/" not in n and all(ord(c) >= 32 and c != "\x7f" for c in n)),
    memory=st.integers(1, 2**40),
    extra=st.integers(0, 2**20),
    vcpus=st.integers(1, 512),
    load=st.floats(0.0, 1.0) | st.sampled_from([0, 1]),
    os_type=st.text(max_size=10),
    cpu=st.integers(0, 2**62),
)
@settings(max_examples=60, deadline=None)
def test_whatever_create_accepts_survives_save_and_restore(
    name: str, memory: int, extra: int, vcpus: int, load: float, os_type: str, cpu: int
) -> None:
    h = _host(memory_kib=2**41)  # room for any memory drawn
    try:
        rec = h.create(name, memory_kib=memory, max_memory_kib=memory + extra, vcpus=vcpus,
                       load=load, os_type=os_type, cpu_time_ns=cpu)
        assert rec.cpu_time_ns == cpu
        h.save(rec.id, "img")
        back = h.restore("img")
        assert (back.uuid, back.name, back.memory_kib, back.max_memory_kib, back.vcpus,
                back.cpu_time_ns) == (rec.uuid, name, memory, memory + extra, vcpus, cpu)
        assert _config(h, rec.uuid).os_type == os_type
    finally:
        h.close()


# -- devices --------------------------------------------------------------------------


def _config(h: HostModel, uuid: str) -> DomainConfig:
    config = h.resolve([uuid]).domains[0].config
    assert config is not None
    return config


def test_a_domain_created_without_devices_gets_xens_defaults(host: HostModel) -> None:
    rec = host.create("web1", uuid="6695eb01-f6a4-8304-79aa-97f2502e193f")
    config = _config(host, rec.uuid)
    assert config.disks == (DiskConfig("/var/lib/xen/images/web1.img", "xvda"),)
    assert config.nics == (NicConfig("00:16:3e:66:95:eb", "xenbr0"),)
    # only what is not given defaults; () means none
    other = host.create("other", disks=(), nics=[NicConfig("02:00:00:00:00:0A")])
    assert (_config(host, other.uuid).disks, _config(host, other.uuid).nics) == (
        (), (NicConfig("02:00:00:00:00:0a"),))


def test_domain0_has_no_virtual_devices(host: HostModel) -> None:
    assert (_config(host, DOM0_UUID).disks, _config(host, DOM0_UUID).nics) == ((), ())


def test_create_takes_disks_and_nics_in_order(host: HostModel) -> None:
    disks = [DiskConfig("phy:/dev/vg0/db", "xvda"), DiskConfig("tap:aio:/d.img", "xvdb"),
             DiskConfig("file:/boot.iso", "hdc", readonly=True)]
    nics = [NicConfig("00:16:3E:00:00:01", "xenbr0"), NicConfig("00:16:3e:00:00:02")]
    rec = host.create("db", disks=iter(disks), nics=nics)
    config = _config(host, rec.uuid)
    assert config.disks == tuple(disks)
    assert config.nics == (NicConfig("00:16:3e:00:00:01", "xenbr0"),
                           NicConfig("00:16:3e:00:00:02"))
    assert host.list_all().domains[1].config == config
    assert host.resolve_names(["db"]).domains[0].config == config


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"disks": [DiskConfig("", "xvda")]}, "source"),
        ({"disks": [DiskConfig("/a", "vda")]}, "Xen device name"),
        ({"disks": [DiskConfig("/a", "xvda"), DiskConfig("/b", "xvda")]}, "two disks"),
        ({"disks": "xvda"}, "DiskConfig"),
        ({"nics": [NicConfig("01:00:00:00:00:01")]}, "unicast"),
        ({"nics": [NicConfig("00:16:3e:00:00")]}, "six hex octets"),
        ({"nics": [NicConfig("00:16:3e:00:00:01", "")]}, "bridge"),
        ({"nics": None, "disks": [None]}, "DiskConfig"),
    ],
)
def test_create_refuses_bad_devices_naming_the_domain(
        host: HostModel, kwargs: dict[str, object], words: str) -> None:
    gen = host.generation
    with pytest.raises(InvalidArgumentError, match=words) as exc:
        host.create("bad", **kwargs)  # type: ignore[arg-type]
    assert exc.value.name == "bad"
    assert _names(host) == ["Domain-0"] and host.generation == gen


_DISKS = st.lists(
    st.builds(DiskConfig, st.text(st.characters(min_codepoint=32, exclude_categories=["Cs"]),
                                  min_size=1, max_size=20).filter(lambda t: "\x7f" not in t),
              st.from_regex(r"(xvd|hd|sd)[a-z]{1,2}", fullmatch=True), st.booleans()),
    max_size=3, unique_by=lambda d: d.target)
_NICS = st.lists(
    st.builds(NicConfig,
              st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1 and any(b)).map(
                  lambda b: b.hex(":")),
              st.none() | st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)),
    max_size=3, unique_by=lambda n: n.mac)


@given(disks=_DISKS, nics=_NICS,
       ops=st.lists(st.sampled_from(["save", "reboot", "migrate", "rename", "pause", "crash"]),
                    max_size=8))
@settings(max_examples=60, deadline=None)
def test_devices_survive_every_lifecycle_step(
        disks: list[DiskConfig], nics: list[NicConfig], ops: list[str]) -> None:
    h = _host()
    try:
        rec = h.create("d", disks=disks, nics=nics)
        for n, op in enumerate(ops):
            domid = h.resolve([rec.uuid]).domains[0].id
            try:
                if op == "save":
                    h.save(domid, f"img{n}")
                    h.restore(f"img{n}")
                elif op == "rename":
                    h.rename(domid, f"d{n}")
                else:
                    getattr(h, op)(domid)
            except OperationFailedError:
                pass  # pausing a paused or crashed domain is refused; that is history too
        config = _config(h, rec.uuid)
        assert (config.disks, config.nics) == (tuple(disks), tuple(nics))
    finally:
        h.close()


# -- destroy / shutdown ---------------------------------------------------------------


@pytest.mark.parametrize("op", ["destroy", "shutdown"])
def test_destroy_and_shutdown_remove_the_domain(host: HostModel, op: str) -> None:
    a = host.create("a")
    b = host.create("b")
    getattr(host, op)(a.id)
    assert host.domains() == [host.domain(0), b]
    with pytest.raises(NoDomainError) as exc:
        host.domain(a.id)
    assert exc.value.domid == a.id
    # the name and UUID are free again
    again = host.create("a", uuid=a.uuid)
    assert again.uuid == a.uuid


def test_shutdown_of_a_paused_domain_is_allowed(host: HostModel) -> None:
    a = host.create("a")
    host.pause(a.id)
    host.shutdown(a.id)
    assert _names(host) == ["Domain-0"]


def test_shutdown_of_a_crashed_domain_is_refused_but_destroy_works(host: HostModel) -> None:
    a = host.create("a")
    host.crash(a.id)
    with pytest.raises(OperationFailedError):
        host.shutdown(a.id)
    assert host.domain(a.id).state is DomainState.CRASHED
    host.destroy(a.id)
    assert _names(host) == ["Domain-0"]


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.destroy(0),
        lambda h: h.shutdown(0),
        lambda h: h.pause(0),
        lambda h: h.resume(0),
        lambda h: h.reboot(0),
        lambda h: h.migrate(0),
        lambda h: h.save(0, "dom0"),
        lambda h: h.rename(0, "not-dom0"),
        lambda h: h.crash(0),
    ],
)
def test_domain0_refuses_lifecycle_ops(host: HostModel, call: object) -> None:
    gen = host.generation
    with pytest.raises(OperationFailedError, match="Domain-0") as exc:
        call(host)  # type: ignore[operator]
    assert exc.value.domid == 0
    dom0 = host.domain(0)
    assert (dom0.id, dom0.uuid, dom0.name, dom0.state) == (
        0, DOM0_UUID, "Domain-0", DomainState.RUNNING)
    assert host.generation == gen
    assert host.images() == []


@pytest.mark.parametrize(
    "call",
    [
        lambda h, i: h.destroy(i),
        lambda h, i: h.shutdown(i),
        lambda h, i: h.pause(i),
        lambda h, i: h.resume(i),
        lambda h, i: h.reboot(i),
        lambda h, i: h.migrate(i),
        lambda h, i: h.save(i, "img"),
        lambda h, i: h.rename(i, "x"),
        lambda h, i: h.crash(i),
        lambda h, i: h.set_blocked(i),
        lambda h, i: h.domain(i),
    ],
)
def test_ops_on_a_missing_domain_raise_no_domain(host: HostModel, call: object) -> None:
    with pytest.raises(NoDomainError) as exc:
        call(host, 7)  # type: ignore[operator]
    assert exc.value.domid == 7


@pytest.mark.parametrize("bad", [-1, 0x7FF0, True, "1", 1.0, None])
def test_ops_refuse_invalid_domids(host: HostModel, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        host.destroy(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        host.domain(bad)  # type: ignore[arg-type]


# -- pause / resume / crash / set_blocked ----------------------------------------------


def test_pause_and_resume(host: HostModel) -> None:
    a = host.create("a")
    host.pause(a.id)
    assert host.domain(a.id).state is DomainState.PAUSED
    host.resume(a.id)
    assert host.domain(a.id).state is DomainState.RUNNING
    assert host.domain(a.id).id == a.id  # pausing does not change the ID


def test_pause_of_a_blocked_domain_is_allowed(host: HostModel) -> None:
    a = host.create("a")
    host.set_blocked(a.id)
    host.pause(a.id)
    assert host.domain(a.id).state is DomainState.PAUSED


def test_pause_a_paused_domain_is_refused(host: HostModel) -> None:
    a = host.create("a")
    host.pause(a.id)
    gen = host.generation
    with pytest.raises(OperationFailedError, match="paused") as exc:
        host.pause(a.id)
    assert (exc.value.domid, exc.value.uuid, exc.value.name, exc.value.op) == (
        a.id, a.uuid, "a", "pause")
    assert host.domain(a.id).state is DomainState.PAUSED
    assert host.generation == gen


@pytest.mark.parametrize("setup", ["running", "blocked", "crashed"])
def test_resume_of_a_domain_that_is_not_paused_is_refused(host: HostModel, setup: str) -> None:
    a = host.create("a")
    if setup == "blocked":
        host.set_blocked(a.id)
    elif setup == "crashed":
        host.crash(a.id)
    state = host.domain(a.id).state
    with pytest.raises(OperationFailedError, match="not paused"):
        host.resume(a.id)
    assert host.domain(a.id).state is state


def test_pause_a_crashed_domain_is_refused(host: HostModel) -> None:
    a = host.create("a")
    host.crash(a.id)
    with pytest.raises(OperationFailedError):
        host.pause(a.id)
    assert host.domain(a.id).state is DomainState.CRASHED


def test_crash_preserves_the_domain_in_crashed_state(host: HostModel) -> None:
    a = host.create("a")
    host.crash(a.id)
    rec = host.domain(a.id)
    assert (rec.id, rec.uuid, rec.name, rec.state) == (a.id, a.uuid, "a", DomainState.CRASHED)


def test_set_blocked_toggles_between_running_and_blocked_only(host: HostModel) -> None:
    a = host.create("a")
    gen = host.generation
    host.set_blocked(a.id)
    assert host.domain(a.id).state is DomainState.BLOCKED
    host.set_blocked(a.id, False)
    assert host.domain(a.id).state is DomainState.RUNNING
    host.pause(a.id)
    host.set_blocked(a.id)
    assert host.domain(a.id).state is DomainState.PAUSED  # not a way out of pause
    assert host.generation == gen + 1  # only the pause was an event


def test_domain0_can_be_marked_blocked(host: HostModel) -> None:
    host.set_blocked(0)
    assert host.domain(0).state is DomainState.BLOCKED


# -- reboot / migrate -------------------------------------------------------------------


@pytest.mark.parametrize("op", ["reboot", "migrate"])
@pytest.mark.parametrize("setup", ["running", "blocked", "paused", "crashed"])
def test_reboot_and_migrate_come_back_running(host: HostModel, op: str, setup: str) -> None:
    a = host.create("a", memory_kib=8192, max_memory_kib=16384, vcpus=3)
    if setup == "blocked":
        host.set_blocked(a.id)
    elif setup == "paused":
        host.pause(a.id)
    elif setup == "crashed":
        host.crash(a.id)
    rec = getattr(host, op)(a.id)
    assert rec.state is DomainState.RUNNING
    assert (rec.uuid, rec.name, rec.memory_kib, rec.max_memory_kib, rec.vcpus) == (
        a.uuid, "a", 8192, 16384, 3)
    assert rec.id != a.id
    assert host.domain(rec.id) == rec


# -- rename -----------------------------------------------------------------------------


def test_rename(host: HostModel) -> None:
    a = host.create("a")
    host.rename(a.id, "b")
    rec = host.domain(a.id)
    assert (rec.id, rec.uuid, rec.name) == (a.id, a.uuid, "b")
    # the old name is free, the new one is taken
    host.create("a")
    with pytest.raises(OperationFailedError):
        host.create("b")


def test_rename_to_a_taken_name_is_refused(host: HostModel) -> None:
    a = host.create("a")
    host.create("b")
    gen = host.generation
    with pytest.raises(OperationFailedError, match="already exists"):
        host.rename(a.id, "b")
    with pytest.raises(OperationFailedError):
        host.rename(a.id, "Domain-0")
    assert _names(host) == ["Domain-0", "a", "b"]
    assert host.generation == gen


def test_rename_to_the_same_name_changes_nothing(host: HostModel) -> None:
    a = host.create("a")
    gen = host.generation
    host.rename(a.id, "a")
    assert host.domain(a.id).name == "a"
    assert host.generation == gen


@pytest.mark.parametrize("bad", ["", "a/b", "tab\there", None, "z" * 256])
def test_rename_to_an_invalid_name_is_refused(host: HostModel, bad: object) -> None:
    a = host.create("a")
    with pytest.raises(InvalidArgumentError):
        host.rename(a.id, bad)  # type: ignore[arg-type]
    assert host.domain(a.id).name == "a"


# -- names and UUIDs stay unique under any history ---------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "destroy", "shutdown", "pause", "resume", "reboot", "migrate", "save",
             "restore", "rename", "crash", "block"]
        ),
        st.integers(0, 50),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=40,
)


@given(ops=_ops, seed=st.integers(0, 100))
@settings(max_examples=50, deadline=None)
def test_any_history_keeps_names_uuids_and_ids_unique(
    ops: list[tuple[str, int, str]], seed: int
) -> None:
    h = _host(max_domid=5, seed=seed, id_policy="random" if seed % 2 else "sequential")
    try:
        for op, pick, name in ops:
            doms = h.domains()
            guests = doms[1:]
            g = guests[pick % len(guests)] if guests else None
            try:
                if op == "create":
                    h.create(name)
                elif op == "restore":
                    images = h.images()
                    if images:
                        h.restore(images[pick % len(images)])
                elif g is None:
                    continue
                elif op == "save":
                    h.save(g.id, f"img-{name}")
                elif op == "rename":
                    h.rename(g.id, name)
                elif op == "block":
                    h.set_blocked(g.id, pick % 2 == 0)
                else:
                    getattr(h, op)(g.id)
            except OperationFailedError:
                assert h.domains() == doms  # refusals change nothing
            after = h.domains()
            for field in ("id", "uuid", "name"):
                values = [getattr(d, field) for d in after]
                assert len(values) == len(set(values)), (field, after)
            assert after[0].id == 0 and after[0].uuid == DOM0_UUID
    finally:
        h.close()


# -- CPU time ---------------------------------------------------------------------------


def test_cpu_time_advances_with_load_times_vcpus(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=2, load=0.5)
    assert host.domain(a.id).cpu_time_ns == 0
    clock.advance(3.0)
    assert host.domain(a.id).cpu_time_ns == pytest.approx(3e9, abs=2)
    clock.advance(1.5)
    assert host.domain(a.id).cpu_time_ns == pytest.approx(4.5e9, abs=2)


@given(
    vcpus=st.integers(1, 8),
    load=st.floats(0.0, 1.0),
    seconds=st.floats(0.0, 1e5),
)
@settings(max_examples=60, deadline=None)
def test_cpu_time_rate_property(vcpus: int, load: float, seconds: float) -> None:
    clock = ManualClock(50.0)
    h = _host(clock=clock, cpus=16)  # CPUs to spare: the domain gets all it wants
    try:
        a = h.create("a", vcpus=vcpus, load=load)
        clock.advance(seconds)
        got = h.domain(a.id).cpu_time_ns
        assert got == pytest.approx(seconds * 1e9 * load * vcpus, rel=1e-9, abs=2)
        assert got <= seconds * 1e9 * vcpus + 2  # never more than all its vCPUs
    finally:
        h.close()


def test_cpu_time_is_monotonic_across_state_changes(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=2, load=0.3)
    last = 0
    for step in ["block", "unblock", "pause", "resume", "migrate", "crash"]:
        clock.advance(2.0)
        domid = host.domains()[1].id
        if step == "block":
            host.set_blocked(domid)
        elif step == "unblock":
            host.set_blocked(domid, False)
        else:
            getattr(host, step)(domid)
        now = host.domains()[1].cpu_time_ns
        assert now >= last, step
        last = now
    assert host.domains()[1].uuid == a.uuid


def test_blocked_guest_burns_the_idle_rate(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=2, load=0.9)
    host.set_blocked(a.id)
    clock.advance(10.0)
    assert host.domain(a.id).cpu_time_ns == pytest.approx(10e9 * 0.01 * 2, abs=2)
    host.set_blocked(a.id, False)
    clock.advance(1.0)
    assert host.domain(a.id).cpu_time_ns == pytest.approx(2e8 + 1.8e9, abs=4)


@pytest.mark.parametrize("freeze", ["pause", "crash"])
def test_cpu_time_stands_still_when_paused_or_crashed(
    host: HostModel, clock: ManualClock, freeze: str
) -> None:
    a = host.create("a", vcpus=1, load=1.0)
    clock.advance(2.0)
    getattr(host, freeze)(a.id)
    frozen = host.domain(a.id).cpu_time_ns
    assert frozen == pytest.approx(2e9, abs=2)
    clock.advance(100.0)
    assert host.domain(a.id).cpu_time_ns == frozen
    if freeze == "pause":
        host.resume(a.id)
        clock.advance(1.0)
        assert host.domain(a.id).cpu_time_ns == pytest.approx(frozen + 1e9, abs=2)


def test_reboot_resets_cpu_time_and_migrate_keeps_it(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=1, load=1.0)
    clock.advance(5.0)
    moved = host.migrate(a.id)
    assert moved.cpu_time_ns == pytest.approx(5e9, abs=2)
    clock.advance(1.0)
    rebooted = host.reboot(moved.id)
    assert rebooted.cpu_time_ns == 0
    clock.advance(2.0)
    assert host.domain(rebooted.id).cpu_time_ns == pytest.approx(2e9, abs=2)


def test_save_and_restore_keep_cpu_time(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=2, load=0.25)
    clock.advance(4.0)
    saved_at = host.domain(a.id).cpu_time_ns
    host.save(a.id, "img")
    clock.advance(1000.0)  # time in the image does not count
    rec = host.restore("img")
    assert rec.cpu_time_ns == saved_at
    clock.advance(2.0)
    assert host.domain(rec.id).cpu_time_ns == pytest.approx(saved_at + 1e9, abs=2)


def test_domain0_has_cpu_time_too(host: HostModel, clock: ManualClock) -> None:
    before = host.domain(0).cpu_time_ns
    clock.advance(10.0)
    assert host.domain(0).cpu_time_ns > before


# -- journal ------------------------------------------------------------------------------


def test_journal_records_every_host_action(host: HostModel) -> None:
    a = host.create("a")
    host.pause(a.id)
    host.resume(a.id)
    host.rename(a.id, "a2")
    r = host.reboot(a.id)
    m = host.migrate(r.id)
    host.crash(m.id)
    host.destroy(m.id)
    b = host.create("b")
    host.save(b.id, "b.img")
    b2 = host.restore("b.img")
    host.shutdown(b2.id)
    host.restart_daemon()
    host.reboot_host()
    assert host.journal() == [
        JournalEntry("create", a.id, a.uuid, "ok", "host"),
        JournalEntry("pause", a.id, a.uuid, "ok", "host"),
        JournalEntry("resume", a.id, a.uuid, "ok", "host"),
        JournalEntry("rename", a.id, a.uuid, "ok", "host"),
        JournalEntry("reboot", a.id, a.uuid, "ok", "host"),
        JournalEntry("migrate", r.id, a.uuid, "ok", "host"),
        JournalEntry("crash", m.id, a.uuid, "ok", "host"),
        JournalEntry("destroy", m.id, a.uuid, "ok", "host"),
        JournalEntry("create", b.id, b.uuid, "ok", "host"),
        JournalEntry("save", b.id, b.uuid, "ok", "host"),
        JournalEntry("restore", b2.id, b.uuid, "ok", "host"),
        JournalEntry("shutdown", b2.id, b.uuid, "ok", "host"),
        JournalEntry("restart_daemon", 0, DOM0_UUID, "ok", "host"),
        JournalEntry("reboot_host", 0, DOM0_UUID, "ok", "host"),
    ]


def test_journal_records_failures(host: HostModel) -> None:
    a = host.create("a")
    with pytest.raises(OperationFailedError):
        host.resume(a.id)
    entry = host.journal()[-1]
    assert (entry.op, entry.domid, entry.uuid, entry.origin) == ("resume", a.id, a.uuid, "host")
    assert entry.outcome.startswith("failed")


def test_act_performs_and_journals_as_client(host: HostModel) -> None:
    a = host.create("a")
    host.act(Op.PAUSE, a.id, a.uuid)
    assert host.domain(a.id).state is DomainState.PAUSED
    assert host.journal()[-1] == JournalEntry("pause", a.id, a.uuid, "ok", "client")
    host.act(Op.RENAME, a.id, a.uuid, "renamed")
    assert host.domain(a.id).name == "renamed"
    host.act(Op.SAVE, a.id, a.uuid, "a.img")
    assert host.images() == ["a.img"]
    assert host.journal()[-1] == JournalEntry("save", a.id, a.uuid, "ok", "client")


@pytest.mark.parametrize("op", list(Op))
def test_act_with_wrong_uuid_is_refused_and_changes_nothing(host: HostModel, op: Op) -> None:
    a = host.create("a")
    other = host.create("other")
    before, gen, images = host.domains(), host.generation, host.images()
    arg = "img" if op is Op.SAVE else "newname" if op is Op.RENAME else None
    with pytest.raises(NoDomainError) as exc:
        host.act(op, a.id, other.uuid, arg)
    assert (exc.value.domid, exc.value.uuid, exc.value.op) == (a.id, other.uuid, op.value)
    entry = host.journal()[-1]
    assert (entry.op, entry.domid, entry.uuid, entry.origin) == (op.value, a.id, other.uuid,
                                                                   "client")
    assert entry.outcome.startswith("refused")
    assert host.domains() == before
    assert host.generation == gen
    assert host.images() == images


def test_act_on_a_missing_domid_is_refused(host: HostModel) -> None:
    a = host.create("a")
    host.destroy(a.id)
    before, gen = host.domains(), host.generation
    with pytest.raises(NoDomainError):
        host.act(Op.DESTROY, a.id, a.uuid)
    entry = host.journal()[-1]
    assert entry == JournalEntry("destroy", a.id, a.uuid, entry.outcome, "client")
    assert entry.outcome.startswith("refused")
    assert host.domains() == before
    assert host.generation == gen


def test_act_never_lands_on_the_domain_that_took_over_the_id() -> None:
    h = _host(max_domid=1)
    try:
        a = h.create("a")
        h.destroy(a.id)
        b = h.create("b")
        assert b.id == a.id  # the ID is reused
        with pytest.raises(NoDomainError):
            h.act(Op.DESTROY, a.id, a.uuid)
        assert h.domain(b.id) == b
    finally:
        h.close()


def test_act_failures_are_journalled_as_client(host: HostModel) -> None:
    with pytest.raises(OperationFailedError):
        host.act(Op.DESTROY, 0, DOM0_UUID)
    entry = host.journal()[-1]
    assert (entry.op, entry.domid, entry.origin) == ("destroy", 0, "client")
    assert entry.outcome.startswith("failed")


def test_journal_capacity_bounds_it() -> None:
    h = _host(journal_capacity=5)
    try:
        for i in range(10):
            h.create(f"g{i}")
        journal = h.journal()
        assert len(journal) == 5
        assert journal[-1].op == "create"
    finally:
        h.close()


# -- the planes' answers ----------------------------------------------------------------------


def test_data_snapshot_and_info(host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", vcpus=2, load=0.5, memory_kib=2048, max_memory_kib=4096)
    clock.advance(1.0)
    snap = host.data_snapshot()
    assert (snap.boot_id, snap.generation) == (host.boot_id, host.generation)
    rows = {r.id: r for r in snap.rows}
    assert set(rows) == {0, a.id}
    row = rows[a.id]
    assert (row.uuid, row.state, row.memory_kib, row.max_memory_kib, row.vcpus) == (
        a.uuid, DomainState.RUNNING, 2048, 4096, 2)
    assert row.cpu_time_ns == pytest.approx(1e9, abs=2)
    ans = host.data_info(a.id)
    assert (ans.boot_id, ans.generation, ans.row) == (host.boot_id, host.generation, row)
    missing = host.data_info(a.id + 1)
    assert missing.row is None
    assert missing.generation == host.generation


def test_resolve_by_uuid_and_id(host: HostModel) -> None:
    a = host.create("a", memory_kib=2048, vcpus=2, os_type="hvm")
    b = host.create("b")
    res = host.resolve([a.uuid, "00000000-0000-0000-0000-00000000dead"], [b.id, 99])
    assert (res.boot_id, res.generation) == (host.boot_id, host.generation)
    found = {r.uuid: r for r in res.domains}
    assert set(found) == {a.uuid, b.uuid}
    ra = found[a.uuid]
    assert ra.config is not None
    assert (ra.id, ra.name, ra.config.memory_kib, ra.config.vcpus, ra.config.os_type) == (
        a.id, "a", 2048, 2, "hvm")
    # the same domain asked for twice is answered once
    assert len(host.resolve([a.uuid], [a.id]).domains) == 1


def test_resolve_names_and_list_all(host: HostModel) -> None:
    a = host.create("a")
    host.create("b")
    res = host.resolve_names(["a", "nope"])
    assert [(r.id, r.uuid, r.name) for r in res.domains] == [(a.id, a.uuid, "a")]
    assert [r.name for r in host.list_all().domains] == ["Domain-0", "a", "b"]


def test_node_info(host: HostModel) -> None:
    info = host.node_info()
    assert isinstance(info, HostInfo)
    assert info.boot_id == host.boot_id
    assert info.hypervisor == "Xen"
    assert info.cpus == 8
    free = info.free_memory_kib
    host.create("a", memory_kib=1024 * 1024)
    assert host.node_info().free_memory_kib == free - 1024 * 1024


@pytest.mark.parametrize("kwargs", [{"cpus": 0}, {"memory_kib": -1}, {"control_latency_ms": -1},
                                    {"control_latency_ms": math.nan},
                                    {"control_latency_ms": math.inf}])
def test_host_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        _host(**kwargs)


@pytest.mark.parametrize("kwargs", [{"cpus": 0}, {"memory_kib": 0}, {"id_policy": "x"},
                                    {"max_domid": 0}, {"control_latency_ms": -1}])
def test_a_refused_host_leaves_no_image_directory_behind(kwargs: dict[str, object]) -> None:
    name = f"leak-test-{next(_serial)}"
    tmp = Path(tempfile.gettempdir())
    with pytest.raises(InvalidArgumentError):
        HostModel(name, **kwargs)  # type: ignore[arg-type]
    assert list(tmp.glob(f"xvirt-{name}-images-*")) == []


def test_an_owned_image_directory_is_removed_on_close() -> None:
    h = _host()
    path = Path(h.image_dir)
    assert path.is_dir()
    h.close()
    assert not path.exists()


def test_boot_ids_differ_between_hosts_and_reboots() -> None:
    hosts = [_host() for _ in range(3)]
    try:
        boots = {h.boot_id for h in hosts}
        hosts[0].reboot_host()
        boots.add(hosts[0].boot_id)
        assert len(boots) == 4
    finally:
        for h in hosts:
            h.close()


# -- closing -------------------------------------------------------------------------------


def test_a_closed_host_is_unreachable() -> None:
    h = _host()
    a = h.create("a")
    h.close()
    assert h.closed
    for call in (h.domains, h.data_snapshot, h.list_all, h.node_info, h.reboot_host,
                 h.restart_daemon, lambda: h.domain(0), lambda: h.destroy(a.id),
                 lambda: h.create("b"), lambda: h.data_info(0), lambda: h.events_since(0)):
        with pytest.raises(HostUnreachableError):
            call()


def test_close_wakes_an_event_waiter() -> None:
    h = _host()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            h.events_since(h.generation, timeout=30.0)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    h.close()
    t.join(5.0)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], HostUnreachableError)


def test_a_waiter_wakes_on_the_next_event() -> None:
    h = _host()
    try:
        got = []
        start = h.generation
        t = threading.Thread(target=lambda: got.append(h.events_since(start, timeout=30.0)))
        t.start()
        a = h.create("a")
        t.join(5.0)
        assert not t.is_alive()
        (batch,) = got
        assert batch.complete
        assert [(e.id, e.uuid) for e in batch.events] == [(a.id, a.uuid)]
    finally:
        h.close()


# -- tickers ---------------------------------------------------------------------------------


def test_tickers_run_at_the_start_of_every_request_on_the_host_clock(
    host: HostModel, clock: ManualClock
) -> None:
    calls: list[float] = []
    host.add_ticker(lambda h, now: calls.append(now))
    clock.advance(5.0)
    host.domains()
    host.data_snapshot()
    assert calls == [1005.0, 1005.0]


def test_tickers_do_not_recurse(host: HostModel) -> None:
    calls = []

    def ticker(h: HostModel, now: float) -> None:
        calls.append(now)
        h.domains()  # a request from inside a ticker does not tick again

    host.add_ticker(ticker)
    host.domains()
    assert len(calls) == 1


def test_act_validates_its_arguments_before_the_lock() -> None:
    from xvirt.errors import InvalidArgumentError
    from xvirt.host.hypervisor import HostModel
    from xvirt.planes import Op

    host = HostModel("act-args")
    try:
        for domid in ([1], -1, "1"):
            with pytest.raises(InvalidArgumentError):
                host.act(Op.PAUSE, domid, "0" * 32)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            host.act(Op.PAUSE, 0, "not-a-uuid")
    finally:
        host.close()


def test_a_failed_restore_is_journalled_and_keeps_the_image() -> None:
    from xvirt.errors import OperationFailedError
    from xvirt.host.hypervisor import HostModel

    host = HostModel("restore-fail")
    try:
        rec = host.create("a")
        host.save(rec.id, "img")
        host.create("a")  # the name is taken now
        with pytest.raises(OperationFailedError):
            host.restore("img")
        last = host.journal()[-1]
        assert (last.op, last.uuid) == ("restore", rec.uuid)
        assert last.outcome.startswith("failed")
        assert host.images() == ["img"]
    finally:
        host.close()


# -- a wedged domain reaches observers (a daemon's table) -------------------------------


def test_stall_and_unstall_reach_observers_as_changes_to_the_domain(host: HostModel) -> None:
    good, bad = host.create("good"), host.create("wedged")
    seen: list[HostChange] = []

    class Recorder:
        def commit(self, change: HostChange) -> None:
            seen.append(change)

    host.add_observer(Recorder())
    generation = host.generation
    host.stall(bad.id)
    (change,) = seen
    assert [d.uuid for d in change.domains] == [bad.uuid]
    assert change.stalled == {bad.uuid}
    assert change.generation == generation  # a fault, not a lifecycle event
    host.pause(good.id)  # a later change to another domain still says who is wedged
    assert [d.uuid for d in seen[-1].domains] == [good.uuid]
    assert seen[-1].stalled == {bad.uuid}
    host.unstall(bad.id)
    assert [d.uuid for d in seen[-1].domains] == [bad.uuid]
    assert seen[-1].stalled == frozenset()
    with pytest.raises(NoDomainError):
        host.stall(49)


def test_a_wedge_ends_with_the_domain_and_a_restore_starts_unwedged(tmp_path: Path) -> None:
    """Found by the exporter's random histories: create, stall, save, restore left the
    restored domain wedged."""
    host = HostModel("wedge", clock=ManualClock(), image_dir=tmp_path)
    dom = host.create("a")
    host.stall(dom.id)
    host.save(dom.id, "a.img")
    back = host.restore("a.img")
    snap = host.data_snapshot()
    assert [r.uuid for r in snap.rows if r.id != 0] == [back.uuid] and not snap.unanswered
