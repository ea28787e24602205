"""A daemon whose disk has no room for its table says so and exits, at every start; it is
never killed by a signal (issue 16: the table was made sparse, and the first store into a
page the disk could not back was a SIGBUS, exit 135, with nothing logged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.full_disk import run_on_tmpfs

# Two starts on the same state directory: the first makes the store and fails at the
# table; the second (a restart) loads that store and fails at the table again.
_START_TWICE = """
import json, subprocess, sys
state = sys.argv[1]
runs = []
for _ in range(2):
    try:
        done = subprocess.run([sys.executable, "-m", "xvirt", "daemon", "--state-dir", state,
                               "--empty"], capture_output=True, text=True, timeout=20)
        runs.append([done.returncode, done.stderr])
    except subprocess.TimeoutExpired as exc:
        runs.append([None, str(exc.stderr)])
print(json.dumps(runs))
"""


def test_a_disk_without_room_for_the_table_is_a_named_error_at_every_start(
        tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    state = disk / "state"
    done = run_on_tmpfs(disk, "1m", [sys.executable, "-c", _START_TWICE, str(state)])
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    for status, stderr in runs:
        assert status == 1, f"exit status {status}, not 1 (a signal is negative): {stderr}"
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot create the domain table "), stderr
        assert f"{state}/table" in last and "No space left on device" in last, last
        assert "Traceback" not in stderr
