"""``xvirt exporter``: serve one host's domains to Prometheus.

The wiring: a :class:`~xvirt.tools.exporter_metrics.XvirtCollector` on its own
CollectorRegistry, served by prometheus_client's WSGI app at ``/metrics``, with a
landing page at ``/``, 404 elsewhere, and basic auth and TLS from a web config
file (:mod:`xvirt.tools.webconfig`), all on cheroot, a threaded WSGI server with
TLS. The connection is read-only: the exporter only looks.
"""

from __future__ import annotations

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
from prometheus_client import CollectorRegistry, make_wsgi_app

import xvirt
from xvirt.clock import Clock
from xvirt.tools.exporter_metrics import HostReader, SurveyRunner, XvirtCollector
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
    "exporter_app",
    "exporter_command",
    "parse_listen",
]

#: Loopback only: exposing a host's inventory to the network is a decision to make.
DEFAULT_LISTEN = "127.0.0.1:9177"
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


def exporter_app(registry: CollectorRegistry, auth: BasicAuth | None = None, *,
                 failure_delay_s: float = AUTH_FAILURE_DELAY_S,
                 held_max: int = AUTH_HELD_MAX) -> WSGIApplication:
    """``/metrics`` from ``registry``, a landing page at ``/``, 404 elsewhere; every
    path needs valid credentials when ``auth`` is given, and the answer to refused
    ones is held back ``failure_delay_s`` (at most ``held_max`` at once; past that,
    answered at once)."""
    metrics = make_wsgi_app(registry)
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
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
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
                 auth_failure_delay_s: float = AUTH_FAILURE_DELAY_S) -> None:
        config = web_config or WebConfig()
        self.reader = HostReader(uri) if opener is None else HostReader(uri, opener)
        self.runner = SurveyRunner(self.reader.read, clock=clock)
        self.registry = CollectorRegistry()
        self.registry.register(
            XvirtCollector(self.runner, timeout_s=scrape_timeout_s, clock=clock, log=log))
        self.scheme = "https" if config.tls is not None else "http"
        auth = BasicAuth(config.users) if config.users else None
        #: The basic-auth check (None without users); its counters say what failed
        #: logins cost (bcrypt checks run, failures remembered, 429s).
        self.auth = auth
        app = exporter_app(self.registry, auth, failure_delay_s=auth_failure_delay_s)
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
              help="Host to export [default: $XVIRT_DEFAULT_URI or sim:///default].")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve HTTP (port 0 picks a free one).")
@click.option("--scrape-timeout", type=float, default=DEFAULT_SCRAPE_TIMEOUT_S,
              show_default=True, metavar="SECONDS",
              help="Answer xvirt_up 0 when the host has not answered within this time.")
@click.option("--web-config-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, metavar="FILE",
              help="TLS and basic auth, in the format of Prometheus' exporter-toolkit.")
def exporter_command(uri: str | None, listen: str, scrape_timeout: float,
                     web_config_file: Path | None) -> None:
    """Serve the host's domains as Prometheus metrics at /metrics (read-only).

    Every scrape reads the host once, with a deadline; a domain that cannot be read
    is reported by xvirt_domain_scrape_error, and a host that cannot be read by
    xvirt_up 0. Stop with SIGTERM or Ctrl-C.
    """
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        _fail(str(exc))
    if not 0 < scrape_timeout <= 3600:  # also refuses NaN and inf (the timers overflow)
        _fail(f"--scrape-timeout must be positive, at most 3600 s, not {scrape_timeout:g}")
    try:
        config = load_web_config(web_config_file) if web_config_file else WebConfig()
        exporter = Exporter(uri, listen=address, scrape_timeout_s=scrape_timeout,
                            web_config=config, log=_log)
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
            _fail(f"cannot listen on {listen}: {_os_reason(exc)}")
        shown = uri or xvirt.default_uri()  # what open(None) opens
        _log(f"serving {exporter.url}metrics for {shown}")
        done.wait()
        _log("stopping")
    finally:
        exporter.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
