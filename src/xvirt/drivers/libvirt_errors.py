"""libvirtError -> xvirt.errors, at the driver boundary, with libvirt's code kept.

The codes are libvirt's stable ABI values (virErrorNumber), so this module
needs no binding to be imported and can be tested on its own.
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

__all__ = ["LibvirtErrorLike", "translate"]

NO_DOMAIN = 42
INVALID_ARG = 8
NO_SUPPORT = 3
OPERATION_DENIED = 29
AUTH_FAILED, AUTH_CANCELLED, AUTH_UNAVAILABLE = 45, 79, 94
SYSTEM_ERROR, RPC, NO_CONNECT, INVALID_CONN = 38, 39, 5, 6
OPERATION_UNSUPPORTED, ARGUMENT_UNSUPPORTED = 84, 74


_BY_CODE: dict[int, type[XvirtError]] = {
    NO_DOMAIN: NoDomainError,
    INVALID_ARG: InvalidArgumentError,
    NO_SUPPORT: UnsupportedError,
    OPERATION_UNSUPPORTED: UnsupportedError,
    ARGUMENT_UNSUPPORTED: UnsupportedError,
    OPERATION_DENIED: ReadOnlyError,
    AUTH_FAILED: AuthError,
    AUTH_CANCELLED: AuthError,
    AUTH_UNAVAILABLE: AuthError,
    SYSTEM_ERROR: HostUnreachableError,
    RPC: HostUnreachableError,
    NO_CONNECT: HostUnreachableError,
    INVALID_CONN: HostUnreachableError,
}


class LibvirtErrorLike(Protocol):
    def get_error_code(self) -> int | None: ...

    def get_error_message(self) -> str | None: ...


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
               libvirt_code=code)
