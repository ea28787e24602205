"""Which xvirt URI a libvirt-python script's URI means.

``open(None)`` takes ``$LIBVIRT_DEFAULT_URI`` (as libvirt does), else
``$XVIRT_COMPAT_URI`` (what ``xvirt compat --uri`` sets), else the embedded
demo host. A URI with an xvirt scheme is opened as is; any other is a libvirt
URI and goes to the libvirt driver (``test:///default`` ->
``libvirt:test:///default``).
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT", "XVIRT_SCHEMES", "resolve"]

DEFAULT = "sim:///default"
XVIRT_SCHEMES = frozenset({"sim", "xend", "xend+unix", "libvirt"})


def resolve(name: str | None) -> tuple[str, str]:
    """``(uri as the script sees it, uri xvirt opens)``."""
    given = (
        name
        or os.environ.get("LIBVIRT_DEFAULT_URI")
        or os.environ.get("XVIRT_COMPAT_URI")
        or DEFAULT
    )
    scheme, colon, _ = given.partition(":")
    if colon and scheme.lower() in XVIRT_SCHEMES:
        return given, given
    return given, "libvirt:" + given
