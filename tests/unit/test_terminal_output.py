"""Mail and server text shown on a terminal never carries terminal control sequences (QA of session 10).

A sender chose the Subject ``EVIL<ESC>]0;pwned<BEL><ESC>[31mRED`` and the From ``Bad<ESC>[2J Guy``:
`maild messages list`, `show` and `search` wrote the ESC bytes to the admin's terminal, which obeyed them
(window title set, screen cleared, text recoloured). On a terminal they are now shown in caret notation;
into a pipe or file the text stays as it is.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from maild.cli.terminal import visible
from maild.log import configure_logging
from tests.support.archive import build_archive, pop
from tests.support.terminal import run_on_terminal

SUBJECT = "EVIL\x1b]0;pwned\x07\x1b[31mRED\x1b[0m"
SENDER = "Bad\x1b[2J Guy <b@example.org>"
BODY = "body \x1b[5mblink\x9b\r\n".encode()


def _encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


async def _archive(tmp_path: Path) -> Path:
    raw = (
        f"From: {_encoded(SENDER)}\r\nTo: anna@example.org\r\nSubject: {_encoded(SUBJECT)}\r\n"
        "Message-ID: <esc@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + BODY
    path = tmp_path / "maild.sqlite3"
    await build_archive(path, [("anna-pop", pop(1), raw)])
    return path


def _on_a_terminal(*args: str) -> bytes:
    """Run ``python -m maild ARGS`` with stdout on a pseudo-terminal; everything it wrote there."""
    _code, out = run_on_terminal(
        *args, stderr_too=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    return out


@pytest.mark.parametrize("command", ["list", "show", "search"])
async def test_list_show_and_search_on_a_terminal_show_escapes_never_send_them(
    tmp_path: Path, command: str
) -> None:
    """On a terminal, ESC, BEL and C1 controls from the Subject, From and body are shown as ``^[``, ``^G``
    and ``\\x9b``; the text around them is intact."""
    database = await _archive(tmp_path)
    args = ["messages", command, "--database", str(database)]
    if command == "show":
        listing = subprocess.run(
            [sys.executable, "-m", "maild", "messages", "list", "--json", "--database", str(database)],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        args.append(json.loads(listing.stdout)[0]["id"])
    elif command == "search":
        args.append("evil")

    out = _on_a_terminal(*args)

    assert b"\x1b" not in out
    assert b"\x07" not in out
    assert "\x9b".encode() not in out
    assert b"EVIL^[]0;pwned^G^[[31mRED" in out
    assert b"Bad^[[2J Guy" in out
    if command == "show":
        assert b"body ^[[5mblink\\x9b" in out


async def test_into_a_pipe_the_text_is_unchanged(tmp_path: Path) -> None:
    """Into a pipe (a script, a file) the output is not rewritten: the program reading it gets the
    archive's text as it is."""
    database = await _archive(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "maild", "messages", "list", "--database", str(database)],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert b"EVIL\x1b]0;pwned\x07" in done.stdout


def test_visible_keeps_tab_newline_return_and_printable_text() -> None:
    """TAB, LF, CR and every printable character (non-ASCII included) pass; C0, DEL and C1 do not."""
    assert visible("a\tb\nc\rd ü €") == "a\tb\nc\rd ü €"
    assert visible("\x00\x1b\x7f\x80\x9f") == "^@^[^?\\x80\\x9f"


def test_console_log_lines_show_control_characters_from_servers(tmp_path: Path) -> None:
    """A server's ``[ALERT]`` text with ESC sequences, logged in the console format (the one a terminal
    gets), is written in caret notation; the event and the rest of the text are intact."""
    out_path = tmp_path / "log"
    with out_path.open("w") as out:
        configure_logging("info", fmt="console", stream=out)
        structlog.get_logger("maild.test").warning("imap.alert", text="[ALERT] \x1b[2Jpay here\x1b]0;x\x07")
        logging.getLogger().handlers[0].flush()
    written = out_path.read_text()
    assert "imap.alert" in written
    assert "\x1b" not in written
    assert "\x07" not in written
    assert "[ALERT] ^[[2Jpay here^[]0;x^G" in written
