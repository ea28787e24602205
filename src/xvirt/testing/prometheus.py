"""A private, real Prometheus server for tests.

Everything it owns lives in one temporary directory: its configuration file, its
TSDB (``--storage.tsdb.path``) and its log. It listens on a free loopback port,
runs in the foreground as our child, and is stopped (SIGTERM) or killed (SIGKILL)
by PID. ``cleanup``, the context manager and an atexit hook make sure it is never
left behind by a test that fails.

    with PrometheusProcess({"scrape_configs": [...]}) as prom:
        prom.wait_until(lambda: prom.query("up == 1"), timeout_s=10)

Needs ``/usr/bin/prometheus`` (Debian's ``prometheus``) and httpx.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import yaml

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


class PrometheusProcess:
    """One private Prometheus server and its temporary directory (removed by ``cleanup``).

    ``config`` is the configuration: YAML text or a mapping (written as YAML).
    """

    def __init__(self, config: str | Mapping[str, Any], *, binary: str = PROMETHEUS,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="xvirt-prometheus-"))
        self.config_file = self.state_dir / "prometheus.yml"
        self.data_dir = self.state_dir / "data"
        self.log = self.state_dir / "prometheus.log"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
        self.config_file.write_text(text)
        self.port = free_port()
        self._binary = binary
        self._extra = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._owner = os.getpid()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PrometheusError("prometheus is not running")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> PrometheusProcess:
        if self.running():
            raise PrometheusError("prometheus is already running")
        if not os.access(self._binary, os.X_OK):
            raise PrometheusError(f"{self._binary} not found: install prometheus")
        args = [self._binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn", *self._extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=self.state_dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        _running.add(self)
        self._client = httpx.Client(base_url=self.url, timeout=10.0)
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        """Until ``/-/ready`` answers 200 (bounded; polls, no fixed sleep)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc is not None and self._client is not None
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n"
                                      + self.log_tail())
            try:
                if self._client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus was not ready within {START_TIMEOUT_S} s:\n"
                                      + self.log_tail())
            time.sleep(0.05)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"(no log: {e})"

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

    # -- lifetime ------------------------------------------------------------------------

    def stop(self) -> int:
        """SIGTERM by PID and wait: Prometheus closes its TSDB cleanly."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL by PID and reap."""
        return self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> int:
        proc, self.proc = self.proc, None
        _running.discard(self)
        if self._client is not None:
            self._client.close()
            self._client = None
        if proc is None:
            return 0
        if proc.poll() is not None:
            return proc.returncode
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> PrometheusProcess:
        if not self.running():
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


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


_running: set[PrometheusProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    """The safety net: a test that forgot ``cleanup`` must not leave a server running."""
    for server in list(_running):
        if server._owner == os.getpid():
            server.cleanup()
