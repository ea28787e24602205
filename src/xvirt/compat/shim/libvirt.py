"""Stands in for libvirt-python under ``xvirt compat``: replaces itself with the face,
so ``import libvirt`` gives :mod:`xvirt.compat.libvirt` (one module, one state)."""

import sys

import xvirt.compat.libvirt as _face

sys.modules[__name__] = _face
_face._preload()  # the real binding, now that ``libvirt`` is the face (see _safe_to_preload)
