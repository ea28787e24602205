"""The conformance kit through the libvirt driver, on libvirt's own test driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from xvirt.testing import check_driver
from xvirt.testing.libvirt_target import LibvirtTarget


def test_libvirt_driver_keeps_the_contract_on_the_test_driver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path))
    report = check_driver(LibvirtTarget, max_examples=30, stateful_step_count=40,
                          derandomize=True)
    assert report.moves >= 50, report
    assert report.steps >= 500, report
