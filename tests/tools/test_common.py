"""What every subcommand shares: the URI given before or after it, the connection, the
one-line error, and finding a domain by ID, UUID or name as virsh does."""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xvirt
from xvirt.tools.common import (
    URI_META_KEY,
    DomainCommand,
    connection,
    fail,
    find_domain,
    given_uri,
    uri_option,
)


def _group(command: click.Command) -> click.Group:
    """A group that stores ``-c`` before the subcommand as ``xvirt``'s does."""

    @click.group()
    @click.option("-c", "uri", default=None)
    @click.pass_context
    def group(ctx: click.Context, uri: str | None) -> None:
        if uri is not None:
            ctx.meta[URI_META_KEY] = uri

    group.add_command(command)
    return group


@click.command("where")
@uri_option
def _where(uri: str | None) -> None:
    click.echo(repr(given_uri(uri)))


@pytest.mark.parametrize(("args", "shown"), [
    (["where"], "None"),
    (["-c", "sim:///a", "where"], "'sim:///a'"),
    (["where", "-c", "sim:///b"], "'sim:///b'"),
    (["-c", "sim:///a", "where", "--connect", "sim:///b"], "'sim:///b'"),  # after wins
])
def test_given_uri_after_then_before_the_subcommand(args: list[str], shown: str) -> None:
    result = CliRunner().invoke(_group(_where), args)
    assert result.exit_code == 0, result.output
    assert result.stdout == shown + "\n"


def test_given_uri_outside_a_command() -> None:
    assert given_uri(None) is None
    assert given_uri("sim:///x") == "sim:///x"


@given(st.text(min_size=1, max_size=60))
def test_fail_is_one_error_line_and_status_1(message: str) -> None:
    @click.command()
    def boom() -> None:
        fail(message)

    result = CliRunner().invoke(boom, [])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.endswith("\n")
    assert len(result.stderr.splitlines()) == 1  # whatever line breaks the message held
    assert "".join(message.split()) in "".join(result.stderr.split())


def test_connection_is_read_only_unless_asked(sim_host: xvirt.sim.Host) -> None:
    seen: list[bool] = []

    @click.command("probe")
    @click.option("--write", is_flag=True)
    @uri_option
    def probe(write: bool, uri: str | None) -> None:
        with connection(uri, readonly=not write) as conn:
            seen.append(conn.readonly)

    group = _group(probe)
    assert CliRunner().invoke(group, ["-c", sim_host.uri, "probe"]).exit_code == 0
    assert CliRunner().invoke(group, ["probe", "--write", "-c", sim_host.uri]).exit_code == 0
    assert seen == [True, False]


@pytest.mark.parametrize("uri", ["sim:///no-such-host", "nope://x", "sim://a/b"])
def test_a_connection_that_fails_is_one_error_line(uri: str) -> None:
    @click.command("probe")
    @uri_option
    def probe(uri: str | None) -> None:
        with connection(uri):
            raise AssertionError("opened")

    result = CliRunner().invoke(_group(probe), ["-c", uri, "probe"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert repr(uri) in result.stderr or uri in result.stderr


# -- find_domain: an ID, then a UUID, then a name, as virsh -----------------------------------

NAMES = st.sampled_from(["0", "1", "2", "3", "7", "42", "-1", "-5", "web1", "DB",
                         "deadbeef" * 4, "00000000-0000-0000-0000-000000000000"])


@given(names=st.lists(NAMES, min_size=1, max_size=5, unique=True), ref=NAMES)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_find_domain_tries_id_then_uuid_then_name(
        make_sim_host: Callable[..., xvirt.sim.Host], names: list[str], ref: str) -> None:
    host = make_sim_host()
    made = [host.create(n) for n in names]
    by_id = {r.id: r for r in host.domains()}
    by_uuid = {r.uuid: r for r in host.domains()}
    by_name = {r.name: r for r in host.domains()}
    expected = (by_id.get(int(ref)) if ref.lstrip("-").isdigit() else None) \
        or by_uuid.get(ref) or by_name.get(ref)
    with xvirt.open(host.uri, readonly=True) as conn:
        if expected is None:
            with pytest.raises((xvirt.NoDomainError, xvirt.InvalidArgumentError)):
                find_domain(conn, ref)
        else:
            assert find_domain(conn, ref).uuid == expected.uuid
    assert [r.name for r in made] == names


def test_find_domain_takes_a_uuid_in_any_spelling(sim_host: xvirt.sim.Host) -> None:
    rec = sim_host.create("web1")
    with xvirt.open(sim_host.uri, readonly=True) as conn:
        for spelling in (rec.uuid, rec.uuid.upper(), rec.uuid.replace("-", "")):
            assert find_domain(conn, spelling).name == "web1"


def test_a_negative_id_not_named_so_is_explained(sim_host: xvirt.sim.Host) -> None:
    with xvirt.open(sim_host.uri, readonly=True) as conn, \
            pytest.raises(xvirt.InvalidArgumentError, match="out of range"):
        find_domain(conn, "-1")


# -- DomainCommand: -1 is a domain, not an unknown option --------------------------------------


@click.command("show", cls=DomainCommand)
@click.argument("domain")
@click.option("--count", default="1")
@uri_option
def _show(domain: str, count: str, uri: str | None) -> None:
    click.echo(f"{domain} {count} {uri}")


@pytest.mark.parametrize(("args", "shown"), [
    (["-1"], "-1 1 None"),
    (["--count", "-3", "-1"], "-1 -3 None"),  # an option's value stays its value
    (["-c", "sim:///x", "-7"], "-7 1 sim:///x"),
    (["--", "-2"], "-2 1 None"),
    (["web1", "--count", "2"], "web1 2 None"),
])
def test_negative_numbers_reach_the_domain_argument(args: list[str], shown: str) -> None:
    result = CliRunner().invoke(_show, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == shown + "\n"


def test_an_unknown_option_is_still_a_usage_error() -> None:
    result = CliRunner().invoke(_show, ["web1", "--bogus"])
    assert result.exit_code == 2 and "No such option" in result.stderr
