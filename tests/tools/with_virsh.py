"""What the tests of virsh's everyday commands share: running ``xvirt`` in process,
running the real ``virsh`` beside it, and hosts both can reach.

virsh is libvirt 9.0's (Debian's libvirt-clients). ``test:///default`` is a fresh
host in each process, so a read command's output can be compared with virsh's as it
is; for the effect of a mutation both must reach the same host: a private libvirtd
(``shared_libvirtd``), kept in its initial state for each test by closing every
connection to it (``libvirtd_host``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
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


#: libvirt's shared test host: in one process it lives as long as any connection to it,
#: so what an earlier test left there can outlive that test; virsh sees it new.
FRESH_TEST_URIS = frozenset({"test:///default", "libvirt:test:///default"})


@dataclass
class Ran:
    """What :func:`run` tells of ``xvirt`` run as a process of its own (``Result``'s
    fields the tests read)."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(*args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> Result | Ran:
    """``xvirt ARGS``: in this process, but on libvirt's shared test host in a process
    of its own, which sees that host new, as virsh does."""
    if FRESH_TEST_URIS.isdisjoint(args):
        return CliRunner().invoke(main, list(args), env=env, input=stdin)
    done = subprocess.run([sys.executable, "-m", "xvirt", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False,
                          env=None if env is None else {**os.environ, **env})
    return Ran(done.returncode, done.stdout, done.stderr,
               SystemExit(done.returncode) if done.returncode else None)


def virsh(uri: str, *commands: str, readonly: bool = False) -> subprocess.CompletedProcess[str]:
    """The real virsh on ``uri`` (``readonly``: ``virsh -r``); several commands
    (``"a; b"``) run in one process."""
    assert VIRSH is not None
    return subprocess.run([VIRSH, *(["-r"] if readonly else []), "-c", uri, *commands],
                          capture_output=True, text=True, timeout=60, check=False)


def ok(result: Result | Ran) -> str:
    """The output of a command that must have succeeded."""
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result.stdout


def one_error_line(result: Result | Ran, code: int = 1) -> str:
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
