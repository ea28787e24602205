"""What the atheris harnesses share: paths, seeds, default libFuzzer flags, the RSS check.

Each harness imports this module first (it makes the repository root importable, for
the checkers in ``tests.host``), imports xvirt inside ``instrumented()``, and hands
``main()`` its one-input function and seed inputs. ``main()`` adds what the command line
leaves out: ``-max_len``, ``-timeout=10`` (a hang is a crash), ``-rss_limit_mb=2048``, a
seed directory (written afresh from the harness's seeds) and, when no corpus directory is
given, a scratch output corpus. Given ``-runs=N``, it records the process's resident set
size (VmRSS) once the run is warm (after ``N // 10`` inputs) and again at the last input,
prints both, and exits with status 3 if it grew by more than ``XVIRT_FUZZ_RSS_GROWTH_MB``
(default 64 MiB: at a million inputs that catches any leak of 68 bytes or more per
input, and is far above the few MiB libFuzzer's own corpus and feature tables take as
they grow).

Any exception out of the one-input function is a crash for libFuzzer: it prints the
traceback, writes the input to ``<artifact_prefix>crash-<sha1>`` and exits non-zero.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.host.*: the checkers are shared with the suite

RSS_GROWTH_MB = float(os.environ.get("XVIRT_FUZZ_RSS_GROWTH_MB", "64"))
TAG = "XVIRT-FUZZ"  # prefix of the lines scripts/long-run-fuzz reads


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Import xvirt (and what imports it) with coverage instrumentation of xvirt only."""
    if any(name == "xvirt" or name.startswith("xvirt.") for name in sys.modules):
        raise RuntimeError("xvirt was imported before instrumentation: no coverage")
    with atheris.instrument_imports(include=["xvirt"]):
        yield


def vm_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def scratch(name: str) -> Path:
    """``$TMPDIR/xvirt-fuzz/<name>-<pid>``, new; those of processes gone are removed."""
    base = Path(tempfile.gettempdir()) / "xvirt-fuzz"
    base.mkdir(exist_ok=True)
    for old in base.glob(f"{name}-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    work = base / f"{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


def _flag(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(f"-{name}="):
            return arg.partition("=")[2]
    return None


def main(name: str, one_input: Callable[[bytes], None], seeds: Iterable[bytes], *,
         max_len: int, work: Path, at_end: Callable[[], None] | None = None) -> None:
    """Run libFuzzer on ``one_input`` with the command line's flags (and these defaults)."""
    argv = list(sys.argv)
    for flag, default in (("max_len", str(max_len)), ("timeout", "10"),
                          ("rss_limit_mb", "2048")):
        if _flag(argv, flag) is None:
            argv.append(f"-{flag}={default}")
    positional = [a for a in argv[1:] if not a.startswith("-")]
    if all(os.path.isdir(p) for p in positional):  # not when reproducing given files
        seed_dir = work / "seeds"
        seed_dir.mkdir()
        for i, seed in enumerate(seeds):
            (seed_dir / f"seed-{i:04d}").write_bytes(seed)
        if not positional:  # libFuzzer writes new inputs to the first directory
            (work / "corpus").mkdir()
            argv.append(str(work / "corpus"))
        argv.append(str(seed_dir))
    runs_flag = _flag(argv, "runs")
    runs = int(runs_flag) if runs_flag and runs_flag.lstrip("-").isdigit() else -1
    warm = max(1, runs // 10)
    count = 0
    start_kib = 0
    t0 = 0.0

    def finish() -> None:
        gc.collect()
        end_kib = vm_rss_kib()
        grew = (end_kib - start_kib) / 1024
        elapsed = time.perf_counter() - t0
        ok = grew <= RSS_GROWTH_MB
        print(f"{TAG} {name}: rss start {start_kib / 1024:.1f} MiB (after {warm} inputs) "
              f"end {end_kib / 1024:.1f} MiB (after {count}): grew {grew:.1f} MiB, "
              f"bound {RSS_GROWTH_MB:g} MiB: {'ok' if ok else 'FAIL'}; "
              f"{count - warm} inputs in {elapsed:.1f} s since", file=sys.stderr, flush=True)
        if at_end is not None:
            at_end()
        if not ok:
            print(f"{TAG} {name}: FAIL: memory grew by {grew:.1f} MiB "
                  f"(from {start_kib} KiB to {end_kib} KiB of VmRSS), more than "
                  f"{RSS_GROWTH_MB:g} MiB", file=sys.stderr, flush=True)
            os._exit(3)  # libFuzzer would exit 0 after the last input

    def test_one_input(data: bytes) -> None:
        nonlocal count, start_kib, t0
        one_input(data)
        count += 1
        if count == warm:
            gc.collect()
            start_kib = vm_rss_kib()
            t0 = time.perf_counter()
        if count == runs:
            finish()

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
