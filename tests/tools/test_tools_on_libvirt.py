"""`xvirt top` and `xvirt exporter` on a libvirt URI (libvirt's own test driver, in
process): the tools take any xvirt URI, and libvirt's answers reach them as they are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from xvirt.libvirt_api.binding import real_libvirt
from xvirt.testing.prometheus import parse_samples
from xvirt.tools.cli import main
from xvirt.tools.exporter import Exporter

TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's own domain


NODE = f"""<node>
  <domain type='test'>
    <name>test</name><uuid>{TEST_UUID}</uuid>
    <memory>8388608</memory><currentMemory>2097152</currentMemory><vcpu>2</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>"""


@pytest.fixture
def libvirt_default(tmp_path: Any) -> Iterator[str]:
    """A test driver host of this test's own, holding one running domain named as the
    default host's: each connection reads it afresh, so no other test's changes to the
    process's shared ``test:///default`` can show here."""
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    conn = real_libvirt().open(f"test://{node}")
    assert conn.listDomainsID() == [1]
    conn.close()
    yield f"libvirt:test://{node}"


def test_top_shows_libvirts_domains(libvirt_default: str) -> None:
    result = CliRunner().invoke(main, ["top", "--uri", libvirt_default, "--json", "-n", "1"])
    assert result.exit_code == 0, result.output
    frames = [json.loads(line) for line in result.output.splitlines()]
    assert len(frames) == 1
    text = json.dumps(frames[-1])
    assert TEST_UUID in text and '"test"' in text


def test_the_exporter_serves_libvirts_domains(libvirt_default: str) -> None:
    with Exporter(libvirt_default, scrape_timeout_s=10) as exporter, httpx.Client(
            base_url=exporter.url) as client:
        got = parse_samples(client.get("/metrics").text)
    assert got[("xvirt_up", frozenset())] == 1
    info = [labels for (name, labels), _ in got.items() if name == "xvirt_domain_info"]
    assert [dict(labels)["name"] for labels in info] == ["test"]
    assert dict(info[0])["uuid"] == TEST_UUID
    assert got[("xvirt_domain_vcpus", frozenset({("uuid", TEST_UUID), ("name", "test")}))] == 2
