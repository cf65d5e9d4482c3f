"""IDLE, LIST, deletion without UIDPLUS and UIDVALIDITY recovery against a scripted IMAP server.

For what Dovecot will not do on request: ``* BYE`` in the middle of IDLE, a server that goes silent
during IDLE or before its ``+`` continuation, a hang-up before the continuation (aioimaplib issue
#110: its own ``idle_start`` hangs forever then), another client flagging messages ``\\Deleted``
between two commands, shuffled UIDs under a new UIDVALIDITY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import ConnectError, NetworkTimeout, ProtocolError
from maild.fetch.cycle import fetch_cycle
from maild.model import IMAPKey, ServerSettings
from maild.protocols.imap.idle import IMAPIdleSession
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from maild.service.idle import IdleWatcher
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMailbox, ScriptedMessage, Session
from tests.support.accounts import imap_account
from tests.support.waiting import eventually

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TIMEOUT_S = 0.5


def message(n: int, *, message_id: bool = True) -> bytes:
    """A small distinct CRLF message, with or without a Message-ID."""
    head = b"Subject: message %d\r\n" % n
    if message_id:
        head += b"Message-ID: <%d@scripted.test>\r\n" % n
    return head + b"\r\nbody %d\r\n" % n


def server_settings(server: ScriptedIMAP, timeout_s: float = TIMEOUT_S) -> ServerSettings:
    """Plaintext loopback settings for ``server``."""
    return ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), timeout_s)


def scripted_account(server: ScriptedIMAP, **overrides: object) -> AccountConfig:
    """An IMAP account on ``server`` with short timeouts (IDLE re-issued every 30 s unless overridden)."""
    values: dict[str, object] = {"timeout_s": TIMEOUT_S, "idle_restart_s": 30.0, **overrides}
    return imap_account("acct", host=server.host, port=server.port, username="anna", **values)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server with three messages in INBOX, advertising IDLE."""
    async with ScriptedIMAP({"INBOX": [message(n) for n in range(1, 4)]}) as scripted:
        yield scripted


async def idling_session(server: ScriptedIMAP) -> IMAPIdleSession:
    """An IMAPIdleSession that has selected INBOX and entered IDLE."""
    session = IMAPIdleSession(server_settings(server))
    await session.open()
    await session.select_mailbox()
    await session.idle_start()
    await eventually(lambda: any(s.idling for s in server.sessions), "the server to see IDLE")
    return session


# ------------------------------------------------------------------------------------ the session


async def test_push_during_idle_then_done_and_noop(server: ScriptedIMAP) -> None:
    """EXISTS and RECENT pushed during IDLE arrive as a change; DONE completes; NOOP answers."""
    session = await idling_session(server)
    assert session.idling
    assert (await session.idle_wait(0.05)).changed is False
    assert await server.push(b"* 4 EXISTS\r\n* 1 RECENT\r\n") == 1

    events = await session.idle_wait(2.0)

    assert (events.exists, events.recent, events.changed) == (4, 1, True)
    assert (await session.idle_done()).changed is False
    assert server.dones == 1
    assert (await session.noop()).changed is False
    await session.close()
    assert server.commands_named("LOGOUT")


@pytest.mark.parametrize("close_after_bye", [False, True])
async def test_bye_during_idle_is_loss_at_once(server: ScriptedIMAP, close_after_bye: bool) -> None:
    """* BYE during IDLE is a ConnectError at once, whether or not the server closes the socket after it."""
    session = await idling_session(server)
    await server.push(b"* BYE Server shutting down\r\n")
    if close_after_bye:
        server.sessions[-1].writer.close()
    started = time.monotonic()

    with pytest.raises(ConnectError, match="BYE Server shutting down"):
        await session.idle_wait(10.0)

    assert time.monotonic() - started < 1.0
    assert not session.idling
    await session.abort()


async def test_reset_during_idle_is_loss_at_once(server: ScriptedIMAP) -> None:
    """A reset (the server process died) during IDLE is a ConnectError at once, not after the wait."""
    session = await idling_session(server)
    server.sessions[-1].drop()
    started = time.monotonic()
    with pytest.raises(ConnectError, match="connection lost"):
        await session.idle_wait(10.0)
    assert time.monotonic() - started < 1.0
    await session.abort()


async def test_silent_stall_during_idle_fails_at_done(server: ScriptedIMAP) -> None:
    """A server that stops answering during IDLE: DONE gets no completion, NetworkTimeout after timeout_s."""

    async def stall_after_continuation(session: Session, tag: str, args: str) -> None:
        await session.send(b"+ idling\r\n")
        session.idling = True
        await session.hang()

    server.script["IDLE"] = stall_after_continuation
    session = await idling_session(server)
    assert (await session.idle_wait(0.1)).changed is False
    started = time.monotonic()
    with pytest.raises(NetworkTimeout, match="DONE"):
        await session.idle_done()
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 1.0
    await session.abort()


async def test_server_closing_before_continuation_fails_promptly(server: ScriptedIMAP) -> None:
    """The server hangs up before its "+": ConnectError at once (aioimaplib's idle_start would hang)."""

    async def close_at_idle(session: Session, tag: str, args: str) -> None:
        session.writer.close()

    server.script["IDLE"] = close_at_idle
    session = IMAPIdleSession(server_settings(server, timeout_s=30.0))
    await session.open()
    await session.select_mailbox()
    started = time.monotonic()
    with pytest.raises(ConnectError, match="before the server's continuation"):
        await session.idle_start()
    assert time.monotonic() - started < 1.0
    await session.abort()


async def test_silence_before_continuation_times_out(server: ScriptedIMAP) -> None:
    """The server never sends "+": NetworkTimeout after timeout_s; the session is discarded."""

    async def hang(session: Session, tag: str, args: str) -> None:
        await session.hang()

    server.script["IDLE"] = hang
    session = IMAPIdleSession(server_settings(server))
    await session.open()
    await session.select_mailbox()
    with pytest.raises(NetworkTimeout, match="no continuation"):
        await session.idle_start()
    with pytest.raises(Exception, match="discarded"):
        await session.noop()
    await session.abort()


@pytest.mark.parametrize("reply", ["NO [UNAVAILABLE] not now", "BAD IDLE not allowed"])
async def test_idle_refused(server: ScriptedIMAP, reply: str) -> None:
    """IDLE answered NO or BAD (tagged) instead of "+" is an error naming the reply."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} {reply}\r\n".encode())

    server.script["IDLE"] = refuse
    session = IMAPIdleSession(server_settings(server))
    await session.open()
    await session.select_mailbox()
    with pytest.raises(Exception, match=reply.split()[0]):
        await session.idle_start()
    await session.abort()


async def test_keepalive_turns_on_tcp_probes(server: ScriptedIMAP) -> None:
    """keepalive() sets SO_KEEPALIVE and the probe timing on the session's socket."""
    import socket

    session = IMAPIdleSession(server_settings(server))
    await session.open()
    session.keepalive(60, 15, 4)
    sock = session.connection.client.extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 15
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    await session.close()


async def test_server_without_idle(server: ScriptedIMAP) -> None:
    """No IDLE capability: supports_idle is False and idle_start refuses before sending anything."""
    server.post_login_capabilities = "IMAP4rev1 UIDPLUS"
    session = IMAPIdleSession(server_settings(server))
    await session.open()
    assert not session.supports_idle
    await session.select_mailbox()
    with pytest.raises(ProtocolError, match="lacks IDLE"):
        await session.idle_start()
    assert not server.commands_named("IDLE")
    await session.abort()


# ------------------------------------------------------------------------------------ the watcher


def make_watcher(made: list[IdleWatcher], account: AccountConfig) -> IdleWatcher:
    watcher = IdleWatcher(account, reconnect_base_s=0.05, reconnect_cap_s=0.2, clock=lambda: NOW)
    made.append(watcher)
    return watcher


async def test_watcher_push_ends_wait(server: ScriptedIMAP, watchers: list[IdleWatcher]) -> None:
    """A push ends wait() with "push" at once; without one, wait() times out; last_push is recorded."""
    watcher = make_watcher(watchers, scripted_account(server))
    watcher.start()
    await eventually(lambda: watcher.mode == "idle", 'mode "idle"')
    assert await watcher.wait(0.5) == "push"  # catch-up: no store to say nothing changed
    assert await watcher.wait(0.05) == "timeout"

    await server.push(b"* 4 EXISTS\r\n")
    started = time.monotonic()
    assert await watcher.wait(5.0) == "push"
    assert time.monotonic() - started < 1.0
    assert watcher.last_push == NOW

    interrupt = asyncio.Event()
    interrupt.set()
    assert await watcher.wait(5.0, interrupt=interrupt) == "interrupted"


async def test_watcher_bye_is_lost_then_reconnects(server: ScriptedIMAP, watchers: list[IdleWatcher]) -> None:
    """* BYE during IDLE: wait() says "lost" at once, mode "reconnecting", then IDLE again on a new session."""
    watcher = make_watcher(watchers, scripted_account(server))
    watcher.start()
    await eventually(lambda: watcher.mode == "idle", 'mode "idle"')
    assert await watcher.wait(0.5) == "push"
    with capture_logs() as logs:
        await server.push(b"* BYE going down\r\n")
        assert await watcher.wait(5.0) == "lost"
        assert watcher.mode == "reconnecting"
        assert "BYE going down" in (watcher.last_error or "")
        await eventually(lambda: watcher.mode == "idle", 'mode "idle" again')
    assert await watcher.wait(0.5) == "push"  # after a reconnection: catch up
    assert len(server.commands_named("LOGIN")) == 2
    assert [e["event"] for e in logs if e["event"].startswith("imap.idle-")][:2] == [
        "imap.idle-lost",
        "imap.idle-started",
    ]


async def test_watcher_detects_a_stalled_server_at_the_restart(
    server: ScriptedIMAP, watchers: list[IdleWatcher]
) -> None:
    """The server goes silent during IDLE: at the next re-issue DONE gets no answer: "lost" within restart + timeout."""
    state = {"stall": True}

    async def idle(session: Session, tag: str, args: str) -> None:
        if state["stall"]:
            state["stall"] = False
            await session.send(b"+ idling\r\n")
            session.idling = True
            await session.hang()
        else:
            await session.idle(tag)

    server.script["IDLE"] = idle
    watcher = make_watcher(watchers, scripted_account(server, idle_restart_s=0.3))
    watcher.start()
    await eventually(lambda: watcher.mode == "idle", 'mode "idle"')
    started = time.monotonic()
    while (outcome := await watcher.wait(5.0)) == "push":
        pass
    assert outcome == "lost"
    assert time.monotonic() - started < 0.3 + TIMEOUT_S + 1.0
    assert "DONE" in (watcher.last_error or "")
    await eventually(lambda: watcher.mode == "idle", "a new IDLE session")


async def test_watcher_reissues_idle_before_idle_restart(
    server: ScriptedIMAP, watchers: list[IdleWatcher]
) -> None:
    """IDLE is ended (DONE), checked with NOOP and issued again every idle_restart, on the same session."""
    watcher = make_watcher(watchers, scripted_account(server, idle_restart_s=0.1))
    watcher.start()
    # each round's NOOP follows its DONE: wait for both, or a loaded machine sees the third DONE first
    await eventually(
        lambda: server.dones >= 3 and len(server.commands_named("NOOP")) >= 3, "three IDLE rounds"
    )
    assert len(server.commands_named("IDLE")) >= 3
    assert len(server.commands_named("LOGIN")) == 1
    assert watcher.mode == "idle"


async def test_watcher_survives_hangup_before_continuation(
    server: ScriptedIMAP, watchers: list[IdleWatcher]
) -> None:
    """A hang-up before "+" (the first two times): the watcher retries with backoff and then idles."""
    hangups = {"left": 2}

    async def idle(session: Session, tag: str, args: str) -> None:
        if hangups["left"]:
            hangups["left"] -= 1
            session.writer.close()
        else:
            await session.idle(tag)

    server.script["IDLE"] = idle
    watcher = make_watcher(watchers, scripted_account(server))
    watcher.start()
    await eventually(lambda: watcher.mode == "idle", 'mode "idle" after two hang-ups')
    assert len(server.commands_named("LOGIN")) == 3
    assert await watcher.wait(0.5) == "push"


async def test_watcher_without_idle_capability_polls(
    server: ScriptedIMAP, watchers: list[IdleWatcher]
) -> None:
    """A server without IDLE: mode "polling", the watcher ends and is not started again."""
    server.post_login_capabilities = "IMAP4rev1 UIDPLUS"
    watcher = make_watcher(watchers, scripted_account(server))
    watcher.start()
    await eventually(lambda: not watcher.running, "the watcher to give up")
    assert watcher.mode == "polling"
    watcher.start()
    assert not watcher.running
    assert len(server.commands_named("LOGIN")) == 1
    assert await watcher.wait(0.05) == "timeout"


# ------------------------------------------------------------------------------------ deletion


async def test_delete_without_uidplus_uses_expunge_when_nothing_else_is_deleted(server: ScriptedIMAP) -> None:
    """Without UIDPLUS and no other \\Deleted message: UID SEARCH DELETED, UID STORE, SEARCH again, EXPUNGE."""
    server.post_login_capabilities = "IMAP4rev1 IDLE"
    mailbox = IMAPMailbox(server_settings(server))
    await mailbox.open()
    keys = [IMAPKey("INBOX", 1234, uid) for uid in (1, 2)]

    assert await mailbox.delete(keys) == keys

    await mailbox.close()
    assert sorted(server.expunged) == [1, 2]
    assert [m.uid for m in server.mailboxes["INBOX"].messages] == [3]
    sent = [c.split(" ", 1)[1] for c in server.commands]
    assert [c for c in sent if c.startswith(("UID SEARCH", "UID STORE", "EXPUNGE", "UID EXPUNGE"))] == [
        "UID SEARCH ALL",  # the inventory's listing, sent with the sign-in
        "UID SEARCH DELETED",
        "UID STORE 1:2 +FLAGS.SILENT (\\Deleted)",
        "UID SEARCH DELETED",
        "EXPUNGE",
    ]


async def test_delete_without_uidplus_backs_out_when_another_client_flags_meanwhile(
    server: ScriptedIMAP,
) -> None:
    """Another client marks a message \\Deleted between maild's STORE and EXPUNGE: maild removes its own flags
    again, expunges nothing, and reports nothing deleted."""
    server.post_login_capabilities = "IMAP4rev1 IDLE"

    async def store_then_other_client(session: Session, tag: str, args: str) -> None:
        await session.default(tag, "UID STORE", args)
        if args.split(" ")[1].startswith("+"):
            server.mailboxes["INBOX"].messages[2].flags.add("\\Deleted")  # the other client

    server.script["UID STORE"] = store_then_other_client
    mailbox = IMAPMailbox(server_settings(server))
    await mailbox.open()
    with capture_logs() as logs:
        assert await mailbox.delete([IMAPKey("INBOX", 1234, 1)]) == []
    await mailbox.close()

    assert server.expunged == []
    assert server.commands_named("EXPUNGE") == []
    flags = [sorted(m.flags) for m in server.mailboxes["INBOX"].messages]
    assert flags == [[], [], ["\\Deleted"]]
    assert [e["event"] for e in logs] == ["imap.expunge-skipped"]


# ------------------------------------------------------------------------------------ LIST


async def test_all_mailboxes_from_list() -> None:
    """list_all: LIST names (quoted, literal, modified UTF-7) are selected unless \\Noselect, \\Trash, \\Junk or excluded."""
    mailboxes = {
        "INBOX": [message(1)],
        "Entw&APw-rfe": [message(2)],
        "Papierkorb": [message(3)],
        "Spam": [message(4)],
        "Newsletter/alt": [message(5)],
        "Kunden": [],
    }
    async with ScriptedIMAP(mailboxes) as server:
        server.mailboxes["Papierkorb"].attributes = "\\HasNoChildren \\Trash"
        server.mailboxes["Spam"].attributes = "\\HasNoChildren \\Junk"
        server.mailboxes["Kunden"].attributes = "\\Noselect \\HasChildren"
        mailbox = IMAPMailbox(server_settings(server), (), list_all=True, exclude=["Newsletter"])
        await mailbox.open()
        entries = await mailbox.inventory()
        await mailbox.close()

    assert [(e.key.mailbox, e.key.uid) for e in entries] == [("INBOX", 1), ("Entwürfe", 1)]  # type: ignore[union-attr]
    assert list(mailbox.mailbox_states) == ["INBOX", "Entwürfe"]
    assert server.commands_named("LIST") == ['LIST "" "*"']
    assert mailbox.covers(IMAPKey("Gelöscht auf dem Server", 1, 1))
    assert not mailbox.covers(IMAPKey("Papierkorb", 1234, 1))
    assert not mailbox.covers(IMAPKey("Newsletter/alt", 1234, 1))


# ------------------------------------------------------------------------------------ UIDVALIDITY


@pytest.fixture
async def store(store: Store) -> Store:
    """The shared open archive, with the account ``acct`` recorded."""
    await store.ensure_account("acct", "Kanzlei Berger", "Anna Berger", "imap", NOW)
    return store


async def count(store: Store, sql: str) -> list[tuple[object, ...]]:
    """Rows of a read query on the archive (tests only)."""
    return [tuple(r) for r in await store._all(sql)]


async def test_new_uidvalidity_with_shuffled_uids_is_matched_by_content(store: Store) -> None:
    """UIDVALIDITY changes and UIDs are reassigned in another order: every message with a unique
    Message-ID is relinked without a body FETCH; one without Message-ID and two sharing one are
    retrieved again and deduplicated by SHA-256; nothing is stored twice."""
    raws = [message(n) for n in range(1, 6)] + [message(6, message_id=False)]
    twin_a = b"Subject: twin a\r\nMessage-ID: <twin@scripted.test>\r\n\r\nsame size A\r\n"
    twin_b = b"Subject: twin b\r\nMessage-ID: <twin@scripted.test>\r\n\r\nsame size B\r\n"
    raws += [twin_a, twin_b]
    async with ScriptedIMAP({"INBOX": raws}, uidvalidity=100) as server:
        account = scripted_account(server)
        first = await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)
        assert first.new_messages == 8
        shuffled = list(reversed(raws))
        server.mailboxes["INBOX"] = ScriptedMailbox(
            200, [ScriptedMessage(raw, 11 + i) for i, raw in enumerate(shuffled)]
        )
        server.commands.clear()
        with capture_logs() as logs:
            second = await fetch_cycle(
                account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW
            )

    assert second.imap is not None
    [change] = second.imap.uidvalidity_changes
    assert (change.old_uidvalidity, change.new_uidvalidity, change.relinked, change.to_retrieve) == (
        100,
        200,
        5,
        3,
    )
    body_fetches = [c for c in server.commands_named("UID FETCH") if "BODY.PEEK[]" in c]
    assert [c.split(" ")[2] for c in body_fetches] == ["11:13"]  # the twins and the one without Message-ID
    assert (second.new_messages, second.new_links) == (0, 3)
    assert await count(store, "SELECT count(*) FROM messages") == [(8,)]
    rows = await count(
        store,
        "SELECT uidvalidity, count(*), count(gone_at), count(DISTINCT message) FROM locations GROUP BY 1",
    )
    assert rows == [(100, 8, 8, 8), (200, 8, 0, 8)]
    pairs = await count(
        store,
        "SELECT a.uid, b.uid FROM locations a JOIN locations b ON a.message = b.message"
        " WHERE a.uidvalidity = 100 AND b.uidvalidity = 200 ORDER BY a.uid",
    )
    assert pairs == [(uid, 19 - uid) for uid in range(1, 9)]  # each message kept its identity
    assert [e["relinked"] for e in logs if e["event"] == "imap.uidvalidity-changed"] == [5]


async def test_uids_reassigned_under_the_same_uidvalidity_cause_no_duplicates(store: Store) -> None:
    """A bridge renumbers messages without changing UIDVALIDITY: they are fetched again, deduplicated by
    SHA-256; the old locations are recorded as gone, the new ones point at the same messages."""
    raws = [message(n) for n in range(1, 4)]
    async with ScriptedIMAP({"INBOX": raws}, uidvalidity=7) as server:
        account = scripted_account(server)
        await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)
        server.mailboxes["INBOX"].messages = [ScriptedMessage(raw, 10 + i) for i, raw in enumerate(raws)]
        second = await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)

    assert second.imap is not None
    assert second.imap.uidvalidity_changes == []
    assert (second.new_messages, second.new_links) == (0, 3)
    assert await count(store, "SELECT count(*) FROM messages") == [(3,)]
    rows = await count(store, "SELECT uid, message, gone_at IS NOT NULL FROM locations ORDER BY uid")
    assert rows == [(1, 1, 1), (2, 2, 1), (3, 3, 1), (10, 1, 0), (11, 2, 0), (12, 3, 0)]


async def test_change_is_noticed_in_an_archive_without_mailbox_records(store: Store) -> None:
    """An archive written before the mailboxes table was filled: locations under another UIDVALIDITY
    alone reveal the change, and the messages are relinked."""
    raws = [message(n) for n in range(1, 3)]
    async with ScriptedIMAP({"INBOX": raws}, uidvalidity=5) as server:
        account = scripted_account(server)
        await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)
        await store._write([("DELETE FROM mailboxes", (), False)])
        server.mailboxes["INBOX"].uidvalidity = 6
        second = await fetch_cycle(account, store, IMAPMailbox(server_settings(server)), clock=lambda: NOW)

    assert second.imap is not None
    [change] = second.imap.uidvalidity_changes
    assert (change.old_uidvalidity, change.new_uidvalidity, change.relinked) == (5, 6, 2)
    assert second.new_links == 0


# ------------------------------------------------------------------------------------ library pins

# sha256 (first 16 hex digits) of inspect.getsource() in aioimaplib 2.0.3, for what the client's IdleRound
# uses beyond the methods tests/faults/test_imap_library.py pins already.
IDLE_PINNED_SOURCES = {
    "IdleCommand.__init__": "68d6b9eaa4b878ef",
    "IdleCommand.append_to_resp": "79ee68d01d0ac785",
    "IdleCommand.flush": "555ec3f234b9cdb4",
    "IMAP4ClientProtocol._continuation": "e43f5b7ad7314a53",
    "IMAP4ClientProtocol._untagged_response": "293b7da830751ce5",
    "IMAP4ClientProtocol.idle_done": "b6c8d5ede5988d38",
    "IMAP4ClientProtocol.wait_for_idle_response": "ab315b24c6f34ba4",
    "IMAP4ClientProtocol._response_done": "69c9091728111730",
    "IMAP4ClientProtocol.simple_command": "3f07dac5b4999b5f",
}


@pytest.mark.parametrize(("name", "digest"), sorted(IDLE_PINNED_SOURCES.items()))
def test_idle_internals_of_the_library_are_unchanged(name: str, digest: str) -> None:
    """The client's IdleRound drives IdleCommand, idle_queue and _idle_event directly: their source is pinned."""
    import hashlib
    import inspect

    import aioimaplib

    owner, attribute = name.split(".")
    source = inspect.getsource(getattr(getattr(aioimaplib, owner), attribute))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, f"aioimaplib changed {name}: re-verify"


IDENTITY_STREAM = (
    b"* 1 FETCH (UID 21 RFC822.SIZE 512 BODY[HEADER.FIELDS (MESSAGE-ID)] {27}\r\n"
    b"Message-ID: <a(1)@test>\r\n\r\n)\r\n"
    b'* 2 FETCH (BODY[HEADER.FIELDS ("MESSAGE-ID")] {2}\r\n\r\n UID 22 RFC822.SIZE 77)\r\n'
    b"* 3 FETCH (UID 23 RFC822.SIZE 9 BODY[HEADER.FIELDS (MESSAGE-ID)] NIL)\r\n"
    b"TAG OK Fetch completed\r\n"
)


@pytest.mark.parametrize("protocol_name", ["_FastProtocol", "stock"])
async def test_identity_fetch_parses_at_every_split(protocol_name: str) -> None:
    """The identity pass's FETCH (size and Message-ID field, literal before or after UID, quoted field
    name, NIL) parses to the same result however the stream is cut."""
    import aioimaplib

    from maild.protocols.imap import client as imap_client
    from maild.protocols.imap import fetch as imap_fetch
    from maild.protocols.imap import scan as imap_module
    from tests.faults.test_imap_library import run_command

    protocol_class = imap_client._FastProtocol if protocol_name != "stock" else aioimaplib.IMAP4ClientProtocol

    def start(protocol: object) -> object:
        return protocol.fetch("21:23", imap_module.IDENTITY_ITEMS, by_uid=True, timeout=None)  # type: ignore[attr-defined]

    length = len(IDENTITY_STREAM.replace(b"TAG", b"XXXX0"))
    for cut in [None, *range(1, length)]:
        response, written = await run_command(
            protocol_class, start, IDENTITY_STREAM, [] if cut is None else [cut]
        )  # type: ignore[arg-type]
        result = imap_fetch.parse_fetch(
            response.lines[:-1], requested=[21, 22, 23], require=("RFC822.SIZE", "BODY[HEADER.FIELDS]")
        )
        found = {uid: (m.size_octets, m.header_fields) for uid, m in result.messages.items()}
        assert found == {21: (512, b"Message-ID: <a(1)@test>\r\n\r\n"), 22: (77, b"\r\n")}, f"cut at {cut}"
        assert result.failures == {23: "BODY[HEADER.FIELDS] is NIL"}, f"cut at {cut}"
    assert b"UID FETCH 21:23 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])" in written
