"""The man page and shell completions generated from the parser: complete, valid roff, working bash completion."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from maild.cli.main import _parser
from maild.cli.manpage import bash_completion, command_tree, render_manpage, zsh_completion


def _leaf_commands() -> list[str]:
    return [
        " ".join(path)
        for path, _text, sub in command_tree(_parser())
        if path and not any(a.__class__.__name__ == "_SubParsersAction" for a in sub._actions)
    ]


def test_man_page_documents_every_command_and_option() -> None:
    """Each leaf command has a section, and options such as --database and --compress appear."""
    page = render_manpage(_parser(), "9.9", "2026-12-06")

    assert page.startswith('.TH MAILD 1 "2026-12-06" "maild 9.9"')
    for command in _leaf_commands():
        assert f".SS maild \\fB{command.replace('-', chr(92) + '-')}\\fR" in page, command
    assert "\\fB\\-\\-compress\\fR" in page and "\\fB\\-\\-database\\fR" in page


def test_man_page_renders_without_warnings(tmp_path: Path) -> None:
    """`man -l` formats the page with no warnings (groff checks the roff)."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    page = tmp_path / "maild.1"
    page.write_text(render_manpage(_parser(), "9.9", "2026-12-06"))
    res = subprocess.run(
        ["man", "--warnings", "-l", str(page)], capture_output=True, text=True, check=False,
        env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip

    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "maild messages attachment ID [PART]" in res.stdout


def test_maild_manpage_prints_the_page_man_reads_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild manpage | man -l -` works in a source checkout (no installed page): the same page the
    build generates, dated by SOURCE_DATE_EPOCH like the build."""
    from maild import __version__
    from maild.cli.main import main

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796515200")  # 2026-12-06
    assert main(["manpage"]) == 0
    page = capsys.readouterr().out

    assert page == render_manpage(_parser(), __version__, "2026-12-06")
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    res = subprocess.run(
        ["man", "--warnings", "-l", "-"], input=page, capture_output=True, text=True, check=False,
        env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "maild manpage" in res.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["maild", "mess"], "messages"),
        (["maild", "messages", "s"], "show search"),
        (["maild", "-c", "x.toml", "bac"], "backup"),
        (["maild", "backup", "--k"], "--keep"),
    ],
)
def test_bash_completion_completes_commands_and_options(tmp_path: Path, words: list[str], expected: str) -> None:
    """The generated bash script completes subcommands at each level and options of the command typed."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "maild"
    script.write_text(bash_completion(_parser()))
    array = " ".join(f"'{w}'" for w in words)
    res = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _maild;"
         ' echo "${COMPREPLY[*]}"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert res.stdout.strip() == expected


def test_zsh_completion_names_every_command() -> None:
    """The zsh function is a #compdef file listing each command group's subcommands."""
    script = zsh_completion(_parser())

    assert script.startswith("#compdef maild\n")
    assert "'maild messages' 'list show raw search attachment'" in script
    if shutil.which("zsh") is not None:
        subprocess.run(["zsh", "-n", "-c", script], check=True)


def test_fetch_help_and_man_page_state_the_exit_codes_of_the_docs() -> None:
    """`maild fetch --help`, the man page and docs/operations.md say the same: exit 1 for a failed
    account, 0 when every account was fetched even with messages not retrieved this time."""
    parser = _parser()
    page = render_manpage(parser, "9.9", "2026-12-06")
    (fetch,) = [sub for path, _text, sub in command_tree(parser) if path == ("fetch",)]
    docs = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")

    said = "0 every account fetched, also when some messages could not be retrieved this time"
    assert said in " ".join(fetch.format_help().split())
    assert said[2:] in page.replace("\n", " ")
    assert "| `maild fetch [ACCOUNT…]` | " + said[2:] in docs
