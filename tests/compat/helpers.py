"""Helpers for the libvirt face's tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt.compat.libvirt as face
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirt_target import guest_xml


def _find_capture() -> Path:
    for base in (Path(__file__).resolve().parents[3] / "shared" / "realdata",
                 Path("/work/shared/realdata")):
        if (base / "libvirt").is_dir():
            return base / "libvirt" / "python-test-default.json"
    raise RuntimeError("realdata/libvirt (captures of real libvirt-python) is missing")


#: libvirt-python's answers on test:///default, captured on a real system.
CAPTURE: dict[str, Any] = json.loads(_find_capture().read_text())


def raised(call: Callable[[], object]) -> face.libvirtError:
    """The libvirtError ``call`` raises (nothing else may escape)."""
    with pytest.raises(face.libvirtError) as info:
        call()
    e = info.value
    assert str(e) == e.get_error_message()
    assert e.get_error_level() == face.VIR_ERR_ERROR
    return e


def err(call: Callable[[], object]) -> tuple[int | None, int | None, str | None]:
    """(code, error domain, message) of the libvirtError ``call`` raises."""
    e = raised(call)
    return e.get_error_code(), e.get_error_domain(), e.get_error_message()


@contextlib.contextmanager
def libvirt_admin(images: Path, guest_uuid: str) -> Iterator[Any]:
    """The outside world's connection to libvirt's test driver (it also keeps the
    driver's state alive), with a transient guest g0 beside the default 'test' and
    saved images under ``images`` (``conn.images``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(images))
        lv = real_libvirt()
        conn = lv.open("test:///default")
        guest = conn.createXML(guest_xml("g0", guest_uuid, memory_kib=65536, vcpus=1), 0)
        conn.images = images
        yield conn
        with contextlib.suppress(lv.libvirtError):
            guest.destroy()
        conn.close()
