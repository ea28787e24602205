"""A script that never closes its connection exits (issue 18, item 4).

Through the face on ``test:///default`` (the libvirt driver), such a script hung at
exit about once in eight runs: interpreter exit collected its ``virConnect``, whose
finalizer closed the driver, waiting for a lock (the driver's, then libvirt's own)
held by a thread the exit had stopped for good. Each run gets a timeout: a detector
of a process that never ends, not a bound on how fast it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import xvirt.compat.libvirt as face
from tests.drivers.test_libvirt_close import Disarmed
from tests.locks import HUNG_S, Holder, returns
from xvirt.drivers.libvirt import LibvirtDriver
from xvirt.tools.compat_cmd import compat_environment

RUNS = 20

#: libvirt-python's style: many lifecycle events in flight when it ends, no close().
SCRIPT = """\
import os
import sys

import libvirt

conn = libvirt.open("test:///default")
dom = conn.lookupByName("test")
for _ in range(100):
    dom.suspend()
    dom.resume()
path = os.path.join(sys.argv[1], "test.save")
dom.save(path)
conn.restore(path)
print(libvirt.__name__, conn.lookupByName("test").info()[0], len(conn.listDomainsID()))
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exit") / "never_closes.py"
    path.write_text(SCRIPT)
    return path


def test_a_script_that_never_closes_always_exits(script: Path, tmp_path: Path) -> None:
    env = compat_environment(os.environ, None)  # as `xvirt compat -- python` runs it
    env.pop("LIBVIRT_DEFAULT_URI", None)
    for run in range(RUNS):
        images = tmp_path / f"run{run}"
        images.mkdir()
        try:
            done = subprocess.run([sys.executable, str(script), str(images)], env=env,
                                  capture_output=True, text=True, timeout=HUNG_S)
        except subprocess.TimeoutExpired as exc:  # run() has killed it
            pytest.fail(f"run {run} of {RUNS} never exited: {exc.stderr!r}")
        assert (done.returncode, done.stderr) == (0, ""), f"run {run}"
        assert done.stdout == "xvirt.compat.libvirt 1 1\n"
        assert os.listdir(images) == ["test.save"]  # kept by restore, as libvirt keeps it


# -- the face's own close and finalizer -----------------------------------------------------


def test_a_finalizer_returns_while_the_drivers_lock_is_held() -> None:
    conn = face.open("libvirt:test:///default")
    conn.lookupByName("test").info()
    driver = conn._xvirt._driver
    assert isinstance(driver, LibvirtDriver)
    holder = Holder(driver._lock)
    try:
        assert returns(conn.__del__)  # what collecting an unclosed connection calls
        assert conn._xvirt.closed
    finally:
        holder.release()


def test_at_interpreter_exit_close_waits_on_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finalizer of the script's may close at exit, when any lock may be held for good
    by a thread the exit stopped: the callbacks' (the event loop's) or the driver's.
    Only the xvirt connection is closed, which waits on neither."""
    conn = face.open("libvirt:test:///default")
    conn.domainEventRegisterAny(None, face.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda *args: None, None)
    driver = conn._xvirt._driver
    assert isinstance(driver, LibvirtDriver)
    disarmed = Disarmed(driver)
    holders = [Holder(conn._callbacks._lock), Holder(driver._lock)]
    monkeypatch.setattr(sys, "is_finalizing", lambda: True)
    try:
        assert returns(conn.close)
        assert conn._xvirt.closed
    finally:
        monkeypatch.undo()
        for holder in holders:
            holder.release()
        disarmed.close()
