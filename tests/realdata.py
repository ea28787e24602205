"""Where the captures of real xend live: ``shared/realdata`` beside the repository."""

from __future__ import annotations

from pathlib import Path


def find_realdata() -> Path | None:
    for base in (
        Path(__file__).resolve().parents[3] / "shared" / "realdata",
        Path("/work/shared/realdata"),
    ):
        if (base / "xend").is_dir():
            return base
    return None


REALDATA = find_realdata()
