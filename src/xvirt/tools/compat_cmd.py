"""``xvirt compat -- python script.py``: run a libvirt-python script on xvirt.

The command runs as a child process whose ``import libvirt`` resolves to
:mod:`xvirt.compat.libvirt`: the package's shim directory comes first on
PYTHONPATH, then the directory xvirt itself is imported from. A bare
``python``/``python3`` means this very interpreter (``sys.executable``), so the
script has xvirt's dependencies and, for ``libvirt:`` URIs, the real binding
the libvirt driver loads beside the face. The exit status is the script's
(128+N when a signal N ended it; 127 when the command does not exist).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import click

import xvirt
from xvirt.compat import SHIM_DIR

__all__ = ["compat_command", "compat_environment", "resolve_command"]

_BARE_PYTHONS = frozenset({"python", "python3"})


def compat_environment(base: Mapping[str, str], uri: str | None) -> dict[str, str]:
    """``base`` with the shim first on PYTHONPATH and xvirt importable; ``uri`` (from
    --uri) becomes the scripts' default and wins over $LIBVIRT_DEFAULT_URI."""
    env = dict(base)
    root = os.path.dirname(os.path.dirname(os.path.abspath(xvirt.__file__)))
    entries = [SHIM_DIR, root]
    entries += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in entries]
    env["PYTHONPATH"] = os.pathsep.join(entries)
    if uri is not None:
        env["XVIRT_COMPAT_URI"] = uri
        env.pop("LIBVIRT_DEFAULT_URI", None)
    return env


def resolve_command(command: Sequence[str]) -> list[str]:
    argv = list(command)
    if argv and argv[0] in _BARE_PYTHONS:
        argv[0] = sys.executable
    return argv


def _run(argv: list[str], env: dict[str, str]) -> int:
    """Run and wait. Ctrl-C reaches the child from the terminal, so it is ignored
    here; SIGTERM and SIGHUP sent to us are passed on."""
    try:
        child = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        click.echo(f"error: command not found: {argv[0]}", err=True)
        return 127
    except PermissionError:
        click.echo(f"error: command not executable: {argv[0]}", err=True)
        return 126

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    saved: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers, just wait
        for signum, handler in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward),
                                (signal.SIGHUP, forward)):
            saved[signum] = signal.signal(signum, handler)
    try:
        code = child.wait()
    finally:
        for signum, old in saved.items():
            signal.signal(signum, old)
    return 128 - code if code < 0 else code


@click.command("compat", context_settings={"ignore_unknown_options": True,
                                           "allow_interspersed_args": False})
@click.option("-c", "--connect", "--uri", "uri", metavar="URI", default=None,
              help="Host the script's libvirt.open() reaches by default "
                   "[default: $LIBVIRT_DEFAULT_URI, else sim:///default].")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def compat_command(uri: str | None, command: tuple[str, ...]) -> None:
    """Run a libvirt-python script with `import libvirt` served by xvirt.

    COMMAND is e.g. `-- python script.py ARGS`: existing scripts run
    unmodified, and a libvirt URI such as test:///default is reached through
    xvirt's libvirt driver. The exit status is the script's.
    """
    code = _run(resolve_command(command), compat_environment(os.environ, uri))
    raise click.exceptions.Exit(code)
