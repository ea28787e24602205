"""What a monitoring sample costs on real QEMU guests, call by call (issue 17, item 4).

Boots N tiny guests (no OS) under a private libvirtd run as ``nobody``
(``xvirt.testing.qemu.DaemonQemu``: TCG unless that user can open /dev/kvm; the
output says which), then, interleaved over 7 runs, the median of one sample of each
way to read every guest's state, CPU time, memory and vCPUs, beside the bulk call
the sample used before (whose cpu-total, balloon and vcpu groups ask every guest's
QEMU monitor). Needs root and qemu-system-x86; prints a markdown table.

    .venv/bin/python benchmarks/qemu_sample_cost.py [GUESTS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import xvirt
from xvirt.testing.qemu import DaemonQemu

RUNS = 7


def main(argv: list[str]) -> int:
    guests = int(argv[1]) if len(argv) > 1 else 30
    host = DaemonQemu()
    try:
        host.boot_many(guests, prefix="q")
        time.sleep(3)  # past SeaBIOS
        lv = host.lv
        raw = lv.open(host.uri)
        conn = xvirt.open("libvirt:" + host.uri, readonly=True)
        active = lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        nowait = active | lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        monitor = (lv.VIR_DOMAIN_STATS_STATE | lv.VIR_DOMAIN_STATS_CPU_TOTAL
                   | lv.VIR_DOMAIN_STATS_BALLOON | lv.VIR_DOMAIN_STATS_VCPU)

        def naive_libvirt() -> None:
            for domid in raw.listDomainsID():
                raw.lookupByID(domid).info()

        def naive_xvirt() -> None:
            for domid in conn.list_domain_ids():
                dom = conn.lookup_by_id(domid)
                dom.info()
                dom.close()

        cases: dict[str, Callable[[], object]] = {
            "xvirt Connection.sample()": conn.sample,
            "listAllDomains(ACTIVE) + info() each":
                lambda: [d.info() for d in raw.listAllDomains(1)],
            "getAllDomainStats(STATE, NOWAIT) + info() each":
                lambda: [d.info() for d, _ in raw.getAllDomainStats(
                    lv.VIR_DOMAIN_STATS_STATE, nowait)],
            "getAllDomainStats(STATE, NOWAIT) alone":
                lambda: raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_STATE, nowait),
            "listAllDomains(ACTIVE) alone": lambda: raw.listAllDomains(1),
            "getAllDomainStats(STATE|CPU_TOTAL|BALLOON|VCPU), the former sample":
                lambda: raw.getAllDomainStats(monitor, active),
            "getAllDomainStats(CPU_TOTAL) alone":
                lambda: raw.getAllDomainStats(lv.VIR_DOMAIN_STATS_CPU_TOTAL, active),
            "naive loop, xvirt": naive_xvirt,
            "naive loop, libvirt-python": naive_libvirt,
        }
        for call in cases.values():
            call()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(RUNS):
            for name, call in cases.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        print(f"{guests} {host.accel} guests behind a private libvirtd "
              f"({host.uri.split('?')[0]}), median of {RUNS} interleaved runs:\n")
        print("| call | ms |\n|---|---:|")
        for name, spent in times.items():
            print(f"| {name} | {statistics.median(spent) * 1e3:.2f} |")
        conn.close()
        raw.close()
    finally:
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
