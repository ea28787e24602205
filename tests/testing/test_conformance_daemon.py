"""The conformance kit run through the xend driver against real daemon processes:
every history restarts the daemon for real (SIGTERM, then a new process). The
outside world defines, starts and undefines managed domains with xend's own
requests (``op=new``, ``op=start``, ``op=delete``), clients through the driver."""

from __future__ import annotations

from xvirt.testing import check_driver
from xvirt.testing.daemon import DaemonTarget


def test_xend_driver_keeps_the_contract_over_the_unix_socket() -> None:
    report = check_driver(lambda: DaemonTarget(max_domid=6), max_examples=10,
                          stateful_step_count=25, derandomize=True)
    assert report.id_reuses >= 10, report
    assert report.moves >= 5, report
    assert report.host_reboots >= 1, report
    assert report.daemon_restarts >= 1, report
    # Managed domains, kept by the daemon's store across its restarts and host reboots.
    assert report.defines >= 10 and report.client_defines >= 4, report
    assert report.starts >= 5 and report.handle_starts >= 2, report
    assert report.undefines >= 2 and report.kept_defined >= 5, report
    assert report.skipped == frozenset(), report


def test_xend_driver_keeps_the_contract_over_tcp_with_http_data_plane() -> None:
    check_driver(lambda: DaemonTarget(max_domid=5, tcp=True, uri_params="fast=http"),
                 max_examples=4, stateful_step_count=25)


def test_refused_commits_mixed_into_the_history_keep_the_contract() -> None:
    """The store refuses changes at random steps (a full disk, a held lock): each is
    refused to whoever asked, and the host, also after real daemon restarts, is
    exactly what clients were told (the kit's model)."""
    report = check_driver(lambda: DaemonTarget(max_domid=6), max_examples=5,
                          stateful_step_count=40, derandomize=True)
    assert report.refused_commits >= 5, report
    assert report.daemon_restarts >= 1, report
    assert report.kept_defined >= 1, report  # managed domains, kept by the store too
