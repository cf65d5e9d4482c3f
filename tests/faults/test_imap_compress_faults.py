"""COMPRESS=DEFLATE (RFC 4978) against a scripted server: what Dovecot will not send on request.

A hostile compressed stream (a "zip bomb"), a broken DEFLATE stream, a refused COMPRESS, and
compressed data arriving in the same packet as the COMPRESS completion.
"""

from __future__ import annotations

import dataclasses
import zlib

import pytest

from maild.errors import ProtocolError
from maild.model import ServerSettings
from maild.protocols.imap.client import MAX_LINE_OCTETS
from maild.protocols.imap.compress import INFLATE_PIECE_OCTETS
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret
from tests.faults.imap_scripted import ScriptedIMAP, Session
from tests.support.fetching import crlf, retrieve_everything

#: Inflated size of the bomb: 16 times the line cap, from about 250 KiB on the wire.
BOMB_OCTETS = 16 * MAX_LINE_OCTETS


def settings(server: ScriptedIMAP) -> ServerSettings:
    """Plaintext settings for ``server`` with a 5 s inactivity limit, compressing whenever offered."""
    base = ServerSettings("acct", server.host, server.port, "none", None, "anna", Secret("pw"), 5.0)
    return dataclasses.replace(base, compress="always")


def deflate_stream() -> zlib._Compress:
    """A raw DEFLATE compressor as RFC 4978 section 3 prescribes (no zlib header)."""
    return zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)


async def open_and_take_inventory(mailbox: IMAPMailbox) -> None:
    """Open the session (COMPRESS included), then SELECT and UID SEARCH."""
    await mailbox.open()
    await mailbox.inventory()


def compressing(server: ScriptedIMAP) -> None:
    """Offer COMPRESS=DEFLATE after login."""
    server.post_login_capabilities += " COMPRESS=DEFLATE"


async def test_zip_bomb_is_cut_off_at_the_line_cap_without_inflating_it_all() -> None:
    """A server answering COMPRESS OK and then sending a few hundred KiB that inflate to 256 MiB
    without a line end loses the connection with a ProtocolError naming the line cap, after at
    most the cap plus one inflate piece was inflated (not the whole bomb)."""
    compressor = deflate_stream()
    bomb = compressor.compress(b"* OK ")
    zeros = bytes(2**20)
    for _ in range(BOMB_OCTETS // len(zeros)):
        bomb += compressor.compress(zeros)
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < BOMB_OCTETS // 500

    async def compress(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} OK Begin compression\r\n".encode() + bomb)
        await session.hang()

    async with ScriptedIMAP() as server:
        compressing(server)
        server.script["COMPRESS"] = compress
        mailbox = IMAPMailbox(settings(server))
        with pytest.raises(ProtocolError, match=f"line longer than {MAX_LINE_OCTETS} octets"):
            await open_and_take_inventory(mailbox)
        await mailbox.abort()
    plain, wire = mailbox.connection.received_octets
    assert wire <= len(bomb) + 4096
    assert plain <= MAX_LINE_OCTETS + 2 * INFLATE_PIECE_OCTETS


async def test_broken_deflate_stream_is_a_protocol_error() -> None:
    """Octets after COMPRESS OK that are no DEFLATE stream drop the connection with a ProtocolError
    naming RFC 4978, instead of being parsed as responses."""

    async def compress(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} OK Begin compression\r\n".encode() + b"\xff" * 64)
        await session.hang()

    async with ScriptedIMAP() as server:
        compressing(server)
        server.script["COMPRESS"] = compress
        mailbox = IMAPMailbox(settings(server))
        with pytest.raises(ProtocolError, match="broken DEFLATE stream"):
            await open_and_take_inventory(mailbox)
        await mailbox.abort()


async def test_refused_compress_leaves_the_session_uncompressed() -> None:
    """COMPRESS answered NO (e.g. ``[COMPRESSIONACTIVE]``) is no failure: the session goes on
    without compression and fetches as usual."""

    async def refuse(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} NO [COMPRESSIONACTIVE] already\r\n".encode())

    message = b"Subject: plain\r\n\r\nbody\r\n"
    async with ScriptedIMAP({"INBOX": [message]}) as server:
        compressing(server)
        server.script["COMPRESS"] = refuse
        mailbox = IMAPMailbox(settings(server))
        try:
            await mailbox.open()
            assert not mailbox.connection.compressed
            items = await retrieve_everything(mailbox)
        finally:
            await mailbox.close()
    assert [item.raw for item in items] == [crlf(message)]  # type: ignore[union-attr]


async def test_compressed_response_in_the_completions_packet_is_inflated() -> None:
    """Compressed octets that arrive in the same packet as the COMPRESS completion (an unsolicited
    response right after it) are inflated, not parsed as plain text: the connection stays usable
    and counts the inflated line, not the compressed octets, as received."""
    line = b"* OK still here\r\n"
    compressor = deflate_stream()
    early = compressor.compress(line) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert early != line

    async def compress(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} OK Begin compression\r\n".encode() + early)
        await session.hang()

    async with ScriptedIMAP() as server:
        compressing(server)
        server.script["COMPRESS"] = compress
        mailbox = IMAPMailbox(settings(server))
        try:
            await mailbox.open()
            assert mailbox.connection.compressed
            assert mailbox.connection.client.exceeded is None
            plain, wire = mailbox.connection.received_octets
        finally:
            await mailbox.abort()
    assert wire - plain == len(early) - len(line)


@pytest.mark.parametrize(
    "plain",
    [
        b"* 1 EXISTS\r\n* OK [UIDVALIDITY 1234] UIDs valid\r\n* OK [UIDNEXT 2] Predicted next UID\r\n",
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" * 20,
        b"* OK still here\r\n",
    ],
)
async def test_plain_text_after_compress_ok_is_one_protocol_error(plain: bytes) -> None:
    """A server that accepts COMPRESS and then answers in plain text (the next SELECT's responses):
    one ProtocolError naming RFC 4978 at the first read, the session dropped, no message taken
    (QA of session 15: the plain octets are not a DEFLATE stream zlib accepts)."""

    async def compress(session: Session, tag: str, args: str) -> None:
        await session.send(f"{tag} OK Begin compression\r\n".encode())
        await session.reader.read(1)  # the next (compressed) command
        await session.send(plain)
        await session.hang()

    async with ScriptedIMAP({"INBOX": [crlf(b"Subject: a\n\nbody\n")], "Other": []}) as server:
        compressing(server)
        server.script["COMPRESS"] = compress
        mailbox = IMAPMailbox(settings(server), ["INBOX", "Other"])
        await mailbox.open()  # INBOX is selected with the sign-in; "Other" is read compressed
        with pytest.raises(ProtocolError, match=r"broken DEFLATE stream.*RFC 4978"):
            await retrieve_everything(mailbox)
        await mailbox.abort()
