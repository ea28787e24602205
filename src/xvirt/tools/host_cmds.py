"""virsh's host commands: ``nodeinfo``, ``version``, ``uri`` and ``hostname``, from
:meth:`xvirt.Connection.host_info`, on a read-only connection, in virsh's layout
(libvirt 9.0) and its closing blank line."""

from __future__ import annotations

import click

import xvirt
from xvirt.tools import format as fmt
from xvirt.tools.common import connection, json_option, uri_option

__all__ = [
    "hostname_command",
    "nodeinfo_command",
    "nodeinfo_text",
    "uri_command",
    "version_command",
    "version_text",
]

#: nodeinfo's lines: virsh's label and the HostInfo field it shows (JSON uses the field
#: names), in virsh's order.
_NODEINFO: tuple[tuple[str, str], ...] = (
    ("CPU model:", "arch"),
    ("CPU(s):", "cpus"),
    ("CPU frequency:", "cpu_mhz"),
    ("CPU socket(s):", "sockets_per_node"),
    ("Core(s) per socket:", "cores_per_socket"),
    ("Thread(s) per core:", "threads_per_core"),
    ("NUMA cell(s):", "nodes"),
    ("Memory size:", "memory_kib"),
)
_UNITS = {"cpu_mhz": " MHz", "memory_kib": " KiB"}


def nodeinfo_text(info: xvirt.HostInfo) -> str:
    """virsh's nodeinfo: each label padded to 20 columns, then the value."""
    lines = (f"{label:<20} {fmt.safe_text(str(getattr(info, field)))}{_UNITS.get(field, '')}\n"
             for label, field in _NODEINFO)
    return "".join(lines) + "\n"


def _dotted(version: int) -> str:
    """libvirt's version number (major * 1,000,000 + minor * 1,000 + micro) as virsh
    prints it."""
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


def version_text(info: xvirt.HostInfo, libvirt_version: int | None) -> str:
    """virsh's version lines, xvirt's library first; libvirt's library and API lines
    only where libvirt is underneath (``libvirt_version``, libvirt's number)."""
    kind, version = fmt.safe_text(info.hypervisor), fmt.safe_text(info.version)
    lines = [f"Using library: xvirt {xvirt.__version__}\n"]
    if libvirt_version is not None:
        lines += [f"Using library: libvirt {_dotted(libvirt_version)}\n",
                  f"Using API: {kind} {_dotted(libvirt_version)}\n"]
    lines.append(f"Running hypervisor: {kind} {version}\n")
    return "".join(lines) + "\n"


def _libvirt_version(conn: xvirt.Connection) -> int | None:
    """libvirt's library version on a ``libvirt:`` URI; None on xvirt's own hosts."""
    try:
        lconn = conn.libvirt_connection()
    except xvirt.UnsupportedError:
        return None
    return int(lconn.getLibVersion())


@click.command("nodeinfo")
@json_option
@uri_option
def nodeinfo_command(as_json: bool, uri: str | None) -> None:
    """Print the host's CPUs and memory.

    As virsh: the CPU model (the host's architecture), CPUs, their frequency and
    topology, NUMA cells and memory. JSON uses xvirt's names (HostInfo's fields)."""
    with connection(uri) as conn:
        info = conn.host_info()
    if as_json:
        click.echo(fmt.to_json({field: getattr(info, field) for _, field in _NODEINFO}),
                   nl=False)
    else:
        click.echo(nodeinfo_text(info), nl=False)


@click.command("version")
@json_option
@uri_option
def version_command(as_json: bool, uri: str | None) -> None:
    """Print the versions of xvirt, libvirt and the hypervisor.

    libvirt's lines only where libvirt is underneath (a ``libvirt:`` URI)."""
    with connection(uri) as conn:
        info = conn.host_info()
        libvirt_version = _libvirt_version(conn)
    if as_json:
        click.echo(fmt.to_json({
            "xvirt": xvirt.__version__,
            "libvirt": None if libvirt_version is None else _dotted(libvirt_version),
            "hypervisor": info.hypervisor,
            "hypervisor_version": info.version,
        }), nl=False)
    else:
        click.echo(version_text(info, libvirt_version), nl=False)


@click.command("uri")
@uri_option
def uri_command(uri: str | None) -> None:
    """Print the URI of the host connected to.

    The URI as xvirt opened it: the one given, else the default."""
    with connection(uri) as conn:
        shown = conn.uri
    click.echo(f"{fmt.safe_text(shown)}\n")


@click.command("hostname")
@uri_option
def hostname_command(uri: str | None) -> None:
    """Print the host's name."""
    with connection(uri) as conn:
        name = conn.host_info().hostname
    click.echo(f"{fmt.safe_text(name)}\n")
