"""The exporter's collector against embedded hosts whose truth we know: every scrape
serves exactly the live domains, as they are, once each; a wedged domain or an
unreachable host is reported, never papered over; steady state costs the control
plane nothing."""

from __future__ import annotations

import threading
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

import xvirt
from xvirt.clock import ManualClock
from xvirt.compat import _domain as compat_domain
from xvirt.testing.daemon import DaemonTarget
from xvirt.testing.prometheus import Labels, parse_samples, promtool
from xvirt.tools.exporter_metrics import (
    ALL_COLLECTORS,
    DEFINED,
    STATE_CODES,
    HostReader,
    Reading,
    ScrapeTimeout,
    SurveyRunner,
    XvirtCollector,
    build_families,
    describe_families,
)

Samples = dict[tuple[str, Labels], float]
#: What every scrape serves, whether or not the host could be read.
ALWAYS = {"xvirt_exporter_build_info", "xvirt_up", "xvirt_scrape_duration_seconds"}
#: Without the count of defined domains: a scrape then costs no control-plane request.
NOT_DEFINED = frozenset(ALL_COLLECTORS) - {DEFINED}
PER_DOMAIN = ("xvirt_domain_state", "xvirt_domain_cpu_seconds_total",
              "xvirt_domain_memory_bytes", "xvirt_domain_memory_max_bytes",
              "xvirt_domain_vcpus", "xvirt_domain_scrape_error", "xvirt_domain_info")
pytestmark = pytest.mark.clock_start(1000.0)


def _done_now(future: Future[Reading], timeout: float) -> bool:
    """A waiter whose deadline has always just passed, unless the read is done."""
    return future.done()


def _wait_long(future: Future[Reading], timeout: float) -> bool:
    """A waiter that waits for the read itself (bounded generously), whatever the deadline."""
    try:
        future.exception(timeout=30)
    except TimeoutError:
        return False
    return True


class Rig:
    """A collector on its own registry over one embedded host; ``scrape()`` returns the
    served samples (parsed from the real exposition, duplicates refused)."""

    def __init__(self, host: xvirt.sim.Host, clock: ManualClock, *,
                 opener: Callable[[str | None], xvirt.Connection] | None = None,
                 collect: frozenset[str] = frozenset(ALL_COLLECTORS)) -> None:
        self.connections: list[xvirt.Connection] = []
        self.logged: list[str] = []

        def open_and_keep(uri: str | None) -> xvirt.Connection:
            conn = (opener or (lambda u: xvirt.open(u, readonly=True)))(uri)
            self.connections.append(conn)
            return conn

        self.reader = HostReader(host.uri, open_and_keep, collect=collect)
        self.runner = SurveyRunner(self.reader.read, clock=clock, waiter=_wait_long)
        self.registry = CollectorRegistry()
        self.registry.register(XvirtCollector(self.runner, timeout_s=5.0, clock=clock,
                                              log=self.logged.append))

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def scrape(self) -> Samples:
        return parse_samples(self.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the series of ``name`` with exactly ``labels``, or else of the one
    series whose labels include them (a domain's by its uuid alone)."""
    wanted = frozenset(labels.items())
    if (name, wanted) in samples:
        return samples[(name, wanted)]
    (found,) = [v for (n, have), v in samples.items() if n == name and wanted <= have]
    return found


def info_of(samples: Samples) -> dict[str, dict[str, str]]:
    """uuid -> the labels of its xvirt_domain_info series."""
    out: dict[str, dict[str, str]] = {}
    for name, labels in samples:
        if name == "xvirt_domain_info":
            d = dict(labels)
            assert d["uuid"] not in out
            out[d["uuid"]] = d
    return out


def uuids_of(samples: Samples, name: str) -> set[str]:
    return {dict(labels)["uuid"] for n, labels in samples if n == name}


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    """An empty host on ``clock``."""
    return sim_host


def test_every_live_domain_is_served_as_the_host_has_it(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    host.create("web1", memory_kib=524288, max_memory_kib=1048576, vcpus=2, load=0.5)
    paused = host.create("db1", memory_kib=262144, vcpus=4)
    host.pause(paused.id)
    idle = host.create("cache1")
    host.set_blocked(idle.id)
    clock.advance(12.5)
    got = Rig(host, clock).scrape()
    truth = host.domains()
    assert value(got, "xvirt_up") == 1
    assert info_of(got) == {r.uuid: {"uuid": r.uuid, "name": r.name, "id": str(r.id),
                                     "state": r.state.value} for r in truth}
    for r in truth:
        assert value(got, "xvirt_domain_state", uuid=r.uuid) == STATE_CODES[r.state]
        assert value(got, "xvirt_domain_cpu_seconds_total", uuid=r.uuid) == r.cpu_time_ns / 1e9
        assert value(got, "xvirt_domain_memory_bytes", uuid=r.uuid) == r.memory_kib * 1024
        assert value(got, "xvirt_domain_memory_max_bytes", uuid=r.uuid) == \
            r.max_memory_kib * 1024
        assert value(got, "xvirt_domain_vcpus", uuid=r.uuid) == r.vcpus
        assert value(got, "xvirt_domain_scrape_error", uuid=r.uuid) == 0
    # load 0.5 on each of 2 vCPUs for 12.5 s
    assert value(got, "xvirt_domain_cpu_seconds_total", uuid=truth[1].uuid) == 12.5
    by_state = {dict(labels)["state"]: v for (n, labels), v in got.items() if n == "xvirt_domains"}
    assert by_state == {"running": 2, "blocked": 1, "paused": 1, "shutdown": 0, "crashed": 0,
                        "dying": 0, "shutoff": 0}
    with xvirt.open(host.uri) as conn:
        node = conn.host_info()
    assert value(got, "xvirt_host_cpus") == node.cpus
    assert value(got, "xvirt_host_memory_bytes") == node.memory_kib * 1024
    assert value(got, "xvirt_host_info", hostname=node.hostname, hypervisor=node.hypervisor,
                 version=node.version, arch=node.arch) == 1


def test_every_per_domain_series_carries_a_uuid(host: xvirt.sim.Host, clock: ManualClock) -> None:
    for i in range(3):
        host.create(f"g{i}")
    got = Rig(host, clock).scrape()  # every statistics group too
    per_domain = [(n, dict(labels)) for n, labels in got if n.startswith("xvirt_domain_")]
    assert {n for n, _ in per_domain} >= set(PER_DOMAIN)
    assert all("uuid" in labels and "name" in labels for _, labels in per_domain)
    bare = Rig(host, clock, collect=frozenset()).scrape()  # no statistics group
    per_domain = [(n, dict(labels)) for n, labels in bare if n.startswith("xvirt_domain_")]
    assert {n for n, _ in per_domain} == set(PER_DOMAIN)
    assert len(per_domain) == len(PER_DOMAIN) * 4


def test_a_wedged_domain_is_an_error_and_the_others_are_served(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    good = host.create("good")
    bad = host.create("wedged")
    host.stall(bad.id)
    got = Rig(host, clock).scrape()
    assert value(got, "xvirt_up") == 1
    assert value(got, "xvirt_domain_scrape_error", uuid=bad.uuid) == 1
    assert value(got, "xvirt_domain_scrape_error", uuid=good.uuid) == 0
    assert info_of(got)[bad.uuid] == {"uuid": bad.uuid, "name": "wedged", "id": str(bad.id),
                                      "state": "unknown"}
    for name in PER_DOMAIN[:-2]:  # no figures were read, so none is served
        assert bad.uuid not in uuids_of(got, name)
        assert good.uuid in uuids_of(got, name)
    assert sum(v for (n, _), v in got.items() if n == "xvirt_domains") == 2  # dom0 + good


@pytest.mark.parametrize("fast", ["table", "socket", "http"])
def test_a_domain_wedged_in_a_daemon_is_an_error_and_the_others_are_served(fast: str) -> None:
    target = DaemonTarget(uri_params=f"fast={fast}")
    reader = HostReader(target.uri)
    try:
        good = target.host.create("good")
        bad = target.host.create("wedged")
        target.host.stall(bad.id)
        registry = CollectorRegistry()
        registry.register(XvirtCollector(SurveyRunner(reader.read, waiter=_wait_long),
                                         timeout_s=10.0))
        got = parse_samples(generate_latest(registry).decode())
        assert value(got, "xvirt_up") == 1
        assert value(got, "xvirt_domain_scrape_error", uuid=bad.uuid) == 1
        assert value(got, "xvirt_domain_scrape_error", uuid=good.uuid) == 0
        assert info_of(got)[bad.uuid]["name"] == "wedged"
        for name in PER_DOMAIN[:-2]:
            assert bad.uuid not in uuids_of(got, name)
            assert good.uuid in uuids_of(got, name)
    finally:
        reader.close()
        target.close()


def test_the_state_codes_are_libvirts_and_documented() -> None:
    assert STATE_CODES == compat_domain.STATES
    families = build_families(None, 0.0)
    assert [m.name for m in families] == [
        "xvirt_up", "xvirt_scrape_duration_seconds", "xvirt_exporter_build"]
    (state,) = [m for m in describe_families() if m.name == "xvirt_domain_state"]
    # libvirt's words for its codes, each with the xvirt states it stands for
    for words in ("1 running (running)", "2 blocked (blocked)", "3 paused (paused)",
                  "4 shutdown (dying)", "5 shutoff (shutdown/shutoff)", "6 crashed (crashed)"):
        assert words in state.documentation


def _reading(samples: list[xvirt.DomainSample],
             failures: list[xvirt.DomainFailure]) -> Reading:
    node = xvirt.HostInfo("h", "Xen", "4.17", "x86_64", 8, 2000, 1, 1, 4, 2, 1 << 24, 1 << 23,
                          "boot")
    return Reading(xvirt.Survey(samples, failures), node, xvirt.ConnStats(1, 2, 3, 4, 5, 6, 7))


class _Fixed:
    """A collector serving the families of one given reading."""

    def __init__(self, reading: Reading | None, duration_s: float) -> None:
        self.reading, self.duration_s = reading, duration_s

    def collect(self) -> list[Metric]:
        return build_families(self.reading, self.duration_s)


def exposition(reading: Reading | None, duration_s: float) -> str:
    registry = CollectorRegistry()
    registry.register(_Fixed(reading, duration_s))
    return generate_latest(registry).decode()


def test_a_uuid_is_never_served_twice() -> None:
    ident = xvirt.Identity("0a2b6c3d-0000-4000-8000-000000000001", "a", 3)
    info = xvirt.DomainInfo(xvirt.DomainState.RUNNING, 1024, 2048, 1, 5 * 10**9)
    failure = xvirt.DomainFailure(ident, xvirt.OperationFailedError("no answer"))
    reading = _reading([xvirt.DomainSample(ident, info), xvirt.DomainSample(ident, info)],
                       [failure])
    got = parse_samples(exposition(reading, 0.25))  # raises on a duplicate
    assert value(got, "xvirt_domain_scrape_error", uuid=ident.uuid) == 0
    assert value(got, "xvirt_domain_cpu_seconds_total", uuid=ident.uuid) == 5
    assert value(got, "xvirt_scrape_duration_seconds") == 0.25
    assert value(got, "xvirt_domains", state="running") == 1
    assert value(got, "xvirt_control_plane_requests_total") == 1
    assert value(got, "xvirt_data_plane_calls_total") == 2
    assert value(got, "xvirt_event_requests_total") == 3
    assert value(got, "xvirt_cache_hits_total") == 4
    assert value(got, "xvirt_cache_misses_total") == 5
    assert value(got, "xvirt_cache_evictions_total") == 6
    assert value(got, "xvirt_cache_entries") == 7


def test_promtool_finds_no_problem_in_any_output() -> None:
    """Every family present and populated (all six states, a failure), and the up-0 answer."""
    samples = [
        xvirt.DomainSample(xvirt.Identity(f"0a2b6c3d-0000-4000-8000-00000000000{i}", f"d{i}", i),
                           xvirt.DomainInfo(state, 1024, 2048, 2, 10**9))
        for i, state in enumerate(xvirt.DomainState)
    ]
    failure = xvirt.DomainFailure(
        xvirt.Identity("0a2b6c3d-0000-4000-8000-0000000000ff", "wedged", 9),
        xvirt.OperationFailedError("no answer"))
    for reading in (_reading(samples, [failure]), None):
        text = exposition(reading, 0.001)
        checked = promtool("check", "metrics", stdin=text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == "" and checked.stderr.strip() == ""
        assert ("xvirt_domain_info" in text) == (reading is not None)


def test_steady_state_scrapes_cost_the_control_plane_nothing(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    for i in range(20):
        host.create(f"g{i}")
    rig = Rig(host, clock, collect=NOT_DEFINED)
    first = rig.scrape()
    (conn,) = rig.connections
    # Opening costs what it costs, host facts one request, the newcomers one batch.
    assert value(first, "xvirt_control_plane_requests_total") == conn.stats().control_requests
    for _ in range(5):
        before = conn.stats()
        got = rig.scrape()
        after = conn.stats()
        assert after.control_requests == before.control_requests
        assert after.data_calls > before.data_calls
        assert value(got, "xvirt_control_plane_requests_total") == after.control_requests
        assert value(got, "xvirt_data_plane_calls_total") == after.data_calls
        assert value(got, "xvirt_cache_entries") == 21
    for i in range(3):  # newcomers: one batched request for all of them
        host.create(f"new{i}")
    before = conn.stats().control_requests
    rig.scrape()
    assert conn.stats().control_requests == before + 1
    assert len(rig.connections) == 1


def test_scrape_duration_is_measured_on_the_injected_clock(
        make_sim_host: Callable[..., xvirt.sim.Host], clock: ManualClock) -> None:
    """The host's control plane takes 50 ms per request on the same manual clock: the
    first scrape makes two (host facts, the newcomers), the next none."""
    with make_sim_host(clock=clock, control_latency_ms=50) as slow:
        slow.create("g")
        rig = Rig(slow, clock, collect=NOT_DEFINED)
        first = rig.scrape()
        assert value(first, "xvirt_control_plane_requests_total") == 2
        assert value(first, "xvirt_scrape_duration_seconds") == pytest.approx(0.1)
        assert value(rig.scrape(), "xvirt_scrape_duration_seconds") == 0


def test_an_unreachable_host_gives_up_0_and_nothing_else_then_reconnects(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    host.create("g")
    attempts: list[str | None] = []

    def flaky(uri: str | None) -> xvirt.Connection:
        attempts.append(uri)
        if len(attempts) <= 2:
            raise xvirt.HostUnreachableError("no route to host", uri=uri)
        return xvirt.open(uri, readonly=True)

    rig = Rig(host, clock, opener=flaky)
    for _ in range(2):
        down = rig.scrape()
        assert {n for n, _ in down} == ALWAYS
        assert value(down, "xvirt_up") == 0
    up = rig.scrape()
    assert value(up, "xvirt_up") == 1
    assert len(info_of(up)) == 2
    assert attempts == [host.uri] * 3
    assert rig.logged == [  # once per change, not once per scrape
        f"cannot read the host, serving xvirt_up 0: no route to host (uri={host.uri!r})",
        "the host answers, serving its metrics"]


def test_a_failed_survey_drops_the_connection_and_counters_never_go_back(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    host.create("g")
    rig = Rig(host, clock)
    before = rig.scrape()
    rig.connections[0].close()  # the next survey fails: ConnectionClosedError
    assert value(rig.scrape(), "xvirt_up") == 0
    after = rig.scrape()
    assert len(rig.connections) == 2
    assert rig.connections[0].closed
    for name in ("xvirt_control_plane_requests_total", "xvirt_data_plane_calls_total"):
        assert value(after, name) > value(before, name)
    # Reconnecting costs host facts and the names again: exactly the second connection's.
    assert value(after, "xvirt_control_plane_requests_total") == (
        value(before, "xvirt_control_plane_requests_total")
        + rig.connections[1].stats().control_requests)


def test_a_host_reboot_is_followed(host: xvirt.sim.Host, clock: ManualClock) -> None:
    host.create("before")
    rig = Rig(host, clock)
    old = set(info_of(rig.scrape()))
    host.reboot_host()
    fresh = host.create("after")
    got = info_of(rig.scrape())
    assert set(got) == {r.uuid for r in host.domains()}
    assert fresh.uuid in got and not (old - {xvirt.sim.DOM0_UUID}) & set(got)


class _GatedReads:
    """Reads that wait for the test to open a gate, counting how many run at once."""

    def __init__(self, reading: Reading) -> None:
        self.gate = threading.Event()
        self.reading = reading
        self.started = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def read(self) -> Reading:
        with self._lock:
            self.started += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if not self.gate.wait(timeout=30):
                raise xvirt.HostUnreachableError("the gate never opened")
            return self.reading
        finally:
            with self._lock:
                self.running -= 1


def test_a_hung_host_costs_a_scrape_its_deadline_and_one_read_at_most(clock: ManualClock) -> None:
    reads = _GatedReads(_reading([], []))
    waiter_patience = {"wait": False}

    def waiter(future: Future[Reading], timeout: float) -> bool:
        return _wait_long(future, timeout) if waiter_patience["wait"] else future.done()

    runner = SurveyRunner(reads.read, clock=clock, waiter=waiter)
    logged: list[str] = []
    collector = XvirtCollector(runner, timeout_s=3.0, clock=clock, log=logged.append)
    for _ in range(3):  # the host hangs: each scrape answers up 0 at its deadline
        families = list(collector.collect())
        assert (families[0].name, families[0].samples[0].value) == ("xvirt_up", 0.0)
        assert len(families) == 3  # up, the duration, the build
    assert reads.started == 1  # later scrapes waited for the one in flight
    assert logged == ["cannot read the host, serving xvirt_up 0: no answer from the host "
                      "within 3 s"]
    reads.gate.set()
    waiter_patience["wait"] = True
    families = list(collector.collect())
    assert families[0].samples[0].value == 1.0
    assert reads.started == 2  # the stale read was not served: a fresh one was made
    assert reads.most == 1


def test_runner_times_out_with_the_reason(clock: ManualClock) -> None:
    reads = _GatedReads(_reading([], []))
    runner = SurveyRunner(reads.read, clock=clock, waiter=_done_now)
    with pytest.raises(ScrapeTimeout, match="within 2 s"):
        runner.fresh(2.0)
    with pytest.raises(ScrapeTimeout, match="previous survey has not finished"):
        runner.fresh(2.0)
    assert not runner.close(lambda: None, timeout_s=0.0)  # a read is stuck: not closed
    reads.gate.set()
    closed: list[bool] = []
    runner2 = SurveyRunner(reads.read, clock=clock, waiter=_wait_long)
    assert runner2.fresh(2.0) is reads.reading
    assert runner2.close(lambda: closed.append(True))
    assert closed == [True]


def test_concurrent_scrapes_never_run_two_reads_at_once(
        host: xvirt.sim.Host, clock: ManualClock) -> None:
    for i in range(5):
        host.create(f"g{i}")
    rig = Rig(host, clock)
    inner = rig.reader.read
    running = [0]
    most = [0]
    lock = threading.Lock()

    def counting() -> Reading:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return inner()
        finally:
            with lock:
                running[0] -= 1

    rig.runner._read = counting
    results: list[Samples] = []
    errors: list[BaseException] = []

    def scrape_some() -> None:
        try:
            for _ in range(10):
                results.append(rig.scrape())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scrape_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 40 and most[0] == 1
    assert all(value(r, "xvirt_up") == 1 and len(info_of(r)) == 6 for r in results)


def test_the_exporter_never_touches_the_global_registry(host: xvirt.sim.Host,
                                                        clock: ManualClock) -> None:
    Rig(host, clock).scrape()
    assert REGISTRY.get_sample_value("xvirt_up") is None


# -- random histories ------------------------------------------------------------------------

OPS = ("create", "destroy", "reboot", "migrate", "pause", "resume", "rename", "save",
       "restore", "crash", "stall", "unstall", "reboot_host")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1000)), min_size=1,
                max_size=30))
def test_every_scrape_of_a_random_history_is_exactly_the_live_host(
        history: list[tuple[str, int]]) -> None:
    """After each step, one scrape: exactly the live domains (gone ones never again),
    each once, with its current name, ID and state; no label set twice (parse_samples
    refuses duplicates)."""
    clock = ManualClock(1000.0)
    with xvirt.sim.Host(f"hist-{uuidlib.uuid4().hex[:12]}", clock=clock, id_policy="random",
                        max_domid=12) as host:
        rig = Rig(host, clock)
        stalled: set[str] = set()
        images: list[str] = []
        for step, (op, pick) in enumerate(history):
            _apply(host, op, pick, step, stalled, images)
            clock.advance(1.0)
            # The truth at the scrape's snapshot: a wedged domain then makes the survey
            # wait its per-domain timeout, on this clock, so later reads would differ.
            truth = {r.uuid: r for r in host.domains()}
            got = rig.scrape()
            stalled &= set(truth)
            assert value(got, "xvirt_up") == 1
            assert info_of(got) == {
                u: {"uuid": u, "name": r.name, "id": str(r.id),
                    "state": "unknown" if u in stalled else r.state.value}
                for u, r in truth.items()}
            for name in PER_DOMAIN[:-2]:
                assert uuids_of(got, name) == set(truth) - stalled
            assert uuids_of(got, "xvirt_domain_scrape_error") == set(truth)
            for u in stalled:
                assert value(got, "xvirt_domain_scrape_error", uuid=u) == 1
            for u in set(truth) - stalled:
                assert value(got, "xvirt_domain_cpu_seconds_total", uuid=u) == \
                    truth[u].cpu_time_ns / 1e9


def _apply(host: xvirt.sim.Host, op: str, pick: int, step: int, stalled: set[str],
           images: list[str]) -> None:
    guests = [r for r in host.domains() if r.id != 0]
    if op == "create" or (not guests and op not in ("restore", "reboot_host")):
        if len(guests) < 10:
            host.create(f"g{step}")
        return
    if op == "restore":
        if images:
            host.restore(images.pop(pick % len(images)))
        return
    if op == "reboot_host":
        host.reboot_host()
        stalled.clear()
        return
    rec = guests[pick % len(guests)]
    try:
        if op == "rename":
            host.rename(rec.id, f"r{step}")
        elif op == "save":
            host.save(rec.id, f"img{step}")
            images.append(f"img{step}")
        elif op == "stall":
            host.stall(rec.id)
            stalled.add(rec.uuid)
        elif op == "unstall":
            host.unstall(rec.id)
            stalled.discard(rec.uuid)
        else:
            getattr(host, op)(rec.id)
    except (xvirt.OperationFailedError, xvirt.InvalidArgumentError):
        pass  # e.g. pausing a paused guest, resuming a running one: the host refused
