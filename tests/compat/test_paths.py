"""save(path) and restore(path): a path in the host's image directory is a plain name,
which every host takes; any other path goes to the host, absolute: the embedded host
takes it (it acts for this process), a daemon refuses it, naming its directory."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._paths import image_name
from xvirt.testing.daemon import DaemonProcess

from .helpers import err, raised


@pytest.fixture
def web(host: xvirt.sim.Host) -> xvirt.sim.DomainRecord:
    return host.create("web")


def _running(host: xvirt.sim.Host, dom: xvirt.sim.DomainRecord) -> bool:
    """The host's truth (a saved transient domain is gone: libvirt says no domain)."""
    return any(r.uuid == dom.uuid for r in host.domains())


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    return d


def test_a_path_in_the_image_directory_saves_and_restores(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path) -> None:
    d = conn.lookupByName("web")
    assert d.save(str(images / "web.img")) == 0
    assert host.images() == ["web.img"] and not _running(host, web)
    assert conn.restore(str(images / "web.img")) == 0
    back = conn.lookupByName("web")
    assert back == d and back.ID() not in (-1, web.id)
    assert host.images() == ["web.img"]  # restore leaves it, as libvirt does
    e = raised(lambda: conn.restore(str(images / "web.img")))  # its domain runs
    assert web.uuid in e.get_error_message()
    back.destroy()
    assert conn.restore(str(images / "web.img")) == 0 and d.isActive() == 1


def test_relative_and_roundabout_paths_that_resolve_there(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (images / "sub").mkdir()
    (outside / "into").symlink_to(images)  # a symlinked directory leading into it
    d = conn.lookupByName("web")
    monkeypatch.chdir(images)
    assert d.save("a.img") == 0
    assert conn.restore("./a.img") == 0
    assert d.saveFlags(str(images / "sub" / ".." / "b.img")) == 0
    assert conn.restoreFlags(str(outside / "into" / "b.img")) == 0
    assert host.images() == ["a.img", "b.img"] and d.isActive() == 1


@pytest.mark.parametrize("bad", [
    "{images}/",                            # a directory, not a file
    "{images}/..",
    "{images}/.",
    "",
    "{images}/web\x00.img",                 # NUL
])
def test_what_names_no_file_is_refused_and_nothing_is_written(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path, outside: Path, bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(outside)
    path = bad.format(images=images)
    before = sorted(os.listdir(images)), sorted(os.listdir(outside))
    d = conn.lookupByName("web")
    code, domain, message = err(lambda: d.save(path))
    assert (code, domain) == (face.VIR_ERR_INVALID_ARG, face.VIR_FROM_DOMAIN)
    assert message is not None and message.startswith("invalid argument: ")
    assert err(lambda: conn.restore(path))[0] == face.VIR_ERR_INVALID_ARG
    assert (sorted(os.listdir(images)), sorted(os.listdir(outside))) == before
    assert host.images() == [] and d.isActive() == 1


@pytest.mark.parametrize("elsewhere", [
    "{outside}/web.img",                    # absolute, elsewhere
    "{images}/../outside/web.img",          # .. out of it
    "{images}/link/web.img",                # a symlink in it leading out
    "{images}/sub/../../outside/web.img",
    "web.img",                              # relative to the working directory
])
def test_on_the_embedded_host_a_path_elsewhere_is_the_scripts_own(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path, outside: Path, elsewhere: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (images / "link").symlink_to(outside)
    (images / "sub").mkdir()
    monkeypatch.chdir(outside)
    path = elsewhere.format(images=images, outside=outside)
    d = conn.lookupByName("web")
    assert d.save(path) == 0 and not _running(host, web)
    assert sorted(os.listdir(outside)) == ["web.img"] and host.images() == []
    assert conn.restore(path) == 0 and d.isActive() == 1
    assert sorted(os.listdir(outside)) == ["web.img"]  # left in place


def test_on_the_embedded_host_a_missing_directory_is_named(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        outside: Path) -> None:
    d = conn.lookupByName("web")
    message = raised(lambda: d.save(f"{outside}/nowhere/web.img")).get_error_message()
    assert f"no directory {outside}/nowhere" in message and d.isActive() == 1
    e = raised(lambda: conn.restore(f"{outside}/nowhere/web.img"))
    assert f"{outside}/nowhere/web.img" in e.get_error_message()


def test_a_daemon_refuses_a_path_elsewhere_naming_its_directory(
        daemon: DaemonProcess, outside: Path) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      base_url="http://localhost") as admin:
        r = admin.post("/xvirt/host", data={"op": "create", "name": "g0",
                                            "memory_kib": "65536", "vcpus": "1"})
        assert r.status_code == 200, r.text
    conn = face.open(daemon.unix_uri)
    try:
        image_dir = conn._xvirt.image_dir
        assert image_dir is not None
        dom = conn.lookupByName("g0")
        code, _, message = err(lambda: dom.save(f"{outside}/g0.img"))
        assert code == face.VIR_ERR_INVALID_ARG
        assert message is not None and f"only in its image directory {image_dir}/" in message
        assert err(lambda: conn.restore(f"{outside}/g0.img"))[0] == face.VIR_ERR_INVALID_ARG
        assert os.listdir(outside) == [] and dom.isActive() == 1
    finally:
        conn.close()


def test_a_planted_symlink_as_the_image_is_refused_by_the_host(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path, outside: Path) -> None:
    target = outside / "victim"
    target.write_text("precious")
    (images / "evil.img").symlink_to(target)
    d = conn.lookupByName("web")
    e = raised(lambda: d.save(str(images / "evil.img")))
    assert e.get_error_code() in (face.VIR_ERR_INVALID_ARG, face.VIR_ERR_OPERATION_INVALID)
    assert target.read_text() == "precious" and d.isActive() == 1


def test_argument_types(conn: face.virConnect, web: xvirt.sim.DomainRecord) -> None:
    d = conn.lookupByName("web")
    assert err(lambda: d.save(None)) == (  # type: ignore[arg-type]
        8, 20, "to in virDomainSave must not be NULL")
    assert err(lambda: conn.restore(None))[:2] == (8, 20)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.save(5)  # type: ignore[arg-type]
    assert err(lambda: d.saveFlags("/x", "<domain/>"))[0] == face.VIR_ERR_NO_SUPPORT
    assert err(lambda: conn.restoreFlags("/x", None, 1))[0] == face.VIR_ERR_INVALID_ARG


def test_without_an_image_directory_every_path_goes_to_the_host(
        host: xvirt.sim.Host, web: xvirt.sim.DomainRecord, images: Path) -> None:
    """A driver that cannot know where images go (real xend: xm took host paths)."""
    conn = face.open(host.uri)
    conn._xvirt._driver.image_dir = None
    d = conn.lookupByName("web")
    assert d.save(str(images / "web.img")) == 0  # taken as a path, which is the same file
    assert conn.restore(str(images / "web.img")) == 0
    assert host.images() == ["web.img"] and d.isActive() == 1


def test_read_only_is_refused_before_the_path(ro: face.virConnect,
                                              web: xvirt.sim.DomainRecord) -> None:
    assert err(lambda: ro.restore("\x00")) == (
        29, 20, "operation forbidden: read only access prevents virDomainRestore")


def test_the_mapping_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "imgs"
    home.mkdir()

    def mapped(path: str, image_dir: str | None = str(home)) -> str:
        return image_name(path, image_dir, "virDomainSave", "to")

    assert mapped(str(home / "x")) == "x"
    assert mapped(f"{home}//x", f"{home}/") == "x"
    assert mapped(str(tmp_path / "x")) == str(tmp_path / "x")  # elsewhere: as it is
    assert mapped(f"{home}/../x") == f"{home}/../x"  # not normalised: the OS resolves it
    assert mapped(f"{home}/.hidden") == f"{home}/.hidden"  # no plain name: still a path
    assert mapped(str(home / "x"), None) == str(home / "x")
    monkeypatch.chdir(home)
    assert mapped("x") == "x" and mapped("./x") == "x"
    monkeypatch.chdir(tmp_path)
    assert mapped("x") == str(tmp_path / "x") and mapped("sub/x") == str(tmp_path / "sub/x")
    for bad in ("", "/", f"{home}/", f"{home}/.", f"{home}/..", "a\x00b"):
        with pytest.raises(face.libvirtError):
            mapped(bad)
