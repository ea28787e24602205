"""The full-screen view, driven in process through Textual's pilot on hosts whose
truth is known: keys, the delay prompt, domains that come, go and move, hosts that
do not answer, and a screen that stays alive while a host is slow.

The delay is an hour, so no refresh happens by itself: space (top's "refresh now")
makes each one, and the test waits for the refresh worker, never for time.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static
from textual.widgets._footer import FooterKey

import xvirt
from xvirt.clock import ManualClock
from xvirt.tools.top import Fleet
from xvirt.tools.top_model import HostFrame, key_lines
from xvirt.tools.top_screen import KEYS, HelpScreen, TopApp, help_text

HOUR = 3600.0
SIZE = (160, 50)

Scenario = Callable[[TopApp, Pilot[None]], Coroutine[Any, Any, None]]
pytestmark = pytest.mark.clock_start(1000.0)


@pytest.fixture
def lab(make_sim_host: Callable[..., xvirt.sim.Host], clock: ManualClock) -> xvirt.sim.Host:
    """A 64 GiB host: Domain-0, web1 (2 vCPUs at half load, 512 MiB) and db1 (4 at 3/4,
    1 GiB)."""
    host = make_sim_host(clock=clock, memory_kib=64 * 1024 * 1024)
    host.create("web1", memory_kib=524288, vcpus=2, load=0.5)
    host.create("db1", memory_kib=1048576, vcpus=4, load=0.75)
    return host


def drive(fetch: Callable[[], Sequence[HostFrame]], scenario: Scenario, *,
          sort: str = "cpu", iterations: int | None = None, cost: bool = False,
          size: tuple[int, int] = SIZE) -> TopApp:
    app = TopApp(fetch, delay_s=HOUR, sort=sort, iterations=iterations, cost=cost)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def watch(clock: ManualClock, *uris: str) -> Fleet:
    fleet = Fleet(list(uris), clock)
    fleet.connect(strict=False)
    return fleet


async def settle(app: TopApp, pilot: Pilot[None]) -> None:
    """Until the refresh under way (if any) is on the screen."""
    await app.workers.wait_for_complete()
    await pilot.pause()


async def refresh(app: TopApp, pilot: Pilot[None]) -> None:
    await pilot.press("space")
    await settle(app, pilot)


def rows(app: TopApp) -> list[dict[str, str]]:
    table: DataTable[Any] = app.query_one(DataTable)
    header = [str(c.label) for c in table.columns.values()]
    return [dict(zip(header, (str(c) for c in table.get_row_at(i)), strict=True))
            for i in range(table.row_count)]


def text_of(app: TopApp, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


def names(app: TopApp) -> list[str]:
    return [r["NAME"] for r in rows(app)]


# -- what is shown ---------------------------------------------------------------------------


def test_header_and_rows_blank_cpu_first_then_exact(lab: xvirt.sim.Host,
                                                     clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    seen: dict[str, object] = {}

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        seen["first"], seen["first_rows"] = text_of(app, "#summary"), rows(app)
        clock.advance(3)
        await refresh(app, pilot)
        seen["second"], seen["second_rows"] = text_of(app, "#summary"), rows(app)

    drive(fleet.refresh, scenario, cost=True)
    fleet.close()
    first = str(seen["first"])
    for part in (f"{lab.name}.sim"[:40], "8 CPUs", "64.0 GiB memory",
                 "memory used by domains 3.5 GiB (5.5%)", "3 domains: 3 running, 0 idle",
                 "%CPU -", "refresh cost: 2 control-plane requests, 1 data-plane call",
                 "delay 3600 s", "sorted by %CPU"):
        assert part in first
    assert {r["%CPU"] for r in seen["first_rows"]} == {"-"}  # type: ignore[attr-defined]
    assert "refresh cost: 0 control-plane requests, 1 data-plane call" in str(seen["second"])
    second = {r["NAME"]: r for r in seen["second_rows"]}  # type: ignore[attr-defined]
    assert [r["NAME"] for r in seen["second_rows"]] == ["db1", "web1", "Domain-0"]  # type: ignore[attr-defined]
    assert (second["db1"]["%CPU"], second["web1"]["%CPU"]) == ("37.5", "12.5")
    assert second["web1"] == {"ID": "1", "S": "R", "RDRQ": "-", "WRRQ": "-",
                              "RXBY": "-", "TXBY": "-", "%CPU": "12.5", "%MEM": "0.8",
                              "MEM(k)": "524288", "VCPUS": "2", "TIME": "0:03.00",
                              "NAME": "web1"}
    host_share = float(str(seen["second"]).split("%CPU ")[-1].split()[0])
    assert host_share == pytest.approx(sum(float(r["%CPU"]) for r in second.values()), abs=0.2)
    assert host_share > 50  # the host's share is the sum of its domains'


@pytest.mark.parametrize(("keys", "order", "label"), [
    ("c", ["db1", "web1", "Domain-0"], "%CPU"),
    ("P", ["db1", "web1", "Domain-0"], "%CPU"),
    ("m", ["Domain-0", "db1", "web1"], "memory"),
    ("M", ["Domain-0", "db1", "web1"], "memory"),
    ("t", ["db1", "web1", "Domain-0"], "CPU time"),
    ("T", ["db1", "web1", "Domain-0"], "CPU time"),
    ("i", ["Domain-0", "web1", "db1"], "ID"),
    ("n", ["Domain-0", "db1", "web1"], "name"),
])
def test_sort_keys(lab: xvirt.sim.Host, clock: ManualClock, keys: str, order: list[str],
                   label: str) -> None:
    fleet = watch(clock, lab.uri)
    got: dict[str, object] = {}

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        clock.advance(3)
        await refresh(app, pilot)
        start = "n" if keys in "cPtT" else "c"  # begin from another order than the one asked
        await pilot.press(start)
        assert names(app) != order
        await pilot.press(keys)
        got["names"], got["summary"] = names(app), text_of(app, "#summary")
        got["status"] = text_of(app, "#status")

    drive(fleet.refresh, scenario, sort="id")
    fleet.close()
    assert got["names"] == order
    assert f"sorted by {label}" in str(got["summary"])
    assert got["status"] == f"sorted by {label}"


def test_the_delay_prompt_takes_seconds_and_refuses_the_rest(lab: xvirt.sim.Host,
                                                             clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    seen: list[tuple[str, float, str]] = []

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        prompt = app.query_one(Input)
        assert not prompt.display
        await pilot.press("d")
        assert prompt.display and prompt.has_focus
        assert "now 3600" in prompt.placeholder
        await pilot.press("a", "b", "c", "enter")
        seen.append((text_of(app, "#status"), app.delay_s, text_of(app, "#summary")))
        assert not prompt.display  # closed; the keys are the screen's again
        await pilot.press("s")  # virt-top's other key for it
        await pilot.press(*"7200", "enter")
        seen.append((text_of(app, "#status"), app.delay_s, text_of(app, "#summary")))
        await pilot.press("d", "9", "escape")
        seen.append((text_of(app, "#status"), app.delay_s, text_of(app, "#summary")))
        await pilot.press("d", "-", "1", "enter")
        seen.append((text_of(app, "#status"), app.delay_s, text_of(app, "#summary")))

    drive(fleet.refresh, scenario)
    fleet.close()
    bad, good, cancelled, negative = seen
    assert bad[:2] == ("a delay is a number of seconds > 0, not 'abc'; the delay stays 3600 s",
                       HOUR)
    assert good[:2] == ("delay set to 7200 s", 7200.0) and "delay 7200 s" in good[2]
    assert cancelled[:2] == ("delay unchanged: 7200 s", 7200.0)
    assert negative[:2] == ("a delay is a number of seconds > 0, not '-1'; the delay stays "
                            "7200 s", 7200.0)


def test_domains_that_come_go_and_move_are_right_at_the_next_refresh(
        lab: xvirt.sim.Host, clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    views: list[dict[str, dict[str, str]]] = []
    web1 = next(r for r in lab.domains() if r.name == "web1")

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        lab.create("newcomer", vcpus=1, load=1.0)
        clock.advance(3)
        await refresh(app, pilot)
        views.append({r["NAME"]: r for r in rows(app)})
        lab.migrate(web1.id)
        clock.advance(3)
        await refresh(app, pilot)
        views.append({r["NAME"]: r for r in rows(app)})
        lab.destroy(next(r.id for r in lab.domains() if r.name == "newcomer"))
        await refresh(app, pilot)
        views.append({r["NAME"]: r for r in rows(app)})

    drive(fleet.refresh, scenario)
    fleet.close()
    came, moved, gone = views
    assert came["newcomer"]["%CPU"] == "-"
    assert moved["newcomer"]["%CPU"] == "12.5"
    new_id = next(r.id for r in lab.domains() if r.name == "web1")
    assert (moved["web1"]["ID"], moved["web1"]["%CPU"]) == (str(new_id), "12.5")  # by UUID
    assert str(web1.id) not in {r["ID"] for r in moved.values()}
    assert "newcomer" not in gone and set(gone) == {"Domain-0", "web1", "db1"}


def test_a_wedged_domain_is_a_row_marked_no_answer(lab: xvirt.sim.Host,
                                                    clock: ManualClock) -> None:
    lab.stall(next(r.id for r in lab.domains() if r.name == "db1"))
    fleet = watch(clock, lab.uri + "?domain_timeout_ms=0")
    seen: dict[str, object] = {}

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        seen["rows"], seen["summary"] = rows(app), text_of(app, "#summary")

    drive(fleet.refresh, scenario)
    fleet.close()
    db1 = next(r for r in seen["rows"] if r["NAME"] == "db1")  # type: ignore[attr-defined]
    assert (db1["ID"], db1["S"], db1["%CPU"], db1["MEM(k)"]) == ("2", "?", "-", "-")
    assert "1 no answer" in str(seen["summary"])


def test_several_hosts_share_one_table_with_a_host_column(
        lab: xvirt.sim.Host, make_sim_host: Callable[..., xvirt.sim.Host],
        clock: ManualClock) -> None:
    other = make_sim_host(clock=clock)
    other.create("far", vcpus=8, load=1.0)
    fleet = watch(clock, lab.uri, other.uri)
    seen: dict[str, object] = {}

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        clock.advance(3)
        await refresh(app, pilot)
        seen["rows"], seen["summary"] = rows(app), text_of(app, "#summary")

    try:
        drive(fleet.refresh, scenario)
    finally:
        fleet.close()
        other.close()
    got = seen["rows"]
    assert got[0]["HOST"] == f"{other.name}.sim" and got[0]["NAME"] == "far"  # type: ignore[index]
    assert {r["HOST"] for r in got} == {f"{lab.name}.sim", f"{other.name}.sim"}  # type: ignore[attr-defined]
    hosts = [line for line in str(seen["summary"]).splitlines() if "CPUs" in line]
    assert [line.split("  ")[-1] for line in hosts] == ["64.0 GiB memory", "8.0 TiB memory"]


# -- hosts that do not answer, slow hosts ----------------------------------------------------


def test_an_unreachable_host_is_shown_and_retried(clock: ManualClock) -> None:
    name = f"later-{uuid.uuid4().hex[:8]}"
    fleet = watch(clock, f"sim:///{name}")
    seen: dict[str, object] = {}
    made: list[xvirt.sim.Host] = []

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        seen["down"], seen["down_rows"] = text_of(app, "#summary"), rows(app)
        made.append(xvirt.sim.Host(name, clock=clock))
        await refresh(app, pilot)
        seen["up"], seen["up_rows"] = text_of(app, "#summary"), rows(app)

    try:
        drive(fleet.refresh, scenario)
    finally:
        fleet.close()
        for h in made:
            h.close()
    down = " ".join(str(seen["down"]).split())  # wrapped within the header's width
    assert f"sim:///{name}: unreachable: no embedded host named '{name}'" in down
    assert "retrying every 3600 s" in down
    assert seen["down_rows"] == []
    assert f"{name}.sim (sim:///{name})" in str(seen["up"])
    assert [r["NAME"] for r in seen["up_rows"]] == ["Domain-0"]  # type: ignore[attr-defined]


def test_a_slow_host_never_freezes_the_screen_and_q_does_not_wait_for_it(
        lab: xvirt.sim.Host, clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    gate = threading.Event()  # the host "answers" when the gate opens
    calls = 0

    def slow_fetch() -> list[HostFrame]:
        nonlocal calls
        calls += 1
        if calls > 1:
            gate.wait(timeout=60)
        return fleet.refresh()

    seen: dict[str, object] = {}

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        await pilot.press("space")  # this refresh hangs until the gate opens
        await pilot.press("n")
        await pilot.pause()
        seen["status"], seen["names"] = text_of(app, "#status"), names(app)
        await pilot.press("q")  # must not wait for the hung refresh

    try:
        app = drive(slow_fetch, scenario, sort="cpu")
    finally:
        gate.set()
    fleet.close()
    assert seen["status"] == "sorted by name"  # keys were handled during the refresh
    assert seen["names"] == ["Domain-0", "db1", "web1"]  # the last frame, re-sorted
    assert app.return_code == 0 and calls == 2


def test_iterations_end_the_screen(lab: xvirt.sim.Host, clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    frames: list[int] = []

    def counted() -> list[HostFrame]:
        got = fleet.refresh()
        frames.append(len(got))
        return got

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        await pilot.pause()

    app = drive(counted, scenario, iterations=1)
    fleet.close()
    assert app.refreshes == 1 and frames == [1] and app.return_code == 0


# -- help, width -------------------------------------------------------------------------------


def test_h_and_question_mark_show_the_keys_and_any_key_returns(lab: xvirt.sim.Host,
                                                               clock: ManualClock) -> None:
    fleet = watch(clock, lab.uri)
    seen: list[dict[str, object]] = []

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        for key, leave in (("h", "n"), ("question_mark", "q")):
            await pilot.press(key)
            await pilot.pause()
            step: dict[str, object] = {"shown": isinstance(app.screen, HelpScreen)}
            step["text"] = str(app.screen.query_one("#help", Static).content)
            clock.advance(3)
            app.action_refresh_now()  # refreshes go on under the help
            await settle(app, pilot)
            step["under"] = text_of(app, "#summary")
            step["still"] = isinstance(app.screen, HelpScreen)
            await pilot.press(leave)  # any key returns, and does nothing else
            await pilot.pause()
            step["after"] = isinstance(app.screen, HelpScreen)
            step["sort"], step["running"] = app.sort_key, app.is_running
            seen.append(step)

    drive(fleet.refresh, scenario)
    fleet.close()
    for step in seen:
        assert step["shown"] and step["still"] and not step["after"]
        assert step["text"] == help_text()
        assert "%CPU -" not in str(step["under"])  # the view underneath was redrawn
        assert step["sort"] == "cpu" and step["running"]  # n did not sort, q did not quit
    text = help_text()
    assert text.startswith("xvirt top: keys") and text.endswith("Press any key to return.")
    for line in ("c, P   sort by %CPU", "d, s   set the delay", "h, ?   show these keys",
                 "q      quit", "R running, S idle, P paused, D in shutdown, O shut off"):
        assert line in text


def test_the_help_lists_every_key_the_screen_binds() -> None:
    bound = {b.key_display or b.key for b in TopApp.BINDINGS if isinstance(b, Binding)}
    listed = {key for keys, _ in KEYS for key in keys}
    assert bound - {"ctrl+c"} == listed  # ctrl+c quits as in top, unlisted


def test_the_top_help_documents_the_keys_and_the_cost_option() -> None:
    from click.testing import CliRunner

    from xvirt.tools.cli import main

    text = CliRunner().invoke(main, ["top", "--help"]).stdout
    flat = " ".join(text.split()).replace("- ", "-")  # click wraps at hyphens too
    assert "--cost" in text and "control-plane requests and data-plane calls" in flat
    for line in key_lines():  # the very lines of the help screen
        assert f"  {line}\n" in text, line


def test_the_header_fits_80_columns_with_many_domains(
        make_sim_host: Callable[..., xvirt.sim.Host], clock: ManualClock) -> None:
    host = make_sim_host(clock=clock)
    with host.batch():
        for i in range(1500):
            rec = host.create(f"guest-{i:05d}", memory_kib=262144, paused=i % 7 == 0)
            if i % 5 == 0:
                host.set_blocked(rec.id)
            if i % 11 == 0:
                host.crash(rec.id)
    fleet = watch(clock, host.uri)
    seen: dict[str, object] = {}
    footer: list[tuple[str, int]] = []

    async def scenario(app: TopApp, pilot: Pilot[None]) -> None:
        clock.advance(3)
        await refresh(app, pilot)
        summary = app.query_one("#summary", Static)
        seen["text"], seen["height"] = text_of(app, "#summary"), summary.size.height
        seen["width"] = summary.size.width
        footer.extend((key.key, key.region.right) for key in app.query(FooterKey))

    drive(fleet.refresh, scenario, cost=True, size=(80, 24))
    fleet.close()
    lines = str(seen["text"]).splitlines()
    assert seen["height"] == len(lines)  # no line wrapped on an 80-column screen
    assert all(len(line) <= int(seen["width"]) for line in lines)  # type: ignore[call-overload]
    assert "1501 domains:" in lines[2] and "refresh cost:" in lines[-1]
    assert footer[0][0] == "h"  # help first in the footer
    assert all(right <= 80 for _, right in footer)
