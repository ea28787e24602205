"""``xvirt top`` with hosts that are slow: each host is refreshed on its own schedule,
so one that does not answer never holds up the others, and %CPU is computed from
the time the CPU times can have been read, so a slow survey never shows a domain
above 100% per vCPU or a host above 100% per CPU. Time is a ManualClock (nothing
sleeps); the schedule is checked by counts and order, never by wall time."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
from xvirt.clock import ManualClock
from xvirt.tools.cli import main
from xvirt.tools.top import Fleet, HostConnection, HostWatcher, TopEnv, open_readonly
from xvirt.tools.top_model import HEADER_WIDTH, summary_lines

# -- a host whose survey can be held ------------------------------------------------------


class Stalling:
    """A real connection whose ``survey`` waits while the host is held; counts surveys."""

    def __init__(self, conn: HostConnection) -> None:
        self._conn = conn
        self.surveys = 0
        self.free = threading.Event()
        self.free.set()

    def host_info(self) -> xvirt.HostInfo:
        return self._conn.host_info()

    def survey(self, groups: Iterable[xvirt.StatGroup] = ()) -> xvirt.Survey:
        self.surveys += 1
        if not self.free.wait(timeout=60):  # a test that forgets to let go fails, not hangs
            raise xvirt.HostUnreachableError("held for 60 s by the test")
        return self._conn.survey(groups)

    def stats(self) -> xvirt.ConnStats:
        return self._conn.stats()

    def close(self) -> None:
        self._conn.close()


@dataclass
class Hosts:
    clock: ManualClock
    fast: xvirt.sim.Host
    slow: xvirt.sim.Host
    held: dict[str, Stalling] = field(default_factory=dict)

    def opener(self, uri: str) -> HostConnection:
        conn = open_readonly(uri)
        if uri != self.slow.uri:
            return conn
        self.held[uri] = Stalling(conn)
        return self.held[uri]

    @property
    def stalling(self) -> Stalling:
        return self.held[self.slow.uri]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    clock = ManualClock(100.0)
    tag = uuid.uuid4().hex[:8]
    fast = xvirt.sim.Host(f"fast-{tag}", clock=clock)
    slow = xvirt.sim.Host(f"slow-{tag}", clock=clock)
    fast.create("web", vcpus=2, load=0.5)
    slow.create("db", vcpus=1, load=1.0)
    yield Hosts(clock, fast, slow)
    fast.close()
    slow.close()


def test_a_held_host_never_holds_up_the_others(hosts: Hosts) -> None:
    fleet = Fleet([hosts.fast.uri, hosts.slow.uri], hosts.clock, hosts.opener)
    try:
        fast, slow = fleet.refresh(wait_s=30)
        assert fast.error is None and slow.error is None
        hosts.stalling.free.clear()
        # The refresh that finds the host held waits for it (at most wait_s); those
        # after it do not wait for it at all: they return as soon as the fast host has.
        fast, slow = fleet.refresh(wait_s=0.5)
        assert fast.error is None and slow.pending_s == 0.0
        for second in range(1, 6):
            hosts.clock.advance(1.0)
            fast, slow = fleet.refresh(wait_s=30)
            assert fast.error is None and [r.name for r in fast.rows] == ["Domain-0", "web"]
            assert fast.cpu_percent is not None  # the fast host's shares go on
            assert slow.pending_s == float(second) and slow.rows == ()
            assert slow.error == f"no answer yet: refreshing for {second}.0 s"
            assert slow.info is not None and slow.info.hostname == f"{hosts.slow.name}.sim"
            said = summary_lines(slow, 1.0)  # within the header's width, wrapped
            assert all(len(line) <= HEADER_WIDTH for line in said)
            assert " ".join(" ".join(said).split()) == (
                f"{hosts.slow.name}.sim ({hosts.slow.uri}): no answer yet: refreshing for "
                f"{second}.0 s (the other hosts are not held up)")
        assert hosts.stalling.surveys == 2  # one refresh under way per host, never a pile
        assert fleet.watchers[0].connection is not None
        assert fleet.watchers[0].connection.stats().data_calls == 7  # every refresh
        hosts.stalling.free.set()
        assert fleet.wait_idle(timeout=30)
        # Let go, the host is idle again: the next refresh starts one for it and shows
        # its newest answer, and so does every one after, on schedule.
        for surveys in (3, 4):
            hosts.clock.advance(1.0)
            fast, slow = fleet.refresh(wait_s=30)
            assert slow.error is None and slow.pending_s is None
            assert [r.name for r in slow.rows] == ["Domain-0", "db"]
            assert hosts.stalling.surveys == surveys
    finally:
        hosts.stalling.free.set()
        fleet.close()


def run_top(hosts: Hosts, *args: str) -> Result:
    env = TopEnv(clock=hosts.clock, wall=lambda: 1_700_000_000.0, opener=hosts.opener)
    return CliRunner().invoke(main, ["top", *args], obj=env)


def test_batch_json_goes_on_while_one_host_is_held(hosts: Hosts) -> None:
    """The batch loop writes a refresh every delay; the held host is a line saying so."""
    real = hosts.opener

    def opener(uri: str) -> HostConnection:
        conn = real(uri)
        if uri == hosts.slow.uri:
            hosts.stalling.free.clear()  # held from its first survey on
        return conn

    hosts.opener = opener  # type: ignore[method-assign]
    try:
        result = run_top(hosts, "--json", "-n", "4", "-d", "0.2",
                         "-c", hosts.fast.uri, "-c", hosts.slow.uri)
    finally:
        hosts.stalling.free.set()
    assert result.exit_code == 0, (result.output, result.exception)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    for r in records:
        fast, slow = r["hosts"]
        assert fast["error"] is None and [d["name"] for d in fast["domains"]] == [
            "Domain-0", "web"]
        assert slow["pending_s"] is not None and slow["domains"] == []
    assert [r["hosts"][1]["pending_s"] for r in records] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert hosts.stalling.surveys == 1


# -- %CPU: never above what the CPUs can give, whatever the survey's duration ------------------


class Metered:
    """A host of ``cpus`` CPUs on a ManualClock whose domains burn CPU time at rates
    within their vCPUs and, all together, within the host's CPUs. A survey takes
    ``before + after`` seconds and reads the CPU times ``before`` seconds in."""

    def __init__(self, clock: ManualClock, cpus: int, vcpus: list[int]) -> None:
        self.clock, self.cpus, self.vcpus = clock, cpus, vcpus
        self.cpu_ns = [0.0] * len(vcpus)
        self.rates = [0.0] * len(vcpus)  # CPUs each domain uses now
        self.survey_s = (0.0, 0.0)
        self._info = xvirt.HostInfo("metered", "test", "1", "x86_64", cpus, 2000, 1, 1,
                                    cpus, 1, 1 << 24, 1 << 23, "boot-1")

    def set_rates(self, shares: list[float]) -> None:
        wanted = [s * v for s, v in zip(shares, self.vcpus, strict=True)]
        scale = min(1.0, self.cpus / sum(wanted)) if sum(wanted) > 0 else 1.0
        self.rates = [w * scale for w in wanted]

    def run(self, seconds: float) -> None:
        for i, rate in enumerate(self.rates):
            self.cpu_ns[i] += rate * seconds * 1e9
        self.clock.advance(seconds)

    def host_info(self) -> xvirt.HostInfo:
        return self._info

    def survey(self, groups: Iterable[xvirt.StatGroup] = ()) -> xvirt.Survey:
        before, after = self.survey_s
        self.run(before)
        samples = [xvirt.DomainSample(
            xvirt.Identity(f"00000000-0000-4000-8000-{i:012x}", f"d{i}", i + 1),
            xvirt.DomainInfo(xvirt.DomainState.RUNNING, 1024, 1024, v, int(ns)))
            for i, (v, ns) in enumerate(zip(self.vcpus, self.cpu_ns, strict=True))]
        self.run(after)
        return xvirt.Survey(samples, [])

    def stats(self) -> xvirt.ConnStats:
        return xvirt.ConnStats(0, 0, 0, 0, 0, 0, 0)

    def close(self) -> None:
        pass


STEP = st.tuples(
    st.floats(0.0, 30.0),  # seconds between refreshes
    st.floats(0.0, 20.0), st.floats(0.0, 20.0),  # the survey: before and after its reading
    st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),  # each domain's load
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cpus=st.integers(1, 8), vcpus=st.lists(st.integers(1, 8), min_size=4, max_size=4),
       steps=st.lists(STEP, min_size=2, max_size=12))
def test_no_share_is_ever_above_the_cpus_there_are(
        cpus: int, vcpus: list[int], steps: list[tuple[float, float, float, list[float]]]
) -> None:
    clock = ManualClock(0.0)
    host = Metered(clock, cpus, vcpus)
    watcher = HostWatcher("metered:", clock, lambda _uri: host)
    for gap, before, after, loads in steps:
        host.set_rates(loads)
        host.run(gap)
        host.survey_s = (before, after)
        frame = watcher.refresh()
        assert frame.error is None
        for row in frame.rows:
            if row.cpu_percent is not None:
                assert row.vcpus is not None
                assert 0 <= row.cpu_percent <= 100 * min(row.vcpus, cpus) / cpus + 1e-6
        if frame.cpu_percent is not None:
            assert frame.cpu_percent <= 100 + 1e-6


def test_a_slow_survey_after_a_quick_one_is_not_a_spike() -> None:
    """The case seen during a libvirtd restart: a survey that took 7 s, reading the CPU
    times at its end, 1 s after a quick one. Timing the survey from its start showed
    a host fully busy on 2 CPUs at 171.6%; now no share is shown for that refresh
    (the reading may be anywhere in those 7 s) and the next is exact again."""
    clock = ManualClock(0.0)
    host = Metered(clock, 2, [2, 2])
    host.set_rates([1.0, 1.0])  # both domains use every CPU of the host
    watcher = HostWatcher("metered:", clock, lambda _uri: host)
    watcher.refresh()
    host.run(1.0)
    host.survey_s = (7.0, 0.0)
    slow = watcher.refresh()
    assert slow.cpu_percent is None and all(r.cpu_percent is None for r in slow.rows)
    host.run(3.0)
    host.survey_s = (0.0, 0.0)
    assert watcher.refresh().cpu_percent is None  # the previous reading's instant is unknown
    host.run(3.0)
    back = watcher.refresh()
    assert back.cpu_percent == pytest.approx(100.0)
    assert [r.cpu_percent for r in back.rows] == [pytest.approx(50.0)] * 2
