"""The ``xvirt`` command: one group whose subcommands load only when they run.

``main`` holds a static table, name -> ``"module:attribute"`` and the command's
short help, so ``xvirt --help`` lists every command and ``xvirt list`` runs
without importing the daemon, the exporter or the benchmark (nor their
dependencies): a command's module is imported when that command is invoked.
``tests/tools/test_lazy_imports.py`` keeps each short help equal to the one
the command itself gives, and every entry importable.

The group owns what is the same for every command: ``-c/--connect URI``
before the subcommand (virsh's place; each command still takes it after its
name too), and the exit statuses: 0 done, 1 a failed operation (one
``error:`` line, see :func:`xvirt.tools.common.fail`), 2 a usage error (a bad
option or value: click's usage message), 130 on Ctrl-C, without a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from xvirt.tools.common import URI_META_KEY, connection, fail, find_domain

__all__ = ["COMMANDS", "Entry", "LazyGroup", "find_domain", "main"]

_fail = fail  # bench's import of the old name
_connection = connection

#: The exit status of a command ended by Ctrl-C (SIGINT), as shells report it: 128 + 2.
INTERRUPTED = 130


class Entry(NamedTuple):
    """Where a command lives, and what ``xvirt --help`` says of it without importing it."""

    target: str  # "module:attribute", the module under xvirt.tools
    short_help: str  # the command's own short help (a test keeps the two equal)


_DOMAIN_CMDS = "domain_cmds"
_HOST_CMDS = "host_cmds"

#: Every ``xvirt`` command. ``xvirt --help`` lists them from here, in name order.
COMMANDS: Mapping[str, Entry] = {
    "bench": Entry("bench:bench_command",
                   "Measure what the monitoring loop costs and how often it is wrong, three "
                   "ways: 2006 mode (a control-plane request per lookup), the naive ID cache "
                   "of the 2006 patch, and xvirt's cache."),
    "compat": Entry("compat_cmd:compat_command",
                    "Run a libvirt-python script with `import libvirt` served by xvirt."),
    "create": Entry(f"{_DOMAIN_CMDS}:create_command",
                    "Create and start a domain from an XML FILE (not kept once it stops)."),
    "daemon": Entry("daemon_cmd:daemon_command",
                    "Serve a host: xend's HTTP control plane, the fast channel and events."),
    "define": Entry(f"{_DOMAIN_CMDS}:define_command",
                    "Define (but do not start) a domain from an XML FILE."),
    "destroy": Entry(f"{_DOMAIN_CMDS}:destroy_command",
                     "Destroy (stop at once) a running DOMAIN."),
    "domid": Entry(f"{_DOMAIN_CMDS}:domid_command", "Print the ID of DOMAIN."),
    "dominfo": Entry("view_cmds:dominfo_command",
                     "Show facts about DOMAIN (an ID, a UUID or a name)."),
    "domname": Entry(f"{_DOMAIN_CMDS}:domname_command", "Print the name of DOMAIN."),
    "domrename": Entry(f"{_DOMAIN_CMDS}:domrename_command", "Rename DOMAIN to NEW_NAME."),
    "domstate": Entry(f"{_DOMAIN_CMDS}:domstate_command", "Print the state of DOMAIN."),
    "domstats": Entry("domstats_cmd:domstats_command",
                      "Print statistics of running domains, in virsh's groups."),
    "domuuid": Entry(f"{_DOMAIN_CMDS}:domuuid_command", "Print the UUID of DOMAIN."),
    "event": Entry("event_cmd:event_command", "Print the domains' lifecycle events."),
    "exporter": Entry("exporter:exporter_command",
                      "Serve the host's domains as Prometheus metrics at /metrics (read-only)."),
    "hostname": Entry(f"{_HOST_CMDS}:hostname_command", "Print the host's name."),
    "list": Entry("view_cmds:list_command",
                  "List running domains in ID order (with --all, then the shut-off ones by "
                  "name)."),
    "nodeinfo": Entry(f"{_HOST_CMDS}:nodeinfo_command",
                      "Print the host's CPUs and memory."),
    "reboot": Entry(f"{_DOMAIN_CMDS}:reboot_command", "Reboot DOMAIN."),
    "restore": Entry(f"{_DOMAIN_CMDS}:restore_command",
                     "Restore a domain from a state FILE written by save."),
    "resume": Entry(f"{_DOMAIN_CMDS}:resume_command", "Resume a paused DOMAIN."),
    "save": Entry(f"{_DOMAIN_CMDS}:save_command",
                  "Save the state of DOMAIN to FILE, and stop it."),
    "shutdown": Entry(f"{_DOMAIN_CMDS}:shutdown_command", "Shut DOMAIN down gracefully."),
    "start": Entry(f"{_DOMAIN_CMDS}:start_command", "Start a defined (shut off) DOMAIN."),
    "suspend": Entry(f"{_DOMAIN_CMDS}:suspend_command", "Suspend (pause) a running DOMAIN."),
    "top": Entry("top:top_command",
                 "Show the domains of one or more hosts, refreshed, as virt-top and xentop "
                 "do."),
    "undefine": Entry(f"{_DOMAIN_CMDS}:undefine_command", "Undefine a shut-off DOMAIN."),
    "uri": Entry(f"{_HOST_CMDS}:uri_command", "Print the URI of the host connected to."),
    "version": Entry(f"{_HOST_CMDS}:version_command",
                     "Print the versions of xvirt, libvirt and the hypervisor."),
}


def load_command(name: str) -> click.Command | None:
    """The command ``name``, its module imported now; None when the name is unknown or its
    module is not there (a command being written: the others and --help keep working).
    Any other import error is a bug and is raised."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    module_name, _, attribute = entry.target.partition(":")
    qualified = f"xvirt.tools.{module_name}"
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            return None
        raise
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.target} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group that lists :data:`COMMANDS` without importing them and imports one only
    to run it (or to show its own --help); Ctrl-C ends any of them with status 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        return found if found is not None else load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lays the list out, from the table: no command is imported for it."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            added = self.commands.get(name)
            text = (added.get_short_help_str(limit) if added is not None
                    else click.Command(name, help=COMMANDS[name].short_help)
                    .get_short_help_str(limit))
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Ctrl-C (SIGINT) wherever it lands ends the command with status 130 and no
        traceback, nor click's "Aborted!": a newline ends the ``^C`` the terminal echoed."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            pass
        except click.Abort as exc:  # click turns Ctrl-C at a prompt into Abort
            if not isinstance(exc.__context__, KeyboardInterrupt):
                raise  # a refused confirmation: click's "Aborted!", status 1
        click.echo(err=True)
        raise click.exceptions.Exit(INTERRUPTED)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from xvirt import __version__  # the package is loaded already: xvirt.tools is in it

    click.echo(f"xvirt, version {__version__}")
    ctx.exit()


def _pass_uri_on(ctx: click.Context, uri: str) -> None:
    """Make ``uri`` the default of the subcommand's own -c/--connect option, so that every
    command, including those that do not use :func:`xvirt.tools.common.connection`
    (top, exporter, bench, compat), takes ``xvirt -c URI CMD`` as ``xvirt CMD -c URI``;
    a URI given after the subcommand still wins."""
    name = ctx.invoked_subcommand
    command = main.get_command(ctx, name) if name else None
    if name is None or command is None:
        return
    for param in command.params:
        if isinstance(param, click.Option) and "--connect" in param.opts and param.name:
            defaults: dict[str, Any] = dict(ctx.default_map or {})
            mine: dict[str, Any] = dict(defaults.get(name) or {})
            mine[param.name] = [uri] if param.multiple else uri
            defaults[name] = mine
            ctx.default_map = defaults


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--connect", "--uri", "uri", metavar="URI", default=None,
              help="Host to talk to, for any command (also accepted after it) "
                   "[default: $XVIRT_DEFAULT_URI, $LIBVIRT_DEFAULT_URI, sim:///default].")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and exit.")
@click.pass_context
def main(ctx: click.Context, uri: str | None) -> None:
    """Monitor and manage Xen-style hosts (virsh-like).

    A URI may be a libvirt one (test:///default, qemu:///system, xen:///system):
    it is reached through xvirt's libvirt driver.
    """
    if uri is not None:
        ctx.meta[URI_META_KEY] = uri
        _pass_uri_on(ctx, uri)
