"""real_libvirt(): the real binding, also where ``import libvirt`` is the face."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

import xvirt.compat.libvirt as face
from xvirt.compat import SHIM_DIR, real_libvirt
from xvirt.errors import UnsupportedError
from xvirt.libvirt_api import binding
from xvirt.tools.compat_cmd import compat_environment


def test_in_a_plain_process_it_is_the_imported_binding() -> None:
    import libvirt

    assert real_libvirt() is libvirt
    assert not binding.is_face(libvirt) and binding.is_face(face)


def test_when_libvirt_is_the_face_the_binding_is_loaded_aside(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", face)
    monkeypatch.delitem(sys.modules, binding.PRIVATE_NAME, raising=False)
    monkeypatch.setattr(sys, "path", [SHIM_DIR, *sys.path])
    real = real_libvirt()
    assert isinstance(real, ModuleType) and not binding.is_face(real)
    assert sys.modules["libvirt"] is face  # the script keeps the face
    assert real_libvirt() is real  # loaded once
    assert real.getVersion() == 9_000_000


def test_a_missing_binding_is_an_unsupported_error(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: object) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", face)
    monkeypatch.delitem(sys.modules, binding.PRIVATE_NAME, raising=False)
    monkeypatch.setattr(sys, "path", [SHIM_DIR, str(tmp_path)])
    with pytest.raises(UnsupportedError, match="libvirt-python binding is not installed"):
        real_libvirt()


def _under_shim(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=compat_environment({}, None))


def test_under_the_shim_import_libvirt_is_the_face_and_the_binding_still_works() -> None:
    done = _under_shim("""
        import sys
        import libvirt
        from xvirt.compat import real_libvirt
        assert libvirt.__xvirt_face__ and sys.modules["libvirt"] is libvirt
        assert libvirt.__name__ == "xvirt.compat.libvirt"
        real = real_libvirt()
        assert not getattr(real, "__xvirt_face__", False)
        conn = real.open("test:///default")
        print(conn.listDomainsID(), conn.lookupByID(1).name())
        # libvirt's C part calls back through sys.modules["libvirt"], i.e. the face:
        real.virEventRegisterDefaultImpl()
        fired = []
        real.virEventAddTimeout(0, lambda timer, opaque: fired.append(opaque), "tick")
        real.virEventRunDefaultImpl()
        print(fired)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[1] test", "['tick']"]
