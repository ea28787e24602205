"""The libvirt driver on libvirt's own test driver (test:///default, in this process),
cross-checked against real captures in realdata/libvirt."""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.model import DomainState, EventKind
from xvirt.planes import Op
from xvirt.testing.libvirt_target import guest_xml

URI = "libvirt:test:///default"
DEFAULT_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def realdata() -> dict[str, Any]:
    here = Path(__file__).resolve()
    for parent in here.parents:
        path = parent / "shared" / "realdata" / "libvirt" / "python-test-default.json"
        if path.is_file():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
    pytest.skip("realdata/libvirt is not beside this checkout")


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The outside world's own connection; it also keeps the test driver's state alive."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    conn = real_libvirt().open("test:///default")
    yield conn
    lv = real_libvirt()
    for dom in conn.listAllDomains(0):  # leave the default host as found
        with contextlib.suppress(lv.libvirtError):
            if dom.name() == "test":
                if not dom.isActive():
                    dom.create()
                elif dom.info()[0] == lv.VIR_DOMAIN_PAUSED:
                    dom.resume()
                continue
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
    conn.close()


def guests(admin: Any, n: int, first: int = 0) -> list[Any]:
    return [admin.createXML(guest_xml(f"g{i}", f"00000000-0000-4000-8000-{i:012x}",
                                      memory_kib=65536, vcpus=1), 0)
            for i in range(first, first + n)]


def test_the_default_host_matches_the_real_captures(admin: Any) -> None:
    real = realdata()
    with xvirt.open(URI) as conn:
        assert conn.list_domain_ids() == real["conn.listDomainsID()"]
        dom = conn.lookup_by_id(1)
        assert (dom.name, dom.uuid, dom.id) == (
            real["dom.name()"], real["dom.UUIDString()"], real["dom.ID()"])
        state, max_kib, kib, vcpus, _cpu = real["dom.info()"]
        info = dom.info()
        assert state == 1 and info.state is DomainState.RUNNING
        assert (info.max_memory_kib, info.memory_kib, info.vcpus) == (max_kib, kib, vcpus)
        assert isinstance(info.cpu_time_ns, int) and info.cpu_time_ns > 0
        # The XML's <os><type>; the test driver's OSType() answers 'linux' whatever it is.
        assert dom.config().os_type == "hvm" and real["dom.OSType()"] == "linux"
        assert conn.lookup_by_uuid(real["dom.UUID()_hex"]) == dom
        model, mib, cpus, mhz, nodes, sockets, cores, threads = real["conn.getInfo()"]
        host = conn.host_info()
        assert (host.arch, host.memory_kib, host.cpus, host.cpu_mhz) == (
            model, mib * 1024, cpus, mhz)
        assert (host.nodes, host.sockets_per_node, host.cores_per_socket,
                host.threads_per_core) == (nodes, sockets, cores, threads)
        assert host.hypervisor == real["conn.getType()"]
        assert conn.defined_names() == real["conn.listDefinedDomains()"]


def test_failing_lookups_match_libvirts_errors(admin: Any) -> None:
    codes = {e["call"]: e.get("get_error_code") for e in realdata()["errors"]}
    with xvirt.open(URI) as conn:
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_id(999)
        assert codes["conn.lookupByID(999)"] == 42  # what the face turns NoDomainError into
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_name("nope")
        with pytest.raises(xvirt.InvalidArgumentError):
            conn.lookup_by_uuid("not-a-uuid")
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_uuid("00000000-0000-0000-0000-0000000000ff")


def test_listing_ids_takes_a_census_only_when_the_ids_changed(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``listDomainsID`` a listing; ``listAllDomains`` (a handle made per domain) besides
    only when a domain arrived, left or moved since the driver last saw the host."""
    lv = real_libvirt()
    made: collections.Counter[str] = collections.Counter()
    for method in ("listDomainsID", "listAllDomains"):
        real = getattr(lv.virConnect, method)

        def counted(self: Any, *args: Any, _real: Any = real, _name: str = method) -> Any:
            made[_name] += 1
            return _real(self, *args)

        monkeypatch.setattr(lv.virConnect, method, counted)

    def no_events(self: Any, *args: Any) -> Any:
        raise lv.libvirtError("no events here")  # else one might tell the driver first

    monkeypatch.setattr(lv.virConnect, "domainEventRegisterAny", no_events)
    first = guests(admin, 3)
    with xvirt.open(URI) as conn:
        steps: list[tuple[list[int], dict[str, int]]] = []

        def listing() -> None:
            made.clear()
            steps.append((conn.list_domain_ids(), dict(made)))

        listing()  # the driver knows nothing yet: a census
        listing()  # nothing changed: the IDs alone
        first[0].destroy()
        listing()  # one left
        listing()
        (arrived,) = guests(admin, 1, first=3)
        listing()  # one arrived
    live = sorted(d.ID() for d in admin.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    census = {"listDomainsID": 1, "listAllDomains": 1}
    ids_only = {"listDomainsID": 1}
    calls = [calls for _, calls in steps]
    # A departure or an arrival: a census, unless libvirt's event for it reached the
    # driver first (its loop thread may run before the listing): then the IDs are
    # already where the driver knows them.
    assert calls[0] == census and calls[1] == calls[3] == ids_only
    assert calls[2] in (census, ids_only) and calls[4] in (census, ids_only)
    assert steps[-1][0] == live and arrived.ID() in live


def test_the_monitoring_loop_costs_one_call_per_lookup_and_per_info(admin: Any) -> None:
    guests(admin, 20)
    with xvirt.open(URI) as conn:
        for _ in range(5):
            ids = conn.list_domain_ids()
            for domid in ids:
                dom = conn.lookup_by_id(domid)
                dom.info()
                dom.close()
        stats = conn.stats()
    assert len(ids) == 21
    # listDomainsID once a sample, a lookup and info() once a domain: what
    # libvirt-python's own loop costs; plus, the first time, the census that tells the
    # driver where each domain is (the IDs did not match what it knew: nothing). Names
    # came with the census, so no request.
    assert stats.data_calls == 5 * (1 + 2 * 21) + 1
    assert stats.control_requests == 0
    assert stats.cache_size == 21


def test_sample_is_one_bulk_call_plus_what_the_test_driver_leaves_out(admin: Any) -> None:
    guests(admin, 3)
    with xvirt.open(URI) as conn:
        sample = conn.sample()
        stats = conn.stats()
    assert [s.identity.name for s in sample] == ["test", "g0", "g1", "g2"]
    # getAllDomainStats, then info() for each: the test driver gives only the state group.
    assert (stats.data_calls, stats.control_requests) == (1 + 4, 0)


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_libvirt_events_reach_the_cache_without_a_snapshot(admin: Any) -> None:
    a, b = guests(admin, 2)
    with xvirt.open(URI) as conn:
        assert len(conn.list_domain_ids()) == 3
        events = conn.events(timeout=5)
        a.destroy()
        event = next(events)
        assert (event.kind, event.uuid, event.name) == (EventKind.DESTROYED, a.UUIDString(), "g0")
        conn.lookup_by_id(b.ID())  # any answer brings the cache up to the event
        assert conn.stats().cache_size == 2  # C7 without listing again
        b.suspend()
        assert next(events).kind is EventKind.PAUSED


def test_actions_go_by_uuid_and_never_reach_another_domain(admin: Any) -> None:
    (a,) = guests(admin, 1)
    with xvirt.open(URI) as conn:
        dom = conn.lookup_by_id(a.ID())
        xml = a.XMLDesc(0)
        a.destroy()
        (b,) = guests(admin, 1, first=1)  # another domain, started since
        with pytest.raises(xvirt.NoDomainError):
            dom.pause()
        assert b.info()[0] == 1 == admin.lookupByID(1).info()[0]  # nobody else paused
        # The same UUID started again is the same domain to libvirt: the handle follows.
        admin.createXML(xml, 0)
        dom.pause()
        assert admin.lookupByUUIDString(dom.uuid).info()[0] == 3


def test_save_and_restore_follow_the_domain_to_a_new_id(admin: Any, tmp_path: Path) -> None:
    (a,) = guests(admin, 1)
    with xvirt.open(URI) as conn:
        dom = conn.lookup_by_id(a.ID())
        old_id = dom.id
        dom.save("g0.img")
        assert (tmp_path / "images" / "g0.img").is_file()
        with pytest.raises(xvirt.NoDomainError):
            dom.info()
        back = conn.restore("g0.img")
        assert back.uuid == dom.uuid and back.name == "g0" and back.id != old_id
        assert dom.id == back.id  # the old handle follows it
        with pytest.raises(xvirt.NoDomainError):
            conn.restore("missing.img")


def test_read_only_uses_libvirts_read_only_open(admin: Any) -> None:
    driver = LibvirtDriver(URI, "test:///default", readonly=True)
    try:
        with pytest.raises(xvirt.ReadOnlyError) as info:  # libvirt itself refuses
            driver.act(Op.PAUSE, 1, DEFAULT_UUID)
        assert info.value.libvirt_code == real_libvirt().VIR_ERR_OPERATION_DENIED
    finally:
        driver.close()
    assert admin.lookupByID(1).info()[0] == 1


def test_operations_libvirt_refuses_are_named_errors(admin: Any) -> None:
    with xvirt.open(URI) as conn:
        dom = conn.lookup_by_id(1)
        with pytest.raises(xvirt.OperationFailedError) as info:
            dom.resume()  # not paused
        assert info.value.libvirt_code is not None and info.value.op == "resume"
        with pytest.raises(xvirt.OperationFailedError):
            dom.rename("other")  # libvirt renames only inactive domains
        assert dom.config().disks[0].target == "vda"


def test_an_unreachable_libvirt_is_host_unreachable(tmp_path: Path) -> None:
    uri = f"libvirt:test+unix:///default?socket={tmp_path}/none"
    with pytest.raises(xvirt.HostUnreachableError) as info:
        xvirt.open(uri)
    assert info.value.libvirt_code is not None and info.value.uri == uri


@pytest.mark.parametrize("uri", ["libvirt:", "libvirt: test:///default", "libvirt:test"])
def test_malformed_libvirt_uris_are_refused(uri: str) -> None:
    with pytest.raises(xvirt.InvalidArgumentError, match="libvirt:test:///default"):
        xvirt.open(uri)


def test_a_lost_libvirtd_is_reported_then_reconnected_without_help() -> None:
    from xvirt.connection import Connection
    from xvirt.testing.libvirtd import LibvirtdProcess

    with LibvirtdProcess() as daemon:
        driver = LibvirtDriver(f"libvirt:{daemon.uri}", daemon.uri, timeout=0.5)
        conn = Connection(driver)
        try:
            dom = conn.lookup_by_id(1)
            before = conn.stats()
            daemon.kill()  # SIGKILL: the close callback fires, calls fail
            with pytest.raises(xvirt.HostUnreachableError) as info:
                conn.lookup_by_id(1)
            assert info.value.uri == f"libvirt:{daemon.uri}"
            daemon.start()  # a fresh test driver: the same default domain is back
            assert conn.lookup_by_id(1) == dom
            assert dom.info().state is DomainState.RUNNING
            after = conn.stats()
            # What is still valid stays cached: no control request, same entries (C8).
            assert after.control_requests == before.control_requests == 0
            assert after.cache_size == before.cache_size == 1
        finally:
            conn.close()


def test_the_first_listing_after_a_libvirtd_restart_answers() -> None:
    """The listing's call is made on the connection of after the reconnect, not on the
    one it replaced (which the reconnect closed): libvirt's IDs, at the first try."""
    from xvirt.connection import Connection
    from xvirt.testing.libvirtd import LibvirtdProcess

    with LibvirtdProcess() as daemon:
        conn = Connection(LibvirtDriver(f"libvirt:{daemon.uri}", daemon.uri, timeout=5.0))
        try:
            assert conn.list_domain_ids() == [1]
            daemon.restart()  # the same socket, a pristine test host
            assert conn.list_domain_ids() == [1]
        finally:
            conn.close()


def test_one_domain_whose_info_fails_does_not_fail_the_survey(
        admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lv = real_libvirt()
    guests(admin, 3)

    class Timeout(lv.libvirtError):  # type: ignore[misc, name-defined]
        def get_error_code(self) -> int:
            return int(lv.VIR_ERR_OPERATION_TIMEOUT)

        def get_error_message(self) -> str:
            return "Timed out during operation: cannot acquire state change lock"

    real_info = lv.virDomain.info

    def info(dom: Any) -> Any:
        if dom.name() == "g1":
            raise Timeout("timeout")
        return real_info(dom)

    with xvirt.open(URI) as conn:
        conn.sample()
        before = conn.stats()
        monkeypatch.setattr(lv.virDomain, "info", info)
        found = conn.survey()
        assert [s.identity.name for s in found.samples] == ["test", "g0", "g2"]
        assert [f.identity.name for f in found.failures] == ["g1"]
        error = found.failures[0].error
        assert isinstance(error, xvirt.OperationFailedError)
        assert error.libvirt_code == lv.VIR_ERR_OPERATION_TIMEOUT
        assert "state change lock" in str(error)
        assert conn.stats().evictions == before.evictions  # alive: kept
        assert "g1" in [conn.lookup_by_id(i).name for i in conn.list_domain_ids()]
        monkeypatch.setattr(lv.virDomain, "info", real_info)
        assert [s.identity.name for s in conn.survey().samples] == ["test", "g0", "g1", "g2"]
