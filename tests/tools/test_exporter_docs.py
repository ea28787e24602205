"""docs/prometheus.md stays true: its Prometheus configurations pass ``promtool check
config``, its web config loads and its password works, and its metric tables list
exactly the metrics the exporter serves."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from xvirt.testing.prometheus import promtool
from xvirt.tools.exporter_metrics import describe_families
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


def test_the_metric_tables_list_exactly_what_is_served() -> None:
    served = set()
    for family in describe_families():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        served.add(family.name + suffix)
    documented = set(re.findall(r"^\| `(xvirt_[a-z_]+)` \|", DOC.read_text(), flags=re.M))
    assert documented == served
