"""The shared table never kills a process (issue 16, "No SIGBUS, ever"): a full disk is a
named error when the table is made, a table cut short under a reader or a writer is a
named error, and a slot whose figures cannot be true is a ProtocolError.

What could end in a SIGBUS runs in a child process, so that a regression kills the
child and fails the test, not the test run."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import xvirt.daemon.table_writer as table_writer
from tests.full_disk import FILL, run_on_tmpfs
from xvirt.clock import ManualClock
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.errors import OperationFailedError, ProtocolError
from xvirt.model import DomainState
from xvirt.wire.table import FILE_BYTES, SLOT, SLOTS_OFFSET
from xvirt.wire.table_reader import TableReader

BOOT = "6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0001"
SIGBUS_STATUS = -7  # what subprocess reports for a child killed by SIGBUS


def _uuid(domid: int) -> str:
    return str(uuidlib.UUID(int=domid + 1))


def _row(domid: int, *, since: float = 100.0, rate: float = 0.5) -> LiveRow:
    return LiveRow(domid, _uuid(domid), DomainState.RUNNING, 1024, 2048, 2, 10**9, since, rate)


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _no_signal(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode != SIGBUS_STATUS, "killed by SIGBUS"
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- a full disk when the table is made ------------------------------------------------------------

_MAKE_ON_FULL_DISK = FILL + """
import json, sys
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.errors import XvirtError
from xvirt.model import DomainState
directory, no_fallocate = sys.argv[1], sys.argv[2] == "1"
if no_fallocate:  # a file system without fallocate: the writer writes zeros instead
    def refuse(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    os.posix_fallocate = refuse
fill(directory)
try:
    w = TableWriter(os.path.join(directory, "table"))
    w.publish("6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0001", 1, [LiveRow(
        d, f"00000000-0000-0000-0000-{d + 1:012x}", DomainState.RUNNING, 1, 1, 1, 0, 0.0, 0.0)
        for d in range(0, 32000, 64)])
    result = {"made": True}
except XvirtError as exc:
    result = {"error": type(exc).__name__, "message": exc.message}
result["left"] = sorted(os.listdir(directory))
print(json.dumps(result))
"""


@pytest.mark.parametrize("fallocate", [True, False], ids=["fallocate", "zeros"])
def test_a_table_made_on_a_full_disk_is_a_named_error_not_a_sigbus(
        tmp_path: Path, fallocate: bool) -> None:
    """Before: the file was made sparse, and the first store into a new page of the
    mapping killed the process with SIGBUS (exit 135, nothing said)."""
    disk = tmp_path / "disk"
    done = run_on_tmpfs(disk, "1m", [sys.executable, "-c", _MAKE_ON_FULL_DISK, str(disk),
                                     "0" if fallocate else "1"])
    result = _no_signal(done)
    assert isinstance(result, dict)
    assert result["error"] == "OperationFailedError", result
    assert f"{disk}/table" in result["message"] and "No space left" in result["message"]
    assert result["left"] == ["filler"]  # no half-made table left behind


def test_every_block_of_a_new_table_is_reserved(tmp_path: Path) -> None:
    with TableWriter(str(tmp_path / "t")):
        assert os.stat(tmp_path / "t").st_blocks * 512 >= FILE_BYTES


def test_without_fallocate_the_table_is_reserved_by_writing_zeros(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(table_writer.os, "posix_fallocate", unsupported)
    with TableWriter(str(tmp_path / "t")) as w, TableReader(str(tmp_path / "t")) as r:
        assert os.stat(tmp_path / "t").st_blocks * 512 >= FILE_BYTES
        w.publish(BOOT, 1, [_row(0)])
        assert r.owner(0).uuid == _uuid(0)


# -- a table cut short under its reader and its writer --------------------------------------------

_CUT_UNDER_READERS = """
import json, os, sys
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.errors import XvirtError
from xvirt.model import DomainState
from xvirt.wire.table import FILE_BYTES, SLOTS_OFFSET, SLOT_BYTES
from xvirt.wire.table_reader import TableReader

path = sys.argv[1]
def row(d):
    return LiveRow(d, f"00000000-0000-0000-0000-{d + 1:012x}", DomainState.RUNNING, 1, 1, 1,
                   0, 0.0, 0.0)
writer = TableWriter(path)
writer.publish("6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0001", 1, [row(0), row(3), row(700)])
reader = TableReader(path)
assert reader.info(700).row is not None
calls = {"info": lambda: reader.info(3), "info past the cut": lambda: reader.info(700),
         "owner": lambda: reader.owner(3), "census": reader.census,
         "snapshot": reader.snapshot,
         "publish": lambda: writer.publish("6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0001", 2, [row(5)])}
out = []
for size in (FILE_BYTES - 1, SLOTS_OFFSET + 100 * SLOT_BYTES, 4096, 0):
    os.truncate(path, size)
    for name, call in calls.items():
        try:
            call()
            out.append([size, name, "answered", ""])
        except XvirtError as exc:
            out.append([size, name, type(exc).__name__, exc.message])
writer.close()  # retiring a table cut short must not touch it either
reader.close()
print(json.dumps(out))
"""


def test_a_table_cut_short_under_its_reader_and_writer_is_a_named_error_not_a_sigbus(
        tmp_path: Path) -> None:
    """Before: a read of a page past the new end of the file killed the reading process
    (and a publish the daemon) with SIGBUS."""
    path = str(tmp_path / "table")
    out = _no_signal(_child(_CUT_UNDER_READERS, path))
    assert isinstance(out, list) and len(out) == 4 * 6
    for size, name, kind, message in out:
        expected = "OperationFailedError" if name == "publish" else "ProtocolError"
        assert kind == expected, (size, name, kind, message)
        assert f"{path} was cut to {size} bytes" in message, message


def test_a_table_cut_short_before_it_is_mapped_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with TableWriter(str(path)):
        os.truncate(path, FILE_BYTES // 2)
        with pytest.raises(ProtocolError, match="not an xvirt domain table"):
            TableReader(str(path))


# -- a slot whose figures cannot be true ----------------------------------------------------------

@pytest.fixture
def table(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[str, TableReader]]:
    path = str(tmp_path / "t")
    clock.advance(1000.0)
    with TableWriter(path) as w, TableReader(path, wall=clock.now) as r:
        w.publish(BOOT, 1, [_row(0), _row(5), _row(6)])
        yield path, r


def _corrupt(path: str, domid: int, *, since: float = 100.0, rate: float = 0.5,
             uuid: bytes | None = None) -> None:
    """Write a slot as no writer would (the seqlock stays even: a consistent read)."""
    raw = uuidlib.UUID(_uuid(domid)).bytes if uuid is None else uuid
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, SLOT.pack(1, 0, 2, 1024, 2048, 10**9, since, rate, raw),
                  SLOTS_OFFSET + domid * SLOT.size)
    finally:
        os.close(fd)


CORRUPT: dict[str, dict[str, object]] = {
    "NaN rate": {"rate": math.nan}, "infinite rate": {"rate": math.inf},
    "negative rate": {"rate": -0.5}, "NaN since": {"since": math.nan},
    "infinite since": {"since": math.inf}, "minus infinite since": {"since": -math.inf},
    "absurd since": {"since": -1e300}, "nil uuid": {"uuid": bytes(16)},
}


@pytest.mark.parametrize("fault", list(CORRUPT))
def test_a_corrupt_slot_is_a_named_protocol_error(
        table: tuple[str, TableReader], fault: str) -> None:
    """Before: a raw ValueError or OverflowError (NaN, inf), or a negative CPU time (a
    negative rate), or a guest reported with Domain-0's nil UUID."""
    path, reader = table
    _corrupt(path, 5, **CORRUPT[fault])  # type: ignore[arg-type]
    calls: list[Callable[[], object]] = [lambda: reader.info(5), reader.snapshot]
    if fault == "nil uuid":
        calls += [lambda: reader.owner(5), reader.census]
    for call in calls:
        with pytest.raises(ProtocolError) as err:
            call()
        assert path in err.value.message and "corrupt" in err.value.message
    with pytest.raises(ProtocolError) as err:
        reader.info(5)
    assert err.value.domid == 5 and "slot 5" in err.value.message
    assert reader.info(6).row is not None  # the other slots still read
    assert reader.info(0).row is not None and reader.owner(0).uuid == _uuid(0)


def test_domain_0_may_hold_the_nil_uuid(table: tuple[str, TableReader]) -> None:
    path, reader = table
    _corrupt(path, 0, uuid=bytes(16))
    nil = str(uuidlib.UUID(int=0))
    answer = reader.info(0)
    assert answer.row is not None and answer.row.uuid == nil and answer.row.cpu_time_ns >= 0
    assert reader.owner(0).uuid == nil and reader.census().members[0] == (0, nil)
    assert reader.snapshot().rows[0].uuid == nil


def test_the_writer_refuses_the_nil_uuid_for_a_guest(tmp_path: Path) -> None:
    with TableWriter(str(tmp_path / "t")) as w:
        bad = LiveRow(5, str(uuidlib.UUID(int=0)), DomainState.RUNNING, 1, 1, 1, 0, 0.0, 0.0)
        with pytest.raises(Exception, match="nil UUID") as err:
            w.publish(BOOT, 1, [bad])
        assert not isinstance(err.value, OperationFailedError)  # a bad argument
