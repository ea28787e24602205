"""Fixtures for the libvirt face: private embedded hosts (built on tests/conftest.py's),
face connections, and a collecting error handler (libvirt's default prints every error
to stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.clock import ManualClock


@pytest.fixture(autouse=True)
def reported() -> Iterator[list[Any]]:
    """Every error the face reports (instead of stderr lines); reset after the test."""
    seen: list[Any] = []
    face.registerErrorHandler(lambda _ctx, e: seen.append(e), None)
    face.virResetLastError()
    yield seen
    face.registerErrorHandler(None, None)
    face.virResetLastError()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def host(make_sim_host: Callable[..., xvirt.sim.Host], images: Path,
         clock: ManualClock) -> xvirt.sim.Host:
    """A private embedded host on ``clock`` (tests advance it to let CPU time grow)."""
    return make_sim_host(clock=clock, image_dir=images)


@pytest.fixture
def conn(host: xvirt.sim.Host) -> Iterator[face.virConnect]:
    c = face.open(host.uri)
    assert c._xvirt.image_dir == host.image_dir  # the driver tells it: save(path) works
    yield c
    if not c._xvirt.closed:
        c.close()


@pytest.fixture
def ro(host: xvirt.sim.Host) -> Iterator[face.virConnect]:
    c = face.openReadOnly(host.uri)
    yield c
    c.close()
