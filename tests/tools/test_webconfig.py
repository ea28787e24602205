"""``--web-config-file``: the exporter-toolkit format, parsed strictly, and the basic
auth check with its cache of successes."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from xvirt.tools import webconfig
from xvirt.tools.webconfig import (
    BasicAuth,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
    ssl_adapter,
)


def make_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by the openssl CLI."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def hashed(password: str, prefix: bytes = b"$2b$") -> str:
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
    return (prefix + h[4:]).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_an_empty_file_means_plain_http_open_to_all(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("")
    assert load_web_config(tmp_path / "web.yml") == WebConfig()
    assert parse_web_config("basic_auth_users:\ntls_server_config:\n", base_dir=tmp_path) == \
        WebConfig()


def test_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    make_cert(conf_dir)
    h = hashed("secret", b"$2y$")  # htpasswd's prefix
    (conf_dir / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n"
        f"basic_auth_users:\n  alice: '{h}'\n")
    config = load_web_config(conf_dir / "web.yml")
    assert config.tls is not None
    assert config.tls.cert_file == conf_dir / "server.crt"
    assert config.tls.key_file == conf_dir / "server.key"
    assert config.tls.min_version is ssl.TLSVersion.TLSv1_3
    assert config.users == {"alice": h.encode()}
    adapter = ssl_adapter(config.tls)
    assert adapter.context.minimum_version is ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(("text", "message"), [
    ("tls_server_config: [", "invalid YAML"),
    ("- a\n- b\n", "the file must be a mapping, not a list"),
    ("http_server_config:\n  http2: true\n", "http_server_config: unknown or unsupported key"),
    ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
     "tls_server_config.client_ca_file: unknown or unsupported key"),
    ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file is required"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: k\n",
     "tls_server_config.cert_file: "),
    ("tls_server_config: yes\n", "tls_server_config must be a mapping, not bool True"),
    ("basic_auth_users:\n  bob: plaintext\n", "basic_auth_users.bob: not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': '$2b$04$abcdefghijklmnopqrstuuJ1K8rN5e0x8Yd9r3m1O4qKjz0p8lq8S'\n",
     "'a:b' is not a user name"),
    ("basic_auth_users:\n  bob: 12\n", "basic_auth_users.bob: not a bcrypt hash"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "k").write_text("key")
    with pytest.raises(WebConfigError) as err:
        parse_web_config(text, base_dir=tmp_path, where="web.yml")
    assert message in str(err.value)
    assert str(err.value).startswith(("web.yml: ", "cannot"))
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_versions(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError,
                       match=r"cannot read web config file .*nothere\.yml: No such"):
        load_web_config(tmp_path / "nothere.yml")
    cert, key = make_cert(tmp_path)
    base = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    with pytest.raises(WebConfigError, match=r"min_version: 'TLS1\.2' is not one of TLS10"):
        parse_web_config(base + "  min_version: TLS1.2\n", base_dir=tmp_path)
    with pytest.raises(WebConfigError, match="max_version is below min_version"):
        parse_web_config(base + "  min_version: TLS13\n  max_version: TLS12\n",
                         base_dir=tmp_path)


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(tmp_path: Path) -> None:
    cert, _ = make_cert(tmp_path, "one")
    _, other_key = make_cert(tmp_path, "two")
    config = parse_web_config(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {other_key}\n", base_dir=tmp_path)
    assert config.tls is not None
    with pytest.raises(WebConfigError, match=r"cannot use tls_server_config.cert_file .*one.crt"):
        ssl_adapter(config.tls)
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    config = parse_web_config(
        f"tls_server_config:\n  cert_file: {tmp_path / 'garbage.pem'}\n  key_file: {other_key}\n",
        base_dir=tmp_path)
    assert config.tls is not None
    with pytest.raises(WebConfigError, match=r"garbage\.pem"):
        ssl_adapter(config.tls)


def test_basic_auth_accepts_only_the_right_password() -> None:
    auth = BasicAuth({"alice": hashed("secret").encode(), "bob": hashed("pw", b"$2y$").encode()})
    assert auth.check(basic("alice", "secret"))
    assert auth.check(basic("bob", "pw"))
    assert auth.check(basic("alice", "secret").replace("Basic", "basic"))
    for header in (None, "", basic("alice", "wrong"), basic("alice", ""), basic("carol", "secret"),
                   basic("bob", "secret"), "Bearer " + basic("alice", "secret")[6:],
                   "Basic !!!notbase64", "Basic " + base64.b64encode(b"alice").decode(),
                   basic("alice", "secret" + "x" * 80)):
        assert not auth.check(header), header


def test_successes_and_failures_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth({"alice": hashed("secret").encode()})
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(password)
        return real(password, hashed_password)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    for _ in range(5):
        assert auth.check(basic("alice", "secret"))
    assert calls == [b"secret"]
    for _ in range(3):  # a repeated wrong password costs bcrypt once
        assert not auth.check(basic("alice", "guess"))
    assert not auth.check(basic("mallory", "guess"))  # an unknown user costs bcrypt too
    assert calls == [b"secret"] + [b"guess"] * 2
    assert auth.check(basic("alice", "secret"))
    assert len(calls) == 3
    assert (auth.verifications, auth.remembered_failures, auth.busy) == (3, 2, 0)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BasicAuth, "CACHE_SIZE", 2)
    users = {f"u{i}": hashed("pw").encode() for i in range(3)}
    auth = BasicAuth(users)
    for user in users:
        assert auth.check(basic(user, "pw"))
    assert len(auth._good) == 2
