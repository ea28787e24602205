"""openAuth through the face on a libvirt URI that needs credentials: a private libvirtd
whose sockets require a SASL login. The script's callback is asked what libvirt asks, its
answers open the connection, and every refusal is the one real libvirt-python gives on the
same daemon, side by side; in-process and through ``xvirt compat``.

libvirt calls the callback once for every connection it opens. xvirt may open more than
one to the same URI (the calls it passes through to libvirt, and events, go over a second),
so the face may ask more often than libvirt-python does: what it asks must be the same
every time."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face
from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess

from .helpers import raised

USER, PASSWORD = "alice", "correct horse"
CREDS = [face.VIR_CRED_AUTHNAME, face.VIR_CRED_PASSPHRASE]
Question = tuple[int, str, str, Any, Any]  # libvirt's [type, prompt, challenge, default, result]


@pytest.fixture(scope="module")
def sasl() -> Iterator[LibvirtdProcess]:
    """A libvirtd (its test driver) that lets in only ``USER`` with ``PASSWORD``."""
    with LibvirtdProcess(sasl_users={USER: PASSWORD, "bob": "another one"}) as d:
        yield d


@pytest.fixture(scope="module")
def real() -> Any:
    """The real binding, its errors silenced (as xvirt's libvirt driver leaves it)."""
    lv = real_libvirt()
    ensure_event_loop(lv)
    return lv


class Answers:
    """A credential callback as a script writes one: it answers the user name and the
    password, and records what it was asked (before answering) and the cbdata it got."""

    def __init__(self, name: str = USER, password: str = PASSWORD, *, result: int = 0) -> None:
        self.name, self.password, self.result = name, password, result
        self.data: object = object()
        self.asked: list[list[Question]] = []
        self.data_seen: list[object] = []

    @property
    def auth(self) -> list[Any]:
        return [CREDS, self, self.data]

    def __call__(self, creds: list[list[Any]], data: object) -> int:
        self.asked.append([(c[0], c[1], c[2], c[3], c[4]) for c in creds])
        self.data_seen.append(data)
        for cred in creds:
            if cred[0] == face.VIR_CRED_AUTHNAME:
                cred[4] = self.name
            elif cred[0] == face.VIR_CRED_PASSPHRASE:
                cred[4] = self.password
        return self.result

    def asked_as(self, reference: Answers) -> None:
        """Asked at least once, every time what libvirt-python's one call was asked,
        with this callback's own cbdata."""
        assert len(reference.asked) == 1
        assert self.asked, "the callback was never called"
        assert all(asked == reference.asked[0] for asked in self.asked), self.asked
        assert all(data is self.data for data in self.data_seen)


def libvirt_error(real: Any, call: Any) -> Any:
    with pytest.raises(real.libvirtError) as info:
        call()
    return info.value


@pytest.mark.parametrize("prefix", ["", "libvirt:"], ids=["plain", "libvirt-prefix"])
def test_the_callbacks_answers_open_a_working_connection(
        sasl: LibvirtdProcess, real: Any, prefix: str) -> None:
    theirs, ours = Answers(), Answers()
    lv = real.openAuth(sasl.uri, theirs.auth, 0)
    conn = face.openAuth(prefix + sasl.uri, ours.auth, 0)
    try:
        assert isinstance(conn, face.virConnect)
        assert conn.listDomainsID() == lv.listDomainsID() == [1]
        dom, expected = conn.lookupByID(1), lv.lookupByID(1)
        assert isinstance(dom, face.virDomain)
        assert (dom.name(), dom.UUIDString()) == (expected.name(), expected.UUIDString())
        assert dom.info()[:4] == expected.info()[:4]  # [4] is CPU time, still running
        assert conn.lookupByName("test").ID() == 1
        # Not accelerated: libvirt's own answer, over a connection xvirt opened with the
        # same credentials.
        assert conn.getCapabilities() == lv.getCapabilities()
        assert conn.getHostname() == lv.getHostname()
    finally:
        conn.close()
        lv.close()
    assert theirs.asked[0] == [
        (face.VIR_CRED_AUTHNAME, "Please enter your authentication name",
         "Authentication Name", None, None),
        (face.VIR_CRED_PASSPHRASE, "Please enter your password", "Password", None, None)]
    ours.asked_as(theirs)


def test_another_users_login_opens_too(sasl: LibvirtdProcess) -> None:
    ours = Answers("bob", "another one")
    conn = face.openAuth(sasl.uri, ours.auth, 0)
    try:
        assert conn.listDomainsID() == [1]
        assert conn.getCapabilities().startswith("<capabilities>")
    finally:
        conn.close()
    assert ours.asked


# (user, password, what the callback returns, credential types, flags)
REFUSALS: dict[str, tuple[str, str, int, list[int], int]] = {
    "wrong password": (USER, "correct horse!", 0, CREDS, 0),
    "another user's password": (USER, "another one", 0, CREDS, 0),
    "unknown user": ("mallory", PASSWORD, 0, CREDS, 0),
    "the callback fails": (USER, PASSWORD, -1, CREDS, 0),
    "wrong password, read-only": (USER, "wrong", 0, CREDS, face.VIR_CONNECT_RO),
    "the callback fails, read-only": (USER, PASSWORD, -1, CREDS, face.VIR_CONNECT_RO),
    # With no credential types libvirt offers SASL no mechanism that needs them.
    "no credential types": (USER, PASSWORD, 0, [], 0),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_refused_login_is_libvirts_refusal(sasl: LibvirtdProcess, real: Any,
                                             case: str) -> None:
    name, password, result, credtypes, flags = REFUSALS[case]
    theirs = Answers(name, password, result=result)
    ours = Answers(name, password, result=result)
    expected = libvirt_error(real, lambda: real.openAuth(
        sasl.uri, [credtypes, theirs, theirs.data], flags))
    got = raised(lambda: face.openAuth(sasl.uri, [credtypes, ours, ours.data], flags))
    assert expected.get_error_code() == face.VIR_ERR_AUTH_FAILED
    assert got.get_error_code() == expected.get_error_code()
    assert got.get_error_message() == expected.get_error_message()
    if credtypes:
        ours.asked_as(theirs)
    else:
        assert ours.asked == theirs.asked == []


def test_no_credentials_at_all_is_libvirts_refusal(sasl: LibvirtdProcess, real: Any) -> None:
    for theirs, ours in ((real.open, face.open), (real.openReadOnly, face.openReadOnly)):
        expected = libvirt_error(real, lambda: theirs(sasl.uri))  # noqa: B023
        got = raised(lambda: ours(sasl.uri))  # noqa: B023
        assert (got.get_error_code(), got.get_error_message()) == (
            expected.get_error_code(), expected.get_error_message())
        assert got.get_error_code() == face.VIR_ERR_AUTH_FAILED


def test_a_refused_login_names_libvirts_error_domain(sasl: LibvirtdProcess, real: Any) -> None:
    for answers in (Answers(USER, "wrong"), Answers(result=-1)):
        expected = libvirt_error(real, lambda: real.openAuth(sasl.uri, answers.auth, 0))  # noqa: B023
        got = raised(lambda: face.openAuth(sasl.uri, answers.auth, 0))  # noqa: B023
        assert got.get_error_domain() == expected.get_error_domain()


def test_read_only_logs_in_on_the_read_only_socket(sasl: LibvirtdProcess, real: Any) -> None:
    theirs, ours = Answers(), Answers()
    lv = real.openAuth(sasl.uri, theirs.auth, real.VIR_CONNECT_RO)
    conn = face.openAuth(sasl.uri, ours.auth, face.VIR_CONNECT_RO)
    try:
        assert conn.listDomainsID() == lv.listDomainsID() == [1]
        dom = conn.lookupByID(1)
        assert dom.info()[:4] == lv.lookupByID(1).info()[:4]
        assert conn.getCapabilities() == lv.getCapabilities()
        expected = libvirt_error(real, lv.lookupByID(1).suspend)
        got = raised(dom.suspend)
        assert expected.get_error_code() == face.VIR_ERR_OPERATION_DENIED
        assert (got.get_error_code(), got.get_error_domain(), got.get_error_message()) == (
            expected.get_error_code(), expected.get_error_domain(),
            expected.get_error_message())
        assert dom.info()[0] == face.VIR_DOMAIN_RUNNING
    finally:
        conn.close()
        lv.close()
    ours.asked_as(theirs)


def test_a_read_write_login_acts(sasl: LibvirtdProcess) -> None:
    conn = face.openAuth(sasl.uri, Answers().auth, 0)
    try:
        dom = conn.lookupByID(1)
        dom.suspend()
        assert dom.info()[0] == face.VIR_DOMAIN_PAUSED
        dom.resume()
        assert dom.info()[0] == face.VIR_DOMAIN_RUNNING
    finally:
        conn.close()


def test_a_reconnect_logs_in_again_with_the_callback() -> None:
    """xvirt reopens a lost connection by itself (C8): with the script's credentials."""
    with LibvirtdProcess(sasl_users={USER: PASSWORD}) as d:
        ours = Answers()
        conn = face.openAuth(d.uri, ours.auth, 0)
        try:
            assert conn.lookupByID(1).info()[0] == face.VIR_DOMAIN_RUNNING
            before = len(ours.asked)
            d.restart()  # a pristine test driver; every client dropped
            assert conn.lookupByID(1).info()[0] == face.VIR_DOMAIN_RUNNING
            assert conn.getCapabilities().startswith("<capabilities>")
            assert len(ours.asked) > before
            assert all(asked == ours.asked[0] for asked in ours.asked)
        finally:
            conn.close()


def test_a_uri_that_needs_no_credentials_never_calls_back(
        host: xvirt.sim.Host, real: Any) -> None:
    theirs = Answers()
    real.openAuth("test:///default", theirs.auth, 0).close()
    assert theirs.asked == []
    for uri in ("test:///default", host.uri):
        ours = Answers()
        conn = face.openAuth(uri, ours.auth, 0)
        try:
            ids = conn.listDomainsID()
            assert conn.lookupByID(ids[0]).info()[0] == face.VIR_DOMAIN_RUNNING
        finally:
            conn.close()
        assert ours.asked == []


# -- an unmodified script, through `xvirt compat` -----------------------------------------------

SCRIPT = '''\
import hashlib
import sys

import libvirt

uri = sys.argv[1]
libvirt.registerErrorHandler(lambda ctx, err: None, None)
print("face", getattr(libvirt, "__xvirt_face__", False))
asked = []


def answer(creds, data):
    asked.append(repr([c[:4] for c in creds]) + " " + repr(sorted(data)))
    for cred in creds:
        if cred[0] == libvirt.VIR_CRED_AUTHNAME:
            cred[4] = data["user"]
        elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
            cred[4] = data["password"]
    return data["result"]


def attempt(label, password, flags=0, result=0):
    del asked[:]
    data = {"user": "alice", "password": password, "result": result}
    try:
        conn = libvirt.openAuth(
            uri, [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, data],
            flags)
    except libvirt.libvirtError as e:
        print(label, "refused", e.get_error_code(), e.get_error_message())
    else:
        ids = conn.listDomainsID()
        dom = conn.lookupByID(ids[0])
        caps = hashlib.sha256(conn.getCapabilities().encode()).hexdigest()
        print(label, "opened", ids, dom.name(), dom.UUIDString(), dom.info()[:4], caps)
        try:
            dom.suspend()
        except libvirt.libvirtError as e:
            print(label, "suspend refused", e.get_error_code(), e.get_error_message())
        else:
            print(label, "suspended", dom.info()[0])
            dom.resume()
        conn.close()
    # libvirt asks once per connection it opens: how often is not the point, what is.
    print(label, "asked", len(asked) > 0, sorted(set(asked)))


attempt("right", sys.argv[2])
attempt("right-ro", sys.argv[2], libvirt.VIR_CONNECT_RO)
attempt("wrong", sys.argv[2] + "!")
attempt("wrong-ro", sys.argv[2] + "!", libvirt.VIR_CONNECT_RO)
attempt("gives-up", sys.argv[2], result=-1)
'''


def run_script(path: Path, uri: str, *, compat: bool) -> list[str]:
    argv = [sys.executable, str(path), uri, PASSWORD]
    if compat:
        argv = [sys.executable, "-m", "xvirt", "compat", "--", *argv]
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIBVIRT_DEFAULT_URI", "LIBVIRT_AUTH_FILE")}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                         check=False, cwd=path.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


def test_a_script_logs_in_through_xvirt_compat_as_on_libvirt(
        sasl: LibvirtdProcess, real: Any, tmp_path: Path) -> None:
    path = tmp_path / "login.py"
    path.write_text(SCRIPT)
    expected = run_script(path, sasl.uri, compat=False)
    assert expected.pop(0) == "face False"
    assert [line.split()[1] for line in expected] == [
        "opened", "suspended", "asked", "opened", "suspend", "asked", "refused", "asked",
        "refused", "asked", "refused", "asked"]
    lv = real.openAuth(sasl.uri, Answers().auth, 0)
    try:
        uuid = lv.lookupByID(1).UUIDString()
        caps = hashlib.sha256(lv.getCapabilities().encode()).hexdigest()
    finally:
        lv.close()
    assert expected[0].startswith(f"right opened [1] test {uuid} [1, ")
    assert expected[0].endswith(caps)
    assert expected[2].startswith("right asked True")
    assert expected[6] == (f"wrong refused {face.VIR_ERR_AUTH_FAILED} "
                           "authentication failed: authentication failed")
    assert run_script(path, sasl.uri, compat=True) == ["face True", *expected]
