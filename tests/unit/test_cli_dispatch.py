"""The command line builds only the subparsers a command needs, and parses every command as the whole
parser would (start-up time: docs/performance.md, session 5)."""

from __future__ import annotations

import argparse

import pytest

from maild.cli.dispatch import TOP_LEVEL_OPTIONS
from maild.cli.main import BUILT_IN_COMMANDS, COMMAND_GROUPS, _parser, command_of


def _choices(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_the_top_level_options_are_the_parsers() -> None:
    """TOP_LEVEL_OPTIONS (what `maild --bogus` is checked against before argparse runs) names exactly
    the top-level parser's option strings, whichever subparsers are built."""
    for command in (None, "fetch", "messages"):
        assert set(_parser(command)._option_string_actions) == TOP_LEVEL_OPTIONS


def test_the_command_lists_name_every_subcommand_once() -> None:
    """BUILT_IN_COMMANDS and COMMAND_GROUPS together name exactly the whole parser's subcommands."""
    named = [*BUILT_IN_COMMANDS, *(name for commands in COMMAND_GROUPS.values() for name in commands)]

    assert len(named) == len(set(named))
    assert set(named) == _choices(_parser())


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["fetch"], "fetch"),
        (["-c", "/etc/maild/config.toml", "status", "--json"], "status"),
        (["--config", "messages", "fetch"], "fetch"),  # a config file called "messages"
        (["--log-level", "debug", "messages", "list"], "messages"),
        (["--config=/x.toml", "accounts", "list"], "accounts"),
        (["--conf", "messages", "fetch"], "fetch"),  # argparse's abbreviation of --config
        (["--log", "debug", "retire", "a"], "retire"),
        (["-c/x.toml", "migrate", "a", "--to", "b"], "migrate"),
        (["backup", "--help"], "backup"),
        ([], None),
        (["--help", "messages"], None),
        (["--version"], None),
        (["fetchh"], None),  # a typo: argparse names every choice
        (["--", "fetch"], None),
    ],
)
def test_command_of_finds_the_subcommand(argv: list[str], command: str | None) -> None:
    """command_of skips the top-level options and their values; help, version and unknown words build all."""
    assert command_of(argv) == command


@pytest.mark.parametrize(
    "argv",
    [
        ["fetch", "a", "b"],
        ["fetch-now", "anna", "--retry-failed", "--no-wait"],
        ["--log-level", "debug", "run", "-c", "/x.toml"],
        ["pause", "anna"],
        ["manpage"],
        ["-c", "/x.toml", "status", "--failed"],
        ["messages", "search", "rechnung", "--limit", "5"],
        ["accounts", "list", "--json", "-c", "/x.toml"],
        ["migrate", "anna-pop", "--to", "anna-imap", "--dry-run"],
        ["backup", "/srv/backup", "--keep", "3"],
        ["export", "--account", "anna", "--mbox", "/tmp/out.mbox"],
    ],
)
def test_the_partial_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    """A command parsed by the parser built for it gives the same arguments as with the whole parser."""
    partial = vars(_parser(command_of(argv)).parse_args(argv))
    whole = vars(_parser().parse_args(argv))

    assert partial == whole


def test_the_parser_for_a_command_builds_only_its_subparser() -> None:
    """`maild status` builds only its own subparser; `maild messages` builds only its group's."""
    assert _choices(_parser("status")) == {"status"}
    assert _choices(_parser("fetch")) == {"fetch"}
    assert _choices(_parser("messages")) == {"messages", "export"}


def test_an_unknown_command_is_reported_with_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped command gets argparse's usage error naming all subcommands, group ones included."""
    from maild.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["mesages", "list"])

    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'mesages'" in err
    assert "'messages'" in err and "'migrate'" in err and "'fetch'" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["-c", "/x.toml", "--version"],
        ["--log-level", "debug", "--version", "fetch"],
        ["--version", "--bogus"],
        ["--log-level", "loud", "--version"],  # argparse rejects the bad value first
        ["--help", "--version"],  # help comes first
        ["--vers"],  # an abbreviation: the parser answers it
        ["status", "--version"],  # not a subcommand's option
    ],
)
def test_version_answers_as_the_whole_parser_would(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`maild --version` without a parser prints and exits exactly as argparse does for the same words."""
    from maild.cli.main import asks_version, main

    with pytest.raises(SystemExit) as parsed:
        _parser().parse_args(argv)
    expected = capsys.readouterr()
    try:
        code: object = main(argv)
    except SystemExit as exc:
        code = exc.code
    got = capsys.readouterr()

    assert (code, got.out) == (parsed.value.code, expected.out)
    assert asks_version(argv) == (argv[0] in ("--version", "-c", "--log-level") and "loud" not in argv)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-c", "/tmp/x.toml", "-x", "--bogus=1"], "unrecognized arguments: -x --bogus=1"),
        (["--log-level", "debug"], "the following arguments are required: COMMAND"),
        (["--conf", "/tmp/x.toml"], "the following arguments are required: COMMAND"),
        (["-c/tmp/x.toml"], "the following arguments are required: COMMAND"),
        (["--bogus", "status"], "unrecognized arguments: --bogus"),
    ],
)
def test_an_unknown_option_without_a_command_is_named(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild --bogus` names --bogus (QA of session 10: argparse said only that COMMAND is required);
    known options (also abbreviated or with their value) without a command still ask for COMMAND."""
    from maild.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(argv)

    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"maild: error: {said}"
