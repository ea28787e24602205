"""Calls the face does not serve: a libvirtError (VIR_ERR_NO_SUPPORT) naming the
call, raised when it is called, never AttributeError when it is looked up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from xvirt.compat import _constants as c
from xvirt.compat._errors import error
from xvirt.errors import UnsupportedError
from xvirt.libvirt_api.binding import real_libvirt

__all__ = ["unsupported"]


def unsupported(owner: str, name: str, domain: int = c.VIR_FROM_DOMAIN) -> Callable[..., NoReturn]:
    """A stand-in for ``owner.name`` that refuses when called. Where the binding is
    installed, only for a method its own ``owner`` class has: any other name stays an
    AttributeError, as on libvirt-python (a script may test for a method)."""
    if name == "_o":
        # libvirt's own pointer, which the companion modules (libvirt_qemu, libvirt_lxc)
        # pass to libvirt: an object of xvirt's own hosts has none, so their calls are
        # refused as a libvirt driver without them refuses them.
        raise error(c.VIR_ERR_NO_SUPPORT, domain,
                    f"{owner} of an xvirt host: libvirt's own calls (libvirt_qemu, "
                    "libvirt_lxc) need a libvirt: URI")
    if name.startswith("_") or not _libvirt_has(owner, name):
        # private and special names stay absent (copy, pickle...), and unknown ones
        raise AttributeError(f"{owner!r} object has no attribute {name!r}")
    where = f"{owner}.{name}" if owner else name

    def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise error(c.VIR_ERR_NO_SUPPORT, domain,
                    f"{where} (xvirt's libvirt face does not provide it)")

    refuse.__name__ = refuse.__qualname__ = name
    return refuse


def _libvirt_has(owner: str, name: str) -> bool:
    """Whether the binding's class ``owner`` has a method ``name`` (True without the
    binding, or for a name on no class: nothing to check against)."""
    try:
        cls = getattr(real_libvirt(), owner, None)
    except UnsupportedError:
        return True
    return cls is None or callable(getattr(cls, name, None))
