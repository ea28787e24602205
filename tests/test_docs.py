"""docs/reliability.md names the test behind each guarantee: every name must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)?)|(?<![\w/])::(\w+)")


def test_every_test_reliability_md_names_exists() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    checked, current = 0, None
    for path, name, bare in REFERENCE.findall(text):
        if path:
            current = ROOT / path
            assert current.is_file(), f"docs/reliability.md names {path}, which is missing"
            name = name.removeprefix("::")
        else:
            name = bare  # "::name" continues the file named just before it
        if name:
            assert current is not None
            source = current.read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.M), (
                f"docs/reliability.md names {current.relative_to(ROOT)}::{name}, "
                "which is not a test there")
            checked += 1
    assert checked >= 25, checked  # the pattern still finds the references
