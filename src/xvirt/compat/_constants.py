"""The face's ``VIR_*`` constants: libvirt's own table, :mod:`xvirt.libvirt_api.constants`.

Re-exported, not copied, so each number is defined once. Only ``VIR_`` names are
public here (hence no ``__future__`` import): ``from _constants import *`` gives
exactly them.
"""

from xvirt.libvirt_api.constants import *  # noqa: F403 - the VIR_* names are the face's API

#: The names served that the real binding lacks: libvirt.h's C macros (the constants test
#: knows them).
_FACE_ONLY = frozenset({"VIR_UUID_BUFLEN", "VIR_UUID_STRING_BUFLEN"})
