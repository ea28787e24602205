"""libvirtError -> xvirt.errors, at the driver boundary, with libvirt's code kept.

The codes are libvirt's stable ABI values (virErrorNumber), named from
:mod:`xvirt.libvirt_api.constants`, so this module needs no binding to be
imported and can be tested on its own.
"""

from __future__ import annotations

from typing import Protocol

from xvirt.errors import (
    AuthError,
    HostUnreachableError,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ReadOnlyError,
    UnsupportedError,
    XvirtError,
)
from xvirt.libvirt_api.constants import (
    VIR_ERR_ARGUMENT_UNSUPPORTED,
    VIR_ERR_AUTH_CANCELLED,
    VIR_ERR_AUTH_FAILED,
    VIR_ERR_AUTH_UNAVAILABLE,
    VIR_ERR_INVALID_ARG,
    VIR_ERR_INVALID_CONN,
    VIR_ERR_NO_CONNECT,
    VIR_ERR_NO_DOMAIN,
    VIR_ERR_NO_SUPPORT,
    VIR_ERR_OPERATION_DENIED,
    VIR_ERR_OPERATION_UNSUPPORTED,
    VIR_ERR_RPC,
    VIR_ERR_SYSTEM_ERROR,
)

__all__ = ["LibvirtErrorLike", "translate"]

_BY_CODE: dict[int, type[XvirtError]] = {
    VIR_ERR_NO_DOMAIN: NoDomainError,
    VIR_ERR_INVALID_ARG: InvalidArgumentError,
    VIR_ERR_NO_SUPPORT: UnsupportedError,
    VIR_ERR_OPERATION_UNSUPPORTED: UnsupportedError,
    VIR_ERR_ARGUMENT_UNSUPPORTED: UnsupportedError,
    VIR_ERR_OPERATION_DENIED: ReadOnlyError,
    VIR_ERR_AUTH_FAILED: AuthError,
    VIR_ERR_AUTH_CANCELLED: AuthError,
    VIR_ERR_AUTH_UNAVAILABLE: AuthError,
    VIR_ERR_SYSTEM_ERROR: HostUnreachableError,
    VIR_ERR_RPC: HostUnreachableError,
    VIR_ERR_NO_CONNECT: HostUnreachableError,
    VIR_ERR_INVALID_CONN: HostUnreachableError,
}


class LibvirtErrorLike(Protocol):
    def get_error_code(self) -> int | None: ...

    def get_error_message(self) -> str | None: ...

    def get_error_domain(self) -> int | None: ...


def translate(
    exc: LibvirtErrorLike,
    *,
    uri: str,
    op: str | None = None,
    domid: int | None = None,
    name: str | None = None,
    uuid: str | None = None,
) -> XvirtError:
    """The xvirt error for a libvirtError; anything unlisted is an operation
    the host refused (OperationFailedError), never an untranslated error."""
    code = exc.get_error_code()
    message = exc.get_error_message() or f"libvirt error {code}"
    cls = _BY_CODE.get(code if code is not None else -1, OperationFailedError)
    return cls(f"libvirt: {message}", uri=uri, op=op, domid=domid, name=name, uuid=uuid,
               libvirt_code=code, libvirt_domain=exc.get_error_domain())
