"""Issue 14's behaviours through the command line (``maild fetch``, ``maild run`` and ``maild status``)
and the FETCH assembler's long-standing public signature, against Dovecot behind the fault proxy and
the scripted POP3 server.

These tests use nothing that issue 14 added (no new modules, fields or keyword arguments): they read
the archive's ``messages`` table and the commands' output. So the same file runs against the code
before issue 14 and after it; docs/development.md ("Tests that fail on the code before issue 14")
records how each fails on the old code.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from maild.protocols.imap import fetch as imap_fetch
from tests.faults.test_imap_library import run_streaming
from tests.support.daemonproc import maild_cli, maild_command, running_maild, status, stop_maild
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import MARKER, letter
from tests.support.maildconf import AccountSpec, write_config
from tests.support.proxy import FaultProxy
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message

REFUSED = "-ERR [SYS/TEMP] message locked by the virus scanner"
SUBJECT = "Rechnung 42"


def archived_count(directory: Path) -> int:
    """Messages in the archive of the config written to ``directory`` (its ``messages`` table)."""
    with sqlite3.connect(directory / "state" / "maild.sqlite3") as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def scripted_config(directory: Path, server: ScriptedPOP3, **extra: Any) -> Path:
    """``directory/config.toml`` with one POP3 account ``office`` on ``server`` (plaintext, loopback)."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / "secret"
    secret.write_text(server.password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    doc = {
        "daemon": {"state_dir": str(directory / "state"), "control_socket": str(directory / "control.sock")},
        "accounts": {
            "office": {
                "organisation": "Hausverwaltung Beispiel",
                "employee": "Anna Beispiel",
                "protocol": "pop3",
                "host": server.host,
                "port": server.port,
                "tls": "none",
                "username": server.user,
                "password_file": str(secret),
                "poll_interval": "1h",
                "timeout": "10s",
                **extra,
            }
        },
    }
    path = directory / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def refused_invoice() -> ScriptedMessage:
    """Message 2 of the scripted maildrop: RETR refused, its header readable with TOP."""
    raw = sample_message(2).replace(b"Subject: ", b"Subject: " + SUBJECT.encode() + b" ", 1)
    return ScriptedMessage(raw, retr_error=REFUSED, top="serve")


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_maild_fetch_keeps_what_arrived_and_sets_the_breaking_message_aside(
    protocol: str, dovecot: Dovecot, mail_user: MailUser, tmp_path: Path
) -> None:
    """Item 1 through ``maild fetch``: the connection breaks inside message 3 of 5 every time; the
    first run archives messages 1-2, runs 2 and 3 fail on message 3 again, and run 4 succeeds,
    archiving 4-5 (POP3 with "delete": and deleting them, while message 3 stays on the server)."""
    dovecot.deliver_many(mail_user.name, [letter(1), letter(2), letter(3, MARKER), letter(4), letter(5)])
    port = dovecot.ports.pop3 if protocol == "pop3" else dovecot.ports.imap
    with FaultProxy(dovecot.host, port) as proxy:
        proxy.cut_when(MARKER, "down")
        # IMAP: "delete" is a POP3 setting; "keep" there, the archive tells what arrived
        extra: dict[str, Any] = {"host": proxy.host, "port": proxy.port, "retention": "delete"}
        if protocol == "imap":
            extra.update(retention="keep", idle=False)
        spec = AccountSpec("office", protocol, mail_user.name, mail_user.password, tls="none", extra=extra)
        cfg = write_config(tmp_path, dovecot, [spec])

        first = maild_cli(cfg, "fetch")
        assert first.returncode != 0, first.stdout + first.stderr
        assert archived_count(tmp_path) == 2, first.stdout + first.stderr
        for _ in range(2):
            assert maild_cli(cfg, "fetch").returncode != 0
        fourth = maild_cli(cfg, "fetch")

    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    assert archived_count(tmp_path) == 4
    if protocol == "pop3":
        assert [MARKER in m for m in dovecot.maildir_messages(mail_user.name)] == [True]


def test_maild_fetch_names_each_failed_message_with_subject_and_the_servers_words(tmp_path: Path) -> None:
    """Item 6 through ``maild fetch``: a message whose RETR the server refuses is named by UIDL,
    Subject and the server's words, not only counted."""
    with ScriptedPOP3([sample_message(1), refused_invoice()]) as server:
        run = maild_cli(scripted_config(tmp_path, server), "fetch")

    assert run.returncode == 0, run.stdout + run.stderr
    assert f'UIDL uidl-2 "{SUBJECT} Message 2": {REFUSED}' in run.stdout


def test_maild_fetch_after_a_failed_quit_is_not_failed(tmp_path: Path) -> None:
    """Item 6: a poll that stored everything but whose QUIT was refused exits 0 with a warning."""
    with ScriptedPOP3([sample_message(1)], quit_error="-ERR [SYS/TEMP] disk trouble") as server:
        run = maild_cli(scripted_config(tmp_path, server), "fetch")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAILED" not in run.stdout
    assert "did not end cleanly" in run.stdout


def test_maild_status_lists_a_set_aside_message_and_fetch_now_retry_failed_tries_it(tmp_path: Path) -> None:
    """Items 1 and 6 through ``maild run``, ``maild fetch-now`` and ``maild status``: a message the
    server refuses in three cycles in a row is set aside; the status table (not only ``--json``)
    names it with its Subject and the server's words; a fourth cycle does not ask for it; ``maild
    fetch-now --retry-failed`` does.

    Steps: the daemon's first cycle and two ``maild fetch-now`` each RETR message 2 (refused); the
    status table says it is set aside; another fetch-now sends no RETR 2; fetch-now --retry-failed
    sends one.
    """
    with ScriptedPOP3([sample_message(1), refused_invoice()]) as server:
        cfg = scripted_config(tmp_path, server)
        with running_maild(maild_command(cfg), log=tmp_path / "daemon.log") as proc:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                accounts = status(tmp_path / "control.sock").get("accounts")
                if accounts and accounts[0]["last_success"] is not None:
                    break
                time.sleep(0.1)
            for _ in range(2):
                assert maild_cli(cfg, "fetch-now", "office").returncode == 0
            table = maild_cli(cfg, "status")
            asked = server.commands.count("RETR 2")
            skipped = maild_cli(cfg, "fetch-now", "office")
            asked_after_skip = server.commands.count("RETR 2")
            retried = maild_cli(cfg, "fetch-now", "--retry-failed", "office")
            asked_on_request = server.commands.count("RETR 2")
            assert stop_maild(proc) == 0

    line = f'set aside after 3 failures in a row, left on the server: UIDL uidl-2 "{SUBJECT} Message 2": {REFUSED}'
    assert line in table.stdout, table.stdout
    assert (asked, skipped.returncode, asked_after_skip) == (3, 0, 3)
    assert (retried.returncode, asked_on_request) == (0, 4), retried.stdout + retried.stderr


def fetch_reply(shapes: list[tuple[bytes, bytes]]) -> bytes:
    """A UID FETCH 11:13 reply with these (body, what follows its literal: nothing, a spurious CRLF or
    a blank line) messages, INTERNALDATE and FLAGS always sent."""
    out = b""
    for seq, (body, gap) in enumerate(shapes, 1):
        out += b'* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {%d}\r\n' % (
            seq, 10 + seq, len(body)
        )  # fmt: skip
        out += body + gap + b")\r\n"
    return out + b"TAG OK Fetch completed.\r\n"


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=60), st.sampled_from([b"", b"\r\n", b"\r\n \r\n"])),
             min_size=1, max_size=3),
    st.lists(st.integers(min_value=0), max_size=8),
)  # fmt: skip
def test_streaming_fetch_gives_exact_bodies_despite_blank_lines_after_literals(
    shapes: list[tuple[bytes, bytes]], points: list[int]
) -> None:
    """Items 4 and 7: a FETCH reply with blank lines inside the open list after a literal, read
    through the real protocol cut anywhere, gives every body exactly (the streaming FETCH and the
    assembler's signatures from before issue 14 only)."""
    stream = fetch_reply(shapes)
    tagged = stream.replace(b"TAG", b"XXXX0")
    cuts = sorted({p % len(tagged) for p in points if p % len(tagged)})

    _, handed = asyncio.run(run_streaming(cuts, stream))
    assembler = imap_fetch.FetchAssembler([11, 12, 13], ("BODY[]",))
    for call in handed:
        assembler.feed([bytearray(octets) if kind == "bytearray" else octets for kind, octets in call])
    assembler.finish()
    outcomes: dict[int, imap_fetch.Outcome] = {}
    while (outcome := assembler.next_outcome()) is not None:
        outcomes[outcome[0]] = outcome[1]
    for seq, (body, _) in enumerate(shapes, 1):
        message = outcomes.get(10 + seq)
        assert isinstance(message, imap_fetch.FetchedMessage), message
        assert message.body == body
