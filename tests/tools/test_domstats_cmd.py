"""``xvirt domstats`` (xvirt/tools/domstats_cmd.py): virsh's layout and libvirt's keys,
on an embedded host whose figures are known, on a daemon and on libvirt beside virsh."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xvirt
from tests.tools.with_virsh import (
    needs_virsh,
    ok,
    one_error_line,
    run,
    virsh,
    virsh_error_lines,
)
from xvirt.clock import ManualClock
from xvirt.stats import BalloonStats, BlockStats, CpuStats, NetStats, VcpuStats
from xvirt.testing.daemon import DaemonProcess
from xvirt.tools.domstats_cmd import stats_lines, stats_record

pytestmark = pytest.mark.clock_start(1000.0)


@pytest.fixture
def lab(sim_host: xvirt.sim.Host, clock: ManualClock) -> xvirt.sim.Host:
    """Domain-0; web1 (ID 1: two vCPUs, a disk, a NIC); cache1 (ID 2, idle); mail1
    defined and shut off."""
    sim_host.create("web1", vcpus=2, disks=[xvirt.DiskConfig("/img/web1.img", "xvda")],
                    nics=[xvirt.NicConfig("00:16:3e:00:00:01", "xenbr0")])
    cache1 = sim_host.create("cache1", disks=[], nics=[])
    sim_host.set_blocked(cache1.id)
    sim_host.define("mail1")
    clock.advance(10)
    return sim_host


def truth(host: xvirt.sim.Host, name: str) -> xvirt.DomainStats:
    """The library's figures of ``name``: the clock stands still, so they are the ones
    the command reads."""
    with xvirt.open(host.uri) as conn:
        (found,) = [s for s in conn.domain_stats() if s.name == name]
    return found


def test_a_running_domain_in_libvirts_keys_and_order(lab: xvirt.sim.Host) -> None:
    s = truth(lab, "web1")
    assert s.cpu is not None and s.balloon is not None and s.vcpus and s.nets and s.blocks
    cpu, b, (nic,), (disk,) = s.cpu, s.balloon, s.nets, s.blocks
    v0, v1 = s.vcpus
    expected = [
        "Domain: 'web1'",
        "  state.state=1", "  state.reason=0",
        f"  cpu.time={cpu.time_ns}", f"  cpu.user={cpu.user_ns}",
        f"  cpu.system={cpu.system_ns}",
        f"  balloon.current={b.current_kib}", f"  balloon.maximum={b.maximum_kib}",
        "  vcpu.current=2", "  vcpu.maximum=2",
        "  vcpu.0.state=1", f"  vcpu.0.time={v0.time_ns}",
        "  vcpu.1.state=1", f"  vcpu.1.time={v1.time_ns}",
        "  net.count=1", "  net.0.name=vif1.0",
        f"  net.0.rx.bytes={nic.rx_bytes}", f"  net.0.rx.pkts={nic.rx_packets}",
        f"  net.0.rx.errs={nic.rx_errs}", f"  net.0.rx.drop={nic.rx_drop}",
        f"  net.0.tx.bytes={nic.tx_bytes}", f"  net.0.tx.pkts={nic.tx_packets}",
        f"  net.0.tx.errs={nic.tx_errs}", f"  net.0.tx.drop={nic.tx_drop}",
        "  block.count=1", "  block.0.name=xvda", "  block.0.path=/img/web1.img",
        f"  block.0.rd.reqs={disk.rd_reqs}", f"  block.0.rd.bytes={disk.rd_bytes}",
        f"  block.0.rd.times={disk.rd_time_ns}", f"  block.0.wr.reqs={disk.wr_reqs}",
        f"  block.0.wr.bytes={disk.wr_bytes}", f"  block.0.wr.times={disk.wr_time_ns}",
        f"  block.0.fl.reqs={disk.fl_reqs}", f"  block.0.fl.times={disk.fl_time_ns}",
        f"  block.0.errors={disk.errors}",
        f"  block.0.allocation={disk.allocation_bytes}",
        f"  block.0.capacity={disk.capacity_bytes}", f"  block.0.physical={disk.physical_bytes}",
        "",
    ]
    # the embedded host reports no guest balloon figures: none is printed
    assert b.swap_in_kib is None and disk.capacity_bytes is not None
    assert ok(run("domstats", "web1", "-c", lab.uri)).split("\n") == [*expected, ""]


def test_every_domain_running_first_then_shut_off_with_its_state(lab: xvirt.sim.Host) -> None:
    out = ok(run("domstats", "--state", "-c", lab.uri))
    assert out == ("Domain: 'Domain-0'\n  state.state=1\n  state.reason=0\n\n"
                   "Domain: 'web1'\n  state.state=1\n  state.reason=0\n\n"
                   "Domain: 'cache1'\n  state.state=2\n  state.reason=0\n\n"
                   "Domain: 'mail1'\n  state.state=5\n  state.reason=0\n\n")


@pytest.mark.parametrize(("options", "keys"), [
    (["--cpu-total"], ["cpu.time", "cpu.user", "cpu.system"]),
    (["--balloon"], ["balloon.current", "balloon.maximum"]),
    (["--vcpu"], ["vcpu.current", "vcpu.maximum", "vcpu.0.state", "vcpu.0.time"]),
    (["--interface", "--block"], ["net.count", "block.count"]),  # none: the counts only
    (["--block", "--state"], ["state.state", "state.reason", "block.count"]),
])
def test_group_options_choose_the_groups(lab: xvirt.sim.Host, options: list[str],
                                         keys: list[str]) -> None:
    out = ok(run("domstats", "cache1", *options, "-c", lab.uri))
    assert [line.split("=")[0].strip() for line in out.splitlines()[1:] if line] == keys


def test_domains_are_printed_in_the_order_named(lab: xvirt.sim.Host) -> None:
    out = ok(run("domstats", "--state", "mail1", "1", "-c", lab.uri))
    assert out == ("Domain: 'mail1'\n  state.state=5\n  state.reason=0\n\n"
                   "Domain: 'web1'\n  state.state=1\n  state.reason=0\n\n")


@pytest.mark.parametrize(("filters", "names"), [
    (["--list-active"], ["Domain-0", "web1", "cache1"]),
    (["--list-inactive"], ["mail1"]),
    (["--list-shutoff"], ["mail1"]),
    (["--list-running"], ["Domain-0", "web1"]),
    (["--list-other"], ["cache1"]),
    (["--list-running", "--list-other"], ["Domain-0", "web1", "cache1"]),  # one group: or
    (["--list-inactive", "--list-running"], []),  # two groups: and
    (["--list-paused"], []),
])
def test_list_filters_keep_domains_in_those_states(lab: xvirt.sim.Host, filters: list[str],
                                                   names: list[str]) -> None:
    out = ok(run("domstats", "--balloon", *filters, "-c", lab.uri))
    assert [line[len("Domain: '"):-1] for line in out.splitlines()
            if line.startswith("Domain:")] == names
    assert "state." not in out  # the filters read the state, and print it only if asked


def test_filters_apply_to_named_domains(lab: xvirt.sim.Host) -> None:
    assert ok(run("domstats", "web1", "--list-paused", "-c", lab.uri)) == "\n"


def test_json_has_the_same_figures(lab: xvirt.sim.Host) -> None:
    text = ok(run("domstats", "web1", "mail1", "-c", lab.uri))
    got = json.loads(ok(run("domstats", "web1", "mail1", "--json", "-c", lab.uri)))
    web1, mail1 = (lab_record(lab, "web1"), lab_record(lab, "mail1"))
    assert [(d["name"], d["uuid"], d["id"], d["missing"]) for d in got] == [
        ("web1", web1[0], web1[1], []), ("mail1", mail1[0], None, [])]
    assert "".join(stats_lines(d["name"], d["stats"]) + "\n" for d in got) == text


def lab_record(host: xvirt.sim.Host, name: str) -> tuple[str, int | None]:
    for r in host.domains():
        if r.name == name:
            return r.uuid, r.id
    (d,) = [d for d in host.defined_domains() if d.name == name]
    return d.uuid, None


def test_an_unknown_domain_is_one_line(lab: xvirt.sim.Host) -> None:
    assert one_error_line(run("domstats", "web1", "nosuch", "-c", lab.uri)) == \
        "error: failed to get domain 'nosuch'"


# -- what is not reported is left out ---------------------------------------------------------

_maybe = st.none() | st.integers(min_value=0, max_value=2**63)
_count = st.integers(min_value=0, max_value=2**63)


@st.composite
def _stats(draw: st.DrawFn) -> xvirt.DomainStats:
    cpu = draw(st.none() | st.builds(CpuStats, _count, _maybe, _maybe))
    balloon = draw(st.none() | st.builds(BalloonStats, _count, _count, _maybe, _maybe, _maybe,
                                         _maybe, _maybe, _maybe, _maybe, _maybe, _maybe))
    vcpus = draw(st.none() | st.lists(st.builds(
        VcpuStats, st.just(0), st.sampled_from(xvirt.VcpuState), _count), max_size=3).map(
        lambda vs: tuple(VcpuStats(n, v.state, v.time_ns) for n, v in enumerate(vs))))
    blocks = draw(st.none() | st.lists(st.builds(
        BlockStats, st.sampled_from(["xvda", "xvdb"]), st.none() | st.just("/img/a"),
        _count, _count, _maybe, _count, _count, _maybe, _maybe, _maybe, _maybe, _maybe,
        _maybe, _maybe), max_size=2).map(tuple))
    nets = draw(st.none() | st.lists(st.builds(
        NetStats, st.just("vif1.0"), st.none(), st.none(), *[_count] * 8),
        max_size=2).map(tuple))
    state = draw(st.none() | st.sampled_from(xvirt.DomainState))
    return xvirt.DomainStats("u", "d", 1, state=state, cpu=cpu, balloon=balloon,
                             vcpus=vcpus, blocks=blocks, nets=nets)


def _figures(stats: xvirt.DomainStats) -> list[int | str]:
    """Every figure the stats hold (not None), in any order."""
    found: list[int | str] = []
    for part in (stats.cpu, stats.balloon, *(stats.vcpus or ()), *(stats.blocks or ()),
                 *(stats.nets or ())):
        if part is None:
            continue
        for name in part.__slots__:
            value = getattr(part, name)
            if isinstance(value, xvirt.VcpuState):
                value = value.value
            if name in ("mac", "bridge", "number") or value is None:
                continue
            found.append(value)
    return found


@given(_stats())
def test_no_figure_is_made_up_and_none_is_lost(stats: xvirt.DomainStats) -> None:
    """A figure the host did not report (None) has no key; every one it did has one."""
    record = stats_record(stats, max_vcpus=None)
    values = [v for k, v in record.items() if not k.endswith((".count", "vcpu.current"))
              and not k.startswith("state.")]
    assert None not in record.values()
    assert sorted(map(str, values)) == sorted(map(str, _figures(stats)))
    assert "vcpu.maximum" not in record
    assert ("state.state" in record) == (stats.state is not None)


# -- a daemon, libvirt and virsh -------------------------------------------------------------


def test_on_a_daemon_over_tcp_without_a_token(daemon: DaemonProcess) -> None:
    with xvirt.open(daemon.unix_uri) as conn:
        conn.create("web1", xvirt.DomainConfig(262144, 262144, 1))
    out = ok(run("domstats", "--state", "--balloon", "web1", "-c", daemon.tcp_uri))
    assert out == ("Domain: 'web1'\n  state.state=1\n  state.reason=0\n"
                   "  balloon.current=262144\n  balloon.maximum=262144\n\n")


@needs_virsh
@pytest.mark.parametrize("args", [
    ["--state"], ["--state", "test"], ["--state", "--list-paused"], ["--state", "--raw"],
])
def test_the_state_group_is_virshs_output(args: list[str]) -> None:
    """libvirt's test driver gives virsh its state group only; on it both print the same."""
    assert ok(run("domstats", *args, "-c", "libvirt:test:///default")) == \
        virsh("test:///default", "domstats", *args).stdout


@needs_virsh
def test_everything_begins_as_virshs(libvirtd_host: str) -> None:
    """Where xvirt has more figures than virsh gets (the test driver's own, through
    libvirt's per-device calls), virsh's lines come first, as they are."""
    theirs = virsh(libvirtd_host, "domstats").stdout.splitlines()
    mine = ok(run("domstats", "-c", f"libvirt:{libvirtd_host}")).splitlines()
    assert theirs == ["Domain: 'test'", "  state.state=1", "  state.reason=0", ""]
    assert mine[:3] == theirs[:3] and mine[-1] == ""
    assert "  cpu.time=" in "\n".join(mine)


@needs_virsh
def test_a_shut_off_domain_and_its_reason_as_virsh(libvirtd_host: str) -> None:
    assert virsh(libvirtd_host, "destroy", "test").returncode == 0
    assert ok(run("domstats", "-c", f"libvirt:{libvirtd_host}")) == \
        virsh(libvirtd_host, "domstats").stdout == \
        "Domain: 'test'\n  state.state=5\n  state.reason=2\n\n"


@needs_virsh
def test_an_unknown_domain_is_virshs_line() -> None:
    mine = one_error_line(run("domstats", "nosuch", "-c", "libvirt:test:///default"))
    assert [mine] == virsh_error_lines(virsh("test:///default", "domstats", "nosuch"))
