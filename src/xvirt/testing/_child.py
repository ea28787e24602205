"""The lifecycle shared by the harnesses that run a real server for tests (libvirtd,
Prometheus, the xvirt daemon): each is a ``ChildProcess`` that says only how to start its
server and how to tell that it answers.

The rules every harness follows, so that a test run leaves the machine as it found it:

- It owns its child. Everything the child writes lives in one temporary directory
  (``state_dir``), removed by ``cleanup``; nothing shared is touched, so two runs cannot
  collide. (A directory the caller passes in is the caller's: it stays.)
- The child runs in the foreground as our own child, in a session of its own (a Ctrl-C
  at the terminal reaches the test runner, whose cleanup then stops it), and is stopped
  by its PID only, never by a name: ``stop`` sends SIGTERM, ``kill`` SIGKILL, and a child
  that outlives the timeout is SIGKILLed anyway. Both reap it and return its status.
- Readiness is a real probe polled against a deadline, never a fixed sleep; a child that
  exits or stays silent is an error that quotes the tail of its log.
- ``cleanup``, the context manager and one atexit hook, for children of every kind, see
  that no child outlives the process that started it.

This module needs only the standard library: ``libvirtd.py`` builds on it and must run
under a bare system Python.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from typing import Self

__all__ = ["ChildProcess"]

# Every child started and not yet stopped, of any kind: what the atexit hook kills.
_running: set[ChildProcess] = set()


class ChildProcess:
    """One child process and its state directory.

    A subclass sets ``name`` and ``error`` (for its messages) and supplies ``_command``
    (the command line) and ``_ready`` (one probe: does it answer yet?)."""

    name: ClassVar[str] = "the child"
    error: ClassVar[type[Exception]] = RuntimeError
    start_timeout_s: ClassVar[float] = 30.0
    stop_timeout_s: ClassVar[float] = 30.0
    poll_interval_s: ClassVar[float] = 0.05
    # Why a start failed: formatted with name, status (the exit status), timeout and log.
    exited_message: ClassVar[str] = "{name} exited with {status}:\n{log}"
    late_message: ClassVar[str] = "{name} did not answer within {timeout} s:\n{log}"
    message_log_chars: ClassVar[int] = 3000

    def __init__(self, *, prefix: str, log_name: str, state_dir: Path | None = None) -> None:
        self._owns_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix=prefix))
        self.log = self.state_dir / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] | None = None  # None: ours
        self._cwd: Path | None = None  # None: ours
        self._user: int | None = None  # None: ours; else the child runs as this uid...
        self._group: int | None = None  # ...and gid, with no supplementary groups
        self._owner = os.getpid()  # a forked copy of us must not kill our children

    # -- what a subclass supplies ------------------------------------------------------

    def _command(self) -> list[str]:
        """The command line; raises ``error`` if it cannot run (a missing binary)."""
        raise NotImplementedError

    def _ready(self, deadline: float) -> bool:
        """One probe: does the child answer yet? ``deadline`` bounds a probe that may hang."""
        raise NotImplementedError

    def _probing(self) -> AbstractContextManager[Callable[[float], bool]]:
        """The probe for one whole wait: a subclass whose probe needs a client for the
        wait (and no longer) yields its own."""
        return contextlib.nullcontext(self._ready)

    def _started(self) -> None:
        """Called once the child is spawned, before the wait."""

    def _ended(self) -> None:
        """Called once the child is no longer ours to talk to (stopped, killed)."""

    # -- the lifecycle -----------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise self.error(f"{self.name} is not running")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        """Spawn the child and wait until it answers; if it does not, it is killed."""
        if self.running():
            raise self.error(f"{self.name} is already running")
        args = self._command()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, env=self._env, cwd=self._cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, user=self._user,
                group=self._group, extra_groups=None if self._user is None else [])
        _running.add(self)
        self._started()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        """Until the probe says the child answers (bounded; polls, no fixed sleep)."""
        deadline = time.monotonic() + self.start_timeout_s
        with self._probing() as ready:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise self.error(self._message(self.exited_message))
                if ready(deadline):
                    return
                if time.monotonic() > deadline:
                    raise self.error(self._message(self.late_message))
                time.sleep(self.poll_interval_s)

    def _message(self, template: str) -> str:
        status = self.proc.returncode if self.proc is not None else None
        return template.format(name=self.name, status=status, timeout=self.start_timeout_s,
                               log=self.log_tail(self.message_log_chars))

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"(no log: {e})"

    def stop(self) -> int:
        """SIGTERM by PID and wait: a graceful shutdown. Returns the exit status."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL by PID and reap, as after a crash. Returns the exit status."""
        return self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> int:
        proc, self.proc = self.proc, None
        _running.discard(self)
        self._ended()
        if proc is None:
            return 0
        if proc.poll() is not None:
            return proc.returncode
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def restart(self) -> None:
        """Stop, then start on the same state directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Kill the child and remove its directory (unless the caller gave it)."""
        with contextlib.suppress(OSError):
            self.kill()
        if self._owns_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running():
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    @classmethod
    def kill_leftovers(cls) -> None:
        """Clean up every child of this kind that this process started and that is still
        ours: the safety net under a test that forgot ``cleanup``."""
        for child in list(_running):
            if isinstance(child, cls) and child._owner == os.getpid():
                child.cleanup()


# One hook for children of every kind.
atexit.register(ChildProcess.kill_leftovers)
