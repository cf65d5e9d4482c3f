"""IMAP adapter against a scripted server, for what Dovecot will not do on request.

Covers quoting on the wire, every LOGIN refusal, STARTTLS (refused, missing, injected data), odd FETCH
shapes (UID after the literal, NIL bodies, interleaved EXISTS/EXPUNGE, unsolicited FETCH), batching
and chunking limits, UIDVALIDITY changes, deletion rules, hangs, hang-ups, cancellation and responses
long enough to crash the stock library's recursion.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from structlog.testing import capture_logs

from maild.errors import (
    AuthError,
    ConnectError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import IMAPKey, POP3Key, RetrievalFailure, RetrievedMessage, ServerSettings, TLSMode
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.protocols.imap.scan import MAX_UIDS_PER_COMMAND
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMessage, Session, default_fetch_writer

PASSWORD = 'p w"\\x'


def message(i: int, size: int = 0) -> bytes:
    """A small distinct message with CRLF line endings (at least ``size`` octets)."""
    body = b"Line (with :) paren\r\n" * max(1, size // 21)
    return b"Subject: message %d\r\nMessage-ID: <%d@test>\r\n\r\n" % (i, i) + body


def settings(
    server: ScriptedIMAP,
    *,
    tls: TLSMode = "none",
    timeout_s: float = 5.0,
    username: str = "anna",
    password: str = PASSWORD,
    ca_file: str | None = None,
) -> ServerSettings:
    """Settings for ``server`` (by IP, as the test certificate names 127.0.0.1 too)."""
    return ServerSettings(
        "acct", server.host, server.port, tls, ca_file, username, Secret(password), timeout_s
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway CA for the scripted server's certificate."""
    return trustme.CA()


@pytest.fixture
def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server-side TLS context with a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """PEM file of the throwaway CA, for ``ServerSettings.ca_file``."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def inbox() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with five messages in INBOX."""
    async with ScriptedIMAP({"INBOX": [message(i) for i in range(1, 6)]}) as server:
        yield server


async def opened(server: ScriptedIMAP, **kwargs: object) -> IMAPMailbox:
    """Open an IMAPMailbox on ``server`` with :func:`settings` ``kwargs``."""
    mailbox = IMAPMailbox(settings(server, **kwargs))  # type: ignore[arg-type]
    await mailbox.open()
    return mailbox


async def collect(mailbox: IMAPMailbox, keys: list[IMAPKey]) -> list[RetrievedMessage | RetrievalFailure]:
    """Everything retrieve() yields for ``keys``."""
    return [item async for item in mailbox.retrieve(keys)]


async def cancel_and_expect_unusable(task: asyncio.Future[Any], mailbox: IMAPMailbox) -> None:
    """Cancel ``task`` (a call on ``mailbox``): it ends cancelled, and the mailbox then refuses further
    use with TransientError "cancelled" until it is aborted (which this does)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TransientError, match="cancelled"):
        await mailbox.inventory()
    await mailbox.abort()


def keys(uids: range | list[int], uidvalidity: int = 1234, mailbox: str = "INBOX") -> list[IMAPKey]:
    """IMAPKeys for ``uids``."""
    return [IMAPKey(mailbox, uidvalidity, uid) for uid in uids]


# ------------------------------------------------------------------------------------ login


async def test_login_quotes_user_name_and_password_once(inbox: ScriptedIMAP) -> None:
    """User name and password with spaces, quotes and backslashes arrive correctly quoted, exactly once."""
    mailbox = await opened(inbox, username='an na"b\\', password=PASSWORD)
    await mailbox.close()
    assert inbox.commands_named("LOGIN") == ['LOGIN "an na\\"b\\\\" "p w\\"\\\\x"']


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("NO [AUTHENTICATIONFAILED] Authentication failed.", AuthError),
        ("NO Login failed", AuthError),
        ("NO [AUTHORIZATIONFAILED] no access", AuthError),
        ("NO [UNAVAILABLE] Try later", ThrottledError),
        ("NO [LIMIT] Too many connections", ThrottledError),
        ("NO [INUSE] Mailbox locked", ThrottledError),
        ("BAD Error in IMAP command LOGIN", ProtocolError),
    ],
)
async def test_login_refusals_map_to_errors(inbox: ScriptedIMAP, reply: str, error: type[Exception]) -> None:
    """NO maps by RFC 5530 code to AuthError or ThrottledError, BAD to ProtocolError; no secret in the text."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} {reply}\r\n".encode())

    inbox.script["LOGIN"] = refuse
    mailbox = IMAPMailbox(settings(inbox))
    with pytest.raises(error) as caught:
        await mailbox.open()
    assert PASSWORD not in str(caught.value)
    assert caught.value.account == "acct"  # type: ignore[attr-defined]
    await mailbox.abort()


async def test_login_serverbug_is_transient_not_auth(inbox: ScriptedIMAP) -> None:
    """NO [SERVERBUG] to LOGIN is retried later, not reported as a bad password."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} NO [SERVERBUG] oops\r\n".encode())

    inbox.script["LOGIN"] = refuse
    mailbox = IMAPMailbox(settings(inbox))
    with pytest.raises(TransientError) as caught:
        await mailbox.open()
    assert not isinstance(caught.value, AuthError | ThrottledError)
    await mailbox.abort()


async def test_password_with_line_break_is_never_sent(inbox: ScriptedIMAP) -> None:
    """A password with CR or LF cannot be sent as a quoted string: AuthError before LOGIN."""
    mailbox = IMAPMailbox(settings(inbox, password="a\r\nb"))
    with pytest.raises(AuthError, match="CR, LF or NUL"):
        await mailbox.open()
    assert inbox.commands_named("LOGIN") == []
    await mailbox.abort()


async def test_logindisabled_refuses_before_sending_password(inbox: ScriptedIMAP) -> None:
    """A server advertising LOGINDISABLED gets no LOGIN (RFC 9051 section 6.2.3)."""
    inbox.capabilities += " LOGINDISABLED"
    mailbox = IMAPMailbox(settings(inbox))
    with pytest.raises(ProtocolError, match="LOGIN"):
        await mailbox.open()
    assert inbox.commands_named("LOGIN") == []
    await mailbox.abort()


async def test_preauth_greeting_skips_login(inbox: ScriptedIMAP) -> None:
    """A PREAUTH greeting means authenticated already: no LOGIN, inventory works."""
    inbox.greeting = b"* PREAUTH welcome back\r\n"
    mailbox = await opened(inbox)
    assert len(await mailbox.inventory()) == 5
    await mailbox.close()
    assert inbox.commands_named("LOGIN") == []


async def test_bye_greeting_fails_promptly(inbox: ScriptedIMAP) -> None:
    """A server that greets with BYE yields ConnectError naming the greeting, not a hang."""
    inbox.greeting = b"* BYE too many connections\r\n"
    mailbox = IMAPMailbox(settings(inbox, timeout_s=30))
    started = time.monotonic()
    with pytest.raises(ConnectError, match="too many connections"):
        await mailbox.open()
    assert time.monotonic() - started < 5
    await mailbox.abort()


async def test_non_imap4rev1_server_is_refused(inbox: ScriptedIMAP) -> None:
    """A server whose greeting advertises neither IMAP4rev1 nor IMAP4rev2 is a ProtocolError."""
    inbox.greeting = b"* OK [CAPABILITY IMAP2 AUTH=PLAIN] scripted IMAP ready\r\n"
    mailbox = IMAPMailbox(settings(inbox))
    with pytest.raises(ProtocolError, match="IMAP4rev1"):
        await mailbox.open()
    await mailbox.abort()
    assert not any(line.split()[1:2] == ["CAPABILITY"] for line in inbox.commands)


# ------------------------------------------------------------------------------------ TLS


async def test_starttls_upgrades_then_rereads_capabilities(
    tls_server_context: ssl.SSLContext, ca_file: str
) -> None:
    """STARTTLS negotiates TLS before LOGIN and reads CAPABILITY again afterwards."""
    async with ScriptedIMAP({"INBOX": [message(1)]}, tls_context=tls_server_context) as server:
        mailbox = await opened(server, tls="starttls", ca_file=ca_file)
        assert mailbox.tls_version is not None
        assert mailbox.tls_version.startswith("TLS")
        assert len(await mailbox.inventory()) == 1
        await mailbox.close()
    names = [c.split(" ")[1] for c in server.commands]
    assert names.index("STARTTLS") < names.index("LOGIN")
    assert "CAPABILITY" in names[names.index("STARTTLS") :]


async def test_implicit_tls(tls_server_context: ssl.SSLContext, ca_file: str) -> None:
    """Implicit TLS verifies the certificate against ca_file and works end to end."""
    async with ScriptedIMAP(
        {"INBOX": [message(1)]}, tls_context=tls_server_context, implicit_tls=True
    ) as server:
        mailbox = await opened(server, tls="implicit", ca_file=ca_file)
        assert mailbox.tls_version is not None
        [item] = await collect(mailbox, keys([1]))
        assert isinstance(item, RetrievedMessage)
        await mailbox.close()


async def test_implicit_tls_with_untrusted_certificate_fails(tls_server_context: ssl.SSLContext) -> None:
    """Verification is always on: a certificate from an unknown CA is a ConnectError."""
    async with ScriptedIMAP(tls_context=tls_server_context, implicit_tls=True) as server:
        mailbox = IMAPMailbox(settings(server, tls="implicit"))
        with pytest.raises(ConnectError, match="certificate"):
            await mailbox.open()
        await mailbox.abort()


async def test_starttls_missing_never_sends_password_in_clear(inbox: ScriptedIMAP, ca_file: str) -> None:
    """A server not offering STARTTLS gets no LOGIN: ProtocolError."""
    mailbox = IMAPMailbox(settings(inbox, tls="starttls", ca_file=ca_file))
    with pytest.raises(ProtocolError, match="STARTTLS"):
        await mailbox.open()
    assert inbox.commands_named("LOGIN") == []
    await mailbox.abort()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("NO [UNAVAILABLE] not now", ThrottledError),
        ("BAD no", ProtocolError),
        ("NO TLS broken", ProtocolError),
    ],
)
async def test_starttls_refused(
    tls_server_context: ssl.SSLContext, ca_file: str, reply: str, error: type[Exception]
) -> None:
    """STARTTLS answered NO or BAD stops before LOGIN."""
    async with ScriptedIMAP(tls_context=tls_server_context) as server:

        async def refuse(session: Session, tag: str, args: str) -> None:
            await session.send(f"{tag} {reply}\r\n".encode())

        server.script["STARTTLS"] = refuse
        mailbox = IMAPMailbox(settings(server, tls="starttls", ca_file=ca_file))
        with pytest.raises(error):
            await mailbox.open()
        assert server.commands_named("LOGIN") == []
        await mailbox.abort()


async def test_starttls_plaintext_injection_is_refused(
    tls_server_context: ssl.SSLContext, ca_file: str
) -> None:
    """Octets after the STARTTLS OK, before the handshake, are a ProtocolError (response injection)."""
    async with ScriptedIMAP(tls_context=tls_server_context) as server:

        async def inject(session: Session, tag: str, args: str) -> None:
            await session.send(f"{tag} OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=".encode())

        server.script["STARTTLS"] = inject
        mailbox = IMAPMailbox(settings(server, tls="starttls", ca_file=ca_file))
        with pytest.raises(ProtocolError, match="STARTTLS"):
            await mailbox.open()
        await mailbox.abort()


# ------------------------------------------------------------------------------------ names, inventory


async def test_mailbox_names_are_encoded_and_quoted() -> None:
    """Non-ASCII, spaces and quotes in mailbox names go out as quoted modified UTF-7; keys keep Unicode."""
    wire_names = {"Entw&APw-rfe 2026": [message(1)], 'Say "Hi"': [message(2), message(3)], "INBOX": []}
    async with ScriptedIMAP(wire_names) as server:
        mailbox = IMAPMailbox(settings(server), ["Entwürfe 2026", 'Say "Hi"', "INBOX"])
        await mailbox.open()
        entries = await mailbox.inventory()
        await mailbox.close()
    assert [(e.key.mailbox, e.key.uid) for e in entries] == [  # type: ignore[union-attr]
        ("Entwürfe 2026", 1),
        ('Say "Hi"', 1),
        ('Say "Hi"', 2),
    ]
    assert server.commands_named("SELECT") == [
        'SELECT "Entw&APw-rfe 2026"',
        'SELECT "Say \\"Hi\\""',
        'SELECT "INBOX"',
    ]
    # sent with each SELECT in one round trip (the empty INBOX's costs octets, not a round trip)
    assert len(server.commands_named("UID SEARCH")) == 3
    assert all(e.size_octets is None for e in entries)


async def test_missing_mailbox_in_inventory_is_skipped_and_reported(inbox: ScriptedIMAP) -> None:
    """A configured mailbox the server does not have ([NONEXISTENT]) is skipped and reported, not fatal
    (issue 4: one missing mailbox must not stop the others); its keys are not covered. When no
    mailbox at all can be selected, the inventory fails."""
    mailbox = IMAPMailbox(settings(inbox), ["INBOX", "Archiv"])
    await mailbox.open()
    entries = await mailbox.inventory()
    assert [e.key.uid for e in entries] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert list(mailbox.mailbox_states) == ["INBOX"]
    assert "NONEXISTENT" in mailbox.mailbox_failures["Archiv"]
    assert mailbox.covers(IMAPKey("INBOX", 1234, 99))
    assert not mailbox.covers(IMAPKey("Archiv", 1234, 1))
    await mailbox.close()

    only_missing = IMAPMailbox(settings(inbox), ["Archiv"])
    await only_missing.open()
    with pytest.raises(ProtocolError, match="NONEXISTENT"):
        await only_missing.inventory()
    await only_missing.close()


def test_constructor_validates_and_quiets_library_logger() -> None:
    """Bad names are refused; aioimaplib's logger is held at WARNING."""
    logging.getLogger("aioimaplib").setLevel(logging.DEBUG)
    base = ServerSettings("a", "h", 1, "none", None, "u", Secret("p"), 1.0)
    IMAPMailbox(base)
    assert logging.getLogger("aioimaplib").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aioimaplib.aioimaplib").getEffectiveLevel() == logging.WARNING
    for bad in ([], "INBOX", ["x\ud800"]):
        with pytest.raises(ValueError):  # noqa: PT011
            IMAPMailbox(base, bad)


# ------------------------------------------------------------------------------------ retrieve


async def test_retrieve_uses_peek_and_yields_in_key_order(inbox: ScriptedIMAP) -> None:
    """BODY.PEEK[] only, no STORE, no size pass; results follow the order of the keys, duplicates once;
    keys out of UID order are fetched in ascending runs (one streaming FETCH each)."""
    mailbox = await opened(inbox)
    wanted = keys([4, 2, 5, 2, 1])
    items = await collect(mailbox, wanted)
    await mailbox.close()
    assert [item.key.uid for item in items] == [4, 2, 5, 1]  # type: ignore[union-attr]
    assert all(isinstance(item, RetrievedMessage) for item in items)
    assert items[0].raw == message(4)  # type: ignore[union-attr]
    fetches = inbox.commands_named("UID FETCH")
    assert fetches == [
        "UID FETCH 4 (UID FLAGS INTERNALDATE BODY.PEEK[])",
        "UID FETCH 2,5 (UID FLAGS INTERNALDATE BODY.PEEK[])",
        "UID FETCH 1 (UID FLAGS INTERNALDATE BODY.PEEK[])",
    ]
    assert inbox.commands_named("UID STORE") == []


async def test_streaming_retrieve_sends_one_fetch_for_a_thousand_messages() -> None:
    """1,000 messages in one mailbox: a single UID FETCH 1:1000, no RFC822.SIZE pass, all in order."""
    raws = [message(i) for i in range(1, 1001)]
    raws[10] = message(11, size=5000)
    async with ScriptedIMAP({"INBOX": raws}) as server:
        mailbox = await opened(server)
        items = await collect(mailbox, keys(range(1, 1001)))
        await mailbox.close()
    assert [item.key.uid for item in items] == list(range(1, 1001))  # type: ignore[union-attr]
    assert [item.raw for item in items] == raws  # type: ignore[union-attr]
    assert server.commands_named("UID FETCH") == ["UID FETCH 1:1000 (UID FLAGS INTERNALDATE BODY.PEEK[])"]


async def test_size_pass_is_chunked_and_retrieve_needs_none() -> None:
    """1,000 messages: sizes() asks in commands of at most 400 UIDs; retrieve() then sends one
    streaming body FETCH and no size pass of its own."""
    raws = [message(i) for i in range(1, 1001)]
    raws[10] = message(11, size=5000)
    async with ScriptedIMAP({"INBOX": raws}) as server:
        mailbox = await opened(server)
        await mailbox.inventory()
        sizes = await mailbox.sizes(keys(range(1, 1001)))
        items = await collect(mailbox, keys(range(1, 1001)))
        await mailbox.close()
    assert sizes[keys([11])[0]] == len(raws[10])
    assert len(sizes) == 1000
    assert [item.key.uid for item in items] == list(range(1, 1001))  # type: ignore[union-attr]
    assert all(isinstance(item, RetrievedMessage) for item in items)
    assert server.commands_named("UID FETCH") == [
        "UID FETCH 1:400 (RFC822.SIZE)",
        "UID FETCH 401:800 (RFC822.SIZE)",
        "UID FETCH 801:1000 (RFC822.SIZE)",
        "UID FETCH 1:1000 (UID FLAGS INTERNALDATE BODY.PEEK[])",
    ]
    assert MAX_UIDS_PER_COMMAND == 400


async def test_retrieve_odd_fetch_shapes(inbox: ScriptedIMAP) -> None:
    """UID after the literal, items reversed, NIL body, a vanished UID, EXISTS/EXPUNGE and FLAGS pushes."""

    def writer(seq: int, msg: ScriptedMessage, items: str) -> bytes:
        if "BODY" not in items.upper():
            return default_fetch_writer(seq, msg, items)
        if msg.uid == 1:  # body first, UID last, extra untagged responses around it
            return (
                b"* 9 EXISTS\r\n* %d FETCH (BODY[] {%d}\r\n" % (seq, len(msg.raw))
                + msg.raw
                + b' INTERNALDATE "17-Jul-1996 02:44:25 -0700" FLAGS (\\Seen) UID 1)\r\n* 4 EXPUNGE\r\n'
            )
        if msg.uid == 2:  # NIL body
            return (
                b'* %d FETCH (UID 2 FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] NIL)\r\n' % seq
            )
        if msg.uid == 3:  # split over two responses plus an unsolicited flag change of another message
            return (
                b"* %d FETCH (FLAGS (\\Flagged) UID 3)\r\n* 5 FETCH (FLAGS (\\Deleted))\r\n" % seq
                + b'* %d FETCH (INTERNALDATE "01-Jan-2026 00:00:00 +0100" UID 3 BODY[] {%d}\r\n'
                % (seq, len(msg.raw))
                + msg.raw
                + b")\r\n"
            )
        return b""  # UID 4: vanished between the size pass and the body fetch

    inbox.fetch_writer = writer
    mailbox = await opened(inbox)
    items = await collect(mailbox, keys([1, 2, 3, 4]))
    await mailbox.close()
    first, second, third, fourth = items
    assert isinstance(first, RetrievedMessage)
    assert first.raw == message(1)
    assert first.flags == {"\\Seen"}
    assert first.internaldate is not None
    assert first.internaldate.isoformat() == "1996-07-17T09:44:25+00:00"
    assert isinstance(second, RetrievalFailure)
    assert "NIL" in second.reason
    assert isinstance(third, RetrievedMessage)
    assert third.flags == {"\\Flagged"}
    assert third.raw == message(3)
    assert isinstance(fourth, RetrievalFailure)
    assert "not returned" in fourth.reason


async def test_retrieve_unknown_uids_and_stale_uidvalidity(inbox: ScriptedIMAP) -> None:
    """UIDs the server lacks and keys from an older UIDVALIDITY fail individually; the rest arrive."""
    mailbox = await opened(inbox)
    wanted = [*keys([1, 99]), IMAPKey("INBOX", 1, 2), *keys([3])]
    items = await collect(mailbox, wanted)
    await mailbox.close()
    assert [type(item).__name__ for item in items] == [
        "RetrievedMessage",
        "RetrievalFailure",
        "RetrievalFailure",
        "RetrievedMessage",
    ]
    assert "not returned (OK" in items[1].reason  # type: ignore[union-attr]
    assert "UIDVALIDITY" in items[2].reason  # type: ignore[union-attr]
    assert inbox.commands_named("UID FETCH") == [  # 99 before 3: two ascending runs
        "UID FETCH 1,99 (UID FLAGS INTERNALDATE BODY.PEEK[])",
        "UID FETCH 3 (UID FLAGS INTERNALDATE BODY.PEEK[])",
    ]


async def test_retrieve_vanished_mailbox_fails_its_keys(inbox: ScriptedIMAP) -> None:
    """Keys of a mailbox that can no longer be selected fail; other mailboxes still work."""
    mailbox = await opened(inbox)
    items = await collect(mailbox, [*keys([1], mailbox="Gone"), *keys([2])])
    await mailbox.close()
    assert isinstance(items[0], RetrievalFailure)
    assert "NONEXISTENT" in items[0].reason
    assert isinstance(items[1], RetrievedMessage)


async def test_retrieve_refuses_pop3_keys(inbox: ScriptedIMAP) -> None:
    """A POP3 key is a programming error."""
    mailbox = await opened(inbox)
    with pytest.raises(TypeError):
        await collect(mailbox, [POP3Key("x")])  # type: ignore[list-item]
    await mailbox.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("NO [UNAVAILABLE] slow down", ThrottledError),
        ("BAD what", ProtocolError),
        ("NO [SERVERBUG] x", TransientError),
    ],
)
async def test_fetch_refused_as_a_whole(inbox: ScriptedIMAP, reply: str, error: type[Exception]) -> None:
    """A throttling NO, SERVERBUG or BAD to UID FETCH raises; nothing half-done is yielded."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} {reply}\r\n".encode())

    inbox.script["UID FETCH"] = refuse
    mailbox = await opened(inbox)
    with pytest.raises(error):
        await collect(mailbox, keys([1, 2]))
    await mailbox.close()


async def test_fetch_plain_no_keeps_partial_data(inbox: ScriptedIMAP) -> None:
    """NO without a throttling code: what came is yielded, the rest fails with the server's reason."""

    async def partial(session: Session, tag: str, args: str) -> None:
        if "BODY" not in args:
            await session.default(tag, "UID FETCH", args)
            return
        msg = inbox.mailboxes["INBOX"].messages[0]
        await session.send(
            default_fetch_writer(1, msg, args) + f"{tag} NO Some messages could not be FETCHed\r\n".encode()
        )

    inbox.script["UID FETCH"] = partial
    mailbox = await opened(inbox)
    items = await collect(mailbox, keys([1, 2]))
    await mailbox.close()
    assert isinstance(items[0], RetrievedMessage)
    assert isinstance(items[1], RetrievalFailure)
    assert "could not be FETCHed" in items[1].reason


# ------------------------------------------------------------------------------------ delete


async def test_delete_stores_and_uid_expunges_in_chunks() -> None:
    """900 UIDs: STORE +FLAGS.SILENT (\\Deleted) and UID EXPUNGE, at most 400 UIDs each, only those UIDs."""
    async with ScriptedIMAP({"INBOX": [message(i) for i in range(1, 1001)]}) as server:
        server.mailboxes["INBOX"].messages[949].flags.add("\\Deleted")  # another client's; must stay
        mailbox = await opened(server)
        await mailbox.delete(keys(range(1, 901)))
        remaining = await mailbox.inventory()
        await mailbox.close()
    assert server.commands_named("UID STORE") == [
        "UID STORE 1:400 +FLAGS.SILENT (\\Deleted)",
        "UID STORE 401:800 +FLAGS.SILENT (\\Deleted)",
        "UID STORE 801:900 +FLAGS.SILENT (\\Deleted)",
    ]
    assert server.commands_named("UID EXPUNGE") == [
        "UID EXPUNGE 1:400",
        "UID EXPUNGE 401:800",
        "UID EXPUNGE 801:900",
    ]
    assert sorted(server.expunged) == list(range(1, 901))
    assert [e.key.uid for e in remaining] == list(range(901, 1001))  # type: ignore[union-attr]


async def test_delete_without_uidplus_skips_a_mailbox_with_foreign_deleted_messages(
    inbox: ScriptedIMAP,
) -> None:
    """Without UIDPLUS, a mailbox where another message is \\Deleted is left alone: a plain EXPUNGE
    would remove it too. Nothing is flagged and the keys are not reported as deleted."""
    inbox.post_login_capabilities = "IMAP4rev1 IDLE"
    inbox.mailboxes["INBOX"].messages[4].flags.add("\\Deleted")
    mailbox = await opened(inbox)
    with capture_logs() as logs:
        assert await mailbox.delete(keys([1])) == []
    assert inbox.commands_named("UID STORE") == []
    assert inbox.commands_named("EXPUNGE") == []
    assert [e["event"] for e in logs] == ["imap.expunge-skipped"]
    await mailbox.close()


async def test_delete_with_changed_uidvalidity_refuses(inbox: ScriptedIMAP) -> None:
    """Keys from an older UIDVALIDITY may name other messages now: nothing in that mailbox is deleted."""
    mailbox = await opened(inbox)
    with pytest.raises(ProtocolError, match="UIDVALIDITY"):
        await mailbox.delete([*keys([1]), IMAPKey("INBOX", 1, 2)])
    assert inbox.commands_named("UID STORE") == []
    await mailbox.delete([])
    await mailbox.close()


# ------------------------------------------------------------------------------------ failures


async def hang(session: Session, tag: str, args: str) -> None:
    """Never answer."""
    await session.hang()


async def test_silent_server_times_out_and_session_is_discarded(inbox: ScriptedIMAP) -> None:
    """No answer for timeout_s: NetworkTimeout; afterwards every call raises TransientError. (The
    SELECT: since session 15 UID SEARCH has the longer SLOW_COMMAND_TIMEOUTS deadline,
    tests/faults/test_imap_slow_commands.py.)"""
    inbox.script["SELECT"] = hang
    mailbox = await opened(inbox, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(NetworkTimeout):
        await mailbox.inventory()
    assert 0.4 < time.monotonic() - started < 3
    with pytest.raises(TransientError, match="discarded"):
        await mailbox.inventory()
    with pytest.raises(TransientError):
        await mailbox.close()
    await mailbox.abort()
    await mailbox.abort()


async def test_slow_but_steady_fetch_does_not_time_out(inbox: ScriptedIMAP) -> None:
    """timeout_s limits silence, not duration: a FETCH trickling for longer than timeout_s succeeds."""

    async def trickle(session: Session, tag: str, args: str) -> None:
        if "BODY" not in args:
            await session.default(tag, "UID FETCH", args)
            return
        data = b"".join(
            default_fetch_writer(i, m, args) for i, m in enumerate(inbox.mailboxes["INBOX"].messages, 1)
        )
        for start in range(0, len(data), 40):
            await session.send(data[start : start + 40])
            await asyncio.sleep(0.1)
        await session.send(f"{tag} OK done\r\n".encode())

    inbox.script["UID FETCH"] = trickle
    mailbox = await opened(inbox, timeout_s=0.5)
    started = time.monotonic()
    items = await collect(mailbox, keys(range(1, 6)))
    assert time.monotonic() - started > 0.5
    assert all(isinstance(item, RetrievedMessage) for item in items)
    await mailbox.close()


@pytest.mark.parametrize("when", ["before any response", "mid-literal"])
async def test_connection_dropped_mid_command_fails_promptly(inbox: ScriptedIMAP, when: str) -> None:
    """The server hangs up during UID FETCH: ConnectError at once, not after timeout_s (30 s here)."""

    async def drop(session: Session, tag: str, args: str) -> None:
        if "BODY" not in args:
            await session.default(tag, "UID FETCH", args)
            return
        if when == "mid-literal":
            msg = inbox.mailboxes["INBOX"].messages[0]
            await session.send(default_fetch_writer(1, msg, args)[:60])
            await asyncio.sleep(0.05)
        session.drop()

    inbox.script["UID FETCH"] = drop
    mailbox = await opened(inbox, timeout_s=30)
    started = time.monotonic()
    with pytest.raises(ConnectError, match="connection lost"):
        await collect(mailbox, keys([1, 2]))
    assert time.monotonic() - started < 5
    with pytest.raises(TransientError):
        await mailbox.inventory()
    await mailbox.abort()


async def test_cancelled_retrieve_discards_the_session(inbox: ScriptedIMAP) -> None:
    """Cancelling mid-FETCH propagates CancelledError; the session is unusable afterwards."""
    inbox.script["SELECT"] = hang
    mailbox = await opened(inbox, timeout_s=30)
    task = asyncio.ensure_future(collect(mailbox, keys([1])))
    await asyncio.sleep(0.2)
    await cancel_and_expect_unusable(task, mailbox)


async def flood(session: Session, tag: str, args: str) -> None:
    """Answer UID SEARCH with 3,000 untagged lines in one write (more than the stock library survives)."""
    lines = b"".join(b"* %d EXISTS\r\n" % n for n in range(1, 3001))
    await session.send(lines + f"* SEARCH 1 2 3 4 5\r\n{tag} OK done\r\n".encode())


async def test_fast_protocol_survives_long_responses(inbox: ScriptedIMAP) -> None:
    """The patched protocol loops instead of recursing: the same 3,000-line response is fine."""
    inbox.script["UID SEARCH"] = flood
    mailbox = await opened(inbox)
    assert [e.key.uid for e in await mailbox.inventory()] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    await mailbox.close()


# ------------------------------------------------------------------------------------ close, alerts


async def test_close_sends_logout_and_accepts_hangup_after_bye(inbox: ScriptedIMAP) -> None:
    """LOGOUT is sent; a server that closes right after BYE (no tagged OK) still counts as closed."""

    async def bye_only(session: Session, tag: str, args: str) -> None:
        await session.send(b"* BYE see you\r\n")
        session.drop()

    inbox.script["LOGOUT"] = bye_only
    mailbox = await opened(inbox)
    await mailbox.close()
    assert inbox.commands_named("LOGOUT") == ["LOGOUT"]
    with pytest.raises(TransientError):
        await mailbox.inventory()
    await mailbox.abort()


async def test_unopened_mailbox_close_and_abort_are_quiet(inbox: ScriptedIMAP) -> None:
    """close() and abort() before open() do nothing; other calls raise TransientError."""
    mailbox = IMAPMailbox(settings(inbox))
    await mailbox.close()
    await mailbox.abort()
    with pytest.raises(TransientError, match=r"discarded|not open"):
        await mailbox.inventory()


async def test_alert_is_logged(inbox: ScriptedIMAP) -> None:
    """An [ALERT] in a completion is logged for the operator (RFC 9051 section 7.1)."""

    async def alert(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} OK [ALERT] Password expires in 3 days\r\n".encode())

    inbox.script["LOGIN"] = alert
    with capture_logs() as logs:
        mailbox = await opened(inbox)
        await mailbox.close()
    [event] = [e for e in logs if e["event"] == "imap.alert"]
    assert event["text"] == "Password expires in 3 days"
    assert event["account"] == "acct"
    assert not any(re.search(re.escape(PASSWORD), str(e)) for e in logs)
