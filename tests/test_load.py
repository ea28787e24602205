"""The load benchmark's short form: 64 clients (threads and processes) and a writer on
one real daemon for a few seconds; every answer checked against the host's history.
``benchmarks/load.py`` runs it for 60 s and records the latency percentiles."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import load  # benchmarks/ is not a package: its path is added above


def test_64_clients_and_a_writer_get_no_error_and_no_wrong_answer() -> None:
    r = load.run(seconds=5.0, guests=60, rate=load.WRITER_RATE)
    assert r.clients == 64
    assert sum(r.errors.values()) == 0, (dict(r.errors), r.examples)
    assert r.wrong == 0, r.wrong_examples
    assert r.history_failures == []
    # The run did what it says: the writer churned and the answers were checked.
    assert sum(r.writer.ops.values()) >= 20 and not r.writer.errors
    assert r.loops >= 64 and r.checked >= 1000 and r.events >= 20
