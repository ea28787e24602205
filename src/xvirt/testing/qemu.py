"""Real QEMU guests under libvirt's QEMU driver, for tests: a real KVM (or TCG) host.

Two ways to reach the driver, both as a user would:

- ``EmbeddedQemu``: libvirt's embedded QEMU driver, ``qemu:///embed?root=DIR``, inside this
  process (a libvirt event loop is registered first), with ``user``/``group = "root"``,
  ``stdio_handler = "file"`` and no namespaces or cgroups in ``DIR/etc/qemu.conf``; QEMU runs
  as root, so KVM where ``/dev/kvm`` opens.
- ``DaemonQemu``: a private libvirtd in session mode (``LibvirtdProcess``) run as an existing
  unprivileged user, ``nobody`` by default, with HOME in its temporary directory, reached
  over its socket (``qemu+unix:///session?socket=...``): TCG guests where that user cannot
  open ``/dev/kvm``.

Guests have no OS: SeaBIOS, 32 MiB, 1 vCPU, ``on_reboot`` restart; asked for, an 8 MiB disk
image made in the temporary directory and a NIC with user-mode networking (no bridge, no
system network). The domain type is ``kvm`` where the QEMU process can open ``/dev/kvm``,
else ``qemu`` (TCG); ``accel`` says which and the start prints it: never silently.

The rules (those of ``_child.py``): everything the harness starts is its own and lives in
one temporary directory (the embedded driver's root lasts as long as the process); at
``close`` every guest is destroyed, the daemon stopped by PID, and any QEMU process whose
command line names that directory killed by PID. The machine is left as found: no change to
``/dev/kvm``'s mode, to system configuration or to the system's daemons. The embedded
driver, run as root, insists that the user its build names (``libvirt-qemu``) exist even
when ``qemu.conf`` says root; where it does not, the driver is opened from a thread in a
private mount namespace that sees copies of ``/etc/passwd`` and ``/etc/group`` naming it, so
the system's files stay untouched. libvirt keeps that driver, on the root it was first
opened with, until the process ends.

What runs out on the embedded driver is opens, not connections: every
``virConnectOpen("qemu:///embed?...")`` loads the driver module again and calls its
``qemuRegister``, which appends the QEMU driver to libvirt's fixed table of connection drivers
(``MAX_DRIVERS`` = 21 in libvirt 9.0; Test, OPENVZ, VMWARE, ESX and remote take the first
five), before the URI is even matched; nothing ever removes an entry. So a process gets 16
opens of ``qemu:///embed`` in all, whether or not the earlier connections were closed, and an
open that fails (a second root, say) uses a slot too; after that every open fails with "Too
many drivers, cannot register QEMU" (measured, and libvirt's ``virConnectOpenInternal``,
``virDriverLoadModule`` and ``virRegisterConnectDriver`` read). So the process keeps ONE
read-write connection per embedded root (and one read-only one, opened when first asked
for), and every open of exactly that URI, through the binding's ``open``, ``openReadOnly``
or ``openAuth`` (as the harness, xvirt's libvirt driver and libvirt-python scripts open
it), returns a handle on it (``_EmbeddedOpens``): libvirt's own ``virConnect`` calls on
the one connection, whose ``close`` lets go of the handle (and of the event callbacks
registered through it) and leaves the connection open. Every other URI is opened as before.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import grp
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
import uuid as _uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DaemonQemu", "EmbeddedQemu", "QemuError", "QemuHost", "embedded_root_of", "guest_xml",
           "kvm_usable", "pid_running"]

QEMU_SYSTEM = "/usr/bin/qemu-system-x86_64"
QEMU_IMG = "/usr/bin/qemu-img"
KVM_DEVICE = "/dev/kvm"
#: The user and group Debian's libvirt is built to run QEMU as (meson's qemu_user/qemu_group).
BUILT_IN_QEMU_USER = "libvirt-qemu"
GUEST_MEMORY_MIB = 32
DISK_MIB = 8
STOP_TIMEOUT_S = 10.0

_QEMU_CONF = (
    'stdio_handler = "file"\n'  # no virtlogd: it would be a daemon that is not our child
    "namespaces = []\n"  # no private /dev per guest (mount namespaces as root)
)


class QemuError(RuntimeError):
    """The QEMU host could not be set up."""


def kvm_usable(user: pwd.struct_passwd | None = None) -> bool:
    """Can a process of ``user`` (default: this one) open ``/dev/kvm`` for reading and
    writing? Asked of the kernel, not guessed from the mode."""
    if not os.path.exists(KVM_DEVICE):
        return False
    if user is None:
        try:
            os.close(os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC))
        except OSError:
            return False
        return True
    probe = subprocess.run(["/bin/sh", "-c", f"test -r {KVM_DEVICE} -a -w {KVM_DEVICE}"],
                           user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30)
    return probe.returncode == 0


def guest_xml(name: str, uuid: str, *, domain_type: str, memory_mib: int = GUEST_MEMORY_MIB,
              disk: Path | None = None, nic: bool = False) -> str:
    """A guest with no OS (SeaBIOS looks for one and waits): cheap to boot and to run."""
    dom = ET.Element("domain", type=domain_type)
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "uuid").text = uuid
    ET.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    ET.SubElement(dom, "on_reboot").text = "restart"
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "emulator").text = QEMU_SYSTEM
    if disk is not None:
        d = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type="raw")
        ET.SubElement(d, "source", file=str(disk))
        ET.SubElement(d, "target", dev="vda", bus="virtio")
    if nic:
        n = ET.SubElement(devices, "interface", type="user")
        ET.SubElement(n, "mac", address="52:54:00:" + ":".join(uuid[i:i + 2] for i in (0, 2, 4)))
        ET.SubElement(n, "model", type="virtio")
    return ET.tostring(dom, encoding="unicode")


class QemuHost:
    """libvirt's QEMU driver at ``uri``, with guests of the harness's own.

    ``conn`` is the harness's own connection (the real binding): tests act through it as
    the outside world; ``accel`` is ``"KVM"`` or ``"TCG"``, ``domain_type`` the matching
    libvirt domain type."""

    kind: ClassVar[str] = "qemu"
    uri: str
    state_dir: Path
    image_dir: Path

    def __init__(self, *, kvm: bool) -> None:
        self.lv: Any = real_libvirt()
        self.accel = "KVM" if kvm else "TCG"
        self.domain_type = "kvm" if kvm else "qemu"
        self.conn: Any = None
        self._uuids = 0

    def _announce(self, why: str) -> None:
        print(f"xvirt.testing.qemu: {self.kind} {self.uri}: {self.accel} guests ({why})",
              flush=True)

    # -- guests --------------------------------------------------------------------------

    def _owner(self) -> tuple[int, int]:
        """Who QEMU runs as: disk images and save files must be theirs."""
        return os.geteuid(), os.getegid()

    def make_disk(self, name: str, size_mib: int = DISK_MIB) -> Path:
        """A raw image of ``size_mib`` MiB in the temporary directory, QEMU's to use."""
        path = self.image_dir / f"{name}.img"
        out = subprocess.run([QEMU_IMG, "create", "-q", "-f", "raw", str(path), f"{size_mib}M"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise QemuError(f"qemu-img create {path}: {out.stderr.strip()}")
        os.chown(path, *self._owner())
        return path

    def xml(self, name: str, *, disk: bool = False, nic: bool = False) -> str:
        """A new guest's XML; UUIDs from a counter, so a history replays the same host."""
        self._uuids += 1
        uuid = str(_uuid.UUID(int=(0x9E3D << 112) | self._uuids))
        return guest_xml(name, uuid, domain_type=self.domain_type,
                         disk=self.make_disk(name) if disk else None, nic=nic)

    def boot(self, name: str, *, disk: bool = False, nic: bool = False,
             persistent: bool = False) -> Any:
        """Start a guest (transient, or defined then started) and return its virDomain."""
        xml = self.xml(name, disk=disk, nic=nic)
        if persistent:
            dom = self.conn.defineXML(xml)
            dom.create()
            return dom
        return self.conn.createXML(xml, 0)

    def boot_many(self, count: int, *, prefix: str = "g", devices_every: int = 4) -> list[Any]:
        """``count`` guests; every ``devices_every``-th one with a disk and a NIC."""
        return [self.boot(f"{prefix}{i:03d}", disk=i % devices_every == 0,
                          nic=i % devices_every == 0) for i in range(count)]

    def qemu_pids(self) -> list[int]:
        """Every QEMU process whose command line names our directory: ours, whoever its
        parent is (libvirt daemonizes QEMU)."""
        mark = str(self.state_dir).encode()
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            argv0 = cmdline.split(b"\0", 1)[0]
            if b"qemu-system" in os.path.basename(argv0) and mark in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def qemu_pid(self, name: str) -> int:
        """The PID of guest ``name``'s QEMU: the one of ours whose command line names it
        (``-name guest=NAME,...``), to stop or continue it as a hung host would."""
        for pid in self.qemu_pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg == f"guest={name}".encode() or arg.startswith(f"guest={name},".encode())
                   for arg in argv):
                return pid
        raise QemuError(f"no QEMU process under {self.state_dir} runs guest {name!r}")

    # -- teardown ------------------------------------------------------------------------

    def clear(self, keep: Collection[str] = ()) -> None:
        """No guest left but the running ones named in ``keep``: every other QEMU of ours
        killed by PID (libvirt's own destroy waits 1.5-2 s a guest here, see
        ``kill_qemus``), then every other domain and definition dropped through libvirt."""
        self.kill_qemus(spare=self._pids_of(keep))
        if self.conn is None:
            return
        with contextlib.suppress(self.lv.libvirtError):
            for dom in self.conn.listAllDomains(0):
                if dom.name() in keep:
                    continue
                with contextlib.suppress(self.lv.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(self.lv.libvirtError):
                    if dom.isPersistent():
                        dom.undefine()

    def _pids_of(self, names: Collection[str]) -> set[int]:
        pids = set()
        for name in names:
            with contextlib.suppress(QemuError):
                pids.add(self.qemu_pid(name))
        return pids

    def _stop_guests(self) -> None:
        """``clear``, then our connection closed."""
        self.clear()
        if self.conn is not None:
            with contextlib.suppress(self.lv.libvirtError):
                self.conn.close()
        self.conn = None

    def kill_qemus(self, spare: Collection[int] = ()) -> None:
        """SIGKILL, by PID, every QEMU of ours still running but those in ``spare``; wait
        until each is gone (a zombie counts as gone: a daemonized QEMU is init's to reap,
        which libvirt's destroy waits for)."""
        pids = [pid for pid in self.qemu_pids() if pid not in spare]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for pid in pids:
            while pid_running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def pid_running(pid: int) -> bool:
    """Running, not a zombie (a daemonized QEMU's zombie is init's to reap)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


# -- way (a): the embedded driver -----------------------------------------------------------

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def _names_resolve() -> bool:
    try:
        pwd.getpwnam(BUILT_IN_QEMU_USER)
        grp.getgrnam(BUILT_IN_QEMU_USER)
    except KeyError:
        return False
    return True


def _in_private_mounts(work: Path, call: Any) -> Any:
    """``call()`` on a new thread whose private mount namespace sees copies of /etc/passwd
    and /etc/group that also name ``libvirt-qemu`` (as root, whom qemu.conf makes QEMU run
    as anyway). Mount namespaces are per thread: the rest of the process, and the system,
    see the real files; threads libvirt starts from that one keep the view."""
    extra = {"passwd": f"{BUILT_IN_QEMU_USER}:x:0:0:QEMU (xvirt tests):/nonexistent:"
                       "/usr/sbin/nologin\n",
             "group": f"{BUILT_IN_QEMU_USER}:x:0:\n"}
    for name, line in extra.items():
        (work / name).write_text(Path("/etc", name).read_text() + line)
    libc = ctypes.CDLL(None, use_errno=True)
    result: dict[str, Any] = {}

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise QemuError(f"{what}: {os.strerror(err)} (the embedded QEMU driver as root "
                            f"needs the user {BUILT_IN_QEMU_USER!r}, or CAP_SYS_ADMIN to "
                            "show it in a private mount namespace)")

    def run() -> None:
        try:
            check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None),
                  "making mounts private")
            for name in extra:
                check(libc.mount(str(work / name).encode(), f"/etc/{name}".encode(), None,
                                 _MS_BIND, None), f"bind-mounting /etc/{name}")
            result["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name="xvirt-qemu-embed-open")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# libvirt keeps one embedded QEMU driver per process, on the root it was first opened with,
# even after its last connection closes: the root is the process's, removed at exit.
_embedded_root: Path | None = None
_embedded_lock = threading.Lock()

#: The binding's functions that open a connection, routed by ``_EmbeddedOpens``.
_OPENS = ("open", "openReadOnly", "openAuth")
#: Where libvirt-python keeps a handle's event registrations, and how each is undone.
_EVENT_REGISTRATIONS = (
    ("domainEventCallbackID", "domainEventDeregisterAny"),
    ("networkEventCallbackID", "networkEventDeregisterAny"),
    ("storagePoolEventCallbackID", "storagePoolEventDeregisterAny"),
    ("nodeDeviceEventCallbackID", "nodeDeviceEventDeregisterAny"),
    ("secretEventCallbackID", "secretEventDeregisterAny"),
)


def _remove_embedded_root() -> None:
    if _embedded_root is not None:
        shutil.rmtree(_embedded_root, ignore_errors=True)


def embedded_root_of(uri: object) -> str | None:
    """The ``root`` of a ``qemu:///embed?root=DIR`` URI (as libvirt reads it: one ``root``
    parameter, percent-decoded), or None for any other URI."""
    if not isinstance(uri, str):
        return None
    parts = urlsplit(uri)
    if parts.scheme != "qemu" or parts.netloc or parts.path != "/embed":
        return None
    roots = parse_qs(parts.query, keep_blank_values=True).get("root", [])
    return roots[0] if len(roots) == 1 else None


class _DomainEvents:
    """The domain event callbacks of every handle on one kept connection, through one
    libvirt registration per event and domain. libvirt refuses a second registration of a
    callback for the same event and domain on one connection ("event callback already
    tracked"), and libvirt-python registers the same C dispatcher for every callback: without
    this, only the first handle to ask (the first xvirt connection, say) would get events."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.registered: dict[tuple[int, str | None], int] = {}  # (event, uuid) -> libvirt's id
        self.subscribers: dict[tuple[int, str | None], dict[int, tuple[Any, Any, Any]]] = {}
        self.topic: dict[int, tuple[int, str | None]] = {}  # our callback id -> (event, uuid)

    def add(self, handle: Any, dom: Any, event_id: int, callback: Any, opaque: Any) -> int:
        topic = (event_id, None if dom is None else dom.UUIDString())
        with self.lock:
            if topic not in self.registered:
                self.registered[topic] = self.conn.domainEventRegisterAny(
                    dom, event_id, self._dispatch, topic)
                self.subscribers[topic] = {}
            callback_id = next(self.ids)
            self.subscribers[topic][callback_id] = (handle, callback, opaque)
            self.topic[callback_id] = topic
        return callback_id

    def remove(self, callback_id: int) -> None:
        with self.lock:
            topic = self.topic.pop(callback_id)
            subscribers = self.subscribers[topic]
            del subscribers[callback_id]
            if not subscribers:
                del self.subscribers[topic]
                self.conn.domainEventDeregisterAny(self.registered.pop(topic))

    def _dispatch(self, _conn: Any, dom: Any, *details: Any) -> None:
        """On libvirt's event loop thread: each subscriber called as libvirt-python would
        (its handle, the domain, the event's details, its own opaque); one that raises is
        reported on stderr, as libvirt-python reports it, and stops no other."""
        *args, topic = details
        with self.lock:
            subscribers = list(self.subscribers.get(topic, {}).values())
        for handle, callback, opaque in subscribers:
            try:
                callback(handle, dom, *args, opaque)
            except Exception:
                traceback.print_exc()


def _handle_class(lv: Any) -> Any:
    """``virConnect`` of binding ``lv``, as a handle on a connection someone else keeps."""

    def closed() -> Any:
        lv.virResetLastError()
        return lv.libvirtError("invalid connection pointer: this handle is closed")

    class SharedConnection(lv.virConnect):  # type: ignore[misc]
        """libvirt's own ``virConnect`` calls on the process's one connection to an embedded
        root; domain events per handle, as on a connection of its own; ``close`` lets go of
        this handle only."""

        def __init__(self, shared: Any, events: _DomainEvents) -> None:
            super().__init__(_obj=shared._o)
            self._events = events
            self.domainEventCallbackID: dict[int, Any] = {}

        def domainEventRegisterAny(self, dom: Any, eventID: int, cb: Any,
                                   opaque: Any) -> int:
            if self._o is None:
                raise closed()
            callback_id = self._events.add(self, dom, eventID, cb, opaque)
            self.domainEventCallbackID[callback_id] = opaque
            return callback_id

        def domainEventDeregisterAny(self, callbackID: int) -> None:
            if callbackID not in self.domainEventCallbackID:
                lv.virResetLastError()
                raise lv.libvirtError(f"could not find event callback {callbackID} for deletion")
            self._events.remove(callbackID)
            del self.domainEventCallbackID[callbackID]

        def close(self) -> int:
            """Deregister the event callbacks registered through this handle and let go of
            it; the connection stays open for the other handles (1: others hold it, as
            ``virConnectClose`` says). A closed handle refuses every call, as libvirt's
            own do."""
            if self._o is None:
                raise closed()
            self._release()
            return 1

        def _release(self) -> None:
            for table, deregister in _EVENT_REGISTRATIONS:
                for callback_id in list(getattr(self, table, {})):
                    with contextlib.suppress(lv.libvirtError):
                        getattr(self, deregister)(callback_id)
            for callback in list(getattr(self, "domainEventCallbacks", {})):
                with contextlib.suppress(lv.libvirtError):
                    self.domainEventDeregister(callback)
            self._o = None

        def __del__(self) -> None:
            # Never virConnectClose: the reference is the keeper's. At interpreter exit the
            # binding may be half torn down; a finalizer must not raise then.
            if getattr(self, "_o", None) is not None:
                with contextlib.suppress(Exception):
                    self._release()

    return SharedConnection


class _EmbeddedOpens:
    """The binding's open functions, routed: an open of an embedded root this process keeps
    a connection to returns a new handle on that connection (read-write, or the read-only
    one, opened at its first use); every other URI is libvirt's to open, as before."""

    def __init__(self, lv: Any) -> None:
        self.lv = lv
        self.real: dict[str, Any] = {name: getattr(lv, name) for name in _OPENS}
        self.handle: Any = _handle_class(lv)
        self.kept: dict[tuple[str, bool], Any] = {}  # (root, read-only) -> virConnect
        self.events: dict[tuple[str, bool], _DomainEvents] = {}
        self.lock = threading.RLock()
        lv.open, lv.openReadOnly, lv.openAuth = self.open, self.open_read_only, self.open_auth

    def keep(self, root: str, first_open: Callable[[Callable[[], Any]], Any]) -> None:
        """Open ``root``'s read-write connection, once per process: ``first_open(opener)``
        runs libvirt's own open (from a thread that can see the QEMU user, say)."""
        uri = f"qemu:///embed?root={root}"
        with self.lock:
            if (root, False) not in self.kept:
                conn = first_open(lambda: self.real["open"](uri))
                self.kept[(root, False)], self.events[(root, False)] = conn, _DomainEvents(conn)

    def _handout(self, uri: object, readonly: bool) -> Any:
        """A handle, or None when ``uri`` is not a kept root's."""
        root = embedded_root_of(uri)
        with self.lock:
            if root is None or (root, False) not in self.kept:
                return None
            key = (root, readonly)
            if key not in self.kept:  # libvirt enforces read-only on the connection: its own
                conn = self.real["openReadOnly"](uri)
                self.kept[key], self.events[key] = conn, _DomainEvents(conn)
            return self.handle(self.kept[key], self.events[key])

    def open(self, name: str | None = None) -> Any:
        handle = self._handout(name, readonly=False)
        return self.real["open"](name) if handle is None else handle

    def open_read_only(self, name: str | None = None) -> Any:
        handle = self._handout(name, readonly=True)
        return self.real["openReadOnly"](name) if handle is None else handle

    def open_auth(self, uri: str, auth: list[Any], flags: int = 0) -> Any:
        handle = self._handout(uri, readonly=bool(flags & self.lv.VIR_CONNECT_RO))
        return self.real["openAuth"](uri, auth, flags) if handle is None else handle


_routers: dict[int, _EmbeddedOpens] = {}  # id(binding) -> its router (which keeps it alive)


def _keep_open_past_exit() -> None:
    """The kept connections stay open to the end, never freed: a handle still alive at
    exit then never points at a freed connection. Their wrappers forget them, so that the
    binding's finalizer, run after its module is torn down, does not try to close them."""
    for router in _routers.values():
        for conn in router.kept.values():
            conn._o = None


def _embedded_opens(lv: Any) -> _EmbeddedOpens:
    """The router of binding ``lv``, installed at the first call."""
    with _embedded_lock:
        if not _routers:
            atexit.register(_keep_open_past_exit)
        router = _routers.get(id(lv))
        if router is None:
            router = _routers[id(lv)] = _EmbeddedOpens(lv)
        return router


class EmbeddedQemu(QemuHost):
    """libvirt's embedded QEMU driver in this process, on a root directory of our own.

    libvirt allows one embedded root per process, kept until the process ends, and one
    process per root: every ``EmbeddedQemu`` of a process shares that root (one at a time),
    and ``virsh -c`` the same URI cannot attach (it would start a second embedded driver),
    so cross-checks go through the binding here. ``conn``, and every connection opened on
    ``uri`` in this process (``xvirt.open("libvirt:" + uri)`` too), is a handle on the
    process's one connection to the root (see the module's docstring): opens are the
    resource libvirt runs out of."""

    kind = "embedded"

    def __init__(self) -> None:
        global _embedded_root
        if os.geteuid() != 0:
            raise QemuError("the embedded QEMU driver runs QEMU as root here: run as root")
        super().__init__(kvm=kvm_usable())
        with _embedded_lock:
            if _embedded_root is None:
                _embedded_root = Path(tempfile.mkdtemp(prefix="xvirt-qemu-embed-"))
                atexit.register(_remove_embedded_root)
                (_embedded_root / "etc").mkdir()
                (_embedded_root / "etc" / "qemu.conf").write_text(
                    'user = "root"\ngroup = "root"\ncgroup_controllers = []\n' + _QEMU_CONF)
            root = _embedded_root
        self.state_dir = root
        self.uri = f"qemu:///embed?root={root}"
        self.image_dir = Path(tempfile.mkdtemp(prefix="images-", dir=root))
        try:
            ensure_event_loop(self.lv)
            opens = _embedded_opens(self.lv)
            opens.keep(str(root), (lambda opener: opener()) if _names_resolve()
                       else (lambda opener: _in_private_mounts(root, opener)))
            self.conn = self.lv.open(self.uri)  # a handle on the process's one connection
            if self.conn.listAllDomains(0):
                raise QemuError(f"{self.uri} is in use: close the other EmbeddedQemu first")
        except BaseException:
            self.close()
            raise
        self._announce("QEMU runs as root" if self.accel == "KVM"
                       else f"{KVM_DEVICE} cannot be opened")

    def close(self) -> None:
        """Guests destroyed, our handle closed, leftover QEMUs killed, images removed. The
        embedded driver, its root and the connection to it stay until the process ends
        (libvirt keeps the driver; the connection is for the next ``EmbeddedQemu``)."""
        try:
            self._stop_guests()
        finally:
            shutil.rmtree(self.image_dir, ignore_errors=True)


# -- way (b): a private libvirtd, as an unprivileged user -----------------------------------

class DaemonQemu(QemuHost):
    """A private session-mode libvirtd with the QEMU driver, run as ``user``."""

    kind = "libvirtd"

    def __init__(self, *, user: str = "nobody", idle_timeout_s: int | None = 600) -> None:
        if os.geteuid() != 0:
            raise QemuError("running libvirtd as another user needs root")
        account = pwd.getpwnam(user)
        super().__init__(kvm=kvm_usable(account))
        self.account = account
        self.daemon = LibvirtdProcess(user=user, drivers=("qemu",), idle_timeout_s=idle_timeout_s,
                                      uri_base="qemu+unix:///session")
        self.state_dir = self.daemon.state_dir
        try:
            conf = self.daemon.home / ".config" / "libvirt"
            conf.mkdir(parents=True)
            (conf / "qemu.conf").write_text(_QEMU_CONF)
            self.image_dir = self.state_dir / "images"
            self.image_dir.mkdir()
            self.uri = self.daemon.uri
            self.daemon.start()  # hands the whole directory to the user first
            ensure_event_loop(self.lv)
            self.conn = self.lv.open(self.uri)
        except BaseException:
            self.close()
            raise
        self._announce(f"QEMU runs as {user}, who "
                       + ("can" if self.accel == "KVM" else "cannot") + f" open {KVM_DEVICE}")

    def _owner(self) -> tuple[int, int]:
        return self.account.pw_uid, self.account.pw_gid

    def close(self) -> None:
        """Guests destroyed, the daemon stopped by PID, leftover QEMUs killed, directory gone."""
        try:
            self._stop_guests()
            with contextlib.suppress(OSError):
                self.daemon.stop()
            self.kill_qemus()
        finally:
            self.daemon.cleanup()
