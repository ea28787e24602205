"""The ``xvirt`` command: virsh-like tools over the public API.

Only ``import xvirt`` is used here, never drivers or the cache, so the tools
show exactly what any user of the library gets. Layout lives in
:mod:`xvirt.tools.format`; this module fetches facts and reports errors the
way virsh does: one ``error:`` line on stderr and exit status 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

import xvirt
from xvirt.tools import format as fmt

__all__ = ["find_domain", "main"]

#: Every subcommand takes the URI the way virsh does (-c/--connect) and xvirt's --uri.
uri_option = click.option(
    "-c",
    "--connect",
    "--uri",
    "uri",
    metavar="URI",
    default=None,
    help="Host to talk to [default: $XVIRT_DEFAULT_URI or sim:///default].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")

_DIGITS = re.compile(r"[0-9]{1,18}")  # longer runs are far out of ID range
_NEGATIVE = re.compile(r"-[0-9]+")


def _fail(message: str) -> NoReturn:
    """Report like virsh: one ``error:`` line on stderr, exit status 1."""
    one_line = " ".join(message.splitlines())
    click.echo(f"error: {one_line}", err=True)
    raise click.exceptions.Exit(1)


@contextmanager
def _connection(uri: str | None) -> Iterator[xvirt.Connection]:
    """A read-only connection (the tools only look); any xvirt error ends the command."""
    try:
        with xvirt.open(uri, readonly=True) as conn:
            yield conn
    except xvirt.XvirtError as exc:
        _fail(str(exc))


def find_domain(conn: xvirt.Connection, ref: str) -> xvirt.Domain:
    """The domain ``ref`` names, tried as virsh does: as an ID, a UUID, then a name.

    A later form is tried whenever an earlier one finds nothing, so a domain
    named ``42`` is found when no domain has ID 42. A negative number can only
    be a name; when no domain has it, the ID error is raised as it is clearer.
    Raises NoDomainError when nothing matches.
    """
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


def _view(dom: xvirt.Domain) -> fmt.DomainView:
    return fmt.DomainView(dom.identity(), dom.info())


class _DomainCommand(click.Command):
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(xvirt.__version__, prog_name="xvirt")
def main() -> None:
    """Monitor and manage Xen-style hosts (virsh-like)."""


@main.command("list")
@click.option(
    "--all",
    "all_domains",
    is_flag=True,
    help="Also domains defined but not running (shut off), after the running ones.",
)
@json_option
@uri_option
def list_command(all_domains: bool, as_json: bool, uri: str | None) -> None:
    """List running domains in ID order (with --all, then the shut-off ones by name)."""
    with _connection(uri) as conn:
        views = conn.sample()
        if all_domains:
            running = {v.identity.uuid for v in views}
            # one domain that stopped between the two calls is listed once, as running
            views += [fmt.DomainView(xvirt.Identity(d.uuid, d.name, -1), d.info())
                      for d in conn.list_defined() if d.uuid not in running]
    if as_json:
        click.echo(fmt.to_json([fmt.domain_dict(v) for v in views]), nl=False)
    else:
        click.echo(fmt.list_text(views), nl=False)


@main.command("dominfo", cls=_DomainCommand)
@click.argument("domain")
@json_option
@uri_option
def dominfo_command(domain: str, as_json: bool, uri: str | None) -> None:
    """Show facts about DOMAIN (an ID, a UUID or a name)."""
    with _connection(uri) as conn:
        try:
            dom = find_domain(conn, domain)
        except xvirt.NoDomainError:
            _fail(f"failed to get domain '{domain}'")  # virsh's very words
        view = _view(dom)
    if as_json:
        click.echo(fmt.to_json(fmt.domain_dict(view)), nl=False)
    else:
        click.echo(fmt.dominfo_text(view), nl=False)


def _register_servers() -> None:
    """Server commands live in their own modules: they are not API clients."""
    from xvirt.tools.compat_cmd import compat_command
    from xvirt.tools.daemon_cmd import daemon_command

    main.add_command(daemon_command)
    main.add_command(compat_command)
    from xvirt.tools.bench import bench_command

    main.add_command(bench_command)
    from xvirt.tools.top import top_command

    main.add_command(top_command)
    from xvirt.tools.exporter import exporter_command

    main.add_command(exporter_command)


_register_servers()
