"""Fixtures the tools' tests share: a private libvirtd beside virsh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tools.with_virsh import VIRSH
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess


@pytest.fixture(scope="module")
def shared_libvirtd() -> Iterator[LibvirtdProcess]:
    """One private libvirtd (its test driver) for a module's tests."""
    if VIRSH is None:
        pytest.skip("virsh (libvirt-clients) is not installed")
    with LibvirtdProcess() as d:
        yield d


@pytest.fixture
def libvirtd_host(shared_libvirtd: LibvirtdProcess) -> Iterator[str]:
    """The libvirtd's test driver, as for each test it were new (domain ``test``, ID 1),
    held so for the test's length: the driver keeps its state only while a connection
    is open, and forgets it once the last one closes. The URI is libvirt's own; xvirt
    takes it with ``libvirt:`` in front."""
    keeper = real_libvirt().open(shared_libvirtd.uri)
    try:
        assert [d.name() for d in keeper.listAllDomains()] == ["test"], (
            "another connection keeps the test driver's state")
        yield shared_libvirtd.uri
    finally:
        keeper.close()
