"""A real Prometheus scrapes the exporter every second while the host churns: what it
stores is labelled by uuid, follows reboots to new IDs, and forgets gone domains at
the next scrape (staleness), as the exporter never serves them again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import xvirt
from xvirt.testing.prometheus import PrometheusProcess
from xvirt.tools.exporter import Exporter


def scrape_config(exporter: Exporter) -> dict[str, Any]:
    host, port = exporter.address
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "xvirt",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [f"{host}:{port}"], "labels": {"host": "lab"}}],
        }],
    }


@pytest.fixture
def host(make_sim_host: Callable[..., xvirt.sim.Host]) -> xvirt.sim.Host:
    """An empty host on the system clock: a real Prometheus scrapes it in real time."""
    return make_sim_host()


def _info(prom: PrometheusProcess) -> dict[str, dict[str, str]]:
    """uuid -> labels of the xvirt_domain_info series Prometheus has now."""
    out: dict[str, dict[str, str]] = {}
    for sample in prom.query("xvirt_domain_info"):
        labels = sample["metric"]
        assert labels["uuid"] not in out, labels
        out[labels["uuid"]] = labels
    return out


def _expected(host: xvirt.sim.Host, wedged: set[str]) -> dict[str, tuple[str, str, str]]:
    return {r.uuid: (r.name, str(r.id), "unknown" if r.uuid in wedged else r.state.value)
            for r in host.domains()}


def _seen(prom: PrometheusProcess) -> dict[str, tuple[str, str, str]]:
    return {u: (m["name"], m["id"], m["state"]) for u, m in _info(prom).items()}


def test_prometheus_sees_the_live_domains_and_forgets_the_gone(host: xvirt.sim.Host) -> None:
    a, b, c = (host.create(name) for name in ("a", "b", "c"))
    # A wedged domain's survey waits its per-domain timeout: keep it inside the deadline.
    # no statistics groups: the count below is of the families every domain has
    with Exporter(f"{host.uri}?domain_timeout_ms=100", scrape_timeout_s=0.8,
                  collect=()) as exporter, \
            PrometheusProcess(scrape_config(exporter)) as prom:
        prom.wait_until(lambda: _seen(prom) == _expected(host, set()), timeout_s=15)
        (first,) = prom.query("xvirt_domain_info")[:1]
        assert first["metric"]["job"] == "xvirt" and first["metric"]["host"] == "lab"
        assert prom.values("xvirt_up", "host") == {"lab": 1.0}
        # Every per-domain series carries a uuid.
        assert prom.query('{__name__=~"xvirt_domain_.+", uuid=""}') == []
        assert len(prom.query('{__name__=~"xvirt_domain_.+"}')) == 7 * 4

        host.destroy(b.id)
        moved = host.reboot(c.id)  # same UUID, a new ID
        d = host.create("d")
        host.stall(a.id)
        assert moved.id != c.id
        expected = _expected(host, {a.uuid})
        prom.wait_until(lambda: _seen(prom) == expected, timeout_s=15)

        assert prom.query(f'{{uuid="{b.uuid}"}}') == []  # gone: not one series
        assert prom.values(f'xvirt_domain_info{{uuid="{c.uuid}"}}', "id") == {str(moved.id): 1}
        assert prom.values("xvirt_domain_scrape_error", "uuid") == {
            r.uuid: (1.0 if r.uuid == a.uuid else 0.0) for r in host.domains()}
        assert prom.query(f'xvirt_domain_cpu_seconds_total{{uuid="{a.uuid}"}}') == []
        assert set(prom.values("xvirt_domain_vcpus", "uuid")) == {
            xvirt.sim.DOM0_UUID, c.uuid, d.uuid}
        assert prom.query("count by (uuid) (xvirt_domain_info) > 1") == []
        assert prom.values("sum(xvirt_domains)", "") == {"": 3.0}  # dom0, c, d (a: unread)

        host.close()  # the host goes away: up 0, and every domain series goes stale
        prom.wait_until(lambda: prom.values("xvirt_up", "host") == {"lab": 0.0}, timeout_s=15)
        prom.wait_until(lambda: prom.query('{__name__=~"xvirt_domain.*"}') == [], timeout_s=5)
        (target,) = prom.targets()
        assert target["health"] == "up"  # the exporter answered: it is the host that is down
