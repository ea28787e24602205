"""Every libvirtError becomes an xvirt error with the libvirt code kept."""

from __future__ import annotations

import pytest

from xvirt import errors
from xvirt.drivers.libvirt_errors import translate
from xvirt.libvirt_api.binding import real_libvirt


class FakeError:
    def __init__(self, code: int | None, message: str | None, domain: int | None = 13) -> None:
        self._code, self._message, self._domain = code, message, domain

    def get_error_code(self) -> int | None:
        return self._code

    def get_error_domain(self) -> int | None:
        return self._domain

    def get_error_message(self) -> str | None:
        return self._message


@pytest.mark.parametrize(("name", "cls"), [
    ("VIR_ERR_NO_DOMAIN", errors.NoDomainError),
    ("VIR_ERR_INVALID_ARG", errors.InvalidArgumentError),
    ("VIR_ERR_NO_SUPPORT", errors.UnsupportedError),
    ("VIR_ERR_OPERATION_UNSUPPORTED", errors.UnsupportedError),
    ("VIR_ERR_OPERATION_DENIED", errors.ReadOnlyError),
    ("VIR_ERR_AUTH_FAILED", errors.AuthError),
    ("VIR_ERR_SYSTEM_ERROR", errors.HostUnreachableError),
    ("VIR_ERR_NO_CONNECT", errors.HostUnreachableError),
    ("VIR_ERR_OPERATION_INVALID", errors.OperationFailedError),
    ("VIR_ERR_INTERNAL_ERROR", errors.OperationFailedError),
])
def test_codes_map_to_the_error_tree_and_are_kept(name: str, cls: type) -> None:
    code = getattr(real_libvirt(), name)  # libvirt's own value, not ours
    err = translate(FakeError(code, "boom"), uri="libvirt:test:///default", op="info",
                    uuid="u")
    assert type(err) is cls
    assert (err.libvirt_code, err.libvirt_domain) == (code, 13)  # what libvirt said, whole
    assert (err.uri, err.op, err.uuid) == ("libvirt:test:///default", "info", "u")
    assert "boom" in str(err) and f"libvirt_code={code}" in str(err)


def test_an_unknown_code_or_no_message_still_gives_a_named_error() -> None:
    err = translate(FakeError(None, None), uri="libvirt:x:///", op="destroy")
    assert isinstance(err, errors.OperationFailedError)
    assert "libvirt error None" in err.message


def test_a_real_libvirt_error_is_translated() -> None:
    lv = real_libvirt()
    conn = lv.open("test:///default")
    try:
        with pytest.raises(lv.libvirtError) as info:
            conn.lookupByID(999)
    finally:
        conn.close()
    err = translate(info.value, uri="libvirt:test:///default", domid=999)
    assert isinstance(err, errors.NoDomainError) and err.libvirt_code == 42
