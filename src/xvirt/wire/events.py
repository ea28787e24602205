"""The event channel over HTTP: ``(events ...)`` answers, encoded and decoded here.

The daemon answers ``GET /xvirt/events?after=N`` with the host's numbered
lifecycle events after ``N``::

    (events (boot_id B) (latest N) (complete 0|1)
            (event (seq N) (kind K) (domid D) (uuid U) [(old_id D)] [(name X)]) ...)

``complete`` is 0 when the host's bounded log no longer reaches back to ``N``:
the reader must take a new snapshot instead. ``domid`` is -1 where the domain
had no ID (``defined``/``undefined`` of a domain that is not running); every
kind travels by its ``EventKind`` value, so a new kind needs no change here
(``metadata_changed`` carries the element's namespace URI in ``name``).
"""

from __future__ import annotations

from xvirt.errors import ProtocolError
from xvirt.model import EventKind
from xvirt.planes import EventBatch, HostEvent
from xvirt.wire import sxp

__all__ = ["encode_events", "parse_events"]


def _event(e: HostEvent) -> sxp.Sx:
    item: list[sxp.Sx] = ["event", ["seq", str(e.seq)], ["kind", e.kind.value],
                          ["domid", str(e.id)], ["uuid", e.uuid]]
    if e.old_id is not None:
        item.append(["old_id", str(e.old_id)])
    if e.name is not None:
        item.append(["name", e.name])
    return item


def encode_events(batch: EventBatch) -> sxp.Sx:
    """The ``(events ...)`` answer for ``batch``."""
    body: list[sxp.Sx] = ["events", ["boot_id", batch.boot_id], ["latest", str(batch.latest)],
                          ["complete", "1" if batch.complete else "0"]]
    body += [_event(e) for e in batch.events]
    return body


def parse_events(rec: sxp.Sx | None, uri: str | None = None) -> EventBatch:
    """An ``(events ...)`` answer as a batch; ProtocolError (with ``uri``) if malformed."""
    if not isinstance(rec, list) or not rec or rec[0] != "events":
        raise ProtocolError("expected an (events ...) answer", uri=uri)
    boot = sxp.value(rec, "events/boot_id")
    latest = sxp.value(rec, "events/latest") or ""
    complete = sxp.value(rec, "events/complete")
    if not boot or not latest.isdigit() or complete not in ("0", "1"):
        raise ProtocolError("malformed (events ...) header", uri=uri)
    events = []
    for item in sxp.children(rec, "event"):
        try:
            old = sxp.value(item, "event/old_id")
            events.append(HostEvent(
                int(sxp.value(item, "event/seq") or ""),
                EventKind(sxp.value(item, "event/kind")),
                int(sxp.value(item, "event/domid") or ""),
                sxp.value(item, "event/uuid") or "",
                int(old) if old else None,
                sxp.value(item, "event/name")))
        except ValueError:
            raise ProtocolError(f"malformed event {sxp.dumps(item)}", uri=uri) from None
    return EventBatch(boot, int(latest), tuple(events), complete == "1")
