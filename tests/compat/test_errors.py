"""libvirtError and libvirt's error reporting, as libvirt-python has them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import xvirt.compat.libvirt as face

from .helpers import raised


def test_an_error_has_libvirts_fields(conn: face.virConnect) -> None:
    e = raised(lambda: conn.lookupByID(-1))
    assert e.err == (8, 20, "id in virDomainLookupByID must be zero or greater", 2,
                     "virDomainLookupByID", "id", None, 0, 0)
    assert (e.get_error_code(), e.get_error_domain(), e.get_error_level()) == (8, 20, 2)
    assert (e.get_str1(), e.get_str2(), e.get_str3()) == ("virDomainLookupByID", "id", None)
    assert (e.get_int1(), e.get_int2()) == (0, 0)
    assert str(e) == e.get_error_message() == e.args[0]


def test_a_scripts_own_libvirterror_has_no_codes() -> None:
    face.virResetLastError()
    e = face.libvirtError("my message")
    assert str(e) == "my message"
    assert e.err is None
    assert [e.get_error_code(), e.get_error_domain(), e.get_error_message(),
            e.get_error_level(), e.get_str1(), e.get_int1()] == [None] * 6


def test_the_last_error_is_the_raised_one_until_reset(conn: face.virConnect) -> None:
    assert face.virGetLastError() is None
    assert (face.virGetLastErrorCode(), face.virGetLastErrorDomain()) == (0, 0)
    assert face.virGetLastErrorMessage() == "no error"
    e = raised(lambda: conn.lookupByName("nope"))
    assert face.virGetLastError() == e.err
    assert face.virGetLastErrorCode() == face.VIR_ERR_NO_DOMAIN
    assert face.virGetLastErrorMessage() == e.get_error_message()
    face.virResetLastError()
    assert face.virGetLastError() is None


def test_the_last_error_is_per_thread(conn: face.virConnect) -> None:
    def other() -> None:
        raised(lambda: conn.lookupByName("elsewhere"))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert face.virGetLastError() is None


def test_the_handler_sees_every_error_with_its_context(conn: face.virConnect) -> None:
    calls: list[tuple[Any, Any]] = []
    assert face.registerErrorHandler(lambda ctx, e: calls.append((ctx, e)), "ctx") == 1
    e = raised(lambda: conn.lookupByID(999))
    assert calls == [("ctx", e.err)]


def test_a_broken_handler_does_not_replace_the_error(conn: face.virConnect,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_ctx: object, _e: object) -> None:
        raise RuntimeError("handler bug")

    face.registerErrorHandler(broken, None)
    assert raised(lambda: conn.lookupByID(999)).get_error_code() == face.VIR_ERR_NO_DOMAIN
    assert "handler bug" in capsys.readouterr().err


def test_without_a_handler_libvirt_prints_one_line(conn: face.virConnect,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    face.registerErrorHandler(None, None)
    raised(lambda: conn.lookupByID(999))
    raised(lambda: conn.lookupByUUIDString("not-a-uuid"))
    assert capsys.readouterr().err.splitlines() == [
        "libvirt: Xen Driver error : Domain not found: no domain with matching id 999",
        "libvirt: Domain Config error : Invalid UUID",  # as in the real capture
    ]


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(TypeError):
        face.registerErrorHandler("not callable", None)  # type: ignore[arg-type]
