"""The one libvirt event loop thread of the process.

libvirt delivers lifecycle events and notices a dead connection (close
callback, keepalive) only while someone runs its event loop; its default
implementation must be registered before the first connection is opened.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["ensure_event_loop"]

_lock = threading.Lock()
_started = False


def ensure_event_loop(binding: Any) -> None:
    """Register libvirt's default event loop and run it on a daemon thread, once.

    Also installs a silent error handler: libvirt otherwise prints every error
    to stderr, and the driver reports them as exceptions instead."""
    global _started
    with _lock:
        if _started:
            return
        binding.registerErrorHandler(lambda _ctx, _err: None, None)
        binding.virEventRegisterDefaultImpl()
        thread = threading.Thread(target=_run, args=(binding,), name="xvirt-libvirt-events",
                                  daemon=True)
        thread.start()
        _started = True


def _run(binding: Any) -> None:
    while True:
        if binding.virEventRunDefaultImpl() < 0:
            time.sleep(0.1)  # a broken loop must not spin a core
