"""Every VIR_* constant of the face has the real libvirt-python's value."""

from __future__ import annotations

import libvirt as real  # the real binding (this process has no shim)

import xvirt.compat.libvirt as face
from xvirt.compat import _constants
from xvirt.libvirt_api.binding import is_face

from .helpers import CAPTURE


def _face_names() -> list[str]:
    return [n for n in dir(face) if n.startswith("VIR_")]


def test_the_comparison_is_with_the_real_binding() -> None:
    assert not is_face(real)
    assert real.getVersion() == 9_000_000


def test_every_constant_has_libvirts_value() -> None:
    names = _face_names()
    assert len(names) > 400  # the star import re-exported the table
    wrong = {n: (getattr(face, n), getattr(real, n, "<absent>"))
             for n in names if n not in _constants._FACE_ONLY
             and getattr(real, n, object()) != getattr(face, n)}
    assert wrong == {}


def test_the_face_only_constants_are_cs_macros() -> None:
    # libvirt-python lacks them; libvirt.h defines them so.
    assert {n: getattr(face, n) for n in _constants._FACE_ONLY} == {
        "VIR_UUID_BUFLEN": 16, "VIR_UUID_STRING_BUFLEN": 37}
    assert not any(hasattr(real, n) for n in _constants._FACE_ONLY)


def test_the_captured_constants_are_all_there() -> None:
    assert {n: getattr(face, n) for n in CAPTURE["constants"]} == CAPTURE["constants"]


def test_the_families_scripts_use_are_complete() -> None:
    families = ("VIR_DOMAIN_EVENT_", "VIR_ERR_", "VIR_FROM_", "VIR_CRED_",
                "VIR_CONNECT_LIST_DOMAINS_", "VIR_CONNECT_GET_ALL_DOMAINS_STATS_",
                "VIR_DOMAIN_STATS_", "VIR_DOMAIN_XML_", "VIR_DOMAIN_AFFECT_",
                "VIR_DOMAIN_RUNNING", "VIR_DOMAIN_PAUSED", "VIR_DOMAIN_SHUTOFF")
    for prefix in families:
        assert ({n for n in dir(real) if n.startswith(prefix)}
                <= {n for n in _face_names() if n.startswith(prefix)}), prefix
