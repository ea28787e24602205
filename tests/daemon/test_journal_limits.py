"""Refused requests cannot fill the daemon: a refusal's journal entry is bounded
whatever the request carried, refusals are counted by kind, and the journal is read
a page at a time.

The attack (issue 16, item 3): POSTs without a token to the administration route,
each naming a 1 MiB op. Each was journalled whole: 60 of them added 94 MB of
resident memory and 64 MB to the state file, and one read of the journal answered
61 MB. Here 20 of them, on a real daemon, must leave each entry, the state file, the
daemon's memory and the journal's answer small.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from xvirt.clock import ManualClock
from xvirt.daemon.control import JOURNAL_PAGE, JOURNAL_PAGE_MAX, ControlApp, ControlSettings
from xvirt.host.hypervisor import HostModel, JournalEntry
from xvirt.testing.daemon import DaemonProcess
from xvirt.wire import sxp

FLOOD = 20
HUGE_OP = '(evil "op" \u00e9\n' + "A" * (1024 * 1024 - 64)  # within the 1 MiB body limit
# The op kept: a fixed word, then the first 32 characters, escaped, and how many more.
KEPT_OP = ('host:unknown:(evil "op" \\xe9\\n' + "A" * 19
           + f"...(+{len(HUGE_OP) - 32} chars)")
ENTRY_MAX = 128 + 64 + 512 + 32  # characters of op, uuid, outcome and origin at most


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _state_mib(state_dir: Path) -> float:
    return sum(p.stat().st_size for p in state_dir.glob("host.sqlite*")) / 2**20


def _entries(response: httpx.Response) -> list[sxp.Sx]:
    doc = sxp.parse(response.content)
    assert isinstance(doc, list) and doc[0] == "journal"
    return doc[1:]


def test_a_flood_of_refusals_with_huge_op_names_stays_small(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(tcp=True, token=True)
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                         base_url="http://localhost", timeout=30.0)
    with admin, httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30.0) as tcp:
        before_entries = len(_entries(admin.get("/xvirt/host/journal")))
        rss_before, state_before = _rss_mib(daemon.pid), _state_mib(daemon.state_dir)
        for _ in range(FLOOD):
            r = tcp.post("/xvirt/host", data={"op": HUGE_OP})
            assert r.status_code == 401 and r.headers["X-Xvirt-Error"] == "auth", r.text
        rss_growth = _rss_mib(daemon.pid) - rss_before
        state_growth = _state_mib(daemon.state_dir) - state_before

        answer = admin.get("/xvirt/host/journal")
        entries = _entries(answer)[before_entries:]
        assert len(entries) == FLOOD
        for e in entries:
            assert sxp.value(e, "entry/op") == KEPT_OP
            assert sxp.value(e, "entry/outcome") == "refused: not authenticated (no token)"
        # the journal's whole answer, every entry of it, is a few kilobytes (was 61 MB)
        assert len(answer.content) < 16 * 1024, len(answer.content)
        refusals = sxp.parse(admin.get("/xvirt/host/refusals").content)
        assert refusals == ["refusals", ["auth:no-token", str(FLOOD)]]
    # what the state file holds of the journal, exactly: bounded entries
    with sqlite3.connect(f"file:{daemon.state_dir / 'host.sqlite'}?mode=ro", uri=True) as db:
        (longest,) = db.execute("SELECT max(length(op) + length(uuid) + length(outcome)"
                                " + length(origin)) FROM journal").fetchone()
    assert longest <= ENTRY_MAX
    # was 1.5 MB of memory and 1 MB of state file per request: now SQLite's pages only
    assert state_growth < 2.0, state_growth
    assert rss_growth < 8.0, rss_growth


# -- in process: the bounds themselves ------------------------------------------------------


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock) -> HostModel:
    return make_host_model(clock=clock)


def _client(host: HostModel, *, trusted: bool, token: str | None = "t" * 20,
            settings: ControlSettings | None = None) -> httpx.Client:
    app = ControlApp(host, settings or ControlSettings(token=token), trusted=trusted)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost")


def test_every_field_of_a_journal_entry_is_bounded(host: HostModel) -> None:
    huge = "x" * 1_000_000
    host.journal_refusal(huge, -1, huge, huge)
    (entry,) = host.journal()[-1:]
    assert len(entry.op) <= 128 and len(entry.uuid) <= 64 and len(entry.outcome) <= 512
    assert entry.op.startswith("x" * 100) and entry.op.endswith(")")
    host.journal_refusal("pause", 3, "u", "ok")  # what fits is kept as it is
    assert host.journal()[-1] == JournalEntry("pause", 3, "u", "refused: ok", "client")


def test_unknown_ops_are_journalled_as_a_fixed_word_and_an_escaped_prefix(
        host: HostModel) -> None:
    tcp = _client(host, trusted=False)
    for op, kept in [("create", "host:create"), ("frobnicate", "host:unknown:frobnicate"),
                     ("a\tb\u2028c", "host:unknown:a\\tb\\u2028c"),
                     ("B" * 40, "host:unknown:" + "B" * 32 + "...(+8 chars)")]:
        assert tcp.post("/xvirt/host", data={"op": op}).status_code == 401
        assert host.journal()[-1].op == kept


def test_refusals_are_counted_by_kind_across_listeners(host: HostModel) -> None:
    settings = ControlSettings(token="t" * 20)
    tcp = _client(host, trusted=False, settings=settings)
    unix = _client(host, trusted=True, settings=settings)
    for _ in range(3):
        assert tcp.post("/xvirt/host", data={"op": "create"}).status_code == 401
    assert tcp.post("/xvirt/host", data={"op": "create"}, headers={
        "Authorization": "Bearer wrong"}).status_code == 401
    assert unix.post("/xvirt/host", data={"op": "nope"}).status_code == 501
    assert unix.get("/xend/domain/ghost").status_code == 404
    assert unix.post("/xvirt/host", data={"op": "pause", "domid": "x"}).status_code == 400
    assert unix.get("/xend/domain").status_code == 200  # answers are not refusals
    read_only = _client(host, trusted=False, token=None)  # its own settings, its own count
    assert read_only.post("/xvirt/host", data={"op": "create"}).status_code == 401
    counts = sxp.parse(tcp.get("/xvirt/host/refusals").content)
    assert counts == ["refusals", ["auth:no-token", "3"], ["auth:wrong-token", "1"],
                      ["invalid", "1"], ["no-domain", "1"], ["unsupported", "1"]]


def _page(c: httpx.Client, query: str) -> tuple[list[int], dict[str, str]]:
    r = c.get(f"/xvirt/host/journal{query}")
    assert r.status_code == 200, r.text
    numbers = [int(sxp.value(e, "entry/n") or "-1") for e in _entries(r)]
    return numbers, {k: r.headers[f"X-Xvirt-Journal-{k}"] for k in ("First", "Last", "Next")}


def test_the_journal_is_read_a_page_at_a_time(make_host_model: Callable[..., HostModel],
                                              clock: ManualClock) -> None:
    host = make_host_model(clock=clock, journal_capacity=JOURNAL_PAGE + 500)
    with host.batch():
        for i in range(JOURNAL_PAGE + 700):  # 200 fall off the front
            host.journal_refusal(f"op{i}", -1, "", "test")
    c = _client(host, trusted=True)
    numbers, head = _page(c, "")  # the default page: the oldest held, JOURNAL_PAGE of them
    assert numbers == list(range(201, 201 + JOURNAL_PAGE))
    assert head == {"First": "201", "Last": str(JOURNAL_PAGE + 700),
                    "Next": str(200 + JOURNAL_PAGE)}
    numbers, head = _page(c, f"?after={head['Next']}")
    assert numbers == list(range(201 + JOURNAL_PAGE, 701 + JOURNAL_PAGE))
    assert head["Next"] == head["Last"]
    numbers, head = _page(c, f"?after={head['Last']}")
    assert numbers == [] and head["Next"] == head["Last"]
    numbers, head = _page(c, "?after=5&limit=3")  # before the oldest held: from the oldest
    assert numbers == [201, 202, 203] and head["Next"] == "203"
    entries = _entries(c.get("/xvirt/host/journal?after=202&limit=1"))
    assert sxp.value(entries[0], "entry/op") == "op202"  # numbered from 1: op0 is n 1
    for bad in ("?limit=0", f"?limit={JOURNAL_PAGE_MAX + 1}", "?after=-1", "?after=x"):
        assert c.get(f"/xvirt/host/journal{bad}").status_code == 400, bad


def test_a_refused_commit_gives_its_journal_numbers_again(
        make_daemon: Callable[..., DaemonProcess]) -> None:
    """The numbering follows the journal through a rollback: entries of a change the
    store refused are gone, and the next entries take their numbers."""
    daemon = make_daemon(tcp=False, token=False)
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                         base_url="http://localhost", timeout=30.0)
    with admin:
        last = int(admin.get("/xvirt/host/journal").headers["X-Xvirt-Journal-Last"])
        assert admin.post("/xvirt/host", data={"op": "refuse_commits", "count": "1"}
                          ).status_code == 200
        assert admin.post("/xvirt/host", data={"op": "create", "name": "g", "memory_kib":
                                               "65536", "vcpus": "1"}).status_code == 500
        assert admin.post("/xvirt/host", data={"op": "create", "name": "g", "memory_kib":
                                               "65536", "vcpus": "1"}).status_code == 200
        r = admin.get(f"/xvirt/host/journal?after={last}")
        assert [(sxp.value(e, "entry/n"), sxp.value(e, "entry/op")) for e in _entries(r)] == [
            (str(last + 1), "create")]
