"""The conformance kit through the libvirt driver, on libvirt's own test driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from xvirt.testing import check_driver
from xvirt.testing.conformance import CapabilitySkipped
from xvirt.testing.libvirt_target import LibvirtTarget
from xvirt.testing.libvirtd import LibvirtdProcess

#: What libvirt's test driver cannot do as a Xen host does: the kit says so, by name.
CANNOT = {"crash", "rename", "rename_definition", "restart_daemon"}


def test_libvirt_driver_keeps_the_contract_on_the_test_driver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path))
    with pytest.warns(CapabilitySkipped, match="LibvirtTarget cannot: crash, reboot_host"):
        report = check_driver(LibvirtTarget, max_examples=30, stateful_step_count=40,
                              derandomize=True)
    assert report.moves >= 20, report
    assert report.steps >= 500, report
    # Inactive domains: defineXML by the outside world and through the driver, started,
    # kept (inactive) when stopped, undefined.
    assert report.defines >= 30 and report.client_defines >= 15, report
    assert report.starts >= 30 and report.handle_starts >= 10, report
    assert report.undefines >= 15 and report.handle_undefines >= 3, report
    assert report.kept_defined >= 40, report
    assert report.skipped == CANNOT | {"reboot_host"}, report


def test_libvirt_driver_keeps_the_contract_through_libvirtd(
        libvirtd: LibvirtdProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """test+unix:///default: every call is a real RPC, and a host reboot is a
    libvirtd restart, which the driver meets through its close callback."""
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path))
    with pytest.warns(CapabilitySkipped, match="LibvirtTarget cannot: crash, rename,"):
        report = check_driver(lambda: LibvirtTarget(libvirtd.uri, restart=libvirtd.restart),
                              max_examples=8, stateful_step_count=30, derandomize=True)
    assert report.host_reboots >= 1, report
    assert report.moves >= 10, report
    # Definitions outlive the restarts (the target defines them again, as a host's
    # disk would keep them): guests stopped by a host reboot are shut off after it.
    assert report.defines >= 5 and report.starts >= 3 and report.kept_defined >= 5, report
    assert report.skipped == CANNOT, report
