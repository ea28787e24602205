"""The private Prometheus harness: it starts, answers queries, reports its failures with
its log, and leaves neither a process nor a directory behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xvirt.testing.prometheus import PrometheusError, PrometheusProcess, parse_samples, promtool

CONFIG = {"global": {"scrape_interval": "1s"}, "scrape_configs": []}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill 0; the harness reaps its children, so it should not be one.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_it_starts_answers_and_cleans_up() -> None:
    with PrometheusProcess(CONFIG) as prom:
        pid, state_dir = prom.pid, prom.state_dir
        assert prom.url == f"http://127.0.0.1:{prom.port}"
        assert (state_dir / "data").is_dir()  # the TSDB lives in the temporary directory
        assert "scrape_interval: 1s" in prom.config_file.read_text()
        assert prom.query("vector(42)")[0]["value"][1] == "42"
        assert prom.values('label_replace(vector(1), "k", "v", "", "")', "k") == {"v": 1.0}
        assert prom.targets() == []
        with pytest.raises(PrometheusError, match="bad_data"):
            prom.query("sum(")
        with pytest.raises(PrometheusError, match="gave a scalar"):
            prom.query("1")
        with pytest.raises(PrometheusError, match="two series with k="):
            prom.values('vector(1) or label_replace(vector(2), "x", "y", "", "")', "k")
        assert prom.wait_until(lambda: 7) == 7
        with pytest.raises(PrometheusError, match=r"still \[\] after 0 s"):
            prom.wait_until(list, timeout_s=0)
    assert _gone(pid)
    assert not state_dir.exists()
    with pytest.raises(PrometheusError, match="not running"):
        prom.query("vector(1)")


def test_stop_is_graceful_and_start_again_works() -> None:
    prom = PrometheusProcess("global:\n  scrape_interval: 5s\n")
    try:
        prom.start()
        with pytest.raises(PrometheusError, match="already running"):
            prom.start()
        assert prom.stop() == 0
        assert not prom.running()
        prom.start()  # the same directory, port and TSDB
        assert prom.query("vector(1)")
    finally:
        prom.cleanup()
    assert not prom.state_dir.exists()


def test_a_bad_config_is_reported_with_the_log_and_nothing_is_left() -> None:
    prom = PrometheusProcess("scrape_configs:\n  - job_name: x\n    scrape_interval: often\n")
    with pytest.raises(PrometheusError, match="prometheus exited with") as err, prom:
        pass
    assert "often" in str(err.value)  # the log says what was wrong
    assert prom.proc is None and not prom.state_dir.exists()


def test_a_missing_binary_is_reported() -> None:
    prom = PrometheusProcess(CONFIG, binary="/nonexistent/prometheus")
    try:
        with pytest.raises(PrometheusError, match="not found: install prometheus"):
            prom.start()
    finally:
        prom.cleanup()
    with pytest.raises(PrometheusError, match="not found"):
        promtool("--version", binary="/nonexistent/promtool")


def test_the_safety_net_kills_what_a_test_forgot() -> None:
    prom = PrometheusProcess(CONFIG).start()
    pid = prom.pid
    PrometheusProcess.kill_leftovers()
    assert _gone(pid) and not prom.state_dir.exists()


def test_parse_samples_refuses_duplicates_and_promtool_lints() -> None:
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
    assert parse_samples(good) == {("a_total", frozenset({("x", "1")})): 3.0}
    with pytest.raises(PrometheusError, match="duplicate series a_total"):
        parse_samples(good + 'a_total{x="1"} 4\n')
    assert promtool("check", "metrics", stdin=good).returncode == 0
    linted = promtool("check", "metrics", stdin="# HELP b B.\n# TYPE b counter\nb 1\n")
    assert linted.returncode != 0
    assert "counter metrics should have \"_total\" suffix" in linted.stdout + linted.stderr
