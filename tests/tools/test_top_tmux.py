"""``xvirt top`` in a real terminal: tmux runs it against a real daemon, the test reads
the screen with ``capture-pane``, types with ``send-keys`` and changes the host
through the daemon's administration route while top runs.

A real process is being watched, so the screen is polled against one deadline for
the whole test (about 15 s at most, pass or fail); the tmux server has its own
socket and is killed however the test ends.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from xvirt.testing.daemon import DaemonProcess

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 15.0


class Terminal:
    """One tmux server (a private socket) running one command in a 160x50 window."""

    def __init__(self, command: str) -> None:
        self.socket = f"xvirt-top-test-{uuid.uuid4().hex[:12]}"
        self.deadline = time.monotonic() + BUDGET_S
        # The server passes its environment on: COLUMNS/LINES (set by pytest's
        # terminal) would override the window's real size in the program.
        self._env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", "top", command)
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=False, env=self._env)
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def wait_for(self, what: str, check: Callable[[str], bool]) -> str:
        """The screen, once ``check`` holds on it; fails with the last screen seen when
        the test's deadline passes first."""
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > self.deadline:
                raise AssertionError(f"gave up waiting for {what}; the screen was:\n{screen}")
            time.sleep(0.05)

    def kill(self) -> None:
        """End the server and with it the program in its window; tmux leaves its
        socket file behind, so remove that too."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10, check=False, env=self._env)
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)


def order(screen: str, *names: str) -> list[str]:
    """``names`` in the order their rows appear (a row ends with its name)."""
    at = {}
    for i, line in enumerate(screen.splitlines()):
        words = line.split()
        if words and words[-1] in names and words[-1] not in at:
            at[words[-1]] = i
    return sorted(at, key=at.__getitem__)


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A daemon on its unix socket only."""
    return make_daemon(tcp=False, token=False)


def test_top_in_a_real_terminal_follows_the_host_and_the_keys(daemon: DaemonProcess,
                                                              tmp_path: Path) -> None:
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                         base_url="http://localhost", timeout=10)

    def host(op: str, **fields: str) -> None:
        r = admin.post("/xvirt/host", data={"op": op, **fields})
        assert r.status_code == 200, r.text

    host("create", name="alpha", memory_kib="262144", vcpus="1")
    host("create", name="zulu", memory_kib="524288", vcpus="2")
    command = (f"cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m xvirt top "
               f"--uri {shlex.quote(daemon.unix_uri)} --delay 0.3 --cost "
               f"--csv {tmp_path}/top.csv; "
               "echo EXITED $?; sleep 30")
    term = Terminal(command)
    try:
        # steady state (--cost): the survey, and for the CSV's Inactive column the count
        # of the defined domains (one control request)
        screen = term.wait_for("a steady-state refresh",
                               lambda s: "zulu" in s and "1 control-plane request," in s)
        assert "RDRQ" in screen and "RXBY" in screen  # virt-top's I/O columns
        assert "xend.sim" in screen and "8 CPUs" in screen and "3 domains: 3 running" in screen

        host("create", name="newcomer", memory_kib="131072", vcpus="1")
        term.wait_for("the newcomer", lambda s: "newcomer" in s)
        host("destroy", domid="1")  # alpha
        term.wait_for("alpha to vanish", lambda s: "alpha" not in s and "3 domains:" in s)

        for key in ("h", "?"):  # the help screen, as virt-top's and top's; any key returns
            term.keys(key)
            term.wait_for("the help screen", lambda s: "xvirt top: keys" in s
                          and "sort by memory" in s and "Press any key to return." in s)
            term.keys("x")
            term.wait_for("the domains after the help", lambda s: "xvirt top: keys" not in s
                          and "zulu" in s)

        term.keys("n")
        term.wait_for("rows by name", lambda s: "sorted by name" in s and order(
            s, "Domain-0", "newcomer", "zulu") == ["Domain-0", "newcomer", "zulu"])
        term.keys("M")
        term.wait_for("rows by memory", lambda s: "sorted by memory" in s and order(
            s, "Domain-0", "newcomer", "zulu") == ["Domain-0", "zulu", "newcomer"])
        term.keys("i")
        term.wait_for("rows by ID", lambda s: "sorted by ID" in s and order(
            s, "Domain-0", "newcomer", "zulu") == ["Domain-0", "zulu", "newcomer"])

        term.keys("B")  # virt-top's keys: block I/O in bytes, then the device views
        term.wait_for("block bytes", lambda s: "RDBY" in s and "RDRQ" not in s)
        term.keys("3")
        term.wait_for("the block view", lambda s: "DEVICE" in s and "SOURCE" in s)
        term.keys("2")
        term.wait_for("the network view", lambda s: "DEVICE" in s and "BRIDGE" in s)
        term.keys("0")
        term.wait_for("the domains again", lambda s: "RDBY" in s and "DEVICE" not in s)

        term.keys("d")
        term.wait_for("the delay prompt", lambda s: "delay in seconds (now 0.3)" in s)
        term.keys("abc", "Enter")
        term.wait_for("the refusal", lambda s: "not 'abc'; the delay stays 0.3 s" in s)
        term.keys("s")
        term.wait_for("the delay prompt again", lambda s: "delay in seconds (now 0.3)" in s)
        term.keys("0.5", "Enter")
        term.wait_for("the new delay", lambda s: "delay set to 0.5 s" in s and "delay 0.5 s" in s)

        term.keys("q")
        term.wait_for("top to end", lambda s: "EXITED 0" in s)
        with open(tmp_path / "top.csv", newline="") as f:  # logged from the screen too
            header, *rows = list(csv.reader(f))
        assert header[:2] == ["Hostname", "Time"] and len(rows) >= 3
        assert {row[0] for row in rows} == {"xend.sim"}
        assert "newcomer" in rows[-1] and "alpha" not in rows[-1]
    finally:
        term.kill()
        admin.close()
