"""One connection's lifecycle callbacks, and the pump that feeds them while any
is registered (started with the first, stopped with the last)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from xvirt.compat._events import LOOP, Pump
from xvirt.model import DomainEvent

__all__ = ["Callback", "Callbacks"]


@dataclass(slots=True)
class Callback:
    cb: Callable[..., object]
    opaque: Any
    uuid: str | None  # only this domain's events, when registered with one


class Callbacks:
    """Thread-safe: registrations come from the script, deliveries from the loop."""

    def __init__(self, deliver: Callable[[DomainEvent, list[Callback]], None]) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._entries: dict[int, Callback] = {}
        self._legacy: dict[Callable[..., object], int] = {}  # domainEventRegister's
        self._last_id = 0
        self.pump: Pump | None = None

    def add(self, entry: Callback, stream: Callable[[], Iterator[DomainEvent]]) -> int:
        with self._lock:
            if self.pump is None or not self.pump.alive:
                # "From now on": the stream starts at the current generation, in the
                # caller's thread, so no event after this call returns can be missed.
                self.pump = Pump(stream(), self._dispatch, LOOP)
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

    def add_legacy(self, entry: Callback, stream: Callable[[], Iterator[DomainEvent]]) -> None:
        callback_id = self.add(entry, stream)
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

    def _dispatch(self, event: DomainEvent) -> None:
        """On the loop's thread: the callbacks that want this event, as they are now."""
        with self._lock:
            wanted = [e for e in self._entries.values() if e.uuid is None or e.uuid == event.uuid]
        if wanted:
            self._deliver(event, wanted)
