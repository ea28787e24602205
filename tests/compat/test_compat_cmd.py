"""``xvirt compat -- python ...``: end to end through the real command, real exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from xvirt.compat import SHIM_DIR
from xvirt.tools.cli import main
from xvirt.tools.compat_cmd import compat_environment, resolve_command

SCRIPT = """
    import sys
    import libvirt
    conn = libvirt.open()
    print(libvirt.__name__, conn.getURI())
    for i in conn.listDomainsID():
        dom = conn.lookupByID(i)
        print(i, dom.name(), dom.info()[0])
    try:
        conn.lookupByID(9999)
    except libvirt.libvirtError as e:
        print("error", e.get_error_code())
    sys.exit(3)
"""


def xvirt_compat(*args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xvirt", "compat", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LIBVIRT_DEFAULT_URI", None)
    env.pop("XVIRT_COMPAT_URI", None)
    return env


def test_a_script_runs_unmodified_and_its_exit_code_is_kept() -> None:
    done = xvirt_compat("--", "python", "-c", textwrap.dedent(SCRIPT), env=clean_env())
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "xvirt.compat.libvirt sim:///default"
    assert lines[1].startswith("0 Domain-0 1")
    assert lines[-1] == "error 42"
    assert "libvirt: Xen Driver error : Domain not found" in done.stderr  # libvirt's own line


def test_uri_option_wins_over_libvirts_default() -> None:
    env = clean_env() | {"LIBVIRT_DEFAULT_URI": "qemu:///system"}
    code = "import libvirt; print(libvirt.open().getURI(), libvirt.openReadOnly().getType())"
    done = xvirt_compat("--uri", "sim:///default", "--", "python", "-c", code, env=env)
    assert (done.returncode, done.stdout) == (0, "sim:///default Xen\n"), done.stderr


def test_a_libvirt_uri_goes_through_the_libvirt_driver() -> None:
    code = ("import libvirt; c = libvirt.open(); d = c.lookupByID(1); "
            "print(c.getURI(), c.getType(), d.name(), d.UUIDString())")
    done = xvirt_compat("--uri", "test:///default", "--", "python3", "-c", code, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "test:///default TEST test 6695eb01-f6a4-8304-79aa-97f2502e193f\n"


def test_exit_codes_of_failures() -> None:
    assert xvirt_compat("--", "python", "-c", "raise SystemExit(0)").returncode == 0
    assert xvirt_compat("--", "python", "-c", "raise ValueError").returncode == 1
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert xvirt_compat("--", "python", "-c", killed).returncode == 128 + signal.SIGKILL
    missing = xvirt_compat("--", "no-such-command-xvirt")
    assert missing.returncode == 127 and "command not found" in missing.stderr


def test_a_command_is_required() -> None:
    result = CliRunner().invoke(main, ["compat"])
    assert result.exit_code == 2


def test_the_environment() -> None:
    env = compat_environment({"PYTHONPATH": "/mine", "LIBVIRT_DEFAULT_URI": "x:///"}, None)
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries[0] == SHIM_DIR and entries[-1] == "/mine" and len(entries) == 3
    assert env["LIBVIRT_DEFAULT_URI"] == "x:///" and "XVIRT_COMPAT_URI" not in env
    env = compat_environment({"LIBVIRT_DEFAULT_URI": "x:///"}, "sim:///lab")
    assert env["XVIRT_COMPAT_URI"] == "sim:///lab" and "LIBVIRT_DEFAULT_URI" not in env
    assert resolve_command(["python", "s.py"]) == [sys.executable, "s.py"]
    assert resolve_command(["/usr/bin/python3", "s.py"]) == ["/usr/bin/python3", "s.py"]
