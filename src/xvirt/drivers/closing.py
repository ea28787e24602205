"""Closing a driver without waiting on a lock another thread holds.

A connection is closed from wherever its last reference goes: a script's
``close()``, a finalizer (the libvirt face's ``virConnect.__del__``), or the
garbage collection of interpreter exit. A driver's lock may then be held by
another thread: a call in progress, maybe one blocked in libvirt for as long as
a hung guest or daemon keeps it, or, at interpreter exit, a daemon thread that
the exit stopped in the middle of a call. Such a thread never runs again, so
its lock is never released: waiting for it hung 4 scripts in 60 at exit
(issue 18, item 4). So ``close_when_free`` never waits: it tears down at once
when the lock is free, leaves the teardown to a daemon thread that waits for
the lock otherwise, and at interpreter exit does nothing that could wait: the
end of the process closes every socket. (libvirt calls a Python event loop
implementation while holding its own locks; a thread the exit stopped inside
such a call holds them for good, so at exit even a free lock of ours does not
make a libvirt call safe: the libvirt driver disarms its connections instead.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

__all__ = ["close_when_free", "finalizing"]


def finalizing() -> bool:
    """Whether the interpreter is exiting: threads other than this one may have been
    stopped for good, holding whatever locks they held."""
    return sys.is_finalizing()


def close_when_free(lock: threading.Lock | threading.RLock, under_lock: Callable[[], None],
                    after: Callable[[], None] | None = None, *,
                    at_exit: Callable[[], None] | None = None,
                    name: str = "xvirt-close", wait_s: float = 0.0) -> threading.Thread | None:
    """Run ``under_lock()`` holding ``lock``, then ``after()`` without it, never waiting
    for the lock: now if it is free; otherwise in a daemon thread that waits for it
    (returned, so that a test can join it). At interpreter exit neither runs, only
    ``at_exit()``, which must take no lock and wait for nothing. The caller has
    marked itself closed first, so no new call starts in between.

    ``wait_s`` > 0 (an explicit close, not a finalizer's) waits that long for the lock
    first: a lock is held only briefly outside a reconnect, and a script that closes
    its connection expects it closed when close() returns (libvirtaio's loop, say, is
    gone right after)."""
    if finalizing():
        if at_exit is not None:
            at_exit()
        return None
    if lock.acquire(timeout=wait_s) if wait_s > 0 else lock.acquire(blocking=False):
        try:
            under_lock()
        finally:
            lock.release()
        if after is not None:
            after()
        return None

    def when_free() -> None:
        with lock:
            under_lock()
        if after is not None:
            after()

    closer = threading.Thread(target=when_free, name=name, daemon=True)
    try:
        closer.start()
    except RuntimeError:  # no new thread once the interpreter is shutting down
        return None
    return closer
