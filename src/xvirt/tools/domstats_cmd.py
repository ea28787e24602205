"""``xvirt domstats``: virsh's ``domstats``, from :meth:`xvirt.Connection.domain_stats`.

virsh's layout (libvirt 9.0): ``Domain: 'NAME'``, then one ``  key=value`` line per
figure, under libvirt's keys and in libvirt's order of groups (state, cpu-total,
balloon, vcpu, interface, block) and of keys; a blank line between domains and
virsh's closing one. A figure the host does not report is left out, never printed
as 0, as libvirt leaves out what a driver lacks; a group a domain did not answer in
time is left out whole. Domains that are not running have no statistics: virsh lists
them with their state only, and so does this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import click

import xvirt
from xvirt.stats import StatGroup
from xvirt.tools import format as fmt
from xvirt.tools import virsh_words
from xvirt.tools.common import DomainCommand, connection, json_option, uri_option
from xvirt.tools.domain_cmds import looked_up

__all__ = ["domstats_command", "stats_lines", "stats_record"]

#: virsh's group options, in libvirt's order, and the group each asks for.
GROUP_OPTIONS: tuple[tuple[str, StatGroup, str], ...] = (
    ("state", StatGroup.STATE, "report domain state"),
    ("cpu-total", StatGroup.CPU, "report domain physical cpu usage"),
    ("balloon", StatGroup.BALLOON, "report domain balloon statistics"),
    ("vcpu", StatGroup.VCPU, "report domain virtual cpu information"),
    ("interface", StatGroup.NET, "report domain network interface information"),
    ("block", StatGroup.BLOCK, "report domain block device statistics"),
)

#: virsh's state filters, by the libvirt group they belong to: within a group any may
#: match, and a domain must match every group given (libvirt's rule).
_ACTIVITY: dict[str, Callable[[str], bool]] = {
    "active": lambda word: word != "shut off",
    "inactive": lambda word: word == "shut off",
}
_STATES: dict[str, Callable[[str], bool]] = {
    "running": lambda word: word == "running",
    "paused": lambda word: word == "paused",
    "shutoff": lambda word: word == "shut off",
    "other": lambda word: word not in ("running", "paused", "shut off"),
}

_BALLOON_KEYS = (("swap_in_kib", "swap_in"), ("swap_out_kib", "swap_out"),
                 ("major_faults", "major_fault"), ("minor_faults", "minor_fault"),
                 ("unused_kib", "unused"), ("available_kib", "available"),
                 ("usable_kib", "usable"), ("disk_caches_kib", "disk_caches"),
                 ("rss_kib", "rss"))
_NET_KEYS = (("rx_bytes", "rx.bytes"), ("rx_packets", "rx.pkts"), ("rx_errs", "rx.errs"),
             ("rx_drop", "rx.drop"), ("tx_bytes", "tx.bytes"), ("tx_packets", "tx.pkts"),
             ("tx_errs", "tx.errs"), ("tx_drop", "tx.drop"))
_BLOCK_KEYS = (("rd_reqs", "rd.reqs"), ("rd_bytes", "rd.bytes"), ("rd_time_ns", "rd.times"),
               ("wr_reqs", "wr.reqs"), ("wr_bytes", "wr.bytes"), ("wr_time_ns", "wr.times"),
               ("fl_reqs", "fl.reqs"), ("fl_time_ns", "fl.times"), ("errors", "errors"),
               ("allocation_bytes", "allocation"), ("capacity_bytes", "capacity"),
               ("physical_bytes", "physical"))

Record = dict[str, int | str]


def stats_record(stats: xvirt.DomainStats, *, reason: int = 0,
                 max_vcpus: int | None = None) -> Record:
    """One domain's figures under libvirt's keys, in libvirt's order: those of the
    groups ``stats`` holds, leaving out every figure that is None. ``reason``:
    libvirt's number for why the domain is in its state (0: unknown); ``max_vcpus``:
    ``vcpu.maximum``, left out when None."""
    record: Record = {}
    if stats.state is not None:
        record["state.state"] = virsh_words.state_code(stats.state)
        record["state.reason"] = reason
    if stats.cpu is not None:
        _put(record, "cpu.", (("time", stats.cpu.time_ns), ("user", stats.cpu.user_ns),
                              ("system", stats.cpu.system_ns)))
    if stats.balloon is not None:
        b = stats.balloon
        record["balloon.current"] = b.current_kib
        record["balloon.maximum"] = b.maximum_kib
        _put(record, "balloon.", ((key, getattr(b, f)) for f, key in _BALLOON_KEYS))
    if stats.vcpus is not None:
        record["vcpu.current"] = len(stats.vcpus)
        _put(record, "vcpu.", (("maximum", max_vcpus),))
        for vcpu in stats.vcpus:
            record[f"vcpu.{vcpu.number}.state"] = vcpu.state.value
            record[f"vcpu.{vcpu.number}.time"] = vcpu.time_ns
    if stats.nets is not None:
        record["net.count"] = len(stats.nets)
        for n, nic in enumerate(stats.nets):
            record[f"net.{n}.name"] = nic.name
            _put(record, f"net.{n}.", ((key, getattr(nic, f)) for f, key in _NET_KEYS))
    if stats.blocks is not None:
        record["block.count"] = len(stats.blocks)
        for n, disk in enumerate(stats.blocks):
            _put(record, f"block.{n}.", (("name", disk.name), ("path", disk.path)))
            _put(record, f"block.{n}.", ((key, getattr(disk, f)) for f, key in _BLOCK_KEYS))
    return record


def _put(record: Record, prefix: str, figures: Iterable[tuple[str, int | str | None]]) -> None:
    for key, value in figures:
        if value is not None:
            record[prefix + key] = value


def stats_lines(name: str, record: Record) -> str:
    """One domain as virsh prints it: its name line and a line per figure."""
    lines = [f"Domain: '{fmt.safe_text(name)}'\n"]
    lines += [f"  {key}={fmt.safe_text(str(value))}\n" for key, value in record.items()]
    return "".join(lines)


def _options(command: Any) -> Any:
    """virsh's group and filter options."""
    for option, _group, text in reversed(GROUP_OPTIONS):
        command = click.option(f"--{option}", f"group_{option.replace('-', '_')}",
                               is_flag=True, help=text.capitalize() + ".")(command)
    return command


@click.command("domstats", cls=DomainCommand)
@click.argument("domains", nargs=-1, metavar="[DOMAIN]...")
@_options
@click.option("--list-active", "list_active", is_flag=True, help="Only running domains.")
@click.option("--list-inactive", "list_inactive", is_flag=True,
              help="Only domains that are not running.")
@click.option("--list-running", "list_running", is_flag=True,
              help="Only domains in the running state.")
@click.option("--list-paused", "list_paused", is_flag=True, help="Only paused domains.")
@click.option("--list-shutoff", "list_shutoff", is_flag=True, help="Only shut-off domains.")
@click.option("--list-other", "list_other", is_flag=True,
              help="Only domains in other states (idle, in shutdown, crashed...).")
@click.option("--raw", is_flag=True,
              help="Accepted as virsh accepts it; virsh 9.0 prints the same without it.")
@json_option
@uri_option
def domstats_command(domains: tuple[str, ...], raw: bool, as_json: bool, uri: str | None,
                     **flags: bool) -> None:
    """Print statistics of running domains, in virsh's groups.

    Without group options, every group; without DOMAIN, every domain: the running
    ones in ID order, then those shut off (with their state only) by name. The
    --list-* options keep the domains in those states, named or not. JSON: a list of
    {name, uuid, id, stats: {libvirt's key: value}, missing: [groups not answered]}."""
    groups = frozenset(g for option, g, _ in GROUP_OPTIONS
                       if flags[f"group_{option.replace('-', '_')}"]) or frozenset(StatGroup)
    filters = {k.removeprefix("list_") for k, on in flags.items()
               if k.startswith("list_") and on}
    asked = groups | {StatGroup.STATE} if filters else groups  # the filters need the state
    with connection(uri) as conn:
        rows = [(s, most) for s, most in _gather(conn, domains, asked)
                if _chosen(conn, s, filters)]
        reasons = virsh_words.libvirt_reasons(
            conn, [(s.uuid, s.state) for s, _ in rows if s.state is not None]) \
            if StatGroup.STATE in groups else {}
    shown = [(s if StatGroup.STATE in groups else replace(s, state=None), most)
             for s, most in rows]
    records = [(s, stats_record(s, reason=reasons.get(s.uuid, 0), max_vcpus=most))
               for s, most in shown]
    if as_json:
        click.echo(fmt.to_json([
            {"name": s.name, "uuid": s.uuid, "id": s.id, "stats": record,
             "missing": sorted(g.value for g in s.missing & groups)}
            for s, record in records]), nl=False)
        return
    click.echo("\n".join(stats_lines(s.name, record) for s, record in records) + "\n",
               nl=False)


Row = tuple[xvirt.DomainStats, int | None]  # a domain's figures and its most vCPUs


def _gather(conn: xvirt.Connection, refs: Sequence[str],
            groups: frozenset[StatGroup]) -> list[Row]:
    """The figures of the domains ``refs`` names, in that order (none: every domain,
    running ones first); a domain that is not running gets its state only, as virsh
    gives it; one that started or went away meanwhile is left out."""
    if refs:
        wanted = [looked_up(conn, ref) for ref in refs]
        running = {s.uuid: s for s in conn.domain_stats(groups, wanted)}
        found = [s for d in wanted if (s := running.get(d.uuid) or _not_running(d, groups))]
    else:
        found = conn.domain_stats(groups)
        seen = {s.uuid for s in found}
        found += [_stopped(xvirt.Identity(d.uuid, d.name, -1), groups)
                  for d in conn.list_defined() if d.uuid not in seen]
    if StatGroup.VCPU not in groups:
        return [(s, None) for s in found]
    return [(s, _max_vcpus(conn, s)) for s in found]


def _not_running(dom: xvirt.Domain, groups: frozenset[StatGroup]) -> xvirt.DomainStats | None:
    """:func:`_stopped` for a domain the statistics did not cover; None if it is gone,
    or runs after all (it started meanwhile: it had no figures to give)."""
    try:
        ident = dom.identity()
    except xvirt.NoDomainError:
        return None
    return _stopped(ident, groups) if ident.id < 0 else None


def _stopped(ident: xvirt.Identity, groups: frozenset[StatGroup]) -> xvirt.DomainStats:
    """What virsh shows of a domain that is not running: its state, if asked for."""
    state = xvirt.DomainState.SHUTOFF if StatGroup.STATE in groups else None
    return xvirt.DomainStats(ident.uuid, ident.name, None, state=state)


def _max_vcpus(conn: xvirt.Connection, stats: xvirt.DomainStats) -> int | None:
    """The most vCPUs a running domain may bring online (one control request); None
    where the host does not say, or the domain is gone or not running."""
    if stats.vcpus is None:
        return None
    try:
        return conn.lookup_by_uuid(stats.uuid).settings().max_vcpus
    except (xvirt.NoDomainError, xvirt.UnsupportedError):
        return None


def _chosen(conn: xvirt.Connection, stats: xvirt.DomainStats, filters: set[str]) -> bool:
    """Whether the domain passes virsh's --list-* filters (all do when none is given).
    A running domain that did not answer its state in time is asked for it once more;
    one gone meanwhile passes none."""
    if not filters:
        return True
    state = stats.state
    if state is None:
        try:
            state = conn.lookup_by_uuid(stats.uuid).info().state
        except xvirt.NoDomainError:
            return False
    word = fmt.state_word(state)
    for group in (_ACTIVITY, _STATES):
        tests = [test for name, test in group.items() if name in filters]
        if tests and not any(test(word) for test in tests):
            return False
    return True
