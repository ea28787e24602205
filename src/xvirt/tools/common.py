"""What every ``xvirt`` subcommand shares: the URI, the connection, errors, domain lookup.

A command module imports ``xvirt`` and this module, never drivers or the cache,
so the tools show exactly what any user of the library gets. Errors are
reported the way virsh reports them: one ``error:`` line on stderr, exit 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:  # the import is paid by commands that connect, not by --help
    import xvirt

__all__ = [
    "URI_META_KEY",
    "DomainCommand",
    "connection",
    "fail",
    "find_domain",
    "json_option",
    "uri_option",
]

#: Where the group stores ``xvirt -c URI`` (given before the subcommand).
URI_META_KEY = "xvirt.uri"

#: Every subcommand also takes the URI after its name, as earlier releases did.
uri_option = click.option(
    "-c",
    "--connect",
    "--uri",
    "uri",
    metavar="URI",
    default=None,
    help="Host to talk to [default: $XVIRT_DEFAULT_URI, $LIBVIRT_DEFAULT_URI, sim:///default].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")

_DIGITS = re.compile(r"[0-9]{1,18}")  # longer runs are far out of ID range
_NEGATIVE = re.compile(r"-[0-9]+")


def fail(message: str) -> NoReturn:
    """Report like virsh: one ``error:`` line on stderr, exit status 1."""
    one_line = " ".join(message.splitlines())
    click.echo(f"error: {one_line}", err=True)
    raise click.exceptions.Exit(1)


def given_uri(uri: str | None) -> str | None:
    """The URI after the subcommand, else the one before it (``xvirt -c URI cmd``)."""
    if uri is not None:
        return uri
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    found = ctx.find_root().meta.get(URI_META_KEY)
    return found if isinstance(found, str) else None


@contextmanager
def connection(uri: str | None, *, readonly: bool = True) -> Iterator[xvirt.Connection]:
    """A connection to the URI the user gave; any xvirt error ends the command.

    Commands that only look use the default read-only connection; commands that
    change something pass ``readonly=False`` (the daemon then wants its token).
    """
    import xvirt

    try:
        with xvirt.open(given_uri(uri), readonly=readonly) as conn:
            yield conn
    except xvirt.XvirtError as exc:
        fail(str(exc))


def find_domain(conn: xvirt.Connection, ref: str) -> xvirt.Domain:
    """The domain ``ref`` names, tried as virsh does: as an ID, a UUID, then a name.

    A later form is tried whenever an earlier one finds nothing, so a domain
    named ``42`` is found when no domain has ID 42. A negative number can only
    be a name; when no domain has it, the ID error is raised as it is clearer.
    Raises NoDomainError when nothing matches.
    """
    import xvirt

    bad_id: xvirt.InvalidArgumentError | None = None
    if _DIGITS.fullmatch(ref) or _NEGATIVE.fullmatch(ref):
        try:
            return conn.lookup_by_id(int(ref))
        except xvirt.NoDomainError:
            pass
        except xvirt.InvalidArgumentError as exc:  # out of range: maybe a name
            bad_id = exc if ref.startswith("-") else None
    try:
        return conn.lookup_by_uuid(ref)
    except (xvirt.NoDomainError, xvirt.InvalidArgumentError):
        pass  # no such UUID, or not a UUID at all
    try:
        return conn.lookup_by_name(ref)
    except xvirt.NoDomainError:
        if bad_id is not None:
            raise bad_id from None
        raise


class DomainCommand(click.Command):
    """Lets ``xvirt dominfo -1`` reach the lookup, which explains domain IDs,
    instead of failing as an unknown option: no option of ours looks like a number."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag
            for name in (*p.opts, *p.secondary_opts)
        }
        cut = args.index("--") if "--" in args else len(args)
        head, tail = args[:cut], args[cut + 1 :]
        kept: list[str] = []
        moved: list[str] = []
        for i, arg in enumerate(head):
            is_value = i > 0 and head[i - 1] in takes_value
            (moved if _NEGATIVE.fullmatch(arg) and not is_value else kept).append(arg)
        if moved:
            args = [*kept, "--", *moved, *tail]
        return super().parse_args(ctx, args)
