"""libvirt's save/restore paths -> xvirt image names.

libvirt takes a file path; an xvirt host keeps images in one directory and
takes a plain name. A path is accepted only when its parent directory, with
``..`` and symlinks resolved (the final component is not followed: the host
refuses a symlink planted inside), is exactly the connection's image
directory. Anything else is refused before the host is asked, so nothing is
written.
"""

from __future__ import annotations

import os

from xvirt.compat import _constants as c
from xvirt.compat._errors import arg_error, error, libvirtError

__all__ = ["image_name"]


def image_name(path: object, image_dir: str | None, func: str, param: str) -> str:
    """The image name ``path`` stands for; raises libvirtError when there is none."""
    if path is None:
        raise arg_error(func, param, f"{param} in {func} must not be NULL")
    if not isinstance(path, str):
        raise TypeError(f"{func}() argument must be str, not {type(path).__name__}")
    if image_dir is None:
        raise error(c.VIR_ERR_NO_SUPPORT, c.VIR_FROM_DOMAIN,
                    f"{func} with a path: this connection does not know the host's image "
                    "directory, so no path can be mapped to an image")
    if "\x00" in path:
        raise _refused(func, param, "the path contains a NUL byte", image_dir)
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        raise _refused(func, param, f"{path!r} does not name a file", image_dir)
    try:
        parent = os.path.realpath(head or os.curdir)
        home = os.path.realpath(image_dir)
    except (OSError, ValueError) as exc:
        raise _refused(func, param, f"cannot resolve {path!r}: {exc}", image_dir) from None
    if parent != home:
        raise _refused(func, param, f"{path!r} is not in it", image_dir)
    return tail


def _refused(func: str, param: str, why: str, image_dir: str) -> libvirtError:
    return arg_error(func, param,
                     f"invalid argument: saved images must go to {image_dir}/ (the host's "
                     f"image directory): {why}")
