"""The shared-memory domain table: what readers see is what the writer published, whole."""

from __future__ import annotations

import dataclasses
import mmap
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import xvirt.daemon.table_writer as table_writer
import xvirt.wire.table as table
import xvirt.wire.table_reader as table_reader
from xvirt.clock import ManualClock
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    InvalidArgumentError,
    OperationFailedError,
    ProtocolError,
)
from xvirt.model import DomainState
from xvirt.planes import DataRow
from xvirt.wire.table_reader import TableReader

BOOT = "6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0001"
BOOT2 = "6f1c1f62-8f4e-4d56-9a53-0a4f2c1f0002"
pytestmark = pytest.mark.clock_start(100.0)


def _uuid(domid: int, salt: int = 0) -> str:
    return str(uuidlib.UUID(int=(salt << 64) | (domid + 1)))


def _row(domid: int, *, memory: int = 1024, state: DomainState = DomainState.RUNNING,
         cpu_ns: int = 0, since: float = 100.0, rate: float = 0.0, salt: int = 0) -> LiveRow:
    return LiveRow(domid, _uuid(domid, salt), state, memory, 2 * memory, 2, cpu_ns, since, rate)


def _data(row: LiveRow, now: float) -> DataRow:
    return DataRow(row.id, row.uuid, row.state, row.memory_kib, row.max_memory_kib, row.vcpus,
                   row.cpu_time(now))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "domains.table")


@pytest.fixture
def writer(path: str) -> Iterator[TableWriter]:
    with TableWriter(path) as w:
        yield w


@pytest.fixture
def reader(writer: TableWriter, clock: ManualClock) -> Iterator[TableReader]:
    with TableReader(writer.path, wall=clock.now, uri="xen+fast:///test") as r:
        yield r


# -- round trip ----------------------------------------------------------------------------


def test_published_rows_come_back_by_snapshot_and_by_id(
    writer: TableWriter, reader: TableReader
) -> None:
    rows = [_row(0, memory=4096), _row(7, state=DomainState.PAUSED), _row(3, cpu_ns=9)]
    writer.publish(BOOT, 5, rows)
    snap = reader.snapshot()
    assert (snap.boot_id, snap.generation) == (BOOT, 5)
    assert snap.rows == tuple(_data(r, 100.0) for r in sorted(rows, key=lambda r: r.id))
    for r in rows:
        assert reader.info(r.id).row == _data(r, 100.0)
        assert reader.owner(r.id) == (BOOT, 5, r.uuid, None)
    absent = reader.info(4)
    assert (absent.boot_id, absent.generation, absent.row) == (BOOT, 5, None)
    assert reader.owner(4) == (BOOT, 5, None, None)
    census = reader.census()
    assert census == (BOOT, 5, tuple((r.id, r.uuid) for r in sorted(rows, key=lambda r: r.id)),
                      None)


def test_every_answer_carries_the_current_boot_and_generation(
    writer: TableWriter, reader: TableReader
) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    writer.publish(BOOT, 2, [], [])  # a generation bump alone is published too
    for answer in (reader.snapshot(), reader.info(1), reader.info(2), reader.census(),
                   reader.owner(1), reader.owner(2)):
        assert (answer.boot_id, answer.generation) == (BOOT, 2)


def test_removed_domids_disappear(writer: TableWriter, reader: TableReader) -> None:
    writer.publish(BOOT, 1, [_row(d) for d in (0, 1, 2, 3)])
    writer.publish(BOOT, 2, [], [1, 3, 99])  # 99 held nothing: not an error
    assert [r.id for r in reader.snapshot().rows] == [0, 2]
    assert reader.info(1).row is None
    assert reader.info(2).row is not None


def test_a_wedged_domain_is_listed_without_figures_and_its_info_fails(
    writer: TableWriter, reader: TableReader
) -> None:
    wedged = dataclasses.replace(_row(3), no_answer=True)
    writer.publish(BOOT, 1, [_row(0), wedged, _row(7)])
    snap = reader.snapshot()
    assert [r.id for r in snap.rows] == [0, 7]
    ((domid, uuid, error, name),) = snap.unanswered
    assert (domid, uuid, name) == (3, wedged.uuid, None)
    assert isinstance(error, OperationFailedError)
    assert (error.domid, error.uuid, error.op, error.uri) == (3, wedged.uuid, "info",
                                                              reader.uri)
    with pytest.raises(OperationFailedError, match="domain 3 did not answer") as info:
        reader.info(3)
    assert (info.value.domid, info.value.uuid, info.value.op) == (3, wedged.uuid, "info")
    assert reader.owner(3).uuid == wedged.uuid  # it is alive: lookups and listing count it
    assert reader.census().members == ((0, _uuid(0)), (3, wedged.uuid), (7, _uuid(7)))
    writer.publish(BOOT, 1, [_row(3)])  # it answers again
    assert [r.id for r in reader.snapshot().rows] == [0, 3, 7]
    assert reader.snapshot().unanswered == ()
    assert reader.info(3).row == _data(_row(3), 100.0)


def test_an_unknown_slot_flag_is_a_protocol_error(
    writer: TableWriter, reader: TableReader, path: str
) -> None:
    writer.publish(BOOT, 1, [_row(0), _row(2)])
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[table.SLOTS_OFFSET + 2 * table.SLOT_BYTES + 1] = 0x02  # the flags byte
    with pytest.raises(ProtocolError, match="unknown flags"):
        reader.info(2)
    with pytest.raises(ProtocolError, match="unknown flags"):
        reader.snapshot()


def test_a_changed_row_replaces_the_old_one(writer: TableWriter, reader: TableReader) -> None:
    writer.publish(BOOT, 1, [_row(5, memory=100)])
    writer.publish(BOOT, 2, [_row(5, memory=200, salt=9)])
    row = reader.info(5).row
    assert row is not None
    assert (row.memory_kib, row.uuid) == (200, _uuid(5, 9))
    assert len(reader.snapshot().rows) == 1


def test_reset_forgets_every_domain_of_the_old_boot(
    writer: TableWriter, reader: TableReader
) -> None:
    writer.publish(BOOT, 40, [_row(d) for d in range(10)])
    writer.publish(BOOT2, 1, [_row(0, salt=2)], reset=True)
    snap = reader.snapshot()
    assert (snap.boot_id, snap.generation) == (BOOT2, 1)
    assert [(r.id, r.uuid) for r in snap.rows] == [(0, _uuid(0, 2))]
    assert reader.info(5).row is None


def test_cpu_time_is_extrapolated_at_read_time(
    writer: TableWriter, reader: TableReader, clock: ManualClock
) -> None:
    writer.publish(BOOT, 1, [_row(1, cpu_ns=5_000, since=100.0, rate=1.5),
                             _row(2, cpu_ns=7, since=100.0, rate=0.0)])
    clock.advance(2.0)
    assert reader.info(1).row.cpu_time_ns == 5_000 + 3_000_000_000  # type: ignore[union-attr]
    assert reader.info(2).row.cpu_time_ns == 7  # type: ignore[union-attr]
    clock.advance(0.5)
    assert [r.cpu_time_ns for r in reader.snapshot().rows] == [5_000 + 3_750_000_000, 7]


def test_cpu_time_never_goes_back_when_the_clock_is_behind(writer: TableWriter, path: str) -> None:
    writer.publish(BOOT, 1, [_row(1, cpu_ns=1_000, since=100.0, rate=2.0)])
    with TableReader(path, wall=lambda: 99.0) as early:
        assert early.info(1).row.cpu_time_ns == 1_000  # type: ignore[union-attr]
        assert early.snapshot().rows[0].cpu_time_ns == 1_000


def test_sparse_and_dense_domids_read_alike(writer: TableWriter, reader: TableReader) -> None:
    sparse = [_row(d) for d in (0, 17, 30_000, 32_751)]
    writer.publish(BOOT, 1, sparse)
    assert [r.id for r in reader.snapshot().rows] == [0, 17, 30_000, 32_751]
    dense = [_row(d) for d in range(100, 400)]
    writer.publish(BOOT, 2, dense, reset=True)
    assert reader.snapshot().rows == tuple(_data(r, 100.0) for r in dense)


def test_many_changes_at_once_keep_the_list_sorted(
    writer: TableWriter, reader: TableReader
) -> None:
    writer.publish(BOOT, 1, [_row(d) for d in range(0, 600, 3)])
    writer.publish(BOOT, 2, [_row(d) for d in range(1, 600, 3)], range(0, 300, 3))
    expected = sorted(set(range(300, 600, 3)) | set(range(1, 600, 3)))
    assert [r.id for r in reader.snapshot().rows] == expected


def test_the_weakly_ordered_path_gives_the_same_answers(
    writer: TableWriter, reader: TableReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_writer, "NEEDS_FENCE", True)
    monkeypatch.setattr(table_reader, "NEEDS_FENCE", True)
    writer.publish(BOOT, 3, [_row(1), _row(2)])
    writer.publish(BOOT, 4, [], [1])
    assert [r.id for r in reader.snapshot().rows] == [2]
    assert reader.info(2).generation == 4


# -- the file ----------------------------------------------------------------------------------


def test_the_file_is_private_and_created_without_leftovers(writer: TableWriter, path: str) -> None:
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert os.path.getsize(path) == table.FILE_BYTES


def test_a_new_writer_replaces_the_table_atomically(path: str, clock: ManualClock) -> None:
    with TableWriter(path) as old:
        old.publish(BOOT, 1, [_row(1)])
        with TableReader(path, wall=clock.now) as on_old, TableWriter(path) as new:
            new.publish(BOOT2, 1, [_row(2)])
            with TableReader(path, wall=clock.now) as on_new:
                assert [r.id for r in on_new.snapshot().rows] == [2]
            # A reader keeps the table it mapped: HELLO's instance id says to reopen.
            assert [r.id for r in on_old.snapshot().rows] == [1]
            old.unlink()  # not old's file any more: left alone
            assert os.path.exists(path)
            new.unlink()
            assert not os.path.exists(path)


def test_a_closed_writer_retires_its_table(writer: TableWriter, reader: TableReader) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(HostUnreachableError, match="retired") as info:
        reader.info(1)
    assert info.value.uri == "xen+fast:///test"
    for read in (reader.snapshot, reader.census, lambda: reader.owner(1)):
        with pytest.raises(HostUnreachableError, match="retired"):
            read()
    with pytest.raises(ConnectionClosedError):
        writer.publish(BOOT, 2)
    assert os.path.exists(writer.path)  # close is not unlink
    writer.unlink()
    assert not os.path.exists(writer.path)
    writer.unlink()  # already gone: fine


def test_a_closed_reader_says_so(writer: TableWriter, reader: TableReader) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    reader.close()
    reader.close()
    for read in (lambda: reader.info(1), reader.snapshot, reader.census,
                 lambda: reader.owner(1)):
        with pytest.raises(ConnectionClosedError):
            read()


def test_an_unpublished_table_does_not_answer(writer: TableWriter, reader: TableReader) -> None:
    for read in (lambda: reader.info(0), lambda: reader.owner(0), reader.census):
        with pytest.raises(HostUnreachableError, match="not been published"):
            read()


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n", b"XVIRTTBL" + bytes(100), bytes(table.FILE_BYTES)],
    ids=["empty", "text", "short", "zeros"],
)
def test_a_file_that_is_not_a_table_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(content)
    with pytest.raises(ProtocolError, match="not an xvirt domain table") as info:
        TableReader(str(bogus))
    assert str(bogus) in str(info.value)


def test_a_table_of_another_version_is_refused(writer: TableWriter, path: str) -> None:
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[8:12] = (99).to_bytes(4, sys.byteorder)
    with pytest.raises(ProtocolError, match="version 99"):
        TableReader(path)


def test_a_directory_or_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match=str(tmp_path)):
        TableReader(str(tmp_path))
    with pytest.raises(HostUnreachableError, match="nowhere") as info:
        TableReader(str(tmp_path / "nowhere"), uri="xen+fast:///x")
    assert info.value.uri == "xen+fast:///x"


def test_a_writer_stuck_mid_update_makes_readers_give_up(writer: TableWriter, path: str) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        words = memoryview(m).cast("Q")
        words[table.SEQ_WORD] = 3  # odd: "being written", forever
        words.release()
    with TableReader(path, max_retries=200) as r:
        with pytest.raises(ProtocolError, match="inconsistent"):
            r.info(1)
        with pytest.raises(ProtocolError, match="inconsistent"):
            r.snapshot()
        with pytest.raises(ProtocolError, match="inconsistent"):
            r.owner(1)
        with pytest.raises(ProtocolError, match="inconsistent"):
            r.census()


def test_a_read_spoilt_by_a_write_is_retried(
    writer: TableWriter, reader: TableReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.publish(BOOT, 1, [_row(1, memory=1)])
    real = table_reader._slot_of
    spoilt: list[tuple[object, ...]] = []

    def slot_of_racing_a_write(buffer: object, offset: int) -> tuple[object, ...]:
        fields = real(buffer, offset)  # type: ignore[arg-type]
        if not spoilt:  # the writer publishes between our two reads of the counter
            spoilt.append(fields)
            writer.publish(BOOT, 2, [_row(1, memory=2)])
        return fields

    monkeypatch.setattr(table_reader, "_slot_of", slot_of_racing_a_write)
    answer = reader.info(1)
    assert answer.generation == 2
    assert answer.row is not None and answer.row.memory_kib == 2
    assert spoilt[0][3] == 1  # memory: the first read did see the old row, and was thrown away


# -- arguments --------------------------------------------------------------------------------


def test_bad_arguments_change_nothing(writer: TableWriter, reader: TableReader) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    bad_uuid = LiveRow(2, "not-a-uuid", DomainState.RUNNING, 1, 1, 1, 0, 0.0, 0.0)
    cases: list[Callable[[], None]] = [
        lambda: writer.publish(BOOT, 2, [_row(2), bad_uuid]),
        lambda: writer.publish(BOOT, 2, [_row(2), _row(2)]),
        lambda: writer.publish(BOOT, 2, [_row(2)], [2]),
        lambda: writer.publish(BOOT, 2, [_row(table.SLOT_COUNT)]),
        lambda: writer.publish(BOOT, 2, [], [-1]),
        lambda: writer.publish(BOOT, -1, []),
        lambda: writer.publish("not a boot id", 2, []),
        lambda: writer.publish(BOOT, 2, [_row(2, rate=float("nan"))]),
        lambda: writer.publish(BOOT, 2, [_row(2, rate=-1.0)]),
        lambda: writer.publish(BOOT, 2, [_row(2, cpu_ns=-5)]),
        lambda: writer.publish(BOOT, 2, [_row(2, memory=1 << 64)]),
    ]
    for case in cases:
        with pytest.raises(InvalidArgumentError):
            case()
    snap = reader.snapshot()
    assert (snap.generation, [r.id for r in snap.rows]) == (1, [1])


@pytest.mark.parametrize("domid", [-1, table.SLOT_COUNT, True, "3", 2.0])
def test_info_refuses_impossible_domids(
    writer: TableWriter, reader: TableReader, domid: object
) -> None:
    writer.publish(BOOT, 1, [_row(1)])
    with pytest.raises(InvalidArgumentError):
        reader.info(domid)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        reader.owner(domid)  # type: ignore[arg-type]


def test_uuids_are_read_back_in_canonical_form(writer: TableWriter, reader: TableReader) -> None:
    loud = LiveRow(1, "6F1C1F628F4E4D569A530A4F2C1F00AA", DomainState.BLOCKED, 1, 1, 1, 0, 0, 0)
    writer.publish(BOOT.upper(), 1, [loud])
    answer = reader.info(1)
    assert answer.boot_id == BOOT
    assert answer.row is not None and answer.row.uuid == "6f1c1f62-8f4e-4d56-9a53-0a4f2c1f00aa"


# -- against a reference ------------------------------------------------------------------------

_DOMIDS = st.one_of(st.integers(0, 40), st.sampled_from([1000, 4095, 30_000, 32_751]))
_STATES = st.sampled_from(list(DomainState))


@st.composite
def _live_rows(draw: st.DrawFn, domid: int) -> LiveRow:
    return LiveRow(
        domid,
        # the nil UUID is Domain-0's alone: on another slot the reader calls it corrupt
        str(uuidlib.UUID(int=draw(st.integers(0 if domid == 0 else 1, (1 << 128) - 1)))),
        draw(_STATES),
        draw(st.integers(0, 1 << 40)),
        draw(st.integers(0, 1 << 40)),
        draw(st.integers(1, 512)),
        draw(st.integers(0, 1 << 50)),
        draw(st.floats(0, 200, allow_nan=False)),
        draw(st.sampled_from([0.0, 0.01, 1.0, 4.0])),
    )


class TableAgainstADict(RuleBasedStateMachine):
    """Random publish/remove/reset sequences; the reader agrees with a plain dict."""

    @initialize()
    def open(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        path = os.path.join(self.dir.name, "t")
        self.writer = TableWriter(path)
        self.now = 150.0
        self.reader = TableReader(path, wall=lambda: self.now)
        self.ref: dict[int, LiveRow] = {}
        self.boot = BOOT
        self.generation = 0
        self.writer.publish(self.boot, 0)

    @rule(data=st.data(), ids=st.sets(_DOMIDS, max_size=12), gone=st.sets(_DOMIDS, max_size=6),
          reset=st.booleans(), now=st.floats(0, 300, allow_nan=False))
    def publish(self, data: st.DataObject, ids: set[int], gone: set[int], reset: bool,
                now: float) -> None:
        gone -= ids
        rows = [data.draw(_live_rows(d)) for d in sorted(ids)]
        self.generation += 1
        if reset:
            self.boot = str(uuidlib.uuid4())
            self.ref.clear()
        for d in gone:
            self.ref.pop(d, None)
        self.ref.update((r.id, r) for r in rows)
        self.writer.publish(self.boot, self.generation, rows, gone, reset=reset)
        self.now = now

    @rule(count=st.integers(65, 120), start=st.integers(0, 200))
    def publish_many(self, count: int, start: int) -> None:
        rows = [_row(d, memory=d) for d in range(start, start + count)]
        self.generation += 1
        self.ref.update((r.id, r) for r in rows)
        self.writer.publish(self.boot, self.generation, rows)

    @invariant()
    def reader_agrees(self) -> None:
        snap = self.reader.snapshot()
        assert (snap.boot_id, snap.generation) == (self.boot, self.generation)
        assert snap.rows == tuple(_data(self.ref[d], self.now) for d in sorted(self.ref))
        for d in [*list(self.ref)[:5], 2, 30_000]:
            answer = self.reader.info(d)
            assert (answer.boot_id, answer.generation) == (self.boot, self.generation)
            assert answer.row == (_data(self.ref[d], self.now) if d in self.ref else None)
            owner = self.reader.owner(d)
            assert owner == (self.boot, self.generation,
                             self.ref[d].uuid if d in self.ref else None, None)
        census = self.reader.census()
        assert census == (self.boot, self.generation,
                          tuple((d, self.ref[d].uuid) for d in sorted(self.ref)), None)

    def teardown(self) -> None:
        if hasattr(self, "writer"):
            self.reader.close()
            self.writer.close()
            self.dir.cleanup()


TableAgainstADict.TestCase.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None
)
test_table_against_a_dict = TableAgainstADict.TestCase


# -- concurrency ----------------------------------------------------------------------------------

_ROWS = 40


def _check_whole(reader: TableReader, seen: list[int]) -> None:
    """Every row of an answer was written by the same publish as its header: the
    writer puts the generation in each row's memory_kib, and publishes rows
    0.._ROWS-1 on even generations and one more row on odd ones."""
    snap = reader.snapshot()
    g = snap.generation
    assert [r.memory_kib for r in snap.rows] == [g] * len(snap.rows), f"torn snapshot at {g}"
    assert len(snap.rows) == (_ROWS + 1 if g % 2 else _ROWS)
    one = reader.info(g % _ROWS)
    assert one.row is not None and one.row.memory_kib == one.generation
    census = reader.census()  # the extra row exists exactly on odd generations
    assert len(census.members) == (_ROWS + 1 if census.generation % 2 else _ROWS)
    owner = reader.owner(_ROWS)
    assert (owner.uuid is not None) == bool(owner.generation % 2), f"torn owner at {g}"
    seen.append(g)


def _hammer(reader: TableReader, stop: threading.Event, seen: list[int],
            errors: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            _check_whole(reader, seen)
    except BaseException as exc:  # reported by the test, with its assertion message
        errors.append(exc)


def test_readers_never_see_a_torn_update_from_a_writer_thread(writer: TableWriter) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython will: more tearing chances
    try:
        writer.publish(BOOT, 0, [_row(d, memory=0) for d in range(_ROWS)])
        stop = threading.Event()
        seen: list[list[int]] = [[], [], []]
        errors: list[BaseException] = []
        readers = [TableReader(writer.path) for _ in seen]
        threads = [threading.Thread(target=_hammer, args=(r, stop, s, errors))
                   for r, s in zip(readers, seen, strict=True)]
        for t in threads:
            t.start()
        try:
            for g in range(1, 400):
                rows = [_row(d, memory=g) for d in range(_ROWS + g % 2)]
                writer.publish(BOOT, g, rows, [] if g % 2 else [_ROWS])
        finally:
            stop.set()
            for t in threads:
                t.join()
            for r in readers:
                r.close()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    assert all(s for s in seen)


_CHILD = textwrap.dedent("""
    import sys
    from xvirt.daemon.table_writer import LiveRow, TableWriter
    from xvirt.model import DomainState
    w = TableWriter(sys.argv[1])
    rows = lambda g: [LiveRow(d, "%08x-0000-4000-8000-000000000000" % d, DomainState.RUNNING,
                              g, g, 1, 0, 0.0, 0.0) for d in range({rows} + g % 2)]
    w.publish("{boot}", 0, rows(0))
    print("ready", flush=True)
    for g in range(1, int(sys.argv[2])):
        w.publish("{boot}", g, rows(g), [] if g % 2 else [{rows}])
    w.publish("{boot}", 10**9, [], range({rows} + 1))  # the end: an empty table
""").format(rows=_ROWS, boot=BOOT)


def test_readers_never_see_a_torn_update_from_a_writer_process(tmp_path: Path) -> None:
    """Here the writer really runs in parallel (another process, another CPU)."""
    path = str(tmp_path / "t")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path, "1500"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        seen: list[int] = []
        with TableReader(path) as reader:
            while True:
                snap = reader.snapshot()
                if snap.generation == 10**9:
                    break
                if child.poll() is not None:  # it exited: its last publish must be the end
                    assert reader.snapshot().generation == 10**9
                    break
                g = snap.generation
                assert [r.memory_kib for r in snap.rows] == [g] * len(snap.rows)
                assert len(snap.rows) == (_ROWS + 1 if g % 2 else _ROWS)
                one = reader.info(1)
                if one.generation != 10**9:
                    assert one.row is not None and one.row.memory_kib == one.generation
                seen.append(g)
        assert len(set(seen)) > 1  # we did read while it wrote
    finally:
        assert child.wait(timeout=30) == 0


def test_a_new_writer_retires_a_table_left_by_a_killed_one(tmp_path: Path) -> None:
    from xvirt.daemon.table_writer import retire_abandoned
    from xvirt.errors import HostUnreachableError

    path = str(tmp_path / "table")
    assert not retire_abandoned(path)  # nothing there
    old = TableWriter(path)
    old.publish("6f2f6ad1-7a0e-4b5b-9a4e-3cbb7c3b0f11", 3)
    reader = TableReader(path)
    assert reader.info(0).generation == 3
    # the writer is "killed": it never closes; a new one takes over the path
    assert retire_abandoned(path)
    with pytest.raises(HostUnreachableError, match="retired"):
        reader.info(0)
    with pytest.raises(HostUnreachableError, match="retired"):
        reader.snapshot()
    (tmp_path / "junk").write_bytes(b"x" * 100)
    assert not retire_abandoned(str(tmp_path / "junk"))
    reader.close()
