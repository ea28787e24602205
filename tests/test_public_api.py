"""The public surface is a promise: this pins it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import xvirt
import xvirt.errors
import xvirt.sim
from xvirt.host.hypervisor import HostModel


def test_all_is_pinned() -> None:
    assert sorted(xvirt.__all__) == sorted([
        "DEFAULT_URI", "AuthError", "ConnStats", "Connection", "ConnectionClosedError",
        "Domain", "DomainEvent", "DomainFailure", "DomainInfo", "DomainSample", "DomainState",
        "EventKind", "Survey",
        "EventStream",
        # what Connection.domain_stats(), Domain.stats() and sample(groups=) give
        "BalloonStats", "BlockStats", "CpuStats", "DomainStats", "NetStats", "StatGroup",
        "VcpuStats",
        # what the Xen-host calls give (settings, scheduler, capabilities, node figures)
        "Affect", "DomainMetadata", "DomainSettings", "GuestType", "HostCapabilities",
        "MetadataElement", "MetadataKind", "NodeCpuStats", "NodeMemoryStats",
        "SchedulerParams", "VcpuInfo", "VcpuState",
        "DiskConfig", "DomainConfig", "NicConfig",  # what Domain.config() returns
        "Definition",  # what Connection.list_defined() returns
        "HandleClosedError", "HostInfo", "HostUnreachableError", "Identity",
        "InvalidArgumentError", "NoDomainError", "OperationFailedError", "ProtocolError",
        "ReadOnlyError", "UnsupportedError", "XvirtError", "__version__", "default_uri", "errors",
        "open",
        "sim",
        "stats",
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


# -- every public name is a promise, and every promise is kept ---------------------------------

#: The modules users import by name; each pins its surface in ``__all__``.
PUBLIC_MODULES = ("xvirt", "xvirt.errors", "xvirt.sim", "xvirt.stats", "xvirt.testing")

#: Submodules that are public themselves, so ``dir()`` of their package may list them.
#: ``errors`` and ``sim`` are also in ``xvirt.__all__``; ``compat`` (the libvirt-python
#: face) and ``testing`` (the conformance kit) are not, because ``import xvirt`` does not
#: import them (``testing`` needs hypothesis). Every other submodule is internal, and
#: the testing kit's helper modules are imported by their full name.
PUBLIC_SUBMODULES: dict[str, frozenset[str]] = {
    "xvirt": frozenset({"compat", "errors", "sim", "stats", "testing"}),
}


def _isort_key(name: str) -> tuple[int, list[int | str]]:
    """The order ruff's RUF022 keeps ``__all__`` in: SCREAMING_SNAKE_CASE constants,
    then CamelCase classes, then everything else, each in natural order."""
    category = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return category, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _import_every_submodule(package: ModuleType) -> None:
    """Import what a package holds, so every submodule attribute the import system can
    bind on it is bound (a program that used them would see them)."""
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "__main__":
            continue
        try:
            importlib.import_module(f"{package.__name__}.{info.name}")
        except ModuleNotFoundError as exc:  # an optional third-party dependency
            if (exc.name or "").split(".")[0] == "xvirt":
                raise


def _is_submodule(module: ModuleType, name: str) -> bool:
    value = getattr(module, name)
    return isinstance(value, ModuleType) and value.__name__ == f"{module.__name__}.{name}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_complete_and_exists(module_name: str) -> None:
    """Both ways, as httpx's test_exported_members: every name in ``__all__`` exists,
    ``__all__`` is sorted (isort-style) without duplicates, and every public name of
    the module (not starting with ``_``) is in ``__all__``: helpers are imported under
    private aliases, ``from __future__ import annotations`` is not used (it binds
    ``annotations``). The one exception: an attribute the import system binds for a
    submodule once it is imported. ``dir()`` must not list those either, unless the
    submodule is public itself (PUBLIC_SUBMODULES): a package hides the rest with a
    module ``__dir__``."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__"):
        _import_every_submodule(module)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{module_name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{module_name}.__all__ has duplicates"
    assert [n for n in exported if not hasattr(module, n)] == [], "exported but missing"
    public = {n for n in vars(module) if not n.startswith("_")}
    leaked = sorted(n for n in public - set(exported) if not _is_submodule(module, n))
    assert leaked == [], f"public in {module_name} but not in __all__"
    allowed = set(exported) | PUBLIC_SUBMODULES.get(module_name, frozenset())
    listed = {n for n in dir(module) if not n.startswith("_")}
    assert sorted(listed - allowed) == [], f"dir({module_name}) lists internal names"
    assert set(exported) <= set(dir(module))


# -- xvirt.sim.Host is a facade: DESIGN.md's methods and the documented test hooks ---------------

#: DESIGN.md's ``Host`` API; the read-only facts tests and tools use; the fault and
#: activity hooks tests drive the host with. Nothing else of the host model.
SIM_HOST_NAMES = frozenset({
    # DESIGN.md
    "name", "uri", "create", "domains", "destroy", "pause", "resume", "shutdown", "reboot",
    "migrate", "save", "restore", "rename", "restart_daemon", "reboot_host", "journal", "close",
    # managed domains (DESIGN.md: xend's xm new/start/delete)
    "define", "start", "undefine", "defined_domains",
    # read-only facts
    "boot_id", "closed", "control_latency_ms", "domain", "generation", "id_policy", "image_dir",
    "images", "max_domid",
    # test hooks
    "batch", "crash", "set_blocked", "stall", "unstall",
})


def test_sim_host_shows_only_its_documented_names() -> None:
    public = {n for n in dir(xvirt.sim.Host) if not n.startswith("_")}
    assert public == SIM_HOST_NAMES
    for name in public:  # each says what it does and why it is there
        assert inspect.getdoc(getattr(xvirt.sim.Host, name)), name
    for context in ("__enter__", "__exit__"):
        assert callable(getattr(xvirt.sim.Host, context))


def test_sim_host_keeps_the_model_private(make_sim_host: Callable[..., xvirt.sim.Host]) -> None:
    """The embedded driver and tests of model internals reach it as ``sim._model_of``."""
    with make_sim_host() as host:
        model = xvirt.sim._model_of(host)
        assert isinstance(model, HostModel)
        assert model.name == host.name and model.boot_id == host.boot_id
        properties = [n for n in SIM_HOST_NAMES
                      if isinstance(inspect.getattr_static(xvirt.sim.Host, n), property)]
        assert all(getattr(host, n) is not model for n in properties)


# -- every type a public method returns is exported ----------------------------------------------

def _classes_in(hint: object) -> Iterator[type]:
    """The classes an annotation names, through list/tuple/Iterator/Optional/... ."""
    if isinstance(hint, (list, tuple)):  # Callable's argument list
        for item in hint:
            yield from _classes_in(item)
        return
    origin = typing.get_origin(hint)
    if origin is None:
        if isinstance(hint, type):
            yield hint
        return
    if isinstance(origin, type):
        yield origin
    for arg in typing.get_args(hint):
        yield from _classes_in(arg)


def _returned_types(cls: type) -> Iterator[tuple[str, type]]:
    """``(member, class)`` for every xvirt class a public method or property of ``cls``
    returns, or a public field of it (a dataclass or named tuple) holds."""
    hints: dict[str, object] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name)
        func = raw.fget if isinstance(raw, property) else getattr(raw, "__func__", raw)
        if inspect.isfunction(func):
            hint = typing.get_type_hints(func).get("return")
            if hint is not None:
                hints[name] = hint
    for name, hint in typing.get_type_hints(cls).items():
        if not name.startswith("_"):
            hints.setdefault(name, hint)
    for name, hint in hints.items():
        for found in _classes_in(hint):
            if found.__module__.split(".")[0] == "xvirt":
                yield name, found


def test_every_type_a_public_method_returns_is_exported() -> None:
    """Walk the public classes and what they return, transitively: a type users get
    back from ``xvirt`` is exported by ``xvirt``; from ``xvirt.sim``, by one of them; from
    the testing kit, by one of the three. A user can then name it (``isinstance``,
    annotations) without importing an internal module."""
    import xvirt.testing

    scopes = [xvirt, xvirt.sim, xvirt.testing]
    missing: list[str] = []
    for depth, module in enumerate(scopes):
        exported = {id(getattr(m, n)) for m in scopes[:depth + 1] for n in m.__all__}
        todo = [v for n in module.__all__ if isinstance(v := getattr(module, n), type)]
        seen: set[type] = set()
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            for member, returned in _returned_types(cls):
                if id(returned) not in exported:
                    missing.append(f"{module.__name__}: {cls.__name__}.{member} -> "
                                   f"{returned.__module__}.{returned.__qualname__}")
                todo.append(returned)
    assert missing == []
