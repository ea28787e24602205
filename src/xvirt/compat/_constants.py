"""The face's ``VIR_*`` constants: libvirt's own table, :mod:`xvirt.libvirt_api.constants`.

Re-exported, not copied, so each number is defined once. Only ``VIR_`` names are
public here (hence no ``__future__`` import): ``from _constants import *`` gives
exactly them.
"""

from xvirt.libvirt_api.constants import *  # noqa: F403 - the VIR_* names are the face's API

# virDomainUndefineFlagsValues, which xvirt.libvirt_api.constants lacks so far (scripts
# pass them to undefineFlags): libvirt 9.0.0's values, checked like every other by
# tests/compat/test_constants.py. They belong in that table; then these lines go.
VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1
VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2
VIR_DOMAIN_UNDEFINE_NVRAM = 4
VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = 8
VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA = 16
VIR_DOMAIN_UNDEFINE_TPM = 32
VIR_DOMAIN_UNDEFINE_KEEP_TPM = 64
VIR_DOMAIN_DEFINE_VALIDATE = 1

#: The names served that the real binding lacks: libvirt.h's C macros (the constants test
#: knows them).
_FACE_ONLY = frozenset({"VIR_UUID_BUFLEN", "VIR_UUID_STRING_BUFLEN"})
