"""``xvirt bench``: the 2006 experiment on your own host, in one command.

The measuring is :mod:`xvirt.tools.bench_run`; this module parses options,
shows progress (rich, on a terminal only), prints the table or JSON and draws
the plot (matplotlib, from the ``bench`` extra).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

import xvirt
from xvirt.tools.bench_run import Cell, Mode, hosts_for, run

__all__ = ["bench_command", "parse_counts", "ratio_text", "render"]

_MAX_DOMAINS = 0x7FF0  # Domain-0 and every guest ID Xen can give


def parse_counts(text: str) -> list[int]:
    """``20,200,1000`` -> [20, 200, 1000]; each a domain count the loop sees."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= _MAX_DOMAINS:
            raise click.BadParameter(
                f"{part!r} is not a domain count (a whole number 1..{_MAX_DOMAINS}, "
                "Domain-0 included)", param_hint="--domains")
        counts.append(int(part))
    return sorted(set(counts))


def _spread(values: Sequence[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return (f"{format(statistics.median(values), fmt)} "
            f"({format(min(values), fmt)}-{format(max(values), fmt)})")


def render(cells: Sequence[Cell], *, samples: int, repeats: int, latency_ms: float | None,
           churned: bool, host_label: str) -> str:
    """The report a person reads: one table per host size, then the verdict."""
    latency = ("as the host answers" if latency_ms is None
               else f"{latency_ms:g} ms per request (slept by the host)")
    lines = [
        "xvirt bench: the 2006 monitoring loop (list, look up each ID, read its info, free "
        "the handle), three ways",
        f"host: {host_label}; control plane: {latency}; {samples} samples per run, "
        f"{repeats} run{'s' * (repeats != 1)} per mode, each run a fresh client",
        ("between samples two domains swap IDs (saved, then restored the other way round)"
         if churned else "the host was not changed between samples"),
        "",
    ]
    for domains in sorted({c.domains for c in cells}):
        mine = [c for c in cells if c.domains == domains]
        lines.append(f"{domains} domains" + _domain0_note(mine))
        lines.append(f"  {'per run:':<34} {'requests':>9} {'data calls':>11}  "
                     f"{'seconds: median (min-max)':<28} {'wrong answers':>13}")
        for c in mine:
            if c.skipped:
                lines.append(f"  {c.mode.value:<34} skipped: {c.skipped}")
                continue
            lines.append(
                f"  {c.mode.value:<34} {statistics.median(c.control_requests):>9g} "
                f"{statistics.median(c.data_calls):>11g}  {_spread(c.seconds, '.3f'):<28} "
                f"{_spread(c.wrong, 'g'):>13}")
        lines.append("  " + _verdict(mine))
        lines.append("")
    return "\n".join(lines)


def _domain0_note(cells: Sequence[Cell]) -> str:
    """`` (Domain-0 included)`` only where the host has one: QEMU and libvirt's test
    driver have none, and saying so there would miscount their guests."""
    return " (Domain-0 included)" if any(c.domain0 for c in cells) else ""


def ratio_text(old_s: float, new_s: float) -> str:
    """How ``new_s`` compares with ``old_s``: "N.Nx faster" or "N.Nx slower" (a
    slower result is never worded as a speed-up, however small the difference)."""
    if new_s <= old_s:
        return f"{old_s / new_s:.1f}x faster"
    return f"{new_s / old_s:.1f}x slower"


def _verdict(cells: Sequence[Cell]) -> str:
    by = {c.mode: c for c in cells if not c.skipped}
    said = []
    ours = by.get(Mode.XVIRT)
    old = by.get(Mode.Y2006)
    if (ours is not None and old is not None and ours.median_seconds > 0
            and old.median_seconds > 0):
        said.append(f"xvirt's cache is {ratio_text(old.median_seconds, ours.median_seconds)} "
                    f"than 2006 mode with "
                    f"{statistics.median(old.control_requests):g} -> "
                    f"{statistics.median(ours.control_requests):g} requests per run")
    naive = by.get(Mode.NAIVE)
    if naive is not None:
        runs = len(naive.wrong)
        said.append(f"the naive ID cache gave {sum(naive.wrong)} wrong answer"
                    f"{'s' * (sum(naive.wrong) != 1)} in {runs} run{'s' * (runs != 1)}")
    if ours is not None:
        said.append(f"xvirt gave {sum(ours.wrong)}")
    return "; ".join(said) + "." if said else ""


def plot(cells: Sequence[Cell], path: Path) -> None:
    """Requests and seconds per run against domain count, one line per mode."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException(
            "--plot needs matplotlib: pip install 'xvirt[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, marker in zip(Mode, "s^o", strict=True):
        mine = sorted((c for c in cells if c.mode is mode and not c.skipped),
                      key=lambda c: c.domains)
        if not mine:
            continue
        xs = [c.domains for c in mine]
        left.plot(xs, [statistics.median(c.control_requests) for c in mine], marker + "-",
                  label=mode.value)
        right.plot(xs, [c.median_seconds for c in mine], marker + "-", label=mode.value)
    for ax, label in ((left, "control-plane requests per run"),
                      (right, "seconds per run (median)")):
        ax.set_xscale("log")
        ax.set_yscale("log")  # a fresh client always asks at least once
        ax.set_xlabel("domains" + _domain0_note(cells))
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize="small")
    fig.suptitle("xvirt bench: the 2006 monitoring loop, three ways")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise click.ClickException(f"cannot write the plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


@contextmanager
def _progress(total: int, shown: bool) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    if not shown:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sampling", total=total)
        yield lambda: bar.advance(task)


@click.command("bench")
@click.option("-c", "--connect", "--uri", "uri", metavar="URI", default=None,
              help="Host to measure [default: embedded hosts made for the run, one per "
                   "--domains count]. On another host its domains are used as they are.")
@click.option("--domains", "counts", default="20", show_default=True, metavar="N[,N...]",
              help="Domain counts for embedded hosts (Domain-0 included).")
@click.option("--samples", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Samples per run.")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Runs per mode, each with a fresh client.")
@click.option("--control-latency-ms", type=click.FloatRange(0, 10_000), default=50.0,
              show_default=True, help="What a control-plane request costs on embedded hosts "
                                      "(2006's xend: about 50 ms).")
@click.option("--max-run-seconds", type=click.FloatRange(0.1), default=120.0,
              show_default=True,
              help="Skip a 2006-mode run that would sleep longer than this in latency alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Draw requests and time per mode against domain count.")
def bench_command(uri: str | None, counts: str, samples: int, repeats: int,
                  control_latency_ms: float, max_run_seconds: float, as_json: bool,
                  plot_path: Path | None) -> None:
    """Measure what the monitoring loop costs and how often it is wrong, three ways:
    2006 mode (a control-plane request per lookup), the naive ID cache of the 2006
    patch, and xvirt's cache."""
    sizes = parse_counts(counts)
    cells: list[Cell] = []
    churned = True
    host_label = ""
    latency: float | None = control_latency_ms
    try:
        planned = len(sizes) if uri is None or uri.startswith("sim:") else 1
        with _progress(planned * len(Mode) * repeats * samples,
                       sys.stderr.isatty() and not os.environ.get("XVIRT_NO_PROGRESS")) as step:
            for host in hosts_for(uri, sizes, control_latency_ms):
                try:
                    host_label, latency = host.label, host.latency_ms
                    cells += run(host, samples=samples, repeats=repeats,
                                 max_run_s=max_run_seconds, step=step)
                    churned = churned and host.churned
                finally:
                    host.close()
                    for path in host.left_behind:
                        click.echo(f"warning: could not delete the bench's image {path}",
                                   err=True)
    except xvirt.XvirtError as exc:
        from xvirt.tools.cli import _fail

        _fail(str(exc))
    if plot_path is not None:
        plot(cells, plot_path)
    if as_json:
        click.echo(json.dumps({"samples": samples, "repeats": repeats,
                               "control_latency_ms": latency, "host": host_label,
                               "churned": churned, "cells": [c.as_dict() for c in cells]},
                              indent=2))
    else:
        click.echo(render(cells, samples=samples, repeats=repeats, latency_ms=latency,
                          churned=churned, host_label=host_label))

