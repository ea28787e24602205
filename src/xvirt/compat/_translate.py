"""xvirt errors -> libvirtError, with the code and error domain libvirt would give.

Every public call of the face is wrapped by :func:`api`, which names the C
function it stands for (``virDomainGetInfo``...): that name goes into the
messages, as libvirt's do, and no xvirt error crosses the face.

The error domain of host-side errors is the backend's: libvirt's own driver
domain over a libvirt URI (``VIR_FROM_TEST`` for ``test:///``, as the real
test driver reports), ``VIR_FROM_XEN`` over the embedded host (it plays the
hypervisor) and ``VIR_FROM_XEND`` over a host daemon (it plays xend).
Argument checks and access refusals are ``VIR_FROM_DOMAIN``, transport
failures ``VIR_FROM_RPC``, as in libvirt.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from xvirt.compat import _constants as c
from xvirt.compat._errors import error, libvirtError, raw_error
from xvirt.errors import (
    AuthError,
    ConnectionClosedError,
    HandleClosedError,
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ProtocolError,
    ReadOnlyError,
    UnsupportedError,
    XvirtError,
)

__all__ = ["Backend", "api", "backend_for", "not_found", "translate"]

# libvirt drivers (the URI scheme before any '+transport') -> their error domain.
_LIBVIRT_DOMAINS = {
    "test": c.VIR_FROM_TEST,
    "qemu": c.VIR_FROM_QEMU,
    "lxc": c.VIR_FROM_LXC,
    "xen": c.VIR_FROM_LIBXL,
    "libxl": c.VIR_FROM_LIBXL,
    "vbox": c.VIR_FROM_VBOX,
    "esx": c.VIR_FROM_ESX,
    "bhyve": c.VIR_FROM_BHYVE,
    "ch": c.VIR_FROM_CH,
    "openvz": c.VIR_FROM_OPENVZ,
    "hyperv": c.VIR_FROM_HYPERV,
}

# Where libvirt reports these codes whatever the driver.
_FIXED_DOMAINS = {
    c.VIR_ERR_SYSTEM_ERROR: c.VIR_FROM_RPC,
    c.VIR_ERR_RPC: c.VIR_FROM_RPC,
    c.VIR_ERR_INVALID_CONN: c.VIR_FROM_DOMAIN,
    c.VIR_ERR_INVALID_DOMAIN: c.VIR_FROM_DOMAIN,
    c.VIR_ERR_OPERATION_DENIED: c.VIR_FROM_DOMAIN,
}


@dataclass(frozen=True, slots=True)
class Backend:
    """What kind of host an xvirt URI reaches, as far as error reports need it."""

    driver: str  # "sim", "xend", or the libvirt driver's name ("test", "qemu"...)
    error_domain: int
    xen: bool  # one of xvirt's own Xen hosts (sim, xend), not a libvirt one

    @property
    def libvirt(self) -> bool:
        """A libvirt host (through xvirt's libvirt driver), not one of xvirt's own."""
        return not self.xen

    @property
    def terse_lookups(self) -> bool:
        """libvirt's test driver says only "Domain not found" when a lookup misses."""
        return self.driver == "test"


def backend_for(xvirt_uri: str) -> Backend:
    if xvirt_uri.startswith("libvirt:"):
        scheme = xvirt_uri[len("libvirt:"):].partition(":")[0].partition("+")[0].lower()
        return Backend(scheme, _LIBVIRT_DOMAINS.get(scheme, c.VIR_FROM_NONE), xen=False)
    if xvirt_uri.startswith("xend"):
        return Backend("xend", c.VIR_FROM_XEND, xen=True)
    return Backend("sim", c.VIR_FROM_XEN, xen=True)


def not_found(backend: Backend, what: str, value: object, name: str | None = None,
              *, lookup: bool = False) -> libvirtError:
    """NO_DOMAIN as libvirt words it: ``Domain not found: no domain with matching
    id 999`` (the test driver's lookups say only ``Domain not found``)."""
    if lookup and backend.terse_lookups:
        return error(c.VIR_ERR_NO_DOMAIN, backend.error_domain)
    shown = value if what == "id" else f"'{value}'"
    suffix = f" ({name})" if name else ""
    return error(c.VIR_ERR_NO_DOMAIN, backend.error_domain,
                 f"no domain with matching {what} {shown}{suffix}")


def _strip(message: str) -> str:
    # The libvirt driver prefixes libvirt's own words with "libvirt: ".
    return message[len("libvirt: "):] if message.startswith("libvirt: ") else message


def translate(exc: XvirtError, backend: Backend, func: str, *, uuid: str | None = None,
              name: str | None = None) -> libvirtError:
    """The libvirtError for an xvirt error raised while serving ``func``."""
    if exc.libvirt_code is not None:  # it came from real libvirt: its code wins
        code = exc.libvirt_code
        domain = exc.libvirt_domain
        if domain is None:
            domain = _FIXED_DOMAINS.get(code, backend.error_domain)
        return raw_error(code, domain, _strip(exc.message))
    domain = backend.error_domain
    if isinstance(exc, ReadOnlyError):
        return error(c.VIR_ERR_OPERATION_DENIED, c.VIR_FROM_DOMAIN,
                     f"read only access prevents {func}")
    if isinstance(exc, NoDomainError):
        if uuid is not None:
            return not_found(backend, "uuid", uuid, name)
        return error(c.VIR_ERR_NO_DOMAIN, domain, exc.message)
    if isinstance(exc, ConnectionClosedError):
        return error(c.VIR_ERR_INVALID_CONN, c.VIR_FROM_DOMAIN, func)
    if isinstance(exc, HandleClosedError):
        return error(c.VIR_ERR_INVALID_DOMAIN, c.VIR_FROM_DOMAIN, func)
    if isinstance(exc, HostUnreachableError):
        return error(c.VIR_ERR_SYSTEM_ERROR, c.VIR_FROM_RPC, exc.message)
    if isinstance(exc, ProtocolError):
        return error(c.VIR_ERR_RPC, c.VIR_FROM_RPC, exc.message)
    if isinstance(exc, UnsupportedError):
        return error(c.VIR_ERR_NO_SUPPORT, domain, f"{func} ({exc.message})")
    if isinstance(exc, InvalidArgumentError):
        return error(c.VIR_ERR_INVALID_ARG, domain, exc.message)
    if isinstance(exc, OperationFailedError):
        return error(c.VIR_ERR_OPERATION_INVALID, domain, exc.message)
    if isinstance(exc, AuthError):
        return error(c.VIR_ERR_AUTH_FAILED, domain, exc.message)
    return error(c.VIR_ERR_INTERNAL_ERROR, domain, exc.message)


class Translating(Protocol):
    def _translate(self, exc: XvirtError, func: str) -> libvirtError: ...


S = TypeVar("S", bound=Translating)
P = ParamSpec("P")
R = TypeVar("R")


_UNSET: Any = object()


def _arity(method: Callable[..., object]) -> int | None:
    """0 or 1 when ``method`` takes just that many plain required arguments
    after ``self``, else None."""
    params = list(inspect.signature(method).parameters.values())[1:]
    plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
    return len(params) if plain and len(params) <= 1 else None


def api(func: str) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Mark a method as serving libvirt's ``func``: xvirt errors become libvirtError.

    A monitoring loop calls ``lookupByID`` and ``info`` for every domain of every
    sample, and forwarding ``*args, **kwargs`` costs three times what the call
    itself does (0.4 us against 0.1 us measured); so methods taking nothing or
    one plain argument get wrappers that forward just that, keywords still
    accepted.
    """

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        arity = _arity(method)
        target: Callable[..., R] = method

        def general(self: S, /, *args: Any, **kwargs: Any) -> R:
            try:
                return target(self, *args, **kwargs)
            except XvirtError as exc:
                raise self._translate(exc, func) from None

        def nothing(self: S) -> R:
            try:
                return target(self)
            except XvirtError as exc:
                raise self._translate(exc, func) from None

        def one(self: S, arg: object = _UNSET, /, *args: Any, **kwargs: Any) -> R:
            if arg is _UNSET or args or kwargs:  # by keyword, or a wrong count: as called
                return general(self, *((() if arg is _UNSET else (arg,)) + args), **kwargs)
            try:
                return target(self, arg)
            except XvirtError as exc:
                raise self._translate(exc, func) from None

        chosen: Callable[..., R] = general if arity is None else (nothing, one)[arity]
        return cast(Callable[Concatenate[S, P], R], functools.wraps(method)(chosen))

    return wrap
