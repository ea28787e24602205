"""xvirt: monitor and manage the domains of Xen-style hosts, fast and never wrong.

    import xvirt
    with xvirt.open("sim:///default") as conn:
        for dom in conn.list_domains():
            print(dom.id, dom.name, dom.info().state)
"""

from __future__ import annotations

from xvirt import errors, sim
from xvirt.connection import Connection, Domain, EventStream
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
from xvirt.model import (
    ConnStats,
    DomainEvent,
    DomainFailure,
    DomainInfo,
    DomainSample,
    DomainState,
    EventKind,
    HostInfo,
    Identity,
    Survey,
)
from xvirt.uri import DEFAULT_URI, default_uri, open_driver, split_cache_option

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URI",
    "AuthError",
    "ConnStats",
    "Connection",
    "ConnectionClosedError",
    "Domain",
    "DomainEvent",
    "DomainFailure",
    "DomainInfo",
    "DomainSample",
    "DomainState",
    "EventKind",
    "EventStream",
    "HandleClosedError",
    "HostInfo",
    "HostUnreachableError",
    "Identity",
    "InvalidArgumentError",
    "NoDomainError",
    "OperationFailedError",
    "ProtocolError",
    "ReadOnlyError",
    "Survey",
    "UnsupportedError",
    "XvirtError",
    "__version__",
    "default_uri",
    "errors",
    "open",
    "sim",
]


def open(uri: str | None = None, readonly: bool = False) -> Connection:
    """Open a connection; ``uri`` defaults to ``$XVIRT_DEFAULT_URI`` or ``sim:///default``.

    ``?cache=off`` on any URI gives 2006 mode: one control-plane request per lookup."""
    given = default_uri() if uri is None else uri
    target, cache = split_cache_option(given)
    driver = open_driver(target, readonly=readonly)
    driver.uri = given
    return Connection(driver, readonly=readonly, cache=cache)
