"""The conformance kit through the libvirt driver, on libvirt's own test driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from xvirt.testing import check_driver
from xvirt.testing.libvirt_target import LibvirtTarget
from xvirt.testing.libvirtd import LibvirtdProcess


def test_libvirt_driver_keeps_the_contract_on_the_test_driver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path))
    report = check_driver(LibvirtTarget, max_examples=30, stateful_step_count=40,
                          derandomize=True)
    assert report.moves >= 20, report
    assert report.steps >= 500, report


def test_libvirt_driver_keeps_the_contract_through_libvirtd(
        libvirtd: LibvirtdProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """test+unix:///default: every call is a real RPC, and a host reboot is a
    libvirtd restart, which the driver meets through its close callback."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path))
    report = check_driver(lambda: LibvirtTarget(libvirtd.uri, restart=libvirtd.restart),
                          max_examples=8, stateful_step_count=30, derandomize=True)
    assert report.host_reboots >= 1, report
    assert report.moves >= 10, report
