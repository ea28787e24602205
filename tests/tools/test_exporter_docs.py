"""docs/prometheus.md stays true: its Prometheus configurations pass ``promtool check
config``, its web config loads and its password works, and its metric tables list
exactly the metrics the exporter serves."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from xvirt.testing.prometheus import promtool
from xvirt.tools.exporter import HandlerCounts
from xvirt.tools.exporter_metrics import (
    DEBIAN_FAMILIES,
    INOVEX_FAMILIES,
    PeerFamily,
    describe_families,
)
from xvirt.tools.webconfig import BasicAuth, load_web_config

from .test_webconfig import make_cert

DOC = Path(__file__).resolve().parents[2] / "docs" / "prometheus.md"


def named_blocks() -> dict[str, str]:
    """The doc's YAML blocks whose first line names the file (``# prometheus.yml``)."""
    blocks = re.findall(r"```yaml\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: body for name, body in blocks}


def test_the_prometheus_configurations_pass_promtool(tmp_path: Path) -> None:
    blocks = named_blocks()
    configs = [name for name in blocks if name.startswith("prometheus")]
    assert configs == ["prometheus.yml", "prometheus-fleet.yml"]
    for name, body in blocks.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    for name in configs:
        checked = promtool("check", "config", str(tmp_path / name))
        output = checked.stdout + checked.stderr
        assert checked.returncode == 0, output
        assert "SUCCESS" in output and "WARNING" not in output, output
        assert "target_label: host" in blocks[name]  # one exporter per host, labelled


def test_the_web_config_example_loads_and_its_password_works(tmp_path: Path) -> None:
    body = named_blocks()["web.yml"]
    (tmp_path / "web.yml").write_text(body)
    cert, key = make_cert(tmp_path, "xvirt-exporter")
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls is not None and config.tls.cert_file == cert and config.tls.key_file == key
    token = base64.b64encode(b"prometheus:change-me").decode()
    assert BasicAuth(config.users).check(f"Basic {token}")


def _served() -> set[str]:
    """Every xvirt family the exporter may serve, named as served."""
    served = set()
    for family in [*describe_families(), *HandlerCounts().describe()]:
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        served.add(family.name + suffix)
    return served


def test_the_metric_tables_list_exactly_what_is_served() -> None:
    documented = set(re.findall(r"^\| `(xvirt_[a-z_]+)` \|", DOC.read_text(), flags=re.M))
    assert documented == _served()


def _peer_table(heading: str) -> list[PeerFamily]:
    """The rows of the peer table under ``heading``, as PeerFamily values."""
    text = DOC.read_text().split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (?:`([a-z_]+)`|—) \| (.*?) \|$", text, flags=re.M)
    return [PeerFamily(peer, xv or None, note) for peer, xv, note in rows]


def test_the_peer_tables_are_the_mappings_and_name_only_served_families() -> None:
    """The tables a user moves dashboards with are the mappings the family test checks
    against Debian's exporter, and every xvirt family they name is one xvirt serves."""
    debian = _peer_table("Debian's `prometheus-libvirt-exporter` 0.2.0 (Kumina's)")
    inovex = _peer_table("inovex's `prometheus-libvirt-exporter`")
    assert debian == list(DEBIAN_FAMILIES)
    assert inovex == list(INOVEX_FAMILIES)
    served = _served() | {f.peer for f in DEBIAN_FAMILIES if f.peer.startswith("process_")}
    for family in (*DEBIAN_FAMILIES, *INOVEX_FAMILIES):
        assert family.xvirt is None or family.xvirt in served, family
        assert family.xvirt is not None or family.note, family  # why not, or how
    assert len({f.peer for f in INOVEX_FAMILIES}) == len(INOVEX_FAMILIES)
    # every figure the issue names is covered: state, CPU, memory and balloon, vCPU
    # time, block and interface I/O, domain counts
    covered = {f.xvirt for f in (*DEBIAN_FAMILIES, *INOVEX_FAMILIES)}
    for needed in ("xvirt_domain_state", "xvirt_domain_cpu_seconds_total",
                   "xvirt_domain_balloon_rss_bytes", "xvirt_domain_vcpu_seconds_total",
                   "xvirt_domain_block_read_seconds_total",
                   "xvirt_domain_interface_transmit_drops_total", "xvirt_domains"):
        assert needed in covered, needed
