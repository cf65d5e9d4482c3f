"""Every subcommand's `--help`: a description, the global options and its exit codes, from the one table
of exit codes the man page and docs/operations.md show too (QA finding F5 of session 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from maild.cli.descriptions import DESCRIPTIONS
from maild.cli.exit_codes import EXIT_TABLE, codes_of, markdown_table, plain
from maild.cli.main import FETCH_HELP, _parser, main
from maild.cli.manpage import command_tree, render_manpage

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _commands() -> list[tuple[str, argparse.ArgumentParser, bool]]:
    """(command path, its parser, whether it runs: not a group of commands) for every subcommand."""
    return [
        (" ".join(path), sub, not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions))
        for path, _text, sub in command_tree(_parser())
        if path
    ]


def _help(words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `maild WORDS --help` prints, as the user runs it (the parser built for that command only)."""
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [c for c, _p, _r in _commands()])
def test_every_subcommands_help_has_a_description_the_global_options_and_its_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild COMMAND --help` (groups too) describes it in a paragraph and shows -c/--config and
    --log-level; a command that runs ends with each of its exit codes and their meaning."""
    text = _help(command.split(), capsys)
    flat = " ".join(text.split())
    runs = {c: r for c, _p, r in _commands()}[command]

    assert " ".join(DESCRIPTIONS[command].split()) in flat
    assert "-c FILE, --config FILE" in text and "--log-level" in text
    if runs:
        assert "exit status" in text
        for code, meaning in codes_of(command):
            assert f"{code} {' '.join(plain(meaning).split())}" in flat, (command, code)


def test_status_and_check_help_say_their_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """The two commands QA found without them: `status --help` names exit 3 without a daemon, `check
    --help` the monitoring-plugin states."""
    status = " ".join(_help(["status"], capsys).split())
    check = " ".join(_help(["-c", "/x.toml", "check"], capsys).split())

    assert "3 the daemon is not running" in status
    assert "1 an account needs attention" in status
    for code, word in ((0, "OK"), (1, "WARNING"), (2, "CRITICAL"), (3, "UNKNOWN")):
        assert f"{code} {word}" in check


def test_the_global_options_work_after_the_command_words_as_the_help_says() -> None:
    """-c and --log-level given after the command words (also of a command group) are read, and win
    over the ones before."""
    parser = _parser()

    args = parser.parse_args(["-c", "/a.toml", "messages", "list", "-c", "/b.toml", "--log-level", "debug"])
    assert (args.config, args.log_level) == ("/b.toml", "debug")
    args = parser.parse_args(["messages", "-c", "/c.toml", "list"])
    assert args.config == "/c.toml"
    assert parser.parse_args(["status"]).config is None


def test_every_subcommand_has_a_description_and_no_description_is_unused() -> None:
    """DESCRIPTIONS names exactly the parser's subcommands."""
    assert set(DESCRIPTIONS) == {c for c, _p, _r in _commands()}


def test_the_docs_table_is_the_exit_code_table() -> None:
    """docs/operations.md's table of exit codes is `python3 -m maild.cli.exit_codes`'s output, between
    its markers: not a copy that can drift."""
    docs = DOCS.read_text(encoding="utf-8")
    start = docs.index("<!-- exit-codes:")
    table = docs[docs.index("\n", start) + 1 : docs.index("<!-- /exit-codes -->")]

    assert table == markdown_table(), (
        "docs/operations.md's exit-code table differs from maild/cli/exit_codes.py: change the words in"
        " EXIT_TABLE there (also --help and the man page show them), then paste the output of"
        " `python3 -m maild.cli.exit_codes` between the markers"
    )


def test_the_man_page_has_every_row_of_the_exit_code_table() -> None:
    """The man page's EXIT STATUS section lists every row's codes and meanings, and no subcommand
    section repeats the global options (they are under GLOBAL OPTIONS)."""
    page = render_manpage(_parser(), "9.9", "2026-12-07")
    section = page[page.index(".SH EXIT STATUS") : page.index(".SH FILES")]

    for row in EXIT_TABLE:
        for code, meaning in row.codes:
            assert f".TP\n\\fB{code}\\fR\n" in section
            assert plain(meaning).replace("-", "\\-").replace("\\|", "|") in section.replace("\\e", "\\")
    commands = page[page.index(".SH COMMANDS") : page.index(".SH GLOBAL OPTIONS")]
    assert "\\-\\-log\\-level" not in commands


def test_the_codes_the_handlers_return_are_the_tables() -> None:
    """The named exit codes of the handlers agree with the table: status 3 not running, check's four
    plugin states, run's EX_CONFIG, search's grep codes."""
    from maild.cli.archive import SEARCH_ERROR, SEARCH_NO_MATCH
    from maild.cli.main import EXIT_CONFIG, EXIT_USAGE
    from maild.cli.status_view import (
        CHECK_CRITICAL,
        CHECK_OK,
        CHECK_UNKNOWN,
        CHECK_WARNING,
        STATUS_ATTENTION,
        STATUS_NOT_RUNNING,
        STATUS_OK,
    )

    status = dict(codes_of("status"))
    assert status[STATUS_NOT_RUNNING].startswith("the daemon is not running")
    assert status[STATUS_ATTENTION].startswith("an account needs attention")
    assert status[STATUS_OK].startswith("every account")
    check = dict(codes_of("check"))
    for code, word in ((CHECK_OK, "OK"), (CHECK_WARNING, "WARNING"), (CHECK_CRITICAL, "CRITICAL")):
        assert check[code].startswith(word)
    assert check[CHECK_UNKNOWN].startswith("UNKNOWN")
    assert dict(codes_of("run"))[EXIT_CONFIG].startswith("the configuration is invalid")
    search = dict(codes_of("messages search"))
    assert search[SEARCH_NO_MATCH].startswith("no message matches")
    assert search[SEARCH_ERROR].startswith("usage error")
    for row in EXIT_TABLE:  # argparse's code; check shares 2 with CRITICAL and says so
        usage = dict(row.codes)[EXIT_USAGE]
        assert usage.startswith("usage error") or "a wrong command line exits 2" in usage, row.shown


def test_fetch_says_not_retrieved_not_left_on_the_server() -> None:
    """`maild fetch`'s one-liner counts messages that failed to arrive as "not retrieved": with
    retention = keep every message is left on the server by design, so "left on the server" was
    ambiguous."""
    assert "left on the server" not in FETCH_HELP
    assert "not retrieved" in FETCH_HELP
    assert "left on the server" not in " ".join(plain(m) for _c, m in codes_of("fetch"))
