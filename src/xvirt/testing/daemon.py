"""A real ``xvirt daemon`` process for tests: started on a free port and a temporary
socket, stopped by PID, killed with SIGKILL on demand, restarted on the same state (the
rules of ``_child.ChildProcess``).

``DaemonTarget`` makes it a conformance-kit target: the kit plays the outside
world through the daemon's own administration routes (over the trusted unix
socket) and reaches the host through the xend driver, as any client would.
Defined domains have no administration route: the outside world defines, starts
and undefines them with xend's own requests (``op=new``, ``op=start``,
``op=delete``, ``GET /xend/domain?state=halted``), as ``xm`` does, over the same
socket and with the daemon's token.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import xvirt
from xvirt.connection import Connection
from xvirt.errors import HostUnreachableError, XvirtError
from xvirt.host.hypervisor import DomainRecord, JournalEntry
from xvirt.model import DomainState
from xvirt.planes import Definition
from xvirt.testing._child import ChildProcess
from xvirt.testing.conformance import CAPABILITIES
from xvirt.wire import records, sxp

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DaemonProcess", "DaemonTarget", "free_port"]

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess(ChildProcess):
    """One daemon and its state directory (removed by ``cleanup``, unless it was given).

    ``stop`` (SIGTERM) is a graceful shutdown; ``kill`` (SIGKILL) gives it no chance to
    clean up, as after a crash."""

    name = "the daemon"
    start_timeout_s = START_TIMEOUT_S
    poll_interval_s = 0.02
    exited_message = "{name} exited with {status}: {log}"
    late_message = "{name} did not start in time"
    message_log_chars = 2000

    def __init__(self, *, tcp: bool = True, token: bool = True, empty: bool = True,
                 control_latency_ms: float = 0.0, extra: tuple[str, ...] = (),
                 state_dir: Path | None = None) -> None:
        super().__init__(prefix="xvirt-daemon-test-", log_name="daemon.log",
                         state_dir=state_dir)
        self.socket = self.state_dir / "xend.sock"
        self.port = free_port() if tcp else None
        self.token: str | None = None
        self.token_file: Path | None = None
        if token:
            self.token = secrets.token_hex(16)
            self.token_file = self.state_dir / "token"
            self.token_file.write_text(self.token + "\n")
            self.token_file.chmod(0o600)
        self.args = ["--state-dir", str(self.state_dir),
                     "--control-latency-ms", str(control_latency_ms), *extra]
        if empty:
            self.args.append("--empty")
        if self.port is not None:
            self.args += ["--listen", f"127.0.0.1:{self.port}"]
        if self.token_file is not None:
            self.args += ["--token-file", str(self.token_file)]
        self._more: tuple[str, ...] = ()

    @property
    def unix_uri(self) -> str:
        return f"xend+unix://{self.socket}"

    @property
    def tcp_uri(self) -> str:
        if self.port is None:
            raise ValueError("this daemon serves no TCP")
        return f"xend://127.0.0.1:{self.port}"

    def start(self, *more: str) -> Self:
        """Start with ``more`` arguments after ``args``, for this start only."""
        self._more = more
        return super().start()

    def restart(self, *more: str) -> None:
        self.stop()
        self.start(*more)

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "xvirt", "daemon", *self.args, *self._more]

    @contextlib.contextmanager
    def _probing(self) -> Iterator[Callable[[float], bool]]:
        """The control plane answers; one client for the whole wait, none kept after it."""
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://localhost") as client:
            def answers(_deadline: float) -> bool:
                try:
                    return client.get("/xend/node/").status_code == 200
                except httpx.TransportError:
                    return False
            yield answers


class _AdminHost:
    """HostControl over the daemon's administration routes (the trusted socket)."""

    def __init__(self, daemon: DaemonProcess, max_domid: int) -> None:
        self._daemon = daemon
        self._max_domid = max_domid
        self._client = self._connect()

    def _connect(self) -> httpx.Client:
        """A client on the trusted socket; it sends the token too, as ``xm`` would over
        TCP (the unix socket does not ask for it)."""
        token = self._daemon.token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self._daemon.socket)),
                            base_url="http://localhost", timeout=30.0, headers=headers)

    def _post(self, op: str, **fields: Any) -> sxp.Sx | None:
        response = self._client.post("/xvirt/host", data={"op": op, **{
            k: str(v) for k, v in fields.items()}})
        self._raise(response)
        return sxp.parse(response.content) if response.content.strip() else None

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        if response.status_code >= 300:
            kind = response.headers.get("X-Xvirt-Error", "")
            text = response.text
            with contextlib.suppress(XvirtError):
                text = records.parse_error(sxp.parse(response.content)) or text
            cls: type[XvirtError] = {
                "no-domain": xvirt.NoDomainError, "invalid": xvirt.InvalidArgumentError,
            }.get(kind, xvirt.OperationFailedError)
            raise cls(text)

    def _record(self, rec: sxp.Sx | None) -> DomainRecord:
        p = records.parse_domain_record(rec if rec is not None else [])
        assert p.domid is not None
        return DomainRecord(p.domid, p.uuid, p.name, p.state or DomainState.RUNNING,
                            p.memory_kib, p.max_memory_kib, p.vcpus, p.cpu_time_ns or 0)

    @property
    def boot_id(self) -> str:
        response = self._client.get("/xend/node/")
        self._raise(response)
        return response.headers["X-Xvirt-Boot"]

    @property
    def max_domid(self) -> int:
        return self._max_domid

    def domains(self) -> list[DomainRecord]:
        response = self._client.get("/xvirt/host/domains")
        self._raise(response)
        rec = sxp.parse(response.content)
        assert isinstance(rec, list)
        return [self._record(r) for r in rec[1:]]

    def create(self, name: str, *, memory_kib: int = 524288, vcpus: int = 1) -> DomainRecord:
        return self._record(self._post("create", name=name, memory_kib=memory_kib, vcpus=vcpus))

    def destroy(self, domid: int) -> None:
        self._post("destroy", domid=domid)

    def shutdown(self, domid: int) -> None:
        self._post("shutdown", domid=domid)

    def pause(self, domid: int) -> None:
        self._post("pause", domid=domid)

    def resume(self, domid: int) -> None:
        self._post("resume", domid=domid)

    def crash(self, domid: int) -> None:
        self._post("crash", domid=domid)

    def stall(self, domid: int) -> None:
        """Wedge the domain: its figures never come (until the daemon restarts)."""
        self._post("stall", domid=domid)

    def unstall(self, domid: int) -> None:
        self._post("unstall", domid=domid)

    def refuse_commits(self, count: int, after: int = 0) -> None:
        """The daemon's store accepts ``after`` more commits, then refuses ``count``
        (fault injection)."""
        self._post("refuse_commits", count=count, after=after)

    def reboot(self, domid: int) -> DomainRecord:
        return self._record(self._post("reboot", domid=domid))

    def migrate(self, domid: int) -> DomainRecord:
        return self._record(self._post("migrate", domid=domid))

    def save(self, domid: int, image: str) -> None:
        self._post("save", domid=domid, image=image)

    def restore(self, image: str) -> DomainRecord:
        return self._record(self._post("restore", image=image))

    def rename(self, domid: int, new_name: str) -> None:
        self._post("rename", domid=domid, name=new_name)

    def reboot_host(self) -> None:
        self._post("reboot_host")

    def restart_daemon(self) -> None:
        self._client.close()
        self._daemon.restart()
        self._client = self._connect()

    # -- defined (managed) domains: xend's own requests, as ``xm new/start/delete`` ----

    def _xend(self, method: str, path: str, **kwargs: Any) -> sxp.Sx | None:
        response = self._client.request(method, path, **kwargs)
        self._raise(response)
        return sxp.parse(response.content) if response.content.strip() else None

    @staticmethod
    def _definition(rec: sxp.Sx) -> Definition:
        p = records.parse_domain_record(rec)
        return Definition(p.uuid, p.name, p.domid, bool(p.persistent), p.config())

    def define(self, name: str, *, memory_kib: int = 524288, vcpus: int = 1,
               uuid: str | None = None) -> Definition:
        """``op=new`` (``xm new``) with a config naming no devices."""
        config = sxp.dumps(records.vm_config(name, memory_kib, memory_kib, vcpus, uuid))
        rec = self._xend("POST", "/xend/domain/", data={"op": "new", "config": config})
        if rec is None:
            raise xvirt.ProtocolError("op=new answered no record", name=name, op="define")
        return self._definition(rec)

    def start(self, uuid: str) -> DomainRecord:
        """``op=start`` (``xm start``) by UUID, then the domain's record."""
        self._xend("POST", f"/xend/domain/{uuid}", data={"op": "start"})
        found = next((r for r in self.domains() if r.uuid == uuid), None)
        if found is None:
            raise xvirt.NoDomainError("started, and then not running", uuid=uuid, op="start")
        return found

    def undefine(self, uuid: str) -> None:
        """``op=delete`` (``xm delete``) by UUID."""
        self._xend("POST", f"/xend/domain/{uuid}", data={"op": "delete"})

    def defined_domains(self) -> list[Definition]:
        """``GET /xend/domain?state=halted&detail=1``."""
        rec = self._xend("GET", "/xend/domain", params={"state": "halted", "detail": "1"})
        if not isinstance(rec, list):
            raise xvirt.ProtocolError(f"state=halted answered {rec!r}", op="defined_domains")
        return [self._definition(r) for r in rec]

    def journal(self) -> list[JournalEntry]:
        """Every entry the daemon holds, oldest first, read a page at a time."""
        out = []
        after = 0
        while True:
            response = self._client.get("/xvirt/host/journal", params={"after": after})
            self._raise(response)
            rec = sxp.parse(response.content)
            assert isinstance(rec, list)
            for e in rec[1:]:
                out.append(JournalEntry(
                    sxp.value(e, "entry/op") or "", int(sxp.value(e, "entry/domid") or "0"),
                    sxp.value(e, "entry/uuid") or "", sxp.value(e, "entry/outcome") or "",
                    sxp.value(e, "entry/origin") or ""))
            following = int(response.headers["X-Xvirt-Journal-Next"])
            if len(rec) == 1 or following >= int(response.headers["X-Xvirt-Journal-Last"]):
                return out
            after = following

    def close(self) -> None:
        self._client.close()


class DaemonTarget:
    """A fresh daemon with a small, randomly allocated ID space (reuse is frequent),
    reached through the xend driver over its unix socket (``tcp=True``: over TCP)."""

    def __init__(self, *, max_domid: int = 8, tcp: bool = False, uri_params: str = "",
                 daemon: DaemonProcess | None = None) -> None:
        """``daemon``: one set up by the caller (not yet started), instead of a fresh one."""
        self.daemon = daemon or DaemonProcess(
            tcp=tcp, extra=("--id-policy", "random", "--max-domid", str(max_domid)))
        self.daemon.start()
        self.host = _AdminHost(self.daemon, max_domid)
        params = [uri_params] if uri_params else []
        if tcp and self.daemon.token_file is not None:
            params.append(f"token_file={self.daemon.token_file}")
        base = self.daemon.tcp_uri if tcp else self.daemon.unix_uri
        self.uri = base + (f"?{'&'.join(params)}" if params else "")
        #: The kit's rules this target takes: all, and a store that can be made to refuse.
        self.capabilities = CAPABILITIES | {"refuse_commits"}

    def connect(self, *, readonly: bool = False) -> Connection:
        for _ in range(3):
            with contextlib.suppress(HostUnreachableError):
                return xvirt.open(self.uri, readonly=readonly)
        return xvirt.open(self.uri, readonly=readonly)

    def close(self) -> None:
        self.host.close()
        self.daemon.cleanup()
