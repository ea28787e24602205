"""docs/cli.md against the commands themselves: every command of ``xvirt`` has a section
and every section a command; each gives the command's usage line and short help as
``--help`` does; every option the page names exists, and every option a command has is
named; every example parses (its options and values are the command's)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from xvirt.tools.cli import COMMANDS, load_command, main

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADING = re.compile(r"^### `xvirt ([a-z]+)`$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
SHELL_ENDS = frozenset({"|", "&", "&&", ";", ">", "2>"})


def _prose(lines: list[str]) -> list[str]:
    """The lines outside fenced code blocks."""
    kept, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


def sections() -> dict[str, list[str]]:
    """``name -> lines`` of each command's section (up to the next heading)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOC.read_text().splitlines():
        match = HEADING.match(line)
        if match:
            assert match[1] not in found, f"two sections for {match[1]}"
            current = found[match[1]] = []
        elif line.startswith("#"):
            current = None
        elif current is not None:
            current.append(line)
    return found


def preamble() -> list[str]:
    """What the page says before the first command: what every command shares."""
    lines = DOC.read_text().splitlines()
    return lines[:next(i for i, line in enumerate(lines) if HEADING.match(line))]


def examples(lines: list[str]) -> list[list[str]]:
    """Each ``$ xvirt ...`` line of the console blocks, as argv after ``xvirt``."""
    found = []
    for line in lines:
        if line.startswith("$ xvirt"):
            words = shlex.split(line[2:])[1:]
            cut = next((i for i, w in enumerate(words) if w in SHELL_ENDS), len(words))
            found.append(words[:cut])
    return found


def inline_code(lines: list[str]) -> list[str]:
    """What the prose puts in backquotes."""
    return [code for line in _prose(lines) for code in re.findall(r"`([^`]+)`", line)]


def documented_options(lines: list[str]) -> set[str]:
    """Every option named in backquotes in the prose, but in a whole ``xvirt ...`` command
    (test_every_command_quoted_in_the_prose_parses checks those)."""
    return {option for code in inline_code(lines) if not code.startswith(("-- ", "xvirt "))
            for option in OPTION.findall(code)}


def names_of(command: click.Command) -> set[str]:
    return {name for p in command.params if isinstance(p, click.Option)
            for name in (*p.opts, *p.secondary_opts)}


def usage_of(name: str, command: click.Command) -> str:
    parent = click.Context(main, info_name="xvirt")
    ctx = click.Context(command, info_name=name, parent=parent, max_content_width=1000,
                        terminal_width=1000)
    return command.get_usage(ctx).strip()


DOCUMENTED = sections()


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    assert sorted(DOCUMENTED) == sorted(COMMANDS)
    assert sorted(COMMANDS) == main.list_commands(click.Context(main))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_section_gives_the_usage_and_the_short_help(name: str) -> None:
    assert name in DOCUMENTED, f"docs/cli.md has no section for {name}"
    command = load_command(name)
    assert command is not None, f"{COMMANDS[name].target} is missing"
    lines = DOCUMENTED[name]
    first = " ".join(_prose(lines)[: _prose(lines)[1:].index("") + 1]).strip()
    assert first == command.get_short_help_str(limit=10_000)
    usages = [line.strip() for line in lines if line.strip().startswith("Usage: ")]
    assert usages == [usage_of(name, command)]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_options_named_are_the_commands_options(name: str) -> None:
    command = load_command(name)
    assert command is not None and name in DOCUMENTED
    named = documented_options(DOCUMENTED[name])
    own = names_of(command)
    assert named - own - {"-h", "--help"} == set(), "named but not an option of the command"
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            aliases = {*param.opts, *param.secondary_opts}
            assert aliases & named, f"docs/cli.md does not name {'/'.join(param.opts)}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_section_has_an_example_of_its_command_that_parses(name: str) -> None:
    assert name in DOCUMENTED
    shown = [parsed(argv) for argv in examples(DOCUMENTED[name])]
    assert name in shown, f"docs/cli.md shows no example of xvirt {name}"


def parsed(argv: list[str]) -> str:
    """Parse ``xvirt ARGV`` as the command would, without running it: the command's
    name; a bad option or value raises click's usage error."""
    root = main.make_context("xvirt", list(argv))
    rest = [*root._protected_args, *root.args]
    assert rest and rest[0] in COMMANDS, argv
    command = load_command(rest[0])
    assert command is not None
    with root:
        command.make_context(rest[0], rest[1:], parent=root)
    return rest[0]


def test_the_shared_part_names_the_groups_options_and_its_examples_parse() -> None:
    lines = preamble()
    assert documented_options(lines) <= names_of(main) | {"-h", "--help"}
    assert {"-c", "--version", "-h"} <= documented_options(lines)
    for argv in examples(lines):
        if argv != ["--version"]:  # the one that exits while parsing
            parsed(argv)


def test_the_exit_statuses_and_uri_order_are_the_codes() -> None:
    """What the shared part promises is what cli.py and xvirt.uri do."""
    from xvirt.tools.cli import INTERRUPTED

    text = " ".join(preamble())
    assert f"{INTERRUPTED} when Ctrl-C" in text
    assert "`$XVIRT_DEFAULT_URI`, else `$LIBVIRT_DEFAULT_URI`, else\n`sim:///default`" in (
        "\n".join(preamble()))


def test_every_command_quoted_in_the_prose_is_one_with_its_options() -> None:
    """``xvirt NAME --option`` in the prose (named without its arguments, so not parsed
    whole): NAME is a command and each option is one of its own."""
    quoted = [code.split() for code in inline_code(DOC.read_text().splitlines())
              if code.startswith("xvirt ")]
    assert quoted
    for words in quoted:
        command = load_command(words[1])
        assert command is not None, words
        named = set(OPTION.findall(" ".join(words[2:])))
        assert named <= names_of(command), words
