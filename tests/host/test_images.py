"""Saved images: names that can only mean a file inside the directory, absolute paths the
process may use (the embedded host's), the default host's per-user directory; restore
leaves the image; no step loses a domain."""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, NoDomainError, OperationFailedError
from xvirt.host import images as images_mod
from xvirt.host.hypervisor import DomainRecord, HostModel
from xvirt.host.images import ImageStore, SavedDomain
from xvirt.model import DomainState, check_image_name
from xvirt.planes import DiskConfig, NicConfig

_serial = itertools.count()

BAD_NAMES = [
    "",
    ".",
    "..",
    ".hidden",
    "./x",
    "../escape",
    "../../etc/passwd",
    "/etc/passwd",
    "/tmp/x",
    "a/b",
    "a/",
    "a\\b",
    "..\\x",
    "a\x00b",
    "\x00",
    "a\nb",
    "tab\there",
    "\x01",
    "bell\x07",
    "esc\x1b[0m",
    "del\x7f",
    "x" * 256,
    "\u00e9" * 128,  # 128 characters, 256 bytes
    "\ud800",  # a lone surrogate no file name can hold
    "a\udfffb",
]
NOT_STRINGS = [None, 5, b"img", Path("img"), ["img"]]
#: Absolute paths that name no file the host could save to or restore from.
BAD_PATHS = ["/", "/tmp/", "/tmp/.", "/tmp/..", "/tmp/a\x00b", "/tmp/\ud800"]
#: Refused by the host model: bad names that are not absolute paths, and bad paths.
BAD_IMAGES = [n for n in BAD_NAMES if not n.startswith("/")] + BAD_PATHS
GOOD_NAMES = ["img", "a.img", "web1-2024.save", "x" * 255, "\u00e9" * 127, "spaces in name",
              "trailing.", "UPPER", "-dash", "\u2603 snowman", "a..b", "~tilde"]


def _host(**kwargs: object) -> HostModel:
    """A host made and closed by the test itself (Hypothesis examples, closing tests)."""
    kwargs.setdefault("clock", ManualClock())
    return HostModel(f"images-test-{next(_serial)}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock,
         tmp_path: Path) -> HostModel:
    """An empty host model (20 guest IDs) on ``clock``, saving into tmp_path/images."""
    return make_host_model(clock=clock, image_dir=tmp_path / "images", max_domid=20)


def _listing(h: HostModel) -> list[str]:
    return sorted(os.listdir(h.image_dir))  # hidden files too


def _alive(h: HostModel, rec: DomainRecord) -> None:
    now = h.domain(rec.id)
    assert (now.uuid, now.name) == (rec.uuid, rec.name)


def _expected_ok(name: str) -> bool:
    """The rule, stated independently of the code."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\x00"):
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return False
    try:
        os.fsencode(name)
    except UnicodeError:
        return False
    return len(name.encode("utf-8", "surrogatepass")) <= 255


# -- check_image_name -------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_refuses_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        check_image_name(name)


@pytest.mark.parametrize("name", NOT_STRINGS)
def test_check_refuses_non_strings(name: object) -> None:
    with pytest.raises(InvalidArgumentError, match="string"):
        check_image_name(name)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_check_accepts_plain_file_names(name: str) -> None:
    assert check_image_name(name) == name


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300)
       | st.text(alphabet="./\\\x00\n\x7fa\u00e9\ud800", max_size=8))
@settings(max_examples=300, deadline=None)
def test_check_property(name: str) -> None:
    if _expected_ok(name):
        assert check_image_name(name) == name
    else:
        with pytest.raises(InvalidArgumentError) as exc:
            check_image_name(name)
        str(exc.value)  # the message itself must be printable
        repr(exc.value)


# -- saving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_IMAGES + NOT_STRINGS)
def test_save_under_a_bad_name_writes_nothing_and_keeps_the_domain(
    host: HostModel, name: str
) -> None:
    a = host.create("a")
    host.save(host.create("other").id, "existing")
    before, gen = _listing(host), host.generation
    outside = sorted(os.listdir(Path(host.image_dir).parent))
    with pytest.raises(InvalidArgumentError):
        host.save(a.id, name)
    assert _listing(host) == before
    assert sorted(os.listdir(Path(host.image_dir).parent)) == outside
    _alive(host, a)
    assert host.generation == gen
    assert host.journal()[-1].outcome.startswith("failed")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_save_under_a_good_name_writes_exactly_that_file(host: HostModel, name: str) -> None:
    a = host.create("a")
    host.save(a.id, name)
    assert _listing(host) == [name]
    assert host.images() == [name]
    path = Path(host.image_dir) / name
    assert path.is_file() and not path.is_symlink()
    assert path.resolve().parent == Path(host.image_dir).resolve()
    with pytest.raises(NoDomainError):
        host.domain(a.id)
    assert host.restore(name).uuid == a.uuid


@given(name=st.text(max_size=40).filter(lambda n: not n.startswith("/"))
       | st.sampled_from(BAD_IMAGES))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_save_property_nothing_escapes(name: str) -> None:
    """A name (anything but an absolute path, which the host takes as one) stays in
    the directory or is refused; restore leaves the image where the save put it."""
    # A private parent: the system's temporary directory is shared with other processes.
    base = Path(tempfile.mkdtemp(prefix="xvirt-escape-"))
    h = _host(image_dir=base / "images")
    try:
        a = h.create("a")
        parent = sorted(os.listdir(Path(h.image_dir).parent))
        if _expected_ok(name):
            h.save(a.id, name)
            assert _listing(h) == [name]
            rec = h.restore(name)
            assert rec.uuid == a.uuid
            assert _listing(h) == [name]
        else:
            with pytest.raises(InvalidArgumentError):
                h.save(a.id, name)
            assert _listing(h) == []
            _alive(h, a)
        assert sorted(os.listdir(Path(h.image_dir).parent)) == parent
    finally:
        h.close()
        shutil.rmtree(base, ignore_errors=True)


def test_a_planted_symlink_is_refused(host: HostModel, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    os.symlink(outside, Path(host.image_dir) / "evil")
    a = host.create("a")
    before = _listing(host)
    with pytest.raises(InvalidArgumentError, match="symbolic link"):
        host.save(a.id, "evil")
    assert outside.read_text() == "precious"
    assert _listing(host) == before
    _alive(host, a)


def test_a_dangling_symlink_cannot_create_a_file_outside(host: HostModel, tmp_path: Path) -> None:
    target = tmp_path / "not-yet"
    os.symlink(target, Path(host.image_dir) / "evil")
    a = host.create("a")
    with pytest.raises(InvalidArgumentError):
        host.save(a.id, "evil")
    assert not target.exists()
    _alive(host, a)


def test_restore_through_a_planted_symlink_is_refused(host: HostModel, tmp_path: Path) -> None:
    # a valid image outside the directory, reachable only through the link
    other = _host(image_dir=tmp_path / "elsewhere")
    try:
        rec = other.create("victim")
        other.save(rec.id, "victim.img")
    finally:
        other.close()
    os.symlink(tmp_path / "elsewhere" / "victim.img", Path(host.image_dir) / "link")
    with pytest.raises(InvalidArgumentError):
        host.restore("link")
    assert (tmp_path / "elsewhere" / "victim.img").is_file()  # not consumed
    assert [d.name for d in host.domains()] == ["Domain-0"]


def test_saving_onto_an_existing_image_is_refused(host: HostModel) -> None:
    a = host.create("a")
    b = host.create("b")
    host.save(a.id, "img")
    original = (Path(host.image_dir) / "img").read_bytes()
    before, gen = _listing(host), host.generation
    with pytest.raises(OperationFailedError, match="already exists") as exc:
        host.save(b.id, "img")
    assert exc.value.name == "img"
    assert (Path(host.image_dir) / "img").read_bytes() == original
    assert _listing(host) == before
    _alive(host, b)
    assert host.generation == gen
    assert host.journal()[-1].outcome.startswith("failed")
    # and the image still brings back the first domain
    assert host.restore("img").uuid == a.uuid


def test_saving_onto_an_existing_directory_is_refused(host: HostModel) -> None:
    (Path(host.image_dir) / "sub").mkdir()
    a = host.create("a")
    with pytest.raises(OperationFailedError):
        host.save(a.id, "sub")
    _alive(host, a)


def test_an_image_directory_replaced_by_a_file(host: HostModel) -> None:
    a = host.create("a")
    path = Path(host.image_dir)
    path.rmdir()
    path.write_text("not a directory")
    with pytest.raises(OperationFailedError, match="'img'") as exc:
        host.save(a.id, "img")
    assert (exc.value.name, exc.value.op) == ("img", "save")
    _alive(host, a)
    assert host.journal()[-1].outcome.startswith("failed")
    assert path.read_text() == "not a directory"


def test_an_image_directory_that_vanished(host: HostModel) -> None:
    a = host.create("a")
    Path(host.image_dir).rmdir()
    with pytest.raises(OperationFailedError) as exc:
        host.save(a.id, "img")
    assert exc.value.name == "img"
    _alive(host, a)


@pytest.mark.parametrize("fail", ["write", "fsync", "link"])
def test_a_full_disk_fails_the_save_and_keeps_the_domain(
    host: HostModel, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    a = host.create("a")
    before = _listing(host)

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(images_mod.os, fail, no_space)
    with pytest.raises(OperationFailedError, match="cannot write image 'img'") as exc:
        host.save(a.id, "img")
    monkeypatch.undo()
    assert exc.value.name == "img"
    assert "No space left" in str(exc.value)
    _alive(host, a)
    assert host.domain(a.id).state is DomainState.RUNNING
    assert _listing(host) == before  # no temporary file left behind


# -- restoring -------------------------------------------------------------------------------


def test_restore_leaves_the_image_and_refuses_a_second_domain_from_it(host: HostModel) -> None:
    a = host.create("a", memory_kib=4096, max_memory_kib=8192, vcpus=3)
    host.save(a.id, "img")
    image = (Path(host.image_dir) / "img").read_bytes()
    rec = host.restore("img")
    assert (rec.uuid, rec.name, rec.memory_kib, rec.max_memory_kib, rec.vcpus, rec.state) == (
        a.uuid, "a", 4096, 8192, 3, DomainState.RUNNING)
    assert _listing(host) == ["img"]  # as xm and libvirt leave it
    assert (Path(host.image_dir) / "img").read_bytes() == image
    before, gen = host.domains(), host.generation
    with pytest.raises(OperationFailedError, match=a.uuid) as exc:
        host.restore("img")  # the domain it holds is running: no duplicate
    assert (exc.value.uuid, exc.value.op) == (a.uuid, "restore")
    assert host.domains() == before and host.generation == gen
    assert host.journal()[-1].outcome.startswith("failed")
    host.destroy(rec.id)
    again = host.restore("img")  # gone: the image brings it back again
    assert (again.uuid, again.name) == (a.uuid, "a") and again.id != rec.id
    assert _listing(host) == ["img"]


def test_saving_again_replaces_the_older_image_of_the_same_domain(
        host: HostModel, clock: ManualClock) -> None:
    a = host.create("a", load=1.0)
    host.save(a.id, "img")
    first = host.restore("img")
    clock.advance(5.0)
    host.save(first.id, "img")  # save, restore, save: libvirt's and xm's round trip
    assert _listing(host) == ["img"]
    assert host.restore("img").cpu_time_ns == first.cpu_time_ns + 5 * 10**9


def test_restore_of_a_missing_image(host: HostModel) -> None:
    with pytest.raises(OperationFailedError, match="no image") as exc:
        host.restore("nothing")
    assert (exc.value.name, exc.value.op) == ("nothing", "restore")


@pytest.mark.parametrize("name", BAD_IMAGES + NOT_STRINGS)
def test_restore_under_a_bad_name_is_refused(host: HostModel, name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        host.restore(name)


def _valid_payload() -> dict[str, object]:
    return {"format": "xvirt-image/1", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "name": "x", "memory_kib": 1024, "max_memory_kib": 2048, "vcpus": 1,
            "cpu_time_ns": 5, "os_type": "linux", "load": 0.5}


def _corrupt(**changes: object) -> bytes:
    data = _valid_payload()
    for k, v in changes.items():
        if v is _DROP:
            del data[k]
        else:
            data[k] = v
    return json.dumps(data).encode()


_DROP = object()

CORRUPT = {
    "garbage": b"\x00\xff not json",
    "empty": b"",
    "list": b"[1, 2]",
    "string": b'"xvirt-image/1"',
    "number": b"42",
    "deep": b"[" * 100_000,
    "wrong-format": _corrupt(format="xvirt-image/999"),
    "no-format": _corrupt(format=_DROP),
    "missing-field": _corrupt(vcpus=_DROP),
    "extra-field": _corrupt(extra=1),
    "bad-uuid": _corrupt(uuid="zz"),
    "uuid-not-string": _corrupt(uuid=5),
    "empty-name": _corrupt(name=""),
    "slash-name": _corrupt(name="a/b"),
    "name-not-string": _corrupt(name=["x"]),
    "memory-string": _corrupt(memory_kib="1024"),
    "memory-zero": _corrupt(memory_kib=0),
    "max-below-memory": _corrupt(max_memory_kib=10),
    "vcpus-zero": _corrupt(vcpus=0),
    "vcpus-bool": _corrupt(vcpus=True),
    "cpu-negative": _corrupt(cpu_time_ns=-1),
    "cpu-float": _corrupt(cpu_time_ns=1.5),
    "load-big": _corrupt(load=7),
    "load-string": _corrupt(load="0.5"),
    "os-type-null": _corrupt(os_type=None),
    "disks-not-a-list": _corrupt(disks=5),
    "disk-not-an-object": _corrupt(disks=["xvda"]),
    "disk-missing-field": _corrupt(disks=[{"source": "/a.img"}]),
    "disk-extra-field": _corrupt(disks=[{"source": "/a", "target": "xvda", "readonly": False,
                                         "x": 1}]),
    "disk-bad-target": _corrupt(disks=[{"source": "/a", "target": "c:", "readonly": False}]),
    "disk-empty-source": _corrupt(disks=[{"source": "", "target": "xvda", "readonly": False}]),
    "disk-readonly-string": _corrupt(disks=[{"source": "/a", "target": "xvda",
                                             "readonly": "no"}]),
    "nics-string": _corrupt(nics="00:16:3e:00:00:01"),
    "nic-bad-mac": _corrupt(nics=[{"mac": "00:16:3e", "bridge": None}]),
    "nic-multicast": _corrupt(nics=[{"mac": "01:00:5e:00:00:01", "bridge": None}]),
    "nic-not-canonical": _corrupt(nics=[{"mac": "00:16:3E:00:00:01", "bridge": None}]),
}


def test_the_valid_payload_used_below_is_accepted(host: HostModel) -> None:
    (Path(host.image_dir) / "good").write_bytes(json.dumps(_valid_payload()).encode())
    rec = host.restore("good")
    assert (rec.uuid, rec.name, rec.cpu_time_ns) == (_valid_payload()["uuid"], "x", 5)


def test_an_image_from_before_devices_restores_with_the_default_devices(
        host: HostModel) -> None:
    (Path(host.image_dir) / "old").write_bytes(json.dumps(_valid_payload()).encode())
    config = host.resolve([host.restore("old").uuid]).domains[0].config
    assert config is not None
    assert config.disks == (DiskConfig("/var/lib/xen/images/x.img", "xvda"),)
    assert config.nics == (NicConfig("00:16:3e:66:95:eb", "xenbr0"),)  # from the UUID


def test_an_image_keeps_the_devices_it_was_saved_with(host: HostModel) -> None:
    disks = (DiskConfig("phy:/dev/vg/a", "xvdb", readonly=True),)
    nics = (NicConfig("00:16:3e:0a:0b:0c", None), NicConfig("02:00:00:00:00:01", "br-lan"))
    a = host.create("a", disks=disks, nics=nics)
    host.save(a.id, "img")
    payload = json.loads((Path(host.image_dir) / "img").read_bytes())
    assert payload["disks"] == [{"source": "phy:/dev/vg/a", "target": "xvdb", "readonly": True}]
    config = host.resolve([host.restore("img").uuid]).domains[0].config
    assert config is not None and (config.disks, config.nics) == (disks, nics)
    b = host.create("b", disks=(), nics=())  # none stays none
    host.save(b.id, "none")
    config = host.resolve([host.restore("none").uuid]).domains[0].config
    assert config is not None and (config.disks, config.nics) == ((), ())


@pytest.mark.parametrize("content", CORRUPT.values(), ids=list(CORRUPT))
def test_restore_of_a_corrupt_image_fails_and_keeps_it(host: HostModel, content: bytes) -> None:
    (Path(host.image_dir) / "bad").write_bytes(content)
    before, gen = host.domains(), host.generation
    with pytest.raises(OperationFailedError, match="not an xvirt domain image") as exc:
        host.restore("bad")
    assert (exc.value.name, exc.value.op) == ("bad", "restore")
    assert host.domains() == before
    assert host.generation == gen
    assert (Path(host.image_dir) / "bad").read_bytes() == content
    host.node_info()  # the host is still sound


def test_restore_of_a_directory_fails(host: HostModel) -> None:
    (Path(host.image_dir) / "sub").mkdir()
    with pytest.raises(OperationFailedError):
        host.restore("sub")


def test_restore_when_the_uuid_is_running_keeps_the_image(host: HostModel) -> None:
    a = host.create("a")
    host.save(a.id, "img")
    twin = host.create("twin", uuid=a.uuid)
    with pytest.raises(OperationFailedError, match="UUID") as exc:
        host.restore("img")
    assert exc.value.uuid == a.uuid
    assert host.images() == ["img"]
    _alive(host, twin)
    host.destroy(twin.id)
    assert host.restore("img").name == "a"


def test_restore_when_the_name_is_taken_keeps_the_image(host: HostModel) -> None:
    a = host.create("a")
    host.save(a.id, "img")
    usurper = host.create("a")
    gen = host.generation
    with pytest.raises(OperationFailedError, match="already exists") as exc:
        host.restore("img")
    assert exc.value.name == "a"
    assert host.images() == ["img"]
    assert host.generation == gen
    _alive(host, usurper)
    host.rename(usurper.id, "not-a")
    assert host.restore("img").uuid == a.uuid


def test_restore_in_a_full_id_space_keeps_the_image(tmp_path: Path) -> None:
    h = _host(max_domid=1, image_dir=tmp_path / "img")
    try:
        a = h.create("a")
        h.save(a.id, "img")
        h.create("b")
        with pytest.raises(OperationFailedError):
            h.restore("img")
        assert h.images() == ["img"]
    finally:
        h.close()


def test_restore_from_an_unreadable_directory(host: HostModel) -> None:
    a = host.create("a")
    host.save(a.id, "img")
    path = Path(host.image_dir)
    (path / "img").unlink()
    path.rmdir()
    path.write_text("now a file")
    with pytest.raises(OperationFailedError) as exc:
        host.restore("img")
    assert exc.value.name == "img"


def test_images_survive_a_host_reboot(host: HostModel) -> None:
    a = host.create("a")
    host.save(a.id, "img")
    host.reboot_host()
    assert host.images() == ["img"]
    assert host.restore("img").uuid == a.uuid


# -- ImageStore alone -------------------------------------------------------------------------


def _saved() -> SavedDomain:
    return SavedDomain("6695eb01-f6a4-8304-79aa-97f2502e193f", "x", 1024, 2048, 2, 7, "linux",
                       0.5)


def test_store_round_trip(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    store.write("one", _saved())
    assert store.exists("one")
    assert store.read("one") == _saved()
    store.remove("one")
    assert not store.exists("one")
    store.remove("one")  # removing twice is fine


def test_store_names_lists_plain_files_only(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    store.write("b", _saved())
    store.write("a", _saved())
    (tmp_path / "s" / ".hidden").write_text("x")
    (tmp_path / "s" / "dir").mkdir()
    assert store.names() == ["a", "b"]


def test_store_refuses_a_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidArgumentError, match="image directory"):
        ImageStore(tmp_path / "f")


def test_store_creates_a_missing_directory(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    store.close()
    assert (tmp_path / "a" / "b").is_dir()  # a given directory is never removed


def test_store_owns_and_removes_a_directory_it_made() -> None:
    store = ImageStore(None, label="owned-test")
    assert store.path.is_dir()
    assert store.path.name.startswith("xvirt-owned-test-images-")
    store.write("x", _saved())
    store.close()
    assert not store.path.exists()


def test_host_with_a_given_directory_leaves_it_on_close(tmp_path: Path) -> None:
    h = _host(image_dir=tmp_path / "keep")
    a = h.create("a")
    h.save(a.id, "img")
    h.close()
    assert (tmp_path / "keep" / "img").is_file()


def test_a_symlink_swapped_in_after_the_check_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path / "images")
    outside = tmp_path / "outside.img"
    outside.write_text("{}")
    (tmp_path / "images" / "img").symlink_to(outside)
    # As if the name had been a plain file when _path_of checked it.
    monkeypatch.setattr(store, "_path_of", lambda name: store.path / name)
    with pytest.raises(OperationFailedError, match="became a symbolic link"):
        store.read("img")


def test_a_process_that_never_closes_its_host_leaves_no_image_directory() -> None:
    """Every `xvirt list` on sim:///default left an empty directory in /tmp."""
    script = ("import xvirt; h = xvirt.sim.Host('exit-test'); "
              "print(h.image_dir, flush=True); h.create('a')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    path = Path(out.stdout.strip())
    assert path.name.startswith("xvirt-exit-test-images-")
    assert not path.exists()


# -- absolute paths: the embedded host acts for its own process ------------------------------


def test_save_and_restore_through_a_path_anywhere_the_process_may_write(
        host: HostModel, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    path = tmp_path / "mine" / "a.save"
    a = host.create("a")
    host.save(a.id, str(path))
    assert path.is_file() and host.images() == []  # not in the image directory
    assert os.listdir(tmp_path / "mine") == ["a.save"]  # nothing staged left beside it
    rec = host.restore(str(path))
    assert (rec.uuid, rec.name) == (a.uuid, "a")
    assert path.is_file()  # restore leaves it
    host.save(rec.id, str(path))  # and a newer image of the same domain replaces it
    assert os.listdir(tmp_path / "mine") == ["a.save"]


def test_a_path_through_a_symlinked_directory_is_the_users_to_follow(
        host: HostModel, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    a = host.create("a")
    host.save(a.id, str(tmp_path / "link" / "a.img"))
    assert (tmp_path / "real" / "a.img").is_file()
    assert host.restore(str(tmp_path / "real" / "a.img")).uuid == a.uuid


def test_a_path_in_a_missing_directory_names_both(host: HostModel, tmp_path: Path) -> None:
    a = host.create("a")
    path = f"{tmp_path}/nowhere/a.img"
    with pytest.raises(OperationFailedError) as exc:
        host.save(a.id, path)
    assert (exc.value.name, exc.value.op) == (path, "save")
    assert path in exc.value.message and f"no directory {tmp_path}/nowhere" in exc.value.message
    _alive(host, a)
    with pytest.raises(OperationFailedError, match="no image at") as exc:
        host.restore(path)
    assert exc.value.name == path and f"no directory {tmp_path}/nowhere" in exc.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_path_the_process_may_not_write_or_read(host: HostModel, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    a = host.create("a")
    host.save(a.id, str(locked / "a.img"))
    locked.chmod(0o500)  # readable, not writable
    b = host.create("b")
    try:
        with pytest.raises(OperationFailedError, match="Permission denied") as exc:
            host.save(b.id, str(locked / "b.img"))
        assert exc.value.name == str(locked / "b.img")
        _alive(host, b)
        (locked / "a.img").chmod(0)
        with pytest.raises(OperationFailedError, match="Permission denied") as exc:
            host.restore(str(locked / "a.img"))
        assert exc.value.name == str(locked / "a.img")
    finally:
        locked.chmod(0o700)
        (locked / "a.img").chmod(0o600)
    assert os.listdir(locked) == ["a.img"]


def test_a_refusal_by_the_system_names_the_path(
        host: HostModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the permissions say, whoever runs the tests (root is refused nothing)."""
    path = str(tmp_path / "a.img")
    a = host.create("a")
    host.save(a.id, path)
    b = host.create("b")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(images_mod.tempfile, "mkstemp", denied)
    with pytest.raises(OperationFailedError, match="Permission denied") as exc:
        host.save(b.id, str(tmp_path / "b.img"))
    assert (exc.value.name, exc.value.op) == (str(tmp_path / "b.img"), "save")
    assert str(tmp_path / "b.img") in exc.value.message
    _alive(host, b)
    monkeypatch.setattr(images_mod.os, "open", denied)
    with pytest.raises(OperationFailedError, match="Permission denied") as exc:
        host.restore(path)
    assert (exc.value.name, exc.value.op) == (path, "restore") and path in exc.value.message


def test_a_path_that_is_not_an_image_is_neither_read_nor_overwritten(
        host: HostModel, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    notes = tmp_path / "mine" / "notes.txt"
    notes.write_text("precious")
    a = host.create("a")
    with pytest.raises(OperationFailedError, match="already exists") as exc:
        host.save(a.id, str(notes))
    assert exc.value.name == str(notes)
    assert notes.read_text() == "precious" and os.listdir(notes.parent) == ["notes.txt"]
    _alive(host, a)
    with pytest.raises(OperationFailedError, match="not an xvirt domain image") as exc:
        host.restore(str(notes))
    assert exc.value.name == str(notes)


@pytest.mark.parametrize("where", ["name", "path"])
def test_an_image_is_replaced_only_where_no_domain_is_lost(
        host: HostModel, tmp_path: Path, where: str) -> None:
    """libvirt and xm overwrite whatever is there; xvirt replaces the image of the
    domain being saved, or of a domain that runs, never the only copy of one."""
    image = "x.img" if where == "name" else str(tmp_path / "x.img")
    a, b = host.create("a"), host.create("b")
    host.save(a.id, image)
    with pytest.raises(OperationFailedError, match=f"holds domain {a.uuid}, which is not "
                                                   "running") as exc:
        host.save(b.id, image)  # a's only copy
    assert exc.value.name == image
    _alive(host, b)
    a_again = host.restore(image)  # a runs: its image is a copy of the past now
    host.save(b.id, image)
    assert [f for f in os.listdir(tmp_path) if "x.img" in f or "saving" in f] == (
        [] if where == "name" else ["x.img"])
    assert host.restore(image).uuid == b.uuid
    _alive(host, a_again)


@pytest.mark.parametrize("special", ["fifo", "directory", "/dev/zero", "/dev/null"])
def test_a_path_to_something_not_a_file_is_refused_without_waiting(
        host: HostModel, tmp_path: Path, special: str) -> None:
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)  # opened for reading, a FIFO with no writer would block
    elif special == "directory":
        path = str(tmp_path)
    with pytest.raises(OperationFailedError, match="not an xvirt domain image"):
        host.restore(path)
    a = host.create("a")
    with pytest.raises(OperationFailedError, match="already exists"):
        host.save(a.id, path)
    _alive(host, a)


def test_a_staged_save_to_a_path_is_undone_by_a_refused_commit(
        host: HostModel, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.stage(str(tmp_path / "p.img"), _saved())
    assert [p.name.startswith(".xvirt-saving-") for p in tmp_path.iterdir()
            if p.is_file()] == [True]
    store.abandon()
    assert not (tmp_path / "p.img").exists()
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []
    store.stage(str(tmp_path / "p.img"), _saved())
    store.settle()
    assert store.read(str(tmp_path / "p.img")) == _saved()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["p.img"]


def test_check_image_takes_names_and_absolute_paths_only() -> None:
    assert images_mod.check_image("a.img") == "a.img"
    assert images_mod.check_image("/x/../y/a.img") == "/x/../y/a.img"  # as given
    for bad in ["a/b", "./a", "../a", *BAD_PATHS]:
        with pytest.raises(InvalidArgumentError):
            images_mod.check_image(bad)


# -- the default host's images: a stable directory of the user's --------------------------------


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and XDG_STATE_HOME in tmp_path: no test writes to the real home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    return home


def test_the_default_hosts_directory_is_the_users_and_made_on_the_first_save(
        user_home: Path) -> None:
    expected = user_home / "state" / "xvirt" / "sim-default-images"
    h = _host_named("default")
    try:
        assert h.image_dir == str(expected)
        assert h.images() == [] and not expected.exists()  # opening writes nothing
        a = h.create("a")
        h.save(a.id, "a.img")
        assert (expected.stat().st_mode & 0o777, expected.parent.stat().st_mode & 0o777) == (
            0o700, 0o700)
        assert h.images() == ["a.img"]
    finally:
        h.close()
    assert (expected / "a.img").is_file()  # closing the host keeps the user's images
    other = _host_named("default")  # another instance (another process, as far as it knows)
    try:
        rec = other.restore("a.img")
        assert (rec.uuid, rec.name) == (a.uuid, "a")
    finally:
        other.close()


def test_without_xdg_state_home_the_default_directory_is_under_home(
        user_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_STATE_HOME")
    assert images_mod.user_image_dir() == user_home / ".local/state/xvirt/sim-default-images"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # the XDG spec: ignored
    assert images_mod.user_image_dir() == user_home / ".local/state/xvirt/sim-default-images"


def test_any_other_host_without_a_directory_keeps_a_temporary_one(user_home: Path) -> None:
    h = _host()
    try:
        assert not Path(h.image_dir).is_relative_to(user_home)
    finally:
        h.close()
    assert not Path(h.image_dir).exists()


def test_the_default_directory_that_cannot_be_made_fails_the_save_only(
        user_home: Path) -> None:
    (user_home / "state").write_text("not a directory")
    h = _host_named("default")
    try:
        a = h.create("a")
        with pytest.raises(OperationFailedError, match="cannot make the image directory"):
            h.save(a.id, "a.img")
        _alive(h, a)
    finally:
        h.close()


def _host_named(name: str) -> HostModel:
    return HostModel(name, clock=ManualClock())


def _run(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XVIRT_DEFAULT_URI",)}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_save_in_one_process_restores_in_another_on_sim_default(user_home: Path) -> None:
    save = ("import xvirt\n"
            "with xvirt.open('sim:///default') as conn:\n"
            "    dom = conn.lookup_by_name('web1')\n"
            "    print(dom.uuid)\n"
            "    dom.save('web1.img')\n")
    done = _run(save, user_home)
    assert done.returncode == 0, done.stderr
    uuid = done.stdout.strip()
    restore = ("import xvirt\n"
               "with xvirt.open('sim:///default') as conn:\n"
               "    web1 = conn.lookup_by_name('web1')  # this process's demo runs it too\n"
               "    try:\n"
               "        conn.restore('web1.img')\n"
               "    except xvirt.OperationFailedError as exc:\n"
               "        print('refused', exc.uuid)\n"
               "    web1.destroy()\n"
               "    back = conn.restore('web1.img')\n"
               "    print(back.uuid, back.name, back.info().state.name)\n")
    done = _run(restore, user_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"refused {uuid}", f"{uuid} web1 RUNNING"]
    assert os.listdir(user_home / "state" / "xvirt" / "sim-default-images") == ["web1.img"]
