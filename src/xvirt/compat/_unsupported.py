"""Calls the face does not serve: a libvirtError (VIR_ERR_NO_SUPPORT) naming the
call, raised when it is called, never AttributeError when it is looked up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from xvirt.compat import _constants as c
from xvirt.compat._errors import error

__all__ = ["unsupported"]


def unsupported(owner: str, name: str, domain: int = c.VIR_FROM_DOMAIN) -> Callable[..., NoReturn]:
    """A stand-in for ``owner.name`` that refuses when called."""
    if name.startswith("_"):  # private and special names stay absent (copy, pickle...)
        raise AttributeError(f"{owner!r} has no attribute {name!r}")
    where = f"{owner}.{name}" if owner else name

    def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise error(c.VIR_ERR_NO_SUPPORT, domain,
                    f"{where} (xvirt's libvirt face does not provide it)")

    refuse.__name__ = refuse.__qualname__ = name
    return refuse
