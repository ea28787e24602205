"""libvirt-python compatibility: :mod:`xvirt.compat.libvirt` is a face that lets
existing libvirt-python scripts run unmodified on any xvirt driver, and
``xvirt compat -- python script.py`` makes ``import libvirt`` resolve to it.

This package's ``__init__`` stays light (no face, no binding imported), because
the libvirt driver imports :func:`real_libvirt` from here while the face may be
what ``import libvirt`` means in the same process.
"""

from __future__ import annotations

from xvirt.compat.binding import SHIM_DIR, real_libvirt

__all__ = ["SHIM_DIR", "real_libvirt"]
