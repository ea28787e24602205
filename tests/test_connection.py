"""Connection and Domain: the public API's behaviour, one promise per test."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

import xvirt
from xvirt.clock import ManualClock


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    """An empty host on ``clock``."""
    return sim_host


@pytest.fixture
def conn(host: xvirt.sim.Host) -> Iterator[xvirt.Connection]:
    with xvirt.open(host.uri) as c:
        yield c


def test_open_defaults_to_the_demo_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVIRT_DEFAULT_URI", raising=False)
    with xvirt.open() as conn:
        assert conn.uri == "sim:///default"
        names = {d.name for d in conn.list_domains()}
    assert {"Domain-0", "web1", "db1"} <= names


def test_values_match_the_host(host: xvirt.sim.Host, conn: xvirt.Connection,
                               clock: ManualClock) -> None:
    rec = host.create("web1", memory_kib=524288, max_memory_kib=1048576, vcpus=2)
    clock.advance(2.0)
    dom = conn.lookup_by_name("web1")
    assert (dom.uuid, dom.name, dom.id) == (rec.uuid, "web1", rec.id)
    info = dom.info()
    truth = host.domain(rec.id)
    assert info == xvirt.DomainInfo(truth.state, 524288, 1048576, 2, truth.cpu_time_ns)
    assert info.cpu_time_ns == int(2.0 * 1e9 * 0.25 * 2)
    assert conn.list_domain_ids() == [0, rec.id]
    assert [d.uuid for d in conn.list_domains()] == [xvirt.sim.DOM0_UUID, rec.uuid]


def test_lookup_by_uuid_accepts_loose_forms(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    rec = host.create("u")
    for form in (rec.uuid, rec.uuid.upper(), rec.uuid.replace("-", ""), f"  {rec.uuid} "):
        assert conn.lookup_by_uuid(form).uuid == rec.uuid


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.lookup_by_id(-1),
        lambda c: c.lookup_by_id(0x7FF0),
        lambda c: c.lookup_by_id("1"),
        lambda c: c.lookup_by_id(1.0),
        lambda c: c.lookup_by_id(True),
        lambda c: c.lookup_by_uuid("not-a-uuid"),
        lambda c: c.lookup_by_uuid("{" + "0" * 32 + "}"),
        lambda c: c.lookup_by_uuid(12),
        lambda c: c.lookup_by_name(""),
        lambda c: c.lookup_by_name(None),
    ],
)
def test_bad_lookups_are_refused_before_any_call(
    conn: xvirt.Connection, call: Callable[[xvirt.Connection], object]
) -> None:
    with pytest.raises(xvirt.InvalidArgumentError):
        call(conn)
    stats = conn.stats()
    assert (stats.data_calls, stats.control_requests) == (0, 0)


def test_unknown_domains(conn: xvirt.Connection) -> None:
    with pytest.raises(xvirt.NoDomainError) as err:
        conn.lookup_by_id(42)
    assert err.value.domid == 42 and err.value.uri == conn.uri
    with pytest.raises(xvirt.NoDomainError) as err:
        conn.lookup_by_name("nope")
    assert err.value.name == "nope"
    with pytest.raises(xvirt.NoDomainError):
        conn.lookup_by_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f")


MUTATIONS: list[tuple[str, Callable[[xvirt.Domain], None]]] = [
    ("pause", lambda d: d.pause()),
    ("resume", lambda d: d.resume()),
    ("shutdown", lambda d: d.shutdown()),
    ("reboot", lambda d: d.reboot()),
    ("destroy", lambda d: d.destroy()),
    ("save", lambda d: d.save("img")),
    ("rename", lambda d: d.rename("other")),
]


@pytest.mark.parametrize(("op", "mutate"), MUTATIONS)
def test_read_only_never_reaches_the_host(
    host: xvirt.sim.Host, op: str, mutate: Callable[[xvirt.Domain], None]
) -> None:
    rec = host.create("ro")
    with xvirt.open(host.uri, readonly=True) as conn:
        dom = conn.lookup_by_id(rec.id)
        before = (conn.stats().control_requests, len(host.journal()))
        with pytest.raises(xvirt.ReadOnlyError) as err:
            mutate(dom)
        assert err.value.op == op and err.value.uuid == rec.uuid
        assert (conn.stats().control_requests, len(host.journal())) == before
    assert host.domain(rec.id).state is xvirt.DomainState.RUNNING


def test_read_only_restore(host: xvirt.sim.Host) -> None:
    rec = host.create("saved")
    host.save(rec.id, "img")
    with xvirt.open(host.uri, readonly=True) as conn, pytest.raises(xvirt.ReadOnlyError):
        conn.restore("img")
    assert host.images() == ["img"]


def test_handles_follow_their_domain(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    rec = host.create("mover")
    dom = conn.lookup_by_id(rec.id)
    moved = host.reboot(rec.id)
    assert dom.id == moved.id != rec.id
    moved = host.migrate(moved.id)
    assert dom.id == moved.id
    host.save(moved.id, "snap")
    with pytest.raises(xvirt.NoDomainError):
        dom.info()
    back = conn.restore("snap")
    assert back.uuid == dom.uuid and back == dom
    assert dom.name == "mover" and dom.info().state is xvirt.DomainState.RUNNING
    host.rename(dom.id, "renamed")
    assert dom.name == "renamed"
    assert conn.lookup_by_name("renamed") == dom
    with pytest.raises(xvirt.NoDomainError):
        conn.lookup_by_name("mover")


class _Held:
    """Something a caller's frame holds (in the face: the libvirt domain an event
    handler was given)."""


def test_a_gone_domain_leaves_no_reference_cycle(host: xvirt.sim.Host,
                                                 conn: xvirt.Connection) -> None:
    """The error a lookup of a gone domain raises keeps no frame alive once handled: a
    cycle through its traceback kept a libvirt-python event handler's domain (and so
    its connection) until the garbage collector ran, after asyncio's loop had closed."""
    rec = host.create("brief")
    dom = conn.lookup_by_id(rec.id)
    host.destroy(rec.id)

    def ask() -> weakref.ref[_Held]:
        held = _Held()
        with contextlib.suppress(xvirt.NoDomainError):
            dom.identity()
        return weakref.ref(held)

    gc.disable()
    try:
        assert ask()() is None  # freed on return, with no collection
    finally:
        gc.enable()


def test_mutations_through_handles(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    rec = host.create("m")
    dom = conn.lookup_by_id(rec.id)
    dom.pause()
    assert dom.info().state is xvirt.DomainState.PAUSED
    with pytest.raises(xvirt.OperationFailedError):
        dom.pause()
    dom.resume()
    dom.reboot()
    assert dom.id != rec.id
    dom.save("m.img")
    assert host.images() == ["m.img"]
    with pytest.raises(xvirt.InvalidArgumentError):
        conn.restore("../m.img")
    conn.restore("m.img")
    dom.destroy()
    with pytest.raises(xvirt.NoDomainError):
        dom.destroy()
    client = [(e.op, e.uuid, e.outcome) for e in host.journal() if e.origin == "client"]
    assert [op for op, _, outcome in client if outcome == "ok"] == [
        "pause", "resume", "reboot", "save", "restore", "destroy"]
    assert {u for _, u, _ in client} == {rec.uuid}


@pytest.mark.parametrize("image", ["", "../x", "/", "a/b", ".hidden", "x\x00y", "x" * 300])
def test_bad_image_names_write_nothing(
    host: xvirt.sim.Host, conn: xvirt.Connection, image: str
) -> None:
    rec = host.create("s")
    dom = conn.lookup_by_id(rec.id)
    with pytest.raises(xvirt.InvalidArgumentError):
        dom.save(image)
    assert host.images() == []
    assert host.domain(rec.id).uuid == rec.uuid


def test_closed_objects(host: xvirt.sim.Host) -> None:
    rec = host.create("c")
    conn = xvirt.open(host.uri)
    dom = conn.lookup_by_id(rec.id)
    other = conn.lookup_by_id(rec.id)
    dom.close()
    with pytest.raises(xvirt.HandleClosedError):
        dom.info()
    assert other.info().state is xvirt.DomainState.RUNNING  # closing one handle is local
    conn.close()
    conn.close()  # idempotent
    for call in (conn.list_domain_ids, lambda: conn.lookup_by_id(0), other.info, conn.host_info):
        with pytest.raises(xvirt.ConnectionClosedError):
            call()


def test_host_info(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    info = conn.host_info()
    assert info.boot_id == host.boot_id and info.cpus >= 1 and info.memory_kib > 0
    assert conn.stats().control_requests == 1


def test_closed_host_is_unreachable(host: xvirt.sim.Host) -> None:
    conn = xvirt.open(host.uri)
    host.close()
    with pytest.raises(xvirt.HostUnreachableError):
        conn.list_domain_ids()
    with pytest.raises(xvirt.HostUnreachableError) as err:
        xvirt.open(host.uri)
    assert err.value.uri == host.uri


def test_events_carry_names(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    keep = host.create("keep")
    stream = conn.events(timeout=0)
    gone = host.create("gone")
    conn.lookup_by_id(gone.id)  # the cache learns its name while it lives
    host.destroy(gone.id)
    host.rename(keep.id, "kept")
    moved = host.reboot(keep.id)
    seen = [(e.kind, e.name, e.id) for e in stream]
    K = xvirt.EventKind
    assert seen == [
        (K.CREATED, "gone", gone.id),
        (K.DESTROYED, "gone", gone.id),
        (K.RENAMED, "kept", keep.id),
        (K.REBOOTED, "kept", moved.id),
    ]
    assert list(conn.events(timeout=0)) == []



def test_a_stream_goes_on_after_a_step_that_timed_out(host: xvirt.sim.Host,
                                                      conn: xvirt.Connection) -> None:
    """A step that timed out ends the iteration, not the stream: ``next()`` waits
    again from where it left off, and what came meanwhile is all there, in order."""
    stream = conn.events(timeout=0)
    assert list(stream) == []
    first = host.create("first")
    second = host.create("second")
    host.destroy(first.id)
    seen = [(e.kind, e.uuid) for e in stream]
    K = xvirt.EventKind
    assert seen == [(K.CREATED, first.uuid), (K.CREATED, second.uuid),
                    (K.DESTROYED, first.uuid)]
    with pytest.raises(StopIteration):
        next(stream)
    host.destroy(second.id)
    assert [(e.kind, e.uuid) for e in stream] == [(K.DESTROYED, second.uuid)]

def test_events_follow_a_host_reboot(host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    stream = conn.events(timeout=0)
    host.reboot_host()
    rec = host.create("after")
    events = list(stream)
    assert [(e.kind, e.uuid, e.name) for e in events] == [
        (xvirt.EventKind.CREATED, rec.uuid, "after")]


def test_config_returns_the_devices_for_one_control_request(
        host: xvirt.sim.Host, conn: xvirt.Connection) -> None:
    disks = (xvirt.sim.DiskConfig("phy:/dev/vg0/db", "xvda"),
             xvirt.sim.DiskConfig("file:/srv/boot.iso", "hdc", readonly=True))
    nics = (xvirt.sim.NicConfig("00:16:3e:00:00:42", "xenbr1"),)
    host.create("db", memory_kib=8192, vcpus=2, disks=disks, nics=nics)
    plain = host.create("plain")
    dom = conn.lookup_by_name("db")
    before = conn.stats().control_requests
    config = dom.config()
    assert conn.stats().control_requests == before + 1
    assert (config.memory_kib, config.vcpus, config.disks, config.nics) == (8192, 2, disks, nics)
    default = conn.lookup_by_id(plain.id).config()
    assert default.disks == (xvirt.sim.DiskConfig("/var/lib/xen/images/plain.img", "xvda"),)
    assert len(default.nics) == 1 and default.nics[0].mac.startswith("00:16:3e:")


# -- a wedged domain ------------------------------------------------------------------------


def test_a_wedged_domain_is_reported_beside_the_others(
    host: xvirt.sim.Host, conn: xvirt.Connection, clock: ManualClock
) -> None:
    good, wedged = host.create("good"), host.create("wedged")
    conn.sample()  # both known: what follows costs no control request
    before = conn.stats()
    t = clock.now()
    host.stall(wedged.id)
    found = conn.survey()
    assert clock.now() - t == pytest.approx(2.0)  # the per-domain timeout, waited once
    assert [s.identity.name for s in found.samples] == ["Domain-0", "good"]
    assert [(f.identity.uuid, f.identity.name, f.identity.id) for f in found.failures] == [
        (wedged.uuid, "wedged", wedged.id)]
    error = found.failures[0].error
    assert isinstance(error, xvirt.OperationFailedError)
    assert (error.domid, error.uuid) == (wedged.id, wedged.uuid)
    after = conn.stats()
    assert after.control_requests == before.control_requests  # still known: nothing to ask
    assert after.evictions == before.evictions  # alive, so kept (C7 evicts only the gone)
    assert conn.list_domain_ids() == [0, good.id, wedged.id]
    dom = conn.lookup_by_id(wedged.id)  # who it is does not need its figures
    assert dom.name == "wedged"
    with pytest.raises(xvirt.OperationFailedError, match="did not answer"):
        dom.info()
    with pytest.raises(xvirt.OperationFailedError, match="did not answer"):
        conn.sample()  # all or an error; survey() is for partial answers
    assert conn.lookup_by_id(good.id).info().state is not None
    host.unstall(wedged.id)
    assert [f.identity.name for f in conn.survey().failures] == []
    assert len(conn.sample()) == 3


def test_the_per_domain_timeout_is_a_uri_option(host: xvirt.sim.Host,
                                                clock: ManualClock) -> None:
    wedged = host.create("wedged")
    host.stall(wedged.id)
    with xvirt.open(host.uri + "?domain_timeout_ms=250") as conn:
        t = clock.now()
        assert len(conn.survey().failures) == 1
        assert clock.now() - t == pytest.approx(0.25)
    with pytest.raises(xvirt.InvalidArgumentError, match="domain_timeout_ms"):
        xvirt.open(host.uri + "?domain_timeout_ms=-1")


def test_survey_without_the_cache_agrees(host: xvirt.sim.Host) -> None:
    host.create("good")
    wedged = host.create("wedged")
    host.stall(wedged.id)
    with xvirt.open(host.uri) as cached, xvirt.open(host.uri + "?cache=off") as direct:
        a, b = cached.survey(), direct.survey()
    assert [s.identity for s in a.samples] == [s.identity for s in b.samples]
    assert [(f.identity, str(f.error)) for f in a.failures] == [
        (f.identity, str(f.error)) for f in b.failures]
    assert [f.identity.name for f in a.failures] == ["wedged"]
