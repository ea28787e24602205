"""The alerting rules shipped in contrib/prometheus pass ``promtool check rules``, and
their behaviour is pinned by ``promtool test rules``: each rule is needed by its unit
tests (a rule that never fires makes them fail), so the tests cannot pass vacuously."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from xvirt.testing.prometheus import promtool

RULES_DIR = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
RULES = RULES_DIR / "xvirt-alerts.yml"
UNIT_TESTS = RULES_DIR / "xvirt-alerts-test.yml"
#: What the issue asks alerts for, and the rules that answer.
EXPECTED = {"XvirtExporterDown", "XvirtHostDown", "XvirtDomainNotAnswering",
            "XvirtDomainCrashed", "XvirtGuestMemoryPressure", "XvirtDomainCpuSaturated",
            "XvirtHostCpuOvercommitted", "XvirtDiskErrors", "XvirtNicErrors"}


def _rules() -> list[dict[str, object]]:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    rules: list[dict[str, object]] = group["rules"]
    return rules


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in checked.stdout
    assert {r["alert"] for r in _rules()} == EXPECTED


def test_the_unit_tests_pass() -> None:
    checked = promtool("test", "rules", str(UNIT_TESTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_rule_fires_in_the_unit_tests() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing = {case["alertname"] for t in tests for case in t["alert_rule_test"]
              if case["exp_alerts"]}
    quiet = {case["alertname"] for t in tests for case in t["alert_rule_test"]
             if not case["exp_alerts"]}
    assert firing == EXPECTED
    assert quiet >= EXPECTED - {"XvirtHostDown", "XvirtHostCpuOvercommitted"}


@pytest.mark.parametrize("alert", sorted(EXPECTED))
def test_a_rule_that_never_fires_fails_its_unit_tests(alert: str, tmp_path: Path) -> None:
    """The unit tests see each rule: with its expression replaced by one that is never
    true, they fail."""
    document = yaml.safe_load(RULES.read_text())
    for rule in document["groups"][0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = "vector(1) == 0"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(document))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    checked = promtool("test", "rules", str(tmp_path / UNIT_TESTS.name))
    assert checked.returncode != 0
    assert alert in checked.stdout + checked.stderr


def test_the_doc_lists_every_alert() -> None:
    doc = (RULES_DIR.parents[1] / "docs" / "prometheus.md").read_text()
    import re

    assert set(re.findall(r"^\| `(Xvirt[A-Za-z]+)` \|", doc, flags=re.M)) == EXPECTED
