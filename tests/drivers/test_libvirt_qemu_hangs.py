"""No guest can freeze the rest, on real QEMU (issue 17, item 3): one guest's QEMU
SIGSTOPped, as a stuck storage backend leaves it, behind a private libvirtd reached over
its socket (``xvirt.testing.qemu.DaemonQemu``: TCG guests as ``nobody``, or KVM where
that user can open /dev/kvm; the test says which).

With the stopped guest's job held by a ``pause()`` that waits on its monitor (libvirt's
monitor calls have no timeout: it waits until the guest runs again), every other caller
is answered: listings, lookups by ID, name and UUID, ``info()`` of the other domains,
and the survey. Nothing xvirt asks for a monitoring sample goes to a guest's monitor,
so even the stopped guest's CPU time and memory are read (from /proc and libvirt's
records); the call that does need its monitor is the one reported as not answering.
The guest is always sent SIGCONT in a ``finally``. Each run prints the slowest call of
each kind, with and without a pending action on the stopped guest; the test asserts that
every caller is answered (no freeze), and the speed target (every other domain within
1 s) is measured by benchmarks/, not asserted on a shared, noisy machine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xvirt
from tests.threads import in_thread

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/qemu-system-x86_64"),
    reason="needs root and qemu-system-x86 (scripts/test installs it)")

GUESTS = 4
STOPPED = "h001"
LIVENESS_S = 60.0  # how long a frozen caller is waited for before the test says so


@pytest.fixture(scope="module")
def qemu() -> Iterator[Any]:
    from xvirt.testing.qemu import DaemonQemu

    host = DaemonQemu()
    try:
        host.boot_many(GUESTS, prefix="h")
        yield host
    finally:
        host.close()


def qemu_pid(host: Any, name: str) -> int:
    """The PID of guest ``name``'s QEMU, from /proc (``-name guest=NAME,...``)."""
    for pid in host.qemu_pids():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if f"guest={name}".encode() in b" ".join(argv):
            return pid
    raise AssertionError(f"no QEMU process for guest {name}")



def the_others(conn: xvirt.Connection, uuids: dict[str, str]) -> dict[str, float]:
    """Every call the issue names, for the domains other than STOPPED, timed."""
    took: dict[str, float] = {}

    def timed(what: str, fn: Callable[[], object]) -> Any:
        start = time.monotonic()
        value = fn()
        took[what] = max(took.get(what, 0.0), time.monotonic() - start)
        return value

    ids = timed("list_domain_ids", conn.list_domain_ids)
    assert len(ids) == GUESTS
    names = {timed("lookup_by_id", lambda i=i: conn.lookup_by_id(i).name) for i in ids}
    assert names == set(uuids)
    for name, uuid in uuids.items():
        if name == STOPPED:
            continue
        dom = timed("lookup_by_name", lambda n=name: conn.lookup_by_name(n))
        assert timed("lookup_by_uuid", lambda u=uuid: conn.lookup_by_uuid(u)) == dom
        info = timed("info", dom.info)
        assert info.state is xvirt.DomainState.RUNNING and info.cpu_time_ns > 0
    survey = timed("survey", conn.survey)
    answered = {s.identity.name for s in survey.samples}
    assert set(uuids) - {STOPPED} <= answered
    return took


def report(capsys: Any, qemu: Any, what: str, took: dict[str, float]) -> None:
    with capsys.disabled():
        print(f"\n{qemu.accel} guests via {qemu.uri}, {STOPPED} SIGSTOPped, {what}: slowest "
              "call by kind: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in took.items()))


def answered_by_others(conn: xvirt.Connection, uuids: dict[str, str]) -> dict[str, float]:
    others, answered = in_thread(lambda: the_others(conn, uuids))
    others.join(LIVENESS_S)
    assert not others.is_alive(), "a caller froze behind the stopped guest"
    took = answered[0]
    assert isinstance(took, dict), took
    return took


def test_a_stopped_guest_freezes_no_other_caller(qemu: Any, capsys: Any) -> None:
    with xvirt.open("libvirt:" + qemu.uri) as conn:
        uuids = {s.identity.name: s.identity.uuid for s in conn.sample()}
        assert len(uuids) == GUESTS
        stuck = conn.lookup_by_name(STOPPED)
        pid = qemu_pid(qemu, STOPPED)
        os.kill(pid, signal.SIGSTOP)
        try:
            # Monitoring (list, dominfo, top, the exporter): nothing waits on the guest,
            # not even its own info() (CPU time from /proc, memory from libvirt's records).
            took = answered_by_others(conn, uuids)
            report(capsys, qemu, "nothing pending", took)  # the 1 s target: benchmarks/
            assert stuck.info().state is xvirt.DomainState.RUNNING
            # An action on it waits on its monitor (no timeout in libvirt): that caller
            # only. The others are answered; libvirt's remote client lets a call queued
            # behind a thread that waits for its reply wait up to one keepalive interval
            # (the driver sets 1 s).
            pausing, paused = in_thread(stuck.pause)
            pausing.join(0.5)
            assert pausing.is_alive(), f"pause answered though QEMU is stopped: {paused}"
            took = answered_by_others(conn, uuids)
            report(capsys, qemu, "a pause() of it pending", took)
            assert pausing.is_alive() and not paused  # the stopped guest still not answering
        finally:
            os.kill(pid, signal.SIGCONT)
        pausing.join(LIVENESS_S)
        assert paused == [None], paused  # it answers once it runs again
        stuck.resume()
        assert stuck.info().state is xvirt.DomainState.RUNNING
