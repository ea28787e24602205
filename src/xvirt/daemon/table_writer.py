"""Publishes the shared domain table: the daemon's half of the data plane.

The layout and the seqlock's rules are in ``xvirt.wire.table``; clients read the
table with ``xvirt.wire.table_reader``. Only the daemon's process writes (one
``TableWriter`` per file, serialised by its own lock). The file is created
under a temporary name and renamed into place, so a reader never maps a
half-initialised table; a writer that is closed marks its table retired so
readers stop answering from it.

Every block of the file is reserved when it is created (``posix_fallocate``, or
zeros written where the file system cannot), and every write first checks that
the file still has its size: a store into a mapped page the disk cannot back is
a SIGBUS, which kills the daemon without a word, so a full disk or a truncated
table must be a named error before any page is touched.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import tempfile
import threading
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from xvirt.errors import ConnectionClosedError, InvalidArgumentError, OperationFailedError
from xvirt.model import DomainState, check_domid
from xvirt.wire.binary import STATE_CODES, uuid_to_bytes
from xvirt.wire.table import (
    FILE_BYTES,
    FLAG_NO_ANSWER,
    HEAD,
    HEAD_OFFSET,
    LAYOUT,
    LIST_OFFSET,
    NEEDS_FENCE,
    SEQ_WORD,
    SLOT,
    SLOT_BYTES,
    SLOTS_OFFSET,
    TABLE_MAGIC,
    TABLE_VERSION,
    fence,
    layout_fields,
)

__all__ = ["LiveRow", "TableWriter", "retire_abandoned"]

_EMPTY_SLOT = bytes(SLOT_BYTES)
_NIL_UUID = bytes(16)  # Domain-0's; any other domain holding it is corrupt
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
#: What posix_fallocate says when the file system cannot reserve blocks itself.
_CANNOT_RESERVE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})
_ZEROS = bytes(1 << 16)


def _reserve(fd: int, path: str) -> None:
    """Give every page of the new table a block now, so that no store into the mapping
    can later find the disk full (a SIGBUS). Where the file system cannot reserve
    (EOPNOTSUPP: some network and FUSE file systems), writing zeros does the same."""
    try:
        os.posix_fallocate(fd, 0, FILE_BYTES)
        return
    except OSError as exc:
        if exc.errno not in _CANNOT_RESERVE:
            raise _no_room(path, exc) from None
    at = 0
    try:
        while at < FILE_BYTES:
            at += os.pwrite(fd, _ZEROS[:FILE_BYTES - at], at)
    except OSError as exc:
        raise _no_room(path, exc) from None


def _no_room(path: str, exc: OSError) -> OperationFailedError:
    return OperationFailedError(
        f"cannot create the domain table {path}: {exc.strerror or exc} (it needs "
        f"{FILE_BYTES} bytes on disk)")


@dataclass(frozen=True, slots=True)
class LiveRow:
    """One live domain as the writer publishes it. CPU time at wall-clock instant
    ``t`` is ``cpu_ns + int((t - since) * 1e9 * rate)``: it grows without the
    row being rewritten. ``since`` is on the readers' ``wall`` scale. ``no_answer``:
    the domain is wedged, and readers get an error for it instead of these figures."""

    id: int
    uuid: str
    state: DomainState
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    cpu_ns: int
    since: float
    rate: float
    no_answer: bool = False

    def cpu_time(self, t: float) -> int:
        """CPU ns at ``t``; never less than ``cpu_ns`` (a clock stepping back)."""
        if t <= self.since:
            return self.cpu_ns
        return self.cpu_ns + int((t - self.since) * 1e9 * self.rate)


def _uint(value: object, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgumentError(f"{what} must be an integer in 0..{limit}, not {value!r}")
    return value


def _pack_row(row: LiveRow) -> bytes:
    domid = check_domid(row.id)
    code = STATE_CODES.get(row.state)
    if code is None:
        raise InvalidArgumentError(
            f"domain {domid}: state must be a DomainState, not {row.state!r}", domid=domid)
    if not (math.isfinite(row.since) and math.isfinite(row.rate) and row.rate >= 0):
        raise InvalidArgumentError(
            f"domain {domid}: since and rate must be finite and rate >= 0 "
            f"(since={row.since!r}, rate={row.rate!r})", domid=domid)
    raw_uuid = uuid_to_bytes(row.uuid)
    if raw_uuid == _NIL_UUID and domid:
        raise InvalidArgumentError(
            f"domain {domid}: the nil UUID is Domain-0's", domid=domid, uuid=row.uuid)
    return SLOT.pack(
        code,
        FLAG_NO_ANSWER if row.no_answer else 0,
        _uint(row.vcpus, "vcpus", _U32_MAX),
        _uint(row.memory_kib, "memory_kib", _U64_MAX),
        _uint(row.max_memory_kib, "max_memory_kib", _U64_MAX),
        _uint(row.cpu_ns, "cpu_ns", _U64_MAX),
        float(row.since),
        float(row.rate),
        raw_uuid,
    )


class TableWriter:
    """Creates the table file and publishes changes to it; one per file, one process.

    Thread-safe: ``publish`` calls are serialised, which keeps the single-writer
    rule inside the daemon's process too.
    """

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
        )
        m: mmap.mmap | None = None
        try:
            os.fchmod(fd, 0o600)  # mkstemp's mode already; said explicitly
            _reserve(fd, self.path)  # zero-filled, so every slot starts empty
            m = mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            LAYOUT.pack_into(m, 0, *layout_fields())
            info = os.fstat(fd)
            self._identity = (info.st_dev, info.st_ino)
            os.replace(tmp, self.path)  # readers only ever see a complete table
        except BaseException:
            if m is not None:
                m.close()
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fd = fd  # kept: each write checks the file still has its size
        self._map: mmap.mmap | None = m
        self._words = memoryview(m).cast("Q")  # the counter, stored whole (module docstring)
        self._lock = threading.Lock()
        self._seq = 0
        self._live: set[int] = set()
        self._ids: list[int] = []  # the live domids, ascending, as the list holds them
        self._generation = 0
        self._boot = bytes(16)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._map is None

    def publish(
        self,
        boot_id: str,
        generation: int,
        changed: Iterable[LiveRow] = (),
        removed: Iterable[int] = (),
        *,
        reset: bool = False,
    ) -> None:
        """Make ``changed`` rows live (added or replaced), empty the ``removed``
        domids, and set the header, in one step as readers see it.

        ``reset`` first empties every slot (a host reboot). Everything is
        checked before the table is touched, so a bad argument changes nothing.
        Removing a domid that holds no domain is not an error.
        """
        boot = uuid_to_bytes(boot_id)
        gen = _uint(generation, "generation", _U64_MAX)
        packed: dict[int, bytes] = {}
        for row in changed:
            if not isinstance(row, LiveRow):
                raise InvalidArgumentError(
                    f"changed rows must be LiveRow, not {type(row).__name__}")
            if row.id in packed:
                raise InvalidArgumentError(f"domain {row.id} appears twice in one publish",
                                           domid=row.id)
            packed[row.id] = _pack_row(row)
        gone: set[int] = set()
        for domid in removed:
            check_domid(domid)
            if domid in packed:
                raise InvalidArgumentError(
                    f"domain {domid} is both changed and removed in one publish", domid=domid)
            gone.add(domid)
        with self._lock:
            m = self._writable()
            self._check_size(f"publish generation {gen}")
            old_count = len(self._ids)
            emptied, first = self._update_live(packed.keys(), gone, reset)
            ids = self._ids
            seq = self._seq + 1
            self._words[SEQ_WORD] = seq  # odd: readers retry from here on
            if NEEDS_FENCE:
                fence()
            for domid in emptied:
                at = SLOTS_OFFSET + domid * SLOT_BYTES
                m[at:at + SLOT_BYTES] = _EMPTY_SLOT
            for domid, raw in packed.items():
                at = SLOTS_OFFSET + domid * SLOT_BYTES
                m[at:at + SLOT_BYTES] = raw
            if first is not None:
                tail = array("H", ids[first:]).tobytes()
                start = LIST_OFFSET + 2 * first
                m[start:start + len(tail)] = tail
                if len(ids) < old_count:  # keep what lies past the count zero
                    end = LIST_OFFSET + 2 * old_count
                    m[start + len(tail):end] = bytes(end - start - len(tail))
            HEAD.pack_into(m, HEAD_OFFSET, gen, len(ids), 0, boot)
            if NEEDS_FENCE:
                fence()
            self._words[SEQ_WORD] = seq + 1  # even: consistent again
            self._seq = seq + 1
            self._generation = gen
            self._boot = boot

    def _update_live(
        self, written: Iterable[int], gone: set[int], reset: bool
    ) -> tuple[Iterable[int], int | None]:
        """Bring the live set and list up to date; return the slots to empty and the
        first list index that changed (None: the list is unchanged).

        The work is proportional to the change, not to the table: a lifecycle
        event on a large host touches a few entries, and rewrites only the list's
        tail from the lowest changed domid, usually a few bytes because Xen hands
        out ascending IDs. Arguments were checked already, so this cannot fail
        half-way.
        """
        live, ids = self._live, self._ids
        if reset:
            emptied: Iterable[int] = live - set(written)
            self._live = set(written)
            self._ids = sorted(self._live)
            return emptied, 0
        dropped = [d for d in gone if d in live]
        added = [d for d in written if d not in live]
        if not added and not dropped:
            return (), None
        live.difference_update(dropped)
        live.update(added)
        if len(added) + len(dropped) > 64:
            ids[:] = sorted(live)
        else:
            for domid in dropped:
                del ids[bisect_left(ids, domid)]
            for domid in added:
                insort(ids, domid)
        return dropped, bisect_left(ids, min(dropped + added))

    def _writable(self) -> mmap.mmap:
        if self._map is None:
            raise ConnectionClosedError(f"table writer for {self.path} is closed")
        return self._map

    def _check_size(self, doing: str) -> None:
        """Refuse to touch a table someone cut short: a store past its end is a SIGBUS.
        (One lseek, 0.2 us; a publish costs about 3 us.)"""
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size < FILE_BYTES:
            raise OperationFailedError(
                f"cannot {doing}: the domain table {self.path} was cut to {size} bytes "
                f"(a table is {FILE_BYTES})")

    def close(self) -> None:
        """Mark the table retired (readers stop answering from it) and unmap it.
        The file stays; ``unlink`` removes it."""
        with self._lock:
            m = self._map
            if m is None:
                return
            try:
                self._check_size("retire it")
            except OperationFailedError:
                # Cut short: readers refuse it already, and writing would be a SIGBUS.
                self._unmap(m)
                return
            seq = self._seq + 1
            self._words[SEQ_WORD] = seq
            if NEEDS_FENCE:
                fence()
            HEAD.pack_into(m, HEAD_OFFSET, self._generation, len(self._ids), 1, self._boot)
            if NEEDS_FENCE:
                fence()
            self._words[SEQ_WORD] = seq + 1
            self._seq = seq + 1
            self._unmap(m)

    def _unmap(self, m: mmap.mmap) -> None:
        self._map = None
        self._words.release()
        m.close()
        os.close(self._fd)

    def unlink(self) -> None:
        """Remove the table file if it is still the one this writer created
        (a newer daemon may have put its own table at the same path)."""
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


def retire_abandoned(path: str) -> bool:
    """Mark the table at ``path`` retired if a writer left it behind (killed before it
    could close). A new writer calls this before replacing the file: readers still
    mapping the old one then stop answering from it, so a dead writer's table is
    trusted only while no other writer can change the host. False if there was no
    table there."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size != FILE_BYTES:
            return False
        m = mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    words = memoryview(m).cast("B").cast("Q")
    try:
        if LAYOUT.unpack_from(m, 0)[:2] != (TABLE_MAGIC, TABLE_VERSION):
            return False
        seq = words[SEQ_WORD] | 1  # odd, whatever state the dead writer left it in
        words[SEQ_WORD] = seq
        if NEEDS_FENCE:
            fence()
        generation, count, _retired, boot = HEAD.unpack_from(m, HEAD_OFFSET)
        HEAD.pack_into(m, HEAD_OFFSET, generation, count, 1, boot)
        if NEEDS_FENCE:
            fence()
        words[SEQ_WORD] = seq + 1
        return True
    finally:
        words.release()
        m.close()
