"""The exporter says why it cannot read a host that refuses it (issue 16, item 7): before,
each scrape waited out its deadline and the log said "no answer from the host within 5 s"
for a host that had refused the connection at once."""

from __future__ import annotations

import time
from pathlib import Path

from xvirt.testing.daemon import free_port
from xvirt.tools.exporter_metrics import HostReader, SurveyRunner, XvirtCollector


def _scrape(uri: str) -> tuple[float, float, list[str]]:
    logged: list[str] = []
    collector = XvirtCollector(SurveyRunner(HostReader(uri).read), timeout_s=5.0,
                               log=logged.append)
    started = time.monotonic()
    families = list(collector.collect())
    up = families[0].samples[0].value
    assert families[0].name == "xvirt_up"
    return up, time.monotonic() - started, logged


def test_a_refused_host_is_logged_with_the_real_cause_at_once() -> None:
    port = free_port()
    up, took, logged = _scrape(f"xend://127.0.0.1:{port}")
    assert up == 0.0 and took < 1.0, took
    assert len(logged) == 1 and "no answer" not in logged[0]
    assert f"127.0.0.1:{port}" in logged[0] and "Connection refused" in logged[0]


def test_a_missing_socket_is_logged_with_the_real_cause_at_once(tmp_path: Path) -> None:
    up, took, logged = _scrape(f"xend+unix://{tmp_path}/xend.sock")
    assert up == 0.0 and took < 1.0, took
    assert len(logged) == 1 and "No such file or directory" in logged[0]
