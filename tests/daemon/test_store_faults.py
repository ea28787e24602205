"""Storage faults on a real daemon: a change its store refuses never happened, for the
client, the shared table, the images and the next start alike; start-up repairs what
it can and names what it cannot.

Each test reproduces an attack that once lost, invented or doubled a domain (issue
16): a restore refused while another process held SQLite's write lock deleted the
image and lost the domain after a restart; a refused save left both; a refused commit
followed by a good one made the next start fail for good; a refused destroy let a
second domain of the same name be stored; a full disk left the control plane and the
shared table disagreeing.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import xvirt
from tests.full_disk import mounted_tmpfs
from xvirt.testing.daemon import DaemonProcess, DaemonTarget
from xvirt.testing.faults import Disk, hold_store_lock, refuse_commits


@pytest.fixture
def target() -> Iterator[DaemonTarget]:
    t = DaemonTarget(max_domid=32)
    yield t
    t.close()


def _names(target: DaemonTarget) -> list[str]:
    return sorted(r.name for r in target.host.domains())


def _images(daemon: DaemonProcess) -> list[str]:
    return sorted(n for n in os.listdir(daemon.state_dir / "images") if not n.startswith("."))


def _table_names(target: DaemonTarget) -> list[str]:
    """What clients see on the data plane (the shared table) and the control plane."""
    with target.connect(readonly=True) as conn:
        return sorted(s.identity.name for s in conn.sample())


def test_a_restore_refused_under_a_held_lock_keeps_the_image_and_loses_nothing(
        target: DaemonTarget) -> None:
    daemon = target.daemon
    g1 = target.host.create("g1")
    target.host.save(g1.id, "img1")
    assert (_names(target), _images(daemon)) == (["Domain-0"], ["img1"])
    with hold_store_lock(daemon.state_dir), target.connect() as conn:
        with pytest.raises(xvirt.OperationFailedError, match="database is locked") as err:
            conn.restore("img1")  # waits SQLite's busy timeout, then is refused
        assert "undone" in err.value.message
    assert (_names(target), _images(daemon)) == (["Domain-0"], ["img1"])
    assert _table_names(target) == ["Domain-0"]
    daemon.kill()
    daemon.start()
    assert (_names(target), _images(daemon)) == (["Domain-0"], ["img1"])
    with target.connect() as conn:
        assert conn.restore("img1").name == "g1"  # the image is whole and restores
    assert (_names(target), _images(daemon)) == (["Domain-0", "g1"], ["img1"])  # and stays


def test_a_refused_save_leaves_the_domain_running_and_no_image(target: DaemonTarget) -> None:
    daemon = target.daemon
    target.host.create("g1")
    refuse_commits(daemon, 1)
    with target.connect() as conn:
        dom = conn.lookup_by_name("g1")
        with pytest.raises(xvirt.OperationFailedError, match="fault injection"):
            dom.save("img1")
        assert dom.info().state is xvirt.DomainState.RUNNING
    daemon.kill()
    daemon.start()
    assert (_names(target), _images(daemon)) == (["Domain-0", "g1"], [])


def test_a_refused_commit_then_a_good_one_never_stops_the_next_start(
        target: DaemonTarget) -> None:
    daemon = target.daemon
    target.host.create("a")
    refuse_commits(daemon, 1)
    with pytest.raises(xvirt.XvirtError, match="fault injection"):
        target.host.create("lost")
    target.host.create("b")
    told = _names(target)
    daemon.kill()
    daemon.start()  # used to fail: "saved events are not consecutive"
    assert _names(target) == told == ["Domain-0", "a", "b"]


def test_a_refused_destroy_then_the_same_name_stores_one_domain(target: DaemonTarget) -> None:
    daemon = target.daemon
    x = target.host.create("x")
    refuse_commits(daemon, 1)
    with pytest.raises(xvirt.XvirtError, match="fault injection"):
        target.host.destroy(x.id)
    with pytest.raises(xvirt.XvirtError):
        target.host.create("x")  # x still exists
    daemon.kill()
    daemon.start()
    assert _names(target) == ["Domain-0", "x"]
    db = sqlite3.connect(daemon.state_dir / "host.sqlite")
    try:
        assert db.execute("SELECT COUNT(*) FROM domains WHERE name = 'x'").fetchone() == (1,)
    finally:
        db.close()


def test_the_daemon_says_when_it_cannot_store_and_when_it_can_again(
        target: DaemonTarget) -> None:
    daemon = target.daemon
    refuse_commits(daemon, 2)
    for name in ("a", "b"):
        with pytest.raises(xvirt.XvirtError):
            target.host.create(name)
    target.host.create("c")
    log = daemon.log.read_text()
    assert log.count("refusing changes until the state can be stored again") == 1
    assert log.count("can be stored again: accepting changes") == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[DaemonTarget, Disk]]:
    """A daemon whose state directory is an 8 MiB tmpfs (its log and socket are not on
    it, so the daemon can still say what happens)."""
    disk_dir = tmp_path / "disk"
    with mounted_tmpfs(disk_dir, 8 * 1024) as disk:
        daemon = DaemonProcess(tcp=False, state_dir=tmp_path, extra=(
            "--state-dir", str(disk_dir), "--unix", str(tmp_path / "xend.sock")))
        try:
            yield DaemonTarget(max_domid=64, daemon=daemon), disk
        finally:
            daemon.stop()


def test_a_full_disk_refuses_changes_and_serves_reads_and_both_planes_agree(
        small_disk: tuple[DaemonTarget, Disk]) -> None:
    target, disk = small_disk
    for name in ("a", "b"):
        target.host.create(name)
    before = _names(target)
    disk.fill()
    for name in ("c", "d", "e"):
        with pytest.raises(xvirt.XvirtError):
            target.host.create(name)
    assert _names(target) == _table_names(target) == before  # was 35 against 32
    disk.free()
    target.host.create("c")
    assert _names(target) == _table_names(target) == [*before, "c"]
    target.daemon.kill()
    target.daemon.start()
    assert _names(target) == [*before, "c"]


# -- start-up repairs what it can and names what it cannot ---------------------------------


def _stored(daemon: DaemonProcess, sql: str) -> None:
    db = sqlite3.connect(daemon.state_dir / "host.sqlite", isolation_level=None)
    try:
        db.execute(sql)
    finally:
        db.close()


def test_an_event_gap_in_the_state_file_is_repaired_at_start(target: DaemonTarget) -> None:
    daemon = target.daemon
    for name in ("a", "b", "c"):
        target.host.create(name)
    daemon.stop()
    _stored(daemon, "DELETE FROM events WHERE seq = 2")
    daemon.start()
    assert _names(target) == ["Domain-0", "a", "b", "c"]
    assert "kept the last 1 of 2 saved events" in daemon.log.read_text()
    with target.connect() as conn:
        target.host.create("d")  # events number on; a client catches up or resnapshots
        assert "d" in {d.name for d in conn.list_domains()}


def test_a_state_file_it_cannot_repair_is_one_line_naming_it() -> None:
    daemon = DaemonProcess(tcp=False)
    try:
        daemon.start()
        daemon.stop()
        _stored(daemon, "INSERT INTO domains (uuid, id, name, state, memory_kib, "
                        "max_memory_kib, vcpus, os_type, load, cpu_ns, since, disks, nics) "
                        "SELECT 'dup-' || uuid, id + 1, name, state, "
                        "memory_kib, max_memory_kib, vcpus, os_type, load, cpu_ns, since, "
                        "disks, nics FROM domains WHERE id = 0")
        run = subprocess.run([sys.executable, "-m", "xvirt", "daemon", *daemon.args],
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 1
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert "host.sqlite" in lines[0] and "duplicate" in lines[0]
        assert "Traceback" not in run.stderr
    finally:
        daemon.cleanup()


def test_the_nth_commit_from_now_can_be_refused(target: DaemonTarget) -> None:
    refuse_commits(target.daemon, 1, after=2)
    target.host.create("a")
    target.host.create("b")
    with pytest.raises(xvirt.XvirtError, match="fault injection"):
        target.host.create("c")
    target.host.create("d")
    assert _names(target) == ["Domain-0", "a", "b", "d"]
