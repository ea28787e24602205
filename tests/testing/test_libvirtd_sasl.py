"""A private libvirtd that requires a SASL login (``sasl_users``): the right password opens,
a wrong one, an unknown user or no credentials at all are refused, on both sockets; and
everything it needs stays in its temporary directory and its own environment."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xvirt.testing.libvirtd as libvirtd_module
from xvirt.testing.libvirtd import SASL_MECH, LibvirtdError, LibvirtdProcess

CREDS = [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE]


@pytest.fixture(scope="module")
def daemon() -> Iterator[LibvirtdProcess]:
    with LibvirtdProcess(sasl_users={"alice": "secret", "bob": "b0b = #pw;"}) as d:
        yield d


class Asker:
    """A credential callback that answers with ``name`` and ``password`` and records
    what libvirt asked for."""

    def __init__(self, name: str, password: str) -> None:
        self.name, self.password = name, password
        self.asked: list[list[int]] = []

    def __call__(self, creds: list[list[Any]], _data: object) -> int:
        self.asked.append([cred[0] for cred in creds])
        for cred in creds:
            cred[4] = self.name if cred[0] == libvirt.VIR_CRED_AUTHNAME else self.password
        return 0


@contextlib.contextmanager
def login(uri: str, name: str, password: str, flags: int = 0) -> Iterator[Any]:
    asker = Asker(name, password)
    conn = libvirt.openAuth(uri, [CREDS, asker, None], flags)
    try:
        assert asker.asked == [CREDS]
        yield conn
    finally:
        conn.close()


def refused(uri: str, name: str, password: str, flags: int = 0) -> int:
    """The error code of a login with these credentials (it must fail)."""
    with pytest.raises(libvirt.libvirtError) as info:
        libvirt.openAuth(uri, [CREDS, Asker(name, password), None], flags)
    code: int = info.value.get_error_code()
    return code


def test_the_right_password_opens_both_sockets(daemon: LibvirtdProcess) -> None:
    for flags in (0, libvirt.VIR_CONNECT_RO):
        for name, password in (("alice", "secret"), ("bob", "b0b = #pw;")):
            with login(daemon.uri, name, password, flags) as conn:
                assert conn.listDomainsID() == [1]
                dom = conn.lookupByID(1)
                assert dom.name() == "test"
                if flags == libvirt.VIR_CONNECT_RO:  # the read-only socket
                    with pytest.raises(libvirt.libvirtError) as info:
                        dom.suspend()
                    assert info.value.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED
                else:
                    dom.suspend()
                    assert dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED
                    dom.resume()


def test_a_wrong_password_or_an_unknown_user_is_refused(daemon: LibvirtdProcess) -> None:
    for flags in (0, libvirt.VIR_CONNECT_RO):
        assert refused(daemon.uri, "alice", "Secret", flags) == libvirt.VIR_ERR_AUTH_FAILED
        assert refused(daemon.uri, "alice", "b0b = #pw;", flags) == libvirt.VIR_ERR_AUTH_FAILED
        assert refused(daemon.uri, "carol", "secret", flags) == libvirt.VIR_ERR_AUTH_FAILED


def test_no_credentials_is_refused(daemon: LibvirtdProcess) -> None:
    for connect in (libvirt.open, libvirt.openReadOnly):
        with pytest.raises(libvirt.libvirtError) as info:
            connect(daemon.uri)
        assert info.value.get_error_code() == libvirt.VIR_ERR_AUTH_FAILED
    with pytest.raises(libvirt.libvirtError) as info:
        libvirt.openAuth(daemon.uri, [CREDS, lambda _c, _d: -1, None], 0)
    assert info.value.get_error_code() == libvirt.VIR_ERR_AUTH_FAILED


def virsh_uri(daemon: LibvirtdProcess, auth_file: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LIBVIRT_AUTH_FILE"}
    if auth_file is not None:
        env["LIBVIRT_AUTH_FILE"] = str(auth_file)
    return subprocess.run(["virsh", "-q", "-c", daemon.uri, "uri"], env=env, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          check=False)


def test_the_auth_file_logs_a_client_in_without_asking(daemon: LibvirtdProcess) -> None:
    assert daemon.auth_file is not None
    assert daemon.auth_file.parent == daemon.state_dir
    assert daemon.auth_file.stat().st_mode & 0o077 == 0
    ok = virsh_uri(daemon, daemon.auth_file)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == daemon.uri
    # Without it virsh asks on its terminal; it has none.
    assert virsh_uri(daemon, None).returncode != 0


def test_everything_stays_in_the_state_directory_and_the_daemons_environment(
        daemon: LibvirtdProcess) -> None:
    assert daemon.sasl_dir == daemon.state_dir / "sasl"
    conf = (daemon.sasl_dir / "libvirt.conf").read_text().splitlines()
    assert conf == [f"mech_list: {SASL_MECH}",
                    f"sasldb_path: {daemon.sasl_dir / 'passwd.db'}"]
    assert (daemon.sasl_dir / "passwd.db").is_file()
    lines = daemon.config.read_text().splitlines()
    assert [line for line in lines if line.startswith("auth_")] == [
        'auth_unix_ro = "sasl"', 'auth_unix_rw = "sasl"']
    environ = Path(f"/proc/{daemon.pid}/environ").read_bytes().split(b"\0")
    assert f"SASL_CONF_PATH={daemon.sasl_dir}".encode() in environ
    # The test process, the client, needs no SASL configuration of its own.
    assert "SASL_CONF_PATH" not in os.environ
    assert not Path("/etc/sasl2/libvirt.conf").exists() or "passwd.db" not in (
        Path("/etc/sasl2/libvirt.conf").read_text())


def test_without_sasl_users_the_sockets_ask_for_nothing() -> None:
    d = LibvirtdProcess()
    try:
        lines = d.config.read_text().splitlines()
        assert [line for line in lines if line.startswith("auth_")] == [
            'auth_unix_ro = "none"', 'auth_unix_rw = "none"']
        assert d.sasl_dir is None and d.auth_file is None
        assert not (d.state_dir / "sasl").exists()
    finally:
        d.cleanup()


def test_a_restart_keeps_the_users_and_cleanup_removes_them() -> None:
    with LibvirtdProcess(sasl_users={"alice": "secret"}) as d:
        d.restart()
        with login(d.uri, "alice", "secret") as conn:
            assert conn.listDomainsID() == [1]
        assert refused(d.uri, "alice", "wrong") == libvirt.VIR_ERR_AUTH_FAILED
    assert not d.state_dir.exists()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the harness makes its state directory: one that fails must leave none."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("users", [
    {}, {"": "secret"}, {" alice": "secret"}, {"al@ce": "secret"}, {"alice": ""},
    {"alice": "sec\nret"}, {"alice": " secret"}, {"alice": "secret\x00"},
], ids=repr)
def test_users_it_cannot_write_are_refused_before_anything_starts(
        private_tmp: Path, users: dict[str, str]) -> None:
    with pytest.raises(LibvirtdError, match="sasl_users"):
        LibvirtdProcess(sasl_users=users)
    assert list(private_tmp.iterdir()) == []


def test_a_missing_saslpasswd2_is_named(private_tmp: Path) -> None:
    with pytest.raises(LibvirtdError, match=r"/nonexistent/saslpasswd2 not found.*sasl2-bin"):
        LibvirtdProcess(sasl_users={"alice": "secret"}, saslpasswd2="/nonexistent/saslpasswd2")
    assert list(private_tmp.iterdir()) == []


def test_a_missing_sasl_plugin_is_named(private_tmp: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SASL_PATH", raising=False)
    monkeypatch.setattr(libvirtd_module, "SASL_PLUGIN_DIRS", (private_tmp / "sasl2",))
    with pytest.raises(LibvirtdError, match=r"scram-sha-256.*install libsasl2-modules"):
        LibvirtdProcess(sasl_users={"alice": "secret"})
    assert list(private_tmp.iterdir()) == []


def test_a_failing_saslpasswd2_is_reported(private_tmp: Path) -> None:
    with pytest.raises(LibvirtdError, match="could not add SASL user 'alice'"):
        LibvirtdProcess(sasl_users={"alice": "secret"}, saslpasswd2="/bin/false")
    assert list(private_tmp.iterdir()) == []


printable = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S"),
                                  include_characters=" "),
                    min_size=1, max_size=20).filter(lambda s: s == s.strip())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(users={"-0": "x"})  # saslpasswd2 took a name beginning with "-" for an option
@given(users=st.dictionaries(printable.filter(lambda s: "@" not in s), printable,
                             min_size=1, max_size=3))
def test_every_user_it_takes_logs_in_with_their_own_password_only(
        users: dict[str, str]) -> None:
    with LibvirtdProcess(sasl_users=users) as d:
        ready = virsh_uri(d, d.auth_file)  # the first user, through the auth file
        assert ready.returncode == 0, ready.stderr
        for name, password in users.items():
            with login(d.uri, name, password) as conn:
                assert conn.listDomainsID() == [1]
            assert refused(d.uri, name, password + "x") == libvirt.VIR_ERR_AUTH_FAILED


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the daemon as another user")
def test_a_session_daemon_of_another_user_requires_the_login_too() -> None:
    nobody = pwd.getpwnam("nobody")
    with LibvirtdProcess(sasl_users={"alice": "secret"}, user="nobody") as d:
        assert d.sasl_dir is not None
        assert (d.sasl_dir / "passwd.db").stat().st_uid == nobody.pw_uid  # it reads it
        assert Path(f"/proc/{d.pid}").stat().st_uid == nobody.pw_uid
        with login(d.uri, "alice", "secret") as conn:
            assert conn.listDomainsID() == [1]
        assert refused(d.uri, "alice", "wrong") == libvirt.VIR_ERR_AUTH_FAILED
