"""Saved domain images, all in one directory of the host.

An image name is a plain file name, never a path: anything that could reach
outside the directory (separators, ``..``, NUL, a symlink planted inside) is
refused before a byte is written. Saving never overwrites an existing image
and restore consumes the image only once the domain runs again, so no step
loses a domain.

A host that keeps its state in a store (the daemon) commits each request's
change after the request's file operations, and may be killed between the two.
So the file operations of a request are staged under hidden names and settled
(``settle``) only once the change is committed: a save writes ``.pending/NAME``
and a restore moves the image to ``.consumed/NAME`` (directories, so that any
image name still fits; they exist only while something is staged). A change the
store refuses has its operations undone at once (``abandon``). Whatever a kill leaves
staged, ``recover`` settles or undoes from the committed state: a staged
image whose domain is still alive there belongs to a save that did not commit
(or to a restore that did). Without that, a kill between a restore's removal
of the image and its commit lost the domain, and one between a save's write
and its commit left an image of a domain that was never saved.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Container
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.host.devices import check_disks, check_nics, default_disks, default_nics
from xvirt.model import check_image_name, check_name, parse_uuid
from xvirt.planes import DiskConfig, NicConfig

__all__ = ["ImageStore", "SavedDomain"]

_FORMAT = "xvirt-image/1"
_PENDING = ".pending"  # a save's image until the save is committed
_CONSUMED = ".consumed"  # a restore's image until the restore is committed
_SAVING = ".saving-"  # an image being written: never a complete one




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


def _from_json(data: dict[str, Any]) -> SavedDomain:
    """An image's fields as a SavedDomain; an image from before domains had devices
    gets the devices a domain created without any gets."""
    disks = data.pop("disks", None)
    nics = data.pop("nics", None)
    saved = SavedDomain(**data)
    return replace(
        saved,
        disks=default_disks(saved.name) if disks is None else tuple(
            DiskConfig(**d) for d in disks),
        nics=default_nics(saved.uuid) if nics is None else tuple(NicConfig(**n) for n in nics),
    )


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


class ImageStore:
    """One directory of images; created (and removed on close) when none is given."""

    def __init__(self, directory: str | os.PathLike[str] | None, *, label: str = "host") -> None:
        self._cleanup: weakref.finalize[Any, Any] | None = None
        if directory is None:
            self.path = Path(tempfile.mkdtemp(prefix=f"xvirt-{label}-images-"))
            # Also at interpreter exit: a process that never closes its embedded host
            # (every `xvirt list` on sim:///default) must not leave a directory behind.
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
        self._staged: list[tuple[Path, Path | None]] = []  # (staged file, final name or None)

    def _path_of(self, name: str) -> Path:
        path = self.path / check_image_name(name)
        if path.is_symlink():
            raise InvalidArgumentError(
                "image name refers to a symbolic link, which could escape the image directory",
                name=name,
            )
        return path

    def names(self) -> list[str]:
        return sorted(
            p.name for p in self.path.iterdir() if not p.name.startswith(".") and p.is_file()
        )

    def exists(self, name: str) -> bool:
        return self._path_of(name).exists()

    def _taken(self, name: str) -> bool:
        """Whether ``name`` is an image, or will be one once a staged save settles."""
        return self._path_of(name).exists() or (self.path / _PENDING / name).exists()

    def write(self, name: str, saved: SavedDomain) -> None:
        """Write atomically and durably, in place at once; refuse to replace an image."""
        self.stage(name, saved)
        self.settle()

    def stage(self, name: str, saved: SavedDomain) -> None:
        """``write``, out of sight until ``settle``: for a save not yet committed."""
        final = self._path_of(name)
        staged = self.path / _PENDING / name
        if self._taken(name):
            raise OperationFailedError(f"image {name!r} already exists", name=name, op="save")
        payload = json.dumps({"format": _FORMAT, **asdict(saved)}, sort_keys=True).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=_SAVING, dir=self.path)
        except OSError as exc:  # the directory is gone, not a directory, full...
            raise OperationFailedError(
                f"cannot write image {name!r}: {exc.strerror}", name=name, op="save"
            ) from None
        try:
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            staged.parent.mkdir(exist_ok=True)
            os.link(tmp, staged)  # atomic, and fails if the name was taken meanwhile
            _fsync_dir(staged.parent)  # durable before the save can commit
            _fsync_dir(self.path)
            self._staged.append((staged, final))
        except FileExistsError:
            raise OperationFailedError(
                f"image {name!r} already exists", name=name, op="save"
            ) from None
        except OSError as exc:
            self._tidy()
            raise OperationFailedError(
                f"cannot write image {name!r}: {exc.strerror}", name=name, op="save"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def read(self, name: str) -> SavedDomain:
        path = self._path_of(name)
        try:
            # O_NOFOLLOW: a symlink swapped in after _path_of's check is refused too.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise OperationFailedError(
                f"no image named {name!r}", name=name, op="restore"
            ) from None
        except OSError as exc:
            why = ("it became a symbolic link, which could escape the image directory"
                   if exc.errno == errno.ELOOP else exc.strerror)
            raise OperationFailedError(
                f"cannot read image {name!r}: {why}", name=name, op="restore"
            ) from None
        try:
            data = json.loads(raw)
            if data.pop("format") != _FORMAT:
                raise ValueError("unknown format")
            saved = _from_json(data)
            _check_saved(saved)
            return saved
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError,
                InvalidArgumentError):
            raise OperationFailedError(
                f"image {name!r} is not an xvirt domain image", name=name, op="restore"
            ) from None

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path_of(name).unlink()

    def consume(self, name: str) -> None:
        """Take the image of a restore out of sight; ``settle`` deletes it."""
        image = self._path_of(name)
        staged = self.path / _CONSUMED / name
        staged.parent.mkdir(exist_ok=True)
        try:
            os.replace(image, staged)
        except FileNotFoundError:
            self._tidy()
            return
        self._staged.append((staged, None))

    def settle(self) -> None:
        """Make the staged file operations final: the change that made them is
        committed (or nothing keeps the host, so there is nothing to wait for)."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        for path, final in staged:
            _finish(path, final)
        self._tidy()
        _fsync_dir(self.path)

    def abandon(self) -> None:
        """Undo the staged file operations: the change that made them was refused. A
        staged save is deleted; a consumed image gets its name back."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        for path, final in reversed(staged):
            _finish(path, None if final is not None else self.path / path.name)
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
                # Its domain alive: a save that did not commit, or a restore that did;
                # not alive: a save that did, or a restore that did not. Kept then.
                keep = _uuid_in(path) not in live_uuids
                _finish(path, self.path / path.name if keep else None)
                done.append(f"{'kept' if keep else 'dropped'} image {path.name} ({kind})")
        self._tidy()
        if done:
            _fsync_dir(self.path)
        return done

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()


def _finish(staged: Path, final: Path | None) -> None:
    """Give a staged file its final name, or delete it (``final`` None). A final
    name taken meanwhile keeps the staged file, hidden, rather than lose it."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        if final is not None:
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
        uuid = json.loads(path.read_bytes()).get("uuid")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return uuid if isinstance(uuid, str) else None
