"""Image names cannot escape the image directory (issue 8, item 5), through the public
API (Domain.save, Connection.restore) on the embedded host and on a real daemon, and
through every daemon route that takes an image: nothing is written or read anywhere
else, and the domain keeps running. An absolute path is the exception on the embedded
host only, which acts for its own process (tests/host/test_images.py); a daemon, acting
for other users, refuses it and names its image directory (issue 18, item 3)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import xvirt
from xvirt.clock import ManualClock
from xvirt.testing.daemon import DaemonProcess
from xvirt.wire import records, sxp

#: Names that must be refused, each for a reason of its own (the absolute paths by a
#: daemon only: ``bad_names``).
BAD_NAMES = [
    "../x", "../../x", "../outside/victim", "/tmp/x", "/etc/passwd", "a/b", "sub/../x",
    "a\\b", "..\\x", ".", "..", "...", "..x", ".hidden", ".saving-x", "", "x\x00y", "\x00",
    "x" * 256, "\u00e9" * 128, "x\ny", "\x7f", "x\ud800",
]


@dataclass
class Setup:
    conn: xvirt.Connection
    images: Path
    outside: Path
    running: Callable[[], bool]  # is the guest still running, by the host's truth
    post: Callable[[str, dict[str, str]], int] | None = None  # raw request, trusted socket


def _listing(*dirs: Path) -> list[list[tuple[str, bool]]]:
    return [sorted((p.name, p.is_symlink()) for p in d.iterdir()) for d in dirs]


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """One daemon for the module, on its unix socket only, with guest g0."""
    d = make_module_daemon(tcp=False, token=False)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                      base_url="http://localhost") as c:
        r = c.post("/xvirt/host", data={"op": "create", "name": "g0", "memory_kib": "65536",
                                        "vcpus": "1"})
        assert r.status_code == 200, r.text
    return d


@pytest.fixture(params=["sim", "daemon"])
def setup(request: pytest.FixtureRequest, make_sim_host: Callable[..., xvirt.sim.Host],
          tmp_path: Path) -> Iterator[Setup]:
    outside = tmp_path / "outside"
    outside.mkdir()
    if request.param == "sim":
        images = tmp_path / "images"
        host = make_sim_host(clock=ManualClock(), image_dir=images)
        host.create("g0")
        with xvirt.open(host.uri) as conn:
            yield Setup(conn, images, outside, lambda: any(
                d.name == "g0" and d.state is xvirt.DomainState.RUNNING
                for d in host.domains()))
        return
    d: DaemonProcess = request.getfixturevalue("daemon")
    images = d.state_dir / "images"
    for p in images.iterdir():  # each test starts with an empty image directory
        p.unlink()
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)),
                          base_url="http://localhost")

    def running() -> bool:
        doc = sxp.parse(client.get("/xvirt/host/domains").content)
        assert isinstance(doc, list)
        states = {records.parse_domain_record(r).name: records.parse_domain_record(r).state
                  for r in doc[1:]}
        return states.get("g0") is xvirt.DomainState.RUNNING

    def post(path: str, form: dict[str, str]) -> int:
        return client.post(path, data=form).status_code

    with xvirt.open(d.unix_uri) as conn:
        yield Setup(conn, images, outside, running, post)
    client.close()


def _plant(s: Setup) -> None:
    """Symlinks inside the image directory that lead out of it."""
    victim = s.outside / "victim"
    victim.write_text("precious")
    (s.images / "evil.img").symlink_to(victim)  # an existing file outside
    (s.images / "dangling.img").symlink_to(s.outside / "created")  # a file not there yet
    (s.images / "sub").symlink_to(s.outside, target_is_directory=True)


def _absolute_on_the_embedded_host(name: str, setup: Setup) -> bool:
    return setup.post is None and name.startswith("/")


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_by_save_and_restore(setup: Setup, name: str) -> None:
    if _absolute_on_the_embedded_host(name, setup):
        pytest.skip("the embedded host takes an absolute path (tests/host/test_images.py)")
    _plant(setup)
    before = _listing(setup.images, setup.outside)
    dom = setup.conn.lookup_by_name("g0")
    with pytest.raises(xvirt.InvalidArgumentError):
        dom.save(name)
    with pytest.raises(xvirt.InvalidArgumentError):
        setup.conn.restore(name)
    assert _listing(setup.images, setup.outside) == before
    assert (setup.outside / "victim").read_text() == "precious"
    assert setup.running() and dom.info().state is xvirt.DomainState.RUNNING


@pytest.mark.parametrize("name", ["evil.img", "dangling.img", "sub"])
def test_symlinks_planted_inside_are_neither_written_through_nor_read(
        setup: Setup, name: str) -> None:
    _plant(setup)
    dom = setup.conn.lookup_by_name("g0")
    # a real image, moved outside, that a symlink then offers for restore
    dom.save("real.img")
    os.rename(setup.images / "real.img", setup.outside / "real.img")
    (setup.images / "lure.img").symlink_to(setup.outside / "real.img")
    before = _listing(setup.images, setup.outside)
    with pytest.raises(xvirt.XvirtError):
        setup.conn.restore("lure.img")  # would bring the domain back from outside
    with pytest.raises(xvirt.NoDomainError):
        dom.info()  # it did not
    os.rename(setup.outside / "real.img", setup.images / "real.img")
    setup.conn.restore("real.img")  # the same image inside the directory is fine
    assert setup.running()
    before = _listing(setup.images, setup.outside)
    with pytest.raises(xvirt.XvirtError):
        dom.save(name)
    with pytest.raises(xvirt.XvirtError):
        setup.conn.restore(name)
    assert _listing(setup.images, setup.outside) == before
    assert (setup.outside / "victim").read_text() == "precious"
    assert not (setup.outside / "created").exists()
    assert setup.running()


@pytest.mark.parametrize("name", ["x" * 255, "\u00e9" * 127 + "x", "x..", "~", "-rf",
                                  "%2e%2e", "a b.img"])
def test_names_that_are_allowed_stay_inside(setup: Setup, name: str) -> None:
    dom = setup.conn.lookup_by_name("g0")
    outside = _listing(setup.outside, setup.images.parent)
    dom.save(name)
    assert [p.name for p in setup.images.iterdir()] == [name]
    assert _listing(setup.outside, setup.images.parent) == outside
    assert setup.conn.restore(name) == dom
    assert setup.running() and [p.name for p in setup.images.iterdir()] == [name]  # kept


@pytest.mark.parametrize("setup", ["daemon"], indirect=True)
@pytest.mark.parametrize("name", [n for n in BAD_NAMES if "\ud800" not in n], ids=repr)
def test_every_daemon_route_that_takes_an_image_refuses(setup: Setup, name: str) -> None:
    """The daemon checks on its own, whatever a client sends: xend's save and restore
    (a name, or a path under the image directory) and the host's administration."""
    assert setup.post is not None  # (a lone surrogate cannot be put into a request)
    _plant(setup)
    domid = setup.conn.lookup_by_name("g0").id
    before = _listing(setup.images, setup.outside)
    for file in (name, f"{setup.images}/{name}"):
        if file.endswith("/"):  # the empty name as a path is the directory itself
            file = file[:-1]
        assert setup.post(f"/xend/domain/{domid}", {"op": "save", "file": file}) in (400, 500)
        assert setup.post("/xend/domain/", {"op": "restore", "file": file}) in (400, 500)
    assert setup.post("/xvirt/host", {"op": "save", "domid": str(domid), "image": name}) in (
        400, 500)
    assert setup.post("/xvirt/host", {"op": "restore", "image": name}) in (400, 500)
    assert _listing(setup.images, setup.outside) == before
    assert setup.running()


@pytest.mark.parametrize("setup", ["daemon"], indirect=True)
def test_the_daemon_refuses_a_path_outside_naming_its_directory(
        setup: Setup, daemon: DaemonProcess) -> None:
    """xend took any path on its host; this daemon acts for other users."""
    assert setup.post is not None
    domid = setup.conn.lookup_by_name("g0").id
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                          base_url="http://localhost")
    with client:
        for path in (f"{setup.outside}/g0.img", f"{setup.images}/../outside/g0.img"):
            for url, form in ((f"/xend/domain/{domid}", {"op": "save", "file": path}),
                              ("/xend/domain/", {"op": "restore", "file": path}),
                              ("/xvirt/host", {"op": "save", "domid": str(domid),
                                               "image": path})):
                answer = client.post(url, data=form)
                assert answer.status_code == 400, answer.text
                assert f"only in its image directory {setup.images}/" in answer.text
    assert _listing(setup.outside) == [[]] and setup.running()
    # and a path inside it is a name there
    dom = setup.conn.lookup_by_name("g0")
    assert setup.post(f"/xend/domain/{domid}", {"op": "save",
                                                "file": f"{setup.images}/g0.img"}) == 202
    assert setup.conn.restore("g0.img") == dom
