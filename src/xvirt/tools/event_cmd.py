"""``xvirt event``: virsh's ``event``, from :meth:`xvirt.Connection.events`.

Each event is one line in virsh's words (libvirt 9.0, virsh-domain-event.c), e.g.
``event 'lifecycle' for domain 'web1': Suspended Paused``; xvirt's lifecycle changes
are told as libvirt's (event, detail) pairs, the ones xvirt's libvirt face gives
libvirt-python scripts. Without --loop the command ends at the first event; then, as
virsh, ``events received: N``, and exit status 1 when none came (a script can tell).

Time: with --timeout the stream is read a step at a time (at most :data:`STEP_S`),
and the command ends at the first step that finds the deadline passed. Tests
replace :data:`STEP_S` and :func:`clock` instead of waiting.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Final

import click

import xvirt
from xvirt.tools import format as fmt
from xvirt.tools.common import connection, json_option, uri_option
from xvirt.tools.domain_cmds import looked_up

__all__ = ["EVENT_TYPES", "LIFECYCLE_WORDS", "STEP_S", "clock", "event_command", "event_line"]

#: The longest one wait for events lasts when a --timeout is running: the most the
#: command may overrun it.
STEP_S = 0.5

#: Monotonic seconds, for --timeout.
clock: Callable[[], float] = time.monotonic

#: virsh's words for each of xvirt's lifecycle changes: libvirt's event and detail.
LIFECYCLE_WORDS: Final[Mapping[xvirt.EventKind, tuple[str, str]]] = MappingProxyType({
    xvirt.EventKind.CREATED: ("Started", "Booted"),
    xvirt.EventKind.STARTED: ("Started", "Booted"),
    xvirt.EventKind.REBOOTED: ("Started", "Booted"),
    xvirt.EventKind.RESTORED: ("Started", "Restored"),
    xvirt.EventKind.MIGRATED: ("Started", "Migrated"),
    xvirt.EventKind.DESTROYED: ("Stopped", "Destroyed"),
    xvirt.EventKind.SHUTDOWN: ("Stopped", "Shutdown"),
    xvirt.EventKind.SAVED: ("Stopped", "Saved"),
    # Xen keeps a crashed domain (on_crash=preserve): libvirt's Crashed, not Stopped.
    xvirt.EventKind.CRASHED: ("Crashed", "Panicked"),
    xvirt.EventKind.PAUSED: ("Suspended", "Paused"),
    xvirt.EventKind.RESUMED: ("Resumed", "Unpaused"),
    xvirt.EventKind.RENAMED: ("Defined", "Renamed"),
    xvirt.EventKind.DEFINED: ("Defined", "Added"),
    xvirt.EventKind.UNDEFINED: ("Undefined", "Removed"),
})

#: The event types (virsh's names) xvirt reports, and the changes each is made of.
EVENT_TYPES: Final[Mapping[str, frozenset[xvirt.EventKind]]] = MappingProxyType({
    "lifecycle": frozenset(k for k in xvirt.EventKind if k.lifecycle),
    "metadata-change": frozenset(k for k in xvirt.EventKind if k.metadata is not None),
})


def event_type(event: xvirt.DomainEvent) -> str:
    """virsh's name of the event type ``event`` is of."""
    return "metadata-change" if event.kind.metadata is not None else "lifecycle"


def event_line(event: xvirt.DomainEvent) -> str:
    """``event`` as virsh prints it (without the newline). A domain gone before its
    name was learnt is named by its UUID."""
    name = fmt.safe_text(event.name if event.name is not None else event.uuid)
    metadata = event.kind.metadata
    if metadata is not None:
        return (f"event 'metadata-change' for domain '{name}': type {metadata.name.lower()}, "
                f"uri {event.uri if event.uri is not None else '(null)'}")
    what, detail = LIFECYCLE_WORDS[event.kind]
    return f"event 'lifecycle' for domain '{name}': {what} {detail}"


def event_dict(event: xvirt.DomainEvent) -> dict[str, str | int | None]:
    """``event`` for JSON (one object a line): xvirt's names, and virsh's type."""
    return {"type": event_type(event), "kind": event.kind.value, "name": event.name,
            "uuid": event.uuid, "id": event.id, "old_id": event.old_id, "uri": event.uri}


def timestamp(now: datetime.datetime) -> str:
    """The time as virsh's --timestamp prints it (UTC, milliseconds)."""
    utc = now.astimezone(datetime.UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d}+0000"


@click.command("event")
@click.option("--domain", metavar="DOMAIN",
              help="Only the events of DOMAIN (an ID, a UUID or a name).")
@click.option("--event", "type_name", type=click.Choice(sorted(EVENT_TYPES)),
              help="Which event type to wait for.")
@click.option("--all", "all_types", is_flag=True,
              help="Wait for every event type instead of just one.")
@click.option("--loop", is_flag=True,
              help="Go on until the timeout or Ctrl-C, rather than end at the first event.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="End after SECONDS.")
@click.option("--list", "list_types", is_flag=True, help="List the event types and exit.")
@click.option("--timestamp", "with_time", is_flag=True,
              help="Begin each event with the time it was printed.")
@json_option
@uri_option
def event_command(domain: str | None, type_name: str | None, all_types: bool, loop: bool,
                  timeout: float | None, list_types: bool, with_time: bool, as_json: bool,
                  uri: str | None) -> None:
    """Print the domains' lifecycle events.

    One of --event TYPE, --all or --list is needed, as virsh wants. The types are
    those xvirt reports: lifecycle (started, stopped, paused...) and
    metadata-change (title, description, metadata elements). --json prints one JSON
    object a line and no summary."""
    if list_types:
        click.echo("".join(f"{name}\n" for name in EVENT_TYPES) + "\n", nl=False)
        return
    if type_name is None and not all_types:
        raise click.UsageError("one of --list, --all, or --event <type> is required")
    kinds = frozenset(k for ks in EVENT_TYPES.values() for k in ks) if all_types \
        else EVENT_TYPES[type_name or "lifecycle"]
    deadline = None if timeout is None else clock() + timeout
    count = 0
    timed_out = False
    try:
        with connection(uri) as conn:
            only = None if domain is None else looked_up(conn, domain).uuid
            stream = conn.events(timeout=None if timeout is None else min(timeout, STEP_S),
                                 kinds=kinds)
            while True:
                if deadline is not None and clock() >= deadline:
                    timed_out = True
                    break
                event = next(stream, None)  # None: a step ran out; a next step waits again
                if event is None or (only is not None and event.uuid != only):
                    continue
                _show(_named(conn, event), with_time, as_json)
                count += 1
                if not loop:
                    break
    except KeyboardInterrupt:  # virsh still says how many came; the group exits 130
        _summary(count, timed_out=False, as_json=as_json)
        raise
    _summary(count, timed_out=timed_out, as_json=as_json)
    if count == 0:
        raise click.exceptions.Exit(1)


def _named(conn: xvirt.Connection, event: xvirt.DomainEvent) -> xvirt.DomainEvent:
    """``event`` with its domain's name: the stream leaves it out where the connection
    had not learnt it (a metadata change of a domain never looked up), so it is asked
    for; a domain gone meanwhile keeps none (its line shows the UUID)."""
    if event.name is not None:
        return event
    try:
        return replace(event, name=conn.lookup_by_uuid(event.uuid).name)
    except xvirt.NoDomainError:
        return event


def _show(event: xvirt.DomainEvent, with_time: bool, as_json: bool) -> None:
    when = timestamp(datetime.datetime.now(datetime.UTC)) if with_time else None
    if as_json:
        record = event_dict(event) if when is None else {"timestamp": when, **event_dict(event)}
        click.echo(json.dumps(record))
    else:
        click.echo(event_line(event) if when is None else f"{when}: {event_line(event)}")


def _summary(count: int, *, timed_out: bool, as_json: bool) -> None:
    """virsh's closing lines (not in JSON, whose lines are events only)."""
    if as_json:
        return
    click.echo(("event loop timed out\n" if timed_out else "")
               + f"events received: {count}\n\n", nl=False)
