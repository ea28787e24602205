"""virsh's everyday domain commands: start, suspend, resume, shutdown, reboot, destroy,
save, restore, define, undefine, create, domrename, domstate, domid, domname, domuuid.

Each takes a domain as virsh does (an ID, a UUID or a name: see
:func:`xvirt.tools.common.find_domain`) and prints virsh's words, naming the domain
as the user gave it, then the blank line virsh ends every command with. Commands
that only look open a read-only connection; those that change something open a
writable one (a daemon over TCP then wants its token: ``?token_file=`` or
``$XVIRT_TOKEN_FILE``). A refusal is one ``error:`` line, virsh's "Failed to ..."
and the reason together, and exit status 1.

``define`` and ``create`` take libvirt's domain XML, read by xvirt's libvirt face
(:mod:`xvirt.compat.libvirt`), which is what reads it for libvirt-python scripts: on
xvirt's own hosts it reads what such a host keeps (name, UUID, memory, vCPUs, OS
type, disks, interfaces, title, description, metadata) and refuses the rest with
libvirt's words; on a ``libvirt:`` URI libvirt itself reads it, as virsh's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

import xvirt
from xvirt.tools import format as fmt
from xvirt.tools import virsh_words
from xvirt.tools.common import (
    DomainCommand,
    connection,
    fail,
    find_domain,
    given_uri,
    json_option,
    uri_option,
)

__all__ = [
    "create_command",
    "define_command",
    "destroy_command",
    "domid_command",
    "domname_command",
    "domrename_command",
    "domstate_command",
    "domuuid_command",
    "reboot_command",
    "restore_command",
    "resume_command",
    "save_command",
    "shutdown_command",
    "start_command",
    "suspend_command",
    "undefine_command",
]

_domain_argument = click.argument("domain")

#: The face's VIR_DOMAIN_START_PAUSED (libvirt's number), for ``create --paused``.
_START_PAUSED = 1


def looked_up(conn: xvirt.Connection, ref: str) -> xvirt.Domain:
    """The domain ``ref`` names; virsh's words when none does."""
    try:
        return find_domain(conn, ref)
    except xvirt.NoDomainError:
        fail(f"failed to get domain '{ref}'")


def _done(message: str) -> None:
    """A mutation's report, and virsh's closing blank line."""
    click.echo(f"{message}\n")


#: What a refusal for want of a token adds: where the token goes (README, "A host daemon").
TOKEN_HINT = ("a daemon over TCP takes changes with its token only: add ?token_file=FILE "
              "to the URI or set $XVIRT_TOKEN_FILE")
#: libvirt's VIR_ERR_NO_SUPPORT and VIR_ERR_AUTH_FAILED (a missing token, on the face).
_NO_SUPPORT = 3
_AUTH_FAILED = 45


def _refused(what: str, exc: xvirt.XvirtError) -> NoReturn:
    """virsh's two lines of a refusal ("Failed to ..." and the reason) as one; a
    missing or wrong token also says where the token goes."""
    hint = f" ({TOKEN_HINT})" if isinstance(exc, xvirt.AuthError) else ""
    fail(f"{what}: {exc.message}{hint}")


def _mutate(domain: str, uri: str | None, act: Callable[[xvirt.Domain], None],
            failed: str, done: str) -> None:
    """Look ``domain`` up on a writable connection and ``act`` on it; ``failed`` and
    ``done`` are virsh's words for either outcome."""
    with connection(uri, readonly=False) as conn:
        dom = looked_up(conn, domain)
        try:
            act(dom)
        except xvirt.XvirtError as exc:
            _refused(failed, exc)
    _done(done)


# -- the lifecycle --------------------------------------------------------------------------


@click.command("start", cls=DomainCommand)
@_domain_argument
@uri_option
def start_command(domain: str, uri: str | None) -> None:
    """Start a defined (shut off) DOMAIN.

    It boots with a new ID. A domain that runs already is refused, as virsh does."""
    with connection(uri, readonly=False) as conn:
        dom = looked_up(conn, domain)
        if dom.id is not None:
            fail("Domain is already active")  # virsh's words; it checks before asking
        try:
            dom.start()
        except xvirt.XvirtError as exc:
            _refused(f"Failed to start domain '{domain}'", exc)
    _done(f"Domain '{domain}' started")


@click.command("suspend", cls=DomainCommand)
@_domain_argument
@uri_option
def suspend_command(domain: str, uri: str | None) -> None:
    """Suspend (pause) a running DOMAIN.

    It keeps its memory and stops being scheduled until ``resume``."""
    _mutate(domain, uri, xvirt.Domain.pause, f"Failed to suspend domain '{domain}'",
            f"Domain '{domain}' suspended")


@click.command("resume", cls=DomainCommand)
@_domain_argument
@uri_option
def resume_command(domain: str, uri: str | None) -> None:
    """Resume a paused DOMAIN."""
    _mutate(domain, uri, xvirt.Domain.resume, f"Failed to resume domain '{domain}'",
            f"Domain '{domain}' resumed")


@click.command("shutdown", cls=DomainCommand)
@_domain_argument
@uri_option
def shutdown_command(domain: str, uri: str | None) -> None:
    """Shut DOMAIN down gracefully.

    The guest is asked to shut down; the command does not wait for it."""
    _mutate(domain, uri, xvirt.Domain.shutdown, f"Failed to shutdown domain '{domain}'",
            f"Domain '{domain}' is being shutdown")


@click.command("reboot", cls=DomainCommand)
@_domain_argument
@uri_option
def reboot_command(domain: str, uri: str | None) -> None:
    """Reboot DOMAIN.

    On a Xen host it comes back with a new ID, the same name and UUID."""
    _mutate(domain, uri, xvirt.Domain.reboot, f"Failed to reboot domain '{domain}'",
            f"Domain '{domain}' is being rebooted")


@click.command("destroy", cls=DomainCommand)
@_domain_argument
@uri_option
def destroy_command(domain: str, uri: str | None) -> None:
    """Destroy (stop at once) a running DOMAIN.

    A defined domain is shut off and can be started again; any other is gone."""
    _mutate(domain, uri, xvirt.Domain.destroy, f"Failed to destroy domain '{domain}'",
            f"Domain '{domain}' destroyed")


@click.command("save", cls=DomainCommand)
@_domain_argument
@click.argument("file", metavar="FILE")
@uri_option
def save_command(domain: str, file: str, uri: str | None) -> None:
    """Save the state of DOMAIN to FILE, and stop it.

    FILE is a name in the host's image directory, or an absolute path the host may
    write (a daemon takes its image directory only). ``restore FILE`` brings the
    domain back."""
    _mutate(domain, uri, lambda dom: dom.save(file),
            f"Failed to save domain '{domain}' to {file}", f"Domain '{domain}' saved to {file}")


@click.command("restore")
@click.argument("file", metavar="FILE")
@uri_option
def restore_command(file: str, uri: str | None) -> None:
    """Restore a domain from a state FILE written by save.

    It comes back with its name and UUID and a new ID; the file stays."""
    with connection(uri, readonly=False) as conn:
        try:
            conn.restore(file)
        except xvirt.XvirtError as exc:
            _refused(f"Failed to restore domain from {file}", exc)
    _done(f"Domain restored from {file}")


# -- definitions ----------------------------------------------------------------------------


def _read_xml(file: str) -> str:
    """The XML in ``file`` (``-``: standard input), or virsh's words for why not."""
    try:
        with click.open_file(file, encoding="utf-8") as f:
            text: str = f.read()
    except OSError as exc:
        fail(f"Failed to open file '{file}': {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"Failed to read file '{file}': it is not UTF-8 text ({exc.reason})")
    return text


@contextmanager
def _face(uri: str | None, failed: str, unsupported: str) -> Iterator[Any]:
    """A writable connection of xvirt's libvirt face (``virConnect``) to the host the
    user named: it reads libvirt's domain XML as libvirt does. Any libvirt error it
    raises ends the command with ``failed`` and libvirt's message (and ``unsupported``
    where the host does not do it at all).

    The face, like libvirt, also prints each error on stderr unless an error handler
    is registered: one that drops them is, for the command's time, since the
    command reports the error itself."""
    from xvirt.compat import libvirt as face

    target = given_uri(uri) or xvirt.default_uri()
    face.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        lconn = face.open(target)
        try:
            yield lconn
        finally:
            lconn.close()
    except face.libvirtError as exc:
        fail(f"{failed}: {_libvirt_message(exc, unsupported)}")
    finally:
        face.registerErrorHandler(None, None)


def _libvirt_message(exc: Any, unsupported: str) -> str:
    """libvirt's message of ``exc``, with where the token goes when it was missing or
    wrong, and ``unsupported`` where the host does not do what was asked."""
    message = str(exc.get_error_message() or exc)
    code = exc.get_error_code()
    if code == _AUTH_FAILED:
        return f"{message} ({TOKEN_HINT})"
    if code == _NO_SUPPORT:
        return f"{message} ({unsupported})"
    return message


@click.command("define")
@click.argument("file", metavar="FILE")
@uri_option
def define_command(file: str, uri: str | None) -> None:
    """Define (but do not start) a domain from an XML FILE.

    FILE is libvirt's domain XML (``-``: standard input), as virsh takes it; on
    xvirt's own hosts ``<domain type='xen'>`` with an OS type of ``linux``, ``xen`` or
    ``hvm``. Defining the UUID of a defined domain replaces its definition."""
    text = _read_xml(file)
    failed = f"Failed to define domain from {file}"
    with _face(uri, failed, "this host keeps no domain definitions") as lconn:
        name = lconn.defineXML(text).name()
    _done(f"Domain '{name}' defined from {file}")


@click.command("create")
@click.argument("file", metavar="FILE")
@click.option("--paused", is_flag=True, help="Leave the domain paused once created.")
@uri_option
def create_command(file: str, paused: bool, uri: str | None) -> None:
    """Create and start a domain from an XML FILE (not kept once it stops).

    FILE is libvirt's domain XML, as for ``define``."""
    text = _read_xml(file)
    failed = f"Failed to create domain from {file}"
    with _face(uri, failed, "this host creates no domains from XML") as lconn:
        name = lconn.createXML(text, _START_PAUSED if paused else 0).name()
    _done(f"Domain '{name}' created from {file}")


@click.command("undefine", cls=DomainCommand)
@_domain_argument
@uri_option
def undefine_command(domain: str, uri: str | None) -> None:
    """Undefine a shut-off DOMAIN.

    Its definition is removed; ``destroy`` it first if it runs."""
    _mutate(domain, uri, xvirt.Domain.undefine, f"Failed to undefine domain '{domain}'",
            f"Domain '{domain}' has been undefined")


@click.command("domrename", cls=DomainCommand)
@_domain_argument
@click.argument("new_name", metavar="NEW_NAME")
@uri_option
def domrename_command(domain: str, new_name: str, uri: str | None) -> None:
    """Rename DOMAIN to NEW_NAME.

    libvirt renames shut-off domains only (as virsh does, and says so of a running
    one); a Xen host renames running ones (``xm rename``) and defines a shut-off one
    again under the new name."""
    failed = f"Failed to rename domain '{domain}'"
    with connection(uri, readonly=False) as conn:
        dom = looked_up(conn, domain)
        try:
            dom.rename(new_name)
        except xvirt.XvirtError as exc:
            _refused(failed, exc)
    _done("Domain successfully renamed")


# -- looking --------------------------------------------------------------------------------


@click.command("domstate", cls=DomainCommand)
@_domain_argument
@click.option("--reason", is_flag=True,
              help="Also say why it is in that state (xvirt's own hosts: unknown).")
@json_option
@uri_option
def domstate_command(domain: str, reason: bool, as_json: bool, uri: str | None) -> None:
    """Print the state of DOMAIN.

    In virsh's words: running, idle, paused, in shutdown, shut off, crashed,
    pmsuspended. With --reason, why, in virsh's words too: libvirt says it; xvirt's own
    hosts do not, which virsh calls "unknown". JSON has both."""
    with connection(uri) as conn:
        dom = looked_up(conn, domain)
        state = dom.info().state
        why = virsh_words.libvirt_reasons(conn, [(dom.uuid, state)]).get(dom.uuid, 0) \
            if reason or as_json else 0
    word = fmt.state_word(state)
    why_word = virsh_words.reason_word(virsh_words.state_code(state), why)
    if as_json:
        click.echo(fmt.to_json({"state": word, "reason": why_word}), nl=False)
    elif reason:
        click.echo(f"{word} ({why_word})\n")
    else:
        click.echo(f"{word}\n")


@click.command("domid", cls=DomainCommand)
@_domain_argument
@uri_option
def domid_command(domain: str, uri: str | None) -> None:
    """Print the ID of DOMAIN.

    ``-`` for a domain that is not running, as virsh prints it."""
    with connection(uri) as conn:
        ident = looked_up(conn, domain).identity()
    click.echo(f"{fmt.domid_text(ident.id)}\n")


@click.command("domname", cls=DomainCommand)
@_domain_argument
@uri_option
def domname_command(domain: str, uri: str | None) -> None:
    """Print the name of DOMAIN."""
    with connection(uri) as conn:
        name = looked_up(conn, domain).name
    click.echo(f"{fmt.safe_text(name)}\n")


@click.command("domuuid", cls=DomainCommand)
@_domain_argument
@uri_option
def domuuid_command(domain: str, uri: str | None) -> None:
    """Print the UUID of DOMAIN."""
    with connection(uri) as conn:
        uuid = looked_up(conn, domain).uuid
    click.echo(f"{uuid}\n")
