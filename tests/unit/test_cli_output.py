"""The archive commands' output habits: a quiet exit on a closed pipe, and saying how much a limit left out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maild.cli.main import EXIT_BROKEN_PIPE, main
from tests.support.archive import build_archive, letter, pop


async def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`maild messages list --json | head -1`: no traceback, no "Broken pipe" line, exit 141 as with SIGPIPE."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 301)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "maild", "messages", "list", "--database", str(db), "--limit", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()  # the pipe buffer (64 KiB) is smaller than the output: the writer hits EPIPE
    err = proc.stderr.read()
    proc.stderr.close()

    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert err == b""


async def test_list_says_how_many_the_limit_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With more messages than --limit, stderr says "N of M messages shown"; with all shown, nothing."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 8)])

    assert main(["messages", "list", "--database", str(db), "--limit", "5"]) == 0
    assert "5 of 7 messages shown; --limit 0 shows all" in capsys.readouterr().err
    assert main(["messages", "list", "--database", str(db), "--limit", "7"]) == 0
    assert capsys.readouterr().err == ""


async def test_a_limit_beyond_sqlite_integers_lists_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--limit larger than SQLite's largest INTEGER lists all messages (it was an OverflowError traceback)."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 4)])
    for action in (["list"], ["search", "letter"]):
        assert main(["messages", *action, "--database", str(db), "--limit", "9" * 25]) in (0, 1)
        assert "Traceback" not in capsys.readouterr().err
    assert main(["messages", "list", "--database", str(db), "--limit", "9" * 25, "--json"]) == 0
    assert capsys.readouterr().out.count('"id"') == 3
