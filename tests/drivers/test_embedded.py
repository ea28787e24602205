"""The embedded driver: exact counts per channel, and latency through the injected clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from xvirt import sim
from xvirt.clock import ManualClock
from xvirt.drivers.base import Driver, PlaneCounters
from xvirt.drivers.embedded import EmbeddedDriver
from xvirt.errors import NoDomainError, OperationFailedError
from xvirt.host.hypervisor import JournalEntry
from xvirt.planes import Definition, DiskConfig, DomainConfig, NicConfig, Op

pytestmark = pytest.mark.clock_start(10.0)
_serial = itertools.count()  # guest names

SimHosts = Callable[..., sim.Host]
MISSING = "00000000-0000-0000-0000-00000000beef"


@pytest.fixture
def host(sim_host: sim.Host) -> sim.Host:
    """An empty host on ``clock``."""
    return sim_host


def _counts(d: Driver) -> tuple[int, int, int]:
    c = d.counters
    return c.data_calls, c.control_requests, c.event_requests


Call = Callable[[EmbeddedDriver, sim.Host], object]


def _calls(kind: str) -> list[tuple[str, Call]]:
    def act_ok(d: EmbeddedDriver, h: sim.Host) -> None:
        rec = h.create(f"victim-{next(_serial)}")
        d.act(Op.PAUSE, rec.id, rec.uuid)

    def act_refused(d: EmbeddedDriver, h: sim.Host) -> None:
        rec = h.create(f"victim-{next(_serial)}")
        with pytest.raises(NoDomainError):
            d.act(Op.PAUSE, rec.id, "00000000-0000-0000-0000-00000000beef")

    def act_failed(d: EmbeddedDriver, h: sim.Host) -> None:
        with pytest.raises(OperationFailedError):
            d.act(Op.DESTROY, 0, sim.DOM0_UUID)

    def restore(d: EmbeddedDriver, h: sim.Host) -> None:
        rec = h.create(f"saved-{next(_serial)}")
        h.save(rec.id, f"img-{rec.id}")
        d.restore(f"img-{rec.id}")

    def restore_missing(d: EmbeddedDriver, h: sim.Host) -> None:
        with pytest.raises(OperationFailedError):
            d.restore("nothing-here")

    def define(d: EmbeddedDriver, h: sim.Host) -> None:
        d.define(f"def-{next(_serial)}", DomainConfig(1024, 1024, 1))

    def define_refused(d: EmbeddedDriver, h: sim.Host) -> None:
        with pytest.raises(OperationFailedError):
            d.define("a", DomainConfig(1024, 1024, 1))  # a running domain's name

    def start(d: EmbeddedDriver, h: sim.Host) -> None:
        d.start(h.define(f"def-{next(_serial)}").uuid)

    def start_refused(d: EmbeddedDriver, h: sim.Host) -> None:
        with pytest.raises(NoDomainError):
            d.start(MISSING)

    def undefine(d: EmbeddedDriver, h: sim.Host) -> None:
        d.undefine(h.define(f"def-{next(_serial)}").uuid)

    def undefine_refused(d: EmbeddedDriver, h: sim.Host) -> None:
        with pytest.raises(OperationFailedError):
            d.undefine(h.domains()[1].uuid)  # it runs

    def list_defined(d: EmbeddedDriver, h: sim.Host) -> None:
        h.define(f"def-{next(_serial)}")
        assert len(d.list_defined()) == 1

    table: dict[str, list[tuple[str, Call]]] = {
        "data": [
            ("snapshot", lambda d, h: d.snapshot()),
            ("info_by_id", lambda d, h: d.info_by_id(0)),
            ("info_by_id_missing", lambda d, h: d.info_by_id(999)),
            ("census", lambda d, h: d.census()),
            ("identify", lambda d, h: d.identify(1)),
            ("info_by_uuid", lambda d, h: d.info_by_uuid(sim.DOM0_UUID, 0)),
        ],
        "control": [
            ("resolve", lambda d, h: d.resolve([sim.DOM0_UUID], [0, 1, 2])),
            ("resolve_empty", lambda d, h: d.resolve()),
            ("resolve_names", lambda d, h: d.resolve_names(["Domain-0", "x", "y"])),
            ("domain_config", lambda d, h: d.domain_config(sim.DOM0_UUID)),
            ("list_all", lambda d, h: d.list_all()),
            ("host_info", lambda d, h: d.host_info()),
            ("act", act_ok),
            ("act_refused", act_refused),
            ("act_failed", act_failed),
            ("restore", restore),
            ("restore_missing", restore_missing),
            ("find_by_name", lambda d, h: d.find(name="a")),
            ("find_by_uuid", lambda d, h: d.find(uuid=sim.DOM0_UUID)),
            ("find_missing", lambda d, h: d.find(uuid=MISSING)),
            ("list_defined", list_defined),
            ("define", define),
            ("define_refused", define_refused),
            ("start", start),
            ("start_refused", start_refused),
            ("undefine", undefine),
            ("undefine_refused", undefine_refused),
        ],
        "event": [
            ("events_since", lambda d, h: d.events_since(0)),
            ("events_since_latest", lambda d, h: d.events_since(h.generation, timeout=0)),
        ],
    }
    return table[kind]


@pytest.mark.parametrize(("label", "call"), _calls("data"))
def test_data_plane_methods_count_exactly_one_data_call(
    host: sim.Host, clock: ManualClock, label: str, call: Call
) -> None:
    host.create("a")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri, control_latency_ms=50)
    t = clock.now()
    call(d, host)
    assert _counts(d) == (1, 0, 0)
    assert clock.now() == t  # the data plane never waits


@pytest.mark.parametrize(("label", "call"), _calls("control"))
def test_control_plane_methods_count_exactly_one_request(
    host: sim.Host, label: str, call: Call
) -> None:
    host.create("a")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    call(d, host)
    assert _counts(d) == (0, 1, 0)


@pytest.mark.parametrize(("label", "call"), _calls("event"))
def test_events_since_counts_exactly_one_event_request(
    host: sim.Host, clock: ManualClock, label: str, call: Call
) -> None:
    host.create("a")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri, control_latency_ms=50)
    t = clock.now()
    call(d, host)
    assert _counts(d) == (0, 0, 1)
    assert clock.now() == t


def test_census_and_identify_agree_with_the_snapshot(host: sim.Host) -> None:
    for name in "abc":
        host.create(name)
    host.destroy(host.create("gone").id)
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    snap = d.snapshot()
    census = d.census()
    assert census == (snap.boot_id, snap.generation,
                      tuple((r.id, r.uuid) for r in snap.rows), None)
    for row in snap.rows:
        assert d.identify(row.id) == (snap.boot_id, snap.generation, row.uuid, None)
    assert d.identify(999).uuid is None


def test_counts_add_up_over_many_calls(host: sim.Host) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    for _ in range(7):
        d.snapshot()
    for _ in range(3):
        d.list_all()
    for _ in range(5):
        d.events_since(0)
    assert _counts(d) == (7, 3, 5)


def test_counters_are_per_driver(host: sim.Host) -> None:
    d1 = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    d2 = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    d1.snapshot()
    assert _counts(d2) == (0, 0, 0)
    assert isinstance(d1.counters, PlaneCounters)


@pytest.mark.parametrize(("label", "call"), _calls("control"))
def test_control_latency_sleeps_through_the_clock(
    make_sim_host: SimHosts, clock: ManualClock, label: str, call: Call
) -> None:
    with make_sim_host(clock=clock, control_latency_ms=40) as h:
        h.create("a")
        d = EmbeddedDriver(sim._model_of(h), uri=h.uri)
        t = clock.now()
        call(d, h)
        assert clock.now() - t == pytest.approx(0.040, abs=1e-9)


@pytest.mark.parametrize("override", [7.0, 0.0, 250.0])
def test_uri_latency_overrides_the_hosts(
        make_sim_host: SimHosts, clock: ManualClock, override: float) -> None:
    with make_sim_host(clock=clock, control_latency_ms=40) as h:
        from xvirt.uri import open_driver

        d = open_driver(f"{h.uri}?control_latency_ms={override:g}")
        t = clock.now()
        d.list_all()
        assert clock.now() - t == pytest.approx(override / 1000, abs=1e-9)
        t = clock.now()
        d.snapshot()
        d.events_since(0)
        assert clock.now() == t


def test_no_latency_means_no_sleep(host: sim.Host, clock: ManualClock) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    t = clock.now()
    d.list_all()
    d.host_info()
    assert clock.now() == t


def test_latency_is_paid_per_request(make_sim_host: SimHosts, clock: ManualClock) -> None:
    with make_sim_host(clock=clock, control_latency_ms=50) as h:
        d = EmbeddedDriver(sim._model_of(h), uri=h.uri)
        t = clock.now()
        for _ in range(20):
            d.resolve([sim.DOM0_UUID])
        assert clock.now() - t == pytest.approx(1.0, abs=1e-9)
        assert _counts(d) == (0, 20, 0)


# -- what the driver answers ---------------------------------------------------------------


def test_restore_answers_with_the_restored_domain(host: sim.Host) -> None:
    rec = host.create("a")
    host.save(rec.id, "a.img")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    answer = d.restore("a.img")
    (resolved,) = answer.domains
    assert (resolved.uuid, resolved.name) == (rec.uuid, "a")
    assert resolved.id != rec.id
    assert answer.boot_id == host.boot_id
    assert answer.generation == host.generation
    assert host.journal()[-1] == JournalEntry("restore", resolved.id, rec.uuid, "ok", "client")


def test_restore_leaves_the_image_and_a_second_one_names_the_running_uuid(
        host: sim.Host) -> None:
    rec = host.create("a")
    host.save(rec.id, "a.img")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    (first,) = d.restore("a.img").domains
    assert host.images() == ["a.img"]
    with pytest.raises(OperationFailedError, match=rec.uuid) as exc:
        d.restore("a.img")
    assert exc.value.uuid == rec.uuid
    assert [x.uuid for x in host.domains()].count(rec.uuid) == 1  # no duplicate
    d.act(Op.DESTROY, first.id, rec.uuid)
    (again,) = d.restore("a.img").domains
    assert (again.uuid, again.name) == (rec.uuid, "a") and again.id != first.id


def test_save_and_restore_take_any_absolute_path_of_this_process(
        host: sim.Host, tmp_path: Path) -> None:
    """The embedded host acts for this process alone: its permissions decide."""
    rec = host.create("a")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    path = str(tmp_path / "elsewhere.save")
    d.act(Op.SAVE, rec.id, rec.uuid, path)
    assert (tmp_path / "elsewhere.save").is_file() and host.images() == []
    (back,) = d.restore(path).domains
    assert back.uuid == rec.uuid and (tmp_path / "elsewhere.save").is_file()
    with pytest.raises(OperationFailedError, match="no directory") as exc:
        d.act(Op.SAVE, back.id, rec.uuid, str(tmp_path / "missing" / "x.save"))
    assert exc.value.name == str(tmp_path / "missing" / "x.save")
    (tmp_path / "text").write_text("not an image")
    with pytest.raises(OperationFailedError, match="not an xvirt domain image"):
        d.restore(str(tmp_path / "text"))
    assert host.domains()[-1].uuid == rec.uuid


def test_act_goes_through_the_identity_check(host: sim.Host) -> None:
    a = host.create("a")
    b = host.create("b")
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    with pytest.raises(NoDomainError):
        d.act(Op.DESTROY, a.id, b.uuid)
    assert [x.name for x in host.domains()] == ["Domain-0", "a", "b"]
    d.act(Op.DESTROY, a.id, a.uuid)
    assert [x.name for x in host.domains()] == ["Domain-0", "b"]
    assert host.journal()[-1].origin == "client"


def test_answers_carry_boot_id_and_generation(host: sim.Host) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    host.create("a")
    for answer in (d.snapshot(), d.info_by_id(0), d.list_all(), d.resolve(ids=[0])):
        assert answer.boot_id == host.boot_id
        assert answer.generation == host.generation
    batch = d.events_since(0)
    assert (batch.boot_id, batch.latest) == (host.boot_id, host.generation)
    assert d.host_info().boot_id == host.boot_id


def test_close_is_idempotent(host: sim.Host) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    d.close()
    d.close()


def test_domain_config_has_the_domains_devices(host: sim.Host) -> None:
    disks = (sim.DiskConfig("phy:/dev/vg0/a", "xvda"),
             sim.DiskConfig("file:/srv/a.iso", "hdc", readonly=True))
    nics = (sim.NicConfig("00:16:3e:00:00:0a", "xenbr1"),)
    a = host.create("a", memory_kib=4096, vcpus=2, disks=disks, nics=nics)
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    config = d.domain_config(a.uuid)
    assert (config.memory_kib, config.vcpus, config.disks, config.nics) == (4096, 2, disks, nics)
    assert _counts(d) == (0, 1, 0)
    with pytest.raises(NoDomainError):
        d.domain_config("00000000-0000-0000-0000-00000000beef")


def test_image_dir_is_the_hosts(make_sim_host: SimHosts, clock: ManualClock,
                                tmp_path: Path) -> None:
    with make_sim_host(clock=clock, image_dir=tmp_path / "i") as h:
        d = EmbeddedDriver(sim._model_of(h), uri=h.uri)
        assert d.image_dir == str(tmp_path / "i")
        assert _counts(d) == (0, 0, 0)  # known in process: no request


# -- defined (managed) domains ----------------------------------------------------------------


def test_define_takes_the_configuration_as_it_is(host: sim.Host) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    disks = (DiskConfig("phy:/dev/vg0/m", "xvda"),)
    nics = (NicConfig("00:16:3e:00:00:0b", "xenbr1"),)
    config = DomainConfig(2048, 4096, 2, "hvm", disks, nics)
    uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert d.define("mail", config, uuid) == Definition(uuid, "mail", None, True, config)
    bare = d.define("bare", DomainConfig(1024, 1024, 1))  # no devices named: none
    assert bare.config == DomainConfig(1024, 1024, 1)
    assert host.journal()[-2:] == [JournalEntry("define", -1, uuid, "ok", "client"),
                                   JournalEntry("define", -1, bare.uuid, "ok", "client")]
    assert d.list_defined() == (bare, Definition(uuid, "mail", None, True, config))
    assert d.find(name="mail") == d.find(uuid=uuid) == d.list_defined()[1]
    assert _counts(d) == (0, 6, 0)


def test_start_and_undefine_act_by_uuid_as_the_client(host: sim.Host) -> None:
    d = EmbeddedDriver(sim._model_of(host), uri=host.uri)
    mail = host.define("mail")
    d.start(mail.uuid)
    (rec,) = host.domains()[1:]
    assert (rec.uuid, rec.name) == (mail.uuid, "mail")
    assert host.journal()[-1] == JournalEntry("start", rec.id, mail.uuid, "ok", "client")
    found = d.find(uuid=mail.uuid)
    assert found is not None and (found.id, found.persistent) == (rec.id, True)
    assert d.list_defined() == ()  # it runs
    with pytest.raises(OperationFailedError):
        d.undefine(mail.uuid)
    host.shutdown(rec.id)
    assert [x.name for x in d.list_defined()] == ["mail"]
    assert rec.uuid not in {r.uuid for r in d.snapshot().rows}
    d.undefine(mail.uuid)
    assert host.journal()[-1] == JournalEntry("delete", -1, mail.uuid, "ok", "client")
    assert d.find(uuid=mail.uuid) is None and d.list_defined() == ()
    with pytest.raises(NoDomainError):
        d.undefine(mail.uuid)
