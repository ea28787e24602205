"""The conformance kit run against the embedded driver, under both ID policies."""

from __future__ import annotations

import pytest

from xvirt.testing import SimTarget, check_driver


@pytest.mark.parametrize("policy", ["random", "sequential"])
def test_sim_driver_keeps_the_contract(policy: str) -> None:
    # Derandomized, so the coverage floors below are reproducible, not luck.
    report = check_driver(
        lambda: SimTarget(id_policy=policy, max_domid=6), max_examples=40, derandomize=True
    )
    # The histories must reach the hard cases, or passing would prove little.
    assert report.id_reuses >= 100, report
    assert report.moves >= 40, report
    assert report.host_reboots >= 10, report
    assert report.daemon_restarts >= 10, report
    # Defined domains: made by the host and by clients, started by both, stopped and
    # kept shut off, undefined by both, and looked up and held while shut off.
    assert report.defines >= 40 and report.client_defines >= 15, report
    assert report.starts >= 20 and report.handle_starts >= 10, report
    assert report.undefines >= 10 and report.handle_undefines >= 5, report
    assert report.kept_defined >= 20 and report.defined_checks >= 1000, report
    assert report.skipped == frozenset(), report  # the embedded host can do it all


def test_sim_driver_keeps_the_contract_on_fresh_histories() -> None:
    """New random histories on every run: a violation anywhere fails the suite."""
    check_driver(lambda: SimTarget(id_policy="random", max_domid=5), max_examples=40)
