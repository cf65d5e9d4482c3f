"""APPEND and the header scan against a scripted IMAP server; migrate and retire of a drop-in account.

The scripted server answers what Dovecot will not on request: ``[TOOBIG]``, ``[OVERQUOTA]``, BAD,
``[UNAVAILABLE]``, no UIDPLUS, and it records the exact APPEND command line and literal.
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w

from maild.archive.move_queries import MigrationStore
from maild.cli.main import main
from maild.errors import ProtocolError, ThrottledError
from maild.model import POP3Key, RetrievedMessage, ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMessage, Session, unquote
from tests.support.dovecot import free_port

APPEND_RE = re.compile(
    r'^(?P<mailbox>"(?:[^"\\]|\\.)*"|\S+)(?: \((?P<flags>[^)]*)\))?(?: "(?P<date>[^"]+)")? \{(?P<size>\d+)\}$'
)


@dataclass
class AppendLog:
    """What the scripted server's APPEND handler saw, and how it should answer."""

    lines: list[str] = field(default_factory=list)
    literals: list[bytes] = field(default_factory=list)
    refuse_before_literal: dict[int, str] = field(default_factory=dict)  # size -> tagged reply text
    refuse_after_literal: dict[bytes, str] = field(default_factory=dict)  # octets -> tagged reply text
    bye_after_literal: dict[bytes, str] = field(default_factory=dict)  # octets -> BYE text, then close
    uidplus: bool = True


def install_append(server: ScriptedIMAP, log: AppendLog) -> None:
    """Teach ``server`` APPEND (a synchronising literal) and ``BODY.PEEK[HEADER]`` in UID FETCH."""

    async def append(session: Session, tag: str, args: str) -> None:
        log.lines.append(args)
        match = APPEND_RE.match(args)
        assert match is not None, args
        size = int(match["size"])
        if size in log.refuse_before_literal:
            await session.send(f"{tag} {log.refuse_before_literal[size]}\r\n".encode())
            return
        await session.send(b"+ Ready for literal data\r\n")
        data = await session.reader.readexactly(size)
        assert await session.reader.readline() == b"\r\n"
        log.literals.append(data)
        if data in log.bye_after_literal:
            await session.send(f"* BYE {log.bye_after_literal[data]}\r\n".encode())
            session.writer.close()
            return
        if data in log.refuse_after_literal:
            await session.send(f"{tag} {log.refuse_after_literal[data]}\r\n".encode())
            return
        mailbox = server.mailboxes.get(unquote(match["mailbox"]))
        if mailbox is None:
            await session.send(f"{tag} NO [TRYCREATE] Mailbox doesn't exist\r\n".encode())
            return
        uid = (mailbox.messages[-1].uid + 1) if mailbox.messages else 1
        flags = set((match["flags"] or "").split())
        mailbox.messages.append(
            ScriptedMessage(data, uid, flags, match["date"] or "01-Jan-2000 00:00:00 +0000")
        )
        code = f"[APPENDUID {mailbox.uidvalidity} {uid}] " if log.uidplus else ""
        await session.send(f"{tag} OK {code}Append completed\r\n".encode())

    def fetch_writer(seq: int, message: ScriptedMessage, items: str) -> bytes:
        parts = [b"UID %d" % message.uid]
        if "RFC822.SIZE" in items.upper():
            parts.append(b"RFC822.SIZE %d" % len(message.raw))
        if "BODY.PEEK[HEADER]" in items.upper():
            head = message.raw[: message.raw.index(b"\r\n\r\n") + 4]
            parts.append(b"BODY[HEADER] {%d}\r\n" % len(head) + head)
        elif "BODY" in items.upper():
            parts.append(b"FLAGS (" + " ".join(sorted(message.flags)).encode() + b")")
            parts.append(b'INTERNALDATE "' + message.internaldate.encode() + b'"')
            parts.append(b"BODY[] {%d}\r\n" % len(message.raw) + message.raw)
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    server.script["APPEND"] = append
    server.fetch_writer = fetch_writer


def letter(n: int, *, octets: int = 0) -> bytes:
    body = b"Text %d\r\n" % n + b"y" * octets
    return (
        b"From: Anna <anna@example.org>\r\nSubject: Brief %d\r\nDate: Mon, 2 Mar 2026 10:%02d:00 +0100\r\n"
        b"Message-ID: <brief-%d@example.org>\r\n\r\n" % (n, n, n)
    ) + body


@pytest.fixture
async def server() -> AsyncIterator[tuple[ScriptedIMAP, AppendLog]]:
    """A scripted server with INBOX and "Entwürfe 2026" (wire name in modified UTF-7) that takes APPEND."""
    scripted = ScriptedIMAP({"INBOX": [letter(1)], "Entw&APw-rfe 2026": []}, uidvalidity=4711)
    log = AppendLog()
    install_append(scripted, log)
    async with scripted:
        yield scripted, log


def settings(server: ScriptedIMAP) -> ServerSettings:
    return ServerSettings("b", server.host, server.port, "none", None, "anna", Secret("pw"), 5.0)


async def test_append_sends_quoted_mailbox_flags_date_and_exact_octets(
    server: tuple[ScriptedIMAP, AppendLog],
) -> None:
    """APPEND quotes and encodes the mailbox, sends flags and INTERNALDATE in UTC, the octets unchanged,
    and reads [APPENDUID]."""
    scripted, log = server
    session = IMAPMailbox(settings(scripted), ["INBOX"])
    await session.open()
    raw = letter(2) + b'Zeile mit "Anfuehrung" und (Klammer\r\n'
    when = datetime(2026, 3, 2, 9, 5, 7, tzinfo=UTC)
    result = await session.append("Entwürfe 2026", raw, flags={"\\Seen"}, internaldate=when)
    await session.close()
    assert result.ok
    assert (result.uidvalidity, result.uid) == (4711, 1)
    assert log.lines == [f'"Entw&APw-rfe 2026" (\\Seen) "02-Mar-2026 09:05:07 +0000" {{{len(raw)}}}']
    assert log.literals == [raw]
    assert scripted.mailboxes["Entw&APw-rfe 2026"].messages[0].raw == raw


@pytest.mark.parametrize(
    ("reply", "code", "before_literal"),
    [
        ("NO [TOOBIG] Message too large", "TOOBIG", True),
        ("NO [OVERQUOTA] Quota exceeded", "OVERQUOTA", False),
        ("NO [LIMIT] Mail size is larger than the maximum", "LIMIT", True),
        ("BAD Error in IMAP command APPEND: 8bit data in header", None, False),
    ],
)
async def test_refusals_are_returned_and_the_session_goes_on(
    server: tuple[ScriptedIMAP, AppendLog], reply: str, code: str | None, before_literal: bool
) -> None:
    """A refused APPEND (before or after the literal) is returned with the reply; the next APPEND works."""
    scripted, log = server
    raw = letter(3, octets=500)
    if before_literal:
        log.refuse_before_literal[len(raw)] = reply
    else:
        log.refuse_after_literal[raw] = reply
    session = IMAPMailbox(settings(scripted), ["INBOX"])
    await session.open()
    refused = await session.append("INBOX", raw)
    accepted = await session.append("INBOX", letter(4))
    await session.close()
    assert not refused.ok
    assert refused.code == code
    assert refused.status.startswith(reply.split(" [")[0].split(" Error")[0])
    assert reply.split("] ")[-1] in refused.status
    assert accepted.ok
    assert accepted.uid == 2


async def test_unavailable_raises_and_no_uidplus_gives_no_uid(server: tuple[ScriptedIMAP, AppendLog]) -> None:
    """NO [UNAVAILABLE] concerns the session, so it raises; without UIDPLUS the result has no UID."""
    scripted, log = server
    log.uidplus = False
    session = IMAPMailbox(settings(scripted), ["INBOX"])
    await session.open()
    result = await session.append("INBOX", letter(5))
    assert result.ok
    assert (result.uidvalidity, result.uid) == (None, None)
    log.refuse_before_literal[len(letter(6))] = "NO [UNAVAILABLE] Try later"
    with pytest.raises(ThrottledError):
        await session.append("INBOX", letter(6))
    await session.abort()


async def test_flags_and_mailbox_names_that_cannot_be_sent(server: tuple[ScriptedIMAP, AppendLog]) -> None:
    """A flag that is no atom or a mailbox name UTF-16 cannot carry is refused before anything is sent;
    the session stays usable."""
    scripted, log = server
    session = IMAPMailbox(settings(scripted), ["INBOX"])
    await session.open()
    with pytest.raises(ProtocolError):
        await session.append("INBOX", letter(7), flags={"bad flag"})
    with pytest.raises(ProtocolError):
        await session.append("IN\udc80BOX", letter(7))
    assert log.lines == []
    assert (await session.append("INBOX", letter(7))).ok
    await session.close()


async def test_header_scan_reads_sizes_and_headers_only(server: tuple[ScriptedIMAP, AppendLog]) -> None:
    """The header scan asks for UID, RFC822.SIZE and BODY.PEEK[HEADER] and returns them per UID."""
    scripted, _log = server
    session = IMAPMailbox(settings(scripted), ["INBOX"])
    await session.open()
    scan = await session.headers("INBOX")
    empty = await session.headers("Entwürfe 2026")
    await session.close()
    assert scan.uidvalidity == 4711
    assert list(scan.messages) == [1]
    item = scan.messages[1]
    assert item.size_octets == len(letter(1))
    assert item.header == letter(1)[: letter(1).index(b"\r\n\r\n") + 4]
    assert item.body is None
    assert scan.failures == {}
    assert empty.messages == {}
    assert scripted.commands_named("UID FETCH") == ["UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER])"]


async def move_setup(scripted: ScriptedIMAP, tmp_path: Path) -> tuple[Callable[..., int], Path]:
    """IMAP "neu" on the scripted server in the main file, POP3 "alt" in a drop-in, and 3 messages of "alt" archived.

    Returns ``run(*args)`` (the CLI on this config, exit status) and the drop-in's path.
    """
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    common = {"organisation": "Kanzlei", "employee": "Anna", "username": "anna", "password_file": str(secret)}
    main_doc = {
        "daemon": {"state_dir": str(tmp_path / "state"), "control_socket": str(tmp_path / "c.sock")},
        "accounts": {
            "neu": {"protocol": "imap", "host": scripted.host, "port": scripted.port, "tls": "none", **common}
        },
    }
    cfg = tmp_path / "config.toml"
    cfg.write_text(tomli_w.dumps(main_doc))
    (tmp_path / "accounts.d").mkdir()
    dropin = tmp_path / "accounts.d" / "alt.toml"
    dropin.write_text(
        # alt's old server is gone: nothing listens on its port (retire needs `--accept-unfetched`)
        tomli_w.dumps(
            {"accounts": {"alt": {"protocol": "pop3", "host": "127.0.0.1", "port": free_port(), **common}}}
        )
    )
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:
        await store.ensure_account("alt", "Kanzlei", "Anna", "pop3", datetime(2026, 1, 1, tzinfo=UTC))
        batch = [RetrievedMessage(POP3Key(f"u{n}"), letter(n)) for n in (1, 2, 3)]
        await store.store_batch("alt", batch, datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        await store.close()

    def run(*args: str) -> int:
        return main(["-c", str(cfg), *args])

    return run, dropin


async def test_migrate_and_retire_a_drop_in_account(
    server: tuple[ScriptedIMAP, AppendLog], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """migrate uploads what only the archive holds (POP3 -> \\Seen, Date -> INTERNALDATE), retire then
    writes enabled = false into the source's drop-in and records the retirement.

    Steps: config with IMAP "neu" on the scripted server and a drop-in POP3 "alt"; the archive holds 3
    messages of "alt" (one also on the server); compare exits 1; migrate uploads 2; compare exits 0;
    retire; accounts list shows the retirement; the drop-in says enabled = false.
    """
    scripted, log = server
    run, dropin = await move_setup(scripted, tmp_path)

    assert await asyncio.to_thread(run, "compare", "alt", "neu") == 1
    assert "2 messages of alt are missing in neu" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--dry-run") == 0
    assert "2 to upload" in capsys.readouterr().out
    assert log.lines == []
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["subject"] for a in report["appended"]] == ["Brief 2", "Brief 3"]
    assert report["complete"] is True
    assert log.lines[0] == f'"INBOX" (\\Seen) "02-Mar-2026 09:02:00 +0000" {{{len(letter(2))}}}'
    assert await asyncio.to_thread(run, "retire", "alt", "--into", "neu") == 1
    err = capsys.readouterr().err
    assert "alt's server (127.0.0.1) could not be checked" in err
    assert "--accept-unfetched" in err
    assert "enabled" not in dropin.read_text()
    assert await asyncio.to_thread(run, "retire", "alt", "--into", "neu", "--accept-unfetched") == 0
    out = capsys.readouterr().out
    assert "alt: its server (127.0.0.1) was not checked" in out
    assert f"enabled = false written to {dropin}" in out
    assert tomllib.loads(dropin.read_text())["accounts"]["alt"]["enabled"] is False
    assert await asyncio.to_thread(run, "accounts", "list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["accounts"]}
    assert rows["alt"]["retired_into"] == "neu"
    assert rows["alt"]["enabled"] is False
    assert rows["alt"]["messages"] == 3


async def test_purge_counts_messages_on_another_imap_server_as_safe(
    server: tuple[ScriptedIMAP, AppendLog], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--purge checks the servers of the other IMAP accounts: what one holds is safe, the rest is counted.

    Steps: "alt" (drop-in, POP3) has 3 archived messages linked to no other account; the IMAP
    account's server holds one of them; purge refuses naming 2; after migrating them, purge succeeds.
    """
    scripted, _log = server
    run, dropin = await move_setup(scripted, tmp_path)

    assert await asyncio.to_thread(run, "accounts", "remove", "alt", "--purge") == 1
    assert "2 of the 3 messages only alt links to" in capsys.readouterr().err
    assert dropin.exists()
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu") == 0
    capsys.readouterr()
    assert await asyncio.to_thread(run, "accounts", "remove", "alt", "--purge") == 0
    assert "purged the archive of alt: 3 messages" in capsys.readouterr().out
    assert not dropin.exists()


async def test_migrate_goes_on_after_an_append_answered_by_bye(
    server: tuple[ScriptedIMAP, AppendLog], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An APPEND answered with ``* BYE`` and a closed connection (as Gmail does for messages it
    refuses) is reported as refused with the server's words; migrate goes on in a new session with
    the next message and ends with the comparison, as after a NO."""
    scripted, log = server
    run, _dropin = await move_setup(scripted, tmp_path)
    log.bye_after_literal[letter(2)] = "[ALERT] Message refused: NUL octets"

    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--json") == 1
    report = json.loads(capsys.readouterr().out)

    assert [a["subject"] for a in report["appended"]] == ["Brief 3"]
    assert [r["subject"] for r in report["refused"]] == ["Brief 2"]
    assert "Message refused: NUL octets" in report["refused"][0]["reply"]
    assert report["stopped"] is None
    assert report["after"] is not None  # finished with the comparison
    assert report["complete"] is False


async def test_migrate_stops_when_the_next_append_is_answered_by_bye_too(
    server: tuple[ScriptedIMAP, AppendLog], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the message after one answered by BYE is answered by BYE too, migrate stops there."""
    scripted, log = server
    run, _dropin = await move_setup(scripted, tmp_path)
    log.bye_after_literal[letter(2)] = "Message refused"
    log.bye_after_literal[letter(3)] = "Message refused"

    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--json") == 1
    report = json.loads(capsys.readouterr().out)

    assert report["appended"] == []
    assert [r["subject"] for r in report["refused"]] == ["Brief 2", "Brief 3"]
    assert "Message refused" in report["stopped"]
    assert report["after"] is None
