"""A message whose body cannot be retrieved is shown by its Subject: the best-effort header fetch.

The scripted servers refuse or break on one message's body while its header section can still be
read (Dovecot serves every body; the Dovecot variant, a proxy cutting inside the body, is in
:mod:`tests.faults.test_keep_what_arrived`). Each test runs real fetch cycles (the POP3 and IMAP
adapters, a SQLite archive) and checks what the header fetch recorded, where it ran (POP3: in a
session of its own after QUIT; IMAP: in the cycle's session, ``BODY.PEEK``), and that a header fetch
that fails changes nothing else.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from maild.archive.failures import failure_records
from maild.archive.store import Store
from maild.config.loader import AccountConfig, Config, DaemonConfig
from maild.errors import ConnectError
from maild.fetch import failed_headers
from maild.fetch.cycle import fetch_cycle
from maild.model import FailureRecord, IMAPKey, MessageKey, POP3Key
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.service.oneshot import fetch_once
from tests.faults.imap_scripted import ScriptedIMAP
from tests.faults.imap_scripted import ScriptedMessage as IMAPMessage
from tests.faults.test_imap_faults import settings
from tests.support.accounts import imap_account
from tests.support.fetching import T0, archived, cycle, pop3_account, prepare
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message

#: The Subject as sent (RFC 2047 Q-encoded UTF-8) and as shown.
ENCODED_SUBJECT = b"=?utf-8?q?Rechnung_42_f=C3=BCr_M=C3=A4rz?="
SUBJECT = "Rechnung 42 für März"
REFUSED = "-ERR [SYS/TEMP] message locked by the virus scanner"


def invoice() -> bytes:
    """The message that will not arrive: RFC 2047 Subject, From and Date."""
    return (
        b"From: Buchhaltung <buchhaltung@example.com>\r\nTo: Anna <anna@example.com>\r\n"
        b"Subject: " + ENCODED_SUBJECT + b"\r\nDate: Tue, 03 Mar 2026 10:15:00 +0100\r\n"
        b"Message-ID: <invoice-42@example.com>\r\n\r\nBetrag: 42 EUR\r\n"
    )


async def deleting(server: ScriptedPOP3, store: Store) -> AccountConfig:
    """A "delete" POP3 account on ``server``, recorded in the archive."""
    return await prepare(store, pop3_account(server.host, server.port, "alice", "secret", retention="delete"))


async def only_record(store: Store, account: str) -> FailureRecord:
    """The account's one failure record."""
    (record,) = (await failure_records(store, account)).values()
    return record


async def test_pop3_refused_message_is_recorded_with_subject_read_by_top_after_quit(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """RETR refused, TOP served: the cycle archives and deletes the others, then reads the refused
    message's header in a second session after QUIT; Subject (RFC 2047 decoded), From and Date are
    recorded and the cycle's result names the Subject.

    Steps: three messages, the second's RETR refused; one cycle; the commands show QUIT of the first
    session before ``TOP 1 0`` (messages 1 and 3 are gone: the refused one is message 1 now); the
    record holds the decoded fields.
    """
    refused = ScriptedMessage(invoice(), retr_error=REFUSED, top="serve")
    with ScriptedPOP3([sample_message(1), refused, sample_message(3)]) as server:
        account = await deleting(server, store)
        result = await cycle(account, store, executor)
        commands = server.commands
        assert server.maildrop == [refused]

    key = POP3Key("uidl-2")
    assert ([f.key for f in result.failures], result.new_links, result.deleted) == ([key], 2, 2)
    assert result.subjects == {key: SUBJECT}
    assert commands.index("TOP 1 0") > commands.index("QUIT")  # after the cycle's session ended
    record = await only_record(store, account.name)
    assert (record.reason, record.subject, record.from_) == (
        REFUSED,
        SUBJECT,
        "Buchhaltung <buchhaltung@example.com>",
    )
    assert record.date == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)
    assert record.header_attempts == 1

    with ScriptedPOP3([refused]) as server:  # known Subject: the next cycle does not ask again
        account = await deleting(server, store)
        await cycle(account, store, executor)
        assert not [c for c in server.commands if c.startswith("TOP")]


@pytest.mark.parametrize("top", ["drop", "-ERR TOP not now", "endless"])
async def test_pop3_header_fetch_that_fails_changes_nothing_else(
    top: str, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A TOP that drops the connection, is refused, or sends an endless header section (cut at
    MAX_HEADER_OCTETS) leaves the cycle's result, deletions and failure record as they would be
    without it: only the attempt is counted, and no Subject is recorded."""
    refused = ScriptedMessage(invoice(), retr_error=REFUSED, top=top)
    with ScriptedPOP3([sample_message(1), refused, sample_message(3)]) as server:
        account = await deleting(server, store)
        with structlog.testing.capture_logs() as logs:
            result = await cycle(account, store, executor)
        assert "TOP 1 0" in server.commands  # in a new session: 1 and 3 were deleted
        assert server.maildrop == [refused]
    if top == "endless":
        (failed,) = [e for e in logs if e["event"] == "fetch.failed-headers.failed"]
        assert f"TOP 1 0 with more than {failed_headers.MAX_HEADER_OCTETS} octets" in failed["error"]

    assert (len(result.failures), result.new_links, result.deleted, result.subjects) == (1, 2, 2, {})
    record = await only_record(store, account.name)
    assert (record.failures, record.reason, record.subject, record.header_attempts) == (1, REFUSED, None, 1)


async def test_pop3_connection_broken_inside_the_message_still_gets_its_subject(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """The connection breaks inside the second message: the first is committed, the cycle fails,
    and a new session reads the broken message's header, so the record shows its Subject."""
    breaking = ScriptedMessage(invoice(), retr_drop_after_octets=60)
    with ScriptedPOP3([sample_message(1), breaking, sample_message(3)], pipelining=False) as server:
        account = await deleting(server, store)
        with pytest.raises(ConnectError):
            await cycle(account, store, executor)
        # the header session ends without QUIT since session 14 (it applies nothing; a server
        # deleting what it served would remove the message that failed): before, [..., "QUIT"]
        assert server.commands[-1] == "TOP 2 0"

    assert await archived(store) == [sample_message(1)]
    record = await only_record(store, account.name)
    assert "while it was being received" in record.reason
    assert (record.key, record.subject) == (POP3Key("uidl-2"), SUBJECT)


async def test_maild_fetch_names_the_failed_message_with_its_subject(tmp_path: Path) -> None:
    """`maild fetch` (the one-shot fetch, real adapters) names a refused message by UIDL, Subject
    and the server's words; a cycle that failed names the message it broke on the same way."""
    refused = ScriptedMessage(invoice(), retr_error=REFUSED, top="serve")
    with ScriptedPOP3([sample_message(1), refused]) as server:
        account = pop3_account(server.host, server.port, "alice", "secret")
        config = Config(tmp_path / "config.toml", DaemonConfig(state_dir=tmp_path), {account.name: account})
        (result,) = await fetch_once(config, [])
        refused.retr_error, refused.retr_drop_after_octets = None, 60
        (failed,) = await fetch_once(config, [])

    assert result.line().splitlines()[1] == f'  not retrieved: UIDL uidl-2 "{SUBJECT}": {REFUSED}'
    first, named = failed.line().splitlines()
    assert first.startswith("anna-pop: FAILED: ")
    assert named.startswith(f'  not retrieved: UIDL uidl-2 "{SUBJECT}": session failed while it was being received')


# ----------------------------------------------------------------------------------------- IMAP


@pytest.fixture
async def imap_server() -> AsyncIterator[ScriptedIMAP]:
    """A scripted IMAP server whose UID 2 is the invoice; FETCH of its body comes back without it."""
    async with ScriptedIMAP({"INBOX": [sample_message(1), invoice(), sample_message(3)]}) as server:
        default = server.fetch_writer

        def writer(seq: int, msg: IMAPMessage, items: str) -> bytes:
            if msg.uid == 2 and "BODY.PEEK[]" in items.upper():
                return b"* %d FETCH (UID 2 FLAGS ())\r\n" % seq  # the body left out: a per-message failure
            return default(seq, msg, items)

        server.fetch_writer = writer
        yield server


async def imap_cycle(server: ScriptedIMAP, store: Store) -> tuple[AccountConfig, IMAPMailbox]:
    """A "delete" account on ``server`` and its unopened adapter."""
    s = settings(server)
    account = await prepare(
        store,
        imap_account(
            "invoices", host=s.host, port=s.port, username="anna", password=s.password.reveal(), retention="delete"
        ),
    )
    return account, IMAPMailbox(account.server_settings(), account.mailboxes)


async def test_imap_failed_message_subject_is_read_with_body_peek_in_the_same_session(
    imap_server: ScriptedIMAP, store: Store
) -> None:
    """A FETCH without the body fails message 2; the cycle reads its Subject, From and Date with
    ``BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)]`` (never ``\\Seen``) in the same session, after
    the deletions, and the session is still kept (parked) afterwards."""
    account, mailbox = await imap_cycle(imap_server, store)
    result = await fetch_cycle(account, store, mailbox, keep_open=True)
    try:
        assert mailbox.parked
    finally:
        await mailbox.abort()

    key = IMAPKey("INBOX", 1234, 2)
    assert ([f.key for f in result.failures], result.new_links, result.deleted) == ([key], 2, 2)
    assert result.subjects == {key: SUBJECT}
    commands = [c.split(" ", 1)[1] for c in imap_server.commands]
    header_fetch = commands.index("UID FETCH 2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)])")
    assert header_fetch > max(i for i, c in enumerate(commands) if c.startswith("UID EXPUNGE"))
    record = await only_record(store, account.name)
    assert (record.subject, record.from_) == (SUBJECT, "Buchhaltung <buchhaltung@example.com>")


async def test_imap_header_fetch_that_breaks_the_session_changes_nothing_else(
    imap_server: ScriptedIMAP, store: Store
) -> None:
    """When the server drops the connection at the header fetch, the cycle still succeeds with the
    same result (archived, deleted, one failure recorded without Subject); the session is not kept."""

    async def drop_header_fetch(session, tag: str, args: str) -> None:  # type: ignore[no-untyped-def]
        if "HEADER.FIELDS" in args.upper():
            session.drop()
            return
        await session.default(tag, "UID FETCH", args)

    imap_server.script["UID FETCH"] = drop_header_fetch
    account, mailbox = await imap_cycle(imap_server, store)
    result = await fetch_cycle(account, store, mailbox, keep_open=True)

    assert not mailbox.parked
    assert (len(result.failures), result.new_links, result.deleted, result.subjects) == (1, 2, 2, {})
    record = await only_record(store, account.name)
    assert (record.failures, record.subject, record.header_attempts) == (1, None, 1)


# ------------------------------------------------------------------------------ which messages


def record(key: MessageKey, *, subject: str | None = None, attempts: int = 0) -> FailureRecord:
    """A failure record of ``key`` (one failure at T0)."""
    return FailureRecord(key, 1, "refused", T0, T0, subject=subject, header_attempts=attempts)


def test_keys_to_fetch_takes_new_failures_then_records_without_subject_within_the_limits() -> None:
    """This cycle's failures come first, then older records without a Subject; keys not on the
    server, with a Subject, or out of attempts are skipped; repeats once; at most ``limit``."""
    k = [POP3Key(f"u{i}") for i in range(7)]
    records = {
        k[0]: record(k[0]),
        k[1]: record(k[1], subject="known"),
        k[2]: record(k[2], attempts=failed_headers.MAX_HEADER_ATTEMPTS),
        k[3]: record(k[3]),
        k[4]: record(k[4]),
    }
    on_server = set(k) - {k[4]}
    assert failed_headers.keys_to_fetch(records, [k[5], k[0]], on_server) == [k[5], k[0], k[3]]
    assert failed_headers.keys_to_fetch(records, [k[5], k[6], k[0]], on_server, limit=2) == [k[5], k[6]]
    assert failed_headers.keys_to_fetch(records, [k[1], k[2], k[4]], on_server) == [k[0], k[3]]
