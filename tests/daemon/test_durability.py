"""A kill -9 at any point of a request loses nothing and shows nothing that did not happen.

The daemon keeps the host in ``host.sqlite`` and mirrors it in the shared table,
and a save or restore also changes the image directory: three places that can
never change at one instant. These tests stop a request at each point between
them (an observer that raises is a kill: nothing after it runs) and check what
the next daemon starts from, and what a client whose answer was lost reads.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import xvirt
import xvirt.drivers.xend as xend
from xvirt.clock import ManualClock, WallClock
from xvirt.daemon.process import Daemon, DaemonConfig, _Keeper
from xvirt.daemon.store import HostStore
from xvirt.errors import OperationFailedError
from xvirt.host.hypervisor import HostChange, HostModel, HostState
from xvirt.model import DomainState
from xvirt.planes import Op
from xvirt.testing.daemon import DaemonProcess, DaemonTarget
from xvirt.testing.faults import refuse_commits
from xvirt.uri import open_driver


class _Killed(BaseException):
    """The daemon's process ends here: nothing after this point runs."""


class _KillPoint:
    """An observer that kills the request it sees once armed."""

    armed = False

    def commit(self, change: HostChange) -> None:
        if self.armed:
            raise _Killed


def _daemon_host(state_dir: Path) -> HostModel:
    """A host kept as the daemon keeps it, with a kill point on each side of its store."""
    host = HostModel("xend", clock=ManualClock(), image_dir=state_dir / "images")
    store = HostStore(state_dir)
    store.save(host.state())
    host.add_observer(_KillPoint())  # before the commit
    host.add_observer(store)
    host.add_observer(_KillPoint())  # after the commit, before the images settle
    return host


def _kill_during(host: HostModel, point: str, request: str, image: str) -> None:
    before, _store, after = host._observers
    assert isinstance(before, _KillPoint) and isinstance(after, _KillPoint)
    (before if point == "before-commit" else after).armed = True
    with pytest.raises(_Killed):
        if request == "save":
            host.save(next(d.id for d in host.domains() if d.id != 0), image)
        else:
            host.restore(image)


@pytest.fixture
def restarted() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        assert daemon.host is not None and daemon._store is not None
        daemon.host.close()
        daemon._store.close()


def _restart(state_dir: Path, started: list[Daemon]) -> HostModel:
    """The host the next daemon serves (its start-up, without the listeners)."""
    daemon = Daemon(DaemonConfig(state_dir=state_dir), log=io.StringIO())
    started.append(daemon)
    host, _keeper = daemon._open_host()
    return host


# request, kill point -> (the guest alive after the restart, the images then)
_OUTCOMES = {
    ("save", "before-commit"): (True, []),  # old code: the image of a save never made
    ("save", "after-commit"): (False, ["g0.img"]),
    ("restore", "before-commit"): (False, ["g0.img"]),  # older code: no image, no domain
    ("restore", "after-commit"): (True, ["g0.img"]),  # restore leaves the image
}


@pytest.mark.parametrize(("request_", "point"), sorted(_OUTCOMES))
def test_a_kill_around_the_commit_of_a_save_or_restore_loses_no_domain(
        tmp_path: Path, restarted: list[Daemon], request_: str, point: str) -> None:
    host = _daemon_host(tmp_path)
    guest = host.create("g0")
    if request_ == "restore":
        host.save(guest.id, "g0.img")
    _kill_during(host, point, request_, "g0.img")
    alive, images = _OUTCOMES[request_, point]
    again = _restart(tmp_path, restarted)
    assert [d.uuid for d in again.domains() if d.id != 0] == ([guest.uuid] if alive else [])
    assert sorted(os.listdir(tmp_path / "images")) == images  # nothing hidden left behind
    if not alive:  # the domain comes back from its image, which stays
        assert again.restore("g0.img").uuid == guest.uuid
        assert again.images() == ["g0.img"]
        return
    if images:  # a restore that committed: its image cannot bring a second one
        with pytest.raises(OperationFailedError, match=guest.uuid):
            again.restore("g0.img")
    dom = next(d for d in again.domains() if d.id != 0)
    again.save(dom.id, "g0.img")  # an older image of the same domain is replaced
    assert again.images() == ["g0.img"]
    assert sorted(os.listdir(tmp_path / "images")) == ["g0.img"]


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_a_kill_around_a_save_that_replaces_an_image_keeps_exactly_one(
        tmp_path: Path, restarted: list[Daemon], point: str) -> None:
    """Restore leaves the image, so the next save of that domain replaces it: a kill
    on either side of the commit leaves the old image or the new one, never both,
    never none, and nothing hidden."""
    host = _daemon_host(tmp_path)
    guest = host.create("g0")
    host.save(guest.id, "g0.img")
    old = (tmp_path / "images" / "g0.img").read_bytes()
    host.restore("g0.img")
    assert isinstance(host.clock, ManualClock)
    host.clock.advance(7.0)  # the newer image differs (its CPU time)
    _kill_during(host, point, "save", "g0.img")
    again = _restart(tmp_path, restarted)
    assert sorted(os.listdir(tmp_path / "images")) == ["g0.img"]
    now = (tmp_path / "images" / "g0.img").read_bytes()
    alive = [d.uuid for d in again.domains() if d.id != 0]
    if point == "before-commit":  # the save never happened: old image, domain running
        assert (now, alive) == (old, [guest.uuid])
    else:  # it did: the newer image, and the domain comes back from it
        assert now != old and alive == []
        assert again.restore("g0.img").uuid == guest.uuid


def test_a_kill_between_writing_and_linking_an_image_leaves_nothing(
        tmp_path: Path, restarted: list[Daemon]) -> None:
    host = _daemon_host(tmp_path)
    host.create("g0")
    (tmp_path / "images" / ".saving-abc123").write_bytes(b'{"format": "xvirt-im')
    again = _restart(tmp_path, restarted)
    assert os.listdir(tmp_path / "images") == []
    assert [d.name for d in again.domains()] == ["Domain-0", "g0"]


# -- a client re-checking after a lost answer ------------------------------------------------


def test_reads_after_a_lost_answer_wait_for_the_next_daemon(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The killed daemon committed the pause but did not publish it in its table.
    The client's answer is lost; what it reads next must come from the next daemon
    (which has the pause), not from the dead one's table (which does not)."""
    # Trust the table between liveness checks for ever: what the driver does for up
    # to LIVENESS_S after each check, made deterministic.
    monkeypatch.setattr(xend, "LIVENESS_S", 3600.0)
    target = DaemonTarget(max_domid=24, uri_params="timeout=15")
    try:
        rec = target.host.create("g0", memory_kib=131072)
        state_dir = target.daemon.state_dir
        with xvirt.open(target.uri) as conn:
            dom = conn.lookup_by_uuid(rec.uuid)
            target.daemon.restart("--control-latency-ms", "3000")  # the pause will hang
            assert dom.info().state is xvirt.DomainState.RUNNING  # the table is mapped
            lost: list[BaseException] = []

            def pause() -> None:
                try:
                    dom.pause()
                except xvirt.XvirtError as exc:
                    lost.append(exc)

            pauser = threading.Thread(target=pause)
            pauser.start()
            time.sleep(1.5)  # the request is in the daemon, waiting out the latency
            target.daemon.kill()
            pauser.join(30)
            assert len(lost) == 1 and "unknown" in str(lost[0]), lost
            _commit_as_the_killed_daemon(state_dir, rec.id, rec.uuid)
            later = threading.Timer(0.3, target.daemon.start)
            later.start()
            try:
                assert dom.info().state is xvirt.DomainState.PAUSED
            finally:
                later.join(60)
        pauses = [e for e in target.host.journal() if e.op == "pause"]
        assert [(e.uuid, e.outcome, e.origin) for e in pauses] == [(rec.uuid, "ok", "client")]
    finally:
        target.close()


def _commit_as_the_killed_daemon(state_dir: Path, domid: int, uuid: str) -> None:
    """What a daemon killed after its store's commit, before its table's, leaves."""
    host = HostModel("xend", clock=WallClock(), image_dir=state_dir / "images")
    store = HostStore(state_dir)
    try:
        saved = store.load()
        assert saved is not None
        host.load(saved)
        host.add_observer(store)
        host.act(Op.PAUSE, domid, uuid)
        assert host.domain(domid).state is DomainState.PAUSED
    finally:
        host.close()
        store.close()


# -- managed domains' definitions outlive the daemon, refused commits included -----------------

M1 = "6695eb01-f6a4-8304-79aa-97f2502e193f"
M2 = "4f77abd2-3019-58e8-3bab-6fbf2118f880"
M3 = "3c9e5b1a-7d24-4f6e-9a81-52d0c7e4b613"


def _stored(state_dir: Path) -> HostState:
    store = HostStore(state_dir)
    try:
        state = store.load()
    finally:
        store.close()
    assert state is not None
    return state


def _definitions(state: HostState) -> list[tuple[str, str, int]]:
    return [(s.uuid, s.name, s.memory_kib) for s in state.definitions]


def test_the_daemons_keeper_keeps_definitions_and_undoes_a_refused_one(
        tmp_path: Path, restarted: list[Daemon]) -> None:
    """The daemon's own keeper and store: every definition change a client was told of
    is what the next daemon starts from, and a refused one is neither served nor kept."""
    host = HostModel("xend", clock=ManualClock(), image_dir=tmp_path / "images")
    store = HostStore(tmp_path)
    store.save(host.state())
    keeper = _Keeper(store, lambda _line: None)
    host.add_observer(keeper)
    host.define("mail", uuid=M1, memory_kib=2048)
    host.define("web", uuid=M2)
    web = host.start(M2)

    def running_id(uuid: str) -> int:
        found = host.find(uuid=uuid)[2]
        assert found is not None and found.id is not None
        return found.id

    steps: list[Callable[[], object]] = [
        lambda: host.define("post", uuid=M1, memory_kib=4096),  # replace
        lambda: host.define("extra", uuid=M3),  # add
        lambda: host.start(M1),  # run a defined one
        lambda: host.destroy(web.id),  # stop a managed one: shut off, still defined
        lambda: host.rename(running_id(M1), "post2"),  # its definition follows its name
        lambda: host.undefine(M3),  # remove
        lambda: host.reboot_host(),  # a new boot keeps definitions
    ]
    for step in steps:
        before = (host.state().definitions, host.defined(), _definitions(_stored(tmp_path)))
        keeper.refuse(1)
        with pytest.raises(OperationFailedError, match="could not keep"):
            step()
        assert (host.state().definitions, host.defined(),
                _definitions(_stored(tmp_path))) == before
        step()  # accepted now: the store has exactly what the host serves
        assert _definitions(_stored(tmp_path)) == _definitions(host.state())
    store.close()
    again = _restart(tmp_path, restarted)
    assert again.defined()[2] == host.defined()[2]
    assert again.state().definitions == host.state().definitions


def _admin(daemon: DaemonProcess, **fields: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      timeout=30.0) as client:
        return client.post("http://xvirt/xvirt/host", data=fields)


def test_a_real_daemon_keeps_its_definitions_across_a_refused_commit_and_kill_9(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(empty=False)  # the demo host: two domains defined and shut off
    daemon.kill()
    demo = _definitions(_stored(daemon.state_dir))
    assert [name for _, name, _ in demo] == ["mail1", "staging1"]
    daemon.start()
    driver = open_driver(daemon.unix_uri)  # the data plane: the table, the fast channel
    try:
        shown = {u for _, u in driver.snapshot().members()} | {
            u for _, u in driver.census().members}
        assert len(shown) >= 6 and not shown & {u for u, _, _ in demo}  # shut off: no ID
    finally:
        driver.close()
    refuse_commits(daemon, 1)
    refused = _admin(daemon, op="create", name="mail1-twin", memory_kib="65536", vcpus="1")
    assert refused.status_code >= 400 and "could not keep" in refused.text
    taken = _admin(daemon, op="create", name="mail1", memory_kib="65536", vcpus="1")
    assert taken.status_code >= 400  # a defined domain's name, though it does not run
    assert _admin(daemon, op="create", name="extra", memory_kib="65536",
                  vcpus="1").status_code == 200
    daemon.kill()  # kill -9: the next daemon starts from the store alone
    kept = _stored(daemon.state_dir)
    assert _definitions(kept) == demo
    assert "mail1-twin" not in {d.name for d in kept.domains}
    assert "extra" in {d.name for d in kept.domains}
    daemon.start()  # loads and checks them
    daemon.stop()
    assert _definitions(_stored(daemon.state_dir)) == demo


def test_the_demo_daemon_is_the_demo_machine_and_stays_so(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """The demo content runs on the embedded demo's 64 GiB machine, also after a
    restart from its store; an empty daemon is sized for the guests its IDs allow."""
    from xvirt.host import demo

    d = make_daemon(empty=False)
    with xvirt.open(d.unix_uri, readonly=True) as conn:
        info = conn.host_info()
        assert info.memory_kib == demo.MEMORY_KIB and 0 < info.free_memory_kib < info.memory_kib
    d.stop()
    d.start()
    with xvirt.open(d.unix_uri, readonly=True) as conn:
        assert conn.host_info().memory_kib == demo.MEMORY_KIB
    empty = make_daemon()
    with xvirt.open(empty.unix_uri, readonly=True) as conn:
        assert conn.host_info().memory_kib > demo.MEMORY_KIB
