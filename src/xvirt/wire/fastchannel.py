"""The fast channel's protocol: a unix socket beside the shared-memory domain table.

This module is the framing and the codec both sides use; the daemon's server is
``xvirt.daemon.fastchannel_server`` and the client ``xvirt.wire.fastchannel_client``.

The table (``xvirt.wire.table``) answers the data plane without the daemon's
help, which is why it is fast, and also why it cannot say whether the daemon is
still there, nor where the table is. This socket says both: HELLO names the
table, the host's boot identity and the daemon instance (a new instance means a
new table, even at the same path), and a connection that the peer has closed
is a daemon that is gone, which ``FastChannelClient.alive`` sees with one
``poll`` and no round trip. The socket also answers the same two questions
(SNAPSHOT, INFO) itself, as the fallback when the table cannot be mapped and as
the yardstick the table is measured against.

Framing (all integers big-endian)::

    frame   = length:u32  opcode:u8  payload      length counts opcode + payload
    request : HELLO=1 (version:u16)  SNAPSHOT=2 ()  INFO=3 (domid:u16)  PING=4 ()
    reply   : opcode | 0x80 with the payload below, or ERROR=0x7F (code:u8, utf-8 text)

    HELLO    version:u16 boot:16 generation:u64 path_len:u16 path instance_len:u16 instance
    SNAPSHOT boot:16 generation:u64 count:u32, then count rows
    INFO     boot:16 generation:u64 present:u8, then one row if present
    row      id:u16 state:u8 uuid:16 memory_kib:u64 max_memory_kib:u64 vcpus:u32 cpu_ns:u64
    ERROR NO_ANSWER=4 (to INFO): code:u8 domid:u16 uuid:16 utf-8 text

Boot ids and uuids travel as 16 raw bytes, states as the table's codes, and
CPU time is computed when the server answers. A live domain that did not
answer (wedged) is a row whose state is NO_ANSWER (0x80) and whose figures
are zero in a SNAPSHOT (leaving it out would read as the domain gone), and
ERROR NO_ANSWER to an INFO: the host answered, that domain did not, and the
connection stays. A request longer than 1 MiB, an
unknown opcode, a frame cut short or a payload of the wrong size gets an
ERROR (BAD_REQUEST) and the server closes that connection; when the host
model fails, the reply is ERROR (UNAVAILABLE) and the connection stays. Every
connection has its own thread, so a slow or hostile client only ever holds its
own thread (and is dropped if a frame takes longer than the I/O timeout), and at
most ``max_clients`` are served at once: one more is sent ERROR (BUSY) and closed
(a client then reads over HTTP). A client that sends nothing for the idle timeout
(120 s by default) is closed: a client reading the table PINGs now and then.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from xvirt.errors import OperationFailedError, XvirtError
from xvirt.planes import DataRow, IdAnswer, TableSnapshot, Unanswered
from xvirt.wire.binary import STATE_CODES, state_of_code, uuid_from_bytes, uuid_to_bytes
from xvirt.wire.table import SLOT_COUNT

__all__ = [
    "ERROR_HEAD",
    "FRAME",
    "HELLO_HEAD",
    "INFO_HEAD",
    "MAX_REPLY",
    "MAX_REQUEST",
    "NO_ANSWER",
    "NO_ANSWER_HEAD",
    "PROTOCOL_VERSION",
    "REPLY",
    "ROW",
    "SNAPSHOT_HEAD",
    "U16",
    "ErrorCode",
    "Hello",
    "Opcode",
    "decode_row",
    "decode_text",
    "encode_hello",
    "encode_info",
    "encode_row",
    "encode_snapshot",
    "encode_unanswered",
    "error_frame",
    "frame",
    "no_answer_frame",
]

PROTOCOL_VERSION = 2  # 2: NO_ANSWER rows and errors (a wedged domain)


class Opcode(enum.IntEnum):
    """Request opcodes; a reply carries ``opcode | REPLY``, or ERROR."""

    HELLO = 1
    SNAPSHOT = 2
    INFO = 3
    PING = 4
    ERROR = 0x7F


class ErrorCode(enum.IntEnum):
    """The first payload byte of an ERROR reply."""

    BAD_REQUEST = 1  # the connection is closed after it
    UNAVAILABLE = 2  # the host could not answer; the connection stays
    BUSY = 3  # too many clients; the connection is closed
    NO_ANSWER = 4  # to INFO: the domain did not answer; the connection stays


REPLY = 0x80
FRAME = struct.Struct(">IB")
U16 = struct.Struct(">H")
HELLO_HEAD = struct.Struct(">H16sQ")
SNAPSHOT_HEAD = struct.Struct(">16sQI")
INFO_HEAD = struct.Struct(">16sQB")
ROW = struct.Struct(">HB16sQQIQ")
ERROR_HEAD = struct.Struct(">B")
NO_ANSWER_HEAD = struct.Struct(">BH16s")  # ERROR NO_ANSWER: code, domid, uuid
#: A row's state byte for a live domain that did not answer (its figures are zero).
NO_ANSWER = 0x80

MAX_REQUEST = 1 << 20
#: A snapshot of a full table is the longest reply (about 1.5 MB).
MAX_REPLY = 1 + SNAPSHOT_HEAD.size + SLOT_COUNT * ROW.size


def frame(op: int, payload: bytes = b"") -> bytes:
    """One frame: length, opcode, payload."""
    return FRAME.pack(1 + len(payload), op) + payload


def error_frame(code: ErrorCode, message: str) -> bytes:
    """An ERROR reply: the code, then the message (at most 1000 bytes of UTF-8)."""
    return frame(Opcode.ERROR, ERROR_HEAD.pack(code) + message.encode("utf-8", "replace")[:1000])


def encode_row(row: DataRow) -> bytes:
    """A row of a SNAPSHOT or INFO reply."""
    return ROW.pack(row.id, STATE_CODES[row.state], uuid_to_bytes(row.uuid), row.memory_kib,
                     row.max_memory_kib, row.vcpus, row.cpu_time_ns)


def encode_unanswered(miss: Unanswered) -> bytes:
    """A SNAPSHOT row for a live domain that did not answer: NO_ANSWER, no figures."""
    return ROW.pack(miss.id, NO_ANSWER, uuid_to_bytes(miss.uuid), 0, 0, 0, 0)


def decode_row(fields: tuple[int, int, bytes, int, int, int, int]) -> DataRow:
    """A row from ``ROW``'s fields; ValueError for an unknown state code."""
    domid, code, uuid, memory, max_memory, vcpus, cpu = fields
    return DataRow(domid, uuid_from_bytes(uuid), state_of_code(code), memory, max_memory,
                   vcpus, cpu)


def decode_text(raw: bytes, what: str) -> str:
    """UTF-8 text of a payload field; ValueError naming ``what`` otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class Hello:
    """What the daemon says on connecting: where its table is and who it is."""

    version: int
    table_path: str
    boot_id: str
    generation: int
    instance: str



def no_answer_frame(domid: int, exc: OperationFailedError) -> bytes | None:
    """ERROR NO_ANSWER when ``exc`` says the asked domain did not answer, else None."""
    if exc.op != "info" or exc.domid != domid or exc.uuid is None:
        return None
    try:
        head = NO_ANSWER_HEAD.pack(ErrorCode.NO_ANSWER, domid, uuid_to_bytes(exc.uuid))
    except XvirtError:
        return None
    return frame(Opcode.ERROR, head + exc.message.encode("utf-8", "replace")[:1000])


def encode_hello(answer: IdAnswer, table_path: str, instance: str) -> bytes:
    """HELLO's reply payload; ``answer`` gives the boot id and generation."""
    path = table_path.encode("utf-8")
    instance_raw = instance.encode("utf-8")
    return b"".join((
        HELLO_HEAD.pack(PROTOCOL_VERSION, uuid_to_bytes(answer.boot_id), answer.generation),
        U16.pack(len(path)), path, U16.pack(len(instance_raw)), instance_raw,
    ))


def encode_info(answer: IdAnswer) -> bytes:
    """INFO's reply payload."""
    head = INFO_HEAD.pack(uuid_to_bytes(answer.boot_id), answer.generation, answer.row is not None)
    return head if answer.row is None else head + encode_row(answer.row)


def encode_snapshot(snap: TableSnapshot) -> bytes:
    """SNAPSHOT's reply payload: the answered rows, then the unanswered ones."""
    missing = snap.unanswered
    head = SNAPSHOT_HEAD.pack(uuid_to_bytes(snap.boot_id), snap.generation,
                      len(snap.rows) + len(missing))
    rows = b"".join([encode_row(row) for row in snap.rows])
    if not missing:
        return head + rows
    return head + rows + b"".join([encode_unanswered(miss) for miss in missing])


