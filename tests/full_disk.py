"""Full disks for tests: ``xvirt.testing.faults``' tmpfs helpers, skipping the test
(saying why) where mounting is not permitted here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from xvirt.testing.faults import Disk, TmpfsUnavailable, run_on_private_tmpfs, tmpfs


def run_on_tmpfs(directory: Path, size: str, argv: Sequence[str], *,
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``argv`` run with a fresh tmpfs of ``size`` (``"1m"``, ``"256k"``) mounted on
    ``directory``, seen by that command alone."""
    units = {"k": 1, "m": 1024}
    size_kib = int(size[:-1]) * units[size[-1]]
    try:
        return run_on_private_tmpfs(directory, size_kib, argv, timeout=timeout)
    except TmpfsUnavailable as exc:
        pytest.skip(str(exc))


@contextmanager
def mounted_tmpfs(directory: Path, size_kib: int) -> Iterator[Disk]:
    """``xvirt.testing.faults.tmpfs``, or a skip saying why it cannot be mounted here."""
    try:
        context = tmpfs(directory, size_kib)
        disk = context.__enter__()
    except TmpfsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield disk
    finally:
        context.__exit__(None, None, None)


FILL = """
import errno, os
def fill(directory):
    '''Fill the disk under ``directory`` to the last block.'''
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
"""
