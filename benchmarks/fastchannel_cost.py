"""What one data-plane call costs over the fast channel: shared memory against the socket.

The daemon offers the data plane two ways: a shared-memory table that readers
copy from without the daemon's help, and a unix socket answering the same two
questions. The table exists because a Xen hypercall answers in microseconds
and a request/reply cannot; this measures whether it does, per call:

* ``TableReader.info`` and ``TableReader.snapshot`` at 20, 1000 and 5000 rows;
* ``FastChannelClient.info`` and ``.snapshot`` at the same sizes, against a
  server in this process (a real socket; a fake source handing out a ready-made
  answer, so what is timed is the transport, not a host model);
* ``TableWriter.publish`` of one changed row, and ``FastChannelClient.alive``.

Each number is the median of several repeats of a timed loop (time.perf_counter),
divided by the calls in the loop. The socket's server and client share one
process and so one GIL: its numbers include thread hand-offs that two processes
would not pay, and are an upper bound.

Run from the repository root::

    .venv/bin/python benchmarks/fastchannel_cost.py
    .venv/bin/python benchmarks/fastchannel_cost.py --quick

Other benchmarks call ``measure()`` and get the numbers as a dict.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence

from xvirt.daemon.fastchannel_server import FastChannelServer
from xvirt.daemon.table_writer import LiveRow, TableWriter
from xvirt.model import DomainState
from xvirt.planes import DataRow, IdAnswer, TableSnapshot
from xvirt.wire.fastchannel_client import FastChannelClient
from xvirt.wire.table_reader import TableReader

SIZES: tuple[int, ...] = (20, 1000, 5000)
BOOT = str(uuidlib.UUID(int=0xB007, version=4))


def _uuid(domid: int) -> str:
    return str(uuidlib.UUID(int=domid + 1, version=4))


def _live(domid: int, now: float) -> LiveRow:
    return LiveRow(domid, _uuid(domid), DomainState.RUNNING, 1 << 20, 2 << 20, 2,
                   10**9, now, 0.5)


class _ReadySource:
    """Hands out precomputed answers, so the socket's own cost is what is timed."""

    def __init__(self, rows: int, table_path: str) -> None:
        self.table_path = table_path
        self.instance = "benchmark"
        data = tuple(DataRow(d, _uuid(d), DomainState.RUNNING, 1 << 20, 2 << 20, 2, 10**9)
                     for d in range(rows))
        self._snapshot = TableSnapshot(BOOT, 1, data)
        self._by_id = {row.id: IdAnswer(BOOT, 1, row) for row in data}
        self._none = IdAnswer(BOOT, 1, None)

    def data_snapshot(self) -> TableSnapshot:
        return self._snapshot

    def data_info(self, domid: int) -> IdAnswer:
        return self._by_id.get(domid, self._none)


def per_call_us(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` timed loops of ``calls`` calls, in microseconds per call."""
    call()  # warm caches (uuid texts, code paths) before timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times) * 1e6


def _calls_for(rows: int, budget: int) -> int:
    """Fewer calls per loop for bigger answers: about ``budget`` rows per loop."""
    return max(3, budget // max(rows, 1))


def measure(
    sizes: Sequence[int] = SIZES, *, repeats: int = 7, budget: int = 20_000
) -> dict[str, object]:
    """Per-call costs in microseconds.

    Returns ``{"table_info_us", "table_publish_us", "socket_info_us",
    "socket_ping_us", "alive_us": float, "table_snapshot_us",
    "socket_snapshot_us": {rows: float}}``; the single-call numbers are taken
    with the largest size loaded.
    """
    largest = max(sizes)
    middle = largest // 2
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="xvirt-bench-") as tmp:
        table_path = os.path.join(tmp, "domains.table")
        sock_path = os.path.join(tmp, "fast.sock")
        now = time.time()
        with TableWriter(table_path) as writer, TableReader(table_path) as reader:
            table_snapshot: dict[int, float] = {}
            for rows in sizes:
                writer.publish(BOOT, rows, [_live(d, now) for d in range(rows)], reset=True)
                table_snapshot[rows] = per_call_us(
                    reader.snapshot, _calls_for(rows, budget), repeats)
            result["table_snapshot_us"] = table_snapshot
            writer.publish(BOOT, 1, [_live(d, now) for d in range(largest)], reset=True)
            result["table_info_us"] = per_call_us(lambda: reader.info(middle), budget, repeats)
            generations = itertools.count(2)
            changed = [_live(middle, now)]
            result["table_publish_us"] = per_call_us(
                lambda: writer.publish(BOOT, next(generations), changed), budget // 4, repeats)
        socket_snapshot: dict[int, float] = {}
        for rows in sizes:
            with FastChannelServer(sock_path, _ReadySource(rows, table_path)), \
                    FastChannelClient(sock_path, uri="bench:///") as client:
                socket_snapshot[rows] = per_call_us(
                    client.snapshot, _calls_for(rows, budget // 4), repeats)
        result["socket_snapshot_us"] = socket_snapshot
        with FastChannelServer(sock_path, _ReadySource(largest, table_path)), \
                FastChannelClient(sock_path, uri="bench:///") as client:
            result["socket_info_us"] = per_call_us(
                lambda: client.info(middle), budget // 4, repeats)
            result["socket_ping_us"] = per_call_us(client.ping, budget // 4, repeats)
            result["alive_us"] = per_call_us(client.alive, budget, repeats)
    return result


def format_table(result: dict[str, object]) -> str:
    """The numbers as a small aligned table, microseconds per call."""
    def us(value: object) -> str:
        assert isinstance(value, float)
        return f"{value:12.2f}"

    lines = [f"{'call':<40}{'shared memory':>14}{'socket':>14}", "-" * 68]
    lines.append(f"{'info(domid)':<40}{us(result['table_info_us']):>14}"
                 f"{us(result['socket_info_us']):>14}")
    table_snap = result["table_snapshot_us"]
    socket_snap = result["socket_snapshot_us"]
    assert isinstance(table_snap, dict) and isinstance(socket_snap, dict)
    for rows in table_snap:
        lines.append(f"{f'snapshot() at {rows} rows':<40}{us(table_snap[rows]):>14}"
                     f"{us(socket_snap[rows]):>14}")
        lines.append(f"{'  per row':<40}{us(table_snap[rows] / rows):>14}"
                     f"{us(socket_snap[rows] / rows):>14}")
    lines.append(f"{'publish one changed row (writer)':<40}{us(result['table_publish_us']):>14}"
                 f"{'':>14}")
    lines.append(f"{'ping()':<40}{'':>14}{us(result['socket_ping_us']):>14}")
    lines.append(f"{'alive() (poll, no round trip)':<40}{'':>14}{us(result['alive_us']):>14}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer repeats")
    args = parser.parse_args(argv)
    result = measure(repeats=3, budget=2_000) if args.quick else measure()
    print("microseconds per call, median of repeats")
    print(format_table(result))


if __name__ == "__main__":
    main()
