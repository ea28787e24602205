"""Saved domain images: a directory of the host's, and any path its process may use.

An image is a plain file name in the host's image directory, never a path into
it: anything that could reach outside (separators, ``..``, NUL, a symlink
planted inside) is refused before a byte is written. The host model also takes
an absolute path, as xend did, because the embedded host acts only for its own
process, whose permissions are then the only ones involved; the daemon, which
acts for other users, hands it names only (daemon/control.py). Restore leaves
the image in place, as xm and libvirt do: while the restored domain runs its UUID
refuses a second restore, and once it is gone the image brings it back again. A
save replaces an image only where no domain is lost by it: one of the domain
being saved, or of a domain that runs; never an image of a domain that is not
running (its only copy), nor a file that is not an image.

The host named ``default`` (``sim:///default``, the same seeded demo host in
every process) keeps its images, when it is given no directory, in a per-user
one (``$XDG_STATE_HOME/xvirt/sim-default-images``, made 0700 on the first save),
so a save in one process can be restored in another. Any other host given no
directory gets a temporary one that goes with it.

A host that keeps its state in a store (the daemon) commits each request's
change after the request's file operations, and may be killed between the two.
So a save is staged under a hidden name and settled (``settle``) only once the
change is committed: ``.pending/NAME`` in the image directory (a directory, so
that any image name still fits; it exists only while something is staged), or a
``.xvirt-saving-*`` file beside an image saved to a path. A change the store
refuses has its save undone at once (``abandon``). Whatever a kill leaves
staged, ``recover`` settles or undoes from the committed state: a staged image
whose domain is still alive there belongs to a save that did not commit.
Without that, a kill between a save's write and its commit left an image of a
domain that was never saved. (Restores used to stage their image's removal
under ``.consumed/``; ``recover`` gives such an image its name back.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Container
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.host.devices import check_disks, check_nics, default_disks, default_nics
from xvirt.model import (
    MAX_VCPUS,
    DomainMetadata,
    MetadataElement,
    MetadataKind,
    check_image,
    check_image_name,
    check_metadata,
    check_name,
    check_scheduler,
    parse_uuid,
)
from xvirt.planes import DiskConfig, NicConfig

__all__ = ["DEFAULT_HOST", "ImageStore", "SavedDomain", "check_image", "check_settings",
           "check_vcpu_times", "metadata_from_json", "user_image_dir"]

_FORMAT = "xvirt-image/1"
_PENDING = ".pending"  # a save's image until the save is committed
_CONSUMED = ".consumed"  # left by older xvirt: a restore's image until it was committed
_SAVING = ".saving-"  # an image being written: never a complete one
_PATH_SAVING = ".xvirt-saving-"  # the same, beside an image saved to a path
#: An image is a few hundred bytes of JSON; a file this long is not one (and a path
#: may name anything: /dev/zero would otherwise be read until memory runs out).
_MAX_IMAGE_BYTES = 16 << 20
#: The host whose images, given no directory, are the user's (``sim:///default``).
DEFAULT_HOST = "default"


def user_image_dir() -> Path | None:
    """Where ``sim:///default`` keeps its images: ``$XDG_STATE_HOME/xvirt/sim-default-images``
    (``~/.local/state/...`` when unset or relative, as the XDG spec says), beside the
    daemon's and the libvirt driver's state; None when the user has no home directory."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".local", "state")
    return Path(base) / "xvirt" / "sim-default-images"




@dataclass(frozen=True)
class SavedDomain:
    """What an image holds: enough to bring the same domain back."""

    uuid: str
    name: str
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    cpu_time_ns: int
    os_type: str
    load: float
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    #: The most vCPUs it may bring online (``vcpus`` are online); 0 (an image or a
    #: definition from before the maximum was kept): as many as ``vcpus``.
    max_vcpus: int = 0
    #: Its credit scheduler share (xend's ``cpu_weight``/``cpu_cap``).
    sched_weight: int = 256
    sched_cap: int = 0
    metadata: DomainMetadata = field(default_factory=DomainMetadata)
    #: Each vCPU's own CPU time (``vcpu_limit`` of them, summing to ``cpu_time_ns``): a
    #: vCPU offline keeps what it ran. () (a definition, an image from before they
    #: were kept): ``cpu_time_ns`` shared evenly among the ``vcpus`` online.
    vcpu_times_ns: tuple[int, ...] = ()

    @property
    def vcpu_limit(self) -> int:
        """The most vCPUs it may have online (``max_vcpus``, or ``vcpus`` when unset)."""
        return max(self.max_vcpus, self.vcpus)


def _from_json(data: dict[str, Any]) -> SavedDomain:
    """An image's fields as a SavedDomain; an image from before domains had devices
    gets the devices a domain created without any gets, and one from before the
    maximum vCPUs, the scheduler, metadata and per-vCPU times were kept gets the
    defaults (the times: the even split of its CPU time)."""
    disks = data.pop("disks", None)
    nics = data.pop("nics", None)
    metadata = data.pop("metadata", None)
    vcpu_times = data.pop("vcpu_times_ns", None)
    if vcpu_times is not None and not isinstance(vcpu_times, list):
        raise ValueError("vCPU times are not a list")
    saved = SavedDomain(**data, vcpu_times_ns=() if vcpu_times is None else tuple(vcpu_times))
    return replace(
        saved,
        disks=default_disks(saved.name) if disks is None else tuple(
            DiskConfig(**d) for d in disks),
        nics=default_nics(saved.uuid) if nics is None else tuple(NicConfig(**n) for n in nics),
        metadata=DomainMetadata() if metadata is None else metadata_from_json(metadata),
    )


def metadata_from_json(data: Any) -> DomainMetadata:
    """``dataclasses.asdict`` of a DomainMetadata read back (a state file keeps it so
    too); TypeError, KeyError or ValueError when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("metadata is not an object")
    elements = data.get("elements", [])
    if not isinstance(elements, list):
        raise ValueError("metadata elements are not a list")
    return DomainMetadata(data.get("title"), data.get("description"),
                          tuple(MetadataElement(**e) for e in elements))


def _check_saved(saved: SavedDomain) -> None:
    """Raise ValueError (or InvalidArgumentError) unless the fields can describe a domain."""

    def whole(value: object, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"bad count {value!r}")

    whole(saved.memory_kib, 1)
    whole(saved.max_memory_kib, saved.memory_kib)
    whole(saved.vcpus, 1)
    whole(saved.cpu_time_ns, 0)
    if not 0 <= saved.load <= 1:  # TypeError if not a number
        raise ValueError(f"bad load {saved.load!r}")
    if not isinstance(saved.os_type, str) or parse_uuid(saved.uuid) != saved.uuid:
        raise ValueError("bad os_type or UUID")
    check_name(saved.name)
    if check_disks(saved.disks) != saved.disks or check_nics(saved.nics) != saved.nics:
        raise ValueError("devices not in canonical form")
    check_settings(saved)
    check_vcpu_times(saved)


def check_settings(saved: SavedDomain) -> None:
    """Raise ValueError (or InvalidArgumentError) unless the maximum vCPUs, the
    scheduler share and the metadata can be a domain's (an image, a state file)."""
    if isinstance(saved.max_vcpus, bool) or not isinstance(saved.max_vcpus, int) or not (
            saved.max_vcpus == 0 or saved.vcpus <= saved.max_vcpus <= max(MAX_VCPUS,
                                                                           saved.vcpus)):
        raise ValueError(f"bad max_vcpus {saved.max_vcpus!r}")
    check_scheduler(saved.sched_weight, saved.sched_cap, saved.vcpu_limit)
    meta = saved.metadata
    for kind, value in ((MetadataKind.TITLE, meta.title),
                        (MetadataKind.DESCRIPTION, meta.description)):
        if check_metadata(kind, value)[1] != value:
            raise ValueError(f"bad {kind.name.lower()}")
    uris = [e.uri for e in meta.elements]
    if len(set(uris)) != len(uris) or any(
            check_metadata(MetadataKind.ELEMENT, e.xml, e.key, e.uri) != (
                MetadataKind.ELEMENT, e.xml, e.key, e.uri) for e in meta.elements):
        raise ValueError("bad metadata elements")


def check_vcpu_times(saved: SavedDomain) -> None:
    """Raise ValueError unless ``saved.vcpu_times_ns`` is () or one integer >= 0 per
    vCPU it may have (``vcpu_limit``, checked by ``check_settings``) summing to its
    CPU time (an image, a state file): per-vCPU times are a split of that time."""
    times = saved.vcpu_times_ns
    if times == ():
        return
    if not isinstance(times, tuple) or len(times) != saved.vcpu_limit or any(
            type(t) is not int or t < 0 for t in times) or sum(times) != saved.cpu_time_ns:
        raise ValueError(f"bad vCPU times: {saved.vcpu_limit} integers >= 0 summing to the "
                         f"CPU time ({saved.cpu_time_ns} ns) expected")


@dataclass(frozen=True)
class _Staged:
    """A save's image written under a hidden name, and the name it will have."""

    path: Path
    final: Path
    #: The domains whose image at ``final`` it may replace: its own, and the one whose
    #: image was there when it was staged, which was running then.
    replaceable: frozenset[str]


class _AnyOf:
    """A container of what any of ``parts`` contains."""

    def __init__(self, *parts: Container[str]) -> None:
        self._parts = parts

    def __contains__(self, item: object) -> bool:
        return any(item in part for part in self._parts)


class ImageStore:
    """One directory of images, and any absolute path beside it; the directory is
    created (and removed on close) when none is given, except the default host's."""

    def __init__(self, directory: str | os.PathLike[str] | None, *, label: str = "host") -> None:
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self._made_on_need = False  # the user's directory: made by the first save
        user = user_image_dir() if directory is None and label == DEFAULT_HOST else None
        if user is not None:
            self.path = user
            self._made_on_need = True
        elif directory is None:
            self.path = Path(tempfile.mkdtemp(prefix=f"xvirt-{label}-images-"))
            # Also at interpreter exit: a process that never closes its embedded host
            # must not leave a directory behind.
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)
        else:
            try:
                self.path = Path(directory)
                self.path.mkdir(parents=True, exist_ok=True)
            except (OSError, TypeError, ValueError) as exc:  # ValueError: a NUL in the path
                reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                raise InvalidArgumentError(
                    f"cannot use image directory {str(directory)!r}: {reason}"
                ) from None
        self._staged: list[_Staged] = []

    def _path_of(self, name: str) -> Path:
        path = self.path / check_image_name(name)
        if path.is_symlink():
            raise InvalidArgumentError(
                "image name refers to a symbolic link, which could escape the image directory",
                name=name,
            )
        return path

    def _locate(self, image: str) -> tuple[Path, bool]:
        """The file ``image`` stands for, and whether it is in the image directory."""
        if check_image(image).startswith("/"):
            return Path(image), False
        return self._path_of(image), True

    def names(self) -> list[str]:
        try:
            entries = list(self.path.iterdir())
        except FileNotFoundError:  # the default host's, before its first save
            return []
        return sorted(p.name for p in entries if not p.name.startswith(".") and p.is_file())

    def exists(self, image: str) -> bool:
        return self._locate(image)[0].exists()

    def write(self, image: str, saved: SavedDomain, *, running: Container[str] = ()) -> None:
        """Write atomically and durably, in place at once. An image already there is
        replaced only if it holds this domain or one of ``running``."""
        self.stage(image, saved, running=running)
        self.settle()

    def stage(self, image: str, saved: SavedDomain, *, running: Container[str] = ()) -> None:
        """``write``, out of sight until ``settle``: for a save not yet committed."""
        final, inside = self._locate(image)
        if inside:
            self._make_on_need(image)
            pending = self.path / _PENDING / image
            if pending.exists():  # a save of this name waits for its commit
                raise OperationFailedError(f"image {image!r} already exists", name=image,
                                           op="save")
        there = self._check_free(image, final, saved.uuid, running)
        replaceable = frozenset({saved.uuid} if there is None else {saved.uuid, there})
        payload = json.dumps({"format": _FORMAT, **asdict(saved)}, sort_keys=True).encode()
        beside = final.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=_SAVING if inside else _PATH_SAVING, dir=beside)
        except OSError as exc:  # the directory is gone, not a directory, not ours, full...
            raise _cannot("write", image, exc, beside) from None
        keep = False
        try:
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            if inside:
                pending.parent.mkdir(exist_ok=True)
                os.link(tmp, pending)  # atomic, and fails if the name was taken meanwhile
                _fsync_dir(pending.parent)  # durable before the save can commit
                _fsync_dir(self.path)
                self._staged.append(_Staged(pending, final, replaceable))
            else:
                _fsync_dir(beside)
                self._staged.append(_Staged(Path(tmp), final, replaceable))
                keep = True
        except FileExistsError:
            raise OperationFailedError(
                f"image {image!r} already exists", name=image, op="save"
            ) from None
        except OSError as exc:
            self._tidy()
            raise _cannot("write", image, exc, beside) from None
        finally:
            if not keep:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _make_on_need(self, image: str) -> None:
        """The default host's directory, private to its user, made by its first save."""
        if not self._made_on_need or self.path.is_dir():
            return
        try:
            self.path.parent.parent.mkdir(parents=True, exist_ok=True)
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            self.path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OperationFailedError(
                f"cannot write image {image!r}: cannot make the image directory "
                f"{self.path}: {exc.strerror}", name=image, op="save") from None

    @staticmethod
    def _check_free(image: str, final: Path, uuid: str, running: Container[str]) -> str | None:
        """The domain whose image is at ``final``, if saving ``uuid`` may replace it
        (none there: None). libvirt and xm overwrite whatever is there; here an image
        of a domain that does not run is its only copy, and a file that is not an
        image may be the user's, so either is refused."""
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a component is not a directory, not searchable...
            raise _cannot("write", image, exc, final.parent) from None
        there = _uuid_in(final) if stat.S_ISREG(st.st_mode) else None
        if there is not None and (there == uuid or there in running):
            return there
        what = ("holds domain " + there + ", which is not running: replacing it would lose "
                "that domain" if there is not None else "is not an xvirt domain image")
        raise OperationFailedError(
            f"image {image!r} already exists and {what} (remove it, or save under "
            "another name)", name=image, uuid=uuid, op="save")

    def read(self, image: str) -> SavedDomain:
        path, inside = self._locate(image)
        # O_NOFOLLOW in the directory: a symlink swapped in after _path_of's check is
        # refused too. O_NONBLOCK: a FIFO at a path must not hang the host's lock.
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_NOFOLLOW if inside else 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            if inside:
                raise OperationFailedError(
                    f"no image named {image!r}", name=image, op="restore") from None
            missing = "" if path.parent.is_dir() else f" (no directory {path.parent})"
            raise OperationFailedError(
                f"no image at {image!r}{missing}", name=image, op="restore") from None
        except OSError as exc:
            if inside and exc.errno == errno.ELOOP:
                raise OperationFailedError(
                    f"cannot read image {image!r}: it became a symbolic link, which could "
                    "escape the image directory", name=image, op="restore") from None
            raise _cannot("read", image, exc, path.parent) from None
        try:
            raw = _read_regular(fd)
        except OSError as exc:
            raise _cannot("read", image, exc, path.parent) from None
        try:
            if raw is None:
                raise ValueError("not a regular file of an image's size")
            data = json.loads(raw)
            if data.pop("format") != _FORMAT:
                raise ValueError("unknown format")
            saved = _from_json(data)
            _check_saved(saved)
            return saved
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError,
                InvalidArgumentError):
            raise OperationFailedError(
                f"image {image!r} is not an xvirt domain image", name=image, op="restore"
            ) from None

    def remove(self, image: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._locate(image)[0].unlink()

    def settle(self) -> None:
        """Make the staged saves final: the change that made them is committed (or
        nothing keeps the host, so there is nothing to wait for)."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        for s in staged:
            _finish(s.path, s.final, s.replaceable)
        self._tidy()
        for directory in {s.final.parent for s in staged}:
            _fsync_dir(directory)

    def abandon(self) -> None:
        """Undo the staged saves: the change that made them was refused."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        for s in reversed(staged):
            _finish(s.path, None)
        self._tidy()
        _fsync_dir(self.path)

    def _tidy(self) -> None:
        """Remove the staging directories when nothing is staged in them."""
        for kind in (_PENDING, _CONSUMED):
            with contextlib.suppress(OSError):  # absent, or not empty
                (self.path / kind).rmdir()

    def recover(self, live_uuids: Container[str]) -> list[str]:
        """Settle or undo what a killed host left staged, from the committed state's
        live domains; returns what was done, for the log."""
        done = []
        with contextlib.suppress(FileNotFoundError):
            for path in sorted(self.path.glob(_SAVING + "*")):
                path.unlink(missing_ok=True)
                done.append(f"removed the unfinished {path.name}")
        for kind in (_PENDING, _CONSUMED):
            staging = self.path / kind
            if not staging.is_dir() or staging.is_symlink():
                continue
            for path in sorted(staging.iterdir()):
                if not path.is_file() or path.is_symlink():
                    continue
                uuid = _uuid_in(path)
                # A save whose domain is alive did not commit; one whose domain is not,
                # did, and replaces what it was allowed to (its own older image, or a
                # running domain's). A restore's image (older xvirt staged them) is
                # kept either way.
                keep = kind == _CONSUMED or uuid not in live_uuids
                _finish(path, self.path / path.name if keep else None,
                        _AnyOf({uuid} if uuid else set(), live_uuids))
                done.append(f"{'kept' if keep else 'dropped'} image {path.name} ({kind})")
        self._tidy()
        if done:
            _fsync_dir(self.path)
        return done

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()


def _cannot(what: str, image: str, exc: OSError, directory: Path) -> OperationFailedError:
    """An OSError on an image as an xvirt error naming the image (and the directory
    when that is what is missing)."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and not directory.is_dir():
        why = f"{why} (no directory {directory})"
    return OperationFailedError(f"cannot {what} image {image!r}: {why}", name=image,
                                op="save" if what == "write" else "restore")


def _finish(staged: Path, final: Path | None, replaceable: Container[str] = ()) -> None:
    """Give a staged image its final name, or delete it (``final`` None). An image
    there of a domain in ``replaceable`` is replaced; anything else that took the
    name meanwhile keeps the staged file, hidden, rather than lose either."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        if final is not None:
            there = _uuid_in(final)  # None for a symlink: never replaced
            if there is not None and there in replaceable:
                os.replace(staged, final)
                return
            os.link(staged, final)
        staged.unlink()


def _fsync_dir(path: Path) -> None:
    """Make the directory's entries (a link, a rename, an unlink) durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _uuid_in(path: Path) -> str | None:
    """The UUID an image file holds, or None if it is not a readable image."""
    try:
        raw = _read_regular(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
                                    | os.O_NOFOLLOW))
        uuid = None if raw is None else json.loads(raw).get("uuid")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return uuid if isinstance(uuid, str) else None


def _read_regular(fd: int) -> bytes | None:
    """The content of the open file ``fd`` (closed here), or None if it is not a
    regular file or is longer than any image."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= _MAX_IMAGE_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return None if size > _MAX_IMAGE_BYTES else b"".join(chunks)
