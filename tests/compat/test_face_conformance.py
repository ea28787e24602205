"""The face's conformance test: libvirt-python scripts, unmodified, everywhere.

Each script in ``face_scripts/`` exercises one area of libvirt-python (connection
information, listing and lookups, the lifecycle, save and restore, the domain's
configuration, events, errors, the companion modules, the host's other objects) and
prints deterministic ``label: value`` lines. Each runs, from a temporary directory and
under a timeout (a hang fails its test, with what it printed so far):

(a) with real libvirt-python on ``test:///default``: the reference;
(b) through ``xvirt compat`` on the same URI, which the face serves through xvirt's
    libvirt driver (``libvirt:test:///default``): it must print (a) line for line;
(c) on real QEMU guests (a private session libvirtd, ``xvirt.testing.qemu.DaemonQemu``),
    with real libvirt-python and through ``xvirt compat`` on the same URI, one after the
    other: the two must agree line for line;
(d) through ``xvirt compat`` on a private embedded host (``sim:///NAME?guests=0``: the
    default host without its demo guests, which come and go) and
(e) on a host daemon: each must print (a) but for the lines listed below for the
    script, each replaced by an exact expected line: ``XEN_LACKS`` (what a Xen-style host
    does not have: it must answer VIR_ERR_NO_SUPPORT, ``error 3``) and ``XEN_SAYS``
    (where a Xen host is not libvirt's test driver: its name, its scheduler, its node
    statistics, its error domain and wording).

All runs start at once (a pool, plus one lane each for the daemon and the QEMU host,
whose domains the scripts of a lane share): the whole module takes under a minute.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import xvirt.compat.libvirt as face
from xvirt.testing.daemon import DaemonProcess
from xvirt.testing.qemu import QEMU_SYSTEM, DaemonQemu, QemuError

SCRIPT_DIR = Path(__file__).resolve().parent / "face_scripts"
SCRIPTS = sorted(p.stem for p in SCRIPT_DIR.glob("*.py") if not p.stem.startswith("_"))
#: Per run: a script that has not finished by then is hung (the slowest, save_restore on
#: QEMU under TCG, takes about 6 s; the event waits inside the scripts are 15 s).
RUN_TIMEOUT_S = 40.0
PARALLEL = 3
NO_SUPPORT = "error 3"
REFERENCE_URI = "test:///default"
QEMU_USABLE = os.geteuid() == 0 and os.path.exists(QEMU_SYSTEM)

#: Lines a Xen-style host (xvirt's embedded host, its daemon) answers with
#: VIR_ERR_NO_SUPPORT where libvirt's test driver answers: the host has no networks,
#: storage, interfaces or node devices, and no reset.
XEN_LACKS: dict[str, tuple[str, ...]] = {
    "events": ("reset",),
    "other_objects": (
        "numOfNetworks", "listNetworks", "listDefinedNetworks", "listAllNetworks",
        "network isActive, isPersistent", "network bridgeName", "network XMLDesc name",
        "networkLookupByName missing", "numOfStoragePools", "listStoragePools",
        "listAllStoragePools", "pool info state", "pool listVolumes", "pool listAllVolumes",
        "storagePoolLookupByName missing", "listInterfaces", "listAllInterfaces",
        "listDevices", "listAllDevices", "a domain's NIC on a network",
    ),
}
#: The error domain of xvirt's hosts: VIR_FROM_XEN for the embedded host (it plays the
#: hypervisor), VIR_FROM_XEND for a host daemon (it plays xend); ``{where}`` below.
ERROR_DOMAIN = {"embedded": 1, "daemon": 2}
_NOT_FOUND = "42 {where} Domain not found: no domain with matching"
#: Lines where a Xen host is not libvirt's test driver, with the Xen host's exact value.
XEN_SAYS: dict[str, dict[str, str]] = {
    "connection": {
        "getType": "Xen",
        # the test driver has no node memory statistics; a Xen host has libvirt's four
        "getMemoryStats keys": "['buffers', 'cached', 'free', 'total']",
        "getMemoryStats values are ints": "True",
    },
    "domain_config": {
        # Xen's credit scheduler and its defaults; the test driver's is 'fair' (weight 50)
        "schedulerType": "('credit', 2)",
        "schedulerParameters": "[('cap', 0), ('weight', 256)]",
    },
    "statistics": {
        # the test driver fills only the state group in bulk, has no blockStatsFlags and no
        # balloon figures for a domain it did not define itself, and gives per-CPU figures
        # per vCPU; a Xen host gives every group, the figures it has, one entry per CPU
        "blockStatsFlags keys": "['errs', 'flush_operations', 'flush_total_times', "
                                "'rd_bytes', 'rd_operations', 'rd_total_times', 'wr_bytes', "
                                "'wr_operations', 'wr_total_times']",
        "memoryStats keys": "['actual']",
        "getCPUStats(False) keys": "['cpu_time']",
        "getCPUStats(False) has one entry per host CPU": "True",
        "getAllDomainStats groups": "['balloon', 'block', 'cpu', 'net', 'state', 'vcpu']",
        "domainListGetStats(cpu) keys": "['cpu.system', 'cpu.time', 'cpu.user']",
        "domainListGetStats(balloon) keys": "['balloon.current', 'balloon.maximum']",
        "domainListGetStats(vcpu) keys": "['vcpu.<n>.state', 'vcpu.<n>.time', "
                                         "'vcpu.current', 'vcpu.maximum']",
        "domainListGetStats(net) keys": "['net.<n>.name', 'net.<n>.rx.bytes', "
                                        "'net.<n>.rx.drop', 'net.<n>.rx.errs', "
                                        "'net.<n>.rx.pkts', 'net.<n>.tx.bytes', "
                                        "'net.<n>.tx.drop', 'net.<n>.tx.errs', "
                                        "'net.<n>.tx.pkts', 'net.count']",
        "domainListGetStats(block) keys": "['block.<n>.allocation', 'block.<n>.capacity', "
                                          "'block.<n>.errors', 'block.<n>.fl.reqs', "
                                          "'block.<n>.fl.times', 'block.<n>.name', "
                                          "'block.<n>.path', 'block.<n>.physical', "
                                          "'block.<n>.rd.bytes', "
                                          "'block.<n>.rd.reqs', 'block.<n>.rd.times', "
                                          "'block.<n>.wr.bytes', 'block.<n>.wr.reqs', "
                                          "'block.<n>.wr.times', 'block.count']",
    },
    "errors": {
        # the test driver's lookups say only "Domain not found", in its own error domain
        "lookupByID(9999)": _NOT_FOUND + " id 9999",
        "lookupByName": _NOT_FOUND + " name 'face-errors-missing'",
        "lookupByUUIDString": _NOT_FOUND + " uuid '5ca1ab1e-0000-4000-8000-00000000f0ff'",
        "lookupByUUID": _NOT_FOUND + " uuid '5ca1ab1e-0000-4000-8000-00000000f0ff'",
        "undefine again": _NOT_FOUND + " uuid '5ca1ab1e-0000-4000-8000-00000000f001' "
                          "(face-errors-defined)",
    },
}

#: Lines a Xen host adds after a reference line: a reboot is, as libvirt's Xen driver
#: (libxl) reports it, the domain stopped (shut down) and started again; the test driver
#: reports nothing for a reboot (QEMU and LXC send a REBOOT event, which Xen has not).
XEN_ADDS: dict[str, dict[str, tuple[str, ...]]] = {
    "events": {
        "event: lifecycle face-events-running Resumed 0": (
            "event: lifecycle face-events-running Stopped 0",
            "event: lifecycle face-events-running Started 0"),
    },
}

#: What the reference must hold (read on real libvirt-python): the scripts reach what
#: they are for, so a script broken into printing errors cannot pass everywhere.
REFERENCE_FACTS: dict[str, tuple[str, ...]] = {
    "connection": ("getType: TEST", "getCapabilities root: capabilities",
                   "this driver's domain type offered: True",
                   "getCPUStats keys: ['idle', 'iowait', 'kernel', 'user']"),
    "listing": ("lookupByID: face-listing-running",
                "paused listAllDomains(PAUSED): ['face-listing-running']",
                "persistent listAllDomains(TRANSIENT): []", "left: []"),
    "lifecycle": ("created state: [1, 1]", "suspended state: [3, 1]", "resumed state: [1, 5]",
                  "defined state: [5, 0]", "shut down state: [5, 1]", "undefine: 0"),
    "save_restore": ("save: 0", "image exists after restore: True", "restored state: [1, 3]",
                     "restored has a new ID: True", "restore the kept image: 0"),
    "domain_config": ("created XMLDesc vcpu: ('2', '1')", "vcpusFlags after: 2",
                      'metadata element: <fav colour="blue">1</fav>',
                      "metadata title: Face script guest", "vcpusFlags(CONFIG) after: 2"),
    "events": ("the last event came: True", "a REBOOT event came: False",
               "event: lifecycle face-events-running Started 0",
               "event: lifecycle face-events-running Stopped 1",
               "event: lifecycle face-events-defined Undefined 0"),
    "errors": ("lookupByUUIDString('not-a-uuid'): 8 20 Invalid UUID",
               "read-only createXML: 29 20 operation forbidden: read only access prevents "
               "virDomainCreateXML", "the defined domain is untouched: (0, 1)"),
    "companions": ("libvirt_qemu's libvirt is this libvirt: True",
                   "event on the asyncio loop: face-companions-guest Stopped 1"),
    "other_objects": ("listNetworks: ['default']",
                      "a domain's NIC on a network: ('network', 'default')"),
    "statistics": ("blockStats by target: ('tuple', 5, True)",
                   "blockStats by source path: ('tuple', 5, True)",
                   "interfaceStats by MAC: ('tuple', 8, True)",
                   "interfaceStats of an interface it has not: error 8",
                   "domainListGetStats(state) keys: ['state.reason', 'state.state']",
                   "blockStats of a gone domain: error 42"),
}
#: What the QEMU host's reference must hold: what only a real hypervisor gives.
QEMU_FACTS: dict[str, tuple[str, ...]] = {
    "connection": ("getType: QEMU", "getMemoryStats keys: ['buffers', 'cached', 'free', "
                   "'total']"),
    "events": ("a REBOOT event came: True", "event: reboot face-events-running"),
    "companions": ("qemuMonitorCommand query-status: ('running', True)",),
}


# -- running a script ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run of a script: what it printed, how it ended."""

    argv: tuple[str, ...]
    returncode: int | None  # None: killed at the timeout (a hang)
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def explain(self) -> str:
        end = (f"killed after {RUN_TIMEOUT_S:.0f} s: a hang" if self.returncode is None
               else f"exit {self.returncode} after {self.seconds:.1f} s")
        return f"$ {' '.join(self.argv)}\n{end}\n--- stderr (tail) ---\n{self.stderr[-4000:]}"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LIBVIRT_DEFAULT_URI", None)
    env.pop("XVIRT_COMPAT_URI", None)
    return env


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def run_script(script: str, uri: str, *, compat: bool, cwd: Path,
               extra: tuple[str, ...] = ()) -> Run:
    """``script URI [extra]``, with real libvirt-python or through ``xvirt compat``, in its
    own session so that a hang is killed whole (``xvirt compat`` runs the script as its
    child)."""
    argv = [sys.executable, str(SCRIPT_DIR / f"{script}.py"), uri, *extra]
    if compat:
        argv = [sys.executable, "-m", "xvirt", "compat", "--", *argv]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=_environment(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started, and only it
        out, err = proc.communicate()
        code = None
    return Run(tuple(argv), code, _text(out), _text(err), time.monotonic() - started)


# -- every run, started at once ---------------------------------------------------------------


class Runs:
    """The module's runs, keyed ``(script, backend)``: independent ones on a pool, those
    sharing a host's state each in the order of its lane (one thread)."""

    def __init__(self, workdir: Callable[[str], Path]) -> None:
        self._workdir = workdir
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="face-run")
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._futures: dict[tuple[str, str], Future[Run]] = {}
        self._lock = threading.Lock()
        self.unavailable: dict[str, str] = {}  # backend -> why it could not run

    def submit(self, script: str, backend: str, uri: str, *, compat: bool,
               lane: str | None = None, extra: tuple[str, ...] = ()) -> None:
        with self._lock:
            cwd = self._workdir(f"{script}-{backend}")
            executor = self._pool
            if lane is not None:
                executor = self._lanes.setdefault(
                    lane, ThreadPoolExecutor(1, thread_name_prefix=f"face-{lane}"))
            self._futures[(script, backend)] = executor.submit(
                run_script, script, uri, compat=compat, cwd=cwd, extra=extra)

    def call_in_lane(self, lane: str, call: Callable[[], object]) -> None:
        """``call`` in ``lane``'s order (a host's warm-up before its scripts)."""
        with self._lock:
            self._lanes.setdefault(
                lane, ThreadPoolExecutor(1, thread_name_prefix=f"face-{lane}")).submit(call)

    def get(self, script: str, backend: str) -> Run:
        if backend in self.unavailable:
            pytest.skip(self.unavailable[backend])
        return self._futures[(script, backend)].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for lane in self._lanes.values():
            lane.shutdown(wait=True)


@pytest.fixture(scope="module")
def daemon(make_module_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_module_daemon(tcp=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, daemon: DaemonProcess) -> Iterator[Runs]:
    everything = Runs(lambda label: tmp_path_factory.mktemp(label))
    qemu: DaemonQemu | None = None
    try:
        if QEMU_USABLE:
            try:
                qemu = DaemonQemu()
            except QemuError as exc:
                everything.unavailable["qemu"] = f"no QEMU host: {exc}"
        else:
            everything.unavailable["qemu"] = "needs root and qemu-system-x86"
        if qemu is not None:
            # The lane first asks QEMU's capabilities (libvirtd probes QEMU once, ~4 s),
            # then runs each script with real libvirt-python, then through the face.
            host = qemu
            everything.call_in_lane("qemu", lambda: host.conn.getCapabilities())
            for script in SCRIPTS:
                everything.submit(script, "qemu-libvirt-python", qemu.uri, compat=False,
                                  lane="qemu")
                everything.submit(script, "qemu-face", qemu.uri, compat=True, lane="qemu")
        images = str(daemon.state_dir / "images")
        for script in SCRIPTS:
            everything.submit(script, "libvirt-python", REFERENCE_URI, compat=False)
            everything.submit(script, "face-libvirt", REFERENCE_URI, compat=True)
            everything.submit(script, "embedded", f"sim:///face-{script}?guests=0", compat=True)
            everything.submit(script, "daemon", daemon.unix_uri, compat=True, lane="daemon",
                              extra=(images,))
        yield everything
    finally:
        everything.close()
        if qemu is not None:
            qemu.close()


# -- comparing ----------------------------------------------------------------------------------


def first_difference(got: list[str], want: list[str]) -> str | None:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"line {i + 1} differs:\n  got:  {g!r}\n  want: {w!r}"
    if len(got) < len(want):
        return f"output stops after line {len(got)}; next wanted: {want[len(got)]!r}"
    if len(got) > len(want):
        return f"{len(got) - len(want)} lines more than wanted, from: {got[len(want)]!r}"
    return None


def assert_clean(run: Run, what: str) -> None:
    """Exited 0, in time, and no traceback on stderr (a callback that raised on an event
    thread prints one and the process lives on)."""
    assert run.returncode == 0, f"{what}\n{run.explain()}"
    assert "Traceback" not in run.stderr, f"{what}: a traceback\n{run.explain()}"


def assert_prints(run: Run, want: list[str], what: str) -> None:
    diff = first_difference(run.lines, want)
    assert diff is None, f"{what}: {diff}\n{run.explain()}"
    assert_clean(run, what)


def label_of(line: str) -> str:
    return line.partition(": ")[0]


def as_on_xen(script: str, reference: list[str], backend: str) -> list[str]:
    """The reference's lines as xvirt's ``backend`` (a Xen-style host) must print them."""
    lacks, says = XEN_LACKS.get(script, ()), XEN_SAYS.get(script, {})
    adds = XEN_ADDS.get(script, {})
    out = []
    for line in reference:
        label = label_of(line)
        extra = adds.get(line, ())
        if label in lacks:
            line = f"{label}: {NO_SUPPORT}"
        elif label in says:
            line = f"{label}: {says[label].format(where=ERROR_DOMAIN[backend])}"
        out += [line, *extra]
    return out


def assert_sound_reference(run: Run, what: str) -> None:
    """Real libvirt-python ran the script cleanly, and raised nothing but libvirtError
    (a ``raised`` line would be the script's own bug)."""
    assert_clean(run, what)
    odd = [line for line in run.lines if ": raised " in line]
    assert not odd, f"{what}: the script itself fails: {odd}"


def reference(runs: Runs, script: str) -> list[str]:
    run = runs.get(script, "libvirt-python")
    assert_sound_reference(run, f"{script} on real libvirt-python")
    return run.lines


# -- the tests ----------------------------------------------------------------------------------


def test_the_scripts() -> None:
    assert SCRIPTS == ["companions", "connection", "domain_config", "errors", "events",
                       "lifecycle", "listing", "other_objects", "save_restore", "statistics"]
    assert set(REFERENCE_FACTS) == set(SCRIPTS)
    assert set(XEN_LACKS) | set(XEN_SAYS) <= set(SCRIPTS)


def test_the_reference_uri_is_xvirts_libvirt_driver_under_the_face() -> None:
    """(b) gives the scripts the URI (a) gives them, as a user would: the face opens it
    as ``libvirt:test:///default`` and names it as libvirt does."""
    conn = face.open(REFERENCE_URI)
    try:
        assert conn._xvirt.uri == "libvirt:" + REFERENCE_URI
        assert conn.getURI() == REFERENCE_URI
    finally:
        conn.close()


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_reference_holds_what_libvirt_says(runs: Runs, script: str) -> None:
    """Real libvirt-python runs each script cleanly, and the lines say what each
    script is for; every listed Xen difference names one line of it, which the test
    driver answers (a NO_SUPPORT it shares needs no listing)."""
    lines = reference(runs, script)
    for fact in REFERENCE_FACTS[script]:
        assert fact in lines, f"{script}: {fact!r} not in\n" + "\n".join(lines)
    labels = [label_of(line) for line in lines]
    for label in (*XEN_LACKS.get(script, ()), *XEN_SAYS.get(script, {})):
        assert labels.count(label) == 1, f"{script}: {label!r} is not one line"
    for label in XEN_LACKS.get(script, ()):
        assert f"{label}: {NO_SUPPORT}" not in lines, f"{script}: {label!r} needs no listing"
    for line in XEN_ADDS.get(script, {}):
        assert lines.count(line) == 1, f"{script}: {line!r} is not one line"


@pytest.mark.parametrize("script", SCRIPTS)
def test_through_the_face_on_libvirts_test_driver(runs: Runs, script: str) -> None:
    """(b): xvirt's libvirt driver under the face, real libvirt beneath: libvirt's output."""
    assert_prints(runs.get(script, "face-libvirt"), reference(runs, script),
                  f"{script} through the face on {REFERENCE_URI}")


@pytest.mark.skipif(not QEMU_USABLE, reason="needs root and qemu-system-x86")
@pytest.mark.parametrize("script", SCRIPTS)
def test_through_the_face_on_qemu(runs: Runs, script: str) -> None:
    """(c): real QEMU guests; the face must print what libvirt-python prints there."""
    want = runs.get(script, "qemu-libvirt-python")
    assert_sound_reference(want, f"{script} on QEMU with real libvirt-python")
    for fact in QEMU_FACTS.get(script, ()):
        assert fact in want.lines, f"{script} on QEMU: {fact!r} not in\n{want.stdout}"
    assert_prints(runs.get(script, "qemu-face"), want.lines, f"{script} through the face on QEMU")


@pytest.mark.parametrize("script", SCRIPTS)
def test_on_an_embedded_host(runs: Runs, script: str) -> None:
    """(d): libvirt's output, but for the listed lines of what a Xen host lacks or says
    otherwise."""
    want = as_on_xen(script, reference(runs, script), "embedded")
    assert_prints(runs.get(script, "embedded"), want,
                  f"{script} through the face on an embedded host")


@pytest.mark.parametrize("script", SCRIPTS)
def test_on_a_host_daemon(runs: Runs, script: str) -> None:
    """(e): the same through a host daemon (saving into the daemon's image directory)."""
    want = as_on_xen(script, reference(runs, script), "daemon")
    assert_prints(runs.get(script, "daemon"), want, f"{script} through the face on a host daemon")
