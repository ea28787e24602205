"""The public surface is a promise: this pins it."""

from __future__ import annotations

import xvirt
import xvirt.errors


def test_all_is_pinned() -> None:
    assert sorted(xvirt.__all__) == sorted([
        "DEFAULT_URI", "AuthError", "ConnStats", "Connection", "ConnectionClosedError",
        "Domain", "DomainEvent", "DomainFailure", "DomainInfo", "DomainSample", "DomainState",
        "EventKind", "Survey",
        "EventStream",
        "HandleClosedError", "HostInfo", "HostUnreachableError", "Identity",
        "InvalidArgumentError", "NoDomainError", "OperationFailedError", "ProtocolError",
        "ReadOnlyError", "UnsupportedError", "XvirtError", "__version__", "default_uri", "errors",
        "open",
        "sim",
    ])
    for name in xvirt.__all__:
        assert hasattr(xvirt, name), name


def test_design_names_exist() -> None:
    for name in ("list_domain_ids", "list_domains", "sample", "survey", "lookup_by_id",
                 "lookup_by_name",
                 "lookup_by_uuid", "host_info", "stats", "events", "close", "restore",
                 "__enter__", "__exit__"):
        assert callable(getattr(xvirt.Connection, name)), name
    for name in ("info", "pause", "resume", "shutdown", "reboot", "destroy", "save", "close"):
        assert callable(getattr(xvirt.Domain, name)), name
    for name in ("uuid", "name", "id"):
        assert isinstance(getattr(xvirt.Domain, name), property), name
    assert set(xvirt.ConnStats.__dataclass_fields__) >= {
        "control_requests", "data_calls", "cache_hits", "cache_misses", "evictions", "cache_size"}
    assert set(xvirt.DomainInfo._fields) == {
        "state", "memory_kib", "max_memory_kib", "vcpus", "cpu_time_ns"}
    for name in ("Host", "get", "names"):
        assert hasattr(xvirt.sim, name)


def test_error_tree() -> None:
    for name in ("NoDomainError", "ReadOnlyError", "HostUnreachableError",
                 "ConnectionClosedError", "ProtocolError", "InvalidArgumentError", "AuthError",
                 "UnsupportedError"):
        cls = getattr(xvirt.errors, name)
        assert issubclass(cls, xvirt.errors.XvirtError)
        assert getattr(xvirt, name) is cls
