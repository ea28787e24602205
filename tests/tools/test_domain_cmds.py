"""virsh's everyday domain commands (xvirt/tools/domain_cmds.py) on an embedded host, a
daemon and libvirt, their output compared with the real virsh's where both have it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import xvirt
from tests.tools.with_virsh import (
    TEST_UUID,
    XEN_XML,
    needs_virsh,
    ok,
    one_error_line,
    run,
    virsh,
    virsh_error_lines,
    write_xml,
)
from xvirt.clock import ManualClock
from xvirt.testing.daemon import DaemonProcess
from xvirt.tools.domain_cmds import TOKEN_HINT
from xvirt.tools.format import state_word

pytestmark = pytest.mark.clock_start(1000.0)


@pytest.fixture
def lab(sim_host: xvirt.sim.Host, clock: ManualClock) -> xvirt.sim.Host:
    """Domain-0, web1 (ID 1), db1 (ID 2), and mail1 defined and shut off."""
    sim_host.create("web1", vcpus=2)
    sim_host.create("db1")
    sim_host.define("mail1")
    clock.advance(5)
    return sim_host


def on(host: xvirt.sim.Host, *args: str) -> str:
    """``xvirt ARGS -c sim:///HOST``'s output, which must succeed."""
    return ok(run(*args, "-c", host.uri))


def rec(host: xvirt.sim.Host, name: str) -> xvirt.sim.DomainRecord | None:
    return next((r for r in host.domains() if r.name == name), None)


def ref_of(host: xvirt.sim.Host, name: str, kind: str) -> str:
    found = rec(host, name)
    assert found is not None
    return {"name": found.name, "id": str(found.id), "uuid": found.uuid}[kind]


# -- the lifecycle on an embedded host --------------------------------------------------------


@pytest.mark.parametrize("kind", ["name", "id", "uuid"])
def test_suspend_and_resume_name_the_domain_as_given(lab: xvirt.sim.Host, kind: str) -> None:
    ref = ref_of(lab, "web1", kind)
    assert on(lab, "suspend", ref) == f"Domain '{ref}' suspended\n\n"
    assert rec(lab, "web1").state is xvirt.DomainState.PAUSED  # type: ignore[union-attr]
    assert on(lab, "resume", ref) == f"Domain '{ref}' resumed\n\n"
    assert rec(lab, "web1").state is xvirt.DomainState.RUNNING  # type: ignore[union-attr]


def test_shutdown_reboot_destroy(lab: xvirt.sim.Host) -> None:
    old_id = rec(lab, "web1").id  # type: ignore[union-attr]
    assert on(lab, "reboot", "web1") == "Domain 'web1' is being rebooted\n\n"
    rebooted = rec(lab, "web1")
    assert rebooted is not None and rebooted.id != old_id  # Xen: a new ID
    assert on(lab, "shutdown", "web1") == "Domain 'web1' is being shutdown\n\n"
    assert rec(lab, "web1") is None
    assert on(lab, "destroy", "db1") == "Domain 'db1' destroyed\n\n"
    assert rec(lab, "db1") is None


def test_start_boots_a_defined_domain_and_refuses_a_running_one(lab: xvirt.sim.Host) -> None:
    assert on(lab, "start", "mail1") == "Domain 'mail1' started\n\n"
    assert rec(lab, "mail1") is not None
    assert one_error_line(run("start", "mail1", "-c", lab.uri)) == \
        "error: Domain is already active"


def test_save_then_restore(lab: xvirt.sim.Host) -> None:
    uuid = rec(lab, "web1").uuid  # type: ignore[union-attr]
    assert on(lab, "save", "web1", "web1.save") == "Domain 'web1' saved to web1.save\n\n"
    assert rec(lab, "web1") is None
    assert on(lab, "restore", "web1.save") == "Domain restored from web1.save\n\n"
    back = rec(lab, "web1")
    assert back is not None and back.uuid == uuid


def test_restore_of_no_image_says_which(lab: xvirt.sim.Host) -> None:
    line = one_error_line(run("restore", "nothing.save", "-c", lab.uri))
    assert line.startswith("error: Failed to restore domain from nothing.save: ")


def test_domrename_renames_a_running_domain_on_a_xen_host(lab: xvirt.sim.Host) -> None:
    assert on(lab, "domrename", "web1", "www") == "Domain successfully renamed\n\n"
    assert rec(lab, "www") is not None and rec(lab, "web1") is None


def test_domrename_of_a_shut_off_domain_defines_it_again(lab: xvirt.sim.Host) -> None:
    assert on(lab, "domrename", "mail1", "post") == "Domain successfully renamed\n\n"
    assert [d.name for d in lab.defined_domains()] == ["post"]


# -- definitions ------------------------------------------------------------------------------


def test_define_start_destroy_undefine(lab: xvirt.sim.Host, tmp_path: Path) -> None:
    xml = write_xml(tmp_path, "g1")
    assert on(lab, "define", str(xml)) == f"Domain 'g1' defined from {xml}\n\n"
    (defined,) = [d for d in lab.defined_domains() if d.name == "g1"]
    assert defined.config is not None and defined.config.memory_kib == 256 * 1024
    assert on(lab, "domstate", "g1") == "shut off\n\n"
    assert on(lab, "start", "g1") == "Domain 'g1' started\n\n"
    assert on(lab, "destroy", "g1") == "Domain 'g1' destroyed\n\n"
    assert on(lab, "undefine", "g1") == "Domain 'g1' has been undefined\n\n"
    assert not [d for d in lab.defined_domains() if d.name == "g1"]


def test_define_reads_standard_input(lab: xvirt.sim.Host) -> None:
    result = run("define", "-", "-c", lab.uri, stdin=XEN_XML.format(name="g2"))
    assert ok(result) == "Domain 'g2' defined from -\n\n"
    assert [d.name for d in lab.defined_domains()] == ["g2", "mail1"]


@pytest.mark.parametrize("paused", [False, True])
def test_create_starts_a_transient_domain(lab: xvirt.sim.Host, tmp_path: Path,
                                          paused: bool) -> None:
    xml = write_xml(tmp_path, "t1")
    args = ("create", str(xml), *(("--paused",) if paused else ()))
    assert on(lab, *args) == f"Domain 't1' created from {xml}\n\n"
    made = rec(lab, "t1")
    assert made is not None
    assert made.state is (xvirt.DomainState.PAUSED if paused else xvirt.DomainState.RUNNING)
    on(lab, "destroy", "t1")
    assert rec(lab, "t1") is None and not [d for d in lab.defined_domains() if d.name == "t1"]


def test_undefine_of_a_running_domain_is_refused(lab: xvirt.sim.Host) -> None:
    line = one_error_line(run("undefine", "web1", "-c", lab.uri))
    assert line.startswith("error: Failed to undefine domain 'web1': ")


@pytest.mark.parametrize(("text", "words"), [
    ("<domain", "(domain_definition):1: unclosed token"),
    ("<domain type='test'><name>x</name><memory>1024</memory><os><type>hvm</type></os>"
     "</domain>", "this host runs domains of type 'xen'"),
    ("<domain type='xen'><name>x</name><os><type>linux</type></os></domain>",
     "Memory size must be specified"),
])
def test_define_refuses_bad_xml_in_one_line(lab: xvirt.sim.Host, tmp_path: Path, text: str,
                                            words: str) -> None:
    xml = write_xml(tmp_path, "bad", text)
    for command in ("define", "create"):
        line = one_error_line(run(command, str(xml), "-c", lab.uri))
        assert line.startswith(f"error: Failed to {command} domain from {xml}: "), line
        assert words in line


# -- looking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("act", "word"), [
    (lambda h, i: None, "running"),
    (lambda h, i: h.pause(i), "paused"),
    (lambda h, i: h.set_blocked(i), "idle"),
    (lambda h, i: h.crash(i), "crashed"),
])
def test_domstate_prints_virshs_word(lab: xvirt.sim.Host,
                                     act: Callable[[xvirt.sim.Host, int], None],
                                     word: str) -> None:
    web1 = rec(lab, "web1")
    assert web1 is not None
    act(lab, web1.id)
    now = rec(lab, "web1")
    assert now is not None and state_word(now.state) == word
    assert on(lab, "domstate", "web1") == f"{word}\n\n"
    assert on(lab, "domstate", "web1", "--reason") == f"{word} (unknown)\n\n"
    assert json.loads(on(lab, "domstate", "web1", "--json")) == {
        "state": word, "reason": "unknown"}


def test_domstate_of_a_shut_off_domain(lab: xvirt.sim.Host) -> None:
    assert on(lab, "domstate", "mail1", "--reason") == "shut off (unknown)\n\n"


def test_domid_domname_domuuid(lab: xvirt.sim.Host) -> None:
    web1 = rec(lab, "web1")
    assert web1 is not None
    assert on(lab, "domid", "web1") == f"{web1.id}\n\n"
    assert on(lab, "domid", web1.uuid) == f"{web1.id}\n\n"
    assert on(lab, "domname", str(web1.id)) == "web1\n\n"
    assert on(lab, "domname", web1.uuid.upper()) == "web1\n\n"
    assert on(lab, "domuuid", "web1") == f"{web1.uuid}\n\n"
    assert on(lab, "domuuid", str(web1.id)) == f"{web1.uuid}\n\n"
    assert on(lab, "domid", "mail1") == "-\n\n"  # not running: virsh's dash


@pytest.mark.parametrize("command", [
    ["start"], ["suspend"], ["resume"], ["shutdown"], ["reboot"], ["destroy"],
    ["save", "DOMAIN", "f.save"], ["undefine"], ["domrename", "DOMAIN", "new"],
    ["domstate"], ["domid"], ["domname"], ["domuuid"],
])
def test_an_unknown_domain_is_virshs_one_line(lab: xvirt.sim.Host,
                                              command: list[str]) -> None:
    args = [a if a != "DOMAIN" else "nosuch" for a in command]
    if len(args) == 1:
        args.append("nosuch")
    assert one_error_line(run(*args, "-c", lab.uri)) == "error: failed to get domain 'nosuch'"


def test_a_negative_id_is_explained(lab: xvirt.sim.Host) -> None:
    assert "out of range" in one_error_line(run("domstate", "-1", "-c", lab.uri))


def test_a_refusal_is_failed_to_and_the_reason(lab: xvirt.sim.Host) -> None:
    line = one_error_line(run("resume", "web1", "-c", lab.uri))
    assert line == "error: Failed to resume domain 'web1': domain is running, not paused"


def test_the_uri_before_the_subcommand(lab: xvirt.sim.Host) -> None:
    assert ok(run("-c", lab.uri, "suspend", "web1")) == "Domain 'web1' suspended\n\n"
    assert ok(run("-c", lab.uri, "domstate", "web1")) == "paused\n\n"


# -- on a daemon: mutations need the token over TCP --------------------------------------------


@pytest.fixture
def daemon_lab(daemon: DaemonProcess) -> DaemonProcess:
    """The daemon's host with web1 running and mail1 defined (made over the trusted socket)."""
    with xvirt.open(daemon.unix_uri) as conn:
        conn.create("web1", xvirt.DomainConfig(262144, 262144, 1))
        conn.define("mail1", xvirt.DomainConfig(262144, 262144, 1))
    return daemon


def test_on_a_daemon_reads_need_no_token(daemon_lab: DaemonProcess) -> None:
    uri = daemon_lab.tcp_uri
    assert ok(run("domstate", "web1", "-c", uri)) == "running\n\n"
    assert ok(run("domid", "mail1", "-c", uri)) == "-\n\n"


def test_on_a_daemon_a_mutation_without_the_token_is_refused(
        daemon_lab: DaemonProcess, tmp_path: Path) -> None:
    for args in (["suspend", "web1"], ["define", str(write_xml(tmp_path, "g1"))]):
        line = one_error_line(run(*args, "-c", daemon_lab.tcp_uri))
        assert "no token" in line and line.endswith(f"({TOKEN_HINT})"), line
    assert ok(run("domstate", "web1", "-c", daemon_lab.tcp_uri)) == "running\n\n"


def test_on_a_daemon_the_token_file_lets_mutations_through(daemon_lab: DaemonProcess,
                                                           tmp_path: Path) -> None:
    assert daemon_lab.token_file is not None
    uri = f"{daemon_lab.tcp_uri}?token_file={daemon_lab.token_file}"
    assert ok(run("suspend", "web1", "-c", uri)) == "Domain 'web1' suspended\n\n"
    env = {"XVIRT_TOKEN_FILE": str(daemon_lab.token_file)}
    plain = daemon_lab.tcp_uri
    assert ok(run("resume", "web1", "-c", plain, env=env)) == "Domain 'web1' resumed\n\n"
    xml = write_xml(tmp_path, "g1")
    assert ok(run("define", str(xml), "-c", plain, env=env)) == \
        f"Domain 'g1' defined from {xml}\n\n"
    assert ok(run("start", "g1", "-c", plain, env=env)) == "Domain 'g1' started\n\n"
    assert ok(run("domstate", "g1", "-c", plain)) == "running\n\n"
    assert ok(run("destroy", "g1", "-c", plain, env=env)) == "Domain 'g1' destroyed\n\n"
    assert ok(run("undefine", "g1", "-c", plain, env=env)) == \
        "Domain 'g1' has been undefined\n\n"


def test_on_a_daemon_over_its_socket_everything_goes(daemon_lab: DaemonProcess,
                                                     tmp_path: Path) -> None:
    uri = daemon_lab.unix_uri
    assert ok(run("start", "mail1", "-c", uri)) == "Domain 'mail1' started\n\n"
    assert ok(run("save", "mail1", "mail1.save", "-c", uri)) == \
        "Domain 'mail1' saved to mail1.save\n\n"
    assert ok(run("domstate", "mail1", "-c", uri)) == "shut off\n\n"  # defined: kept
    assert ok(run("restore", "mail1.save", "-c", uri)) == "Domain restored from mail1.save\n\n"
    assert ok(run("domstate", "mail1", "-c", uri)) == "running\n\n"
    xml = write_xml(tmp_path, "t1")
    assert ok(run("create", str(xml), "-c", uri)) == f"Domain 't1' created from {xml}\n\n"
    assert ok(run("reboot", "t1", "-c", uri)) == "Domain 't1' is being rebooted\n\n"
    assert ok(run("shutdown", "t1", "-c", uri)) == "Domain 't1' is being shutdown\n\n"
    assert one_error_line(run("domstate", "t1", "-c", uri)) == \
        "error: failed to get domain 't1'"


# -- on libvirt, beside virsh ----------------------------------------------------------------------


@needs_virsh
@pytest.mark.parametrize("args", [
    ["domstate", "test"], ["domstate", "test", "--reason"], ["domstate", "1", "--reason"],
    ["domid", "test"], ["domid", TEST_UUID], ["domname", "1"], ["domuuid", "test"],
    ["domuuid", "1"],
])
def test_looking_prints_what_virsh_prints(args: list[str]) -> None:
    """On libvirt's test:///default, fresh in each process: the same host for both."""
    assert ok(run(*args, "-c", "libvirt:test:///default")) == \
        virsh("test:///default", *args).stdout
    assert ok(run("-c", "test:///default", *args)) == virsh("test:///default", *args).stdout


@needs_virsh
@pytest.mark.parametrize("args", [
    ["domstate", "nosuch"], ["domid", "nosuch"], ["suspend", "nosuch"],
    ["domuuid", "99"], ["start", "test"],
])
def test_errors_are_virshs_line(args: list[str]) -> None:
    mine = one_error_line(run(*args, "-c", "libvirt:test:///default"))
    assert [mine] == virsh_error_lines(virsh("test:///default", *args))


@needs_virsh
@pytest.mark.parametrize(("args", "then"), [
    (["suspend", "test"], "paused (user)"),
    (["destroy", "test"], "shut off (destroyed)"),
    (["shutdown", "test"], "shut off (shutdown)"),
    (["reboot", "test"], "running (booted)"),
])
def test_mutations_on_libvirt_say_and_do_what_virshs_do(libvirtd_host: str, args: list[str],
                                                        then: str) -> None:
    """xvirt acts on a private libvirtd; virsh then finds the state its own command
    leaves on a fresh host (``virsh -c test:///default "CMD; domstate --reason"``)."""
    mine = ok(run(*args, "-c", f"libvirt:{libvirtd_host}"))
    theirs = virsh("test:///default", f"{' '.join(args)}; domstate test --reason").stdout
    assert theirs == mine + f"{then}\n\n"
    assert virsh(libvirtd_host, "domstate", "test", "--reason").stdout == f"{then}\n\n"
    assert ok(run("domstate", "test", "--reason", "-c", f"libvirt:{libvirtd_host}")) == \
        f"{then}\n\n"


@needs_virsh
def test_resume_start_save_restore_on_libvirt_as_virsh(libvirtd_host: str,
                                                       tmp_path: Path) -> None:
    uri = f"libvirt:{libvirtd_host}"
    image = str(tmp_path / "test.save")
    ok(run("suspend", "test", "-c", uri))
    assert ok(run("resume", "test", "-c", uri)) == "Domain 'test' resumed\n\n"
    assert virsh(libvirtd_host, "domstate", "test", "--reason").stdout == \
        "running (unpaused)\n\n"
    assert ok(run("save", "test", image, "-c", uri)) == f"Domain 'test' saved to {image}\n\n"
    assert ok(run("domstate", "test", "--reason", "-c", uri)) == \
        virsh(libvirtd_host, "domstate", "test", "--reason").stdout == "shut off (saved)\n\n"
    assert ok(run("restore", image, "-c", uri)) == f"Domain restored from {image}\n\n"
    assert ok(run("domstate", "test", "--reason", "-c", uri)) == "running (restored)\n\n"
    ok(run("destroy", "test", "-c", uri))
    assert ok(run("start", "test", "-c", uri)) == "Domain 'test' started\n\n"
    assert virsh(libvirtd_host, "domstate", "test", "--reason").stdout == "running (booted)\n\n"


@needs_virsh
def test_domrename_on_libvirt_as_virsh(libvirtd_host: str) -> None:
    """libvirt renames a shut-off domain: the same message as virsh's, and virsh sees
    the new name; a running one is refused by libvirt, in one line."""
    uri = f"libvirt:{libvirtd_host}"
    theirs = virsh("test:///default", "destroy test; domrename test renamed").stdout
    ok(run("destroy", "test", "-c", uri))
    mine = ok(run("domrename", "test", "renamed", "-c", uri))
    assert theirs.endswith(mine) and mine == "Domain successfully renamed\n\n"
    assert virsh(libvirtd_host, "domstate", "renamed").stdout == "shut off\n\n"
    ok(run("start", "renamed", "-c", uri))
    line = one_error_line(run("domrename", "renamed", "again", "-c", uri))
    assert line.startswith("error: Failed to rename domain 'renamed': ")


@needs_virsh
def test_define_create_undefine_on_libvirt_as_virsh(libvirtd_host: str,
                                                    tmp_path: Path) -> None:
    """The XML goes to libvirt as virsh's does: libvirt's test domains (type 'test')."""
    uri = f"libvirt:{libvirtd_host}"
    dumped = virsh(libvirtd_host, "dumpxml", "test").stdout
    lines = [line for line in dumped.splitlines() if "<uuid>" not in line]
    xml = tmp_path / "t2.xml"
    xml.write_text("\n".join(lines).replace("<name>test</name>", "<name>t2</name>"))
    assert ok(run("define", str(xml), "-c", uri)) == f"Domain 't2' defined from {xml}\n\n"
    assert virsh(libvirtd_host, "domstate", "t2").stdout == "shut off\n\n"
    assert ok(run("undefine", "t2", "-c", uri)) == "Domain 't2' has been undefined\n\n"
    assert ok(run("create", str(xml), "-c", uri)) == f"Domain 't2' created from {xml}\n\n"
    assert virsh(libvirtd_host, "domstate", "t2").stdout == "running\n\n"
    theirs = virsh("test:///default", f"define {xml}; undefine t2; create {xml}").stdout
    assert theirs == (f"Domain 't2' defined from {xml}\n\nDomain 't2' has been undefined\n\n"
                      f"Domain 't2' created from {xml}\n\n")


@needs_virsh
def test_a_file_that_cannot_be_read_is_virshs_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.xml")
    mine = one_error_line(run("define", missing, "-c", "libvirt:test:///default"))
    assert [mine] == virsh_error_lines(virsh("test:///default", "define", missing))


@needs_virsh
@pytest.mark.parametrize(("args", "failed"), [
    (["destroy", "test"], "Failed to destroy domain 'test'"),
    (["suspend", "1"], "Failed to suspend domain '1'"),
    (["save", "test", "/tmp/t.save"], "Failed to save domain 'test' to /tmp/t.save"),
])
def test_a_read_only_connection_is_refused_in_one_line_with_virshs_words(
        monkeypatch: pytest.MonkeyPatch, libvirtd_host: str, args: list[str],
        failed: str) -> None:
    """virsh -r refuses in two lines, "Failed to ..." and libvirt's reason; xvirt in one,
    with the same first words, when its connection turns out read-only (made so in this
    process, on a test host as new as virsh's)."""
    theirs = virsh_error_lines(virsh("test:///default", *args, readonly=True))
    assert theirs[0] == f"error: {failed}"
    real_open = xvirt.open
    monkeypatch.setattr(xvirt, "open", lambda uri=None, readonly=False, **kw: real_open(
        uri, readonly=True, **kw))
    mine = one_error_line(run(*args, "-c", f"libvirt:{libvirtd_host}"))
    assert mine.startswith(f"{theirs[0]}: "), mine
    assert "read-only" in mine


def test_every_domain_command_is_in_the_group() -> None:
    from xvirt.tools import domain_cmds
    from xvirt.tools.cli import COMMANDS

    for name in domain_cmds.__all__:
        command = getattr(domain_cmds, name)
        assert COMMANDS[command.name].target == f"domain_cmds:{name}"
