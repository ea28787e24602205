"""``xvirt`` imports only what the command run uses: ``--version`` and ``--help`` no command
module, no driver and none of the servers' dependencies; ``list`` only its own module and
the embedded host. The group lists every command from a static table whose short helps a
test here keeps equal to the commands' own. (How long that takes is measured, not tested:
benchmarks/startup_cost.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xvirt.tools import cli
from xvirt.tools.cli import COMMANDS, Entry, load_command, main

#: Third-party packages only some commands use: the daemon's and exporter's HTTP servers
#: (cheroot, waitress), the exporter's (prometheus_client, yaml, bcrypt), the clients' (httpx),
#: top's screen and bench's progress (textual, rich), the plots, and the libvirt binding.
HEAVY = ("bcrypt", "cheroot", "httpx", "libvirt", "matplotlib", "prometheus_client", "rich",
         "textual", "waitress", "yaml")
#: xvirt's parts no command needs before it runs: the embedded host's model, the daemon and
#: its wire format, the libvirt face and binding, the conformance kit.
XVIRT_HEAVY = ("xvirt.compat", "xvirt.daemon", "xvirt.host", "xvirt.libvirt_api", "xvirt.sim",
               "xvirt.testing", "xvirt.wire")
#: What the group itself is made of; any other xvirt.tools module belongs to a command.
GROUP = ("xvirt.tools", "xvirt.tools.cli", "xvirt.tools.common")

_PROBE = """\
import json, os, sys
from xvirt.tools.cli import main
try:
    main(sys.argv[1:], prog_name="xvirt")
except SystemExit as exc:
    code = exc.code
with open(os.environ["XVIRT_PROBE_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def modules_after(tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh process holds once ``xvirt ARGS`` is done (it must succeed)."""
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("XVIRT_DEFAULT_URI", "LIBVIRT_DEFAULT_URI")}
    env["XVIRT_PROBE_OUT"] = str(out)
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    answer = json.loads(out.read_text())
    assert answer["code"] in (0, None), proc.stderr
    return set(answer["modules"])


def _under(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def _drivers(modules: set[str]) -> list[str]:
    """Driver modules: everything in xvirt.drivers but its interface (``base``)."""
    return sorted(m for m in modules
                  if m.startswith("xvirt.drivers.") and m != "xvirt.drivers.base")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"], ["list", "--help"]])
def test_version_and_help_import_no_driver_and_no_server(tmp_path: Path,
                                                         args: list[str]) -> None:
    loaded = modules_after(tmp_path, *args)
    assert _drivers(loaded) == []
    assert _under(loaded, HEAVY) == []
    assert _under(loaded, XVIRT_HEAVY) == []
    commands = {m for m in _under(loaded, ("xvirt.tools",)) if m not in GROUP}
    assert commands <= ({"xvirt.tools.view_cmds", "xvirt.tools.format"}
                        if args[0] == "list" else set())


def test_list_on_the_embedded_host_imports_only_what_it_uses(tmp_path: Path) -> None:
    loaded = modules_after(tmp_path, "list")
    assert _drivers(loaded) == ["xvirt.drivers.embedded"]
    assert _under(loaded, HEAVY) == []
    assert _under(loaded, ("xvirt.compat", "xvirt.daemon", "xvirt.wire", "xvirt.testing",
                           "xvirt.libvirt_api")) == []
    assert {m for m in _under(loaded, ("xvirt.tools",)) if m not in GROUP} == {
        "xvirt.tools.view_cmds", "xvirt.tools.format"}


# -- the table: every entry imports, and says what its command says ---------------------------


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_entry_imports_and_its_short_help_is_the_commands(name: str) -> None:
    command = load_command(name)
    assert command is not None, f"{COMMANDS[name].target} is missing"
    assert command.name == name
    assert COMMANDS[name].short_help == command.get_short_help_str(limit=10_000), (
        f"COMMANDS[{name!r}].short_help in xvirt/tools/cli.py differs from the command's")


def test_the_commands_listed_are_as_click_would_list_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lazy list, line for line, against a plain group holding the real commands (those
    that import: the test above fails for any other)."""
    real = {n: c for n in COMMANDS if (c := load_command(n)) is not None}
    monkeypatch.setattr(cli, "COMMANDS", {n: COMMANDS[n] for n in real})
    eager = click.Group("xvirt", commands=list(real.values()))
    for width in (60, 80, 120):
        shown = []
        for group in (main, eager):
            formatter = click.HelpFormatter(width=width)
            group.format_commands(click.Context(group), formatter)
            shown.append(formatter.getvalue())
        assert shown[0] == shown[1]


def test_a_command_whose_module_is_missing_breaks_nothing_else(
        monkeypatch: pytest.MonkeyPatch, sim_host: object) -> None:
    table = {**COMMANDS, "ghost": Entry("no_such_module:ghost_command", "Haunt the host.")}
    monkeypatch.setattr(cli, "COMMANDS", table)
    runner = CliRunner()
    helped = runner.invoke(main, ["--help"])
    assert helped.exit_code == 0 and "  ghost " in helped.stdout
    assert "Haunt the host." in helped.stdout
    listed = runner.invoke(main, ["list", "--json"])
    assert listed.exit_code == 0 and listed.stdout.startswith("[")
    ghost = runner.invoke(main, ["ghost"])
    assert ghost.exit_code == 2 and "No such command 'ghost'" in ghost.stderr


def test_an_import_error_inside_a_command_module_is_not_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the module's own absence is forgiven: a module that is there but cannot import
    what it needs is a bug, and says so."""
    def import_module(name: str) -> object:
        raise ModuleNotFoundError("No module named 'no_such_dependency'",
                                  name="no_such_dependency")

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        load_command("list")
