"""The daemon never replaces what it did not leave: every path it creates (the control
socket, wherever ``--unix`` puts it, the fast-channel socket, the table, the lock)
may hold nothing, or what a daemon left there (a socket nobody listens on, an old
table); anything else is refused with an error naming the path and what is there,
and is left as it was.

The attack (issue 16, item 5): ``xvirt daemon --unix PATH`` deleted a regular file
standing at PATH, since a file refuses connections as a stale socket does.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xvirt.daemon.process import Daemon, DaemonConfig
from xvirt.errors import InvalidArgumentError
from xvirt.wire.table import TABLE_MAGIC

CONTENT = b"precious data, not a socket\n"


def test_the_command_refuses_a_regular_file_at_the_unix_path_and_keeps_it(
        tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_bytes(CONTENT)
    run = subprocess.run(
        [sys.executable, "-m", "xvirt", "daemon", "--state-dir", str(tmp_path / "state"),
         "--empty", "--unix", str(precious)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 1, run.stderr
    assert run.stderr == (f"error: refusing to replace {str(precious)!r} with the control "
                          "socket: a regular file is there, not a stale socket\n")
    assert precious.read_bytes() == CONTENT


@pytest.fixture
def started() -> Iterator[list[Daemon]]:
    """Daemons started in this process, shut down at teardown."""
    daemons: list[Daemon] = []
    yield daemons
    for d in daemons:
        d.stop()
        d.serve()  # the loop ends at once and shuts down


def _daemon(tmp_path: Path, started: list[Daemon]) -> Daemon:
    d = Daemon(DaemonConfig(state_dir=tmp_path / "state", unix_socket=tmp_path / "ctl.sock",
                            empty=True), log=io.StringIO())
    d.start()
    started.append(d)
    return d


def _regular(path: Path) -> str:
    path.write_bytes(CONTENT)
    return "a regular file"


def _directory(path: Path) -> str:
    path.mkdir()
    (path / "inside").write_bytes(CONTENT)
    return "a directory"


def _symlink(path: Path) -> str:
    target = path.parent / f"{path.name}.target"
    target.write_bytes(CONTENT)
    path.symlink_to(target)
    return "a symbolic link"


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "a named pipe"


def _snapshot(path: Path) -> tuple[int, bytes | list[str] | str | None]:
    info = os.lstat(path)
    if path.is_symlink():
        return info.st_mode, os.readlink(path)
    if path.is_dir():
        return info.st_mode, sorted(os.listdir(path))
    if path.is_file():
        return info.st_mode, path.read_bytes()
    return info.st_mode, None


PLACES = {  # what is refused, and the name the error gives it
    "control socket": lambda tmp: tmp / "ctl.sock",
    "fast-channel socket": lambda tmp: tmp / "state" / "fast.sock",
    "table": lambda tmp: tmp / "state" / "table",
}
OBSTACLES: dict[str, Callable[[Path], str]] = {
    "regular": _regular, "directory": _directory, "symlink": _symlink, "fifo": _fifo}


@pytest.mark.parametrize("obstacle", OBSTACLES)
@pytest.mark.parametrize("place", PLACES)
def test_anything_but_what_a_daemon_left_is_refused_and_kept(
        tmp_path: Path, started: list[Daemon], place: str, obstacle: str) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    path = PLACES[place](tmp_path)
    what = OBSTACLES[obstacle](path)
    before = _snapshot(path)
    with pytest.raises(InvalidArgumentError) as caught:
        _daemon(tmp_path, started)
    message = caught.value.message
    assert message.startswith(f"refusing to replace {str(path)!r} with the {place}: ")
    assert what in message, message
    assert _snapshot(path) == before
    # nothing was left held: with the obstacle gone, a daemon starts on the same state
    os.rename(path, tmp_path / "moved")
    _daemon(tmp_path, started)


def test_a_regular_file_that_is_not_a_table_is_refused_and_an_old_table_is_not(
        tmp_path: Path, started: list[Daemon]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "table").write_bytes(CONTENT)
    with pytest.raises(InvalidArgumentError, match="a regular file that is not an xvirt table"):
        _daemon(tmp_path, started)
    assert (state / "table").read_bytes() == CONTENT
    (state / "table").write_bytes(TABLE_MAGIC + bytes(100))  # a table, even a short one
    _daemon(tmp_path, started)
    assert (state / "table").read_bytes().startswith(TABLE_MAGIC)


def test_a_stale_socket_is_replaced_and_a_live_one_refused(
        tmp_path: Path, started: list[Daemon]) -> None:
    path = tmp_path / "ctl.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    try:
        with pytest.raises(InvalidArgumentError,
                           match=r"another server is listening on .*ctl\.sock"):
            _daemon(tmp_path, started)
        assert path.is_socket()
    finally:
        live.close()  # its file stays: now a stale socket, as a killed daemon leaves
    assert path.is_socket()
    d = _daemon(tmp_path, started)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        probe.connect(str(path))  # ours now
    assert d.host is not None


def test_shutdown_removes_its_own_socket_and_nothing_else(
        tmp_path: Path, started: list[Daemon]) -> None:
    d = _daemon(tmp_path, started)
    path = tmp_path / "ctl.sock"
    path.unlink()
    path.write_bytes(CONTENT)  # someone put a file where our socket was
    started.remove(d)
    d.stop()
    d.serve()
    assert path.read_bytes() == CONTENT
    again = _daemon(tmp_path / "second", started)
    again_path = tmp_path / "second" / "ctl.sock"
    assert again_path.is_socket()
    started.remove(again)
    again.stop()
    again.serve()
    assert not again_path.exists()


def test_a_lock_file_that_is_a_symbolic_link_is_refused(tmp_path: Path,
                                                        started: list[Daemon]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    (state / "lock").symlink_to(target)
    with pytest.raises(InvalidArgumentError, match=r"cannot use lock file .*a symbolic link"):
        _daemon(tmp_path, started)
    assert not target.exists()
