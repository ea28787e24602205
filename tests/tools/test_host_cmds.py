"""virsh's host commands (xvirt/tools/host_cmds.py): nodeinfo, version, uri, hostname on an
embedded host, a daemon and libvirt, compared with the real virsh's output."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import xvirt
from tests.tools.with_virsh import needs_virsh, ok, run, virsh
from xvirt.testing.daemon import DaemonProcess
from xvirt.tools.host_cmds import nodeinfo_text, version_text


@pytest.fixture
def host(make_sim_host: Callable[..., xvirt.sim.Host]) -> xvirt.sim.Host:
    """A host of 16 CPUs and 32 GiB."""
    return make_sim_host(cpus=16, memory_kib=32 * 1024 * 1024)


def info_of(uri: str) -> xvirt.HostInfo:
    with xvirt.open(uri) as conn:
        return conn.host_info()


def test_nodeinfo_is_virshs_layout(host: xvirt.sim.Host) -> None:
    i = info_of(host.uri)
    assert i.cpus == 16 and i.memory_kib == 32 * 1024 * 1024
    assert ok(run("nodeinfo", "-c", host.uri)) == (
        f"CPU model:           {i.arch}\n"
        f"CPU(s):              16\n"
        f"CPU frequency:       {i.cpu_mhz} MHz\n"
        f"CPU socket(s):       {i.sockets_per_node}\n"
        f"Core(s) per socket:  {i.cores_per_socket}\n"
        f"Thread(s) per core:  {i.threads_per_core}\n"
        f"NUMA cell(s):        {i.nodes}\n"
        f"Memory size:         33554432 KiB\n"
        "\n")


def test_nodeinfo_json_uses_xvirts_names(host: xvirt.sim.Host) -> None:
    i = info_of(host.uri)
    assert json.loads(ok(run("nodeinfo", "--json", "-c", host.uri))) == {
        "arch": i.arch, "cpus": 16, "cpu_mhz": i.cpu_mhz,
        "sockets_per_node": i.sockets_per_node, "cores_per_socket": i.cores_per_socket,
        "threads_per_core": i.threads_per_core, "nodes": i.nodes,
        "memory_kib": 32 * 1024 * 1024}


def test_version_on_an_embedded_host(host: xvirt.sim.Host) -> None:
    i = info_of(host.uri)
    assert ok(run("version", "-c", host.uri)) == (
        f"Using library: xvirt {xvirt.__version__}\n"
        f"Running hypervisor: {i.hypervisor} {i.version}\n\n")
    assert json.loads(ok(run("version", "--json", "-c", host.uri))) == {
        "xvirt": xvirt.__version__, "libvirt": None, "hypervisor": "Xen",
        "hypervisor_version": i.version}


def test_uri_and_hostname(host: xvirt.sim.Host) -> None:
    assert ok(run("uri", "-c", host.uri)) == f"{host.uri}\n\n"
    assert ok(run("-c", host.uri, "uri")) == f"{host.uri}\n\n"
    assert ok(run("hostname", "-c", host.uri)) == f"{info_of(host.uri).hostname}\n\n"


def test_uri_is_the_default_one_without_c(host: xvirt.sim.Host) -> None:
    env = {"XVIRT_DEFAULT_URI": host.uri, "LIBVIRT_DEFAULT_URI": "test:///default"}
    assert ok(run("uri", env=env)) == f"{host.uri}\n\n"


def test_what_a_host_says_cannot_break_the_output() -> None:
    i = xvirt.HostInfo("h", "Xen\x1b[2J", "4.17\n", "x86\n64", 1, 1, 1, 1, 1, 1, 1, 1, "b")
    assert version_text(i, 9000000) == (
        f"Using library: xvirt {xvirt.__version__}\nUsing library: libvirt 9.0.0\n"
        "Using API: Xen\\x1b[2J 9.0.0\nRunning hypervisor: Xen\\x1b[2J 4.17\\x0a\n\n")
    assert nodeinfo_text(i).startswith("CPU model:           x86\\x0a64\nCPU(s): ")


def test_on_a_daemon_over_tcp(daemon: DaemonProcess) -> None:
    i = info_of(daemon.unix_uri)
    assert ok(run("hostname", "-c", daemon.tcp_uri)) == f"{i.hostname}\n\n"
    assert ok(run("uri", "-c", daemon.tcp_uri)) == f"{daemon.tcp_uri}\n\n"
    assert ok(run("nodeinfo", "-c", daemon.tcp_uri)).startswith(
        f"CPU model:           {i.arch}\nCPU(s):              {i.cpus}\n")
    assert ok(run("version", "-c", daemon.tcp_uri)).endswith(
        f"Running hypervisor: {i.hypervisor} {i.version}\n\n")


@needs_virsh
@pytest.mark.parametrize("command", ["nodeinfo", "hostname", "uri"])
@pytest.mark.parametrize("uri", ["test:///default", "libvirt:test:///default"])
def test_on_libvirt_the_output_is_virshs(command: str, uri: str) -> None:
    mine = ok(run(command, "-c", uri))
    theirs = virsh("test:///default", command).stdout
    assert mine == (theirs if command != "uri" else f"{uri}\n\n")
    assert theirs == "test:///default\n\n" or command != "uri"


@needs_virsh
def test_on_libvirt_version_has_virshs_lines() -> None:
    """virsh's lines about libvirt and the hypervisor, as they are, after xvirt's own
    (virsh's first, the library it was compiled against, has no counterpart here)."""
    mine = ok(run("version", "-c", "test:///default")).splitlines()
    theirs = virsh("test:///default", "version").stdout.splitlines()
    assert mine[0] == f"Using library: xvirt {xvirt.__version__}"
    assert theirs[0].startswith("Compiled against library: libvirt ")
    assert mine[1:] == theirs[1:]
    assert [line.split(":")[0] for line in mine[1:]] == [
        "Using library", "Using API", "Running hypervisor", ""]
    libvirt_version = theirs[1].removeprefix("Using library: libvirt ")
    assert json.loads(ok(run("version", "--json", "-c", "test:///default"))) == {
        "xvirt": xvirt.__version__, "libvirt": libvirt_version, "hypervisor": "TEST",
        "hypervisor_version": theirs[3].removeprefix("Running hypervisor: TEST ")}
