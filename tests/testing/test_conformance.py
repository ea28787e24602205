"""The conformance kit run against the embedded driver, under both ID policies."""

from __future__ import annotations

import pytest

from xvirt.testing import SimTarget, check_driver


@pytest.mark.parametrize("policy", ["random", "sequential"])
def test_sim_driver_keeps_the_contract(policy: str) -> None:
    report = check_driver(lambda: SimTarget(id_policy=policy, max_domid=6), max_examples=40)
    # The histories must reach the hard cases, or passing would prove little.
    assert report.id_reuses >= 20, report
    assert report.moves >= 20, report
    assert report.host_reboots >= 5, report
    assert report.daemon_restarts >= 5, report
