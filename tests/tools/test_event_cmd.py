"""``xvirt event`` (xvirt/tools/event_cmd.py): virsh's lines for xvirt's lifecycle changes,
on an embedded host, a daemon and libvirt (beside a real ``virsh event``).

No test waits for time to pass: the host acts as the command reads (``live``), and
--timeout runs on a clock that ticks a second each time it is read, with no wait
between reads (``ticking``). On a daemon and libvirt, the events come from another
process: the command waits for them, not for a time."""

from __future__ import annotations

import itertools
import json
import re
import select
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import xvirt
from tests.tools.with_virsh import (
    VIRSH,
    needs_virsh,
    ok,
    one_error_line,
    run,
    virsh,
)
from xvirt.clock import ManualClock
from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.daemon import DaemonProcess
from xvirt.tools import event_cmd

pytestmark = pytest.mark.clock_start(1000.0)

Action = Callable[[], object]


class _Live:
    """The command's event stream, with the host doing one of ``actions`` before each
    read: events are read as they happen, as a live host's would be."""

    def __init__(self, stream: Iterator[xvirt.DomainEvent], actions: list[Action],
                 then: Action | None) -> None:
        self._stream = stream
        self._actions = actions
        self._then = then

    def __iter__(self) -> _Live:
        return self

    def __next__(self) -> xvirt.DomainEvent:
        if self._actions:
            self._actions.pop(0)()
        elif self._then is not None:
            self._then()
        return next(self._stream)


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``live(*actions, then=None)``: the command's stream (once it subscribed) sees the
    host do each action before each read, then ``then`` before every later read."""
    real = xvirt.Connection.events

    def install(*actions: Action, then: Action | None = None) -> None:
        def events(self: xvirt.Connection, **kw: Any) -> _Live:
            return _Live(real(self, **kw), list(actions), then)

        monkeypatch.setattr(xvirt.Connection, "events", events)
    return install


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    """--timeout on a clock that moves a second at each reading; no read waits."""
    seconds = itertools.count()
    monkeypatch.setattr(event_cmd, "clock", lambda: float(next(seconds)))
    monkeypatch.setattr(event_cmd, "STEP_S", 0.0)


@pytest.fixture
def lab(sim_host: xvirt.sim.Host, clock: ManualClock) -> xvirt.sim.Host:
    """Domain-0, web1 (ID 1) and db1 (ID 2)."""
    sim_host.create("web1")
    sim_host.create("db1")
    return sim_host


def domid(host: xvirt.sim.Host, name: str) -> int:
    (found,) = [r.id for r in host.domains() if r.name == name]
    return found


def lines(*events: str, timed_out: bool = True) -> str:
    """What the command prints for ``events`` ("for domain ..." onwards)."""
    shown = "".join(f"event 'lifecycle' for domain {e}\n" for e in events)
    return shown + ("event loop timed out\n" if timed_out else "") + \
        f"events received: {len(events)}\n\n"


@pytest.mark.usefixtures("ticking")
def test_every_lifecycle_change_in_virshs_words(lab: xvirt.sim.Host, live: Any) -> None:
    h = lab
    live(lambda: h.pause(domid(h, "web1")), lambda: h.resume(domid(h, "web1")),
         lambda: h.rename(domid(h, "web1"), "www"), lambda: h.reboot(domid(h, "www")),
         lambda: h.migrate(domid(h, "www")), lambda: h.save(domid(h, "www"), "img"),
         lambda: h.restore("img"), lambda: h.crash(domid(h, "www")),
         lambda: h.destroy(domid(h, "www")), lambda: h.create("t1"),
         lambda: h.shutdown(domid(h, "t1")), lambda: h.define("g1"),
         lambda: h.start(_uuid_of_defined(h, "g1")), lambda: h.destroy(domid(h, "g1")),
         lambda: h.undefine(_uuid_of_defined(h, "g1")))
    out = ok(run("event", "--loop", "--all", "--timeout", "100", "-c", lab.uri))
    assert out == lines(
        "'web1': Suspended Paused", "'web1': Resumed Unpaused", "'www': Defined Renamed",
        "'www': Started Booted", "'www': Started Migrated", "'www': Stopped Saved",
        "'www': Started Restored", "'www': Crashed Panicked", "'www': Stopped Destroyed",
        "'t1': Started Booted", "'t1': Stopped Shutdown", "'g1': Defined Added",
        "'g1': Started Booted", "'g1': Stopped Destroyed", "'g1': Undefined Removed")


def _uuid_of_defined(host: xvirt.sim.Host, name: str) -> str:
    found = [d.uuid for d in host.defined_domains() if d.name == name]
    found += [r.uuid for r in host.domains() if r.name == name]
    return found[0]


def test_every_lifecycle_kind_has_virshs_words() -> None:
    lifecycle = {k for k in xvirt.EventKind if k.lifecycle}
    assert set(event_cmd.LIFECYCLE_WORDS) == lifecycle == event_cmd.EVENT_TYPES["lifecycle"]


def test_the_words_are_those_of_the_libvirt_faces_numbers() -> None:
    """Each change is told as the libvirt face tells scripts: its (event, detail) numbers
    are libvirt's constants whose names are virsh's words (VIR_DOMAIN_EVENT_STARTED,
    VIR_DOMAIN_EVENT_STARTED_BOOTED: "Started Booted")."""
    from xvirt.compat._events import LIFECYCLE

    lv = real_libvirt()
    for kind, (what, detail) in event_cmd.LIFECYCLE_WORDS.items():
        event, detail_number = LIFECYCLE[kind]
        assert getattr(lv, f"VIR_DOMAIN_EVENT_{what.upper()}") == event, kind
        assert getattr(lv, f"VIR_DOMAIN_EVENT_{what.upper()}_{detail.upper()}") == \
            detail_number, kind


def test_without_loop_the_first_event_ends_it(lab: xvirt.sim.Host, live: Any) -> None:
    live(lambda: lab.pause(domid(lab, "db1")), lambda: lab.destroy(domid(lab, "web1")))
    out = ok(run("event", "--event", "lifecycle", "-c", lab.uri))
    assert out == lines("'db1': Suspended Paused", timed_out=False)
    assert [r.name for r in lab.domains()] == ["Domain-0", "web1", "db1"]  # read no further


@pytest.mark.usefixtures("ticking")
def test_domain_chooses_whose_events(lab: xvirt.sim.Host, live: Any) -> None:
    web1 = next(r.uuid for r in lab.domains() if r.name == "web1")
    for ref in ("web1", "1", web1):
        live(lambda: lab.pause(domid(lab, "db1")), lambda: lab.pause(domid(lab, "web1")),
             lambda: lab.resume(domid(lab, "db1")), lambda: lab.resume(domid(lab, "web1")))
        out = ok(run("event", "--all", "--loop", "--domain", ref, "--timeout", "20",
                     "-c", lab.uri))
        assert out == lines("'web1': Suspended Paused", "'web1': Resumed Unpaused")


def test_an_unknown_domain_is_virshs_line(lab: xvirt.sim.Host) -> None:
    assert one_error_line(run("event", "--all", "--domain", "nosuch", "-c", lab.uri)) == \
        "error: failed to get domain 'nosuch'"


@pytest.mark.usefixtures("ticking")
def test_no_event_in_time_is_exit_status_1(lab: xvirt.sim.Host) -> None:
    result = run("event", "--all", "--timeout", "3", "-c", lab.uri)
    assert result.exit_code == 1
    assert result.stdout == "event loop timed out\nevents received: 0\n\n"  # as virsh's
    assert result.stderr == ""


@pytest.mark.usefixtures("ticking")
def test_the_timeout_ends_a_loop_that_has_events(lab: xvirt.sim.Host, live: Any) -> None:
    """One event a read, for ever: the deadline still ends it, after as many reads."""
    flips = itertools.cycle([lab.pause, lab.resume])
    live(then=lambda: next(flips)(domid(lab, "web1")))
    out = ok(run("event", "--all", "--loop", "--timeout", "4", "-c", lab.uri))
    assert out == lines("'web1': Suspended Paused", "'web1': Resumed Unpaused",
                        "'web1': Suspended Paused")


@pytest.mark.usefixtures("ticking")
def test_metadata_changes_in_virshs_words(lab: xvirt.sim.Host, live: Any) -> None:
    def title() -> None:
        with xvirt.open(lab.uri) as conn:
            conn.lookup_by_name("web1").set_metadata(xvirt.MetadataKind.TITLE, "Web")

    def element() -> None:
        with xvirt.open(lab.uri) as conn:
            conn.lookup_by_name("db1").set_metadata(
                xvirt.MetadataKind.ELEMENT, "<app/>", key="app", uri="http://example.org/a")

    live(lambda: lab.pause(domid(lab, "web1")), title, element)
    out = ok(run("event", "--loop", "--event", "metadata-change", "--timeout", "20",
                 "-c", lab.uri))
    assert out == ("event 'metadata-change' for domain 'web1': type title, uri (null)\n"
                   "event 'metadata-change' for domain 'db1': type element, "
                   "uri http://example.org/a\n"
                   "event loop timed out\nevents received: 2\n\n")


def test_json_is_one_object_a_line(lab: xvirt.sim.Host, live: Any) -> None:
    rec = next(r for r in lab.domains() if r.name == "web1")
    live(lambda: lab.pause(rec.id))
    out = ok(run("event", "--all", "--json", "-c", lab.uri))
    assert [json.loads(line) for line in out.splitlines()] == [{
        "type": "lifecycle", "kind": "paused", "name": "web1", "uuid": rec.uuid,
        "id": rec.id, "old_id": None, "uri": None}]


def test_timestamp_as_virsh_prints_it(lab: xvirt.sim.Host, live: Any) -> None:
    live(lambda: lab.pause(domid(lab, "web1")))
    out = ok(run("event", "--all", "--timestamp", "-c", lab.uri))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0000: event 'lifecycle' "
                        r"for domain 'web1': Suspended Paused\nevents received: 1\n\n", out)
    when = datetime(2024, 2, 29, 23, 59, 58, 987654, tzinfo=timezone(timedelta(hours=-2)))
    assert event_cmd.timestamp(when) == "2024-03-01 01:59:58.987+0000"
    assert event_cmd.timestamp(datetime(2024, 1, 1, tzinfo=UTC)) == \
        "2024-01-01 00:00:00.000+0000"


def test_ctrl_c_says_how_many_came_and_exits_130(lab: xvirt.sim.Host, live: Any) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    live(lambda: lab.pause(domid(lab, "web1")), then=interrupt)
    result = run("event", "--all", "--loop", "-c", lab.uri)
    assert result.exit_code == 130
    assert result.stdout == lines("'web1': Suspended Paused", timed_out=False)
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr


@needs_virsh
def test_list_names_virshs_types() -> None:
    out = ok(run("event", "--list"))
    assert out == "lifecycle\nmetadata-change\n\n"
    theirs = virsh("test:///default", "event", "--list").stdout.split()
    assert set(out.split()) <= set(theirs)


@pytest.mark.parametrize(("args", "words"), [
    ([], "one of --list, --all, or --event <type> is required"),  # virsh's words
    (["--event", "reboot"], "'reboot' is not one of"),
    (["--all", "--timeout", "0"], "--timeout"),
    (["--all", "--timeout", "soon"], "--timeout"),
])
def test_usage_errors_exit_2(args: list[str], words: str) -> None:
    result = run("event", *args)
    assert result.exit_code == 2
    assert words in result.stderr


# -- a daemon and libvirt: events from another process ------------------------------------------


def test_on_a_daemon_over_tcp_without_a_token(daemon: DaemonProcess, live: Any) -> None:
    with xvirt.open(daemon.unix_uri) as conn:
        conn.create("web1", xvirt.DomainConfig(262144, 262144, 1))

    def pause() -> None:
        with xvirt.open(daemon.unix_uri) as conn:
            conn.lookup_by_name("web1").pause()

    live(pause)
    out = ok(run("event", "--all", "-c", daemon.tcp_uri))
    assert out == lines("'web1': Suspended Paused", timed_out=False)


def _xvirt_line(uri: str, act: Action, live: Any) -> str:
    """The line ``xvirt event`` prints for what ``act`` does (its first event)."""
    live(act)
    out = ok(run("event", "--all", "--timeout", "60", "-c", f"libvirt:{uri}"))
    first, summary = out.split("\n", 1)
    assert summary == "events received: 1\n\n"
    return first


@needs_virsh
def test_on_libvirt_the_lines_are_virshs(libvirtd_host: str, live: Any) -> None:
    """The same changes on one libvirtd, seen by ``virsh event --loop`` and by xvirt."""
    assert VIRSH is not None
    keeper = real_libvirt().open(libvirtd_host)
    dom = keeper.lookupByName("test")
    steps: list[Action] = [dom.suspend, dom.resume, dom.destroy, dom.create]
    mine = [_xvirt_line(libvirtd_host, step, live) for step in steps]
    watcher = subprocess.Popen([VIRSH, "-c", libvirtd_host, "event", "--all", "--loop"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        for _ in range(120):  # until virsh listens: a change it reports (it flushes lines)
            dom.suspend()
            dom.resume()
            if select.select([watcher.stdout], [], [], 0.5)[0]:
                break
        else:
            pytest.fail("virsh event reported nothing")
        seen = watcher.stdout.readline()
        if "Suspended" in seen:  # it heard the suspend: the resume is next
            assert watcher.stdout.readline() == mine[1] + "\n"
        for step in steps:
            step()
        theirs = [watcher.stdout.readline().rstrip("\n") for _ in steps]
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)
        keeper.close()
    assert theirs == mine == [
        "event 'lifecycle' for domain 'test': Suspended Paused",
        "event 'lifecycle' for domain 'test': Resumed Unpaused",
        "event 'lifecycle' for domain 'test': Stopped Destroyed",
        "event 'lifecycle' for domain 'test': Started Booted",
    ]
