"""The real libvirt-python binding, even where ``import libvirt`` means the face.

Under ``xvirt compat`` the shim directory comes first on ``sys.path``, so
``import libvirt`` gives :mod:`xvirt.compat.libvirt`. The libvirt driver inside
that process still needs the real binding: it is loaded from the real
``libvirt.py`` (found on ``sys.path`` without the shim directory) under a
private module name, once, and never registered as ``libvirt``, so the
script keeps the face. It lives here, not in compat or the driver, because
both need it and neither may import the other.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from importlib.machinery import PathFinder
from types import ModuleType

from xvirt.errors import UnsupportedError

__all__ = ["PRIVATE_NAME", "event_impl_registered", "is_face", "real_libvirt"]

#: The name the real binding is loaded under when ``libvirt`` is the face.
PRIVATE_NAME = "_xvirt_real_libvirt"
#: xvirt's own package directory: a ``libvirt.py`` inside it (compat's shim, the face)
#: stands in for the binding and is never the binding, so compat's layout is not needed here.
_XVIRT_DIR = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_lock = threading.Lock()
_MISSING = (
    "the libvirt-python binding is not installed for this interpreter "
    f"({sys.executable}); install it (pip install 'xvirt[libvirt]', with the version of "
    "the system libvirt) to use libvirt: URIs"
)


def is_face(module: object) -> bool:
    """True for xvirt's face module (it carries a marker the real binding lacks)."""
    return bool(getattr(module, "__xvirt_face__", False))


def _is_shim_dir(entry: str) -> bool:
    """True for a ``sys.path`` entry inside xvirt's own package (the shim directory)."""
    try:
        path = os.path.realpath(entry or os.curdir)
        return os.path.commonpath([path, _XVIRT_DIR]) == _XVIRT_DIR
    except (OSError, ValueError):
        return False


def real_libvirt() -> ModuleType:
    """The real ``libvirt`` module; raises UnsupportedError when it is not installed."""
    current = sys.modules.get("libvirt")
    if current is not None and not is_face(current):
        return current
    with _lock:
        loaded = sys.modules.get(PRIVATE_NAME)
        if loaded is not None:
            return loaded
        if current is None and not any(_is_shim_dir(p) for p in sys.path):
            return _import_plainly()
        return _load_privately()


def _import_plainly() -> ModuleType:
    try:
        module = importlib.import_module("libvirt")
    except ImportError as exc:
        raise UnsupportedError(f"{_MISSING}: {exc}") from None
    if is_face(module):  # the face reached by some other route: load the real one aside
        return _load_privately()
    return module


def _load_privately() -> ModuleType:
    path = [p for p in sys.path if not _is_shim_dir(p)]
    spec = PathFinder.find_spec("libvirt", path)
    if spec is None or spec.origin is None or not spec.has_location:
        raise UnsupportedError(_MISSING)
    private = importlib.util.spec_from_file_location(PRIVATE_NAME, spec.origin)
    if private is None or private.loader is None:
        raise UnsupportedError(_MISSING)
    module = importlib.util.module_from_spec(private)
    sys.modules[PRIVATE_NAME] = module
    try:
        private.loader.exec_module(module)
    except ImportError as exc:  # libvirt.py without its C part (libvirtmod)
        del sys.modules[PRIVATE_NAME]
        raise UnsupportedError(f"{_MISSING}: {exc}") from None
    if is_face(module):
        del sys.modules[PRIVATE_NAME]
        raise UnsupportedError(_MISSING)
    for value in vars(module).values():  # its classes say they are libvirt's, as they are
        if isinstance(value, type) and value.__module__ == PRIVATE_NAME:
            value.__module__ = "libvirt"
    return module


def event_impl_registered(binding: ModuleType) -> bool:
    """Whether an event loop implementation is registered with libvirt, by anyone (the
    libvirt driver's own, or the program's). libvirt has no query: adding a disabled
    timer succeeds only if one is."""
    try:
        timer = binding.virEventAddTimeout(-1, lambda _timer, _opaque: None, None)
    except binding.libvirtError:
        return False
    binding.virEventRemoveTimeout(timer)
    return True
