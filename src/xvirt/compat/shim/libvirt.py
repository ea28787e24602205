"""Stands in for libvirt-python under ``xvirt compat``: replaces itself with the face,
so ``import libvirt`` gives :mod:`xvirt.compat.libvirt` (one module, one state)."""

import sys

#: While this half-made module is ``sys.modules["libvirt"]``, it is the face, not the
#: binding: the real binding is then loaded aside (xvirt.libvirt_api.binding).
__xvirt_face__ = True

import xvirt.compat.libvirt as _face  # the marker must come first

sys.modules[__name__] = _face
_face._preload()  # the real binding, now that ``libvirt`` is the face (see _safe_to_preload)
