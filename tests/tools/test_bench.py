"""``xvirt bench``: the 2006 experiment's figures are counted, and the naive ID cache is
caught being wrong exactly as often as the churn makes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from xvirt.testing.daemon import DaemonProcess
from xvirt.tools.bench import parse_counts, render
from xvirt.tools.bench_run import ExistingHost, Mode, SimBenchHost, run
from xvirt.tools.cli import main


@pytest.fixture
def host() -> Iterator[SimBenchHost]:
    h = SimBenchHost(20)
    yield h
    h.close()


def test_the_2006_figures_are_counted_exactly(host: SimBenchHost) -> None:
    cells = {c.mode: c for c in run(host, samples=5, repeats=2)}
    y2006, naive, ours = cells[Mode.Y2006], cells[Mode.NAIVE], cells[Mode.XVIRT]
    # 2006: one request per lookup, 20 lookups x 5 samples, plus the one at open.
    assert y2006.control_requests == [101, 101]
    # The naive cache asks once per ID and then believes itself...
    assert naive.control_requests == [20, 20]
    # ...so after the k-th swap it names 2k IDs after their former holders:
    # 0 + 2 + 4 + 6 + 8 wrong answers over the five samples.
    assert naive.wrong == [20, 20]
    # xvirt: one request for everyone in the first sample, and never wrong; the two
    # swapped domains come back from their images with the names they were saved
    # with, so naming them again costs nothing.
    assert ours.control_requests == [1, 1]
    assert ours.wrong == [0, 0] and y2006.wrong == [0, 0]
    # list + (lookup + info) per domain per sample; the naive loop does the same
    # data-plane work as 2006 mode.
    assert ours.data_calls == [5 * (1 + 2 * 20)] * 2
    assert naive.data_calls == [5 * (1 + 20)] * 2
    assert host.churned


def test_a_single_domain_host_has_nothing_to_swap() -> None:
    h = SimBenchHost(2)
    try:
        cells = run(h, samples=3, repeats=1, modes=[Mode.NAIVE])
        assert cells[0].wrong == [0] and not h.churned
    finally:
        h.close()


def test_a_2006_run_that_would_only_sleep_is_skipped_and_says_why() -> None:
    h = SimBenchHost(30, latency_ms=50)
    steps: list[int] = []
    try:
        cells = run(h, samples=5, repeats=2, modes=[Mode.Y2006], max_run_s=1.0,
                    step=lambda: steps.append(1))
    finally:
        h.close()
    assert cells[0].skipped is not None and "7.5 s" not in cells[0].skipped
    assert "8 s in control-plane latency" in cells[0].skipped  # 5 x 30 x 50 ms = 7.5 s
    assert cells[0].seconds == [] and len(steps) == 10  # the bar still completes


def test_the_report_reads_as_the_2006_story(host: SimBenchHost) -> None:
    cells = run(host, samples=5, repeats=1)
    text = render(cells, samples=5, repeats=1, latency_ms=0.0, churned=True,
                  host_label=host.label)
    assert "20 domains (Domain-0 included)" in text
    assert "101 -> 1 requests per run" in text
    assert "the naive ID cache gave 20 wrong answers in 1 run; xvirt gave 0." in text


def test_domain_counts_are_checked() -> None:
    assert parse_counts("1000, 20,20") == [20, 1000]
    runner = CliRunner()
    for bad in ("0", "x", "20,,30", "-5", "40000"):
        result = runner.invoke(main, ["bench", "--domains", bad])
        assert result.exit_code == 2, bad
        assert "is not a domain count" in result.output


def test_the_command_prints_json_and_draws_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    result = CliRunner().invoke(main, [
        "bench", "--domains", "5,12", "--samples", "3", "--repeats", "1",
        "--control-latency-ms", "0", "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    cells = report["cells"]
    assert [(c["domains"], c["mode"]) for c in cells] == [
        (5, "2006"), (5, "naive"), (5, "xvirt"), (12, "2006"), (12, "naive"), (12, "xvirt")]
    assert all(c["wrong_answers"] == [0] for c in cells if c["mode"] != "naive")
    assert [c["wrong_answers"] for c in cells if c["mode"] == "naive"] == [[6], [6]]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unreachable_host_is_one_error_line() -> None:
    result = CliRunner().invoke(main, ["bench", "--uri", "xend+unix:///nonexistent/x.sock"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_a_daemons_domains_are_used_as_they_are() -> None:
    daemon = DaemonProcess(tcp=False)
    daemon.start()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                          base_url="http://localhost") as admin:
            admin.post("/xvirt/host", data={"op": "create", "name": "g", "count": "6",
                                            "memory_kib": "65536", "vcpus": "1"}
                       ).raise_for_status()
        h = ExistingHost(daemon.unix_uri)
        try:
            assert h.domains == 7
            cells = {c.mode: c for c in run(h, samples=3, repeats=1)}
        finally:
            h.close()
        assert h.churned  # saved and restored through the public API
        assert cells[Mode.Y2006].control_requests == [1 + 3 * 7]
        assert cells[Mode.XVIRT].wrong == [0] and cells[Mode.Y2006].wrong == [0]
        # The daemon's rover does not reuse the freed IDs at once: the naive cache
        # is not wrong here, it only asks again for the restored domains.
        assert cells[Mode.NAIVE].control_requests == [7 + 2 + 2]
    finally:
        daemon.cleanup()
