"""The UID check's commands pipelined (RFC 9051 section 5.5), against a scripted server.

:func:`maild.protocols.imap.scan.check_uids` sends every ``UID FETCH (UID RFC822.SIZE)`` of the size
check and the header fetch of the sample in one write. Dovecot answers every one of them OK; here one
command in the middle is refused, or a header literal is followed by a spurious CRLF, which Dovecot
never does. Round trips are counted by the proxy (``client_turns``), never timed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from maild.errors import ProtocolError
from maild.model import ServerSettings
from maild.protocols.imap import scan
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, ScriptedMessage, Session, default_fetch_writer
from tests.support.proxy import FaultProxy

#: Enough messages for three size commands of :data:`scan.MAX_UIDS_PER_COMMAND` UIDs.
COUNT = 2 * scan.MAX_UIDS_PER_COMMAND + 200


def raw(n: int) -> bytes:
    """Message ``n``: a small header section and body of a size that differs per message."""
    return b"Subject: message %d\r\nMessage-ID: <%d@example.org>\r\n\r\n" % (n, n) + b"x" * n + b"\r\n"


def header(n: int) -> bytes:
    """The header section of message ``n`` with its empty line."""
    return raw(n).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedIMAP]:
    """A scripted server whose INBOX holds :data:`COUNT` messages, UIDs 1 to COUNT."""
    async with ScriptedIMAP({"INBOX": [raw(n) for n in range(1, COUNT + 1)]}) as scripted:
        scripted.greeting = f"* OK [CAPABILITY {scripted.capabilities}] ready\r\n".encode()
        yield scripted


@pytest.fixture
def proxy(server: ScriptedIMAP) -> Iterator[FaultProxy]:
    """A counting proxy in front of ``server``."""
    counting = FaultProxy(server.host, server.port)
    counting.start()
    yield counting
    counting.stop()


async def selected(proxy: FaultProxy) -> IMAPMailbox:
    """A session through ``proxy`` with INBOX selected (its inventory taken)."""
    settings = ServerSettings("acct", proxy.host, proxy.port, "none", None, "anna", Secret("pw"), 5.0)
    mailbox = IMAPMailbox(settings)
    await mailbox.open()
    await mailbox.inventory()
    return mailbox


def answer_second_size_command(reply: str) -> Callable[[Session, str, str], Awaitable[None]]:
    """A ``UID FETCH`` handler that answers the UID check's second size command with ``reply``
    (``NO ...`` or ``BAD ...``) and every other one as Dovecot would."""

    async def handler(session: Session, tag: str, args: str) -> None:
        if args.startswith(f"{scan.MAX_UIDS_PER_COMMAND + 1}:"):
            await session.send(f"{tag} {reply}\r\n".encode())
            return
        await session.default(tag, "UID FETCH", args)

    return handler


async def test_the_uid_check_is_one_round_trip_and_a_refused_command_leaves_only_its_uids_out(
    server: ScriptedIMAP, proxy: FaultProxy
) -> None:
    """Three size commands and a header fetch leave in one write; the second size command is answered
    NO: its UIDs are left out (not verified, so not deletable), the commands after it still count,
    and the whole check costs one round trip."""

    server.script["UID FETCH"] = answer_second_size_command("NO Some messages could not be FETCHed")
    mailbox = await selected(proxy)
    try:
        before = proxy.client_turns
        sizes, headers = await mailbox.check_uids("INBOX", 1234, range(1, COUNT + 1), [5, COUNT])
        assert proxy.client_turns - before == 1
        refused = set(range(scan.MAX_UIDS_PER_COMMAND + 1, 2 * scan.MAX_UIDS_PER_COMMAND + 1))
        assert set(sizes) == set(range(1, COUNT + 1)) - refused
        assert all(sizes[uid] == len(raw(uid)) for uid in sizes)
        assert headers == {5: header(5), COUNT: header(COUNT)}
        fetches = [c.split(maxsplit=3)[3] for c in server.commands if " UID FETCH " in c]
        assert len(fetches) == 4
        assert fetches[-1] == f"5,{COUNT} {scan.HEADER_ITEMS}"
    finally:
        await mailbox.close()


async def test_a_bad_command_in_the_middle_of_the_uid_check_stops_it(
    server: ScriptedIMAP, proxy: FaultProxy
) -> None:
    """BAD for one of the pipelined size commands is a protocol error for the whole check (as for the
    commands one by one): nothing of it is taken as verified."""

    server.script["UID FETCH"] = answer_second_size_command("BAD Error in IMAP command")
    mailbox = await selected(proxy)
    try:
        with pytest.raises(ProtocolError, match="BAD"):
            await mailbox.check_uids("INBOX", 1234, range(1, COUNT + 1), [5])
    finally:
        await mailbox.abort()


async def test_a_spurious_crlf_after_a_pipelined_header_literal_is_skipped(
    server: ScriptedIMAP, proxy: FaultProxy
) -> None:
    """A CRLF right after a header literal (bpo-44408) inside a pipeline: the header still arrives
    exactly and the size command behind it is read (before, the ``)`` line was taken for a line that
    is no IMAP response and the connection was dropped)."""

    def writer(seq: int, message: ScriptedMessage, items: str) -> bytes:
        if "HEADER" not in items.upper():
            return default_fetch_writer(seq, message, items)
        section = header(message.uid)
        return (
            b"* %d FETCH (UID %d RFC822.SIZE %d BODY[HEADER] {%d}\r\n"
            % (seq, message.uid, len(message.raw), len(section))
            + section
            + b"\r\n)\r\n"
        )

    server.fetch_writer = writer
    mailbox = await selected(proxy)
    try:
        sizes, headers = await mailbox.check_uids("INBOX", 1234, [1, 2, 3], [2, 3])
        assert sizes == {1: len(raw(1)), 2: len(raw(2)), 3: len(raw(3))}
        assert headers == {2: header(2), 3: header(3)}
        assert (await mailbox.fetch_sizes("INBOX", 1234, [7])) == {7: len(raw(7))}  # still usable
    finally:
        await mailbox.close()
