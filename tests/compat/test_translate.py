"""xvirt errors become libvirtError with libvirt's code, error domain and words."""

from __future__ import annotations

import pytest

import xvirt.compat.libvirt as face
from xvirt import errors
from xvirt.compat._translate import Backend, api, backend_for, translate

SIM = backend_for("sim:///default")


@pytest.mark.parametrize(("uri", "expected"), [
    ("sim:///lab", Backend("sim", face.VIR_FROM_XEN, xen=True)),
    ("xend://127.0.0.1:8000", Backend("xend", face.VIR_FROM_XEND, xen=True)),
    ("xend+unix:///run/xend.sock", Backend("xend", face.VIR_FROM_XEND, xen=True)),
    ("libvirt:test:///default", Backend("test", face.VIR_FROM_TEST, xen=False)),
    ("libvirt:test+unix:///default", Backend("test", face.VIR_FROM_TEST, xen=False)),
    ("libvirt:qemu:///system", Backend("qemu", face.VIR_FROM_QEMU, xen=False)),
    ("libvirt:xen:///system", Backend("xen", face.VIR_FROM_LIBXL, xen=False)),
    ("libvirt:weird:///", Backend("weird", face.VIR_FROM_NONE, xen=False)),
])
def test_backends(uri: str, expected: Backend) -> None:
    assert backend_for(uri) == expected


U = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.mark.parametrize(("exc", "code", "domain", "message"), [
    (errors.NoDomainError("gone"), 42, 1,
     f"Domain not found: no domain with matching uuid '{U}' (web1)"),
    (errors.InvalidArgumentError("bad name"), 8, 1, "invalid argument: bad name"),
    (errors.UnsupportedError("no way"), 3, 1,
     "this function is not supported by the connection driver: virDomainSave (no way)"),
    (errors.ReadOnlyError("ro"), 29, 20,
     "operation forbidden: read only access prevents virDomainSave"),
    (errors.OperationFailedError("domain is paused"), 55, 1,
     "Requested operation is not valid: domain is paused"),
    (errors.AuthError("wrong token"), 45, 1, "authentication failed: wrong token"),
    (errors.HostUnreachableError("daemon away"), 38, 7, "daemon away"),
    (errors.ProtocolError("garbage"), 39, 7, "garbage"),
    (errors.ConnectionClosedError("closed"), 6, 20, "invalid connection pointer in virDomainSave"),
    (errors.HandleClosedError("closed"), 7, 20, "invalid domain pointer in virDomainSave"),
    (errors.XvirtError("odd"), 1, 1, "internal error: odd"),
])
def test_each_xvirt_error(exc: errors.XvirtError, code: int, domain: int, message: str) -> None:
    e = translate(exc, SIM, "virDomainSave", uuid=U, name="web1")
    assert isinstance(e, face.libvirtError)
    assert (e.get_error_code(), e.get_error_domain(), e.get_error_message()) == (
        code, domain, message)


def test_the_libvirt_code_wins_with_libvirts_words() -> None:
    test = backend_for("libvirt:test:///default")
    e = translate(errors.OperationFailedError("libvirt: internal error: domain 'test' not "
                                              "running", libvirt_code=1), test, "virDomainSuspend")
    assert e.err is not None
    assert e.err[:3] == (1, 12, "internal error: domain 'test' not running")
    e = translate(errors.HostUnreachableError("libvirt: Cannot recv data", libvirt_code=38),
                  test, "virConnectListAllDomains")
    assert (e.get_error_code(), e.get_error_domain()) == (38, face.VIR_FROM_RPC)


def test_the_test_drivers_lookups_are_terse_and_others_detailed() -> None:
    from xvirt.compat._translate import not_found

    test = backend_for("libvirt:test:///default")
    assert not_found(test, "id", 999, lookup=True).get_error_message() == "Domain not found"
    assert not_found(SIM, "id", 999, lookup=True).get_error_message() == (
        "Domain not found: no domain with matching id 999")
    assert not_found(SIM, "name", "nope", lookup=True).get_error_message() == (
        "Domain not found: no domain with matching name 'nope'")


# -- the api wrapper ---------------------------------------------------------------------


class _Face:
    """A face object whose methods raise xvirt errors, wrapped as the face's are."""

    def _translate(self, exc: errors.XvirtError, func: str) -> face.libvirtError:
        return translate(exc, SIM, func)

    @api("virNothing")
    def nothing(self) -> str:
        raise errors.NoDomainError("none")

    @api("virOne")
    def one(self, id: int) -> int:
        if id < 0:
            raise errors.InvalidArgumentError(f"id {id}")
        return id * 2

    @api("virMany")
    def many(self, a: int, b: int = 1, *, flags: int = 0) -> tuple[int, int, int]:
        if flags:
            raise errors.UnsupportedError("flags")
        return a, b, flags


def test_wrapped_methods_translate_whatever_their_arguments() -> None:
    f = _Face()
    for call, code, func in [(f.nothing, 42, "virNothing"), (lambda: f.one(-1), 8, "virOne"),
                             (lambda: f.one(id=-1), 8, "virOne"),
                             (lambda: f.many(1, flags=1), 3, "virMany")]:
        with pytest.raises(face.libvirtError) as info:
            call()
        assert info.value.get_error_code() == code
        assert func in info.value.get_error_message() or code != 3


def test_wrapped_methods_take_arguments_as_python_would() -> None:
    f = _Face()
    assert (f.one(3), f.one(id=3)) == (6, 6)
    assert f.many(1) == (1, 1, 0)
    assert f.many(1, b=2) == (1, 2, 0)
    assert (_Face.one.__name__, _Face.nothing.__name__) == ("one", "nothing")
    for wrong in (lambda: f.one(), lambda: f.one(1, 2), lambda: f.one(ident=1),  # type: ignore
                  lambda: f.nothing(1)):  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            wrong()
