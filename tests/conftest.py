"""Fixtures the whole suite shares: a manual clock, embedded hosts and host models named
after the test that made them, and real daemons. Whatever a factory made is closed or
stopped at teardown, even when the test failed.

A module whose clock must start elsewhere than 0 says so once:
``pytestmark = pytest.mark.clock_start(1000.0)``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest

import xvirt
from xvirt.clock import ManualClock
from xvirt.host.hypervisor import HostModel
from xvirt.testing.daemon import DaemonProcess
from xvirt.testing.libvirtd import LibvirtdProcess

# One serial for the whole run: no two hosts share a name, whichever test made them.
_serial = itertools.count()


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "clock_start(seconds): where the clock fixture starts (default 0.0)")
    _libvirt_runs_xvirts_event_loop()


@pytest.fixture(autouse=True, scope="session")
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's own state directory (sim:///default keeps its saved
    images there, chosen when that host is first made)."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state-home"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


def _libvirt_runs_xvirts_event_loop() -> None:
    """One process runs every test, and libvirt takes one event loop per process, for
    good: xvirt's own, registered before any test runs, so that no test's order decides
    it. (A script that registers libvirt's default loop or libvirtaio's first is run in
    a process of its own: tests/compat/test_passthrough.py.)"""
    from xvirt.drivers.libvirt_loop import ensure_event_loop
    from xvirt.errors import UnsupportedError
    from xvirt.libvirt_api.binding import real_libvirt

    with contextlib.suppress(UnsupportedError):
        ensure_event_loop(real_libvirt())


def _unique_name(node: pytest.Item | pytest.Collector) -> str:
    """The test's (or module's) name, cut to what a ``sim:///`` name may hold, and a
    run-wide serial: a host left behind names the test that made it."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name)[:48].strip("-.")
    return f"{label}-{next(_serial)}"


def _closing(request: pytest.FixtureRequest,
             make: Callable[..., _C]) -> Iterator[Callable[..., _C]]:
    """A factory that names what it makes after the requesting node and closes it all
    (newest first) when the fixture ends."""
    with contextlib.ExitStack() as made:
        def factory(**options: Any) -> _C:
            thing = make(_unique_name(request.node), **options)
            made.callback(thing.close)
            return thing
        yield factory


def _daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """A factory of daemons (started unless ``start=False``), each stopped, then cleaned
    up, when the fixture ends."""
    with contextlib.ExitStack() as started:
        def make_daemon(*, start: bool = True, **options: Any) -> DaemonProcess:
            d = DaemonProcess(**options)
            started.callback(d.cleanup)
            started.callback(d.stop)  # callbacks run newest first: stop, then cleanup
            if start:
                d.start()
            return d
        yield make_daemon


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> ManualClock:
    """A fresh manual clock, at 0.0 or where the ``clock_start`` marker says."""
    marker = request.node.get_closest_marker("clock_start")
    return ManualClock(*marker.args, **marker.kwargs) if marker is not None else ManualClock()


@pytest.fixture
def make_sim_host(request: pytest.FixtureRequest) -> Iterator[Callable[..., xvirt.sim.Host]]:
    """``make_sim_host(**options)``: an embedded host with a unique name, closed at teardown."""
    yield from _closing(request, xvirt.sim.Host)


@pytest.fixture(scope="module")
def make_module_sim_host(
        request: pytest.FixtureRequest) -> Iterator[Callable[..., xvirt.sim.Host]]:
    """``make_sim_host`` for module-scoped fixtures: the hosts live until the module ends."""
    yield from _closing(request, xvirt.sim.Host)


@pytest.fixture
def sim_host(make_sim_host: Callable[..., xvirt.sim.Host], clock: ManualClock) -> xvirt.sim.Host:
    """An empty embedded host (Domain-0 only) on the ``clock`` fixture."""
    return make_sim_host(clock=clock)


@pytest.fixture
def make_host_model(request: pytest.FixtureRequest) -> Iterator[Callable[..., HostModel]]:
    """``make_host_model(**options)``: a bare host model with a unique name, closed at teardown."""
    yield from _closing(request, HostModel)


@pytest.fixture
def make_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """``make_daemon(start=True, **options)``: ``xvirt daemon`` processes for one test."""
    yield from _daemons()


@pytest.fixture(scope="module")
def make_module_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """``make_daemon`` for module-scoped fixtures: the daemons live until the module ends."""
    yield from _daemons()


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A started daemon as ``DaemonProcess()`` makes it: empty, over TCP with a token too."""
    return make_daemon()


@pytest.fixture
def libvirtd() -> Iterator[LibvirtdProcess]:
    """A private, started libvirtd (its test driver), cleaned up at teardown."""
    with LibvirtdProcess() as d:
        yield d
