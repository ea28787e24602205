"""The arithmetic of ``xvirt top``: %CPU by UUID, sorting, cells, host totals.

Surveys are built by hand here, so each figure is known exactly; the same
arithmetic against real hosts is in test_top.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xvirt
from xvirt.stats import BlockStats, DomainStats, NetStats
from xvirt.tools.top_model import (
    COLUMNS,
    DEVICE_COLUMNS,
    HEADER_WIDTH,
    Cost,
    CpuTracker,
    DomainRow,
    HostFrame,
    columns,
    cpu_time_text,
    device_cells,
    device_lines,
    parse_delay,
    row_cells,
    sorted_lines,
    state_counts,
    summary_lines,
)

A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
C = "cccccccc-0000-0000-0000-000000000003"
RUNNING = xvirt.DomainState.RUNNING
HOST_KIB = 1 << 20


def sample(uuid: str, domid: int, name: str, cpu_ns: int, *, vcpus: int = 1,
           memory_kib: int = 1024, state: xvirt.DomainState = RUNNING,
           stats: DomainStats | None = None) -> xvirt.DomainSample:
    return xvirt.DomainSample(xvirt.Identity(uuid, name, domid),
                              xvirt.DomainInfo(state, memory_kib, memory_kib, vcpus, cpu_ns),
                              stats)


def disk(name: str, rd_reqs: int, wr_reqs: int, rd_bytes: int, wr_bytes: int) -> BlockStats:
    return BlockStats(name, f"/img/{name}", rd_reqs, rd_bytes, None, wr_reqs, wr_bytes, None)


def nic(name: str, rx_bytes: int, tx_bytes: int, rx_packets: int = 0,
        tx_packets: int = 0) -> NetStats:
    return NetStats(name, None, "xenbr0", rx_bytes, rx_packets, 0, 0, tx_bytes, tx_packets, 0,
                    0)


def io(uuid: str, disks: tuple[BlockStats, ...] | None,
       nics: tuple[NetStats, ...] | None) -> DomainStats:
    return DomainStats(uuid, "x", 1, blocks=disks, nets=nics)


def survey(*samples: xvirt.DomainSample,
           failures: tuple[xvirt.DomainFailure, ...] = ()) -> xvirt.Survey:
    return xvirt.Survey(list(samples), list(failures))


def by_uuid(rows: tuple[DomainRow, ...]) -> dict[str, DomainRow]:
    return {r.uuid: r for r in rows}


# -- %CPU -----------------------------------------------------------------------------


def test_first_refresh_has_no_cpu_percent_and_no_elapsed() -> None:
    rows, elapsed = CpuTracker().step(10.0, survey(sample(A, 1, "a", 5_000_000_000)), 4, HOST_KIB)
    assert elapsed is None
    assert rows[0].cpu_percent is None and rows[0].cpu_delta_ns is None
    assert rows[0].cpu_time_ns == 5_000_000_000  # the total is known, only the share is not
    assert row_cells(rows[0])[2] == "-"


def test_cpu_percent_is_virt_tops_formula() -> None:
    """100 * delta cpu ns / (elapsed ns * host CPUs): 3 s of one vCPU on 4 CPUs is 25 %."""
    tracker = CpuTracker()
    tracker.step(10.0, survey(sample(A, 1, "a", 1_000_000_000)), 4, HOST_KIB)
    rows, elapsed = tracker.step(13.0, survey(sample(A, 1, "a", 4_000_000_000)), 4, HOST_KIB)
    assert elapsed == 3.0
    assert rows[0].cpu_delta_ns == 3_000_000_000
    assert rows[0].cpu_percent == pytest.approx(25.0)


def test_deltas_follow_the_uuid_across_an_id_change() -> None:
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 0)), 2, HOST_KIB)
    rows, _ = tracker.step(2.0, survey(sample(A, 7, "a", 1_000_000_000)), 2, HOST_KIB)
    assert rows[0].id == 7
    assert rows[0].cpu_percent == pytest.approx(25.0)


def test_a_reused_id_is_a_newcomer_not_a_spike() -> None:
    """ID 1 passes from A (little CPU time) to B (ten hours of it): by ID that would
    be a share of thousands of percent; by UUID B is simply new."""
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 1_000)), 2, HOST_KIB)
    ten_hours = 10 * 3600 * 10**9
    rows, _ = tracker.step(3.0, survey(sample(B, 1, "b", ten_hours)), 2, HOST_KIB)
    assert 100.0 * (ten_hours - 1_000) / (3e9 * 2) > 100_000  # what keying by ID would show
    assert (rows[0].uuid, rows[0].id, rows[0].cpu_percent) == (B, 1, None)


def test_cpu_time_going_backwards_is_a_restart_not_a_negative_share() -> None:
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 9_000_000_000)), 2, HOST_KIB)
    rows, _ = tracker.step(3.0, survey(sample(A, 2, "a", 1_000)), 2, HOST_KIB)  # rebooted
    assert rows[0].cpu_percent is None and rows[0].cpu_delta_ns is None
    rows, _ = tracker.step(6.0, survey(sample(A, 2, "a", 3_000_001_000)), 2, HOST_KIB)
    assert rows[0].cpu_percent == pytest.approx(50.0)


def test_only_the_previous_refresh_counts() -> None:
    """A domain missing from one refresh (away, or not answering) starts again blank:
    an average over a gap the elapsed time does not cover would be wrong."""
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 0), sample(B, 2, "b", 0)), 1, HOST_KIB)
    tracker.step(1.0, survey(sample(B, 2, "b", 10**9)), 1, HOST_KIB)
    rows, _ = tracker.step(2.0, survey(sample(A, 1, "a", 2 * 10**9),
                                       sample(B, 2, "b", 2 * 10**9)), 1, HOST_KIB)
    assert by_uuid(rows)[A].cpu_percent is None
    assert by_uuid(rows)[B].cpu_percent == pytest.approx(100.0)


def test_no_elapsed_time_gives_no_share() -> None:
    tracker = CpuTracker()
    tracker.step(5.0, survey(sample(A, 1, "a", 0)), 1, HOST_KIB)
    rows, elapsed = tracker.step(5.0, survey(sample(A, 1, "a", 10)), 1, HOST_KIB)
    assert elapsed == 0.0 and rows[0].cpu_percent is None


def test_reset_forgets_every_domain() -> None:
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 0)), 1, HOST_KIB)
    tracker.reset()
    rows, elapsed = tracker.step(1.0, survey(sample(A, 1, "a", 10**9)), 1, HOST_KIB)
    assert elapsed is None and rows[0].cpu_percent is None


def test_a_failure_is_a_row_without_figures() -> None:
    failure = xvirt.DomainFailure(xvirt.Identity(C, "stuck", 3),
                                  xvirt.OperationFailedError("domain 3 (stuck) did not answer"))
    rows, _ = CpuTracker().step(0.0, survey(sample(A, 1, "a", 0), failures=(failure,)), 1,
                                HOST_KIB)
    stuck = by_uuid(rows)[C]
    assert (stuck.id, stuck.name, stuck.state, stuck.memory_kib) == (3, "stuck", None, None)
    assert stuck.error is not None and "did not answer" in stuck.error
    assert row_cells(stuck) == ("3", "?", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                                "stuck")


def test_memory_percent_is_of_the_host() -> None:
    rows, _ = CpuTracker().step(0.0, survey(sample(A, 1, "a", 0, memory_kib=HOST_KIB // 4)), 1,
                                HOST_KIB)
    assert rows[0].memory_percent == pytest.approx(25.0)


# -- host totals ---------------------------------------------------------------------------


def frame(rows: tuple[DomainRow, ...], elapsed: float | None = 1.0, *,
          error: str | None = None, uri: str = "sim:///t") -> HostFrame:
    info = xvirt.HostInfo("t.sim", "Xen", "4", "x86_64", 2, 2400, 1, 1, 1, 2, HOST_KIB,
                          HOST_KIB // 2, "boot")
    return HostFrame(uri, info, elapsed, rows, Cost(0, 1), error=error)


def test_host_totals_sum_the_domains() -> None:
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(xvirt.sim.DOM0_UUID, 0, "Domain-0", 0, memory_kib=100),
                             sample(A, 1, "a", 0, memory_kib=10)), 2, HOST_KIB)
    rows, elapsed = tracker.step(
        1.0, survey(sample(xvirt.sim.DOM0_UUID, 0, "Domain-0", 10**9, memory_kib=100),
                    sample(A, 1, "a", 5 * 10**8, memory_kib=10),
                    sample(B, 2, "b", 7, memory_kib=1)), 2, HOST_KIB)
    f = frame(rows, elapsed)
    assert f.used_memory_kib == 111
    assert f.guest_memory_kib == 11  # Domain-0 is not a guest
    assert f.cpu_delta_ns == 15 * 10**8  # the newcomer adds nothing yet
    assert f.cpu_percent == pytest.approx(75.0)
    assert f.label == "t.sim"
    assert frame(rows, None).cpu_percent is None  # a first refresh knows no share


def test_state_counts_have_every_state_and_no_answer() -> None:
    rows = (
        DomainRow(A, 1, "a", RUNNING, 1, 1, 1, None, None, None),
        DomainRow(B, 2, "b", xvirt.DomainState.PAUSED, 1, 1, 1, None, None, None),
        DomainRow(C, 3, "c", None, None, None, None, None, None, None, "no"),
    )
    counts = state_counts(rows)
    # virsh's words, in virsh's order (Xen's shut down and shut off are both "shut off")
    assert list(counts) == ["running", "idle", "paused", "in shutdown", "shut off", "crashed",
                            "no answer"]
    assert (counts["running"], counts["paused"], counts["no answer"], counts["crashed"]) == (
        1, 1, 1, 0)
    shut = (DomainRow(A, 1, "a", xvirt.DomainState.SHUTDOWN, 1, 1, 1, None, None, None),
            DomainRow(B, 2, "b", xvirt.DomainState.DYING, 1, 1, 1, None, None, None),
            DomainRow(C, 3, "c", xvirt.DomainState.BLOCKED, 1, 1, 1, None, None, None))
    assert {w: n for w, n in state_counts(shut).items() if n} == {
        "shut off": 1, "in shutdown": 1, "idle": 1}


def test_summary_says_why_a_host_is_missing() -> None:
    lines = summary_lines(frame((), None, error="connection refused"), 3.0)
    assert lines == ["t.sim (sim:///t): unreachable: connection refused (retrying every 3 s)"]


def test_summary_of_a_host_shows_capacity_states_and_cost() -> None:
    rows = (DomainRow(A, 1, "a", RUNNING, 2048, 1, 1, 10, 12.5, 0.2),)
    lines = summary_lines(frame(rows), 3.0)
    assert lines == [
        "t.sim (sim:///t)  x86_64  2 CPUs  1.0 GiB memory",
        "  1 domain: 1 running, 0 idle, 0 paused",
        "  %CPU 12.5  memory used by domains 0.0 GiB (0.2%)",
    ]
    text = "\n".join(lines)
    assert "data call" not in text and "cost" not in text  # users' words by default
    costly = summary_lines(frame(rows), 3.0, cost=True)
    assert costly == [*lines, "  refresh cost: 0 control-plane requests, 1 data-plane call"]


def test_the_header_fits_80_columns_however_many_domains() -> None:
    """5000 domains in every state, some not answering, inactive ones, a long URI, the
    cost line, a terabyte host: every line within HEADER_WIDTH (80 less the margins)."""
    states = [*xvirt.DomainState, None]
    rows = tuple(DomainRow(f"{i:08x}-0000-0000-0000-000000000000", i, f"guest-{i:05d}",
                           states[i % len(states)], 262144, 1, 10**12, 10**9, 0.1, 0.01)
                 for i in range(5000))
    info = xvirt.HostInfo("a-rather-long-hostname.example.org", "Xen", "4", "x86_64", 256,
                          2400, 1, 1, 1, 2, 8 * 2**30, 2**30, "boot")
    uri = "xend://a-rather-long-hostname.example.org:8000/?timeout=30&fast=shm&cache=on"
    big = HostFrame(uri, info, 3.0, rows, Cost(12345, 67890), inactive=12345)
    lines = summary_lines(big, 3.0, cost=True)
    assert all(len(line) <= HEADER_WIDTH for line in lines), lines
    assert HEADER_WIDTH <= 80
    # no room for enough of the URI: the host's name alone, never the machine cut
    assert lines[0] == "a-rather-long-hostname.example.org  x86_64  256 CPUs  8.0 TiB memory"
    short = dataclasses.replace(big, info=dataclasses.replace(info, hostname="h.sim"))
    label = summary_lines(short, 3.0)[0]  # the URI is cut first, its end marked
    assert label.startswith("h.sim (xend://a-rather-long-hostname.") and "...)  " in label
    assert len(label) == HEADER_WIDTH
    counted = " ".join(" ".join(lines[1:-2]).split())
    for word in ("running", "idle", "paused", "in shutdown", "crashed", "no answer"):
        assert re.search(rf"\b\d+ {word}\b", counted), word
    assert "shut off" in counted and counted.endswith("; 12345 inactive")
    failed = summary_lines(frame((), None, error="x" * 30 + " " + "y " * 60, uri=uri), 3.0)
    assert len(failed) > 1 and all(len(line) <= HEADER_WIDTH for line in failed)


# -- sorting and cells ---------------------------------------------------------------------


def rows_for_sorting() -> tuple[DomainRow, ...]:
    return (
        DomainRow(A, 1, "zeta", RUNNING, 300, 1, 50, 5, 10.0, 1.0),
        DomainRow(B, 2, "alpha", RUNNING, 100, 1, 900, 9, 30.0, 1.0),
        DomainRow(C, 3, "mid", RUNNING, 200, 1, 10, None, None, 1.0),
        DomainRow("dddddddd-0000-0000-0000-000000000004", 4, "gone-quiet", None, None, None,
                  None, None, None, None, "no answer"),
    )


@pytest.mark.parametrize(("key", "names"), [
    ("cpu", ["alpha", "zeta", "mid", "gone-quiet"]),  # unknown shares last
    ("mem", ["zeta", "mid", "alpha", "gone-quiet"]),
    ("time", ["alpha", "zeta", "mid", "gone-quiet"]),
    ("id", ["zeta", "alpha", "mid", "gone-quiet"]),
    ("name", ["alpha", "gone-quiet", "mid", "zeta"]),
])
def test_sort_orders(key: str, names: list[str]) -> None:
    assert [r.name for _, r in sorted_lines([frame(rows_for_sorting())], key)] == names


def test_sorting_spans_hosts_and_ties_go_by_host_then_id() -> None:
    one = frame((DomainRow(A, 1, "x", RUNNING, 5, 1, 1, 1, 1.0, 1.0),), uri="sim:///1")
    other_info = xvirt.HostInfo("a.sim", "Xen", "4", "x86_64", 2, 2400, 1, 1, 1, 2, HOST_KIB,
                                0, "b")
    two = HostFrame("sim:///2", other_info, 1.0,
                    (DomainRow(B, 1, "y", RUNNING, 5, 1, 1, 1, 1.0, 1.0),
                     DomainRow(C, 0, "z", RUNNING, 9, 1, 1, 1, 1.0, 1.0)), Cost(0, 1))
    assert [r.name for _, r in sorted_lines([one, two], "mem")] == ["z", "y", "x"]
    with pytest.raises(ValueError, match="unknown sort key"):
        sorted_lines([one], "colour")


def test_cells_line_up_with_the_columns() -> None:
    row = DomainRow(A, 12, "web1", xvirt.DomainState.BLOCKED, 524288, 2, 61_230_000_000, 1,
                    3.14159, 0.78)
    cells = row_cells(row)
    assert len(cells) == len(COLUMNS)
    assert dict(zip(COLUMNS, cells, strict=True)) == {
        "ID": "12", "S": "S", "RDRQ": "-", "WRRQ": "-", "RXBY": "-", "TXBY": "-",
        "%CPU": "3.1", "%MEM": "0.8", "MEM(k)": "524288", "VCPUS": "2", "TIME": "1:01.23",
        "NAME": "web1"}
    with_io = dataclasses.replace(row, rd_reqs=5, wr_reqs=6, rd_bytes=7, wr_bytes=8,
                                  rx_bytes=9, tx_bytes=10)
    shown = columns(block_bytes=True, net=False)
    assert shown == ("ID", "S", "RDBY", "WRBY", "%CPU", "%MEM", "MEM(k)", "VCPUS", "TIME",
                     "NAME")
    assert row_cells(with_io, shown)[2:4] == ("7", "8")
    assert row_cells(with_io)[2:6] == ("5", "6", "9", "10")
    assert columns(block=False, net=False) == (
        "ID", "S", "%CPU", "%MEM", "MEM(k)", "VCPUS", "TIME", "NAME")


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0:00.00"), (999_999_999, "0:00.99"), (61_230_000_000, "1:01.23"),
    (3 * 3600 * 10**9, "180:00.00"),
])
def test_cpu_time_text_is_tops_time_plus(ns: int, text: str) -> None:
    assert cpu_time_text(ns) == text


@pytest.mark.parametrize("text", ["0", "-1", "abc", "", "nan", "inf", "-inf", "1e999"])
def test_parse_delay_refuses_what_is_not_a_positive_finite_number(text: str) -> None:
    with pytest.raises(ValueError, match="seconds > 0"):
        parse_delay(text)


@pytest.mark.parametrize(("text", "value"), [("3", 3.0), (" 0.5 ", 0.5), ("1e-3", 0.001)])
def test_parse_delay_accepts_seconds(text: str, value: float) -> None:
    assert math.isclose(parse_delay(text), value)


# -- block and network I/O -----------------------------------------------------------------


def test_io_is_what_each_domain_did_since_the_previous_refresh() -> None:
    tracker = CpuTracker()
    first, _ = tracker.step(0.0, survey(sample(A, 1, "a", 0, stats=io(
        A, (disk("xvda", 10, 5, 4096, 2048), disk("xvdb", 1, 1, 512, 512)),
        (nic("vif1.0", 1000, 100, 10, 1),)))), 1, HOST_KIB)
    (row,) = first
    assert (row.rd_reqs, row.wr_reqs, row.rx_bytes, row.tx_bytes) == (None,) * 4
    assert [(d.kind, d.device, d.a_bytes) for d in row.devices] == [
        ("block", "xvda", None), ("block", "xvdb", None), ("net", "vif1.0", None)]
    second, _ = tracker.step(2.0, survey(sample(A, 1, "a", 0, stats=io(
        A, (disk("xvda", 15, 5, 8192, 2048), disk("xvdb", 3, 2, 1024, 1024)),
        (nic("vif1.0", 1500, 400, 14, 4),)))), 1, HOST_KIB)
    (row,) = second
    assert (row.rd_reqs, row.wr_reqs, row.rd_bytes, row.wr_bytes) == (7, 1, 4608, 512)
    assert (row.rx_bytes, row.tx_bytes) == (500, 300)
    xvda = row.devices[0]
    assert (xvda.a_bytes, xvda.b_bytes, xvda.a_count, xvda.b_count) == (4096, 0, 5, 0)
    net = row.devices[2]
    assert (net.a_bytes, net.b_bytes, net.a_count, net.b_count, net.source) == (
        500, 300, 4, 3, "xenbr0")
    assert device_cells(row, net) == ("1", "vif1.0", "500", "300", "4", "3", "xenbr0", "a")
    assert len(device_cells(row, xvda)) == len(DEVICE_COLUMNS["block"])


def test_a_counter_that_went_back_or_a_new_device_is_unknown_never_negative() -> None:
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 0, stats=io(A, (disk("xvda", 10, 5, 10, 5),),
                                                             (nic("vif1.0", 100, 100),)))),
                 1, HOST_KIB)
    rows, _ = tracker.step(1.0, survey(sample(A, 1, "a", 0, stats=io(
        A, (disk("xvda", 2, 1, 2, 1), disk("xvdb", 1, 1, 1, 1)),  # rebooted; a new disk
        (nic("vif1.0", 150, 100),)))), 1, HOST_KIB)
    (row,) = rows
    assert (row.rd_reqs, row.wr_reqs) == (None, None)
    assert (row.rx_bytes, row.tx_bytes) == (50, 0)


def test_io_follows_the_uuid_not_the_id() -> None:
    """A domain that moved to another ID keeps its counters; one that took its old ID
    starts blank."""
    tracker = CpuTracker()
    tracker.step(0.0, survey(sample(A, 1, "a", 0, stats=io(A, None, (nic("vif", 100, 0),)))),
                 1, HOST_KIB)
    rows, _ = tracker.step(1.0, survey(
        sample(B, 1, "b", 0, stats=io(B, None, (nic("vif", 500, 0),))),
        sample(A, 2, "a", 0, stats=io(A, None, (nic("vif", 130, 0),)))), 1, HOST_KIB)
    got = by_uuid(rows)
    assert got[A].rx_bytes == 30 and got[B].rx_bytes is None
    assert got[A].rd_reqs is None  # no block group asked: unknown, not 0


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=2, max_size=6))
def test_io_deltas_add_up_and_are_never_negative(readings: list[int]) -> None:
    tracker = CpuTracker()
    shown: list[int] = []
    for i, value in enumerate(readings):
        rows, _ = tracker.step(float(i), survey(sample(A, 1, "a", 0, stats=io(
            A, (disk("xvda", value, 0, 0, 0),), ()))), 1, HOST_KIB)
        if rows[0].rd_reqs is not None:
            shown.append(rows[0].rd_reqs)
    assert all(v >= 0 for v in shown)
    # between resets, the deltas add up to the growth of the counter
    growth = sum(b - a for a, b in itertools.pairwise(readings) if b >= a)
    assert sum(shown) == growth


def test_device_views_list_every_device_of_every_domain() -> None:
    tracker = CpuTracker()
    rows, _ = tracker.step(0.0, survey(
        sample(B, 2, "b", 0, stats=io(B, (disk("xvda", 1, 1, 1, 1),), (nic("vif2.0", 1, 1),))),
        sample(A, 1, "a", 0, stats=io(A, (disk("xvdb", 1, 1, 1, 1), disk("xvda", 1, 1, 1, 1)),
                                      ()))), 1, HOST_KIB)
    f = frame(rows)
    assert [(r.name, d.device) for _, r, d in device_lines([f], "block")] == [
        ("a", "xvda"), ("a", "xvdb"), ("b", "xvda")]
    assert [(r.name, d.device) for _, r, d in device_lines([f], "net")] == [("b", "vif2.0")]


def test_io_sort_keys_put_the_busiest_first() -> None:
    tracker = CpuTracker()
    stats = {A: (10, 100), B: (20, 50)}
    for t, grow in ((0.0, 0), (1.0, 1)):
        rows, _ = tracker.step(t, survey(*(
            sample(u, i, u[0], 0, stats=io(u, (disk("xvda", rd * grow, 0, 0, 0),),
                                           (nic("vif", rx * grow, 0),)))
            for i, (u, (rd, rx)) in enumerate(stats.items(), 1))), 1, HOST_KIB)
    f = frame(rows)
    assert [r.name for _, r in sorted_lines([f], "blockrdrq")] == ["b", "a"]
    assert [r.name for _, r in sorted_lines([f], "netrx")] == ["a", "b"]
