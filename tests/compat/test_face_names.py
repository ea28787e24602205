"""Every public name of the installed libvirt-python binding exists in the face.

A script written for libvirt-python names constants, module functions and classes at
module level, and calls methods of ``virConnect`` and ``virDomain``: any name the face
lacks is an ``AttributeError`` before the script has done anything. So each name the
real binding defines (constants with libvirt's values, functions callable, classes as
classes, and the typing names ``_T``, ``_EventCB``... that ``libvirt_qemu`` and
``libvirtaio`` use at import) must be in ``xvirt.compat.libvirt``; and each public method
of the real ``virConnect`` and ``virDomain`` must resolve, as a callable, on the face's
connection and domain objects, on an embedded host and on libvirt's test driver. The
companion modules must import under ``xvirt compat`` and bind the face.

The reference is the binding installed beside xvirt (``real_libvirt()``), not a list
written here: a newer libvirt-python raises the bar by itself.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.libvirt_api.binding import real_libvirt

REAL: Any = real_libvirt()
#: How many missing names a failure lists (the count is always given).
SHOWN = 40


def defined_names(module: types.ModuleType) -> list[str]:
    """The names ``module`` defines itself: everything but dunders, modules it imports
    (``libvirtmod``) and what it imports from ``typing`` and ``types`` (``Any``,
    ``TracebackType``...). Its own private aliases (``_T``, ``_EventCB``) stay: the
    companion modules use them."""
    names = []
    for name in dir(module):
        if name.startswith("__"):
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            continue
        if getattr(typing, name, None) is value or getattr(types, name, None) is value:
            continue
        names.append(name)
    return names


NAMES = defined_names(REAL)
CONSTANTS = [n for n in NAMES if n.startswith("VIR_")]
FUNCTIONS = [n for n in NAMES if inspect.isfunction(getattr(REAL, n))]
CLASSES = [n for n in NAMES if inspect.isclass(getattr(REAL, n))]
ALIASES = [n for n in NAMES if n not in (*CONSTANTS, *FUNCTIONS, *CLASSES)]


def public_methods(cls: type) -> list[str]:
    return [n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))]


def lookup(owner: object, name: str) -> tuple[bool, object]:
    """(found, value): ``getattr`` as a script does it; any exception means not found
    (the face must not raise on lookup, only when called)."""
    try:
        return True, getattr(owner, name)
    except Exception as exc:
        return False, exc


def callable_at(owner: object, name: str) -> bool:
    found, value = lookup(owner, name)
    return found and callable(value)


def class_at(owner: object, name: str) -> bool:
    found, value = lookup(owner, name)
    return found and inspect.isclass(value)


def report(what: str, bad: list[str]) -> str:
    return f"{len(bad)} {what}: {', '.join(bad[:SHOWN])}{' ...' if len(bad) > SHOWN else ''}"


def test_the_reference_is_the_whole_binding() -> None:
    """The sets are libvirt-python 9.0's (1,194 constants), not an empty or partial read."""
    assert not inspect.getattr_static(REAL, "__xvirt_face__", False)
    assert len(CONSTANTS) >= 1194 and "VIR_IP_ADDR_TYPE_IPV4" in CONSTANTS
    assert {"open", "openReadOnly", "openAuth", "virEventRegisterImpl", "virEventAddHandle",
            "registerErrorHandler"} <= set(FUNCTIONS)
    assert {"virConnect", "virDomain", "virNetwork", "virStoragePool", "virStorageVol",
            "virStream", "virDomainSnapshot", "virSecret", "libvirtError"} <= set(CLASSES)
    assert {"_T", "_EventCB", "_TimerCB", "_DomainCB"} <= set(ALIASES)
    assert not {"Any", "TracebackType", "libvirtmod", "overload"} & set(NAMES)
    assert len(public_methods(REAL.virConnect)) > 100
    assert len(public_methods(REAL.virDomain)) > 150


def test_every_constant_has_libvirts_value() -> None:
    bad = []
    for name in CONSTANTS:
        found, value = lookup(face, name)
        want = getattr(REAL, name)
        if not found or type(value) is not type(want) or value != want:
            bad.append(name)
    assert not bad, report(f"of {len(CONSTANTS)} constants missing or with another value", bad)


def test_every_module_function_is_callable() -> None:
    bad = [name for name in FUNCTIONS if not callable_at(face, name)]
    assert not bad, report(f"of {len(FUNCTIONS)} module functions missing", bad)


def test_every_class_is_a_class() -> None:
    """A script subclasses them, names them in isinstance and except clauses."""
    bad = [name for name in CLASSES if not class_at(face, name)]
    assert not bad, report(f"of {len(CLASSES)} classes missing or not classes", bad)
    assert issubclass(face.libvirtError, Exception)


def test_the_typing_names_the_companions_use() -> None:
    """``libvirt_qemu`` reads ``libvirt._T`` and ``libvirtaio`` ``libvirt._EventCB`` and
    ``_TimerCB`` at import: each private alias exists, as the same kind of thing."""
    bad = []
    for name in ALIASES:
        found, value = lookup(face, name)
        want = getattr(REAL, name)
        if not found or type(value) is not type(want) or typing.get_origin(
                value) is not typing.get_origin(want) or len(typing.get_args(value)) != len(
                typing.get_args(want)):
            bad.append(name)
    assert not bad, report(f"of {len(ALIASES)} typing names missing or of another kind", bad)


# -- methods, on the objects a script holds -------------------------------------------------


@pytest.fixture(params=["sim", "libvirt:test:///default"])
def opened(request: pytest.FixtureRequest, make_sim_host: Callable[..., xvirt.sim.Host]
           ) -> Iterator[tuple[face.virConnect, face.virDomain]]:
    """A face connection and one of its domains: an embedded host's Domain-0, or the
    test driver's 'test' through xvirt's libvirt driver."""
    if request.param == "sim":
        conn = face.open(make_sim_host().uri)
        dom = conn.lookupByID(0)
    else:
        conn = face.open(request.param)
        dom = conn.lookupByName("test")
    try:
        yield conn, dom
    finally:
        conn.close()


def missing_methods(obj: object, reference: type) -> list[str]:
    return [name for name in public_methods(reference) if not callable_at(obj, name)]


def test_every_virConnect_method_resolves(
        opened: tuple[face.virConnect, face.virDomain]) -> None:
    conn, _ = opened
    assert isinstance(conn, face.virConnect)
    bad = missing_methods(conn, REAL.virConnect)
    assert not bad, report("virConnect methods missing", bad)


def test_every_virDomain_method_resolves(
        opened: tuple[face.virConnect, face.virDomain]) -> None:
    _, dom = opened
    assert isinstance(dom, face.virDomain)
    bad = missing_methods(dom, REAL.virDomain)
    assert not bad, report("virDomain methods missing", bad)


# -- the companion modules, under `xvirt compat` ----------------------------------------------


@pytest.mark.parametrize("module", ["libvirt_qemu", "libvirt_lxc", "libvirtaio"])
def test_a_companion_module_imports_under_the_face(module: str, tmp_path: Any) -> None:
    """Imported as a script imports it, it binds the face (its ``libvirt`` is the
    script's), not the real binding."""
    code = f"import {module}, libvirt; print({module}.libvirt is libvirt, libvirt.__name__)"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIBVIRT_DEFAULT_URI", "XVIRT_COMPAT_URI")}
    done = subprocess.run([sys.executable, "-m", "xvirt", "compat", "--", "python", "-c", code],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
                          check=False)
    assert (done.returncode, done.stdout) == (0, "True xvirt.compat.libvirt\n"), \
        done.stderr[-3000:]
