"""The data plane over HTTP: ``(table ...)`` and ``(info ...)`` answers, both ways.

``GET /xvirt/table`` answers every live domain, ``GET /xvirt/table/ID`` one::

    (table|info (boot_id B) (generation N)
        (row (domid D) (uuid U) (state -b----) (memory_kib M) (max_memory_kib M)
             (vcpus V) (cpu_time_ns T)) ...
        (unanswered (domid D) (uuid U) (error "text")) ...)

An ``unanswered`` entry is a live domain that did not give its figures (wedged):
alive for listing, an error for its info. This is the fallback when neither the
shared table nor the fast channel can be reached.
"""

from __future__ import annotations

from collections.abc import Iterable

from xvirt.errors import OperationFailedError, ProtocolError
from xvirt.planes import DataRow, TableSnapshot, Unanswered
from xvirt.wire import records, sxp

__all__ = ["encode_table", "parse_table"]


def encode_table(head: str, boot_id: str, generation: int, rows: Iterable[DataRow],
                 unanswered: Iterable[Unanswered] = ()) -> sxp.Sx:
    """A ``(table ...)`` (``head`` "table") or ``(info ...)`` (``head`` "info") answer."""
    body: list[sxp.Sx] = [head, ["boot_id", boot_id], ["generation", str(generation)]]
    for r in rows:
        body.append(["row", ["domid", str(r.id)], ["uuid", r.uuid],
                     ["state", r.state.flags()], ["memory_kib", str(r.memory_kib)],
                     ["max_memory_kib", str(r.max_memory_kib)], ["vcpus", str(r.vcpus)],
                     ["cpu_time_ns", str(r.cpu_time_ns)]])
    for u in unanswered:
        body.append(["unanswered", ["domid", str(u.id)], ["uuid", u.uuid],
                     ["error", u.error.message]])
    return body


def parse_table(rec: sxp.Sx | None, uri: str | None = None) -> TableSnapshot:
    """A ``(table ...)`` or ``(info ...)`` answer as a snapshot; ProtocolError if malformed.
    Each unanswered domain's error is an OperationFailedError of ``info`` on ``uri``."""
    if not isinstance(rec, list) or not rec or rec[0] not in ("table", "info"):
        raise ProtocolError("expected a (table ...) answer", uri=uri)
    boot = sxp.value(rec, f"{rec[0]}/boot_id")
    gen = sxp.value(rec, f"{rec[0]}/generation")
    if not boot or not gen or not gen.isdigit():
        raise ProtocolError("the table answer lacks boot_id or generation", uri=uri)
    rows = []
    for row in sxp.children(rec, "row"):
        try:
            rows.append(DataRow(
                int(sxp.value(row, "row/domid") or ""), sxp.value(row, "row/uuid") or "",
                records.parse_state_flags(sxp.value(row, "row/state") or ""),
                int(sxp.value(row, "row/memory_kib") or ""),
                int(sxp.value(row, "row/max_memory_kib") or ""),
                int(sxp.value(row, "row/vcpus") or ""),
                int(sxp.value(row, "row/cpu_time_ns") or "")))
        except (ValueError, ProtocolError) as exc:  # a bad number, or a bad state's letters
            raise ProtocolError(f"malformed table row {sxp.dumps(row)}: {exc}",
                                uri=uri) from None
    missing = []
    for miss in sxp.children(rec, "unanswered"):  # wedged domains: alive, no figures
        domid_text = sxp.value(miss, "unanswered/domid")
        uuid = sxp.value(miss, "unanswered/uuid")
        if not domid_text or not domid_text.isdigit() or not uuid:
            raise ProtocolError(f"malformed unanswered domain {sxp.dumps(miss)}", uri=uri)
        domid = int(domid_text)
        message = sxp.value(miss, "unanswered/error") or f"domain {domid} did not answer"
        missing.append(Unanswered(domid, uuid, OperationFailedError(
            message, uri=uri, domid=domid, uuid=uuid, op="info")))
    return TableSnapshot(boot, int(gen), tuple(rows), unanswered=tuple(missing))
