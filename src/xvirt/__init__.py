"""xvirt: monitor and manage the domains of Xen-style hosts, fast and never wrong.

    import xvirt
    with xvirt.open("sim:///default") as conn:
        for dom in conn.list_domains():
            print(dom.id, dom.name, dom.info().state)

Every public name here is in ``__all__`` (tests/test_public_api.py checks it): helpers
are imported under private aliases, and ``dir(xvirt)`` leaves out the internal
submodules (cache, planes, uri...) that the import system binds here once imported.
"""

from collections.abc import Sequence as _Sequence
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from xvirt import errors
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
    Affect,
    ConnStats,
    DomainEvent,
    DomainFailure,
    DomainInfo,
    DomainMetadata,
    DomainSample,
    DomainSettings,
    DomainState,
    EventKind,
    GuestType,
    HostCapabilities,
    HostInfo,
    Identity,
    MetadataElement,
    MetadataKind,
    NodeCpuStats,
    NodeMemoryStats,
    SchedulerParams,
    Survey,
    VcpuInfo,
    VcpuState,
)
from xvirt.planes import Definition, DiskConfig, DomainConfig, NicConfig
from xvirt.stats import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainStats,
    NetStats,
    StatGroup,
    VcpuStats,
)
from xvirt.uri import DEFAULT_URI, default_uri
from xvirt.uri import driver_uri as _uri_driver_uri
from xvirt.uri import open_driver as _open_driver
from xvirt.uri import preload_libvirt_driver as _uri_preload_libvirt_driver
from xvirt.uri import split_cache_option as _split_cache_option

if _TYPE_CHECKING:
    from xvirt import sim, stats  # bound on first use (see __getattr__)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URI",
    "Affect",
    "AuthError",
    "BalloonStats",
    "BlockStats",
    "ConnStats",
    "Connection",
    "ConnectionClosedError",
    "CpuStats",
    "Definition",
    "DiskConfig",
    "Domain",
    "DomainConfig",
    "DomainEvent",
    "DomainFailure",
    "DomainInfo",
    "DomainMetadata",
    "DomainSample",
    "DomainSettings",
    "DomainState",
    "DomainStats",
    "EventKind",
    "EventStream",
    "GuestType",
    "HandleClosedError",
    "HostCapabilities",
    "HostInfo",
    "HostUnreachableError",
    "Identity",
    "InvalidArgumentError",
    "MetadataElement",
    "MetadataKind",
    "NetStats",
    "NicConfig",
    "NoDomainError",
    "NodeCpuStats",
    "NodeMemoryStats",
    "OperationFailedError",
    "ProtocolError",
    "ReadOnlyError",
    "SchedulerParams",
    "StatGroup",
    "Survey",
    "UnsupportedError",
    "VcpuInfo",
    "VcpuState",
    "VcpuStats",
    "XvirtError",
    "__version__",
    "default_uri",
    "errors",
    "open",
    "sim",
    "stats",
]


def open(uri: str | None = None, readonly: bool = False, *,
         auth: _Sequence[_Any] | None = None) -> Connection:
    """Open a connection; ``uri`` defaults to ``$XVIRT_DEFAULT_URI``, else
    ``$LIBVIRT_DEFAULT_URI``, else ``sim:///default``. A plain libvirt URI
    (``test:///default``, ``qemu:///system``) is opened by the libvirt driver, as with
    the ``libvirt:`` prefix.

    ``?cache=off`` on any URI gives 2006 mode: one control-plane request per lookup.
    ``auth``, libvirt's ``[credtypes, callback, cbdata]``, answers the credentials a
    ``libvirt:`` URI asks for (libvirt calls ``callback`` at every connection it opens);
    xvirt's own hosts ask for none."""
    given = default_uri() if uri is None else uri
    target, cache = _split_cache_option(given)
    driver = _open_driver(target, readonly=readonly, auth=auth)
    driver.uri = given
    return Connection(driver, readonly=readonly, cache=cache)


def _driver_uri(uri: str) -> str:
    """For the libvirt face: the one rule that sends a plain libvirt URI (``test:///default``)
    to the libvirt driver (``libvirt:test:///default``), as ``open`` does."""
    return _uri_driver_uri(uri)


def _preload_libvirt_driver() -> None:
    """For the libvirt face (which sees only this package): load the libvirt driver at
    its import rather than at the first open, as ``import libvirt`` loads libvirtmod."""
    _uri_preload_libvirt_driver()


#: Subpackages that are public though ``import xvirt`` does not import them (so they are
#: not in ``__all__``): the conformance kit and the libvirt-python face.
_PUBLIC_SUBPACKAGES = frozenset({"compat", "testing"})


#: Public submodules imported on first use (PEP 562), not by ``import xvirt``: ``sim`` pulls
#: in the whole host model, which the ``xvirt`` command's ``--version`` and ``--help`` and
#: every program on another host would pay at startup for nothing. ``stats`` is in fact
#: bound by the imports at the top, which load it after ``xvirt.model`` (imported before the
#: model, it would find the model half made); it is listed so it never depends on that.
_LAZY_SUBMODULES = frozenset({"sim", "stats"})


def __getattr__(name: str) -> _Any:
    """A lazy public submodule, imported the first time it is used."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """What ``dir(xvirt)`` (and so completion and ``help``) lists: ``__all__`` (loaded or
    not), the module's dunders and the public subpackages once imported; not the internal
    submodules."""
    return sorted({*__all__, *(n for n in globals()
                               if n in _PUBLIC_SUBPACKAGES or n.startswith("__"))})
