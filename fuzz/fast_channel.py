"""libFuzzer (atheris) harness: the fast channel's framing, both ways, the checks of
test_fastchannel_fuzz.

The first byte of an input picks the target, the rest is read by a FuzzedDataProvider:

- server: bytes from a client (raw, or a row of good and bad frames), cut into chunks,
  maybe with a stall, maybe with a failing host, through the server's own connection
  loop; the replies must be the reference decoder's (``check_server``);
- client: daemon bytes (raw, real replies, or real replies edited) read by a client
  making a few calls; each call gives a value or ProtocolError / HostUnreachableError /
  ConnectionClosedError, and nothing is read from a dropped connection (``run_client``);
- round trip: a table served and read back exactly (``check_round_trip``).

Anything else out of the server or the client, or a broken check, is a crash.

    python fuzz/fast_channel.py -runs=20000 [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import struct
import sys
import uuid

import _harness
import atheris

with _harness.instrumented():
    from tests.wire.test_fastchannel_fuzz import (
        BAD_FRAMES,
        GOOD_FRAMES,
        STALL,
        Call,
        Fields,
        _frame,
        check_round_trip,
        check_server,
        cut_script,
        fuzz_server,
        real_replies,
        run_client,
    )
    from xvirt.model import DomainState
    from xvirt.wire.fastchannel import Opcode
    from xvirt.wire.table import SLOT_COUNT

WORK = _harness.scratch("fast")
SERVER, SOURCE = fuzz_server(str(WORK / "fast.sock"))
REAL = real_replies(SERVER, SOURCE)
_CALLS: list[Call] = [("snapshot", 0), ("ping", 0), ("info", 1), ("info", 0)]
_STATES = list(DomainState)


def _frames(fdp: atheris.FuzzedDataProvider) -> bytes:
    """A row of up to six frames, good and bad, as the suite's ``client_streams``."""
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        kind = fdp.ConsumeIntInRange(0, 5)
        if kind == 0:
            parts.append(fdp.PickValueInList(GOOD_FRAMES))
        elif kind == 1:
            domid = fdp.ConsumeIntInRange(0, SLOT_COUNT - 1)
            parts.append(_frame(Opcode.INFO, struct.pack(">H", domid)))
        elif kind == 2:
            parts.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)))
        elif kind == 3:
            parts.append(struct.pack(">IB", fdp.ConsumeIntInRange(0, 2**32 - 1),
                                     fdp.ConsumeIntInRange(0, 255))
                         + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)))
        elif kind == 4:
            parts.append(_frame(fdp.ConsumeIntInRange(0, 255),
                                fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6))))
        else:
            parts.append(fdp.PickValueInList(BAD_FRAMES))
    return b"".join(parts)


def server_input(fdp: atheris.FuzzedDataProvider) -> None:
    host_fails = fdp.ConsumeIntInRange(0, 7) == 0
    stall = fdp.ConsumeIntInRange(0, 3) == 0
    cuts = [fdp.ConsumeIntInRange(0, 255) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    raw = fdp.ConsumeIntInRange(0, 3) == 0
    data = fdp.ConsumeBytes(fdp.remaining_bytes()) if raw else _frames(fdp)
    script = cut_script(data, sorted(min(c, len(data)) for c in cuts))
    if stall:
        script.insert(fdp.ConsumeIntInRange(0, len(script)), STALL)
    check_server(SERVER, SOURCE, data, script, host_fails)


def client_input(fdp: atheris.FuzzedDataProvider) -> None:
    todo: list[Call] = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        if fdp.ConsumeBool():
            todo.append(fdp.PickValueInList(_CALLS))
        else:
            todo.append(("info", fdp.ConsumeIntInRange(0, SLOT_COUNT - 1)))
    stall_at = fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeIntInRange(0, 5) == 0 else None
    cut = fdp.ConsumeIntInRange(0, 2**16)
    how = fdp.ConsumeIntInRange(0, 2)
    if how == 0:
        data = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        buf = bytearray().join(fdp.PickValueInList(REAL)
                               for _ in range(fdp.ConsumeIntInRange(1, 4)))
        if how == 2:  # edit real replies
            for _ in range(fdp.ConsumeIntInRange(1, 4)):
                at = fdp.ConsumeIntInRange(0, len(buf))
                kind = fdp.ConsumeIntInRange(0, 3)
                if kind == 0 and at < len(buf):
                    buf[at] = fdp.ConsumeIntInRange(0, 255)
                elif kind == 1:
                    del buf[at:at + fdp.ConsumeIntInRange(1, 8)]
                elif kind == 2:
                    buf[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
                else:
                    del buf[at:]
        data = bytes(buf)
    cut = min(cut, len(data))
    script: list[bytes | object] = [data[:cut], data[cut:]]
    if stall_at is not None:
        script.insert(stall_at, STALL)
    run_client([s for s in script if s != b""], todo)


def round_trip_input(fdp: atheris.FuzzedDataProvider) -> None:
    table: dict[int, Fields] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        table[fdp.ConsumeIntInRange(0, SLOT_COUNT - 1)] = (
            str(uuid.UUID(int=fdp.ConsumeIntInRange(0, 2**128 - 1))),
            fdp.PickValueInList(_STATES), fdp.ConsumeIntInRange(0, 2**64 - 1),
            fdp.ConsumeIntInRange(0, 2**64 - 1), fdp.ConsumeIntInRange(0, 2**32 - 1),
            fdp.ConsumeIntInRange(0, 2**64 - 1))
    check_round_trip(SERVER, SOURCE, table)


_TARGETS = [server_input, server_input, client_input, client_input, round_trip_input]


def one_input(data: bytes) -> None:
    if not data:
        return
    _TARGETS[data[0] % len(_TARGETS)](atheris.FuzzedDataProvider(data[1:]))


def seeds() -> list[bytes]:
    """Real requests for the server, real replies for the client, a table."""
    requests = b"".join([*GOOD_FRAMES, *BAD_FRAMES[:1]])
    out = [b"\x00" + bytes([1, 0, 0, 0, 0]) + requests, b"\x01" + bytes(8) + requests[:40]]
    out += [b"\x02" + bytes([0, 0, 0, 0, 0, 0]) + reply for reply in REAL]
    out += [b"\x04" + bytes(range(i, i + 64)) for i in range(0, 192, 64)]
    return out


if __name__ == "__main__":
    _harness.main("fast", one_input, seeds(), max_len=512, work=WORK, at_end=SERVER.close)
    sys.exit(0)
