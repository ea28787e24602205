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


def test_sim_driver_keeps_the_contract_on_fresh_histories() -> None:
    """New random histories on every run: a violation anywhere fails the suite."""
    check_driver(lambda: SimTarget(id_policy="random", max_domid=5), max_examples=40)
