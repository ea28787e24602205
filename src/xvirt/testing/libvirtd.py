"""A private, real libvirtd for tests, serving libvirt's test driver (``test+unix:///default``).

Everything the daemon owns lives in one temporary directory: its configuration, its
sockets, its PID file, its log and (for a non-root user) its ``HOME`` and
``XDG_RUNTIME_DIR``. So it never touches ``/run/libvirt/*-sock`` or the user's session
daemon, and two test runs cannot collide. Clients reach it through the socket named in
``uri``; without ``?socket=`` they would reach the system or session daemon instead.

- As root it is the system-mode ``/usr/sbin/libvirtd``. The only shared thing it writes is
  libvirt's per-boot identity token, ``/run/libvirt/common/system.token``, whose path
  libvirt hard-codes for root.
- As any other user it is the same binary in session mode. libvirt would autostart one
  for a ``test+unix`` client, but that daemon is not our child, so it could not be
  stopped or killed by PID.

``LIBVIRT_DRIVER_DIR`` points at a directory of our own, so no hypervisor, network or storage
driver module loads but those named in ``drivers`` (e.g. ``("qemu",)``, linked from the
system's module directory); the test driver is built into libvirt.so. ``user`` runs the
daemon as another, existing user (root only), in session mode, with the state directory
handed to that user: ``xvirt.testing.qemu`` runs QEMU guests under ``nobody`` that way.

``sasl_users`` (``{"alice": "secret"}``) makes both sockets require a SASL login
(SCRAM-SHA-256: a user name and a password), so a client must answer libvirt's credential
callback, as on a daemon that is not one's own. The SASL configuration and the user database
live in the state directory too (``sasl_dir``); only the daemon's environment names them
(``SASL_CONF_PATH``): a client needs no SASL configuration. ``auth_file`` is a libvirt client
auth file with the first user's credentials (``LIBVIRT_AUTH_FILE``), for a client that must
not be asked, such as the readiness probe. Creating the database needs ``saslpasswd2``
(Debian's ``sasl2-bin``).

The daemon runs in the foreground as our child (no ``-d``), so ``stop``/``kill`` act on its
PID. It is never left behind: ``cleanup`` and an atexit hook kill it (the rules of
``_child.ChildProcess``), and ``--timeout`` makes an orphan (the test runner SIGKILLed) exit
once it has had no client for ``idle_timeout_s``.

The test driver's state lives in the daemon, and only while some connection is open.
After ``restart`` (or once every connection has closed) the host is pristine again: one
running domain, ``test``, with ID 1.

This module needs only the standard library, ``_child.py`` beside it, ``libvirtd`` and
``virsh`` (Debian's ``libvirt-daemon`` and ``libvirt-clients``). That lets it run under a
bare system Python, e.g. as another user, with the two files on ``sys.path``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

try:
    from ._child import ChildProcess
except ImportError:  # imported on its own, by a bare system Python (see above)
    from _child import ChildProcess  # type: ignore[import-not-found, no-redef]

__all__ = ["LIBVIRTD", "LibvirtdError", "LibvirtdProcess"]

LIBVIRTD = "/usr/sbin/libvirtd"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
#: A SASL mechanism that asks for a user name and a password, and needs no SSF (libvirt
#: asks for none on a unix socket). Cyrus' scram plugin (libsasl2-modules) provides it.
SASL_MECH = "scram-sha-256"
#: Where Cyrus SASL looks for its plugins (unless $SASL_PATH says): Debian's multiarch
#: directory, then others'. The mechanism's plugin must be in one of them.
SASL_PLUGIN_DIRS = (*sorted(Path("/usr/lib").glob("*-linux-gnu/sasl2")),
                    Path("/usr/lib64/sasl2"), Path("/usr/lib/sasl2"))
#: Where distributions keep libvirt's loadable connection drivers (libvirt_driver_<name>.so):
#: Debian's multiarch directory first.
DRIVER_MODULES = next(
    (p for p in (*sorted(Path("/usr/lib").glob("*-linux-gnu/libvirt/connection-driver")),
                 Path("/usr/lib64/libvirt/connection-driver")) if p.is_dir()),
    Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class LibvirtdError(RuntimeError):
    """libvirtd could not be started, or did not answer in time."""


class LibvirtdProcess(ChildProcess):
    """One private libvirtd and its temporary directory (removed by ``cleanup``).

    ``with LibvirtdProcess() as d:`` starts it and cleans up afterwards; clients use
    ``d.uri``. ``stop`` (SIGTERM): libvirtd closes its clients and removes its sockets.
    ``kill`` (SIGKILL): connected clients see the connection drop, as after a crash; the
    sockets stay behind, stale. ``restart`` keeps the socket: the same ``uri``, a pristine
    test host."""

    name = "libvirtd"
    error = LibvirtdError
    start_timeout_s = START_TIMEOUT_S
    stop_timeout_s = STOP_TIMEOUT_S
    poll_interval_s = 0.01

    def __init__(self, *, idle_timeout_s: int | None = 600, extra_config: str = "",
                 libvirtd: str = LIBVIRTD, virsh: str = "virsh", user: str | None = None,
                 drivers: Sequence[str] = (), uri_base: str = "test+unix:///default",
                 sasl_users: Mapping[str, str] | None = None,
                 saslpasswd2: str = SASLPASSWD2) -> None:
        account = pwd.getpwnam(user) if user is not None else None  # before the directory
        super().__init__(prefix="xvirt-libvirtd-", log_name="libvirtd.log")
        self.user = account
        if self.user is not None:
            self._user, self._group = self.user.pw_uid, self.user.pw_gid
            self._cwd = self.state_dir
        self.privileged = (os.geteuid() if self.user is None else self.user.pw_uid) == 0
        self._uri_base = uri_base
        self.socket = self.state_dir / "libvirt-sock"
        self.config = self.state_dir / "libvirtd.conf"
        self.pid_file = self.state_dir / "libvirtd.pid"
        if len(str(self.state_dir / "libvirt-admin-sock")) > _SOCKET_PATH_MAX:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise LibvirtdError(f"socket paths under {self.state_dir} are too long for "
                                "AF_UNIX: set TMPDIR to a shorter directory")
        self._libvirtd = libvirtd
        self._virsh = virsh
        self._idle_timeout_s = idle_timeout_s
        self.home = home = self.state_dir / "home"
        runtime = self.state_dir / "run"
        for d in (home, runtime, self.state_dir / "drivers"):
            d.mkdir(mode=0o700)
        for driver in drivers:
            module = DRIVER_MODULES / f"libvirt_driver_{driver}.so"
            if not module.exists():
                shutil.rmtree(self.state_dir, ignore_errors=True)
                raise LibvirtdError(f"{module} not found: install libvirt-daemon-driver-{driver}")
            (self.state_dir / "drivers" / module.name).symlink_to(module)
        self.sasl_users = dict(sasl_users) if sasl_users is not None else None
        self.sasl_dir: Path | None = None
        self.auth_file: Path | None = None
        if self.sasl_users is not None:
            try:
                self._write_sasl(self.sasl_users, saslpasswd2)
            except BaseException:
                shutil.rmtree(self.state_dir, ignore_errors=True)
                raise
        # Auth "none" is safe only because the sockets are 0700 in a 0700 directory: only
        # this user (and root) can connect.
        auth = "none" if self.sasl_users is None else "sasl"
        self.config.write_text(
            "listen_tls = 0\n"
            "listen_tcp = 0\n"
            f'unix_sock_dir = "{self.state_dir}"\n'
            'unix_sock_ro_perms = "0700"\n'
            'unix_sock_rw_perms = "0700"\n'
            'unix_sock_admin_perms = "0700"\n'
            f'auth_unix_ro = "{auth}"\n'
            f'auth_unix_rw = "{auth}"\n'
            "audit_level = 0\n"
            + extra_config)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LIBVIRT_", "XDG_")) and k != "DISPLAY"}
        env.update({
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            # A session daemon would otherwise join the user's D-Bus session.
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.state_dir / 'no-bus'}",
            "LIBVIRT_DRIVER_DIR": str(self.state_dir / "drivers"),
            "LIBVIRT_LOG_OUTPUTS": f"3:file:{self.log}",
        })
        if self.sasl_dir is not None:
            # libsasl2 reads <SASL_CONF_PATH>/libvirt.conf in the daemon (not /etc/sasl2).
            env["SASL_CONF_PATH"] = str(self.sasl_dir)
        self._env = env

    @property
    def uri(self) -> str:
        """The driver inside this daemon (``uri_base``: by default its test driver), for
        ``libvirt.open`` or ``virsh -c``."""
        return f"{self._uri_base}?socket={self.socket}"

    def _write_sasl(self, users: dict[str, str], saslpasswd2: str) -> None:
        """The SASL configuration, the user database and the client auth file, all in
        the state directory."""
        if not users:
            raise LibvirtdError("sasl_users: at least one user (the readiness probe logs in)")
        for name, password in users.items():
            # saslpasswd2 reads one line; libvirt's auth file holds key=value lines.
            if (not isinstance(name, str) or not isinstance(password, str)
                    or not name.isprintable() or not password.isprintable()
                    or not name.strip() or name != name.strip() or "@" in name
                    or not password or password != password.strip()):
                raise LibvirtdError(f"sasl_users: user {name!r} needs a printable name "
                                    "without '@' and a printable password, neither "
                                    "empty nor padded with spaces")
        if not os.access(saslpasswd2, os.X_OK):
            raise LibvirtdError(f"{saslpasswd2} not found: install sasl2-bin")
        # Without the plugin no client could log in: the start would time out, unexplained.
        if "SASL_PATH" not in os.environ and not any(
                any(d.glob("libscram.so*")) for d in SASL_PLUGIN_DIRS if d.is_dir()):
            raise LibvirtdError(f"no SASL plugin for {SASL_MECH} in any of "
                                f"{', '.join(map(str, SASL_PLUGIN_DIRS))}: "
                                "install libsasl2-modules")
        self.sasl_dir = sasl_dir = self.state_dir / "sasl"
        sasl_dir.mkdir(mode=0o700)
        database = sasl_dir / "passwd.db"
        (sasl_dir / "libvirt.conf").write_text(
            f"mech_list: {SASL_MECH}\n"
            f"sasldb_path: {database}\n")
        # -a libvirt reads libvirt.conf: ours, through SASL_CONF_PATH, never /etc/sasl2's.
        env = {**os.environ, "SASL_CONF_PATH": str(sasl_dir)}
        for name, password in users.items():
            # "--": a name may begin with "-"; its messages may quote a name cut mid-character
            made = subprocess.run(
                [saslpasswd2, "-f", str(database), "-a", "libvirt", "-c", "-p", "--", name],
                input=password + "\n", env=env, capture_output=True, encoding="utf-8",
                errors="replace", check=False)
            if made.returncode != 0:
                raise LibvirtdError(f"saslpasswd2 could not add SASL user {name!r} to "
                                    f"{database}: {made.stderr.strip() or made.returncode}")
        name, password = next(iter(users.items()))
        self.auth_file = self.state_dir / "auth.conf"
        self.auth_file.touch(mode=0o600)
        self.auth_file.write_text(
            "[credentials-xvirt]\n"
            f"authname={name}\n"
            f"password={password}\n"
            "\n"
            # libvirt looks up auth-<service>-<host>; a unix socket's host is localhost.
            "[auth-libvirt-localhost]\n"
            "credentials=xvirt\n")

    def _command(self) -> list[str]:
        if not os.access(self._libvirtd, os.X_OK):
            raise LibvirtdError(f"{self._libvirtd} not found: install libvirt-daemon")
        if self.user is not None:
            self._hand_over()
        return self._libvirtd_args()

    def _hand_over(self) -> None:
        """Everything in the state directory (written by us, or by a harness since) to the
        daemon's user, at every start: the daemon writes its log, sockets and state there."""
        assert self.user is not None
        self.log.touch()
        uid, gid = self.user.pw_uid, self.user.pw_gid
        os.chown(self.state_dir, uid, gid)
        for parent, dirs, files in os.walk(self.state_dir):
            for name in dirs + files:
                os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)

    def _libvirtd_args(self) -> list[str]:
        args = [self._libvirtd, "--config", str(self.config), "--pid-file", str(self.pid_file)]
        if self._idle_timeout_s is not None:
            args.append(f"--timeout={self._idle_timeout_s}")
        return args

    def _ready(self, deadline: float) -> bool:
        """The daemon answers a real client call. The socket appears once libvirtd listens;
        a stale one (after SIGKILL) only costs a refused probe."""
        if not self.socket.exists():
            return False
        try:
            probe = subprocess.run(
                [self._virsh, "-q", "-c", self.uri, "uri"],
                env=self._probe_env(),
                stdin=subprocess.DEVNULL, capture_output=True,
                timeout=max(1.0, deadline - time.monotonic()))
        except FileNotFoundError:
            raise LibvirtdError(f"{self._virsh} not found: install libvirt-clients") from None
        except subprocess.TimeoutExpired:
            return False
        return probe.returncode == 0

    def _probe_env(self) -> dict[str, str] | None:
        """Our own environment when the daemon is another user's (its HOME is theirs),
        else the daemon's; with SASL, the auth file that answers the login."""
        env = self._env if self.user is None else None
        if self.auth_file is None:
            return env
        return {**(env if env is not None else os.environ),
                "LIBVIRT_AUTH_FILE": str(self.auth_file)}
