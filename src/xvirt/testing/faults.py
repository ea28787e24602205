"""Storage faults to inject into a daemon, for tests: a refused commit, a held lock, a
full disk.

* ``refuse_commits``: the daemon's store refuses N commits (the next ones, or after
  M more accepted: the Nth commit from now), as one that cannot write would (the
  administration route's ``op=refuse_commits``; also
  ``DaemonTarget.host.refuse_commits``).
* ``hold_store_lock``: another process-like holder of SQLite's write lock on the
  state file, as a backup tool or a stuck second writer would hold it; the daemon's
  commits wait SQLite's busy timeout (5 s), then are refused.
* ``tmpfs``: a small tmpfs mounted on a directory (the daemon's state directory or
  its images), which ``Disk.fill`` fills to the last byte and ``Disk.free`` frees;
  ``run_on_private_tmpfs``: a command run with a tmpfs that only it sees (a mount
  namespace of its own, so the mount vanishes with it, whatever happens to it).
  Mounting needs root; where it is not permitted, ``TmpfsUnavailable`` says why.

Each undoes itself on exit (lock released, tmpfs unmounted), so the machine is
left as it was found.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from xvirt.testing.daemon import DaemonProcess

__all__ = [
    "Disk",
    "TmpfsUnavailable",
    "hold_store_lock",
    "refuse_commits",
    "run_on_private_tmpfs",
    "tmpfs",
]

_STATE_FILE = "host.sqlite"


def refuse_commits(daemon: DaemonProcess, count: int, *, after: int = 0) -> None:
    """Make the daemon's store accept ``after`` more commits, then refuse ``count``
    (0: none)."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      timeout=10.0) as client:
        response = client.post("http://xvirt/xvirt/host",
                               data={"op": "refuse_commits", "count": str(count),
                                     "after": str(after)})
    if response.status_code != 200:
        raise RuntimeError(f"the daemon did not take the fault: {response.status_code} "
                           f"{response.text[:200]}")


@contextlib.contextmanager
def hold_store_lock(state_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold SQLite's write lock on ``state_dir``'s state file until the block ends."""
    db = sqlite3.connect(Path(state_dir) / _STATE_FILE, timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        db.close()


class TmpfsUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, or no permission to mount)."""


class Disk:
    """A mounted tmpfs: ``fill`` takes every free byte, ``free`` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Write a filler file until the disk refuses one more page."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def free(self) -> None:
        """Remove the filler: the disk has room again."""
        self._filler.unlink(missing_ok=True)


@contextlib.contextmanager
def tmpfs(directory: str | os.PathLike[str], size_kib: int) -> Iterator[Disk]:
    """Mount a ``size_kib`` KiB tmpfs on ``directory`` (created if absent, mode 0700)
    for the block; unmounted on exit, whatever happened inside."""
    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path)],
        capture_output=True, check=False)
    if mounted.returncode != 0:
        raise TmpfsUnavailable(
            f"cannot mount a tmpfs on {path}: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


#: The shell's exit status when the mount itself failed (tells "unavailable" from "failed").
_NO_MOUNT = 99
_MOUNT_THEN_RUN = """
mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$2" 2>&1 || exit 99
shift 2
exec "$@"
"""


def run_on_private_tmpfs(directory: str | os.PathLike[str], size_kib: int,
                         argv: Sequence[str], *, timeout: float = 60.0
                         ) -> subprocess.CompletedProcess[str]:
    """``argv`` run with a fresh ``size_kib`` KiB tmpfs mounted on ``directory`` (made if
    missing), seen by that command alone; its output captured as text."""
    if shutil.which("unshare") is None:
        raise TmpfsUnavailable("cannot make a private tmpfs: no unshare command here")
    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_THEN_RUN, "sh",
         f"{size_kib}k", str(path), *argv],
        capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode == _NO_MOUNT or (done.returncode != 0 and "unshare:" in done.stderr):
        raise TmpfsUnavailable(
            f"cannot mount a private tmpfs here: {(done.stdout + done.stderr).strip()}")
    return done
