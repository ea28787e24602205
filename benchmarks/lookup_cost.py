"""What a monitoring loop costs with xvirt, measured, and written to docs/benchmarks.md.

Two questions, both answered in one run so the numbers sit side by side:

(a) How much does one sample of the monitoring loop of DESIGN.md ("The
    problem") cost per domain on the embedded host, and does that cost stay
    flat as the host grows from 20 to 5000 guests?  A cache whose per-domain
    cost grew with N would make large hosts unmonitorable at a few-second
    period, so flatness is the claim worth checking.
(b) The 2006 comparison: 20 guests, 5 samples, 50 ms per control-plane
    request (really slept). xvirt's cache against a client that resolves every
    lookup over the control plane, as libvirt's Xen driver did in 2006. The
    request counts are read from counters, never assumed, because the point of
    C5 is an exact count.

Only the public API (``xvirt.open`` and what it returns) is timed for xvirt;
``xvirt.sim.Host`` builds the hosts. The 2006 client talks to a bare
``EmbeddedDriver`` (no cache) because that is exactly "a client without xvirt's
cache"; it is not a public surface and is used only as the baseline.

Run from the repository root::

    .venv/bin/python benchmarks/lookup_cost.py            # the real run
    .venv/bin/python benchmarks/lookup_cost.py --quick    # a smoke run

Nothing in the output is hard-coded: every number comes from this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import xvirt
from xvirt.drivers.embedded import EmbeddedDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
REPORT = DOCS / "benchmarks.md"
PLOT = DOCS / "benchmarks" / "lookup_cost.png"

#: (guests, timed repeats). Fewer repeats at 5000 because one sample is ~100x
#: longer there, so each repeat already averages over many lookups.
FULL_SIZES: tuple[tuple[int, int], ...] = ((20, 15), (200, 15), (1000, 11), (5000, 7))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((20, 3), (200, 3))

#: The 2006 scenario of DESIGN.md: 20 guests x 5 samples at 50 ms per request.
LEGACY_GUESTS = 20
LEGACY_SAMPLES = 5
LEGACY_LATENCY_MS = 50.0


# -- measurements ----------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median with min and max: the median resists the odd GC pause or
    scheduler hiccup, and min/max show how much those happened."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.low * factor, self.high * factor)


@dataclass(frozen=True)
class SizeResult:
    """Part (a) at one host size."""

    guests: int
    domains: int  # per sample: the guests plus Domain-0
    repeats: int
    sample_s: Spread  # wall time of one whole sample
    per_domain_s: Spread  # the same, divided by the domains in the sample
    lookup_s: Spread  # lookup_by_id alone, per call
    timed_control_requests: int  # during the timed samples; C5 says 0


@dataclass(frozen=True)
class ClientResult:
    """One client of part (b): what it sent and how long it took."""

    control_requests: int
    data_calls: int
    wall_s: float
    domains_seen: int


@dataclass(frozen=True)
class LegacyComparison:
    """Part (b): xvirt and the 2006 client on the same host, same run."""

    guests: int
    samples: int
    latency_ms: float
    xvirt: ClientResult
    legacy: ClientResult


def _host(name: str, guests: int) -> xvirt.sim.Host:
    """A quiet host (no demo churn) with ``guests`` running guests.

    ``max_domid`` leaves room above the guests so the ID space is never the
    limit; churn is not wanted here, identical samples are.
    """
    host = xvirt.sim.Host(name, max_domid=max(64, 2 * guests))
    try:
        for i in range(guests):
            host.create(f"g{i}")
    except BaseException:
        host.close()
        raise
    return host


def _unique(label: str) -> str:
    """Host names are a process-wide registry; make ours collision-free."""
    return f"bench-{label}-{os.getpid()}-{time.monotonic_ns()}"


def monitoring_sample(conn: xvirt.Connection) -> int:
    """The loop of DESIGN.md, verbatim in spirit; returns how many domains it saw."""
    ids = conn.list_domain_ids()
    for i in ids:
        d = conn.lookup_by_id(i)
        d.info()
        d.close()
    return len(ids)


@dataclass
class _Rig:
    """One host size under test: its host, its connection and what was timed."""

    guests: int
    repeats: int
    host: xvirt.sim.Host
    conn: xvirt.Connection
    domains: int = 0
    control_before: int = 0
    samples: list[float] = field(default_factory=list)
    lookups: list[float] = field(default_factory=list)


def measure_sizes(sizes: Sequence[tuple[int, int]]) -> list[SizeResult]:
    """Part (a): every size warmed once, then timed round-robin.

    Interleaving the sizes (one sample of each per round, not all repeats of
    one size then the next) matters on a shared or virtual machine: a burst
    of noise lasting a second or two then lands on every size alike instead of
    making one size look slower, which is the very trend we are looking for.
    """
    rigs: list[_Rig] = []
    try:
        for guests, repeats in sizes:
            host = _host(_unique(f"a{guests}"), guests)
            try:
                conn = xvirt.open(host.uri)
            except BaseException:
                host.close()
                raise
            rigs.append(_Rig(guests, repeats, host, conn))
        for rig in rigs:
            rig.domains = monitoring_sample(rig.conn)  # warm: the one resolve happens here
            if rig.domains != rig.guests + 1:
                raise RuntimeError(
                    f"expected {rig.guests + 1} domains, the host listed {rig.domains}"
                )
            rig.control_before = rig.conn.stats().control_requests
        rounds = max(rig.repeats for rig in rigs)
        for r in range(rounds):
            for rig in rigs:
                if r < rig.repeats:
                    t0 = time.perf_counter()
                    seen = monitoring_sample(rig.conn)
                    rig.samples.append(time.perf_counter() - t0)
                    if seen != rig.domains:
                        raise RuntimeError(f"the domain set changed: {rig.domains} -> {seen}")
        ids = {rig.guests: rig.conn.list_domain_ids() for rig in rigs}
        for r in range(rounds):
            for rig in rigs:
                if r < rig.repeats:
                    t0 = time.perf_counter()
                    for i in ids[rig.guests]:
                        rig.conn.lookup_by_id(i)
                    rig.lookups.append((time.perf_counter() - t0) / len(ids[rig.guests]))
        results: list[SizeResult] = []
        for rig in rigs:
            sample = Spread.of(rig.samples)
            results.append(
                SizeResult(
                    guests=rig.guests,
                    domains=rig.domains,
                    repeats=rig.repeats,
                    sample_s=sample,
                    per_domain_s=sample.scaled(1.0 / rig.domains),
                    lookup_s=Spread.of(rig.lookups),
                    timed_control_requests=rig.conn.stats().control_requests
                    - rig.control_before,
                )
            )
        return results
    finally:
        for rig in rigs:
            rig.conn.close()
            rig.host.close()


class Client2006:
    """A client without an identity cache: every lookup by ID is one
    control-plane request, as libvirt's Xen driver made one xend request per
    ``virDomainLookupByID`` in 2006. Talks to a driver directly because a
    Connection would put xvirt's cache in the way."""

    def __init__(self, driver: EmbeddedDriver) -> None:
        self.driver = driver

    def sample(self) -> int:
        """One monitoring sample: list, then resolve and read each domain."""
        ids = [d.id for d in self.driver.list_all().domains]  # 1 control request
        for i in ids:
            answer = self.driver.resolve(ids=[i])  # 1 control request per domain
            if not answer.domains:
                continue  # gone between the list and the lookup
            self.driver.info_by_id(i)  # 1 data-plane call
        return len(ids)


def compare_2006(guests: int, samples: int, latency_ms: float) -> LegacyComparison:
    """Part (b): the same host, the same samples, xvirt first then the 2006 client.

    Both pay the latency really (the system clock sleeps), so the wall times
    are what a user would wait.
    """
    host = _host(_unique("b"), guests)
    try:
        with xvirt.open(f"{host.uri}?control_latency_ms={latency_ms:g}") as conn:
            start = conn.stats()
            t0 = time.perf_counter()
            seen = 0
            for _ in range(samples):
                seen += monitoring_sample(conn)
            wall = time.perf_counter() - t0
            end = conn.stats()
        ours = ClientResult(
            control_requests=end.control_requests - start.control_requests,
            data_calls=end.data_calls - start.data_calls,
            wall_s=wall,
            domains_seen=seen,
        )

        driver = EmbeddedDriver(xvirt.sim._model_of(host), uri=host.uri,
                                control_latency_ms=latency_ms)
        client = Client2006(driver)
        t0 = time.perf_counter()
        seen = 0
        for _ in range(samples):
            seen += client.sample()
        wall = time.perf_counter() - t0
        legacy = ClientResult(
            control_requests=driver.counters.control_requests,
            data_calls=driver.counters.data_calls,
            wall_s=wall,
            domains_seen=seen,
        )
        driver.close()
    finally:
        host.close()
    return LegacyComparison(guests, samples, latency_ms, ours, legacy)


# -- report ----------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    """The command as typed from the repository root, so a reader can rerun it."""
    exe = Path(sys.executable)
    try:
        shown = f"{exe.relative_to(REPO)}"
    except ValueError:
        shown = str(exe)
    script = Path(argv[0]).resolve()
    try:
        script_shown = f"{script.relative_to(REPO)}"
    except ValueError:
        script_shown = str(script)
    return shlex.join([shown, script_shown, *argv[1:]])


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def plot(results: Sequence[SizeResult], path: Path) -> None:
    """Per-domain cost against host size; flat lines mean the cache scales."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and no surprise backend in CI
    import matplotlib.pyplot as plt

    xs = [r.guests for r in results]

    def series(spreads: list[Spread]) -> tuple[list[float], list[list[float]]]:
        med = [s.median * 1e6 for s in spreads]
        err = [
            [(s.median - s.low) * 1e6 for s in spreads],
            [(s.high - s.median) * 1e6 for s in spreads],
        ]
        return med, err

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    med, err = series([r.per_domain_s for r in results])
    ax.errorbar(xs, med, yerr=err, marker="o", capsize=4,
                label="whole sample per domain (list + lookup_by_id + info)")
    for x, y in zip(xs, med, strict=True):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(7, 3),
                    ha="left", fontsize=8)
    med, err = series([r.lookup_s for r in results])
    ax.errorbar(xs, med, yerr=err, marker="s", capsize=4, label="lookup_by_id alone, per call")
    ax.set_xscale("log")
    ax.margins(x=0.08)  # room for the value labels at the ends
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("guests on the host (log scale; each sample also covers Domain-0)")
    ax.set_ylabel("microseconds per domain")
    ax.set_title("xvirt monitoring cost on the embedded sim host\n(median, bars: min-max)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def render(
    results: Sequence[SizeResult],
    legacy: LegacyComparison,
    *,
    command: str,
    quick: bool,
    problems: Sequence[str],
) -> str:
    """The Markdown report; every figure in it is an argument."""
    ours, old = legacy.xvirt, legacy.legacy
    domains = old.domains_seen // legacy.samples if legacy.samples else 0
    lines = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/lookup_cost.py`.",
        "",
        "What a monitoring loop costs with xvirt, on the embedded `sim` host (in process,",
        "so this measures xvirt's own overhead: cache, driver interface and host model,",
        "with no socket or daemon in the way). The loop is the one of DESIGN.md:",
        "",
        "```python",
        "ids = conn.list_domain_ids()",
        "for i in ids:",
        "    d = conn.lookup_by_id(i); d.info(); d.close()",
        "```",
        "",
    ]
    if quick:
        lines += ["> **Smoke run (`--quick`)**: fewer sizes and repeats; do not quote these.", ""]
    if problems:
        lines += ["> **Problems found in this run:**", ">"]
        lines += [f"> - {p}" for p in problems]
        lines += [""]
    lines += [
        "## Machine and command",
        "",
        f"- CPUs (`os.cpu_count()`): {os.cpu_count()}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- Platform: `{platform.platform()}`",
        f"- Run at: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command (from the repository root): `{command}`",
        "",
        "Timing is `time.perf_counter()` around whole samples, garbage collector left on",
        "(as in a real monitor). Each figure is the median over the repeats, with the",
        "min-max range beside it.",
        "",
        "## (a) Per-lookup cost against host size",
        "",
        "One host and connection per size, each warmed by one sample (it makes the",
        "connection's single control-plane request that names every domain); then the",
        "timed samples, round-robin across sizes so that machine noise hits all alike.",
        "Per-domain cost = sample wall time / domains in the sample, so it includes each",
        "domain's share of the `list_domain_ids()` snapshot. `lookup_by_id` alone is",
        "timed separately over the same IDs, per call.",
        "",
        "| guests | domains / sample | repeats | sample wall time, ms: median (min-max) "
        "| per domain, us: median (min-max) | `lookup_by_id` alone, us: median (min-max) "
        "| control requests in timed samples |",
        "|---:|---:|---:|---|---|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.guests} | {r.domains} | {r.repeats} "
            f"| {_ms(r.sample_s.median)} ({_ms(r.sample_s.low)}-{_ms(r.sample_s.high)}) "
            f"| {_us(r.per_domain_s.median)} "
            f"({_us(r.per_domain_s.low)}-{_us(r.per_domain_s.high)}) "
            f"| {_us(r.lookup_s.median)} ({_us(r.lookup_s.low)}-{_us(r.lookup_s.high)}) "
            f"| {r.timed_control_requests} |"
        )
    if len(results) >= 2:
        first, last = results[0], results[-1]
        growth = last.per_domain_s.median / first.per_domain_s.median
        lines += [
            "",
            f"Per-domain cost at {last.guests} guests is {growth:.2f}x that at "
            f"{first.guests} guests (medians).",
        ]
    lines += [
        "",
        f"![per-domain cost against host size]({PLOT.relative_to(DOCS).as_posix()})",
        "",
        "## (b) The 2006 comparison",
        "",
        f"{legacy.guests} guests (+ Domain-0 = {domains} domains), {legacy.samples} samples,"
        f" {legacy.latency_ms:g} ms per control-plane request,",
        "really slept. Both clients run the same samples against the same host in this run.",
        "",
        f"- **xvirt**: `xvirt.open(\"sim:///NAME?control_latency_ms={legacy.latency_ms:g}\")`",
        "  and the loop above; requests read from `conn.stats()`.",
        "- **2006 client** (in `benchmarks/lookup_cost.py`): no cache. Per sample one",
        "  `list_all()` request for the IDs, then per domain one `resolve(ids=[i])` request",
        "  and one `info_by_id(i)` data call; requests read from the driver's counters.",
        "",
        "| client | control-plane requests | data-plane calls | wall time, s |",
        "|---|---:|---:|---:|",
        f"| xvirt | {ours.control_requests} | {ours.data_calls} | {ours.wall_s:.3f} |",
        f"| 2006 client | {old.control_requests} | {old.data_calls} | {old.wall_s:.3f} |",
        "",
    ]
    req_ratio = (
        f"{old.control_requests / ours.control_requests:.0f}x"
        if ours.control_requests
        else "n/a (xvirt sent none)"
    )
    lines += [
        f"Ratio (2006 / xvirt): {req_ratio} the control-plane requests, "
        f"{old.wall_s / ours.wall_s:.0f}x the wall time.",
        "",
        f"The 2006 client's count is {legacy.samples} x (1 list + {domains} lookups) = "
        f"{legacy.samples * (1 + domains)} by construction.",
        "DESIGN.md's \"101\" is 20 lookups x 5 samples + 1 listing, leaving out Domain-0",
        "and the per-sample listings; either way it is one slow request per domain per",
        "sample, against xvirt's one request in total (C5).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes and repeats: a smoke run"
    )
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES

    results = measure_sizes(sizes)
    for r in results:
        print(
            f"(a) {r.guests:5d} guests: sample {_ms(r.sample_s.median)} ms, "
            f"per domain {_us(r.per_domain_s.median)} us, "
            f"lookup_by_id {_us(r.lookup_s.median)} us",
            flush=True,
        )

    legacy = compare_2006(LEGACY_GUESTS, LEGACY_SAMPLES, LEGACY_LATENCY_MS)
    print(
        f"(b) xvirt {legacy.xvirt.control_requests} requests {legacy.xvirt.wall_s:.3f} s; "
        f"2006 client {legacy.legacy.control_requests} requests {legacy.legacy.wall_s:.3f} s",
        flush=True,
    )

    # C5 is a contract, not a hope: say so loudly in the report if it was broken.
    problems: list[str] = []
    if legacy.xvirt.control_requests != 1:
        problems.append(
            f"xvirt sent {legacy.xvirt.control_requests} control-plane requests for "
            f"{legacy.samples} samples; C5 says exactly 1."
        )
    for r in results:
        if r.timed_control_requests:
            problems.append(
                f"{r.timed_control_requests} control-plane requests during steady-state "
                f"samples at {r.guests} guests; C5 says 0."
            )

    plot(results, PLOT)
    command = _command([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    text = render(results, legacy, command=command, quick=args.quick, problems=problems)
    # one section of the shared report: its title becomes a section heading
    text = text.replace("\n## ", "\n### ").replace(
        "# Benchmarks\n", "## The embedded host: lookup cost\n", 1)
    write_section("lookup_cost", text)
    print(f"wrote {REPORT.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
