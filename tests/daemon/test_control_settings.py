"""The control plane's vCPU, scheduler, metadata and node routes (issue 18), driven
in-process through WSGI: xend's ``set_vcpus``, ``vcpuinfo``, ``domain_sched_credit_get``
and ``_set`` as xend spelt them, the ``xvirt_`` extensions, access control and errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from xvirt.clock import ManualClock
from xvirt.daemon.control import ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel
from xvirt.model import (
    Affect,
    DomainMetadata,
    DomainSettings,
    MetadataElement,
    SchedulerParams,
    VcpuState,
    guest_types,
)
from xvirt.wire import records, sxp

TOKEN = "s3cret-token-0123456789"
NS = "http://example.org/app"


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock,
         tmp_path: Path) -> HostModel:
    h = make_host_model(clock=clock, image_dir=tmp_path / "images", cpus=4)
    h.create("web", vcpus=1, max_vcpus=4)
    return h


def _client(host: HostModel, *, trusted: bool = True) -> httpx.Client:
    app = ControlApp(host, ControlSettings(token=TOKEN), trusted=trusted)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost:8000")


def _uuid(host: HostModel, name: str = "web") -> str:
    return next(d.uuid for d in host.domains() if d.name == name)


def test_set_vcpus_as_xend_spelt_it(host: HostModel) -> None:
    c = _client(host)
    r = c.post("/xend/domain/web", data={"op": "set_vcpus", "vcpus": "3"})
    assert r.status_code == 200 and host.settings(_uuid(host)).vcpus == 3
    r = c.post("/xend/domain/web", data={"op": "set_vcpus", "vcpus": "5"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (400, "invalid")
    assert "5 > 4" in (records.parse_error(sxp.parse(r.content)) or "")
    for bad in ({"vcpus": "0"}, {"vcpus": "x"}, {"vcpus": "2", "affect": "sideways"},
                {"vcpus": "2", "maximum": "yes"}, {}):
        r = c.post("/xend/domain/web", data={"op": "set_vcpus", **bad})
        assert r.status_code == 400, bad
    assert host.settings(_uuid(host)).vcpus == 3


def test_a_definitions_vcpus_and_maximum(host: HostModel) -> None:
    d = host.define("off", vcpus=1)
    c = _client(host)
    for fields in ({"vcpus": "8", "maximum": "1", "affect": "config"}, {"vcpus": "6"}):
        r = c.post(f"/xend/domain/{d.uuid}", data={"op": "set_vcpus", **fields,
                                                   "expected_uuid": d.uuid})
        assert r.status_code == 200, r.text
    answer = c.get(f"/xend/domain/{d.uuid}", params={"op": "xvirt_settings"})
    assert records.parse_settings(sxp.parse(answer.content)) == DomainSettings(
        6, 8, DomainMetadata())
    r = c.get(f"/xend/domain/{d.uuid}", params={"op": "xvirt_settings", "affect": "live"})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (500, "failed")
    assert "not running" in (records.parse_error(sxp.parse(r.content)) or "")


def test_vcpuinfo_and_the_scheduler(host: HostModel, clock: ManualClock) -> None:
    c = _client(host)
    host.set_vcpus(_uuid(host), 2)
    clock.advance(3)
    info = records.parse_vcpuinfo(sxp.parse(c.get("/xend/domain/web?op=vcpuinfo").content))
    assert info == host.vcpu_info(_uuid(host))
    assert [v.state for v in info] == [VcpuState.RUNNING] * 2
    sched = c.get("/xend/domain/web", params={"op": "domain_sched_credit_get"})
    assert records.parse_sched_credit(sxp.parse(sched.content)) == SchedulerParams()
    r = c.post("/xend/domain/web", data={"op": "domain_sched_credit_set", "cap": "400"})
    assert records.parse_sched_credit(sxp.parse(r.content)) == SchedulerParams(256, 400)
    r = c.post("/xend/domain/web", data={"op": "domain_sched_credit_set", "cap": "401"})
    assert r.status_code == 400 and host.scheduler(_uuid(host)) == SchedulerParams(256, 400)
    rec = records.parse_domain_record(sxp.parse(c.get("/xend/domain/web?detail=1").content))
    assert (rec.sched, rec.vcpus, rec.settings().max_vcpus) == (
        SchedulerParams(256, 400), 2, 4)  # the record says it as xend did


def test_metadata_is_set_through_the_extension_op(host: HostModel) -> None:
    c = _client(host)
    for fields in ({"type": "title", "value": "T"},
                   {"type": "element", "value": "<a/>", "key": "app", "uri": NS},
                   {"type": "description", "value": "line 1\nline 2"}):
        r = c.post("/xend/domain/web", data={"op": "xvirt_set_metadata", **fields})
        assert r.status_code == 200, r.text
    meta = DomainMetadata("T", "line 1\nline 2", (MetadataElement(NS, "app", "<a/>"),))
    assert host.settings(_uuid(host)).metadata == meta
    rec = records.parse_domain_record(sxp.parse(c.get("/xend/domain/web?detail=1").content))
    assert rec.metadata == meta
    for bad in ({"type": "colour", "value": "x"}, {"type": "title", "value": "a\nb"},
                {"type": "element", "value": "<a/>", "uri": NS}):
        r = c.post("/xend/domain/web", data={"op": "xvirt_set_metadata", **bad})
        assert r.status_code == 400, bad
    assert host.settings(_uuid(host)).metadata == meta


def test_over_tcp_every_change_needs_the_token(host: HostModel) -> None:
    c = _client(host, trusted=False)
    before = (host.settings(_uuid(host)), host.scheduler(_uuid(host)))
    for fields in ({"op": "set_vcpus", "vcpus": "2"},
                   {"op": "domain_sched_credit_set", "weight": "5"},
                   {"op": "xvirt_set_metadata", "type": "title", "value": "x"}):
        r = c.post("/xend/domain/web", data=fields)
        assert (r.status_code, r.headers["X-Xvirt-Error"]) == (401, "auth"), fields
        r = c.post("/xend/domain/web", data=fields,
                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, fields
    assert before != (host.settings(_uuid(host)), host.scheduler(_uuid(host)))
    assert c.get("/xend/domain/web?op=domain_sched_credit_get").status_code == 200  # a read
    refused = [j for j in host.journal() if j.outcome.startswith("refused: not authenticated")]
    assert [j.op for j in refused] == ["set_vcpus", "domain_sched_credit_set",
                                       "xvirt_set_metadata"]


def test_an_expected_uuid_names_the_domain_whatever_its_names(host: HostModel) -> None:
    """A domain named like another's UUID cannot answer for it, nor be changed for it."""
    web = _uuid(host)
    host.create(web)  # a domain whose *name* is web's UUID
    c = _client(host)
    r = c.get(f"/xend/domain/{web}", params={"op": "xvirt_settings", "expected_uuid": web})
    assert records.parse_settings(sxp.parse(r.content)).max_vcpus == 4
    r = c.post(f"/xend/domain/{web}", data={"op": "set_vcpus", "vcpus": "4",
                                            "expected_uuid": web})
    assert r.status_code == 200 and host.settings(web).vcpus == 4
    assert host.settings(_uuid(host, web)).vcpus == 1
    other = "6695eb01-f6a4-8304-79aa-97f2502e193f"
    r = c.get(f"/xend/domain/{other}", params={"op": "xvirt_settings", "expected_uuid": other})
    assert (r.status_code, r.headers["X-Xvirt-Error"]) == (404, "no-domain")
    r = c.get(f"/xend/domain/{web}", params={"op": "xvirt_settings", "expected_uuid": other})
    assert r.status_code == 400


def test_the_node_routes(host: HostModel, clock: ManualClock) -> None:
    c = _client(host)
    clock.advance(10)
    mem = sxp.parse(c.get("/xvirt/node/memory").content)
    want = host.node_memory_stats()
    assert mem == ["memory_stats", ["total", str(want.total_kib)], ["free", str(want.free_kib)],
                   ["buffers", str(want.buffers_kib)], ["cached", str(want.cached_kib)]]
    cpu = sxp.parse(c.get("/xvirt/node/cpu", params={"cpu": "3"}).content)
    three = host.node_cpu_stats(3)
    assert cpu == ["cpu_stats", ["kernel", str(three.kernel_ns)], ["user", str(three.user_ns)],
                   ["idle", str(three.idle_ns)], ["iowait", str(three.iowait_ns)]]
    for path, params in (("/xvirt/node/cpu", {"cpu": "4"}), ("/xvirt/node/cpu", {"cpu": "-1"}),
                         ("/xvirt/node/memory", {"cell": "1"})):
        assert c.get(path, params=params).status_code == 400
    assert c.post("/xvirt/node/cpu").status_code == 405
    node = records.parse_node_record(sxp.parse(c.get("/xend/node/").content))
    assert set(guest_types(node["xen_caps"])) == set(host.capabilities().guests)
    assert node["xen_scheduler"] == "credit"


def test_create_and_new_carry_the_maximum_and_metadata(host: HostModel) -> None:
    c = _client(host)
    meta = DomainMetadata("T", None, (MetadataElement(NS, "app", "<a/>"),))
    config = records.vm_config("made", 65536, 65536, 1, max_vcpus=3, metadata=meta)
    r = c.post("/xend/domain/", data={"op": "create", "config": sxp.dumps(config),
                                      "exact": "1", "paused": "0"})
    assert r.status_code == 201, r.text
    made = records.parse_domain_record(sxp.parse(r.content))
    assert host.settings(made.uuid) == DomainSettings(1, 3, meta)
    assert (made.disks, made.nics, made.state.value if made.state else None) == (
        (), (), "running")  # exactly the devices named; running at once
    r = c.post("/xend/domain/", data={"op": "create", "config": sxp.dumps(
        records.vm_config("xend-way", 65536, 65536, 1))})
    xend_way = records.parse_domain_record(sxp.parse(r.content))
    assert xend_way.state is not None and xend_way.state.value == "paused"  # as xend did
    assert len(xend_way.disks) == 1 and len(xend_way.nics) == 1  # the usual pair
    config = records.vm_config("def", 65536, 65536, 2, max_vcpus=4, metadata=meta)
    r = c.post("/xend/domain/", data={"op": "new", "config": sxp.dumps(config)})
    defined = records.parse_domain_record(sxp.parse(r.content))
    assert host.settings(defined.uuid, Affect.CONFIG) == DomainSettings(2, 4, meta)
