"""A real, private libvirtd for the test suite: it answers through the real binding, keeps
the test driver's state across connections, drops clients when killed, comes back
pristine after a restart, and leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

import xvirt.testing._child as child_module
import xvirt.testing.libvirtd as libvirtd_module
from xvirt.testing.libvirtd import LibvirtdError, LibvirtdProcess

EXTRA_XML = ("<domain type='test'><name>extra</name><memory>65536</memory>"
             "<os><type>hvm</type></os></domain>")


def gone(pid: int) -> bool:
    """No such process, not even a zombie waiting to be reaped."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def daemon(libvirtd: LibvirtdProcess) -> LibvirtdProcess:
    """The private libvirtd under test."""
    return libvirtd


@contextlib.contextmanager
def connect(uri: str) -> Iterator[Any]:
    conn = libvirt.open(uri)
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


_loop_lock = threading.Lock()
_loop_started = False


@pytest.fixture
def event_loop() -> None:
    """libvirt notices a dropped connection (close callback) only while its event loop
    runs; the default implementation must be registered before the connection opens.
    Registering it again elsewhere in the process is harmless (libvirt does it once)."""
    global _loop_started
    with _loop_lock:
        if not _loop_started:
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(target=_run_loop, name="test-libvirt-events", daemon=True).start()
            _loop_started = True


def _run_loop() -> None:
    while libvirt.virEventRunDefaultImpl() == 0:
        pass


def test_it_answers_the_test_driver_through_the_real_binding(daemon: LibvirtdProcess) -> None:
    assert daemon.uri == f"test+unix:///default?socket={daemon.state_dir}/libvirt-sock"
    with connect(daemon.uri) as conn:
        assert conn.listDomainsID() == [1]
        assert conn.lookupByID(1).name() == "test"
        assert conn.getURI() == daemon.uri
    # Our child is the daemon itself (no fork to the background), so its PID is the one
    # stop and kill signal.
    assert int(daemon.pid_file.read_text()) == daemon.pid
    assert daemon.privileged == (os.geteuid() == 0)


def test_a_domain_created_through_one_connection_is_seen_by_another(
        daemon: LibvirtdProcess) -> None:
    with connect(daemon.uri) as first, connect(daemon.uri) as second:
        created = first.createXML(EXTRA_XML, 0)
        assert created.ID() > 1
        assert sorted(second.listDomainsID()) == [1, created.ID()]
        assert second.lookupByName("extra").UUIDString() == created.UUIDString()


def test_sigkill_drops_connected_clients(daemon: LibvirtdProcess, event_loop: None) -> None:
    reasons: list[int] = []
    closed = threading.Event()

    def on_close(_conn: Any, reason: int, _opaque: Any) -> None:
        reasons.append(reason)
        closed.set()

    with connect(daemon.uri) as conn:
        conn.registerCloseCallback(on_close, None)
        assert conn.listDomainsID() == [1]
        pid = daemon.pid
        assert daemon.kill() == -signal.SIGKILL
        assert gone(pid)
        # The event loop notices the dead socket by itself, before any call is made.
        assert closed.wait(timeout=10), "the close callback did not fire"
        assert reasons == [libvirt.VIR_CONNECT_CLOSE_REASON_EOF]
        with pytest.raises(libvirt.libvirtError):
            conn.listDomainsID()


def test_restart_serves_a_pristine_host_on_the_same_socket(daemon: LibvirtdProcess) -> None:
    uri, old_pid = daemon.uri, daemon.pid
    with connect(uri) as before:
        before.createXML(EXTRA_XML, 0)
        before.lookupByName("test").suspend()
        daemon.restart()
        with pytest.raises(libvirt.libvirtError):
            before.listDomainsID()
    assert gone(old_pid)
    assert daemon.pid != old_pid
    assert daemon.uri == uri
    with connect(uri) as after:
        assert after.listDomainsID() == [1]
        assert after.lookupByID(1).info()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert after.listDefinedDomains() == []


def test_a_restart_after_sigkill_reuses_the_stale_socket(daemon: LibvirtdProcess) -> None:
    daemon.kill()
    assert daemon.socket.exists()  # left behind by the killed daemon
    daemon.start()
    with connect(daemon.uri) as conn:
        assert conn.listDomainsID() == [1]


def test_stop_and_cleanup_leave_nothing_behind() -> None:
    with LibvirtdProcess() as d:
        pid = d.pid
        assert d.stop() == 0
        assert gone(pid)
        assert not d.socket.exists()
        d.start()
        pid = d.pid
    assert gone(pid)
    assert not d.state_dir.exists()


def test_a_failed_start_raises_with_the_daemons_log() -> None:
    d = LibvirtdProcess(extra_config='max_clients = "many"\n')
    try:
        with pytest.raises(LibvirtdError, match="max_clients"):
            d.start()
        assert not d.running()
    finally:
        d.cleanup()


def test_an_unreachable_libvirtd_binary_is_named() -> None:
    d = LibvirtdProcess(libvirtd="/nonexistent/libvirtd")
    try:
        with pytest.raises(LibvirtdError, match="/nonexistent/libvirtd not found"):
            d.start()
    finally:
        d.cleanup()


def test_an_orphan_exits_once_idle() -> None:
    """The net under a SIGKILLed test runner, whose atexit hook never runs."""
    with LibvirtdProcess(idle_timeout_s=1) as d:
        assert d.proc is not None
        deadline = time.monotonic() + 15
        while d.proc.poll() is None:
            assert time.monotonic() < deadline, "libvirtd did not exit when idle"
            time.sleep(0.05)
        assert d.proc.returncode == 0


def test_a_process_that_forgets_cleanup_leaves_no_daemon(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(libvirtd_module.__file__).parent)!r})\n"
        "import libvirtd\n"
        "d = libvirtd.LibvirtdProcess().start()\n"
        "print(json.dumps({'pid': d.pid, 'state_dir': str(d.state_dir)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    started = json.loads(out.stdout)
    assert gone(started["pid"])
    assert not Path(started["state_dir"]).exists()


def runs(python: str, how: dict[str, Any]) -> bool:
    try:
        return subprocess.run([python, "-c", ""], capture_output=True, **how).returncode == 0
    except OSError:
        return False


NOBODY_SCRIPT = """\
import json, sys
import libvirtd
with libvirtd.LibvirtdProcess() as d:
    print(json.dumps({"uri": d.uri, "pid": d.pid, "privileged": d.privileged,
                      "state_dir": str(d.state_dir)}), flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory of nobody's own (pytest's tmp_path sits under a root-only directory)."""
    path = Path(tempfile.mkdtemp(prefix="xvirt-nobody-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="as a non-root user, every other test already runs this path")
def test_a_non_root_user_runs_a_session_libvirtd(nobody_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    for module in (Path(libvirtd_module.__file__), Path(child_module.__file__)):
        (nobody_dir / module.name).write_bytes(module.read_bytes())
    as_nobody: dict[str, Any] = {
        "user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": [], "cwd": nobody_dir,
        "env": {"PATH": "/usr/bin:/bin", "HOME": str(nobody_dir), "TMPDIR": str(nobody_dir)},
    }
    # The modules need only the standard library; our own interpreter may sit in /root.
    python = next((p for p in (sys.executable, "/usr/bin/python3") if runs(p, as_nobody)), None)
    assert python is not None, "no Python interpreter that 'nobody' may run"
    proc = subprocess.Popen([python, "-c", NOBODY_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **as_nobody)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=30)[1]
        started = json.loads(line)
        assert started["privileged"] is False
        status = Path(f"/proc/{started['pid']}/status").read_text()
        assert status.split("Uid:")[1].split()[0] == str(nobody.pw_uid)
        with connect(started["uri"]) as conn:
            assert conn.listDomainsID() == [1]
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    assert gone(started["pid"])
    assert not Path(started["state_dir"]).exists()
