"""libvirt's save/restore paths -> what an xvirt host takes.

libvirt takes a file path. An xvirt host takes a plain name in its image
directory, and the embedded host also takes an absolute path (it acts for this
process only), which a daemon refuses, naming its directory. So a path whose
parent directory, with ``..`` and symlinks resolved (the final component is not
followed: the host refuses a symlink planted inside), is the connection's image
directory becomes that plain name, which every host takes; any other path
becomes absolute (relative to the working directory, as libvirt's in-process
drivers resolve it) and the host decides. What cannot name a file at all is
refused before the host is asked.
"""

from __future__ import annotations

import os

from xvirt.compat._errors import arg_error, libvirtError
from xvirt.errors import InvalidArgumentError
from xvirt.model import check_image_name

__all__ = ["image_name"]


def image_name(path: object, image_dir: str | None, func: str, param: str) -> str:
    """The image ``path`` stands for on the host; raises libvirtError when it names
    no file. ``image_dir`` None: the connection does not know the host's directory,
    so every path goes to the host as it is."""
    if path is None:
        raise arg_error(func, param, f"{param} in {func} must not be NULL")
    if not isinstance(path, str):
        raise TypeError(f"{func}() argument must be str, not {type(path).__name__}")
    if "\x00" in path:
        raise _refused(func, param, "the path contains a NUL byte")
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        raise _refused(func, param, f"{path!r} does not name a file")
    if image_dir is not None and _plain(tail):
        try:
            if os.path.realpath(head or os.curdir) == os.path.realpath(image_dir):
                return tail
        except (OSError, ValueError):
            pass  # not resolvable: the host says what is wrong with the path
    if os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError as exc:  # the working directory was removed
        raise _refused(func, param, f"cannot resolve {path!r}: {exc.strerror}") from None


def _plain(name: str) -> bool:
    """Whether the host would take ``name`` as an image name (a ``.hidden`` file in the
    directory is still a path: the embedded host takes it, a daemon refuses it)."""
    try:
        check_image_name(name)
    except InvalidArgumentError:
        return False
    return True


def _refused(func: str, param: str, why: str) -> libvirtError:
    return arg_error(func, param, f"invalid argument: {why}")
