"""A lock held by another thread, as a call blocked in libvirt holds a driver's, and a
call that must return while it is held (issue 18, item 4)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.threads import in_thread

#: How long a test lets a call run before declaring it hung: a failure detector for a
#: call that would never return, not a bound on how fast it is.
HUNG_S = 60.0


class Holder:
    """Another thread holding ``lock`` until released."""

    def __init__(self, lock: threading.Lock | threading.RLock) -> None:
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(lock,), daemon=True)
        self._thread.start()
        assert self._held.wait(HUNG_S)

    def _hold(self, lock: threading.Lock | threading.RLock) -> None:
        with lock:
            self._held.set()
            self._release.wait()

    def release(self) -> None:
        self._release.set()
        self._thread.join(HUNG_S)


def returns(call: Callable[[], object]) -> bool:
    """Whether ``call`` returns (or raises) within HUNG_S, run on a thread of its own;
    what it raised is raised here."""
    thread, result = in_thread(call)
    thread.join(HUNG_S)
    if thread.is_alive():
        return False
    if isinstance(result[0], BaseException):
        raise result[0]
    return True
