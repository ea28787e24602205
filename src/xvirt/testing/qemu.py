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
opened with, until the process ends, and every open of ``qemu:///embed`` registers the QEMU
driver once more in a table of 21 (libvirt 9.0): a process gets about 16 opens in all ("Too
many drivers, cannot register QEMU" after that), so tests share connections there (the
conformance kit runs through the daemon instead).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid as _uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from xvirt.drivers.libvirt_loop import ensure_event_loop
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirtd import LibvirtdProcess

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DaemonQemu", "EmbeddedQemu", "QemuError", "QemuHost", "guest_xml", "kvm_usable",
           "pid_running"]

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

    # -- teardown ------------------------------------------------------------------------

    def clear(self) -> None:
        """No guest left: every QEMU of ours killed by PID (libvirt's own destroy waits
        1.5-2 s a guest here, see ``kill_qemus``), then every domain and definition dropped
        through libvirt."""
        self.kill_qemus()
        if self.conn is None:
            return
        with contextlib.suppress(self.lv.libvirtError):
            for dom in self.conn.listAllDomains(0):
                with contextlib.suppress(self.lv.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(self.lv.libvirtError):
                    if dom.isPersistent():
                        dom.undefine()

    def _stop_guests(self) -> None:
        """``clear``, then our connection closed."""
        self.clear()
        if self.conn is not None:
            with contextlib.suppress(self.lv.libvirtError):
                self.conn.close()
        self.conn = None

    def kill_qemus(self) -> None:
        """SIGKILL, by PID, every QEMU of ours still running; wait until each is gone (a
        zombie counts as gone: a daemonized QEMU is init's to reap, which libvirt's destroy
        waits for)."""
        pids = self.qemu_pids()
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


def _remove_embedded_root() -> None:
    if _embedded_root is not None:
        shutil.rmtree(_embedded_root, ignore_errors=True)


class EmbeddedQemu(QemuHost):
    """libvirt's embedded QEMU driver in this process, on a root directory of our own.

    libvirt allows one embedded root per process, kept until the process ends, and one
    process per root: every ``EmbeddedQemu`` of a process shares that root (one at a time),
    and ``virsh -c`` the same URI cannot attach (it would start a second embedded driver),
    so cross-checks go through the binding here."""

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
            if _names_resolve():
                self.conn = self.lv.open(self.uri)
            else:
                self.conn = _in_private_mounts(root, lambda: self.lv.open(self.uri))
            if self.conn.listAllDomains(0):
                raise QemuError(f"{self.uri} is in use: close the other EmbeddedQemu first")
        except BaseException:
            self.close()
            raise
        self._announce("QEMU runs as root" if self.accel == "KVM"
                       else f"{KVM_DEVICE} cannot be opened")

    def close(self) -> None:
        """Guests destroyed, our connection closed, leftover QEMUs killed, images removed.
        The embedded driver and its root stay until the process ends (libvirt keeps them)."""
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
