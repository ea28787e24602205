"""The layers of ``src/xvirt``, stated once: ``LAYERS`` below, checked against every import.

Each layer names the modules it holds and the layers it may import; a module may
always import its own layer. Imports inside functions and under
``TYPE_CHECKING`` count like any other: a lazy import is still an arrow.
docs/architecture.md shows this same table (``test_the_architecture_doc_shows_this_table``
keeps the two equal), so a reader sees the rule and CI enforces it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "xvirt"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]  # dotted prefixes: "xvirt.wire" holds xvirt.wire and below
    may_import: tuple[str, ...]  # layer names
    job: str


# Top to bottom. "vocabulary" is what every layer speaks: errors, values, time.
LAYERS: tuple[Layer, ...] = (
    Layer("entry point", ("xvirt.__main__",), ("tools",), "python -m xvirt"),
    Layer("tools", ("xvirt.tools",), ("public API", "compat", "daemon", "vocabulary"),
          "the xvirt command: list, dominfo, top, exporter, bench, daemon, compat"),
    Layer("testing", ("xvirt.testing",),
          ("public API", "compat", "daemon", "registry", "lookup", "drivers",
           "driver interface", "libvirt binding", "wire", "host", "vocabulary"),
          "conformance kit, real-server harnesses, fault injection"),
    Layer("compat", ("xvirt.compat",), ("public API", "libvirt binding", "vocabulary"),
          "the libvirt-python face"),
    Layer("public API", ("xvirt", "xvirt.connection"),
          ("registry", "lookup", "driver interface", "vocabulary"),
          "open(), Connection, Domain"),
    Layer("registry", ("xvirt.uri", "xvirt.sim"),
          ("drivers", "driver interface", "host", "vocabulary"),
          "URI -> driver; the embedded hosts by name (xvirt.sim)"),
    Layer("lookup", ("xvirt.lookup", "xvirt.cache", "xvirt.direct"),
          ("driver interface", "vocabulary"),
          "the Lookup protocol, the identity cache and 2006 mode"),
    Layer("drivers", ("xvirt.drivers",),
          ("driver interface", "libvirt binding", "wire", "host", "vocabulary"),
          "embedded host, host daemon, libvirt"),
    Layer("driver interface", ("xvirt.drivers.base",), ("vocabulary",),
          "what every driver answers, and its counters"),
    Layer("daemon", ("xvirt.daemon",), ("host", "wire", "vocabulary"),
          "the host daemon: control plane, table writer, fast-channel server, store"),
    Layer("libvirt binding", ("xvirt.libvirt_api",), ("vocabulary",),
          "the real libvirt-python binding and libvirt's numbers"),
    Layer("wire", ("xvirt.wire",), ("vocabulary",),
          "what the daemon and its clients both speak: codecs, table layout and reader, "
          "fast-channel client"),
    Layer("host", ("xvirt.host",), ("vocabulary",), "the Xen-semantics host model"),
    Layer("vocabulary",
          ("xvirt.errors", "xvirt.model", "xvirt.stats", "xvirt.planes", "xvirt.clock",
           "xvirt.hotpath"),
          (), "errors, value types, what the planes say, injected time, hot-path tricks"),
)

#: Modules the tools may import beyond the public API, and why.
TOOL_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    # The 2006 patch's naive ID cache is rebuilt on a bare driver, beside xvirt's cache.
    "xvirt.tools.bench_run": ("xvirt.uri", "xvirt.drivers.base"),
    # `xvirt daemon` serves a host: it names the host's ID policies.
    "xvirt.tools.daemon_cmd": ("xvirt.host.ids",),
    # The exporter's state metric speaks libvirt's state codes, as the face does; its
    # scrapes hold the garbage collector off as the daemon's statistics answer does.
    "xvirt.tools.exporter_metrics": ("xvirt.libvirt_api.states", "xvirt.hotpath"),
}
#: The public API the tools see: `import xvirt` (the package alone, first) and the
#: modules it documents (each with what lies below it).
TOOLS_SEE = ("xvirt", "xvirt.errors", "xvirt.stats", "xvirt.sim", "xvirt.clock",
             "xvirt.compat", "xvirt.daemon")
#: Halves the daemon must not hold: a server never imports its own clients.
CLIENT_SIDE = ("xvirt.wire.table_reader", "xvirt.wire.fastchannel_client")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _is_module(name: str) -> bool:
    return name in MODULES


def imports_of(path: Path, text: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every xvirt module ``path`` (or ``text`` standing in for
    it) imports, wherever it does."""
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "xvirt":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "xvirt":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if _is_module(sub) else base


def layer_of(module: str) -> Layer:
    """The layer whose longest prefix holds ``module``."""
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for prefix in layer.modules:
            if module == prefix or module.startswith(prefix + "."):
                if prefix == "xvirt" and module != "xvirt":
                    continue  # the package itself is the public API, not its contents
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), layer)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[1]


def violations(module: str, path: Path, text: str | None = None) -> list[str]:
    """Every import of ``module`` that goes against ``LAYERS``, as readable lines."""
    mine = layer_of(module)
    found = []
    for line, target in imports_of(path, text):
        theirs = layer_of(target)
        where = f"{path.relative_to(SRC.parent)}:{line}: {module} imports {target}"
        if mine.name == "tools":
            allowed = target == "xvirt" or any(
                target == t or target.startswith(t + ".")
                for t in (*TOOLS_SEE[1:], "xvirt.tools", *TOOL_EXCEPTIONS.get(module, ())))
            if not allowed:
                found.append(f"{where} (tools see the public API only)")
            continue
        if mine.name == "daemon" and target in CLIENT_SIDE:
            found.append(f"{where} (a server never imports its clients)")
            continue
        if theirs is not mine and theirs.name not in mine.may_import:
            found.append(f"{where} ({mine.name} -> {theirs.name} is against the layers)")
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_import_goes_against_the_layers() -> None:
    found = [v for module, path in MODULES.items() for v in violations(module, path)]
    assert not found, "\n".join(found)


def test_the_rules_name_real_layers_and_run_downwards() -> None:
    names = [layer.name for layer in LAYERS]
    assert len(set(names)) == len(names)
    for i, layer in enumerate(LAYERS):
        for other in layer.may_import:
            assert other in names, (layer.name, other)
            assert names.index(other) > i, f"{layer.name} may import {other}, listed above it"


@pytest.mark.parametrize(("module", "source", "why"), [
    ("xvirt.drivers.xend", "from xvirt.daemon import control\n", "drivers -> daemon"),
    ("xvirt.drivers.libvirt", "from xvirt.compat import libvirt\n", "drivers -> compat"),
    ("xvirt.host.hypervisor", "import xvirt.drivers.embedded\n", "host -> drivers"),
    ("xvirt.host.images", "from xvirt.wire.fastchannel_client import FastChannelClient\n",
     "host -> wire"),
    ("xvirt.daemon.process", "from xvirt.wire.table_reader import TableReader\n",
     "a server never imports its clients"),
    ("xvirt.tools.top", "from xvirt.cache import IdentityCache\n", "tools see the public API"),
    ("xvirt.cache", "def f():\n    from xvirt.tools import cli\n", "lookup -> tools"),
    ("xvirt.connection", "from xvirt.testing import SimTarget\n", "public API -> testing"),
    ("xvirt.wire.sxp", "from . import table_reader\nfrom ..host import ids\n", "wire -> host"),
])
def test_a_forbidden_import_is_caught(module: str, source: str, why: str) -> None:
    """The checker itself: each of these arrows, added to a real module's text, is
    reported (and the module's real imports are not)."""
    real = MODULES[module]
    assert violations(module, real) == []
    assert violations(module, real, real.read_text() + "\n\n" + source), why


def render() -> str:
    """The table as docs/architecture.md shows it."""
    lines = ["| layer | modules | may import | job |", "|---|---|---|---|"]
    for layer in LAYERS:
        lines.append(f"| {layer.name} | {', '.join(f'`{m}`' for m in layer.modules)} | "
                     f"{', '.join(layer.may_import) or '(nothing)'} | {layer.job} |")
    return "\n".join(lines)


def test_the_architecture_doc_shows_this_table() -> None:
    assert render() in DOC.read_text(), (
        "docs/architecture.md must hold the layer table exactly as tests/test_layers.py "
        "renders it:\n" + render())
