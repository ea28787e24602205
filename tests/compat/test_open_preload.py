"""The face's ``open()`` costs what libvirt's does: what a libvirt URI needs (the real
binding and xvirt's libvirt driver) is loaded when the face is imported, as
``import libvirt`` loads libvirt-python's C module, so the first open imports
nothing. Counted in modules here; timed in benchmarks/open_cost.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from xvirt.libvirt_api.binding import real_libvirt

pytest.importorskip("libvirtmod", reason="needs libvirt-python")

PROBE = """
    import json, sys
    import {module} as libvirt
    loaded = set(sys.modules)
    real = sys.modules.get("_xvirt_real_libvirt") or sys.modules["libvirt"]
    conn = libvirt.open("{uri}")
    ids = conn.listDomainsID()
    conn.close()
    print(json.dumps({{
        "face": bool(getattr(libvirt, "__xvirt_face__", False)),
        "libvirt_is_face": bool(getattr(sys.modules["libvirt"], "__xvirt_face__", False)),
        "real_is_real": hasattr(real, "virConnect") and not getattr(real, "__xvirt_face__", 0),
        "driver_loaded": "xvirt.drivers.libvirt" in loaded,
        "imported_by_open": sorted(set(sys.modules) - loaded),
        "ids": ids,
    }}))
"""


def probe(module: str, uri: str, *, compat: bool) -> dict[str, object]:
    code = textwrap.dedent(PROBE.format(module=module, uri=uri))
    prefix = [sys.executable, "-m", "xvirt", "compat", "--"] if compat else []
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return answer


@pytest.mark.parametrize("uri", ["test:///default", "libvirt:test:///default"])
def test_under_xvirt_compat_the_first_open_imports_nothing(uri: str) -> None:
    seen = probe("libvirt", uri, compat=True)
    assert seen["face"] and seen["libvirt_is_face"]
    assert seen["real_is_real"]  # the shim, half-imported, was never taken for the binding
    assert seen["driver_loaded"]
    assert seen["imported_by_open"] == []
    assert seen["ids"] == [1]


def test_imported_directly_the_face_leaves_libvirt_to_the_real_binding() -> None:
    seen = probe("xvirt.compat.libvirt", "test:///default", compat=False)
    assert seen["face"] and not seen["libvirt_is_face"] and seen["real_is_real"]
    assert seen["driver_loaded"] and seen["imported_by_open"] == []


def test_preloading_twice_is_harmless() -> None:
    import xvirt.compat.libvirt as face

    binding = real_libvirt()
    face._preload()
    assert real_libvirt() is binding
    assert "xvirt.drivers.libvirt" in sys.modules
