"""The few tricks the hot paths use, gathered so a reader finds them in one place.

Each is used only where a per-domain or per-call cost was measured to matter
(``benchmarks/hotpath_cost.py`` measures every one of them; the figures below
are its medians on the development machine, CPython 3.11):

* ``tuple_new``: builds a named tuple through ``tuple.__new__``, skipping the
  Python-level ``__new__`` that ``collections.namedtuple`` generates (0.37 us
  -> 0.11 us per ``DataRow``). Used where rows, answers and identities are
  built once per domain per call: the shared table's reader, the host model's
  data plane, the cache's lookup hit, ``DataRow.info``.
* Cached UUID text (``xvirt.wire.binary``): 16 raw bytes become dashed text
  once; afterwards ``dict.get`` answers (0.76 us -> 0.04 us per UUID). Readers
  call ``TEXT_OF.get(raw) or uuid_from_bytes(raw)`` inline, saving the call.
* Lock-free counters (``xvirt.drivers.base.PlaneCounters``): ``next()`` on an
  ``itertools.count`` runs in C without releasing the GIL, so a count is exact
  under threads without a lock round trip (0.05 us against 0.27 us per bump).
* Bound methods as globals or locals (``struct.Struct.unpack_from`` bound
  once, ``list.append`` in a loop's locals): no attribute lookup per row.
* ``SystemClock.now`` is ``time.time`` itself, not a method calling it.
"""

from __future__ import annotations

__all__ = ["tuple_new"]

#: ``tuple_new(DataRow, fields)``: a named tuple without its Python-level ``__new__``.
#: The caller passes exactly the fields, in order: nothing is checked.
tuple_new = tuple.__new__
