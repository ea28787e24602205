"""The domain table in shared memory: its layout and consistency rules.

The daemon writes it (``xvirt.daemon.table_writer``), clients read it
(``xvirt.wire.table_reader``); this module is what both must agree on.

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

A mapping faults (SIGBUS, the end of the process) on a page the disk cannot back
or past the end of a file cut short, so the writer reserves every block when it
makes the file, both sides check the file's size before each access, and a
reader treats a slot whose figures cannot be true (NaN, infinite or negative
rate, NaN or infinite ``since``, the nil UUID on a domain other than Domain-0) as
corruption: all three end in named errors, never a signal.
"""

from __future__ import annotations

import platform
import struct
import threading

from xvirt.model import DOMID_FIRST_RESERVED

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "FILE_BYTES",
    "FLAG_NO_ANSWER",
    "HEAD",
    "HEADER_BYTES",
    "HEAD_OFFSET",
    "LAYOUT",
    "LIST_BYTES",
    "LIST_OFFSET",
    "NEEDS_FENCE",
    "SEQ_WORD",
    "SLOT",
    "SLOTS_OFFSET",
    "SLOT_BYTES",
    "SLOT_COUNT",
    "SPINS",
    "TABLE_MAGIC",
    "TABLE_VERSION",
    "UUID_AT",
    "fence",
    "layout_fields",
]

TABLE_MAGIC = b"XVIRTTBL"
TABLE_VERSION = 2  # 2: the slot's flags byte (a reader of 1 would read wedged domains)
#: Slot flag: the domain is alive but does not answer (its figures are stale).
FLAG_NO_ANSWER = 1
#: One slot per domid a guest can have: 0 .. DOMID_FIRST_RESERVED - 1.
SLOT_COUNT = DOMID_FIRST_RESERVED

_PAGE = 4096
#: magic, version, header bytes, slot bytes, slot count, list and slot offsets, file size
LAYOUT = struct.Struct("@8sIIIIQQQ")
#: generation, live count, retired flag, boot id
HEAD = struct.Struct("@QII16s")
#: state code, flags, vCPUs, memory, max memory, CPU ns at since, since, rate, uuid
SLOT = struct.Struct("@BB2xIQQQdd16s")
_SEQ_OFFSET = 64
#: Index of the sequence counter in the mapping seen as u64 words.
SEQ_WORD = _SEQ_OFFSET // 8
HEAD_OFFSET = 128
HEADER_BYTES = _PAGE
LIST_OFFSET = HEADER_BYTES
LIST_BYTES = -(-SLOT_COUNT * 2 // _PAGE) * _PAGE
SLOTS_OFFSET = LIST_OFFSET + LIST_BYTES
SLOT_BYTES = SLOT.size
FILE_BYTES = SLOTS_OFFSET + SLOT_COUNT * SLOT_BYTES
#: Where the uuid starts inside a slot (it ends the slot).
UUID_AT = SLOT.size - 16
assert SLOT_BYTES == 64 and HEAD.size == 32 and LAYOUT.size == 48
assert HEAD_OFFSET + HEAD.size <= HEADER_BYTES

#: Reads spin this many times before yielding the CPU (and the GIL) to the writer.
SPINS = 64
#: Default bound on a reader's tries; with the yields in between, a few seconds at most.
DEFAULT_MAX_RETRIES = 20_000

#: Whether loads may pass loads and stores pass stores (see the module docstring).
NEEDS_FENCE = platform.machine().lower() not in {
    "x86_64", "amd64", "i386", "i486", "i586", "i686", "x86",
}
_fence_lock = threading.Lock()


def fence() -> None:
    """A full barrier on weakly ordered CPUs: release then acquire (module docstring)."""
    lock = _fence_lock
    lock.acquire()
    lock.release()
    lock.acquire()
    lock.release()


def layout_fields() -> tuple[bytes, int, int, int, int, int, int, int]:
    """What a table's first ``LAYOUT.size`` bytes must hold, in ``LAYOUT``'s order."""
    return (TABLE_MAGIC, TABLE_VERSION, HEADER_BYTES, SLOT_BYTES, SLOT_COUNT, LIST_OFFSET,
            SLOTS_OFFSET, FILE_BYTES)
