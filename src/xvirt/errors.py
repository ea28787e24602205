"""One error hierarchy for everything xvirt raises.

Every error carries what failed (uri, domid, name, uuid, op) as attributes, so
callers can react without parsing messages, and the message names it too, so a
person reading a one-line CLI error knows what went wrong. Errors of the
libraries below (sockets, HTTP, libvirt) are translated into these at the
driver boundary and never leak.
"""

__all__ = [
    "AuthError",
    "ConnectionClosedError",
    "HandleClosedError",
    "HostUnreachableError",
    "InvalidArgumentError",
    "NoDomainError",
    "OperationFailedError",
    "ProtocolError",
    "ReadOnlyError",
    "UnsupportedError",
    "XvirtError",
]


class XvirtError(Exception):
    """Base of every xvirt error; the keyword fields say what failed."""

    def __init__(
        self,
        message: str,
        *,
        uri: str | None = None,
        domid: int | None = None,
        name: str | None = None,
        uuid: str | None = None,
        op: str | None = None,
        libvirt_code: int | None = None,
        libvirt_domain: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.uri = uri
        self.domid = domid
        self.name = name
        self.uuid = uuid
        self.op = op
        self.libvirt_code = libvirt_code  # kept when translated from a libvirtError
        self.libvirt_domain = libvirt_domain  # ... with the part of libvirt that said it

    def context(self) -> dict[str, str | int]:
        """The fields that are set, for logs and machine-readable output."""
        fields: dict[str, str | int | None] = {
            "op": self.op,
            "domid": self.domid,
            "name": self.name,
            "uuid": self.uuid,
            "uri": self.uri,
            "libvirt_code": self.libvirt_code,
            "libvirt_domain": self.libvirt_domain,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        ctx = self.context()
        if not ctx:
            return self.message
        detail = ", ".join(f"{k}={v!r}" for k, v in ctx.items())
        return f"{self.message} ({detail})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword fields across pickling (multiprocessing, logging).
        return (_rebuild, (type(self), self.message, self.context()))


def _rebuild(cls: type[XvirtError], message: str, ctx: dict[str, object]) -> XvirtError:
    return cls(message, **ctx)  # type: ignore[arg-type]


class NoDomainError(XvirtError):
    """No live domain matches (C1/C3): never a guess, never another domain."""


class ReadOnlyError(XvirtError):
    """A mutating call on a read-only connection; raised before the driver is reached."""


class HostUnreachableError(XvirtError):
    """The host (or its management daemon) cannot be reached within the timeout."""


class ConnectionClosedError(XvirtError):
    """The connection was closed by the caller."""


class HandleClosedError(XvirtError):
    """A Domain handle was used after its close()."""


class ProtocolError(XvirtError):
    """A peer sent something malformed; the message says where and what was expected."""


class InvalidArgumentError(XvirtError):
    """The caller passed a value that can never be valid (bad ID, UUID, name, image)."""


class AuthError(XvirtError):
    """The peer refused our credentials (missing or wrong token)."""


class UnsupportedError(XvirtError):
    """The driver cannot serve this call."""


class OperationFailedError(XvirtError):
    """The host refused a valid request in its current state (name taken, wrong state...)."""
