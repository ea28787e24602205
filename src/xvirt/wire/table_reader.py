"""Reads the shared domain table another process publishes: the data plane, lock-free.

The layout and the seqlock's rules are in ``xvirt.wire.table``; the daemon's
writer is ``xvirt.daemon.table_writer``. A read is a few ``struct.unpack_from``
calls on a read-only mapping and one ``lseek``: no lock shared with the writer,
no work for the daemon.

A mapping is only as long as its file: reading a page past the end of a file cut
short under us is a SIGBUS, which kills the reading process, so every read first
asks the kept descriptor for the file's size (``lseek(fd, 0, SEEK_END)``) and a
short table is a ProtocolError. Only the daemon's user can cut the file (0600 in
a 0700 directory) and the daemon never does; a cut in the microsecond between
the check and the read is the one case this cannot catch. A slot whose figures
cannot be true (a NaN, infinite or negative rate, a NaN or infinite ``since``,
the nil UUID on a domain other than Domain-0) is a ProtocolError too, never a
raw ValueError or a negative CPU time.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    OperationFailedError,
    ProtocolError,
    XvirtError,
)
from xvirt.hotpath import tuple_new
from xvirt.model import check_domid
from xvirt.planes import Census, DataRow, IdAnswer, IdOwner, TableSnapshot, Unanswered
from xvirt.wire.binary import CODE_STATE, TEXT_OF, uuid_from_bytes
from xvirt.wire.table import (
    DEFAULT_MAX_RETRIES,
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
    SLOT_COUNT,
    SLOTS_OFFSET,
    SPINS,
    TABLE_MAGIC,
    TABLE_VERSION,
    UUID_AT,
    fence,
    layout_fields,
)

__all__ = ["TableReader"]

T = TypeVar("T")
#: The header as read: generation, live count, retired flag, boot id (raw).
Head = tuple[int, int, int, bytes]

_head_of = HEAD.unpack_from  # bound once: the hot path pays no attribute lookups
_slot_of = SLOT.unpack_from
#: The file's size from a kept descriptor: lseek(fd, 0, SEEK_END) costs 0.16 us here
#: (timeit, this 2-core VM), os.fstat 0.67 us; with the slot checks, info() went from
#: 1.45 to 1.75 us, so it is checked on every read.
_size_of = os.lseek
assert os.SEEK_END == 2
_INF = float("inf")
_NIL_UUID = bytes(16)  # Domain-0's UUID; on any other live domain, corruption
_NIL_FAULT = "a live domain with the nil UUID (Domain-0's)"
_owner_of = struct.Struct(f"@B{UUID_AT - 1}x16s").unpack_from  # state code and uuid only


def _read_slot(m: mmap.mmap, at: int) -> tuple[Head, tuple[Any, ...]]:
    """The header and every field of the slot at ``at``."""
    return _head_of(m, HEAD_OFFSET), _slot_of(m, at)


def _read_owner(m: mmap.mmap, at: int) -> tuple[Head, tuple[Any, ...]]:
    """The header, and the state code and uuid of the slot at ``at``."""
    return _head_of(m, HEAD_OFFSET), _owner_of(m, at)


def _read_live(m: mmap.mmap, _unused: int) -> tuple[Head, array[int], bytes, Sequence[int]]:
    """The header, the live IDs and the raw bytes of their slots, with each slot's
    offset in those bytes. Raw bytes only: decoding waits until the read is known
    good."""
    head = _head_of(m, HEAD_OFFSET)
    count = min(head[1], SLOT_COUNT)  # a torn count is caught by the caller
    ids = array("H", m[LIST_OFFSET:LIST_OFFSET + 2 * count])
    offsets: Sequence[int]
    lo = ids[0] if count else 0
    span = (ids[-1] - lo + 1) if count else 0
    if 0 < span <= 4 * count:  # dense: one copy of the whole range
        base = SLOTS_OFFSET + lo * SLOT_BYTES
        raw = m[base:base + span * SLOT_BYTES]
        offsets = [(d - lo) * SLOT_BYTES for d in ids]
    else:  # sparse: one copy per slot
        raw = b"".join([m[o:o + SLOT_BYTES] for o in (SLOTS_OFFSET + d * SLOT_BYTES for d in ids)])
        offsets = range(0, count * SLOT_BYTES, SLOT_BYTES)
    return head, ids, raw, offsets


class TableReader:
    """Reads a table another process (or thread) publishes; answers as the data plane.

    ``wall`` must be the clock the writer's ``since`` values are on. ``uri`` is
    only used to label errors. Thread-safe: reads share nothing mutable.
    """

    def __init__(
        self,
        path: str,
        *,
        wall: Callable[[], float] = time.time,
        uri: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        self.path = os.fspath(path)
        self.uri = uri
        self._wall = wall
        self._max_retries = max_retries
        self._fd, m = self._open()
        self._map: mmap.mmap | None = m
        self._words: memoryview | None = memoryview(m).cast("Q")

    def _not_table(self, why: str) -> ProtocolError:
        return ProtocolError(f"{self.path} is not an xvirt domain table: {why}", uri=self.uri)

    def _open(self) -> tuple[int, mmap.mmap]:
        """The descriptor (kept, to check the file's size before each read) and the
        mapping."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise HostUnreachableError(
                f"cannot open the domain table {self.path}: {exc.strerror}", uri=self.uri
            ) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._not_table("not a regular file")
            if info.st_size < LAYOUT.size:
                raise self._not_table(f"{info.st_size} bytes is too short")
            layout = LAYOUT.unpack(os.pread(fd, LAYOUT.size, 0))
            expected = layout_fields()
            if layout[0] != TABLE_MAGIC:
                raise self._not_table(f"bad magic {layout[0]!r}")
            if layout[1] != TABLE_VERSION:
                raise self._not_table(f"version {layout[1]}, expected {TABLE_VERSION}")
            if layout != expected or info.st_size != FILE_BYTES:
                raise self._not_table(f"unexpected layout {layout} of {info.st_size} bytes")
            return fd, mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            os.close(fd)
            raise self._not_table(f"cannot read it ({exc.strerror})") from exc
        except BaseException:
            os.close(fd)
            raise

    def __enter__(self) -> TableReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        m, self._map = self._map, None
        words, self._words = self._words, None
        if words is not None:
            words.release()
        if m is not None:
            m.close()
            os.close(self._fd)

    def _mapped(self) -> tuple[mmap.mmap, memoryview]:
        m, words = self._map, self._words
        if m is None or words is None:
            raise ConnectionClosedError(f"table reader for {self.path} is closed", uri=self.uri)
        return m, words

    def _wait(self, tries: int, seq: int) -> None:
        """Between failed tries: spin, then yield; give up after the bound."""
        if seq == 0:
            raise HostUnreachableError(
                f"the domain table {self.path} has not been published yet", uri=self.uri)
        if tries >= self._max_retries:
            raise ProtocolError(
                f"the domain table {self.path} stayed inconsistent for {tries} reads "
                "(its writer may have died in the middle of an update)", uri=self.uri)
        if tries > SPINS:
            time.sleep(0 if tries < 16 * SPINS else 1e-4)  # releases the GIL too

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(f"table reader for {self.path} was closed", uri=self.uri)

    def _short(self, fd: int) -> XvirtError:
        if self._map is None:  # closed under us (its descriptor may be another file's now)
            return self._closed_error()
        size = os.fstat(fd).st_size
        return ProtocolError(f"the domain table {self.path} was cut to {size} bytes (a table "
                             f"is {FILE_BYTES}): not read, as a read past its end is a SIGBUS",
                             uri=self.uri)

    def _corrupt(self, domid: int, why: str) -> ProtocolError:
        return ProtocolError(f"domain table {self.path}, slot {domid} is corrupt: {why}",
                             uri=self.uri, domid=domid)

    def _retired(self) -> HostUnreachableError:
        return HostUnreachableError(
            f"the domain table {self.path} was retired by its writer", uri=self.uri)

    def _consistent(self, read: Callable[[mmap.mmap, int], T], arg: int) -> T:
        """``read(mapping, arg)`` at one instant: the seqlock's one retry loop.

        The result is kept only if the counter was the same even value before and
        after the read; otherwise it is read again (spinning, then yielding), up to
        the bound. ``read`` copies raw bytes and decodes nothing it can defer, so
        the window a writer can spoil stays short."""
        m, words, fd = self._map, self._words, self._fd
        if m is None or words is None:
            m, words = self._mapped()  # raises: closed
        tries = 0
        try:
            while True:
                if _size_of(fd, 0, 2) < FILE_BYTES:  # 2: SEEK_END. Before any page is read
                    raise self._short(fd)
                seq = words[SEQ_WORD]
                if seq and not seq & 1:
                    if NEEDS_FENCE:
                        fence()
                    result = read(m, arg)
                    if NEEDS_FENCE:
                        fence()
                    if words[SEQ_WORD] == seq:
                        return result
                tries += 1
                self._wait(tries, seq)
        except (ValueError, OSError):  # the mapping (and descriptor) closed under us
            raise self._closed_error() from None

    def _slot(self, domid: int, read: Callable[[mmap.mmap, int], tuple[Head, tuple[Any, ...]]]
              ) -> tuple[Head, tuple[Any, ...]]:
        """The header and one slot's fields (``_read_slot`` or ``_read_owner``)."""
        if type(domid) is not int or not 0 <= domid < SLOT_COUNT:
            check_domid(domid)  # raises InvalidArgumentError with the reason
        head, slot = self._consistent(read, SLOTS_OFFSET + domid * SLOT_BYTES)
        if head[2]:
            raise self._retired()
        return head, slot

    def info(self, domid: int) -> IdAnswer:
        """Info by domain ID; ``row`` is None when no domain has that ID."""
        (generation, _count, _retired, boot), slot = self._slot(domid, _read_slot)
        boot_id = TEXT_OF.get(boot) or uuid_from_bytes(boot)
        code, flags, vcpus, memory, max_memory, cpu, since, rate, uuid = slot
        if not code:
            return IdAnswer(boot_id, generation, None)
        if flags:
            raise self._flagged(domid, flags, uuid)
        # (rate + since) * 0.0 is 0.0 only when both are finite (NaN and inf give NaN)
        if not ((rate + since) * 0.0 == 0.0 and rate >= 0.0) or (uuid == _NIL_UUID and domid):
            raise self._corrupt(domid, _slot_fault(rate, since))
        now = self._wall()
        if now > since:
            try:
                cpu += int((now - since) * 1e9 * rate)
            except (OverflowError, ValueError):  # finite, yet absurd: an infinite product
                raise self._corrupt(domid, f"CPU time from instant {since!r} at rate "
                                           f"{rate!r} is not a number") from None
        state = CODE_STATE[code] if code < len(CODE_STATE) else None
        if state is None:
            raise ProtocolError(f"domain table {self.path}, slot {domid}: unknown state {code}",
                                uri=self.uri, domid=domid)
        # tuple_new: no named-tuple __new__ (xvirt.hotpath)
        return tuple_new(IdAnswer, (boot_id, generation, tuple_new(DataRow, (
            domid, TEXT_OF.get(uuid) or uuid_from_bytes(uuid), state, memory, max_memory,
            vcpus, cpu))))

    def _flagged(self, domid: int, flags: int, uuid: bytes) -> XvirtError:
        """What a flagged slot answers: its domain did not answer (or corruption)."""
        if flags != FLAG_NO_ANSWER:
            return ProtocolError(f"domain table {self.path}, slot {domid}: unknown flags "
                                 f"{flags:#x}", uri=self.uri, domid=domid)
        return OperationFailedError(f"domain {domid} did not answer", uri=self.uri,
                                    domid=domid, uuid=uuid_from_bytes(uuid), op="info")

    def owner(self, domid: int) -> IdOwner:
        """Which UUID holds ``domid``: ``info`` without the figures, for lookups."""
        (generation, _count, _retired, boot), (code, uuid) = self._slot(domid, _read_owner)
        if code and uuid == _NIL_UUID and domid:
            raise self._corrupt(domid, _NIL_FAULT)
        owner = (TEXT_OF.get(uuid) or uuid_from_bytes(uuid)) if code else None
        boot_id = TEXT_OF.get(boot) or uuid_from_bytes(boot)
        return tuple_new(IdOwner, (boot_id, generation, owner, None))  # no name: no default

    def _live(self) -> tuple[Head, array[int], bytes, Sequence[int]]:
        """Header, live IDs and the raw bytes of their slots, at one instant."""
        head, ids, raw, offsets = self._consistent(_read_live, 0)
        if head[2]:
            raise self._retired()
        if head[1] > SLOT_COUNT:
            raise ProtocolError(f"domain table {self.path}: live count {head[1]} is impossible",
                                uri=self.uri)
        return head, ids, raw, offsets

    def snapshot(self) -> TableSnapshot:
        """Every live domain at one instant, ascending by ID; wedged ones (no answer)
        in ``unanswered``."""
        (generation, _count, _retired, boot), ids, raw, offsets = self._live()
        rows, flagged = self._rows(ids, raw, offsets)
        if not flagged:
            return TableSnapshot(uuid_from_bytes(boot), generation, rows)
        unanswered = []
        for domid, flags, uuid in flagged:
            error = self._flagged(domid, flags, uuid)
            if not isinstance(error, OperationFailedError):
                raise error
            unanswered.append(Unanswered(domid, uuid_from_bytes(uuid), error))
        return TableSnapshot(uuid_from_bytes(boot), generation, rows,
                             unanswered=tuple(unanswered))

    def census(self) -> Census:
        """Every live ``(id, uuid)`` at one instant, ascending by ID: a snapshot
        without the figures, for listing."""
        (generation, _count, _retired, boot), ids, raw, offsets = self._live()
        text_of = TEXT_OF
        try:
            members = []
            for domid, at in zip(ids, offsets, strict=True):
                if not raw[at]:
                    raise ValueError(f"listed domain {domid} has an empty slot")
                uuid = raw[at + UUID_AT:at + SLOT_BYTES]
                if uuid == _NIL_UUID and domid:
                    raise ValueError(f"slot {domid}: {_NIL_FAULT}")
                members.append((domid, text_of.get(uuid) or uuid_from_bytes(uuid)))
        except ValueError as exc:
            raise ProtocolError(f"domain table {self.path} is corrupt: {exc}",
                                uri=self.uri) from None
        return Census(uuid_from_bytes(boot), generation, tuple(members))

    def _rows(self, ids: array[int], raw: bytes, offsets: Iterable[int]
              ) -> tuple[tuple[DataRow, ...], list[tuple[int, int, bytes]]]:
        """The answered rows, and ``(domid, flags, uuid)`` of the flagged slots."""
        now = self._wall()
        rows: list[DataRow] = []
        flagged: list[tuple[int, int, bytes]] = []  # rare: costs the loop one test
        append, text_of, states = rows.append, TEXT_OF, CODE_STATE  # locals: a hot loop
        nil = _NIL_UUID
        try:
            for domid, at in zip(ids, offsets, strict=True):
                code, flags, vcpus, memory, max_memory, cpu, since, rate, uuid = _slot_of(
                    raw, at)
                state = states[code]
                if state is None:
                    raise ValueError(f"listed domain {domid} has an empty slot")
                if flags:
                    flagged.append((domid, flags, uuid))
                    continue
                if not ((rate + since) * 0.0 == 0.0 and rate >= 0.0) or (uuid == nil and domid):
                    raise ValueError(f"slot {domid}: {_slot_fault(rate, since)}")
                if now > since:
                    cpu += int((now - since) * 1e9 * rate)
                append(DataRow(domid, text_of.get(uuid) or uuid_from_bytes(uuid), state,
                               memory, max_memory, vcpus, cpu))
        except OverflowError:  # only the CPU time's int() raises it, inside the loop
            raise ProtocolError(f"domain table {self.path} is corrupt: slot {domid}: its CPU "
                                "time overflows", uri=self.uri, domid=domid) from None
        except (ValueError, IndexError, struct.error) as exc:
            raise ProtocolError(f"domain table {self.path} is corrupt: {exc}",
                                uri=self.uri) from None
        return tuple(rows), flagged


def _slot_fault(rate: float, since: float) -> str:
    """What is wrong with a slot the hot path refused (worked out only then)."""
    if not 0.0 <= rate < _INF:
        return f"CPU rate {rate!r} (it must be finite and >= 0)"
    if not -_INF < since < _INF:
        return f"CPU time instant {since!r} (it must be finite)"
    if not -_INF < rate + since < _INF:
        return f"CPU rate {rate!r} and instant {since!r} (their sum overflows)"
    return _NIL_FAULT
