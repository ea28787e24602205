"""``xvirt list`` and ``xvirt dominfo`` end to end, against embedded hosts whose truth we know."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import xvirt
from xvirt.clock import ManualClock
from xvirt.tools.cli import COMMANDS, main
from xvirt.tools.format import state_word

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "libvirt"
VIRSH = REALDATA / "virsh-test-default"
pytestmark = pytest.mark.clock_start(1000.0)


@pytest.fixture
def host(sim_host: xvirt.sim.Host) -> xvirt.sim.Host:
    """An empty host (Domain-0 only) on a manual clock, so CPU times are exact."""
    return sim_host


@pytest.fixture
def lab(host: xvirt.sim.Host, clock: ManualClock) -> xvirt.sim.Host:
    """Domain-0, web1 (ID 1) and a-rather-long-name (ID 2), with some CPU time burnt."""
    host.create("web1", memory_kib=524288, max_memory_kib=1048576, vcpus=2, load=0.5)
    host.create("a-rather-long-name", memory_kib=262144, vcpus=1, load=0.25)
    clock.advance(12.5)
    assert [(r.id, r.name) for r in host.domains()] == [
        (0, "Domain-0"),
        (1, "web1"),
        (2, "a-rather-long-name"),
    ]
    return host


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def record(host: xvirt.sim.Host, name: str) -> xvirt.sim.DomainRecord:
    (rec,) = [r for r in host.domains() if r.name == name]
    return rec


def truth(rec: xvirt.sim.DomainRecord) -> dict[str, object]:
    return {
        "id": rec.id,
        "name": rec.name,
        "uuid": rec.uuid,
        "state": state_word(rec.state),  # virsh's word, in JSON as in text
        "memory_kib": rec.memory_kib,
        "max_memory_kib": rec.max_memory_kib,
        "vcpus": rec.vcpus,
        "cpu_time_ns": rec.cpu_time_ns,
    }


def assert_one_error_line(result: Result, code: int = 1) -> str:
    """The failure is one ``error:`` line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


# -- list ------------------------------------------------------------------------------


def test_list_prints_virshs_table(lab: xvirt.sim.Host) -> None:
    result = run("list", "--uri", lab.uri)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.split("\n") == [
        " Id   Name                 State",
        "-" * 36,  # (2 + 3) + (18 + 3) + (7 + 3)
        " 0    Domain-0             running",
        " 1    web1                 running",
        " 2    a-rather-long-name   running",
        "",
        "",
    ]


def test_list_table_has_the_structure_of_the_real_capture(lab: xvirt.sim.Host) -> None:
    """Derive virsh's layout rules from its own output, then check ours obeys them."""
    real = (VIRSH / "list.stdout").read_text() if VIRSH.exists() else None
    ours = run("list", "--uri", lab.uri).stdout
    for text in filter(None, (real, ours)):
        header, rule, *rows, blank = text.split("\n")[:-1]
        assert blank == "" and rows
        assert header.startswith(" Id   ") and header.endswith("State")
        name_at, state_at = header.index("Name"), header.index("State")
        assert set(rule) == {"-"}
        assert len(rule) == state_at - 1 + max(len("State"), *(len(r[state_at:]) for r in rows)) + 3
        for row in rows:
            assert row[0] == " " and row[name_at - 1] == " " and row[state_at - 1] == " "
            assert row[name_at] != " " and row[state_at] != " "
            assert row == row.rstrip()
    assert real is None or ours.split("\n")[0].startswith(" Id   Name")


def test_list_all_adds_the_shut_off_domains_by_name(lab: xvirt.sim.Host) -> None:
    lab.define("zz-spare", memory_kib=131072, vcpus=1)
    lab.define("b-spare", memory_kib=131072, vcpus=1)
    assert run("list", "--uri", lab.uri).stdout.count("spare") == 0
    result = run("list", "--all", "--uri", lab.uri)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\n") == [
        " Id   Name                 State",
        "-" * 37,  # (2 + 3) + (18 + 3) + (8 + 3)
        " 0    Domain-0             running",
        " 1    web1                 running",
        " 2    a-rather-long-name   running",
        " -    b-spare              shut off",
        " -    zz-spare             shut off",
        "",
        "",
    ]


def test_list_all_json_gives_a_shut_off_domain_no_id(lab: xvirt.sim.Host) -> None:
    spare = lab.define("spare", memory_kib=131072, max_memory_kib=262144, vcpus=3)
    got = json.loads(run("list", "--all", "--json", "--uri", lab.uri).stdout)
    assert got[-1] == {"id": None, "name": "spare", "uuid": spare.uuid, "state": "shut off",
                       "memory_kib": 131072, "max_memory_kib": 262144, "vcpus": 3,
                       "cpu_time_ns": 0}
    assert got[:-1] == [truth(r) for r in lab.domains()]


def test_a_started_domain_leaves_the_shut_off_list(lab: xvirt.sim.Host) -> None:
    spare = lab.define("spare", memory_kib=131072, vcpus=1)
    started = lab.start(spare.uuid)
    rows = run("list", "--all", "--uri", lab.uri).stdout.splitlines()
    assert f" {started.id}    spare                running" in rows
    assert not [r for r in rows if r.startswith(" -")]


@pytest.mark.parametrize("flag", ["-c", "--connect", "--uri"])
def test_uri_aliases(lab: xvirt.sim.Host, flag: str) -> None:
    result = run("list", flag, lab.uri)
    assert result.exit_code == 0
    assert " 2    a-rather-long-name   running" in result.stdout.splitlines()


def test_list_json_is_the_truth(lab: xvirt.sim.Host) -> None:
    result = run("list", "--json", "--uri", lab.uri)
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got == [truth(r) for r in lab.domains()]
    assert [list(d) for d in got] == [list(truth(r)) for r in lab.domains()]  # key order too
    web1 = got[1]
    assert web1["memory_kib"] == 524288 and web1["max_memory_kib"] == 1048576
    assert web1["cpu_time_ns"] == 12_500_000_000  # 2 vCPUs x 0.5 load x 12.5 s


def test_list_follows_the_default_uri(lab: xvirt.sim.Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XVIRT_DEFAULT_URI", lab.uri)
    result = run("list", "--json")
    assert [d["name"] for d in json.loads(result.stdout)] == [
        "Domain-0",
        "web1",
        "a-rather-long-name",
    ]


def test_list_shows_states_as_virsh_words(host: xvirt.sim.Host) -> None:
    paused = host.create("p1").id
    crashed = host.create("c1").id
    idle = host.create("i1").id
    host.pause(paused)
    host.crash(crashed)
    host.set_blocked(idle)
    rows = run("list", "--uri", host.uri).stdout.splitlines()[2:-1]
    assert [row.split()[1:] for row in rows] == [
        ["Domain-0", "running"],
        ["p1", "paused"],
        ["c1", "crashed"],
        ["i1", "idle"],
    ]
    states = [d["state"] for d in json.loads(run("list", "--json", "-c", host.uri).stdout)]
    assert states == ["running", "paused", "crashed", "idle"]  # the words the table shows


def test_list_is_in_id_order_after_ids_change(host: xvirt.sim.Host) -> None:
    first = host.create("first")
    host.create("second")
    moved = host.migrate(first.id)  # same domain, new (higher) ID
    got = json.loads(run("list", "--json", "-c", host.uri).stdout)
    assert [(d["id"], d["name"]) for d in got] == [(r.id, r.name) for r in host.domains()]
    assert got[-1]["name"] == "first" and got[-1]["id"] == moved.id != first.id


# -- dominfo ------------------------------------------------------------------------------


def test_dominfo_by_name(lab: xvirt.sim.Host) -> None:
    rec = record(lab, "web1")
    result = run("dominfo", "web1", "--uri", lab.uri)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Id:             1\n"
        "Name:           web1\n"
        f"UUID:           {rec.uuid}\n"
        "State:          running\n"
        "CPU(s):         2\n"
        "CPU time:       12.5s\n"
        "Max memory:     1048576 KiB\n"
        "Used memory:    524288 KiB\n"
        "\n"
    )


@pytest.mark.parametrize("by", ["name", "uuid"])
def test_dominfo_of_a_shut_off_domain_is_virshs(lab: xvirt.sim.Host, by: str) -> None:
    spare = lab.define("spare", memory_kib=131072, max_memory_kib=262144, vcpus=2)
    result = run("dominfo", spare.name if by == "name" else spare.uuid, "--uri", lab.uri)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (  # virsh leaves out CPU time when none was used
        "Id:             -\n"
        "Name:           spare\n"
        f"UUID:           {spare.uuid}\n"
        "State:          shut off\n"
        "CPU(s):         2\n"
        "Max memory:     262144 KiB\n"
        "Used memory:    131072 KiB\n"
        "\n"
    )


def test_dominfo_by_id(lab: xvirt.sim.Host) -> None:
    result = run("dominfo", "2", "-c", lab.uri)
    assert result.exit_code == 0
    assert "Name:           a-rather-long-name" in result.stdout.splitlines()
    dom0 = run("dominfo", "0", "-c", lab.uri).stdout.splitlines()
    assert dom0[:2] == ["Id:             0", "Name:           Domain-0"]


@pytest.mark.parametrize(
    "spelling",
    [str.lower, str.upper, lambda u: u.replace("-", ""), lambda u: f"  {u.upper()}  "],
    ids=["lower", "upper", "undashed", "padded"],
)
def test_dominfo_by_uuid(lab: xvirt.sim.Host, spelling: Callable[[str], str]) -> None:
    rec = record(lab, "web1")
    result = run("dominfo", "--json", spelling(rec.uuid), "-c", lab.uri)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == truth(rec)


def test_dominfo_json_matches_the_list_entry(lab: xvirt.sim.Host) -> None:
    listed = json.loads(run("list", "--json", "-c", lab.uri).stdout)
    for entry in listed:
        one = json.loads(run("dominfo", "--json", entry["name"], "-c", lab.uri).stdout)
        assert one == entry


def test_a_name_that_looks_like_a_number(lab: xvirt.sim.Host) -> None:
    rec = lab.create("42")
    assert rec.id != 42
    got = json.loads(run("dominfo", "--json", "42", "-c", lab.uri).stdout)
    assert (got["id"], got["name"]) == (rec.id, "42")


def test_an_id_wins_over_a_name_like_virsh(lab: xvirt.sim.Host) -> None:
    lab.create("1")  # named "1", while web1 has ID 1
    got = json.loads(run("dominfo", "--json", "1", "-c", lab.uri).stdout)
    assert got["name"] == "web1"


def test_a_uuid_shaped_name_is_found_by_name(lab: xvirt.sim.Host) -> None:
    name = "deadbeef" * 4  # parses as a UUID no domain has
    rec = lab.create(name)
    got = json.loads(run("dominfo", "--json", name, "-c", lab.uri).stdout)
    assert got["uuid"] == rec.uuid != xvirt.sim.DOM0_UUID


@pytest.mark.parametrize(
    ("state", "word"), [("pause", "paused"), ("crash", "crashed"), ("set_blocked", "idle")]
)
def test_dominfo_state_words(host: xvirt.sim.Host, state: str, word: str) -> None:
    rec = host.create("guest")
    getattr(host, state)(rec.id)
    lines = run("dominfo", "guest", "-c", host.uri).stdout.splitlines()
    assert f"State:          {word}" in lines


@pytest.mark.parametrize("ref", ["nosuchdomain", "999"])
def test_unknown_domain_says_what_virsh_says(lab: xvirt.sim.Host, ref: str) -> None:
    line = assert_one_error_line(run("dominfo", ref, "-c", lab.uri))
    assert line == f"error: failed to get domain '{ref}'"
    stem = "nosuchdomain" if ref == "nosuchdomain" else "999"
    real = VIRSH / f"dominfo-{stem}.stderr"
    if real.exists():
        assert line + "\n" == real.read_text()


def test_unknown_uuid_is_an_unknown_domain(lab: xvirt.sim.Host) -> None:
    ref = str(uuid.uuid4())
    line = assert_one_error_line(run("dominfo", ref, "-c", lab.uri))
    assert line == f"error: failed to get domain '{ref}'"


def test_a_domain_gone_is_gone(lab: xvirt.sim.Host) -> None:
    lab.destroy(1)
    line = assert_one_error_line(run("dominfo", "web1", "-c", lab.uri))
    assert line == "error: failed to get domain 'web1'"
    assert "web1" not in run("list", "-c", lab.uri).stdout


@pytest.mark.parametrize(
    "args",
    [["-1", "-c", "URI"], ["--json", "-1", "-c", "URI"], ["-c", "URI", "--", "-1"]],
)
def test_negative_id_is_explained(lab: xvirt.sim.Host, args: list[str]) -> None:
    """``-1`` is not taken for an unknown option, with or without ``--``."""
    line = assert_one_error_line(run("dominfo", *(lab.uri if a == "URI" else a for a in args)))
    assert line.startswith("error: domain ID -1 is out of range 0..")


def test_a_domain_named_like_a_negative_number_is_still_found(lab: xvirt.sim.Host) -> None:
    rec = lab.create("-5")
    got = json.loads(run("dominfo", "-5", "--json", "-c", lab.uri).stdout)
    assert got["uuid"] == rec.uuid


def test_invalid_name_is_explained(lab: xvirt.sim.Host) -> None:
    line = assert_one_error_line(run("dominfo", "a/b", "-c", lab.uri))
    assert "must not contain '/'" in line


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["dominfo", "0"]])
@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("nope://x", "unsupported URI scheme 'nope'"),
        ("nope://x", "known: sim:///NAME, xend://HOST[:PORT], xend+unix:///PATH, libvirt:URI"),
        ("web1", "test:///default, qemu:///system, xen:///system"),
        ("sim:///nonexistent", "'nonexistent'"),
        ("sim://a/b", "sim:///NAME"),
    ],
)
def test_bad_uri_is_one_line(command: list[str], uri: str, words: str) -> None:
    line = assert_one_error_line(run(*command, "--uri", uri))
    assert words in line and uri.split("/")[-1] in line


def test_a_closed_host_is_unreachable(host: xvirt.sim.Host) -> None:
    uri = host.uri
    host.close()
    line = assert_one_error_line(run("list", "-c", uri))
    assert "no embedded host" in line


# -- click's own behaviour -------------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"xvirt, version {xvirt.__version__}\n"


@pytest.mark.parametrize(
    "args", [["list", "--bogus"], ["dominfo"], ["frobnicate"], ["dominfo", "a", "b"]]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert "Usage: " in result.stderr and result.stdout == ""


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    listed = result.stdout.partition("Commands:\n")[2].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMANDS)
    assert "  list " in result.stdout and "  dominfo " in result.stdout


# -- the URI before the subcommand (virsh's place), after it, and plain libvirt URIs -----------


@pytest.mark.parametrize("flag", ["-c", "--connect", "--uri"])
def test_the_uri_before_the_subcommand(lab: xvirt.sim.Host, flag: str) -> None:
    result = run(flag, lab.uri, "list")
    assert result.exit_code == 0, result.stderr
    assert " 2    a-rather-long-name   running" in result.stdout.splitlines()
    got = json.loads(run(flag, lab.uri, "dominfo", "web1", "--json").stdout)
    assert got == truth(record(lab, "web1"))


def test_the_uri_after_the_subcommand_wins(lab: xvirt.sim.Host,
                                           make_sim_host: Callable[..., xvirt.sim.Host]) -> None:
    other = make_sim_host()
    other.create("elsewhere")
    names = [d["name"] for d in json.loads(run("-c", lab.uri, "list", "--json",
                                               "-c", other.uri).stdout)]
    assert names == ["Domain-0", "elsewhere"]


def test_a_bad_uri_before_the_subcommand_is_one_line() -> None:
    line = assert_one_error_line(run("-c", "nope://x", "list"))
    assert "unsupported URI scheme 'nope'" in line and "known:" in line


def test_the_uri_before_reaches_commands_with_their_own_option(
        lab: xvirt.sim.Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """top, the exporter, bench and compat read their own -c: the group's is its default."""
    monkeypatch.setenv("XVIRT_DEFAULT_URI", "sim:///no-such-host")
    result = run("-c", lab.uri, "top", "--batch", "-n", "1", "--json")
    assert result.exit_code == 0, result.stderr
    frame = json.loads(result.stdout.splitlines()[0])
    assert [h["uri"] for h in frame["hosts"]] == [lab.uri]
    assert [d["name"] for d in frame["hosts"][0]["domains"]][:1] == ["Domain-0"]


def test_the_uri_before_reaches_a_compat_script(lab: xvirt.sim.Host) -> None:
    script = "import libvirt; print(libvirt.open().getURI())"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIBVIRT_DEFAULT_URI", "XVIRT_COMPAT_URI")}
    proc = subprocess.run([sys.executable, "-m", "xvirt", "-c", "sim:///default", "compat",
                           "--", "python", "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "sim:///default\n"


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_a_plain_libvirt_uri_means_the_libvirt_driver(where: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """As virsh takes it: test:///default is libvirt's test driver, no prefix needed."""
    monkeypatch.delenv("XVIRT_DEFAULT_URI", raising=False)
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    args = {"before": ["-c", "test:///default", "list"],
            "after": ["list", "-c", "test:///default"], "env": ["list"]}[where]
    # a process of its own: libvirt's shared test host as new as virsh's (in this one
    # it lives as long as any connection to it, and may carry an earlier test's changes)
    done = subprocess.run([sys.executable, "-m", "xvirt", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "LIBVIRT_DEFAULT_URI": "test:///default"})
    assert done.returncode == 0, done.stderr
    result = done
    assert result.stdout.splitlines()[2] == " 1    test   running"
    real = VIRSH / "list.stdout"
    if real.exists():
        assert result.stdout == real.read_text()


def test_xvirts_default_uri_wins_over_libvirts(lab: xvirt.sim.Host,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    monkeypatch.setenv("XVIRT_DEFAULT_URI", lab.uri)
    assert "web1" in run("list").stdout


def test_a_libvirt_uri_without_the_binding_is_one_clear_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from xvirt.libvirt_api import binding

    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt: ImportError
    monkeypatch.delitem(sys.modules, binding.PRIVATE_NAME, raising=False)
    line = assert_one_error_line(run("-c", "test:///default", "list"))
    assert "libvirt-python binding is not installed" in line


# -- the installed console script --------------------------------------------------------------


def test_installed_console_script_lists_domain_0() -> None:
    script = Path(sys.executable).parent / "xvirt"
    env = {k: v for k, v in os.environ.items() if k != "XVIRT_DEFAULT_URI"}
    proc = subprocess.run(
        [str(script), "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    domains = json.loads(proc.stdout)
    assert domains[0]["id"] == 0 and domains[0]["name"] == "Domain-0"
    assert domains[0]["uuid"] == xvirt.sim.DOM0_UUID
    assert len(domains) > 1  # the demo host has guests too
