"""Which xvirt URI a libvirt-python script's URI means.

``open(None)`` takes ``$LIBVIRT_DEFAULT_URI`` (as libvirt does), else
``$XVIRT_COMPAT_URI`` (what ``xvirt compat --uri`` sets), else the embedded
demo host. Which driver a URI means is ``xvirt.open``'s rule, not a copy of it:
a plain libvirt URI goes to the libvirt driver (``test:///default`` ->
``libvirt:test:///default``), any other is opened as it is (and a scheme
nobody knows is refused by ``xvirt.open``, naming the known ones).
"""

from __future__ import annotations

import os

import xvirt

__all__ = ["DEFAULT", "resolve"]

DEFAULT = xvirt.DEFAULT_URI


def resolve(name: str | None) -> tuple[str, str]:
    """``(uri as the script sees it, uri xvirt opens)``."""
    given = (
        name
        or os.environ.get("LIBVIRT_DEFAULT_URI")
        or os.environ.get("XVIRT_COMPAT_URI")
        or DEFAULT
    )
    return given, xvirt._driver_uri(given)
