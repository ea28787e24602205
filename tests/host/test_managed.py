"""Managed domains (xend's ``xm new``/``start``/``delete``): defined and shut off, with a
name and a UUID and no ID, booted by ``start``, kept defined through every way a
running domain stops, and never on the data plane while shut off."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, NoDomainError, OperationFailedError
from xvirt.host.hypervisor import DOM0_UUID, HostChange, HostModel, JournalEntry
from xvirt.model import DomainState, EventKind
from xvirt.planes import Definition, DiskConfig, DomainConfig, NicConfig

pytestmark = pytest.mark.clock_start(1000.0)

U1 = "6695eb01-f6a4-8304-79aa-97f2502e193f"
U2 = "4f77abd2-3019-58e8-3bab-6fbf2118f880"


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock,
         tmp_path: Path) -> HostModel:
    """An empty host model (8 guest IDs, seeded) on ``clock``."""
    return make_host_model(clock=clock, seed=42, max_domid=8, image_dir=tmp_path / "images")


class Recorder:
    """An observer that keeps every change it is handed."""

    def __init__(self) -> None:
        self.changes: list[HostChange] = []

    def commit(self, change: HostChange) -> None:
        self.changes.append(change)


def _found(host: HostModel, **key: str) -> Definition | None:
    boot_id, generation, answer = host.find(**key)
    assert (boot_id, generation) == (host.boot_id, host.generation)
    return answer


def _inactive(host: HostModel) -> list[str]:
    return [d.name for d in host.defined()[2]]


def _on_data_plane(host: HostModel) -> set[str]:
    snap = host.data_snapshot()
    return {uuid for _, uuid in snap.members()}


# -- define -------------------------------------------------------------------------------


def test_define_keeps_a_shut_off_domain_with_no_id(host: HostModel) -> None:
    gen = host.generation
    d = host.define("mail", memory_kib=4096, max_memory_kib=8192, vcpus=2, uuid=U1.upper(),
                    os_type="hvm")
    config = DomainConfig(4096, 8192, 2, "hvm", (DiskConfig("/var/lib/xen/images/mail.img",
                                                             "xvda"),),
                          (NicConfig("00:16:3e:66:95:eb", "xenbr0"),))
    assert d == Definition(U1, "mail", None, True, config)
    assert host.defined()[2] == (d,)
    assert _found(host, uuid=U1) == _found(host, name="mail") == d
    assert [r.name for r in host.domains()] == ["Domain-0"]  # not running
    assert U1 not in _on_data_plane(host)
    assert host.data_census().members == ((0, DOM0_UUID),)
    assert [r.name for r in host.list_all().domains] == ["Domain-0"]
    (event,) = host.events_since(gen).events
    assert (event.kind, event.id, event.uuid, event.name) == (EventKind.DEFINED, -1, U1, "mail")
    assert host.journal()[-1] == JournalEntry("define", -1, U1, "ok", "host")


def test_define_without_a_uuid_draws_a_fresh_one(host: HostModel) -> None:
    running = host.create("a")
    uuids = {host.define(f"d{i}").uuid for i in range(20)}
    assert len(uuids) == 20 and running.uuid not in uuids and DOM0_UUID not in uuids
    assert _inactive(host) == sorted(f"d{i}" for i in range(20))


def test_define_takes_exactly_the_devices_it_is_given(host: HostModel) -> None:
    disks = (DiskConfig("phy:/dev/vg0/x", "xvda"), DiskConfig("file:/x.iso", "hdc", True))
    nics = (NicConfig("00:16:3E:00:00:0A", "xenbr1"),)
    d = host.define("x", disks=disks, nics=nics)
    assert d.config is not None
    assert (d.config.disks, d.config.nics) == (disks, (NicConfig("00:16:3e:00:00:0a",
                                                                 "xenbr1"),))
    bare = host.define("bare", disks=(), nics=())
    assert bare.config is not None and (bare.config.disks, bare.config.nics) == ((), ())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "a/b"},
        {"name": None},
        {"name": "ok", "memory_kib": 0},
        {"name": "ok", "memory_kib": True},
        {"name": "ok", "vcpus": 0},
        {"name": "ok", "memory_kib": 2048, "max_memory_kib": 1024},
        {"name": "ok", "load": 1.5},
        {"name": "ok", "load": math.nan},
        {"name": "ok", "uuid": "not-a-uuid"},
        {"name": "ok", "uuid": 5},
        {"name": "ok", "os_type": None},
        {"name": "ok", "disks": "xvda"},
        {"name": "ok", "nics": [NicConfig("01:00:5e:00:00:01")]},  # multicast
    ],
)
def test_define_refuses_what_create_refuses(host: HostModel, kwargs: dict[str, object]) -> None:
    gen, journal = host.generation, host.journal()
    with pytest.raises(InvalidArgumentError):
        host.define(**kwargs)  # type: ignore[arg-type]
    assert host.defined()[2] == ()
    assert (host.generation, host.journal()) == (gen, journal)


def test_define_refuses_a_name_another_domain_holds(host: HostModel) -> None:
    running = host.create("web")
    host.define("mail", uuid=U1)
    gen = host.generation
    for name in ("web", "mail", "Domain-0"):
        with pytest.raises(OperationFailedError, match="already exists") as err:
            host.define(name, uuid=U2)
        assert (err.value.name, err.value.uuid, err.value.op) == (name, U2, "define")
    with pytest.raises(OperationFailedError, match="already exists"):
        host.define("web")  # a fresh UUID: still another domain's name
    assert _inactive(host) == ["mail"] and host.domains()[1] == host.domain(running.id)
    assert host.generation == gen
    assert [e.outcome.split(":")[0] for e in host.journal()[-4:]] == ["failed"] * 4


def test_domain0_cannot_be_defined(host: HostModel) -> None:
    for name in ("Domain-0", "dom0-again"):
        with pytest.raises(OperationFailedError) as err:
            host.define(name, uuid=DOM0_UUID)
        assert err.value.uuid == DOM0_UUID
    assert _found(host, uuid=DOM0_UUID) == Definition(
        DOM0_UUID, "Domain-0", 0, False, host.list_all().domains[0].config)
    with pytest.raises(OperationFailedError):
        host.undefine(DOM0_UUID)  # it runs, and is not defined anyway


def test_defining_a_defined_uuid_replaces_its_definition(host: HostModel) -> None:
    host.define("mail", uuid=U1, memory_kib=1024)
    gen = host.generation
    d = host.define("post", uuid=U1, memory_kib=2048, vcpus=3)
    assert (d.uuid, d.name, d.id) == (U1, "post", None)
    assert d.config is not None and (d.config.memory_kib, d.config.vcpus) == (2048, 3)
    assert host.defined()[2] == (d,)
    assert _found(host, name="mail") is None
    host.create("mail")  # the old name is free again
    (event,) = host.events_since(gen).events[:1]
    assert (event.kind, event.uuid, event.name) == (EventKind.DEFINED, U1, "post")


def test_defining_a_running_transient_domain_makes_it_persistent(host: HostModel) -> None:
    rec = host.create("web", uuid=U1, memory_kib=4096)
    assert _found(host, uuid=U1) == Definition(U1, "web", rec.id, False,
                                               host.resolve([U1]).domains[0].config)
    with pytest.raises(OperationFailedError, match="running as 'web'"):
        host.define("www", uuid=U1)  # a running domain keeps its name
    gen = host.generation
    d = host.define("web", uuid=U1, memory_kib=8192)
    assert (d.id, d.persistent) == (rec.id, True)
    assert d.config is not None and d.config.memory_kib == 4096  # the live one, until a start
    assert host.defined()[2] == ()  # it runs
    (event,) = host.events_since(gen).events
    assert (event.kind, event.id, event.name) == (EventKind.DEFINED, rec.id, "web")
    assert host.journal()[-1] == JournalEntry("define", rec.id, U1, "ok", "host")
    host.shutdown(rec.id)
    stopped = _found(host, uuid=U1)
    assert stopped is not None and (stopped.id, stopped.persistent) == (None, True)
    assert stopped.config is not None and stopped.config.memory_kib == 8192
    again = host.start(U1)
    assert (again.memory_kib, again.name) == (8192, "web")


# -- start --------------------------------------------------------------------------------


def test_start_boots_a_defined_domain_under_a_new_id(host: HostModel, clock: ManualClock) -> None:
    host.create("a")
    host.define("mail", uuid=U1, memory_kib=2048, vcpus=2, load=0.5)
    gen = host.generation
    rec = host.start(U1.upper())
    assert (rec.id, rec.uuid, rec.name, rec.state) == (2, U1, "mail", DomainState.RUNNING)
    assert (rec.memory_kib, rec.vcpus, rec.cpu_time_ns) == (2048, 2, 0)
    assert host.domain(rec.id) == rec and U1 in _on_data_plane(host)
    assert _found(host, name="mail") == Definition(U1, "mail", rec.id, True,
                                                   host.resolve([U1]).domains[0].config)
    assert host.defined()[2] == ()
    (event,) = host.events_since(gen).events
    assert (event.kind, event.id, event.uuid) == (EventKind.STARTED, rec.id, U1)
    assert host.journal()[-1] == JournalEntry("start", rec.id, U1, "ok", "host")
    clock.advance(2.0)
    assert host.domain(rec.id).cpu_time_ns == 2 * 10**9  # 2 vCPUs at half load


def test_start_again_after_a_stop_starts_from_zero_cpu_time(host: HostModel,
                                                            clock: ManualClock) -> None:
    host.define("mail", uuid=U1)
    first = host.start(U1)
    clock.advance(100.0)
    host.destroy(first.id)
    second = host.start(U1)
    assert second.cpu_time_ns == 0 and second.id != first.id  # the rover moved on


def test_start_refusals_are_named_and_journalled(host: HostModel) -> None:
    transient = host.create("t", uuid=U2)
    host.define("mail", uuid=U1)
    rec = host.start(U1)
    with pytest.raises(OperationFailedError, match="already running") as err:
        host.start(U1)
    assert (err.value.domid, err.value.uuid, err.value.op) == (rec.id, U1, "start")
    with pytest.raises(OperationFailedError, match="already running"):
        host.start(transient.uuid)
    missing = "00000000-0000-0000-0000-00000000beef"
    with pytest.raises(NoDomainError) as gone:
        host.start(missing)
    assert (gone.value.uuid, gone.value.op) == (missing, "start")
    with pytest.raises(InvalidArgumentError):
        host.start("not-a-uuid")
    assert [(e.op, e.domid, e.outcome.split(":")[0]) for e in host.journal()[-3:]] == [
        ("start", rec.id, "failed"), ("start", transient.id, "failed"),
        ("start", -1, "refused")]


def test_start_with_no_free_id_fails_and_leaves_it_defined(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock, max_domid=2)
    host.create("a")
    host.create("b")
    host.define("mail", uuid=U1)
    with pytest.raises(OperationFailedError):
        host.start(U1)
    assert _inactive(host) == ["mail"]
    assert host.journal()[-1].outcome.startswith("failed")
    host.destroy(1)
    assert host.start(U1).id == 1


# -- undefine -----------------------------------------------------------------------------


def test_undefine_removes_a_shut_off_domain(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    gen = host.generation
    host.undefine(U1.upper())
    assert host.defined()[2] == () and _found(host, uuid=U1) is None
    (event,) = host.events_since(gen).events
    assert (event.kind, event.id, event.uuid, event.name) == (
        EventKind.UNDEFINED, -1, U1, "mail")
    assert host.journal()[-1] == JournalEntry("delete", -1, U1, "ok", "host")
    host.create("mail", uuid=U1)  # name and UUID are free: a transient domain now
    assert _found(host, uuid=U1) is not None
    assert not _found(host, uuid=U1).persistent  # type: ignore[union-attr]


def test_undefine_refuses_a_running_domain_and_an_unknown_one(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    rec = host.start(U1)
    transient = host.create("t", uuid=U2)
    gen = host.generation
    for uuid, domid in ((U1, rec.id), (U2, transient.id)):
        with pytest.raises(OperationFailedError, match="running") as err:
            host.undefine(uuid)
        assert (err.value.domid, err.value.uuid, err.value.op) == (domid, uuid, "undefine")
    missing = "00000000-0000-0000-0000-00000000beef"
    with pytest.raises(NoDomainError) as gone:
        host.undefine(missing)
    assert (gone.value.uuid, gone.value.op) == (missing, "undefine")
    assert host.generation == gen
    assert [(e.op, e.outcome.split(":")[0]) for e in host.journal()[-3:]] == [
        ("delete", "failed"), ("delete", "failed"), ("delete", "refused")]
    host.destroy(rec.id)
    host.undefine(U1)
    assert _found(host, uuid=U1) is None


# -- find and defined ---------------------------------------------------------------------


def test_find_takes_exactly_one_key(host: HostModel) -> None:
    with pytest.raises(InvalidArgumentError):
        host.find()
    with pytest.raises(InvalidArgumentError):
        host.find(uuid=U1, name="a")
    with pytest.raises(InvalidArgumentError):
        host.find(uuid="nope")
    with pytest.raises(InvalidArgumentError):
        host.find(name=5)  # type: ignore[arg-type]
    assert _found(host, name="nobody") is None
    assert _found(host, uuid=U1) is None


def test_defined_lists_only_shut_off_domains_by_name(host: HostModel) -> None:
    for name, uuid in (("zeta", U1), ("alpha", U2)):
        host.define(name, uuid=uuid)
    host.define("mid")
    assert _inactive(host) == ["alpha", "mid", "zeta"]
    host.start(U2)
    assert _inactive(host) == ["mid", "zeta"]
    assert all(d.id is None and d.persistent for d in host.defined()[2])


# -- every path keeps the definitions ------------------------------------------------------


@pytest.mark.parametrize("stop", ["destroy", "shutdown", "save", "crash-then-destroy"])
def test_a_managed_domain_that_stops_stays_defined(host: HostModel, stop: str) -> None:
    host.define("mail", uuid=U1, memory_kib=2048)
    rec = host.start(U1)
    if stop == "save":
        host.save(rec.id, "mail.img")
    elif stop == "crash-then-destroy":
        host.crash(rec.id)
        host.destroy(rec.id)
    else:
        getattr(host, stop)(rec.id)
    found = _found(host, uuid=U1)
    assert found is not None and (found.name, found.id, found.persistent) == ("mail", None, True)
    assert _inactive(host) == ["mail"]
    assert U1 not in _on_data_plane(host)
    with pytest.raises(OperationFailedError):
        host.create("mail")  # its name is still held
    with pytest.raises(OperationFailedError, match="defined"):
        host.create("other", uuid=U1)  # and its UUID


@pytest.mark.parametrize("move", ["reboot", "migrate"])
def test_reboot_and_migrate_keep_a_managed_domain_defined(host: HostModel, move: str) -> None:
    host.define("mail", uuid=U1)
    rec = host.start(U1)
    moved = getattr(host, move)(rec.id)
    assert moved.id != rec.id
    assert _found(host, uuid=U1) == Definition(U1, "mail", moved.id, True,
                                               host.resolve([U1]).domains[0].config)


def test_a_transient_domain_that_stops_is_gone(host: HostModel) -> None:
    rec = host.create("web", uuid=U1)
    host.destroy(rec.id)
    assert _found(host, uuid=U1) is None and host.defined()[2] == ()


def test_rename_of_a_running_managed_domain_renames_its_definition(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    rec = host.start(U1)
    host.rename(rec.id, "post")
    assert _found(host, name="mail") is None
    host.destroy(rec.id)
    assert _inactive(host) == ["post"]
    host.create("mail")  # the old name is free


def test_rename_refuses_a_name_a_definition_holds(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    web = host.create("web")
    with pytest.raises(OperationFailedError, match="already exists"):
        host.rename(web.id, "mail")
    assert host.domain(web.id).name == "web"
    assert host.journal()[-1].outcome.startswith("failed")


def test_create_refuses_a_defined_name_or_uuid(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    gen = host.generation
    with pytest.raises(OperationFailedError, match="already exists") as err:
        host.create("mail")
    assert err.value.name == "mail"
    with pytest.raises(OperationFailedError, match="already defined") as by_uuid:
        host.create("mail", uuid=U1)  # even under its own name: start it instead
    assert by_uuid.value.uuid == U1
    assert host.generation == gen and [r.name for r in host.domains()] == ["Domain-0"]


def test_restore_brings_a_saved_managed_domain_back_still_defined(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    rec = host.start(U1)
    host.save(rec.id, "mail.img")
    back = host.restore("mail.img")
    assert (back.uuid, back.name) == (U1, "mail")
    assert _found(host, uuid=U1) == Definition(U1, "mail", back.id, True,
                                               host.resolve([U1]).domains[0].config)
    assert host.defined()[2] == ()


def test_restore_of_a_transient_image_whose_uuid_was_defined_since(host: HostModel) -> None:
    rec = host.create("web", uuid=U1)
    host.save(rec.id, "web.img")
    host.define("web", uuid=U1)
    back = host.restore("web.img")
    found = _found(host, uuid=U1)
    assert found is not None and (found.id, found.persistent) == (back.id, True)


def test_restore_refuses_a_name_a_definition_holds_and_keeps_the_image(host: HostModel) -> None:
    rec = host.create("web", uuid=U1)
    host.save(rec.id, "web.img")
    host.define("web", uuid=U2)  # someone else's definition took the name
    with pytest.raises(OperationFailedError, match="already exists"):
        host.restore("web.img")
    assert host.images() == ["web.img"]
    last = host.journal()[-1]
    assert (last.op, last.domid, last.uuid) == ("restore", -1, U1)
    assert last.outcome.startswith("failed")


def test_restore_refuses_an_image_whose_name_is_not_its_definitions(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    host.save(host.start(U1).id, "mail.img")
    host.define("post", uuid=U1)  # redefined under a new name while shut off
    with pytest.raises(OperationFailedError, match="defined as 'post'"):
        host.restore("mail.img")
    assert host.images() == ["mail.img"] and _inactive(host) == ["post"]
    host.define("mail", uuid=U1)  # back to the image's name: the image restores
    assert host.restore("mail.img").name == "mail"


def test_definitions_outlive_a_host_reboot(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    host.define("web", uuid=U2)
    host.start(U2)
    host.create("tmp")
    boot = host.boot_id
    host.reboot_host()
    assert host.boot_id != boot
    assert [r.name for r in host.domains()] == ["Domain-0"]
    assert _inactive(host) == ["mail", "web"]  # the running one is shut off now
    assert host.start(U2).id == 1


# -- what observers (a store, a table) are handed ----------------------------------------


def test_changes_carry_definitions_and_never_a_shut_off_domain(host: HostModel) -> None:
    seen = Recorder()
    host.add_observer(seen)
    d = host.define("mail", uuid=U1, memory_kib=2048)
    (change,) = seen.changes
    assert [s.uuid for s in change.definitions] == [U1] and change.undefined == ()
    assert (change.domains, change.vacated_ids, change.gone_uuids) == ((), (), ())
    assert change.definitions[0].name == "mail" and change.definitions[0].memory_kib == 2048
    assert [e.kind for e in change.events] == [EventKind.DEFINED]
    rec = host.start(U1)
    started = seen.changes[-1]
    assert [x.uuid for x in started.domains] == [U1]
    assert started.definitions == ()  # starting does not change the definition
    host.rename(rec.id, "post")
    assert [x.name for x in seen.changes[-1].definitions] == ["post"]
    host.destroy(rec.id)
    destroyed = seen.changes[-1]
    assert destroyed.gone_uuids == (U1,) and destroyed.definitions == ()
    host.undefine(U1)
    undefined = seen.changes[-1]
    assert undefined.undefined == (U1,) and undefined.domains == ()
    assert d.uuid not in {s.uuid for s in host.state().definitions}


def test_the_state_holds_every_definition_running_or_not(host: HostModel) -> None:
    host.define("mail", uuid=U1)
    host.define("web", uuid=U2)
    host.start(U2)
    state = host.state()
    assert [(s.uuid, s.name) for s in state.definitions] == [(U1, "mail"), (U2, "web")]
    assert U1 not in {d.uuid for d in state.domains}


def test_a_loaded_state_brings_the_definitions_back(
        host: HostModel, make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host.define("mail", uuid=U1)
    host.define("web", uuid=U2)
    rec = host.start(U2)
    again = make_host_model(clock=clock)
    again.load(host.state())
    assert again.defined() == host.defined()
    assert again.find(uuid=U2) == host.find(uuid=U2)
    again.destroy(rec.id)
    assert _inactive(again) == ["mail", "web"]


@pytest.mark.parametrize("flaw", ["name-of-a-running-domain", "name-twice", "uuid-twice",
                                  "domain-0", "running-under-another-name"])
def test_an_inconsistent_state_with_definitions_is_refused(
        host: HostModel, make_host_model: Callable[..., HostModel], clock: ManualClock,
        flaw: str) -> None:
    from dataclasses import replace

    host.define("mail", uuid=U1)
    web = host.create("web", uuid=U2)
    host.define("web", uuid=U2)
    state = host.state()
    mail, web_def = state.definitions
    bad = {
        "name-of-a-running-domain": (replace(mail, name="web"),),
        "name-twice": (mail, replace(mail, uuid="00000000-0000-0000-0000-00000000beef")),
        "uuid-twice": (mail, replace(mail, name="other")),
        "domain-0": (replace(mail, uuid=DOM0_UUID, name="zero"),),
        "running-under-another-name": (mail, replace(web_def, name="www")),
    }[flaw]
    again = make_host_model(clock=clock)
    with pytest.raises(InvalidArgumentError, match="inconsistent"):
        again.load(replace(state, definitions=bad))
    assert again.defined()[2] == () and [r.name for r in again.domains()] == ["Domain-0"]
    assert web.id in {r.id for r in host.domains()}
