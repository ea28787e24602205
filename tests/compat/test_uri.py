"""Which xvirt URI a script's libvirt URI means."""

from __future__ import annotations

import pytest

from xvirt.compat._uri import resolve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("XVIRT_COMPAT_URI", raising=False)


@pytest.mark.parametrize(("given", "opened"), [
    ("sim:///lab", "sim:///lab"),
    ("xend://127.0.0.1:8000", "xend://127.0.0.1:8000"),
    ("xend+unix:///run/xend.sock", "xend+unix:///run/xend.sock"),
    ("libvirt:test:///default", "libvirt:test:///default"),
    ("test:///default", "libvirt:test:///default"),
    ("test+unix:///default", "libvirt:test+unix:///default"),
    ("qemu:///system", "libvirt:qemu:///system"),
    ("xen:///system", "libvirt:xen:///system"),
])
def test_xvirt_schemes_as_is_others_to_the_libvirt_driver(given: str, opened: str) -> None:
    assert resolve(given) == (given, opened)


def test_the_default_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve(None) == ("sim:///default", "sim:///default")
    assert resolve("") == ("sim:///default", "sim:///default")
    monkeypatch.setenv("XVIRT_COMPAT_URI", "sim:///compat")
    assert resolve(None) == ("sim:///compat", "sim:///compat")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    assert resolve(None) == ("test:///default", "libvirt:test:///default")
    assert resolve("sim:///given") == ("sim:///given", "sim:///given")
