"""What the tests of virsh's everyday commands share: running ``xvirt`` in process,
running the real ``virsh`` beside it, and hosts both can reach.

virsh is libvirt 9.0's (Debian's libvirt-clients). ``test:///default`` is a fresh
host in each process, so a read command's output can be compared with virsh's as it
is; for the effect of a mutation both must reach the same host: a private libvirtd
(``shared_libvirtd``), kept in its initial state for each test by closing every
connection to it (``libvirtd_host``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from xvirt.tools.cli import main

VIRSH = shutil.which("virsh")
needs_virsh = pytest.mark.skipif(VIRSH is None, reason="virsh (libvirt-clients) is not installed")

#: libvirt's test driver's own domain: name, ID and UUID on a fresh host.
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

#: A domain of a type xvirt's own hosts take (Xen, a paravirtualised guest).
XEN_XML = """<domain type='xen'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type>linux</type></os>
</domain>
"""


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """``xvirt ARGS`` in this process."""
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def virsh(uri: str, *commands: str, readonly: bool = False) -> subprocess.CompletedProcess[str]:
    """The real virsh on ``uri`` (``readonly``: ``virsh -r``); several commands
    (``"a; b"``) run in one process."""
    assert VIRSH is not None
    return subprocess.run([VIRSH, *(["-r"] if readonly else []), "-c", uri, *commands],
                          capture_output=True, text=True, timeout=60, check=False)


def ok(result: Result) -> str:
    """The output of a command that must have succeeded."""
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result.stdout


def one_error_line(result: Result, code: int = 1) -> str:
    """A failure is one ``error:`` line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def virsh_error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """virsh's ``error:`` lines, once it has failed as it must."""
    assert done.returncode == 1, done
    return [line for line in done.stderr.splitlines() if line.startswith("error: ")]


def write_xml(tmp_path: Path, name: str, text: str | None = None) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(XEN_XML.format(name=name) if text is None else text)
    return path
