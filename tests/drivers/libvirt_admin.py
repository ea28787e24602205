"""The outside world's own connection to libvirt's test driver, for driver tests that
act on the host behind the driver's back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirt_target import guest_xml

TARGET = "test:///default"


@contextlib.contextmanager
def persistent_guest(name: str, uuid: str) -> Iterator[Any]:
    """A connection to ``TARGET`` with a persistent guest ``name`` running; the guest is
    destroyed and undefined afterwards, whatever became of it."""
    lv = real_libvirt()
    conn = lv.open(TARGET)
    conn.defineXML(guest_xml(name, uuid, memory_kib=65536, vcpus=1)).create()
    try:
        yield conn
    finally:
        dom = conn.lookupByUUIDString(uuid)
        with contextlib.suppress(lv.libvirtError):
            dom.destroy()
        with contextlib.suppress(lv.libvirtError):
            dom.undefine()
        conn.close()
