"""One connection's domain event callbacks (of every event ID), and the source that
feeds them while any is registered (started with the first, stopped with the last): a
pump reading xvirt's event stream, or libvirt's own events over a ``libvirt:`` URI."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Callback", "Callbacks", "EventSource", "Keyed"]


class Keyed(Protocol):
    """An event as the callbacks filter it: by the domain's UUID."""

    @property
    def uuid(self) -> str: ...


class EventSource(Protocol):
    """What feeds the callbacks (a Pump, or libvirt's own events): posts each event to
    the loop until stopped."""

    @property
    def alive(self) -> bool: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


#: Starts a source that hands each event to the given function, on the loop's thread.
Start = Callable[[Callable[[Any], None]], EventSource]


@dataclass(slots=True)
class Callback:
    cb: Callable[..., object]
    opaque: Any
    uuid: str | None  # only this domain's events, when registered with one
    #: The libvirt event ID it was registered for (what it is called with depends on it).
    event_id: int = 0


class Callbacks:
    """Thread-safe: registrations come from the script, deliveries from the loop."""

    def __init__(self, deliver: Callable[[Any, list[Callback]], None]) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._entries: dict[int, Callback] = {}
        self._legacy: dict[Callable[..., object], int] = {}  # domainEventRegister's
        self._last_id = 0
        self.pump: EventSource | None = None

    def add(self, entry: Callback, start: Start) -> int:
        with self._lock:
            if self.pump is None or not self.pump.alive:
                # "From now on": the source starts in the caller's thread, so no event
                # after this call returns can be missed.
                self.pump = start(self._dispatch)
            self._last_id += 1
            self._entries[self._last_id] = entry
            return self._last_id

    def remove(self, callback_id: int) -> bool:
        with self._lock:
            found = self._entries.pop(callback_id, None) is not None
            self._legacy = {k: v for k, v in self._legacy.items() if v != callback_id}
        self._stop_if_idle()
        return found

    def legacy(self, cb: Callable[..., object]) -> Callback | None:
        with self._lock:
            callback_id = self._legacy.get(cb)
            return None if callback_id is None else self._entries.get(callback_id)

    def add_legacy(self, entry: Callback, start: Start) -> None:
        callback_id = self.add(entry, start)
        with self._lock:
            self._legacy[entry.cb] = callback_id

    def remove_legacy(self, cb: Callable[..., object]) -> None:
        with self._lock:
            callback_id = self._legacy.pop(cb, None)
        if callback_id is not None:
            self.remove(callback_id)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._legacy.clear()
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        with self._lock:
            if self._entries or self.pump is None:
                return
            pump, self.pump = self.pump, None
        pump.stop()

    def _dispatch(self, event: Keyed) -> None:
        """On the loop's thread: the callbacks that want this event, as they are now."""
        with self._lock:
            wanted = [e for e in self._entries.values() if e.uuid is None or e.uuid == event.uuid]
        if wanted:
            self._deliver(event, wanted)
