"""What the face scripts share: plain libvirt-python and the standard library, nothing
of xvirt's (under ``xvirt compat`` ``import libvirt`` is the face, otherwise the real
binding; the scripts cannot tell and must not care).

Every line a script prints is ``label: value``, deterministic on one backend (no
timestamps, CPU times, PIDs, host names or temporary paths), printed as soon as it is
known so that a hang shows where it happened. An error prints as ``error CODE``: the
code is libvirt's promise, the message is each driver's own wording.
"""

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET

import libvirt

#: A script's domains are named PREFIX-<script>-...; UUIDs share this head.
PREFIX = "face"
UUID_HEAD = "5ca1ab1e-0000-4000-8000-"
MEMORY_MIB = 128


def uri_from_argv():
    """The URI the script was given (argv[1]); argv[2], when given, is a directory the
    host may save images to (a host daemon saves only into its own)."""
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} URI [IMAGE_DIR]", file=sys.stderr)
        sys.exit(2)
    return sys.argv[1]


def say(label, call):
    """Print ``label: value`` for ``call()``, or ``label: error CODE``; return the value
    (None after an error). Anything else raised prints as ``label: raised TYPE: message``
    and the script goes on: libvirt-python raises only libvirtError, so such a line is
    itself the finding, and the lines after it still say what works."""
    try:
        value = call()
    except libvirt.libvirtError as e:
        print(f"{label}: error {e.get_error_code()}", flush=True)
        return None
    except Exception as e:
        print(f"{label}: raised {type(e).__name__}: {e}", flush=True)
        return None
    print(f"{label}: {value}", flush=True)
    return value


def quiet():
    """libvirt prints every error to stderr by default; the scripts print their own."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def start_default_loop():
    """libvirt's default event loop, run on a daemon thread (libvirt-python's examples)."""
    libvirt.virEventRegisterDefaultImpl()

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()


def domain_kind(conn):
    """The domain type to write in XML: the driver's own name, or for QEMU 'kvm' where
    the capabilities offer it, else 'qemu' (TCG)."""
    kind = conn.getType().lower()
    if kind != "qemu":
        return kind
    caps = ET.fromstring(conn.getCapabilities())
    offered = {d.get("type") for d in caps.iter("domain")}
    return "kvm" if "kvm" in offered else "qemu"


def is_qemu(kind):
    return kind in ("kvm", "qemu")


def workdir(script):
    """A temporary directory for the script's files (disks, saved images), open to the
    hypervisor's user (QEMU in a session daemon runs as another user)."""
    path = tempfile.mkdtemp(prefix=f"{PREFIX}-{script}-")
    os.chmod(path, 0o777)
    return path


def remove(path):
    shutil.rmtree(path, ignore_errors=True)


def make_disk(directory, name):
    """A 1 MiB raw disk image (sparse) that the hypervisor's user may write."""
    path = os.path.join(directory, f"{name}.img")
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    os.chmod(path, 0o666)
    return path


def domain_xml(kind, name, uuid, disk, vcpus=2, current_vcpus=1, mac_tail="01"):
    """A guest as the host's driver takes it: a disk and a NIC of the kind it knows
    (QEMU: virtio disk, user-mode NIC; Xen and libvirt's test driver: xvda on a
    bridge)."""
    if is_qemu(kind):
        disk_xml = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                    f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>")
        nic_xml = f"<interface type='user'><mac address='52:54:00:fa:ce:{mac_tail}'/></interface>"
    else:
        disk_xml = (f"<disk type='file' device='disk'><source file='{disk}'/>"
                    f"<target dev='xvda'/></disk>")
        nic_xml = (f"<interface type='bridge'><mac address='00:16:3e:fa:ce:{mac_tail}'/>"
                   f"<source bridge='xenbr0'/></interface>")
    vcpu = (f"<vcpu current='{current_vcpus}'>{vcpus}</vcpu>" if current_vcpus != vcpus
            else f"<vcpu>{vcpus}</vcpu>")
    return (f"<domain type='{kind}'><name>{name}</name><uuid>{uuid}</uuid>"
            f"<memory unit='MiB'>{MEMORY_MIB}</memory>"
            f"<currentMemory unit='MiB'>{MEMORY_MIB}</currentMemory>{vcpu}"
            f"<os><type>hvm</type></os><devices>{disk_xml}{nic_xml}</devices></domain>")


def mine(doms, script):
    """The names of the script's own domains among ``doms`` (virDomain objects), sorted:
    what else the host holds differs from host to host."""
    head = f"{PREFIX}-{script}-"
    return sorted(d.name() for d in doms if d.name().startswith(head))


def forget(conn, script):
    """No domain of the script's left from an earlier, failed run."""
    head = f"{PREFIX}-{script}-"
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(head):
            continue
        for step in (dom.destroy, dom.undefine):
            with contextlib.suppress(libvirt.libvirtError):
                step()
