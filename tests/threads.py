"""A call run on a thread of its own, its result or exception kept for the test."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``fn`` on a daemon thread; the list gets its result, or what it raised."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the test
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result
