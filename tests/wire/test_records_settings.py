"""The wire shapes of vCPUs, the credit scheduler and metadata (issue 18): xend's
``(vcpus N) (vcpu_avail B)``, ``(cpu_weight W) (cpu_cap C)``, ``op=vcpuinfo`` and
``domain_sched_credit``, and the ``xvirt_`` metadata extensions, written by the daemon
and read back by the driver, and read as libvirt read xend's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.errors import InvalidArgumentError, ProtocolError
from xvirt.model import (
    DomainMetadata,
    DomainSettings,
    DomainState,
    MetadataElement,
    SchedulerParams,
    VcpuInfo,
    VcpuState,
)
from xvirt.wire.records import (
    domain_record,
    parse_domain_record,
    parse_sched_credit,
    parse_settings,
    parse_vcpuinfo,
    parse_vm_config,
    sched_credit_record,
    settings_record,
    vcpuinfo_record,
    vcpus_fields,
    vm_config,
)
from xvirt.wire.sxp import dumps, parse

U = "6695eb01-f6a4-8304-79aa-97f2502e193f"

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=40)
_elements = st.lists(st.tuples(st.from_regex(r"http://[a-z]{1,8}/", fullmatch=True),
                               st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True), _text),
                     max_size=3, unique_by=lambda e: e[0])
metadata = st.builds(lambda t, d, es: DomainMetadata(t, d, tuple(
    MetadataElement(u, k, x) for u, k, x in es)), st.none() | _text, st.none() | _text,
    _elements)


def _wire(sx: object) -> object:
    return parse(dumps(sx))  # type: ignore[arg-type]


@given(vcpus=st.integers(1, 128), extra=st.integers(0, 128), meta=metadata,
       weight=st.integers(1, 65535), cap=st.integers(0, 12800))
def test_a_record_carries_vcpus_scheduler_and_metadata(vcpus: int, extra: int,
                                                       meta: DomainMetadata, weight: int,
                                                       cap: int) -> None:
    rec = domain_record(domid=3, uuid=U, name="g", memory_kib=1024, max_memory_kib=2048,
                        vcpus=vcpus, os_type="linux", state=DomainState.RUNNING,
                        cpu_time_ns=5, max_vcpus=vcpus + extra,
                        sched=SchedulerParams(weight, cap), metadata=meta)
    parsed = parse_domain_record(_wire(rec))  # type: ignore[arg-type]
    assert parsed.vcpus == vcpus == parsed.config().vcpus
    assert parsed.settings() == DomainSettings(vcpus, vcpus + extra, meta)
    assert parsed.sched == SchedulerParams(weight, cap)


def test_vcpus_are_xends_maximum_and_online_bitmap() -> None:
    assert vcpus_fields(2) == [["vcpus", "2"]]
    assert vcpus_fields(2, 2) == [["vcpus", "2"]]
    assert vcpus_fields(2, 4) == [["vcpus", "4"], ["vcpu_avail", "3"]]
    with pytest.raises(InvalidArgumentError):
        vcpus_fields(3, 2)
    # as libvirt counted: the set bits, capped at vcpus; hex as strtol read it
    for avail, online in (("3", 2), ("0x7", 3), ("255", 4), ("5", 2)):
        rec = parse(f"(domain (uuid {U}) (name g) (vcpus 4) (vcpu_avail {avail}))")
        parsed = parse_domain_record(rec)
        assert (parsed.vcpus, parsed.settings().max_vcpus) == (online, 4)
    with pytest.raises(ProtocolError, match="vcpu_avail"):
        parse_domain_record(parse(f"(domain (uuid {U}) (name g) (vcpus 4) (vcpu_avail x))"))


def test_old_xends_weight_is_not_the_credit_schedulers() -> None:
    """curmem's ``(cpu_weight 1.0)`` (realdata) reads as unknown, not as a weight."""
    for fields, sched in (("(cpu_weight 1.0)", None), ("(cpu_weight 256)", SchedulerParams()),
                          ("(cpu_weight 512) (cpu_cap 50)", SchedulerParams(512, 50)),
                          ("(cpu_cap 50)", None), ("", None)):
        rec = parse(f"(domain (uuid {U}) (name g) (vcpus 1) {fields})")
        assert parse_domain_record(rec).sched == sched


@given(vcpus=st.integers(1, 64), extra=st.integers(0, 64), meta=metadata)
def test_a_config_carries_them_to_the_daemon(vcpus: int, extra: int,
                                             meta: DomainMetadata) -> None:
    cfg = vm_config("g", 1024, 1024, vcpus, U, max_vcpus=vcpus + extra, metadata=meta)
    parsed = parse_vm_config(_wire(cfg))  # type: ignore[arg-type]
    assert parsed.vcpus == vcpus and parsed.metadata == meta
    assert parsed.max_vcpus == (vcpus + extra if extra else None)


def test_a_config_that_brings_no_vcpu_online_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="no vCPU"):
        parse_vm_config(parse("(vm (name g) (memory 1) (vcpus 2) (vcpu_avail 0))"))


def test_malformed_metadata_is_a_protocol_error() -> None:
    for fields in ("(xvirt_metadata (element (uri http://a/) (key a)))",
                   "(xvirt_metadata (element (uri http://a/) (key a) (xml <a/>))"
                   " (element (uri http://a/) (key b) (xml <b/>)))"):
        with pytest.raises(ProtocolError):
            parse_domain_record(parse(f"(domain (uuid {U}) (name g) (vcpus 1) {fields})"))


@given(vcpus=st.integers(1, 8), extra=st.integers(0, 8), meta=metadata)
def test_settings_answers_round_trip(vcpus: int, extra: int, meta: DomainMetadata) -> None:
    settings = DomainSettings(vcpus, vcpus + extra, meta)
    assert parse_settings(_wire(settings_record(settings))) == settings  # type: ignore[arg-type]


def test_scheduler_answers_round_trip_and_refuse_garbage() -> None:
    params = SchedulerParams(512, 100)
    assert parse_sched_credit(_wire(sched_credit_record(params))) == params  # type: ignore[arg-type]
    for bad in ("(domain_sched_credit (weight 1))", "(sched (weight 1) (cap 0))",
                "(domain_sched_credit (weight -1) (cap 0))"):
        with pytest.raises(ProtocolError):
            parse_sched_credit(parse(bad))
    with pytest.raises(ProtocolError):
        parse_settings(parse("(settings (vcpus 3) (max_vcpus 2))"))


@given(st.lists(st.tuples(st.sampled_from(list(VcpuState)), st.integers(0, 10**15),
                          st.integers(0, 7)), min_size=1, max_size=4))
def test_vcpuinfo_round_trips(items: list[tuple[VcpuState, int, int]]) -> None:
    vcpus = tuple(VcpuInfo(n, state, ns, cpu, (True,) * 8)
                  for n, (state, ns, cpu) in enumerate(items))
    assert parse_vcpuinfo(_wire(vcpuinfo_record(vcpus))) == vcpus  # type: ignore[arg-type]


def test_vcpuinfo_as_xend_wrote_it() -> None:
    """PROTOCOL.md's shape: cpu_time in seconds, a cpumap of CPU numbers."""
    answer = parse("((vcpu (number 0) (online 1) (blocked 0) (running 1) (cpu_time 1.5) "
                   "(cpu 2) (cpumap (0 2))) (vcpu (number 1) (online 1) (blocked 1) "
                   "(running 0) (cpu_time 0.25) (cpu 0) (cpumap (0 1 2 3))))")
    assert parse_vcpuinfo(answer) == (
        VcpuInfo(0, VcpuState.RUNNING, 1_500_000_000, 2, (True, False, True, False)),
        VcpuInfo(1, VcpuState.BLOCKED, 250_000_000, 0, (True, True, True, True)))
    for bad in ("((cpu (number 0)))", "((vcpu (number 0)))",
                "((vcpu (number 0) (cpu 0) (cpumap (99999))))"):
        with pytest.raises(ProtocolError):
            parse_vcpuinfo(parse(bad))
