"""save(path) and restore(path): a path in the host's image directory, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.compat._paths import image_name

from .helpers import err, raised


@pytest.fixture
def web(host: xvirt.sim.Host) -> xvirt.sim.DomainRecord:
    return host.create("web")


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
    assert host.images() == ["web.img"] and d.isActive() == 0
    assert conn.restore(str(images / "web.img")) == 0
    back = conn.lookupByName("web")
    assert back == d and back.ID() not in (-1, web.id)
    assert host.images() == []


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
    assert host.images() == [] and d.isActive() == 1


@pytest.mark.parametrize("bad", [
    "{outside}/web.img",                    # absolute, elsewhere
    "{images}/../outside/web.img",          # .. out of it
    "{images}/link/web.img",                # a symlink in it leading out
    "{images}/sub/../../outside/web.img",
    "{images}",                             # the directory itself
    "{images}/",
    "{images}/..",
    "{images}/.",
    "",
    "web.img",                              # relative to a cwd elsewhere
    "{images}/web\x00.img",                 # NUL
])
def test_anything_else_is_refused_and_nothing_is_written(
        host: xvirt.sim.Host, conn: face.virConnect, web: xvirt.sim.DomainRecord,
        images: Path, outside: Path, bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (images / "link").symlink_to(outside)
    (images / "sub").mkdir()
    monkeypatch.chdir(outside)
    path = bad.format(images=images, outside=outside)
    before = sorted(os.listdir(images)), sorted(os.listdir(outside))
    d = conn.lookupByName("web")
    code, domain, message = err(lambda: d.save(path))
    assert (code, domain) == (face.VIR_ERR_INVALID_ARG, face.VIR_FROM_DOMAIN)
    assert message is not None and f"saved images must go to {images}/" in message
    assert err(lambda: conn.restore(path))[0] == face.VIR_ERR_INVALID_ARG
    assert (sorted(os.listdir(images)), sorted(os.listdir(outside))) == before
    assert host.images() == [] and d.isActive() == 1


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


def test_without_an_image_directory_every_path_is_refused(
        host: xvirt.sim.Host, web: xvirt.sim.DomainRecord, images: Path) -> None:
    conn = face.open(host.uri)
    conn._xvirt._driver.image_dir = None  # a driver that cannot know where images go
    d = conn.lookupByName("web")
    code, _, message = err(lambda: d.save(str(images / "web.img")))
    assert code == face.VIR_ERR_NO_SUPPORT
    assert message is not None and "does not know the host's image directory" in message
    assert err(lambda: conn.restore(str(images / "web.img")))[0] == face.VIR_ERR_NO_SUPPORT
    assert host.images() == [] and d.isActive() == 1


def test_read_only_is_refused_before_the_path(ro: face.virConnect,
                                              web: xvirt.sim.DomainRecord) -> None:
    assert err(lambda: ro.restore("\x00")) == (
        29, 20, "operation forbidden: read only access prevents virDomainRestore")


def test_the_mapping_alone(tmp_path: Path) -> None:
    home = tmp_path / "imgs"
    home.mkdir()
    assert image_name(str(home / "x"), str(home), "virDomainSave", "to") == "x"
    assert image_name(f"{home}//x", f"{home}/", "virDomainSave", "to") == "x"
    with pytest.raises(face.libvirtError):
        image_name(str(tmp_path / "x"), str(home), "virDomainSave", "to")
