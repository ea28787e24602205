"""``xvirt exporter``: serve one host's domains to Prometheus.

The wiring: a :class:`~xvirt.tools.exporter_metrics.XvirtCollector` on its own
CollectorRegistry, served by prometheus_client's WSGI app at ``/metrics``, with a
landing page at ``/``, 404 elsewhere, and basic auth and TLS from a web config
file (:mod:`xvirt.tools.webconfig`), all on cheroot, a threaded WSGI server with
TLS. The connection is read-only: the exporter only looks.
"""

from __future__ import annotations

import gzip
import html
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import click
from cheroot import wsgi
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

import xvirt
from xvirt.clock import Clock
from xvirt.tools.exporter_metrics import (
    ALL_COLLECTORS,
    HostReader,
    SurveyRunner,
    XvirtCollector,
    gc_paused,
    parse_collect,
)
from xvirt.tools.webconfig import (
    BasicAuth,
    Verdict,
    WebConfig,
    WebConfigError,
    load_web_config,
    ssl_adapter,
)

__all__ = [
    "AUTH_FAILURE_DELAY_S",
    "AUTH_HELD_MAX",
    "DEFAULT_LISTEN",
    "DEFAULT_SCRAPE_TIMEOUT_S",
    "MAX_REQUEST_BODY_BYTES",
    "MAX_REQUEST_HEADER_BYTES",
    "Exporter",
    "HandlerCounts",
    "ProcessLimits",
    "exporter_app",
    "exporter_command",
    "generate_text",
    "parse_listen",
]

#: Loopback only: exposing a host's inventory to the network is a decision to make.
DEFAULT_LISTEN = "127.0.0.1:9177"
#: The share of the scrape timeout the statistics of one reading may wait for guests
#: (a scrape may first wait for the reading an earlier scrape started).
STATS_SHARE_OF_SCRAPE = 0.4
#: Below Prometheus' default scrape_timeout (10 s), so the exporter answers
#: ``xvirt_up 0`` before Prometheus gives up on it and records nothing.
DEFAULT_SCRAPE_TIMEOUT_S = 5.0
#: The request line and headers together (cheroot's default is no limit: one 100 MiB
#: header was read whole). Prometheus sends well under 1 KiB.
MAX_REQUEST_HEADER_BYTES = 16 * 1024
#: No route takes a body; cheroot would otherwise read a declared body whole to skip it.
MAX_REQUEST_BODY_BYTES = 4 * 1024
#: How long the answer to a refused credential is held back, and how many answers may
#: be held at once. A client looping on a wrong password sends at most one request
#: per delay on each connection, so a flood of them, answered quickly, cannot take
#: the CPU (and the GIL) from a real scrape; a held answer costs a sleeping thread.
AUTH_FAILURE_DELAY_S = 0.5
AUTH_HELD_MAX = 24
#: cheroot's worker threads (it never grows its pool by itself): the held answers at
#: most, and as many again for everything else.
SERVER_THREADS = 2 * AUTH_HELD_MAX

_LANDING = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>xvirt exporter</title></head>
<body>
<h1>xvirt exporter</h1>
<p>Prometheus metrics of one Xen-style host's domains: <a href="metrics">/metrics</a>.</p>
<p>xvirt {version}</p>
</body>
</html>
"""


class HandlerCounts:
    """Requests of ``/metrics`` answered, by HTTP status code, and those being answered
    (what Go exporters serve as ``promhttp_metric_handler_requests_*``): a collector,
    counting what :func:`exporter_app` reports to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Present from the start, as promhttp serves them, so a rate() has its first point.
        self._codes: dict[str, int] = {"200": 0, "500": 0, "503": 0}
        self._in_flight = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self, status: str) -> None:
        code = status.split(" ", 1)[0]
        with self._lock:
            self._in_flight -= 1
            self._codes[code] = self._codes.get(code, 0) + 1

    def describe(self) -> list[Metric]:
        return self._families({}, 0)

    def collect(self) -> list[Metric]:
        with self._lock:
            codes, flying = dict(self._codes), self._in_flight
        return self._families(codes, flying)

    @staticmethod
    def _families(codes: dict[str, int], flying: int) -> list[Metric]:
        total = CounterMetricFamily("xvirt_exporter_requests", "Requests of /metrics "
                                    "answered, by HTTP status code.", labels=["code"])
        for code, count in sorted(codes.items()):
            total.add_metric([code], count)
        flight = GaugeMetricFamily("xvirt_exporter_requests_in_flight",
                                   "Requests of /metrics being answered now (this one too).")
        flight.add_metric([], flying)
        return [total, flight]


class ProcessLimits:
    """``process_virtual_memory_max_bytes`` (RLIMIT_AS; -1 when unlimited), which Go
    exporters serve beside the ``process_*`` families prometheus_client serves too."""

    def describe(self) -> list[Metric]:
        return self.collect()

    def collect(self) -> list[Metric]:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        family = GaugeMetricFamily("process_virtual_memory_max_bytes",
                                   "Maximum amount of virtual memory available in bytes.")
        family.add_metric([], -1.0 if soft == resource.RLIM_INFINITY else float(soft))
        return [family]


#: prometheus_client's float formatting (Go's), typed.
_go_float: Callable[[float], str] = floatToGoString


class _Collected:
    """Families already collected, as a collector: handed to ``generate_latest`` without
    asking the host again."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def generate_text(registry: CollectorRegistry) -> bytes:
    """The text format (0.0.4) of ``registry``, byte for byte what prometheus_client's
    ``generate_latest`` writes, about four times faster: a set of labels is formatted
    once per scrape, not once per series (a domain's ``uuid`` and ``name`` label some
    thirty series). The scrape holds the garbage collector off until its samples are
    gone (see ``gc_paused``). A family of a type the exporter does not serve
    (histograms, summaries...) makes it hand the whole scrape to ``generate_latest``."""
    with gc_paused():  # until the scrape's 150,000 samples are gone (at 5000 domains)
        return _text(registry)


def _text(registry: CollectorRegistry) -> bytes:
    """:func:`generate_text`'s work, whose objects all go when it returns."""
    metrics = list(registry.collect())
    out: list[str] = []
    labelstrs: dict[int, str] = {}  # by the labels dict: the families hold them all
    for metric in metrics:
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name, kind = name + "_info", "gauge"
        elif kind != "gauge":
            return generate_latest(_Collected(metrics))
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for sample in metric.samples:
            if sample.timestamp is not None or sample.name not in (name, metric.name):
                return generate_latest(_Collected(metrics))
            labels = labelstrs.get(id(sample.labels))
            if labels is None:
                pairs = sorted(sample.labels.items())
                labels = ("{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"
                          if pairs else "")
                labelstrs[id(sample.labels)] = labels
            out.append(f"{sample.name}{labels} {_go_float(sample.value)}\n")
    return "".join(out).encode()


def _wants_text(accept: str | None) -> bool:
    """Whether the client takes the text format: no Accept, or one that names
    ``text/plain`` or anything (``*/*``). Prometheus names both formats: it gets text,
    the cheaper to write for the same samples."""
    if not accept:
        return True
    kinds = {part.split(";")[0].strip() for part in accept.split(",")}
    return bool(kinds & {"text/plain", "*/*", "text/*"})


def exporter_app(registry: CollectorRegistry, auth: BasicAuth | None = None, *,
                 failure_delay_s: float = AUTH_FAILURE_DELAY_S,
                 held_max: int = AUTH_HELD_MAX,
                 counts: HandlerCounts | None = None) -> WSGIApplication:
    """``/metrics`` from ``registry``, a landing page at ``/``, 404 elsewhere; every
    path needs valid credentials when ``auth`` is given, and the answer to refused
    ones is held back ``failure_delay_s`` (at most ``held_max`` at once; past that,
    answered at once). ``counts`` hears of every request of ``/metrics``. The text
    format is written by :func:`generate_text`; OpenMetrics, for a client that takes
    only that, by prometheus_client."""
    openmetrics = make_wsgi_app(registry)

    def served(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or not _wants_text(environ.get("HTTP_ACCEPT")):
            result: Iterable[bytes] = openmetrics(environ, start_response)
            return result
        body = generate_text(registry)
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if "gzip" in (environ.get("HTTP_ACCEPT_ENCODING") or ""):
            body = gzip.compress(body, compresslevel=1)  # fast: a scrape's CPU is the host's
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    def metrics(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if counts is None:
            result: Iterable[bytes] = served(environ, start_response)
            return result
        counts.started()
        status = ["500 Internal Server Error"]

        def seen(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code
            return start_response(code, headers, exc_info)

        try:
            body = list(served(environ, seen))  # the scrape runs here, counted in flight
        finally:
            counts.finished(status[0])
        return body
    landing = _LANDING.format(version=html.escape(xvirt.__version__)).encode()
    held = threading.BoundedSemaphore(held_max)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        verdict = Verdict.OK if auth is None else auth.verdict(environ.get("HTTP_AUTHORIZATION"))
        if verdict is not Verdict.OK and failure_delay_s > 0 and held.acquire(blocking=False):
            try:
                time.sleep(failure_delay_s)  # sleeping: no CPU, and the GIL released
            finally:
                held.release()
        if verdict is Verdict.BUSY:
            return _plain(start_response, "429 Too Many Requests", b"Too Many Requests\n",
                          [("Retry-After", "1")])
        if verdict is not Verdict.OK:
            return _plain(start_response, "401 Unauthorized", b"Unauthorized\n",
                          [("WWW-Authenticate", 'Basic realm="xvirt exporter", charset="UTF-8"')])
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            if environ.get("REQUEST_METHOD") == "HEAD":
                return _head_as_get(metrics, environ, start_response)
            return metrics(environ, start_response)
        if path != "/":
            return _plain(start_response, "404 Not Found", b"Not Found\n")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"Method Not Allowed\n",
                          [("Allow", "GET, HEAD")])
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(landing)))])
        return [landing]

    def head_without_body(environ: WSGIEnvironment,
                          start_response: StartResponse) -> Iterable[bytes]:
        """cheroot sends whatever the app returns, even to HEAD, which would corrupt
        the next answer on a kept-alive connection: HEAD gets the headers only."""
        body = app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return body
        close = getattr(body, "close", None)
        if close is not None:
            close()
        return []

    return head_without_body


def _head_as_get(app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> list[bytes]:
    """HEAD answered as the GET it stands for (prometheus_client's app refuses HEAD):
    the same status and headers, with the length of the body it leaves out, so the
    connection stays usable (cheroot closes one whose HEAD answer has no length)."""
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.append((status, list(headers)))
        return lambda data: None

    body = app({**environ, "REQUEST_METHOD": "GET"}, capture)
    try:
        size = sum(len(chunk) for chunk in body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = answer[-1]
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(size)))
    start_response(status, headers)
    return []


def _plain(start_response: StartResponse, status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *(extra or [])])
    return [body]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"--listen expects HOST:PORT (e.g. {DEFAULT_LISTEN}), not {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class Exporter:
    """One host's exporter: ``start()`` binds and serves on a thread, ``stop()`` ends it.

    Nothing is asked of the host until the first scrape, so an unreachable host
    never stops the exporter from starting: it serves ``xvirt_up 0`` and reconnects
    on later scrapes.
    """

    def __init__(self, uri: str | None, *, listen: tuple[str, int] = ("127.0.0.1", 0),
                 scrape_timeout_s: float = DEFAULT_SCRAPE_TIMEOUT_S,
                 web_config: WebConfig | None = None, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None,
                 opener: Callable[[str | None], xvirt.Connection] | None = None,
                 auth_failure_delay_s: float = AUTH_FAILURE_DELAY_S,
                 collect: Iterable[str] = ALL_COLLECTORS) -> None:
        config = web_config or WebConfig()
        # The statistics' own deadline, well within the scrape's: a read that waits on a
        # guest that does not answer still ends in time to serve the others.
        stats_timeout_s = STATS_SHARE_OF_SCRAPE * scrape_timeout_s
        self.reader = HostReader(uri, collect=collect, log=log,
                                 stats_timeout_s=stats_timeout_s) if opener is None else (
            HostReader(uri, opener, collect=collect, log=log, stats_timeout_s=stats_timeout_s))
        self.runner = SurveyRunner(self.reader.read, clock=clock)
        self.registry = CollectorRegistry()
        self.registry.register(
            XvirtCollector(self.runner, timeout_s=scrape_timeout_s, clock=clock, log=log))
        # The exporter process's own figures, as every exporter serves them.
        ProcessCollector(registry=self.registry)
        self.registry.register(ProcessLimits())
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        #: Requests of /metrics by status code, and in flight.
        self.requests = HandlerCounts()
        self.registry.register(self.requests)
        self.scheme = "https" if config.tls is not None else "http"
        auth = BasicAuth(config.users) if config.users else None
        #: The basic-auth check (None without users); its counters say what failed
        #: logins cost (bcrypt checks run, failures remembered, 429s).
        self.auth = auth
        app = exporter_app(self.registry, auth, failure_delay_s=auth_failure_delay_s,
                           counts=self.requests)
        self._server = wsgi.Server(listen, app, numthreads=SERVER_THREADS,
                                   max=SERVER_THREADS, server_name="xvirt-exporter")
        self._server.max_request_header_size = MAX_REQUEST_HEADER_BYTES
        self._server.max_request_body_size = MAX_REQUEST_BODY_BYTES
        if config.tls is not None:
            self._server.ssl_adapter = ssl_adapter(config.tls)  # WebConfigError: at once
        self._thread: threading.Thread | None = None

    def start(self) -> Exporter:
        """Bind (OSError if the address is taken) and serve on a background thread."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="xvirt-exporter",
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}/"

    def stop(self) -> None:
        """Stop serving, then drop the connection unless a read is still stuck on it
        (its daemon thread dies with the process)."""
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.runner.close(self.reader.close)

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _fail(message: str) -> NoReturn:
    """As the other commands: one ``error:`` line on stderr, exit status 1."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    raise click.exceptions.Exit(1)


def _os_reason(exc: OSError) -> str:
    """The system's words: cheroot wraps bind errors in a message of its own."""
    if exc.strerror:
        return exc.strerror
    found = re.findall(r"\[Errno \d+\] ([^)]*)", str(exc))
    return found[-1] if found else str(exc)


def _log(message: str) -> None:
    click.echo(f"xvirt exporter: {message}", err=True)


@click.command("exporter")
@click.option("-c", "--connect", "--uri", "uri", metavar="URI", default=None,
              help="Host to export [default: $XVIRT_DEFAULT_URI, $LIBVIRT_DEFAULT_URI, "
                   "sim:///default].")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve HTTP (port 0 picks a free one).")
@click.option("--scrape-timeout", type=float, default=DEFAULT_SCRAPE_TIMEOUT_S,
              show_default=True, metavar="SECONDS",
              help="Answer xvirt_up 0 when the host has not answered within this time.")
@click.option("--web-config-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, metavar="FILE",
              help="TLS and basic auth, in the format of Prometheus' exporter-toolkit.")
@click.option("--collect", default="all", show_default=True, metavar="LIST",
              help="What to read besides each domain's info, comma-separated: "
                   f"{', '.join(ALL_COLLECTORS)} (defined: one control-plane request "
                   "per scrape), or all.")
def exporter_command(uri: str | None, listen: str, scrape_timeout: float,
                     web_config_file: Path | None, collect: str) -> None:
    """Serve the host's domains as Prometheus metrics at /metrics (read-only).

    Every scrape reads the host once, with a deadline: one survey with the statistics
    groups collected; a domain whose figures cannot all be read is reported by
    xvirt_domain_scrape_error, and a host that cannot be read by xvirt_up 0. Stop
    with SIGTERM or Ctrl-C.
    """
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--listen'") from None
    try:
        collected = parse_collect(collect)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--collect'") from None
    if not 0 < scrape_timeout <= 3600:  # also refuses NaN and inf (the timers overflow)
        raise click.BadParameter(f"positive, at most 3600 s, not {scrape_timeout:g}",
                                 param_hint="'--scrape-timeout'")
    try:
        config = load_web_config(web_config_file) if web_config_file else WebConfig()
        exporter = Exporter(uri, listen=address, scrape_timeout_s=scrape_timeout,
                            web_config=config, log=_log, collect=collected)
    except WebConfigError as exc:
        _fail(str(exc))
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, finish) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            exporter.start()
        except OSError as exc:
            reason = _os_reason(exc)
            _fail(f"cannot listen on {listen}: {reason[:1].lower()}{reason[1:]}")
        shown = uri or xvirt.default_uri()  # what open(None) opens
        _log(f"serving {exporter.url}metrics for {shown}")
        done.wait()
        _log("stopping")
    finally:
        exporter.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
