"""Each vCPU's own CPU time, as Xen keeps it: it grows only while that vCPU is online
(and its domain runs), an offline vCPU keeps its time, and the vCPUs' times together
are the domain's. Kept through save and restore (the image), migration and a reload
of the host's state; set to 0 by a reboot and a start."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.host.hypervisor import HostModel, even_vcpu_times
from xvirt.model import DomainState
from xvirt.stats import StatGroup

G = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
SECOND = 1_000_000_000


def _times(host: HostModel, uuid: str = G) -> list[int]:
    """The online vCPUs' times, checked to be the statistics' too."""
    info = [v.cpu_time_ns for v in host.vcpu_info(uuid)]
    (stats,) = host.domain_stats(frozenset({StatGroup.VCPU}), [uuid])
    assert [v.time_ns for v in stats.vcpus or ()] == info
    return info


def _total(host: HostModel, uuid: str = G) -> int:
    (rec,) = [d for d in host.domains() if d.uuid == uuid]
    return rec.cpu_time_ns


def test_the_even_split_puts_the_remainder_a_nanosecond_each_on_the_lowest() -> None:
    assert even_vcpu_times(11, 3, 4) == (4, 4, 3, 0)
    assert even_vcpu_times(0, 1, 1) == (0,)
    assert even_vcpu_times(7, 2, 2) == (4, 3)


def test_a_vcpu_online_grows_and_an_offline_one_keeps_its_time(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    host.create("g", uuid=G, vcpus=1, max_vcpus=3, load=0.5)
    clock.sleep(10)
    assert _times(host) == [5 * SECOND]
    host.set_vcpus(G, 3)
    assert _times(host) == [5 * SECOND, 0, 0]  # the new ones ran nothing yet
    clock.sleep(10)  # 3 vCPUs at half load: 15 s, 5 s each
    assert _times(host) == [10 * SECOND, 5 * SECOND, 5 * SECOND]
    host.set_vcpus(G, 1)
    clock.sleep(10)
    assert _times(host) == [15 * SECOND]
    assert _total(host) == 25 * SECOND  # 15 + the offline ones' 5 + 5
    host.set_vcpus(G, 2)
    assert _times(host) == [15 * SECOND, 5 * SECOND]
    host.set_vcpus(G, 3)
    assert _times(host) == [15 * SECOND, 5 * SECOND, 5 * SECOND]


def test_a_reboot_and_a_start_set_every_vcpus_time_to_0(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    rec = host.create("g", uuid=G, vcpus=2, max_vcpus=2)
    clock.sleep(10)
    host.set_vcpus(G, 1)  # vCPU 1 offline, holding its time
    domid = host.reboot(rec.id).id
    host.set_vcpus(G, 2)
    assert _times(host) == [0, 0]
    host.define("g", uuid=G, vcpus=1, max_vcpus=2)
    clock.sleep(10)
    host.set_vcpus(G, 1)
    host.destroy(domid)
    host.start(G)
    host.set_vcpus(G, 2)
    assert _times(host) == [0, 0]


def test_a_migration_and_a_save_and_restore_keep_every_vcpus_time(
        make_host_model: Callable[..., HostModel], clock: ManualClock, tmp_path: Path) -> None:
    host = make_host_model(clock=clock, image_dir=tmp_path)
    rec = host.create("g", uuid=G, vcpus=2, max_vcpus=3, load=1.0)
    clock.sleep(3)
    host.set_vcpus(G, 3)
    clock.sleep(3)
    host.set_vcpus(G, 1)  # 6, 6 and 3 s: vCPUs 1 and 2 offline
    rec = host.migrate(rec.id)
    host.save(rec.id, "g.img")
    image = json.loads((tmp_path / "g.img").read_text())
    assert image["vcpu_times_ns"] == [6 * SECOND, 6 * SECOND, 3 * SECOND]
    clock.sleep(100)  # a saved domain runs nothing
    host.restore("g.img")
    assert _times(host) == [6 * SECOND]
    host.set_vcpus(G, 3)
    assert _times(host) == [6 * SECOND, 6 * SECOND, 3 * SECOND]


def test_an_image_from_before_per_vcpu_times_restores_with_the_even_split(
        make_host_model: Callable[..., HostModel], clock: ManualClock, tmp_path: Path) -> None:
    host = make_host_model(clock=clock, image_dir=tmp_path)
    rec = host.create("g", uuid=G, vcpus=1, max_vcpus=3, load=1.0)
    clock.sleep(1)
    host.set_vcpus(G, 2)
    clock.sleep(1)
    host.save(rec.id, "g.img")
    path = tmp_path / "g.img"
    image = json.loads(path.read_text())
    del image["vcpu_times_ns"]
    image["cpu_time_ns"] += 1  # an odd total: the remainder goes to vCPU 0
    path.write_text(json.dumps(image))
    host.restore("g.img")
    assert _times(host) == [1_500_000_001, 1_500_000_000]
    host.set_vcpus(G, 3)
    assert _times(host)[2] == 0


@pytest.mark.parametrize("times", [[1], [3 * SECOND, 0, 0, 0], [-1, 3 * SECOND + 1, 0],
                                   [3 * SECOND, 0, 1], [3.0e9, 0, 0], [True, 0, 0], "abc",
                                   {"0": 1}, 5])
def test_an_image_whose_vcpu_times_are_not_a_split_of_its_cpu_time_is_refused(
        make_host_model: Callable[..., HostModel], clock: ManualClock, tmp_path: Path,
        times: object) -> None:
    host = make_host_model(clock=clock, image_dir=tmp_path)
    rec = host.create("g", uuid=G, vcpus=1, max_vcpus=3, load=1.0)
    clock.sleep(3)
    host.save(rec.id, "g.img")
    path = tmp_path / "g.img"
    image = json.loads(path.read_text())
    assert (image["cpu_time_ns"], image["vcpu_times_ns"]) == (3 * SECOND, [3 * SECOND, 0, 0])
    image["vcpu_times_ns"] = times
    path.write_text(json.dumps(image))
    with pytest.raises(OperationFailedError, match="not an xvirt domain image"):
        host.restore("g.img")


def test_a_reloaded_host_keeps_them_and_an_older_state_gets_the_even_split(
        make_host_model: Callable[..., HostModel], clock: ManualClock) -> None:
    host = make_host_model(clock=clock)
    host.create("g", uuid=G, vcpus=2, max_vcpus=3, load=1.0)
    clock.sleep(2)
    host.set_vcpus(G, 1)
    clock.sleep(1)
    again = make_host_model(clock=clock)
    again.load(host.state())
    for h in (host, again):
        h.set_vcpus(G, 3)
    assert _times(again) == _times(host) == [3 * SECOND, 2 * SECOND, 0]
    # a state kept before per-vCPU times were: the even split of the domain's time
    old = host.state()
    old = replace(old, domains=tuple(replace(d, vcpu_ns=()) for d in old.domains))
    older = make_host_model(clock=clock)
    older.load(old)
    assert _times(older) == [1_666_666_667, 1_666_666_667, 1_666_666_666]  # 5 s
    bad = replace(old, domains=tuple(replace(d, vcpu_ns=(1,) * d.vcpu_limit)
                                     if d.uuid == G else d for d in old.domains))
    with pytest.raises(InvalidArgumentError, match=r"inconsistent.*vCPU times"):
        make_host_model(clock=clock).load(bad)


# -- the property ----------------------------------------------------------------------

_STEPS = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0.0, 1e-9, 0.3, 1.0, 7.0, 3600.0])),
    st.tuples(st.just("vcpus"), st.integers(1, 4)),
    st.tuples(st.sampled_from(["pause", "resume", "block", "unblock", "crowd", "uncrowd",
                               "migrate", "save_restore", "reboot", "reload"]),
              st.just(0))), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), _STEPS)
def test_each_vcpus_time_is_its_own(vcpus: int, steps: list[tuple[str, float]]) -> None:
    """Whatever happens to the domain, each vCPU's time never goes back between reboots;
    a vCPU's time changes only while it is online and never when no time passes; those
    online share what the domain runs evenly (the host's CPUs shared with another
    domain, ``crowd``, and the domain's state changing under way); and the online ones'
    times with the offline ones' kept times are the domain's."""
    clock = ManualClock(100.0)
    host = HostModel("vcpu-times", clock=clock, cpus=2)
    try:
        domid = host.create("g", uuid=G, vcpus=vcpus, max_vcpus=4, load=1.0).id
        kept = [0, 0, 0, 0]  # each vCPU's time as last seen
        online = vcpus
        hog: int | None = None
        for op, arg in steps:
            before = list(kept)
            if op == "advance":
                clock.sleep(arg)
            elif op == "vcpus":
                host.set_vcpus(G, int(arg))
                online = int(arg)
            elif op in ("pause", "resume", "block", "unblock"):
                state = host.domain(domid).state
                if op == "pause" and state is not DomainState.PAUSED:
                    host.pause(domid)
                elif op == "resume" and state is DomainState.PAUSED:
                    host.resume(domid)
                elif op in ("block", "unblock") and state is not DomainState.PAUSED:
                    host.set_blocked(domid, op == "block")
            elif op == "crowd" and hog is None:
                hog = host.create("hog", vcpus=4, load=1.0).id  # the share drops
            elif op == "uncrowd" and hog is not None:
                host.destroy(hog)
                hog = None
            elif op == "migrate":
                domid = host.migrate(domid).id
            elif op == "save_restore":
                host.save(domid, "g.img")  # replaces the domain's own image
                domid = host.restore("g.img").id
            elif op == "reboot":
                domid = host.reboot(domid).id
                kept = [0, 0, 0, 0]
                before = list(kept)
            elif op == "reload":  # a daemon restart: the host again from what it kept
                state = host.state()
                again = HostModel("vcpu-times", clock=clock, cpus=2)
                again.load(state)
                host.close()
                host = again
            times = _times(host)
            assert len(times) == online
            total = _total(host)
            assert sum(times) + sum(kept[online:]) == total, (times, kept, total)
            grown = [t - b for t, b in zip(times, before[:online], strict=True)]
            assert min(grown) >= 0, (op, times, before)
            if op != "advance" or arg == 0.0:
                assert grown == [0] * online, (op, times, before)
            else:
                assert max(grown) - min(grown) <= 1, (op, grown)  # even, but for remainders
            kept[:online] = times
    finally:
        host.close()
