"""xvirt's statistics (:class:`xvirt.DomainStats`) in libvirt-python's shapes, on
xvirt's own hosts: the keys, types and order libvirt gives, so a script reading them
cannot tell (over a ``libvirt:`` URI libvirt answers itself, _passthrough.py).

What each call gives, checked against libvirt 9.0 (its documentation of
virConnectGetAllDomainStats, libvirt-python 9.0 on the test driver and on QEMU, and
the Xen driver's, libxl's, sources):

* ``getAllDomainStats``/``domainListGetStats`` records: per group, in libvirt's group
  order (state, cpu, balloon, vcpu, net, block) and key order, the keys the host has
  figures for (:func:`stats_record`). A figure the host does not report is left out, as
  libvirt leaves out what a driver lacks; a group the domain did not answer in time is
  left out whole, as libvirt's NOWAIT leaves out what a busy guest would make it wait for.
* ``blockStats``: ``(rd_req, rd_bytes, wr_req, wr_bytes, errs)``, -1 for a figure not
  reported (libvirt's convention for that struct); ``blockStatsFlags``: the reported
  figures under libvirt's typed-parameter names; ``blockInfo``: ``[capacity,
  allocation, physical]``. A disk is named by its target (``xvda``) or, with a leading
  ``/``, its unambiguous source path, as libvirt's virDomainDiskByName; ``""`` is the sum
  of every disk, as libvirt's Xen (and QEMU) driver gives it.
* ``interfaceStats``: ``(rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets,
  tx_errs, tx_drop)`` from the guest's view; a NIC is named by its host-side device
  (``vif3.0``) or its MAC, as libvirt's virDomainNetFind.
* ``memoryStats``: ``actual`` and the guest's own figures where its balloon driver
  reports them, under virDomainMemoryStatTags' names.
* ``getCPUStats``: ``[{'cpu_time', 'user_time', 'system_time'}]`` for the total; per
  host CPU ``{'cpu_time'}`` (see :func:`per_cpu`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xvirt.compat import _constants as c
from xvirt.model import VcpuInfo
from xvirt.stats import BalloonStats, BlockStats, CpuStats, DomainStats, NetStats, StatGroup

__all__ = [
    "GROUP_BITS",
    "SUPPORTED_STATS",
    "block_info",
    "block_params",
    "block_tuple",
    "cpu_total",
    "find_disk",
    "find_nic",
    "groups_of",
    "interface_tuple",
    "memory_stats",
    "per_cpu",
    "stats_record",
]

#: Each group's libvirt bit (virDomainStatsTypes), in libvirt's order of groups.
GROUP_BITS: Mapping[StatGroup, int] = {
    StatGroup.STATE: c.VIR_DOMAIN_STATS_STATE,
    StatGroup.CPU: c.VIR_DOMAIN_STATS_CPU_TOTAL,
    StatGroup.BALLOON: c.VIR_DOMAIN_STATS_BALLOON,
    StatGroup.VCPU: c.VIR_DOMAIN_STATS_VCPU,
    StatGroup.NET: c.VIR_DOMAIN_STATS_INTERFACE,
    StatGroup.BLOCK: c.VIR_DOMAIN_STATS_BLOCK,
}
#: The groups xvirt's hosts fill; the others (perf, iothread, memory, dirtyrate, vm) a
#: Xen host has not, and libvirt leaves out what a driver lacks.
SUPPORTED_STATS = sum(GROUP_BITS.values())

#: virDomainMemoryStatTags' names (libvirt-python's memoryStats keys) and the same
#: figures' ``balloon.*`` keys, in libvirt's order.
_BALLOON_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("swap_in_kib", "swap_in", "balloon.swap_in"),
    ("swap_out_kib", "swap_out", "balloon.swap_out"),
    ("major_faults", "major_fault", "balloon.major_fault"),
    ("minor_faults", "minor_fault", "balloon.minor_fault"),
    ("unused_kib", "unused", "balloon.unused"),
    ("available_kib", "available", "balloon.available"),
    ("usable_kib", "usable", "balloon.usable"),
    ("disk_caches_kib", "disk_caches", "balloon.disk_caches"),
    ("rss_kib", "rss", "balloon.rss"),
)
#: BlockStats' fields after the name and path, as ``block.<n>.*`` keys (the documented
#: order, QEMU's); a field that is None is left out.
_BLOCK_KEYS: tuple[tuple[str, str], ...] = (
    ("rd_reqs", "rd.reqs"), ("rd_bytes", "rd.bytes"), ("rd_time_ns", "rd.times"),
    ("wr_reqs", "wr.reqs"), ("wr_bytes", "wr.bytes"), ("wr_time_ns", "wr.times"),
    ("fl_reqs", "fl.reqs"), ("fl_time_ns", "fl.times"), ("errors", "errors"),
    ("allocation_bytes", "allocation"), ("capacity_bytes", "capacity"),
    ("physical_bytes", "physical"),
)
#: blockStatsFlags' typed parameters (VIR_DOMAIN_BLOCK_STATS_*), in the order libvirt's
#: drivers give them.
_BLOCK_PARAMS: tuple[tuple[str, str], ...] = (
    ("wr_bytes", "wr_bytes"), ("wr_reqs", "wr_operations"), ("rd_bytes", "rd_bytes"),
    ("rd_reqs", "rd_operations"), ("fl_reqs", "flush_operations"),
    ("wr_time_ns", "wr_total_times"), ("rd_time_ns", "rd_total_times"),
    ("fl_time_ns", "flush_total_times"), ("errors", "errs"),
)
_NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop",
               "tx_bytes", "tx_packets", "tx_errs", "tx_drop")
_NET_KEYS = ("rx.bytes", "rx.pkts", "rx.errs", "rx.drop",
             "tx.bytes", "tx.pkts", "tx.errs", "tx.drop")
#: A MAC address as libvirt's virMacAddrParse takes it: six octets of one or two hex digits.
_MAC = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}")


def groups_of(bits: int) -> frozenset[StatGroup]:
    """The groups libvirt's stats ``bits`` ask for (bits of groups xvirt lacks ignored)."""
    return frozenset(g for g, bit in GROUP_BITS.items() if bits & bit)


def stats_record(bits: int, stats: DomainStats, state: int | None,
                 reason: int) -> dict[str, Any]:
    """One domain's getAllDomainStats record for the groups ``bits`` asks: ``state``
    libvirt's virDomainState (None: not answered), ``reason`` its reason."""
    record: dict[str, Any] = {}
    if bits & c.VIR_DOMAIN_STATS_STATE and state is not None:
        record["state.state"] = state
        record["state.reason"] = reason
    if bits & c.VIR_DOMAIN_STATS_CPU_TOTAL and stats.cpu is not None:
        _cpu_keys(record, stats.cpu)
    if bits & c.VIR_DOMAIN_STATS_BALLOON and stats.balloon is not None:
        _balloon_keys(record, stats.balloon)
    if bits & c.VIR_DOMAIN_STATS_VCPU and stats.vcpus is not None:
        # The online vCPUs; DomainStats does not carry the domain's maximum (a control
        # request per domain), so the maximum said is the online count, as before.
        record["vcpu.current"] = len(stats.vcpus)
        record["vcpu.maximum"] = len(stats.vcpus)
        for vcpu in stats.vcpus:
            record[f"vcpu.{vcpu.number}.state"] = vcpu.state.value
            record[f"vcpu.{vcpu.number}.time"] = vcpu.time_ns
    if bits & c.VIR_DOMAIN_STATS_INTERFACE and stats.nets is not None:
        record["net.count"] = len(stats.nets)
        for n, nic in enumerate(stats.nets):
            record[f"net.{n}.name"] = nic.name
            for field, key in zip(_NET_FIELDS, _NET_KEYS, strict=True):
                record[f"net.{n}.{key}"] = getattr(nic, field)
    if bits & c.VIR_DOMAIN_STATS_BLOCK and stats.blocks is not None:
        record["block.count"] = len(stats.blocks)
        for n, disk in enumerate(stats.blocks):
            _block_keys(record, f"block.{n}.", disk)
    return record


def _cpu_keys(record: dict[str, Any], cpu: CpuStats) -> None:
    record["cpu.time"] = cpu.time_ns
    if cpu.user_ns is not None:
        record["cpu.user"] = cpu.user_ns
    if cpu.system_ns is not None:
        record["cpu.system"] = cpu.system_ns


def _balloon_keys(record: dict[str, Any], balloon: BalloonStats) -> None:
    record["balloon.current"] = balloon.current_kib
    record["balloon.maximum"] = balloon.maximum_kib
    for field, _tag, key in _BALLOON_FIGURES:
        value = getattr(balloon, field)
        if value is not None:
            record[key] = value


def _block_keys(record: dict[str, Any], prefix: str, disk: BlockStats) -> None:
    record[prefix + "name"] = disk.name
    if disk.path is not None:  # libvirt omits it for network sources and empty drives
        record[prefix + "path"] = disk.path
    for field, key in _BLOCK_KEYS:
        value = getattr(disk, field)
        if value is not None:
            record[prefix + key] = value


# -- the per-domain calls --------------------------------------------------------------


def find_disk(blocks: Sequence[BlockStats], path: str) -> BlockStats | None:
    """The disk ``path`` names, as libvirt's virDomainDiskByName finds it: by target
    (``xvda``) unless it starts with ``/``, else by source path, which must then be
    unambiguous; ``""``: every disk summed (libvirt's Xen and QEMU drivers' summary)."""
    if path == "":
        return _summed(blocks)
    if not path.startswith("/"):
        return next((b for b in blocks if b.name == path), None)
    found = [b for b in blocks if b.path == path]
    return found[0] if len(found) == 1 else None


def _sum(values: Iterable[int | None]) -> int | None:
    """The sum of figures every disk reports; None when one does not."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _summed(blocks: Sequence[BlockStats]) -> BlockStats:
    def total(field: str) -> int | None:
        return _sum(getattr(b, field) for b in blocks)

    def counted(field: str) -> int:
        return sum(getattr(b, field) for b in blocks)

    return BlockStats(
        "", None, counted("rd_reqs"), counted("rd_bytes"), total("rd_time_ns"),
        counted("wr_reqs"), counted("wr_bytes"), total("wr_time_ns"),
        fl_reqs=total("fl_reqs"), fl_time_ns=total("fl_time_ns"), errors=total("errors"))


def block_tuple(disk: BlockStats) -> tuple[int, int, int, int, int]:
    """blockStats: ``(rd_req, rd_bytes, wr_req, wr_bytes, errs)``; ``errs`` -1 when the
    host does not count errors (virDomainBlockStatsStruct's "not supported")."""
    return (disk.rd_reqs, disk.rd_bytes, disk.wr_reqs, disk.wr_bytes,
            -1 if disk.errors is None else disk.errors)


def block_params(disk: BlockStats) -> dict[str, int]:
    """blockStatsFlags: the figures the host reports, under VIR_DOMAIN_BLOCK_STATS_*."""
    return {name: value for field, name in _BLOCK_PARAMS
            if (value := getattr(disk, field)) is not None}


def block_info(disk: BlockStats) -> list[int] | None:
    """blockInfo: ``[capacity, allocation, physical]``; None when the host does not
    report a disk's sizes (virDomainBlockInfo has no "not reported")."""
    sizes = (disk.capacity_bytes, disk.allocation_bytes, disk.physical_bytes)
    if any(size is None for size in sizes):
        return None
    return [size for size in sizes if size is not None]


def find_nic(nets: Sequence[NetStats], device: str) -> NetStats | None:
    """The NIC ``device`` names, as libvirt's virDomainNetFind: by MAC when it parses as
    one, else by host-side device name."""
    if _MAC.fullmatch(device):
        octets = [int(part, 16) for part in device.split(":")]
        return next((n for n in nets if n.mac is not None
                     and [int(part, 16) for part in n.mac.split(":")] == octets), None)
    return next((n for n in nets if n.name == device), None)


def interface_tuple(nic: NetStats) -> tuple[int, int, int, int, int, int, int, int]:
    """interfaceStats: rx bytes, packets, errors, drops, then tx, from the guest's view."""
    return (nic.rx_bytes, nic.rx_packets, nic.rx_errs, nic.rx_drop,
            nic.tx_bytes, nic.tx_packets, nic.tx_errs, nic.tx_drop)


def memory_stats(balloon: BalloonStats) -> dict[str, int]:
    """memoryStats: ``actual`` (the balloon's current size) and the guest's figures that
    its balloon driver reports, in KiB (faults counted)."""
    found = {"actual": balloon.current_kib}
    for field, tag, _key in _BALLOON_FIGURES:
        value = getattr(balloon, field)
        if value is not None:
            found[tag] = value
    return found


def cpu_total(cpu: CpuStats) -> list[dict[str, int]]:
    """getCPUStats(True): one dict of the domain's CPU time, all of it and (where the
    host says) in the guest's user mode and its kernel."""
    total = {"cpu_time": cpu.time_ns}
    if cpu.user_ns is not None:
        total["user_time"] = cpu.user_ns
    if cpu.system_ns is not None:
        total["system_time"] = cpu.system_ns
    return [total]


def per_cpu(vcpus: Sequence[VcpuInfo], host_cpus: int) -> list[dict[str, int]]:
    """getCPUStats(False): per host CPU, as libvirt-python documents it, the CPU time
    the domain's vCPUs spent on it: each vCPU's time is counted on the CPU it runs on
    (``vcpus()``'s fourth figure), so the entries sum to the vCPUs' time, which is the
    domain's. A Xen host keeps a vCPU on its CPU while the domain keeps its ID."""
    times = [0] * host_cpus
    for vcpu in vcpus:
        if 0 <= vcpu.cpu < host_cpus:
            times[vcpu.cpu] += vcpu.cpu_time_ns
    return [{"cpu_time": t} for t in times]
