"""Exit statuses, the same for every command: 0 done, 1 a failed operation (one ``error:``
line), 2 a usage error (a bad option, or a bad option value: click's usage message), 130
when Ctrl-C ends the command (no traceback, no "Aborted!")."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import xvirt
from xvirt.testing.daemon import DaemonProcess
from xvirt.tools.cli import INTERRUPTED, main

USAGE_ERRORS = [
    ["--bogus"],
    ["-c"],
    ["frobnicate"],
    ["list", "--bogus"],
    ["list", "--json", "extra"],
    ["dominfo"],
    ["dominfo", "a", "b"],
    ["top", "-o", "bogus"],
    ["bench", "--domains", "0"],
    ["bench", "--domains", "x,1"],
    ["bench", "--samples", "0"],
    ["bench", "--repeats", "1000"],
    ["bench", "--control-latency-ms", "-1"],
    ["daemon", "--listen", "x"],
    ["daemon", "--listen", "127.0.0.1:65536"],
    ["daemon", "--workers", "0"],
    ["daemon", "--id-policy", "bogus"],
    ["daemon", "--control-latency-ms", "-1"],
    ["daemon", "--control-latency-ms", "nan"],
    ["daemon", "--control-latency-ms", "1e308"],
    ["exporter", "--scrape-timeout", "x"],
    ["compat"],
    ["top", "--batch", "-n", "0"], ["top", "--batch", "-n", "x"],
    ["top", "--batch", "-d", "-1"], ["top", "--batch", "-d", "x"],
    ["top", "--json", "--csv", "-"],
    ["exporter", "--listen", "nonsense"], ["exporter", "--collect", "bogus"],
    ["exporter", "--scrape-timeout", "0"], ["exporter", "--scrape-timeout", "nan"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_a_usage_error_exits_2_with_clicks_message(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, prog_name="xvirt")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Error: " in result.stderr and "Traceback" not in result.stderr
    if args[0] != "-c":  # a missing value of the group's own option: no usage line
        assert result.stderr.startswith("Usage: xvirt")


@pytest.mark.parametrize("args", [
    ["dominfo", "nosuchdomain"],
    ["list", "-c", "sim:///no-such-host"],
    ["-c", "nope://x", "dominfo", "0"],
])
def test_a_failed_operation_exits_1_with_one_error_line(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_a_busy_port_names_the_address(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "xvirt", "daemon", "--no-unix", "--empty",
             "--state-dir", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"


# -- Ctrl-C ------------------------------------------------------------------------------------


@pytest.fixture
def added(monkeypatch: pytest.MonkeyPatch) -> Iterator[click.Group]:
    """``main``, to which a test may add commands for its own run only."""
    monkeypatch.setattr(main, "commands", dict(main.commands))
    yield main


def test_ctrl_c_in_a_command_is_130_without_a_word(added: click.Group) -> None:
    @added.command("spin")
    def spin() -> None:
        click.echo("working")
        raise KeyboardInterrupt

    result = CliRunner().invoke(added, ["spin"])
    assert result.exit_code == INTERRUPTED == 130
    assert result.stdout == "working\n"
    assert result.stderr == "\n"  # ends the ^C line the terminal echoed; nothing else


def test_ctrl_c_at_a_prompt_is_130(added: click.Group) -> None:
    @added.command("ask")
    def ask() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise click.Abort() from None  # what click.prompt does on Ctrl-C

    result = CliRunner().invoke(added, ["ask"])
    assert result.exit_code == 130 and "Aborted" not in result.stderr


@pytest.mark.parametrize("given", ["n\n", ""], ids=["refused", "eof"])
def test_a_refused_confirmation_stays_clicks_abort(added: click.Group, given: str) -> None:
    """Not a Ctrl-C: the user said no (or there was nothing to read); status 1."""
    @added.command("sure")
    def sure() -> None:
        click.confirm("really", abort=True)

    result = CliRunner().invoke(added, ["sure"], input=given)
    assert result.exit_code == 1 and "Aborted!" in result.stderr


def _interrupted(argv: list[str],
                 poke: Callable[[], object] | None = None) -> subprocess.CompletedProcess[str]:
    """Start ``argv``, wait for its first line of output (calling ``poke`` every second
    until it comes, for a command that prints only when something happens), send SIGINT,
    collect the rest."""
    env = {k: v for k, v in os.environ.items() if k not in ("XVIRT_DEFAULT_URI",
                                                             "LIBVIRT_DEFAULT_URI")}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as ready:
            ready.register(proc.stdout, selectors.EVENT_READ)
            for _ in range(120):
                if ready.select(timeout=1.0):
                    break
                if poke is not None:
                    poke()
            else:
                raise AssertionError("the command printed nothing in 2 minutes")
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # (closes stdin only after the signal)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, first + out, err)


_WAITER = """\
import sys, threading, click
from xvirt.tools.cli import main

@main.command("wait")
@click.option("--prompt", is_flag=True)
def wait(prompt):
    print("ready", flush=True)
    if prompt:
        click.prompt("name")
    threading.Event().wait()

main(sys.argv[1:], prog_name="xvirt")
"""


@pytest.mark.parametrize("args", [["wait"], ["wait", "--prompt"]])
def test_sigint_to_a_real_process_is_130_without_a_traceback(args: list[str]) -> None:
    done = _interrupted([sys.executable, "-c", _WAITER, *args])
    assert done.returncode == 130, done.stderr
    assert done.stdout.startswith("ready\n")
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr
    assert done.stderr.strip() == ""


def test_sigint_ends_top_with_130() -> None:
    done = _interrupted([sys.executable, "-m", "xvirt", "top", "--batch", "-d", "60",
                         "-c", "sim:///default"])
    assert done.returncode == 130, done.stderr
    assert done.stdout.startswith("xvirt top")
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr


def test_sigint_ends_event_loop_with_130(daemon: DaemonProcess) -> None:
    """``xvirt event --loop`` prints when a domain changes: a guest is made until it does."""
    made = iter(range(100))

    def poke() -> None:
        with xvirt.open(daemon.unix_uri) as conn:
            conn.create(f"poke-{next(made)}", xvirt.DomainConfig(65536, 65536, 1))

    done = _interrupted([sys.executable, "-m", "xvirt", "-c", daemon.unix_uri, "event",
                         "--all", "--loop"], poke)
    assert done.returncode == 130, done.stderr
    assert done.stdout.startswith("event 'lifecycle' for domain 'poke-")
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr
