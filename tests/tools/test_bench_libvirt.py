"""``xvirt bench`` on a libvirt host (libvirt's test driver, in this process): no
Domain-0 where there is none, a slower result worded as slower, and every save
image it made deleted again (libvirt's restore leaves the file behind)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.libvirt_target import guest_xml
from xvirt.tools.bench import ratio_text, render
from xvirt.tools.bench_run import Cell, ExistingHost, Mode, run
from xvirt.tools.cli import main

URI = "libvirt:test:///default"


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The libvirt driver's image directory (with a file of someone else's in it), and
    four more guests on the test driver, removed afterwards."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "someone-elses.img").write_text("not the bench's")
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(image_dir))
    lv = real_libvirt()
    admin = lv.open("test:///default")
    made = [admin.createXML(guest_xml(f"bench{i}", f"00000000-0000-4000-8000-{i + 90:012x}",
                                      memory_kib=65536, vcpus=1), 0) for i in range(4)]
    try:
        yield image_dir
    finally:
        for dom in made:
            with contextlib.suppress(lv.libvirtError):
                dom.destroy()
        admin.close()


def test_the_bench_deletes_every_image_it_made(images: Path) -> None:
    before = sorted(p.name for p in images.iterdir())
    host = ExistingHost(URI)
    try:
        cells = {c.mode: c for c in run(host, samples=4, repeats=1)}
    finally:
        host.close()
    assert host.churned  # it did save and restore through libvirt
    assert host.left_behind == []
    assert sorted(p.name for p in images.iterdir()) == before
    assert cells[Mode.XVIRT].wrong == [0] and cells[Mode.Y2006].wrong == [0]
    assert not host.domain0 and all(not c.domain0 for c in cells.values())


def test_the_command_claims_no_domain0_and_leaves_no_image(images: Path) -> None:
    before = sorted(p.name for p in images.iterdir())
    # test:///default's "test" and our four, and whatever else this process's shared
    # default host holds now (another test's guests live as long as its connection)
    seen = real_libvirt().open("test:///default")
    running = seen.numOfDomains()
    seen.close()
    result = CliRunner().invoke(main, ["bench", "--uri", URI, "--samples", "3",
                                       "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "Domain-0" not in result.output
    assert running >= 5 and f"{running} domains\n" in result.output
    assert "x faster than" in result.output or "x slower than" in result.output
    assert "warning" not in result.output
    assert sorted(p.name for p in images.iterdir()) == before


def cell(mode: Mode, seconds: float, *, domain0: bool) -> Cell:
    return Cell(5, mode, 3, control_requests=[1], data_calls=[1], seconds=[seconds],
                wrong=[0], domain0=domain0)


@pytest.mark.parametrize(("old", "new", "says"), [
    (2.0, 1.0, "2.0x faster"), (1.0, 1.0, "1.0x faster"), (1.0, 1.3, "1.3x slower"),
    (0.5, 2.0, "4.0x slower"), (10.0, 0.04, "250.0x faster"),
])
def test_ratios_say_slower_when_slower(old: float, new: float, says: str) -> None:
    assert ratio_text(old, new) == says


def test_the_report_words_a_slower_cache_as_slower_and_counts_domain0_only_on_xen() -> None:
    libvirt_cells = [cell(Mode.Y2006, 0.010, domain0=False),
                     cell(Mode.XVIRT, 0.013, domain0=False)]
    text = render(libvirt_cells, samples=3, repeats=1, latency_ms=None, churned=True,
                  host_label=URI)
    assert "5 domains\n" in text and "Domain-0" not in text
    assert "xvirt's cache is 1.3x slower than 2006 mode" in text
    assert "faster" not in text
    xen = render([cell(Mode.XVIRT, 0.01, domain0=True)], samples=3, repeats=1,
                 latency_ms=None, churned=True, host_label="xen")
    assert "5 domains (Domain-0 included)" in xen


def test_the_json_says_whether_domain0_is_counted() -> None:
    assert cell(Mode.XVIRT, 0.01, domain0=False).as_dict()["domain0"] is False


def test_an_image_the_host_kept_is_reported_if_it_cannot_be_deleted(tmp_path: Path) -> None:
    host: Any = ExistingHost.__new__(ExistingHost)
    host.left_behind = []
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "img").mkdir()  # a directory: unlink fails with an OSError other than ENOENT
    host._delete(str(locked), "img")
    host._delete(str(locked), "gone")  # consumed by the restore: nothing to do
    host._delete(None, "img")  # no directory known: nothing to do
    assert host.left_behind == [str(locked / "img")]
