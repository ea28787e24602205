"""A private, real Prometheus server for tests.

Everything it owns lives in one temporary directory: its configuration file, its
TSDB (``--storage.tsdb.path``) and its log. It listens on a free loopback port,
runs in the foreground as our child, and is stopped (SIGTERM) or killed (SIGKILL)
by PID. ``cleanup``, the context manager and an atexit hook make sure it is never
left behind by a test that fails (the rules of ``_child.ChildProcess``).

    with PrometheusProcess({"scrape_configs": [...]}) as prom:
        prom.wait_until(lambda: prom.query("up == 1"), timeout_s=10)

Needs ``/usr/bin/prometheus`` (Debian's ``prometheus``) and httpx.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import yaml

from xvirt.testing._child import ChildProcess
from xvirt.testing.daemon import free_port

__all__ = ["PROMETHEUS", "PROMTOOL", "PrometheusError", "PrometheusProcess", "parse_samples",
           "promtool"]

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus could not be started, did not answer in time, or refused a query."""


class PrometheusProcess(ChildProcess):
    """One private Prometheus server and its temporary directory (removed by ``cleanup``).

    ``config`` is the configuration: YAML text or a mapping (written as YAML). ``stop``
    (SIGTERM) lets Prometheus close its TSDB cleanly.
    """

    name = "prometheus"
    error = PrometheusError
    start_timeout_s = START_TIMEOUT_S
    stop_timeout_s = STOP_TIMEOUT_S
    poll_interval_s = 0.05
    late_message = "{name} was not ready within {timeout} s:\n{log}"

    def __init__(self, config: str | Mapping[str, Any], *, binary: str = PROMETHEUS,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(prefix="xvirt-prometheus-", log_name="prometheus.log")
        self.config_file = self.state_dir / "prometheus.yml"
        self.data_dir = self.state_dir / "data"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
        self.config_file.write_text(text)
        self.port = free_port()
        self._binary = binary
        self._extra = extra_args
        self._cwd = self.state_dir
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        if not os.access(self._binary, os.X_OK):
            raise PrometheusError(f"{self._binary} not found: install prometheus")
        return [self._binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn", *self._extra]

    def _started(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=10.0)

    def _ended(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _ready(self, deadline: float) -> bool:
        """``/-/ready`` answers 200."""
        assert self._client is not None
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False  # not listening yet

    # -- the HTTP API ------------------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        if self._client is None or not self.running():
            raise PrometheusError("prometheus is not running")
        response = self._client.get(path, params=params)
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"{path}: HTTP {response.status_code}: "
                                  f"{response.text[:500]}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query at the current time: the result's samples, each with
        ``metric`` (the labels) and ``value`` ([time, "text"])."""
        data = self._api("/api/v1/query", {"query": promql})
        if data.get("resultType") != "vector":
            raise PrometheusError(f"{promql!r} gave a {data.get('resultType')}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, promql: str, label: str) -> dict[str, float]:
        """An instant query as ``{value of label: sample value}``; a label seen twice
        is a PrometheusError (the query was meant to select one series per value)."""
        out: dict[str, float] = {}
        for sample in self.query(promql):
            key = sample["metric"].get(label, "")
            if key in out:
                raise PrometheusError(f"{promql!r}: two series with {label}={key!r}")
            out[key] = float(sample["value"][1])
        return out

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, with ``health``, ``lastError`` and ``lastScrape``."""
        targets: list[dict[str, Any]] = self._api("/api/v1/targets")["activeTargets"]
        return targets

    def wait_until(self, check: Callable[[], T], *, timeout_s: float = 15.0,
                   interval_s: float = 0.2) -> T:
        """Poll ``check`` until it returns something true, which is returned; after
        ``timeout_s`` a PrometheusError says what it last returned."""
        deadline = time.monotonic() + timeout_s
        while True:
            last = check()
            if last:
                return last
            if time.monotonic() > deadline:
                raise PrometheusError(f"still {last!r} after {timeout_s} s")
            time.sleep(interval_s)


Labels = frozenset[tuple[str, str]]


def parse_samples(text: str) -> dict[tuple[str, Labels], float]:
    """The samples of an exposition in the text format, by (name, labels), parsed by
    prometheus_client's own parser; a (name, labels) seen twice is a PrometheusError."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            if key in out:
                raise PrometheusError(f"duplicate series {sample.name}{dict(key[1])}")
            out[key] = sample.value
    return out


def promtool(*args: str, stdin: str | None = None,
             binary: str = PROMTOOL) -> subprocess.CompletedProcess[str]:
    """Run promtool (``check metrics`` reads the exposition on stdin)."""
    if not os.access(binary, os.X_OK):
        raise PrometheusError(f"{binary} not found: install prometheus")
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)
