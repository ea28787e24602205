"""What the identity cache costs in memory, measured, and written to docs/benchmarks.md.

(a) Bytes per cached identity: tracemalloc counts what stays allocated after a
    connection's cache has learnt N live domains (one sample), divided by N, on
    the embedded host (whose own objects exist before and are not counted) and
    through a daemon (where every string is the client's). Target: <= 512
    bytes per live domain.
(b) Flat under churn: 1,000,000 lifecycle events (create, destroy, save,
    restore) on an embedded host of 1000 guests, applied by the cache of a
    connection that samples every 500 events; the process's RSS (VmRSS) is
    read every 50,000 events. The host's journal is bounded by its capacity
    (4096 here), so what could grow is the cache (entries, recent events,
    tombstones). Target: flat within a few MB.

    .venv/bin/python benchmarks/memory_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_cost import _populate
from report import PLOTS, REPO, REPORT, command_line, machine_lines, write_section

import xvirt
from xvirt.testing.daemon import DaemonProcess

PLOT = PLOTS / "memory_cost.png"
TARGET_BYTES = 512


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def traced_per_identity(uri: str) -> tuple[float, int]:
    """Traced bytes a fresh connection keeps per live domain after one sample."""
    conn = xvirt.open(uri, readonly=True)
    conn.lookup_by_id(0)  # opens the channels (not the cache's cost); caches Domain-0 only
    first = conn.stats().cache_size
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    conn.sample()  # the cache learns every domain; the answer is dropped
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    size = conn.stats().cache_size
    conn.close()
    return (after - before) / (size - first), size


def bytes_per_identity(guests: int) -> tuple[float, float, int]:
    """On the embedded host (names and UUIDs shared with the host's objects) and
    through a daemon (every string parsed in this process), median of 3 each."""
    with xvirt.sim.Host(f"mem-a-{guests}", journal_capacity=16) as host:
        for i in range(guests):
            host.create(f"guest-{i + 1:05d}", memory_kib=65536)
        sim = [traced_per_identity(host.uri) for _ in range(3)]
    daemon = DaemonProcess(tcp=False)
    daemon.start()
    try:
        _populate(daemon, guests)
        remote = [traced_per_identity(daemon.unix_uri) for _ in range(3)]
    finally:
        daemon.cleanup()
    return (statistics.median(b for b, _ in sim), statistics.median(b for b, _ in remote),
            sim[0][1])


def churn(events: int, guests: int, every: int,
          probe: int) -> tuple[list[tuple[int, int]], int, int]:
    """RSS at every ``probe`` events; the cache's size and evictions at the end."""
    points: list[tuple[int, int]] = []
    with xvirt.sim.Host("mem-b", journal_capacity=4096, image_dir=None) as host:
        ids = [host.create(f"guest-{i:05d}", memory_kib=65536).id for i in range(guests)]
        conn = xvirt.open(host.uri, readonly=True)
        conn.sample()
        made = 0
        serial = guests
        step = 0
        start_gen = host.generation
        while host.generation - start_gen < events:
            slot = step % len(ids)
            domid = ids[slot]
            if step % 2:  # save and restore: same UUID and name, a new ID (2 events)
                host.save(domid, "churn")
                ids[slot] = host.restore("churn").id
            else:  # destroy and create: a new domain in its place (2 events)
                host.destroy(domid)
                serial += 1
                ids[slot] = host.create(f"guest-{serial:07d}", memory_kib=65536).id
            step += 1
            done = host.generation - start_gen
            if done // every > made // every:
                conn.sample()
            if not points or done // probe > points[-1][0] // probe:
                gc.collect()
                points.append((done, rss_kib()))
            made = done
        conn.sample()
        stats = conn.stats()
        conn.close()
    return points, stats.cache_size, stats.evictions


def plot(points: Sequence[tuple[int, int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot([e / 1e6 for e, _ in points], [k / 1024 for _, k in points], "o-", markersize=3)
    ax.set_xlabel("lifecycle events applied by the cache (millions)")
    ax.set_ylabel("process RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("RSS under churn: 1000 live guests, a sample every 500 events")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the identity cache's memory")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    sizes = (1000, 5000) if args.quick else (1000, 5000, 20000)
    events = 40_000 if args.quick else 1_000_000
    # The churn first, in a fresh process: freed memory of the larger hosts below
    # would otherwise sit in the heap and could hide growth.
    points, size, evictions = churn(events, 1000, every=500, probe=max(events // 20, 1))
    base = points[1][1] if len(points) > 2 else points[0][1]  # after the first probe: warm
    growth = (points[-1][1] - base) / 1024
    print(f"RSS {points[0][1] / 1024:.1f} -> {points[-1][1] / 1024:.1f} MiB over "
          f"{points[-1][0]} events", flush=True)
    per: list[tuple[int, float, float, int]] = []
    for guests in sizes:
        sim, remote, size_at = bytes_per_identity(guests)
        per.append((guests, sim, remote, size_at))
        print(f"{guests} guests: {sim:.0f} bytes per cached identity on sim, "
              f"{remote:.0f} through the daemon", flush=True)
    plot(points)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    worst = max(max(a, b) for _, a, b, _ in per)
    lines = ["## Memory (`memory_cost`)", "", *machine_lines(command), "",
             "### (a) Bytes per cached identity (tracemalloc)", "",
             "What stays allocated after one sample taught a fresh connection's cache "
             "every domain, divided by the cache's size (median of 3). On the embedded "
             "host the cache shares the name and UUID strings of the host's answers; "
             "through a daemon every string is parsed in the client, so that column is "
             "the whole cost.", "",
             "| guests | cache size | bytes per identity, sim | bytes per identity, daemon |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {g} | {s} | {a:.0f} | {b:.0f} |" for g, a, b, s in per]
    lines += ["", f"Target <= {TARGET_BYTES} bytes per live domain: "
              f"{'met' if worst <= TARGET_BYTES else '**missed**'} (largest {worst:.0f}).",
              "", "### (b) RSS under churn", "",
              f"{points[-1][0]:,} lifecycle events (destroy+create and save+restore, "
              "alternating) on an embedded host of 1000 guests, in this process (run "
              "first, before anything else allocated); the cache of a read-only "
              "connection applies them, sampling every 500 events.", "",
              "| events applied | RSS, MiB |", "|---:|---:|"]
    lines += [f"| {e:,} | {k / 1024:.1f} |" for e, k in points]
    lines += ["", f"From the first probe after warm-up ({base / 1024:.1f} MiB) to the end: "
              f"{growth:+.1f} MiB. At the end the cache held {size} identities "
              f"(1000 guests + Domain-0) after {evictions:,} evictions.", "",
              f"![memory](benchmarks/{PLOT.name})", ""]
    write_section("memory_cost", "\n".join(lines))
    print(f"wrote {REPORT.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
