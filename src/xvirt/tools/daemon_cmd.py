"""``xvirt daemon``: serve one host (see xvirt.daemon.process for what it wires)."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import click

from xvirt.daemon.process import DaemonConfig, default_state_dir, run
from xvirt.errors import XvirtError
from xvirt.host.ids import POLICIES

__all__ = ["daemon_command"]


#: The daemon's own bound on --control-latency-ms (a day, xvirt.model.MAX_WAIT_S), checked
#: here too so that a bad value is a usage error (status 2) like any other bad option value.
_MAX_LATENCY_MS = 86_400_000.0
#: What the system says when a listening address cannot be had: the address is named.
_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT (e.g. 127.0.0.1:8000), not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen_option(_ctx: click.Context, _param: click.Parameter,
                   value: str | None) -> tuple[str, int] | None:
    """--listen checked as click checks a value: a bad one is a usage error naming it."""
    return None if value is None else _address(value)


def _latency_option(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    if not (math.isfinite(value) and 0 <= value <= _MAX_LATENCY_MS):
        raise click.BadParameter(
            f"a number of milliseconds in 0..{_MAX_LATENCY_MS:.0f}, not {value:g}")
    return value


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@click.command("daemon")
@click.option("--listen", metavar="HOST:PORT", callback=_listen_option,
              help="Also serve HTTP on TCP (e.g. 127.0.0.1:8000; port 0 picks a free one).")
@click.option("--unix", "unix_socket", type=click.Path(path_type=Path), metavar="PATH",
              help="Unix socket for the control plane (mode 0600) [default: STATE_DIR/xend.sock].")
@click.option("--no-unix", is_flag=True, help="Serve TCP only.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help=f"Where the host lives between runs [default: {default_state_dir()}].")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Bearer token required of mutating requests over TCP; without one, TCP "
                   "is read-only.")
@click.option("--control-latency-ms", type=float, default=0.0, show_default=True,
              callback=_latency_option,
              help="Delay every control-plane answer, to emulate 2006's xend.")
@click.option("--empty", is_flag=True, help="Start a new host with no guests (not the demo).")
@click.option("--reboot-host", is_flag=True,
              help="Reboot the host on start: a new boot identity, no guests.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True,
              help="HTTP worker threads, per listener (unix socket, TCP).")
@click.option("--connection-limit", type=click.IntRange(1, 10000), default=100,
              show_default=True,
              help="Open HTTP connections at most, per listener: TCP clients never take "
                   "the unix socket's.")
@click.option("--idle-timeout", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="Seconds before an idle connection, or one whose request is still "
                   "arriving, is closed (each listener's own).")
@click.option("--fast-idle-timeout", type=click.FloatRange(0.01, 86400), default=120.0,
              show_default=True, help="Seconds before a fast-channel client that sends "
                                      "nothing is closed (its slot freed).")
@click.option("--id-policy", type=click.Choice(POLICIES), default="sequential",
              show_default=True, help="How new domain IDs are chosen (for a new host).")
@click.option("--max-domid", type=click.IntRange(1, 0x7FEF), default=0x7FEF,
              help="Largest guest ID (small values make ID reuse frequent).")
def daemon_command(
    listen: tuple[str, int] | None, unix_socket: Path | None, no_unix: bool, state_dir: Path | None,
    token_file: Path | None, control_latency_ms: float, empty: bool, reboot_host: bool,
    workers: int, connection_limit: int, idle_timeout: int, fast_idle_timeout: float,
    id_policy: str, max_domid: int,
) -> None:
    """Serve a host: xend's HTTP control plane, the fast channel and events.

    The host outlives the daemon: stop it (SIGTERM) or kill it, start it
    again with the same --state-dir, and the same domains are there.
    """
    config = DaemonConfig(
        state_dir=state_dir or default_state_dir(), unix_socket=unix_socket, no_unix=no_unix,
        tcp=listen, token_file=token_file,
        control_latency_ms=control_latency_ms, empty=empty, reboot_host=reboot_host,
        workers=workers, connection_limit=connection_limit,
        idle_timeout_s=idle_timeout, fast_idle_timeout_s=fast_idle_timeout, id_policy=id_policy,
        max_domid=max_domid,
    )
    try:
        code = run(config)
    except XvirtError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    except OSError as exc:  # a port in use, a directory we may not write
        reason = exc.strerror or str(exc)
        if listen is not None and exc.errno in _BIND_ERRORS:  # the unix socket's name their path
            reason = f"cannot listen on {_shown(listen)}: {reason[:1].lower()}{reason[1:]}"
        click.echo(f"error: {reason}", err=True)
        raise click.exceptions.Exit(1) from None
    raise click.exceptions.Exit(code)
