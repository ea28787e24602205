"""The few tricks the hot paths use, gathered so a reader finds them in one place.

Each is used only where a per-domain or per-call cost was measured to matter.
``benchmarks/hotpath_cost.py`` measures each beside its plain form (medians,
2 cores, CPython 3.11; both sides include the same ~0.05 us of call overhead):

* ``tuple_new``: builds a named tuple through ``tuple.__new__``, skipping the
  Python-level ``__new__`` that ``collections.namedtuple`` generates
  (0.37 -> 0.22 us per ``DataRow``). Used where rows, answers and identities are
  built once per domain per call: the shared table's reader, the host model's
  data plane, the cache's lookup hit, ``DataRow.info``.
* Cached UUID text (``xvirt.wire.binary.TEXT_OF``): 16 raw bytes become dashed
  text once; afterwards a dict answers (0.66 -> 0.09 us per UUID). Readers call
  ``TEXT_OF.get(raw) or uuid_from_bytes(raw)`` inline, saving a call.
* Lock-free counters (``xvirt.drivers.base.PlaneCounters``): ``next()`` on an
  ``itertools.count`` runs in C without releasing the GIL, so a count stays
  exact under threads without a lock round trip (0.26 -> 0.05 us per bump).
* ``SystemClock.now`` is ``time.time`` itself, not a method calling it
  (0.08 -> 0.05 us per reading).
* ``GcPause``: the cyclic garbage collector held off while a large answer is made
  (an exporter scrape, the daemon's statistics answer). At 5000 domains such an
  answer is some 200,000 tracked objects that form no cycles and go with it, yet
  set off full collections over the whole heap that free nothing (about 70 ms
  each, three a scrape; the daemon's answer 127 -> 85 ms in process, measured):
  held off, reference counting frees them when the answer ends.

Binding ``struct.Struct.unpack_from`` once (``_slot_of`` in the table reader)
saves nothing measurable alone (0.15 us either way); it is kept only because
the hot loops read better with one short name.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["GcPause", "tuple_new"]

#: ``tuple_new(DataRow, fields)``: a named tuple without its Python-level ``__new__``.
#: The caller passes exactly the fields, in order: nothing is checked.
tuple_new = tuple.__new__


class GcPause:
    """``with pause():`` holds the cyclic garbage collector off. Reentrant and
    thread-safe: the collector comes back when the last holder lets go, and only if
    it was on when the first took hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._was_enabled:
                    gc.enable()
