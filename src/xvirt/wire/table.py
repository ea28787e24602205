"""The domain table in shared memory: the data plane's hypercalls without a round trip.

A Xen hypercall answers "the domain table" and "info by domain ID" from the
hypervisor's own memory in microseconds. A daemon holding the host model can
offer the same thing to local readers only if they do not have to talk to it:
any request/reply over a socket costs tens of microseconds and wakes the daemon.
So the daemon (the one writer) keeps the table in a file it maps into memory,
and readers map the same file read-only and copy what they need out of it.
A read is a few ``struct.unpack_from`` calls on the mapping: no system call,
no lock shared with the writer, no work for the daemon.

CPU time keeps growing while nothing else changes, so a row does not store it:
it stores the CPU time at an instant and the rate since then, and the reader
extrapolates at read time. The table is rewritten only on lifecycle changes.

Layout (native byte order and alignment; the table never leaves its host)::

    offset 0       layout: magic b"XVIRTTBL", version, header/slot sizes, slot
                   count, list and slot offsets, file size (checked on open)
    offset 64      sequence counter (u64), alone on its cache line
    offset 128     generation (u64), live count (u32), retired flag (u32),
                   boot id (16 raw bytes)
    offset 4096    live list: the live domids, ascending, u16 each (so a
                   snapshot reads those slots instead of scanning 32 752)
    offset 69632   one 64-byte slot per possible domid 0..0x7FEF: state code
                   (u8, 0 = no domain), flags (u8; bit 0: the domain does not
                   answer, its figures are not to be read), vCPUs (u32), memory
                   and max memory in KiB (u64), CPU ns at ``since`` (u64),
                   ``since`` (f64, wall seconds), rate (f64, CPU ns per wall
                   ns), uuid (16 raw bytes)

A domain that does not answer (wedged) is still alive: listing and lookups
count it, and only its figures are refused, as the hypervisor's would be.

Consistency: a seqlock. The writer makes the counter odd, updates slots, list
and header, then makes it even. A reader reads the counter, then the data,
then the counter again, and keeps the data only if both reads saw the same
even value; otherwise it retries (spinning briefly, then yielding), and gives
up with ProtocolError after a bounded number of tries (a writer that died in
the middle of an update leaves the counter odd forever).

Why the ordering holds, with one writer process and CPython on both sides:

* The counter is an 8-byte-aligned word read and written through a
  ``memoryview`` cast to ``"Q"``, which CPython implements as one fixed-size
  ``memcpy``: a single load or store, so the counter itself is never torn.
  (Not ``struct.pack_into``: it zero-fills its target before writing, so a
  reader could see the counter pass through 0; the rows and header, written
  inside the odd window, may use it.)
* Every access to the mapping is a separate call into C through the
  interpreter; a C compiler cannot move memory accesses across such opaque
  calls, so the machine instructions run in program order.
* x86-64 (TSO) keeps loads in order with loads and stores in order with
  stores. So if a reader's first counter read saw the even value that ended
  update k, its data reads see all of update k; and if any data read saw a
  store of update k+1, the odd value written before that store was visible
  already, so the second counter read, which comes later, cannot see the
  first value again. Nothing more is needed there, and nothing more is done.
* ARM64 (and other weakly ordered CPUs) may reorder independent loads and
  independent stores, and CPython exposes no fence. There, both sides put a
  barrier between the counter and the data (``_fence``): a ``threading.Lock``
  taken and released twice. glibc builds those locks on semaphores whose
  release is a store-release and whose acquire is a load-acquire, and ARMv8
  orders a store-release before a later load-acquire, so the release of the
  first round trip and the acquire of the second order every access before the
  fence before every access after it. This rests on how glibc implements
  CPython's locks, not on a documented Python guarantee, and costs two
  uncontended lock round trips per fence; it is the strongest ordering
  available without a C extension. It has been exercised here on x86-64 only
  (tests force it on), not on ARM hardware.

Only the writer's process writes (one ``TableWriter`` per file, serialised by
its own lock). The file is created under a temporary name and renamed into
place, so a reader never maps a half-initialised table; a writer that is closed
marks its table retired so readers stop answering from it.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import platform
import stat
import struct
import tempfile
import threading
import time
import uuid as uuidlib
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from xvirt.errors import (
    ConnectionClosedError,
    HostUnreachableError,
    InvalidArgumentError,
    OperationFailedError,
    ProtocolError,
    XvirtError,
)
from xvirt.model import DOMID_FIRST_RESERVED, DomainState, check_domid
from xvirt.planes import Census, DataRow, IdAnswer, IdOwner, TableSnapshot, Unanswered

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "FILE_BYTES",
    "FLAG_NO_ANSWER",
    "SLOT_COUNT",
    "STATE_CODES",
    "TABLE_MAGIC",
    "TABLE_VERSION",
    "LiveRow",
    "TableReader",
    "TableWriter",
    "retire_abandoned",
    "state_of_code",
    "uuid_from_bytes",
    "uuid_to_bytes",
]

TABLE_MAGIC = b"XVIRTTBL"
TABLE_VERSION = 2  # 2: the slot's flags byte (a reader of 1 would read wedged domains)
#: Slot flag: the domain is alive but does not answer (its figures are stale).
FLAG_NO_ANSWER = 1
#: One slot per domid a guest can have: 0 .. DOMID_FIRST_RESERVED - 1.
SLOT_COUNT = DOMID_FIRST_RESERVED

_PAGE = 4096
_LAYOUT = struct.Struct("@8sIIIIQQQ")  # magic, version, header, slot bytes, slots, offsets, size
_HEAD = struct.Struct("@QII16s")  # generation, live count, retired, boot id
_SLOT = struct.Struct("@BB2xIQQQdd16s")  # state code, flags, ...
_SEQ_OFFSET = 64
_SEQ_WORD = _SEQ_OFFSET // 8  # index of the counter in the mapping seen as u64 words
_HEAD_OFFSET = 128
_HEADER_BYTES = _PAGE
_LIST_OFFSET = _HEADER_BYTES
_LIST_BYTES = -(-SLOT_COUNT * 2 // _PAGE) * _PAGE
_SLOTS_OFFSET = _LIST_OFFSET + _LIST_BYTES
_SLOT_BYTES = _SLOT.size
FILE_BYTES = _SLOTS_OFFSET + SLOT_COUNT * _SLOT_BYTES
_EMPTY_SLOT = bytes(_SLOT_BYTES)
_head_of = _HEAD.unpack_from  # bound once: the hot path pays no attribute lookups
_slot_of = _SLOT.unpack_from
_tuple_new = tuple.__new__
_UUID_AT = _SLOT.size - 16  # the uuid ends the slot
_owner_of = struct.Struct(f"@B{_UUID_AT - 1}x16s").unpack_from  # state code and uuid only
assert _SLOT_BYTES == 64 and _HEAD.size == 32 and _LAYOUT.size == 48
assert _HEAD_OFFSET + _HEAD.size <= _HEADER_BYTES

#: State codes shared by the table and the socket channel; 0 means "no domain".
#: Explicit, so that reordering DomainState never changes the format.
STATE_CODES: dict[DomainState, int] = {
    DomainState.RUNNING: 1,
    DomainState.BLOCKED: 2,
    DomainState.PAUSED: 3,
    DomainState.SHUTDOWN: 4,
    DomainState.CRASHED: 5,
    DomainState.DYING: 6,
}
_CODE_STATE: tuple[DomainState | None, ...] = (
    None, *sorted(STATE_CODES, key=lambda state: STATE_CODES[state])
)
assert all(_CODE_STATE[code] is state for state, code in STATE_CODES.items())

_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1

#: Reads spin this many times before yielding the CPU (and the GIL) to the writer.
_SPINS = 64
#: Default bound on tries; with the yields in between, a few seconds at most.
DEFAULT_MAX_RETRIES = 20_000

# Whether loads may pass loads and stores pass stores (see the module docstring).
_NEEDS_FENCE = platform.machine().lower() not in {
    "x86_64", "amd64", "i386", "i486", "i586", "i686", "x86",
}
_fence_lock = threading.Lock()


def _fence() -> None:
    """A full barrier on weakly ordered CPUs: release then acquire (module docstring)."""
    lock = _fence_lock
    lock.acquire()
    lock.release()
    lock.acquire()
    lock.release()


# -- conversions shared with the socket channel ------------------------------------------

_CACHE_MAX = 1 << 16
_text_of: dict[bytes, str] = {}
_bytes_of: dict[str, bytes] = {}


def uuid_from_bytes(raw: bytes) -> str:
    """Dashed lower-case text of 16 raw bytes (cached: the same few recur)."""
    text = _text_of.get(raw)
    if text is None:
        if len(raw) != 16:
            raise ValueError(f"a UUID is 16 bytes, not {len(raw)}")
        h = raw.hex()
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if len(_text_of) >= _CACHE_MAX:
            _text_of.clear()
        _text_of[bytes(raw)] = text
    return text


def uuid_to_bytes(text: str) -> bytes:
    """16 raw bytes of a UUID; raises InvalidArgumentError for anything else."""
    raw = _bytes_of.get(text)
    if raw is None:
        try:
            raw = uuidlib.UUID(text).bytes
        except (ValueError, TypeError, AttributeError):
            raise InvalidArgumentError(f"invalid UUID {text!r}", uuid=str(text)) from None
        if len(_bytes_of) >= _CACHE_MAX:
            _bytes_of.clear()
        _bytes_of[text] = raw
    return raw


def state_of_code(code: int) -> DomainState:
    """The state a code stands for; ValueError for 0 (no domain) or an unknown code."""
    state = _CODE_STATE[code] if 0 <= code < len(_CODE_STATE) else None
    if state is None:
        raise ValueError(f"unknown domain state code {code}")
    return state


# -- writer ------------------------------------------------------------------------------


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
    return _SLOT.pack(
        code,
        FLAG_NO_ANSWER if row.no_answer else 0,
        _uint(row.vcpus, "vcpus", _U32_MAX),
        _uint(row.memory_kib, "memory_kib", _U64_MAX),
        _uint(row.max_memory_kib, "max_memory_kib", _U64_MAX),
        _uint(row.cpu_ns, "cpu_ns", _U64_MAX),
        float(row.since),
        float(row.rate),
        uuid_to_bytes(row.uuid),
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
            os.ftruncate(fd, FILE_BYTES)  # zero-filled, so every slot starts empty
            m = mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            _LAYOUT.pack_into(m, 0, TABLE_MAGIC, TABLE_VERSION, _HEADER_BYTES,
                              _SLOT_BYTES, SLOT_COUNT, _LIST_OFFSET, _SLOTS_OFFSET, FILE_BYTES)
            info = os.fstat(fd)
            self._identity = (info.st_dev, info.st_ino)
            os.replace(tmp, self.path)  # readers only ever see a complete table
        except BaseException:
            if m is not None:
                m.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
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
            old_count = len(self._ids)
            emptied, first = self._update_live(packed.keys(), gone, reset)
            ids = self._ids
            seq = self._seq + 1
            self._words[_SEQ_WORD] = seq  # odd: readers retry from here on
            if _NEEDS_FENCE:
                _fence()
            for domid in emptied:
                at = _SLOTS_OFFSET + domid * _SLOT_BYTES
                m[at:at + _SLOT_BYTES] = _EMPTY_SLOT
            for domid, raw in packed.items():
                at = _SLOTS_OFFSET + domid * _SLOT_BYTES
                m[at:at + _SLOT_BYTES] = raw
            if first is not None:
                tail = array("H", ids[first:]).tobytes()
                start = _LIST_OFFSET + 2 * first
                m[start:start + len(tail)] = tail
                if len(ids) < old_count:  # keep what lies past the count zero
                    end = _LIST_OFFSET + 2 * old_count
                    m[start + len(tail):end] = bytes(end - start - len(tail))
            _HEAD.pack_into(m, _HEAD_OFFSET, gen, len(ids), 0, boot)
            if _NEEDS_FENCE:
                _fence()
            self._words[_SEQ_WORD] = seq + 1  # even: consistent again
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

    def close(self) -> None:
        """Mark the table retired (readers stop answering from it) and unmap it.
        The file stays; ``unlink`` removes it."""
        with self._lock:
            m = self._map
            if m is None:
                return
            seq = self._seq + 1
            self._words[_SEQ_WORD] = seq
            if _NEEDS_FENCE:
                _fence()
            _HEAD.pack_into(m, _HEAD_OFFSET, self._generation, len(self._ids), 1, self._boot)
            if _NEEDS_FENCE:
                _fence()
            self._words[_SEQ_WORD] = seq + 1
            self._seq = seq + 1
            self._map = None
            self._words.release()
            m.close()

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
        if _LAYOUT.unpack_from(m, 0)[:2] != (TABLE_MAGIC, TABLE_VERSION):
            return False
        seq = words[_SEQ_WORD] | 1  # odd, whatever state the dead writer left it in
        words[_SEQ_WORD] = seq
        if _NEEDS_FENCE:
            _fence()
        generation, count, _retired, boot = _HEAD.unpack_from(m, _HEAD_OFFSET)
        _HEAD.pack_into(m, _HEAD_OFFSET, generation, count, 1, boot)
        if _NEEDS_FENCE:
            _fence()
        words[_SEQ_WORD] = seq + 1
        return True
    finally:
        words.release()
        m.close()


# -- reader ------------------------------------------------------------------------------


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
        self._map: mmap.mmap | None = self._open()
        self._words: memoryview | None = memoryview(self._map).cast("Q")

    def _not_table(self, why: str) -> ProtocolError:
        return ProtocolError(f"{self.path} is not an xvirt domain table: {why}", uri=self.uri)

    def _open(self) -> mmap.mmap:
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
            if info.st_size < _LAYOUT.size:
                raise self._not_table(f"{info.st_size} bytes is too short")
            layout = _LAYOUT.unpack(os.pread(fd, _LAYOUT.size, 0))
            expected = (TABLE_MAGIC, TABLE_VERSION, _HEADER_BYTES, _SLOT_BYTES, SLOT_COUNT,
                        _LIST_OFFSET, _SLOTS_OFFSET, FILE_BYTES)
            if layout[0] != TABLE_MAGIC:
                raise self._not_table(f"bad magic {layout[0]!r}")
            if layout[1] != TABLE_VERSION:
                raise self._not_table(f"version {layout[1]}, expected {TABLE_VERSION}")
            if layout != expected or info.st_size != FILE_BYTES:
                raise self._not_table(f"unexpected layout {layout} of {info.st_size} bytes")
            return mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            raise self._not_table(f"cannot read it ({exc.strerror})") from exc
        finally:
            os.close(fd)

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
        if tries > _SPINS:
            time.sleep(0 if tries < 16 * _SPINS else 1e-4)  # releases the GIL too

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(f"table reader for {self.path} was closed", uri=self.uri)

    def _retired(self) -> HostUnreachableError:
        return HostUnreachableError(
            f"the domain table {self.path} was retired by its writer", uri=self.uri)

    def _slot(self, domid: int, unpack: Callable[[mmap.mmap, int], tuple[Any, ...]]
              ) -> tuple[tuple[int, int, int, bytes], tuple[Any, ...]]:
        """The header and ``unpack`` of one slot, read at one instant (the seqlock)."""
        if type(domid) is not int or not 0 <= domid < SLOT_COUNT:
            check_domid(domid)  # raises InvalidArgumentError with the reason
        m, words = self._map, self._words
        if m is None or words is None:
            m, words = self._mapped()  # raises: closed
        at = _SLOTS_OFFSET + domid * _SLOT_BYTES
        tries = 0
        try:
            while True:
                seq = words[_SEQ_WORD]
                if seq and not seq & 1:
                    if _NEEDS_FENCE:
                        _fence()
                    head = _head_of(m, _HEAD_OFFSET)
                    slot = unpack(m, at)
                    if _NEEDS_FENCE:
                        _fence()
                    if words[_SEQ_WORD] == seq:
                        break
                tries += 1
                self._wait(tries, seq)
        except ValueError:  # the mapping was closed under us
            raise self._closed_error() from None
        if head[2]:
            raise self._retired()
        return head, slot

    def info(self, domid: int) -> IdAnswer:
        """Info by domain ID; ``row`` is None when no domain has that ID."""
        (generation, _count, _retired, boot), slot = self._slot(domid, _slot_of)
        boot_id = _text_of.get(boot) or uuid_from_bytes(boot)
        code, flags, vcpus, memory, max_memory, cpu, since, rate, uuid = slot
        if not code:
            return IdAnswer(boot_id, generation, None)
        if flags:
            raise self._flagged(domid, flags, uuid)
        now = self._wall()
        if now > since:
            cpu += int((now - since) * 1e9 * rate)
        state = _CODE_STATE[code] if code < len(_CODE_STATE) else None
        if state is None:
            raise ProtocolError(f"domain table {self.path}, slot {domid}: unknown state {code}",
                                uri=self.uri, domid=domid)
        # tuple.__new__ skips the named tuples' Python-level __new__: 0.3 us of 2.
        return _tuple_new(IdAnswer, (boot_id, generation, _tuple_new(DataRow, (
            domid, _text_of.get(uuid) or uuid_from_bytes(uuid), state, memory, max_memory,
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
        (generation, _count, _retired, boot), (code, uuid) = self._slot(domid, _owner_of)
        owner = (_text_of.get(uuid) or uuid_from_bytes(uuid)) if code else None
        boot_id = _text_of.get(boot) or uuid_from_bytes(boot)
        return _tuple_new(IdOwner, (boot_id, generation, owner, None))  # no name: no default

    def _live(self) -> tuple[tuple[int, int, int, bytes], array[int], bytes, Sequence[int]]:
        """Header, live IDs and the raw bytes of their slots, at one instant."""
        m, words = self._mapped()
        offsets: Sequence[int]
        tries = 0
        try:
            while True:
                seq = words[_SEQ_WORD]
                if seq and not seq & 1:
                    if _NEEDS_FENCE:
                        _fence()
                    head = _head_of(m, _HEAD_OFFSET)
                    count = min(head[1], SLOT_COUNT)  # a torn count is caught below
                    ids = array("H", m[_LIST_OFFSET:_LIST_OFFSET + 2 * count])
                    # Copy raw bytes only: decoding waits until the read is known good,
                    # so the window the writer can spoil stays short.
                    lo = ids[0] if count else 0
                    span = (ids[-1] - lo + 1) if count else 0
                    if 0 < span <= 4 * count:  # dense: one copy of the whole range
                        base = _SLOTS_OFFSET + lo * _SLOT_BYTES
                        raw = m[base:base + span * _SLOT_BYTES]
                        offsets = [(d - lo) * _SLOT_BYTES for d in ids]
                    else:  # sparse: one copy per slot
                        parts = [m[o:o + _SLOT_BYTES]
                                 for o in (_SLOTS_OFFSET + d * _SLOT_BYTES for d in ids)]
                        raw = b"".join(parts)
                        offsets = range(0, count * _SLOT_BYTES, _SLOT_BYTES)
                    if _NEEDS_FENCE:
                        _fence()
                    if words[_SEQ_WORD] == seq:
                        break
                tries += 1
                self._wait(tries, seq)
        except ValueError:
            raise self._closed_error() from None
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
        text_of = _text_of
        try:
            members = []
            for domid, at in zip(ids, offsets, strict=True):
                if not raw[at]:
                    raise ValueError(f"listed domain {domid} has an empty slot")
                uuid = raw[at + _UUID_AT:at + _SLOT_BYTES]
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
        append, text_of, states = rows.append, _text_of, _CODE_STATE  # locals: a hot loop
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
                if now > since:
                    cpu += int((now - since) * 1e9 * rate)
                append(DataRow(domid, text_of.get(uuid) or uuid_from_bytes(uuid), state,
                               memory, max_memory, vcpus, cpu))
        except (ValueError, IndexError, struct.error) as exc:
            raise ProtocolError(f"domain table {self.path} is corrupt: {exc}",
                                uri=self.uri) from None
        return tuple(rows), flagged
