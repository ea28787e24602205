"""``xvirt bench``: the 2006 experiment on your own host, in one command.

The measuring is :mod:`xvirt.tools.bench_run`; this module parses options,
shows progress on stderr (a bar on a terminal, a line per finished run
otherwise; ``XVIRT_NO_PROGRESS=1`` silences it), prints the report (within
:data:`REPORT_WIDTH` columns) or JSON and draws the plot (matplotlib, from the
``bench`` extra): lines against the domain count, bars for a single count.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import click

import xvirt
from xvirt.tools.bench_run import Cell, Mode, hosts_for, run
from xvirt.tools.common import URI_META_KEY, fail

__all__ = ["REPORT_WIDTH", "LineProgress", "Progress", "bench_command", "parse_counts", "plot",
           "ratio_text", "render"]

_MAX_DOMAINS = 0x7FF0  # Domain-0 and every guest ID Xen can give
#: The report's lines keep within this many columns (a terminal, a Markdown code block).
REPORT_WIDTH = 100
#: The report table's columns after the mode: heading, alignment (``>`` right).
_COLUMNS = (("requests", ">"), ("data calls", ">"), ("seconds: median (min-max)", "<"),
            ("wrong answers", ">"))


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


def _wrap(text: str, indent: str = "") -> list[str]:
    """``text`` as lines of at most :data:`REPORT_WIDTH` columns, each beginning with
    ``indent`` (continuations two more)."""
    return textwrap.wrap(text, REPORT_WIDTH, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_on_hyphens=False) or [""]


def _table(cells: Sequence[Cell]) -> list[str]:
    """One size's table: a row per mode, each column as wide as its widest cell, two
    spaces apart (one when that would pass :data:`REPORT_WIDTH`)."""
    rows = [(c.mode.value, None if c.skipped else (
        f"{statistics.median(c.control_requests):g}", f"{statistics.median(c.data_calls):g}",
        _spread(c.seconds, ".3f"), _spread(c.wrong, "g"))) for c in cells]
    first = max(len("per run:"), *(len(mode) for mode, _ in rows))
    widths = [max(len(head), *(len(v[i]) for _, v in rows if v is not None))
              for i, (head, _) in enumerate(_COLUMNS)]
    gap = "  " if 2 + first + sum(widths) + 2 * len(widths) <= REPORT_WIDTH else " "

    def line(label: str, values: Sequence[str]) -> str:
        out = [f"  {label:<{first}}"]
        for value, width, (_, align) in zip(values, widths, _COLUMNS, strict=True):
            out.append(f"{value:{align}{width}}")
        return gap.join(out).rstrip()

    lines = [line("per run:", [head for head, _ in _COLUMNS])]
    for (mode, values), c in zip(rows, cells, strict=True):
        if values is None:
            lines += _wrap(f"{mode:<{first}}  skipped: {c.skipped}", "  ")
        else:
            lines.append(line(mode, values))
    return lines


def render(cells: Sequence[Cell], *, samples: int, repeats: int, latency_ms: float | None,
           churned: bool, host_label: str) -> str:
    """The report a person reads: one table per host size, then the verdict; every
    line within :data:`REPORT_WIDTH` columns."""
    latency = ("as the host answers" if latency_ms is None
               else f"{latency_ms:g} ms per request (slept by the host)")
    lines = [
        "xvirt bench: the 2006 monitoring loop, three ways",
        "the loop: list the domains, look each one up by ID, read its info, free the handle",
        *_wrap(f"host: {host_label}"),
        *_wrap(f"control plane: {latency}"),
        f"{samples} samples per run, {repeats} run{'s' * (repeats != 1)} per mode, each run "
        "a fresh client",
        *_wrap("between samples two domains swap IDs (saved, then restored the other way "
               "round)" if churned else "the host was not changed between samples"),
        "",
    ]
    for domains in sorted({c.domains for c in cells}):
        mine = [c for c in cells if c.domains == domains]
        lines.append(f"{domains} domains" + _domain0_note(mine))
        lines += _table(mine)
        lines += _wrap(_verdict(mine), "  ")
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
    """Control-plane requests and seconds per run for each mode: against the domain
    count (log-log lines) when there are several counts, as bars for a single one."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException(
            "--plot needs matplotlib: pip install 'xvirt[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = sorted({c.domains for c in cells})
    if len(sizes) == 1:
        _bars(left, right, cells)
        fig.suptitle(f"xvirt bench: the 2006 monitoring loop, three ways, "
                     f"{sizes[0]} domains{_domain0_note(cells)}")
    else:
        _lines(left, right, cells)
        fig.suptitle("xvirt bench: the 2006 monitoring loop, three ways")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise click.ClickException(f"cannot write the plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def _bars(left: Any, right: Any, cells: Sequence[Cell]) -> None:
    """One size: a bar per mode (skipped ones left out), its figure written on it, on
    linear axes (a bar's length is its figure: xvirt's is a sliver beside 2006's)."""
    shown = [c for c in cells if not c.skipped]
    labels = [c.mode.value.replace(" (", "\n(") for c in shown]
    for ax, values, label, fmt in (
            (left, [statistics.median(c.control_requests) for c in shown],
             "control-plane requests per run", "{:g}"),
            (right, [c.median_seconds for c in shown], "seconds per run (median)", "{:.3f}")):
        bars = ax.bar(range(len(shown)), values, color=[f"C{list(Mode).index(c.mode)}"
                                                         for c in shown])
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize="small")
        ax.set_xticks(range(len(shown)), labels, fontsize="small")
        ax.set_ylabel(label)
        ax.margins(y=0.12)  # room for the figures above the bars
        ax.grid(True, axis="y", alpha=0.3)


def _lines(left: Any, right: Any, cells: Sequence[Cell]) -> None:
    """Several sizes: a line per mode against the domain count, log-log."""
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


# -- progress -------------------------------------------------------------------------------


class Progress(Protocol):
    """What the bench tells a person waiting: each sample and each finished run."""

    def sample(self) -> None: ...

    def finished(self, cell: Cell) -> None: ...


class _Silent:
    def sample(self) -> None:
        pass

    def finished(self, cell: Cell) -> None:
        pass


class LineProgress:
    """A line on ``err`` per finished run (stderr is not a terminal: a log, a CI job),
    numbered against the ``runs`` planned: what ran, how long it took, how it did."""

    def __init__(self, runs: int, repeats: int) -> None:
        self._runs, self._repeats, self._done = runs, repeats, 0

    def sample(self) -> None:
        pass

    def finished(self, cell: Cell) -> None:
        what = f"{cell.domains} domains, {cell.mode.value}"
        if cell.skipped:
            self._done += self._repeats
            said = f"{what}: skipped ({cell.skipped})"
        else:
            self._done += 1
            requests = cell.control_requests[-1]
            said = (f"{what}, run {len(cell.seconds)} of {self._repeats}: "
                    f"{cell.seconds[-1]:.3f} s, {requests} request{'s' * (requests != 1)}, "
                    f"{cell.wrong[-1]} wrong")
        click.echo(f"bench: [{self._done}/{self._runs}] {said}", err=True)


class _Bar:
    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def sample(self) -> None:
        self._advance()

    def finished(self, cell: Cell) -> None:
        pass


@contextmanager
def _progress(runs: int, repeats: int, samples: int) -> Iterator[Progress]:
    """A bar on stderr when it is a terminal, a line per finished run otherwise;
    nothing with ``XVIRT_NO_PROGRESS`` set (a benchmark that keeps the report only)."""
    if os.environ.get("XVIRT_NO_PROGRESS"):
        yield _Silent()
        return
    if not sys.stderr.isatty():
        yield LineProgress(runs, repeats)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
             TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sampling", total=runs * samples)
        yield _Bar(lambda: bar.advance(task))


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
              default=None, help="Draw requests and time per mode (PNG): against the domain "
                                 "count, or as bars for a single count.")
def bench_command(uri: str | None, counts: str, samples: int, repeats: int,
                  control_latency_ms: float, max_run_seconds: float, as_json: bool,
                  plot_path: Path | None) -> None:
    """Measure what the monitoring loop costs and how often it is wrong, three ways:
    2006 mode (a control-plane request per lookup), the naive ID cache of the 2006
    patch, and xvirt's cache.

    Progress goes to stderr: a bar on a terminal, a line per finished run otherwise
    (XVIRT_NO_PROGRESS=1: none); the report or JSON to stdout.
    """
    if uri is None:  # given before the subcommand: xvirt -c URI bench
        given = click.get_current_context().find_root().meta.get(URI_META_KEY)
        uri = given if isinstance(given, str) else None
    sizes = parse_counts(counts)
    cells: list[Cell] = []
    churned = True
    host_label = ""
    latency: float | None = control_latency_ms
    try:
        planned = len(sizes) if uri is None or uri.startswith("sim:") else 1
        with _progress(planned * len(Mode) * repeats, repeats, samples) as progress:
            for host in hosts_for(uri, sizes, control_latency_ms):
                try:
                    host_label, latency = host.label, host.latency_ms
                    cells += run(host, samples=samples, repeats=repeats,
                                 max_run_s=max_run_seconds, step=progress.sample,
                                 finished=progress.finished)
                    churned = churned and host.churned
                finally:
                    host.close()
                    for path in host.left_behind:
                        click.echo(f"warning: could not delete the bench's image {path}",
                                   err=True)
    except xvirt.XvirtError as exc:
        fail(str(exc))
    if plot_path is not None:
        plot(cells, plot_path)
        click.echo(f"bench: wrote the plot to {plot_path}", err=True)
    if as_json:
        click.echo(json.dumps({"samples": samples, "repeats": repeats,
                               "control_latency_ms": latency, "host": host_label,
                               "churned": churned, "cells": [c.as_dict() for c in cells]},
                              indent=2))
    else:
        click.echo(render(cells, samples=samples, repeats=repeats, latency_ms=latency,
                          churned=churned, host_label=host_label))
