"""libvirt-python compatibility: :mod:`xvirt.compat.libvirt` is a face that lets
existing libvirt-python scripts run unmodified on any xvirt driver, and
``xvirt compat -- python script.py`` makes ``import libvirt`` resolve to it.

This package's ``__init__`` stays light (no face, no binding imported): ``xvirt
compat`` imports :data:`SHIM_DIR` from it while the face may be what ``import
libvirt`` means in the same process. :func:`real_libvirt` is re-exported from
:mod:`xvirt.libvirt_api.binding`, which the libvirt driver imports too.
"""

from __future__ import annotations

import os

from xvirt.libvirt_api.binding import real_libvirt

__all__ = ["SHIM_DIR", "real_libvirt"]

#: The directory whose ``libvirt.py`` stands in for the binding (put first on PYTHONPATH).
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
