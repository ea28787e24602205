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

Binding ``struct.Struct.unpack_from`` once (``_slot_of`` in the table reader)
saves nothing measurable alone (0.15 us either way); it is kept only because
the hot loops read better with one short name.
"""

from __future__ import annotations

__all__ = ["tuple_new"]

#: ``tuple_new(DataRow, fields)``: a named tuple without its Python-level ``__new__``.
#: The caller passes exactly the fields, in order: nothing is checked.
tuple_new = tuple.__new__
