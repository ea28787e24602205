"""``xvirt bench``: the 2006 experiment's figures are counted, and the naive ID cache is
caught being wrong exactly as often as the churn makes it."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from xvirt.testing.daemon import DaemonProcess
from xvirt.tools import bench
from xvirt.tools.bench import REPORT_WIDTH, parse_counts, render
from xvirt.tools.bench_run import Cell, ExistingHost, Mode, SimBenchHost, run
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
    flat = " ".join(text.split())  # the verdict wraps within the report's width
    assert "101 -> 1 requests per run" in flat
    assert "the naive ID cache gave 20 wrong answers in 1 run; xvirt gave 0." in flat


def _cell(domains: int, mode: Mode, requests: int, calls: int, seconds: list[float],
          wrong: list[int], skipped: str | None = None) -> Cell:
    runs = len(seconds)
    return Cell(domains, mode, 5, [requests] * runs, [calls] * runs, seconds, wrong, skipped)


def test_every_report_line_fits_100_columns(host: SimBenchHost) -> None:
    """A real run, and the biggest figures the scaling story prints (5000 domains, a
    2006 run skipped for its latency, a host given by a long URI)."""
    real = render(run(host, samples=5, repeats=2), samples=5, repeats=2, latency_ms=0.0,
                  churned=True, host_label=host.label)
    big = [
        _cell(5000, Mode.Y2006, 0, 0, [], [], skipped="one run would sleep 12500 s in "
              "control-plane latency alone (limit 120 s)"),
        _cell(5000, Mode.NAIVE, 5000, 25005, [5.788, 5.697, 5.815], [20, 20, 20]),
        _cell(5000, Mode.XVIRT, 1, 50005, [0.289, 0.242, 0.315], [0, 0, 0]),
        _cell(20000, Mode.Y2006, 100001, 100005, [1029.03, 1028.706, 1029.305], [0, 0, 0]),
        _cell(20000, Mode.NAIVE, 20000, 100005, [205.788, 205.697, 205.815],
              [1000, 980, 1020]),
        _cell(20000, Mode.XVIRT, 1, 200005, [1.289, 1.242, 1.315], [0, 0, 0]),
    ]
    long_uri = "xend+unix:///var/lib/xvirt/hosts/a-rather-long-host-name/xend.sock?timeout=30"
    wide = render(big, samples=5, repeats=3, latency_ms=None, churned=False,
                  host_label=f"{long_uri}, its 5000 domains as they are")
    for text in (real, wide):
        too_wide = [line for line in text.splitlines() if len(line) > REPORT_WIDTH]
        assert too_wide == []
    assert "skipped: one run would sleep 12500 s" in wide
    assert "1029.030 (1028.706-1029.305)" in wide and "1000 (980-1020)" in wide
    lines = wide.splitlines()
    at = next(i for i, line in enumerate(lines) if "xvirt cache" in line and "200005" in line)
    header = next(line for line in reversed(lines[:at]) if "per run:" in line)  # its table's
    assert lines[at].index("200005") + 6 == header.index("data calls") + len("data calls")


def test_domain_counts_are_checked() -> None:
    assert parse_counts("1000, 20,20") == [20, 1000]
    runner = CliRunner()
    for bad in ("0", "x", "20,,30", "-5", "40000"):
        result = runner.invoke(main, ["bench", "--domains", bad])
        assert result.exit_code == 2, bad
        assert "is not a domain count" in result.stderr


def test_the_command_prints_json_and_draws_the_plot(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XVIRT_NO_PROGRESS", "1")
    png = tmp_path / "bench.png"
    result = CliRunner().invoke(main, [
        "bench", "--domains", "5,12", "--samples", "3", "--repeats", "1",
        "--control-latency-ms", "0", "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"bench: wrote the plot to {png}\n"  # where, and nothing else
    report = json.loads(result.stdout)
    cells = report["cells"]
    assert [(c["domains"], c["mode"]) for c in cells] == [
        (5, "2006"), (5, "naive"), (5, "xvirt"), (12, "2006"), (12, "naive"), (12, "xvirt")]
    assert all(c["wrong_answers"] == [0] for c in cells if c["mode"] != "naive")
    assert [c["wrong_answers"] for c in cells if c["mode"] == "naive"] == [[6], [6]]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unreachable_host_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVIRT_NO_PROGRESS", raising=False)
    result = CliRunner().invoke(main, ["bench", "--uri", "xend+unix:///nonexistent/x.sock"])
    assert result.exit_code == 1
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_a_uri_before_the_subcommand_is_the_host_measured() -> None:
    result = CliRunner().invoke(main, ["-c", "xend+unix:///nonexistent/x.sock", "bench"])
    assert result.exit_code == 1 and "/nonexistent/x.sock" in result.stderr


# -- progress ---------------------------------------------------------------------------------


def test_off_a_terminal_progress_is_a_line_per_finished_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVIRT_NO_PROGRESS", raising=False)
    result = CliRunner().invoke(main, [  # CliRunner's stderr is not a terminal
        "bench", "--domains", "6", "--samples", "2", "--repeats", "2",
        "--control-latency-ms", "0"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 3 * 2  # three modes, two runs each
    pattern = re.compile(r"bench: \[(\d)/6\] 6 domains, (.+), run ([12]) of 2: "
                         r"\d+\.\d{3} s, \d+ requests?, \d+ wrong")
    seen = [pattern.fullmatch(line) for line in lines]
    assert all(seen), lines
    assert [int(m[1]) for m in seen if m] == [1, 2, 3, 4, 5, 6]
    assert [m[2] for m in seen if m][::2] == [m.value for m in Mode]
    assert "xvirt bench: the 2006 monitoring loop" in result.stdout  # the report stays apart


def test_a_skipped_run_is_one_progress_line_for_all_its_runs() -> None:
    out = io.StringIO()
    progress = bench.LineProgress(runs=3, repeats=3)
    skipped = Cell(5000, Mode.Y2006, 5, skipped="one run would sleep 9 s")
    old, sys.stderr = sys.stderr, out
    try:
        progress.finished(skipped)
    finally:
        sys.stderr = old
    assert out.getvalue() == ("bench: [3/3] 5000 domains, 2006 mode (a request per lookup): "
                              "skipped (one run would sleep 9 s)\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_a_bar_and_no_progress_silences_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVIRT_NO_PROGRESS", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with bench._progress(runs=2, repeats=1, samples=3) as progress:
        assert not isinstance(progress, bench.LineProgress)
        for _ in range(6):
            progress.sample()
    assert "sampling" in terminal.getvalue()  # rich drew its bar there
    monkeypatch.setenv("XVIRT_NO_PROGRESS", "1")
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with bench._progress(runs=2, repeats=1, samples=3) as progress:
        progress.sample()
        progress.finished(Cell(20, Mode.XVIRT, 3, [1], [2], [0.1], [0]))
    assert quiet.getvalue() == ""


# -- the plot -----------------------------------------------------------------------------------


def _drawn(cells: list[Cell], path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The axes of the figure ``plot`` saves (it is saved, then inspected)."""
    from matplotlib.figure import Figure

    axes: list[Any] = []
    save = Figure.savefig

    def keep(fig: Figure, *args: Any, **kwargs: Any) -> None:
        axes.extend(fig.axes)
        save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    bench.plot(cells, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return axes


def test_one_size_is_drawn_as_bars_several_as_lines(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    one = [_cell(20, Mode.Y2006, 101, 105, [5.0], [0]), _cell(20, Mode.NAIVE, 20, 105, [1.0],
                                                              [20]),
           _cell(20, Mode.XVIRT, 1, 205, [0.05], [0])]
    left, right = _drawn(one, tmp_path / "one.png", monkeypatch)
    for ax in (left, right):
        assert len(ax.patches) == 3 and not ax.lines  # a bar per mode
        assert ax.get_xscale() == "linear"
        assert [t.get_text() for t in ax.get_xticklabels()][2] == "xvirt cache"
    assert [p.get_height() for p in left.patches] == [101, 20, 1]
    several = one + [_cell(200, m, 1001 if m is Mode.Y2006 else 1, 1005, [0.5], [0])
                     for m in Mode]
    left, right = _drawn(several, tmp_path / "many.png", monkeypatch)
    for ax in (left, right):
        assert len(ax.lines) == 3 and not ax.patches  # a line per mode
        assert ax.get_xscale() == "log"


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
