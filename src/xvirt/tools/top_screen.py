"""The full-screen view of ``xvirt top``, on Textual.

The screen never waits for a host: each refresh runs in a worker whose fetch
happens on a daemon thread, so keys keep working while a slow host answers and
quitting never waits for one that does not. Frames come from a ``fetch``
callable (:class:`xvirt.tools.top.Fleet` in use, anything in tests); the
arithmetic and the text of each cell come from :mod:`xvirt.tools.top_model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static

from xvirt.tools import format as fmt
from xvirt.tools.top_model import (
    DEVICE_COLUMNS,
    KEYS,
    SORT_LABELS,
    STATE_LEGEND,
    HostFrame,
    columns,
    device_cells,
    device_lines,
    key_lines,
    parse_delay,
    row_cells,
    sorted_lines,
    summary_lines,
)

__all__ = ["KEYS", "DelayInput", "HelpScreen", "TopApp", "help_text"]

T = TypeVar("T")

#: Columns whose cells are numbers, right-aligned as in top.
_NUMERIC = frozenset({"ID", "%CPU", "%MEM", "MEM(k)", "VCPUS", "TIME", "RDRQ", "WRRQ", "RDBY",
                      "WRBY", "RXBY", "TXBY", "RXPK", "TXPK"})
#: virt-top's views: its keys 0 (domains), 2 (network interfaces), 3 (block devices).
VIEWS = ("domains", "net", "block")


def help_text() -> str:
    """The help screen: each key and what it does, the state letters, how to leave."""
    return "\n".join(["xvirt top: keys", "", *key_lines(), "", *STATE_LEGEND,
                      "", "Press any key to return."])


class HelpScreen(ModalScreen[None]):
    """The keys (``h`` or ``?``, as in virt-top and top); any key returns to the view."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: auto; height: auto; padding: 1 2; border: round $accent; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(help_text()), id="help")

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss()


def _off_thread(fetch: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``fetch`` on a daemon thread; the future settles on the app's loop.

    Not ``run_in_executor``: the loop's executor is joined when the app exits, so
    quitting would wait for a host that takes its full timeout to fail."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: the app is quitting
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    def run() -> None:
        try:
            result, error = fetch(), None
        except BaseException as exc:  # handed to the worker, which reports it
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="xvirt-top-fetch", daemon=True).start()
    return future


class DelayInput(Input):
    """The delay prompt; Escape leaves it without changing anything."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel", show=False)]

    class Cancelled(Message):
        """The user left the prompt with Escape."""

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())


class TopApp(App[None]):
    """virt-top's screen: a header per host, then one row per domain (or, in virt-top's
    network and block views, per NIC or disk)."""

    TITLE = "xvirt top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #summary { height: auto; padding: 0 1; }
    #domains { height: 1fr; }
    #prompt { display: none; }
    #prompt.asking { display: block; }
    #status { height: 1; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer shows what fits 80 columns, help first; the help lists every key.
        Binding("h", "help", "help"),
        Binding("question_mark", "help", "help", show=False, key_display="?"),
        Binding("c", "sort('cpu')", "%CPU"),
        Binding("P", "sort('cpu')", "%CPU", show=False),
        Binding("m", "sort('mem')", "memory"),
        Binding("M", "sort('mem')", "memory", show=False),
        Binding("t", "sort('time')", "CPU time"),
        Binding("T", "sort('time')", "CPU time", show=False),
        Binding("i", "sort('id')", "ID", show=False),
        Binding("n", "sort('name')", "name"),
        Binding("B", "toggle_block_bytes", "block bytes/requests", show=False),
        Binding("0", "view('domains')", "domains", show=False),
        Binding("2", "view('net')", "network", show=False),
        Binding("3", "view('block')", "block", show=False),
        Binding("d", "ask_delay", "delay"),
        Binding("s", "ask_delay", "delay", show=False),
        Binding("space", "refresh_now", "refresh", show=False),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),  # as in top
    ]

    def __init__(self, fetch: Callable[[], Sequence[HostFrame]], *, delay_s: float,
                 sort: str, iterations: int | None = None,
                 wall: Callable[[], float] = time.time, block: bool = True,
                 net: bool = True, block_bytes: bool = False, cost: bool = False) -> None:
        super().__init__()
        self.block, self.net, self.block_bytes = block, net, block_bytes
        self.cost = cost  # the refresh cost line in each host's header (``--cost``)
        self.view = "domains"
        self._fetch = fetch
        self.delay_s = delay_s
        self.sort_key = sort
        self._iterations = iterations
        self._wall = wall
        self.frames: list[HostFrame] = []
        self.refreshes = 0
        self._stamp: float | None = None
        self._fetching = False
        self._timer: Timer | None = None
        self._columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="summary")
        yield DataTable(id="domains", cursor_type="row", zebra_stripes=True)
        yield DelayInput(id="prompt")
        yield Static("", id="status")
        yield Footer()

    @property
    def _main(self) -> Screen[None]:
        """The screen of the domains, under the help screen when that is shown (a
        refresh then redraws the view underneath)."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self._main.query_one(DataTable).focus()
        self.action_refresh_now()

    # -- refreshing -----------------------------------------------------------------

    def action_refresh_now(self) -> None:
        """Refresh at once (space, as in top), then every ``delay_s`` seconds."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if not self._fetching:
            self._fetching = True
            self._refresh_worker()

    @work(group="refresh", exit_on_error=True)
    async def _refresh_worker(self) -> None:
        frames = await _off_thread(self._fetch)
        self._fetching = False
        self._show(frames)

    def _show(self, frames: Sequence[HostFrame]) -> None:
        self.frames = list(frames)
        self.refreshes += 1
        self._stamp = self._wall()
        self._draw()
        if self._iterations is not None and self.refreshes >= self._iterations:
            self.exit()
            return
        self._timer = self.set_timer(self.delay_s, self.action_refresh_now)

    # -- drawing --------------------------------------------------------------------

    def _draw(self) -> None:
        stamp = "" if self._stamp is None else time.strftime(
            "%H:%M:%S", time.localtime(self._stamp))
        lines = [f"xvirt top - {stamp}  delay {self.delay_s:g} s  "
                 f"sorted by {SORT_LABELS[self.sort_key]}"]
        for frame in self.frames:
            lines.extend(fmt.safe_text(line)
                         for line in summary_lines(frame, self.delay_s, cost=self.cost))
        self._main.query_one("#summary", Static).update(Text("\n".join(lines)))
        self._fill_table()

    def _fill_table(self) -> None:
        table: DataTable[Text] = self._main.query_one(DataTable)
        several = len(self.frames) > 1
        base = (DEVICE_COLUMNS[self.view] if self.view in DEVICE_COLUMNS else
                columns(block=self.block, net=self.net, block_bytes=self.block_bytes))
        shown = ("HOST", *base) if several else base
        chosen = None
        if table.row_count:
            with contextlib.suppress(Exception):  # no row under the cursor any more
                chosen = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if shown != self._columns:
            table.clear(columns=True)
            for name in shown:
                table.add_column(Text(name, justify="right" if name in _NUMERIC else "left"),
                                 key=name)
            self._columns = shown
        else:
            table.clear()
        index = {id(f): i for i, f in enumerate(self.frames)}
        lines: list[tuple[str, tuple[str, ...]]] = []
        if self.view in DEVICE_COLUMNS:
            for frame, row, device in device_lines(self.frames, self.view):
                lines.append((f"{index[id(frame)]}:{row.uuid}:{device.device}",
                              ((frame.label,) if several else ()) + device_cells(row, device)))
        else:
            for frame, row in sorted_lines(self.frames, self.sort_key):
                lines.append((f"{index[id(frame)]}:{row.uuid}",  # a UUID is one host's
                              ((frame.label,) if several else ()) + row_cells(row, base)))
        for key, cells in lines:
            table.add_row(*(
                Text(fmt.safe_text(cell), justify="right" if name in _NUMERIC else "left")
                for name, cell in zip(shown, cells, strict=True)), key=key)
            if key == chosen:
                table.move_cursor(row=table.row_count - 1)

    # -- keys -------------------------------------------------------------------------

    def action_help(self) -> None:
        """h or ?: the keys, until any key is pressed (refreshes go on underneath)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self._say(f"sorted by {SORT_LABELS[key]}")
        self._draw()

    def action_toggle_block_bytes(self) -> None:
        """virt-top's B: block I/O in bytes, or in requests."""
        self.block_bytes = not self.block_bytes
        self._say("block I/O in " + ("bytes" if self.block_bytes else "requests"))
        self._draw()

    def action_view(self, view: str) -> None:
        """virt-top's 0, 2 and 3: the domains, their network interfaces, their disks."""
        if (view == "net" and not self.net) or (view == "block" and not self.block):
            self._say(f"no {view} statistics asked for (--no-{view})")
            return
        self.view = view
        self._say({"domains": "domains", "net": "network interfaces",
                   "block": "block devices"}[view])
        self._draw()

    def action_ask_delay(self) -> None:
        prompt = self._main.query_one(DelayInput)
        prompt.value = ""
        prompt.placeholder = (f"delay in seconds (now {self.delay_s:g}); "
                              "Enter to set, Escape to cancel")
        prompt.add_class("asking")
        prompt.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._close_prompt()
        try:
            delay = parse_delay(event.value)
        except ValueError as exc:
            self._say(f"{exc}; the delay stays {self.delay_s:g} s")
            return
        self.delay_s = delay
        self._say(f"delay set to {delay:g} s")
        if self._timer is not None:  # waiting: wait the new delay from now
            self._timer.stop()
            self._timer = self.set_timer(delay, self.action_refresh_now)
        self._draw()

    def on_delay_input_cancelled(self, _: DelayInput.Cancelled) -> None:
        self._close_prompt()
        self._say(f"delay unchanged: {self.delay_s:g} s")

    def _close_prompt(self) -> None:
        self._main.query_one(DelayInput).remove_class("asking")
        self._main.query_one(DataTable).focus()

    def _say(self, message: str) -> None:
        self._main.query_one("#status", Static).update(Text(message))
