"""``xvirt list`` and ``xvirt dominfo``: what virsh's two most used commands show.

Only ``import xvirt`` is used here, never drivers or the cache, so the tools
show exactly what any user of the library gets. Layout lives in
:mod:`xvirt.tools.format`; this module fetches facts and reports errors the
way virsh does: one ``error:`` line on stderr and exit status 1. It is its own
module so that ``xvirt --help`` and the other commands never import it.
"""

from __future__ import annotations

import click

import xvirt
from xvirt.tools import format as fmt
from xvirt.tools.common import (
    DomainCommand,
    connection,
    fail,
    find_domain,
    json_option,
    uri_option,
)

__all__ = ["dominfo_command", "list_command"]


def _view(dom: xvirt.Domain) -> fmt.DomainView:
    return fmt.DomainView(dom.identity(), dom.info())


@click.command("list")
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
    with connection(uri) as conn:
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


@click.command("dominfo", cls=DomainCommand)
@click.argument("domain")
@json_option
@uri_option
def dominfo_command(domain: str, as_json: bool, uri: str | None) -> None:
    """Show facts about DOMAIN (an ID, a UUID or a name)."""
    with connection(uri) as conn:
        try:
            dom = find_domain(conn, domain)
        except xvirt.NoDomainError:
            fail(f"failed to get domain '{domain}'")  # virsh's very words
        view = _view(dom)
    if as_json:
        click.echo(fmt.to_json(fmt.domain_dict(view)), nl=False)
    else:
        click.echo(fmt.dominfo_text(view), nl=False)
