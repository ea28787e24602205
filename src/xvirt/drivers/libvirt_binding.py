"""The real libvirt-python binding, even where ``import libvirt`` is xvirt's face.

Under ``xvirt compat`` a shim makes ``import libvirt`` give the compatible
face, yet the libvirt driver in that same process needs the binding itself:
it is loaded from its own file, under a private name, skipping the shim.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType

from xvirt.errors import UnsupportedError

__all__ = ["SHIM_MARKER", "real_libvirt"]

#: Set on the face module, so the binding is never mistaken for it.
SHIM_MARKER = "__xvirt_face__"
_PRIVATE_NAME = "_xvirt_real_libvirt"
_lock = threading.Lock()
_loaded: ModuleType | None = None


def real_libvirt() -> ModuleType:
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        current = sys.modules.get("libvirt")
        if current is not None and not getattr(current, SHIM_MARKER, False):
            _loaded = current
            return current
        _loaded = _load_from_path()
        return _loaded


def _load_from_path() -> ModuleType:
    path = [p for p in sys.path if not _is_shim_dir(p)]
    spec = importlib.machinery.PathFinder.find_spec("libvirt", path)
    if spec is None or spec.loader is None:
        raise UnsupportedError(
            "libvirt-python is not installed: the libvirt driver needs it "
            "(./scripts/test or ./scripts/xvirt install it, with Debian's libvirt)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:  # e.g. libvirtmod built against another libvirt
        del sys.modules[_PRIVATE_NAME]
        raise UnsupportedError(f"libvirt-python cannot be loaded: {exc}") from None
    return module


def _is_shim_dir(entry: str) -> bool:
    from pathlib import Path

    try:
        return (Path(entry) / "libvirt.py").is_file() and (
            Path(entry) / ".xvirt-shim").exists()
    except OSError:
        return False
