"""Short commands on the selected mailbox: UID SEARCH and batch UID FETCH scans without bodies.

Sizes (RFC822.SIZE), header sections and Message-ID identities are read in commands naming at most
:data:`MAX_UIDS_PER_COMMAND` UIDs, so that no response gets very long; each command's responses are
assembled at its completion by :func:`~maild.protocols.imap.fetch.parse_fetch` (the same
:class:`~maild.protocols.imap.fetch.FetchAssembler` the streaming retrieval uses). Functions take
the :class:`~maild.protocols.imap.connection.IMAPConnection` they run on.

May import: :mod:`maild.errors`, the connection, the client's public names, the sans-I/O IMAP modules.
Never aioimaplib.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from maild.errors import ProtocolError
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import wire
from maild.protocols.imap.client import MAX_PIPELINED_COMMANDS
from maild.protocols.imap.connection import SESSION_CODES, IMAPConnection
from maild.protocols.imap.lex import Part

#: Most UIDs named in one command, so that no response exceeds a few hundred lines.
MAX_UIDS_PER_COMMAND = 400
#: Most messages per body FETCH: each costs two response lines (header with literal, then ``)``).
MAX_MESSAGES_PER_FETCH = 200
#: Items of the identity pass after a UIDVALIDITY change: size and Message-ID, no body.
IDENTITY_ITEMS = "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
#: Items of the size check of known UIDs (:func:`fetch_sizes`).
SIZE_ITEMS = "(UID RFC822.SIZE)"
#: Items of the header scan used to compare mailboxes without downloading bodies.
HEADER_ITEMS = "(UID RFC822.SIZE BODY.PEEK[HEADER])"
#: Items of the header fetch that shows a message that failed to arrive (:func:`fetch_header_fields`).
FAILED_HEADER_ITEMS = "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)])"


def chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    """``items`` in slices of at most ``size``, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class MailboxHeaders:
    """The header scan of one mailbox (see :func:`scan_headers`).

    Attributes:
        mailbox: the readable mailbox name.
        uidvalidity: its UIDVALIDITY at the scan.
        messages: UID to the fetched items: ``size_octets`` (RFC822.SIZE) and ``header`` (the header
            section with its empty line, as sent).
        failures: UID to the reason its items could not be read (NIL, malformed, not returned
            although the FETCH did not complete OK).
    """

    mailbox: str
    uidvalidity: int
    messages: dict[int, imap_fetch.FetchedMessage] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


async def uid_fetch(
    connection: IMAPConnection, uids: Sequence[int], items: str, require: tuple[imap_fetch.FetchItem, ...]
) -> tuple[imap_fetch.FetchResult, wire.StatusResponse]:
    """``UID FETCH uids items`` as one short command, its responses assembled at the completion.

    Args:
        connection: an open connection with the mailbox selected.
        uids: at most :data:`MAX_UIDS_PER_COMMAND` UIDs.
        items: the data items, e.g. :data:`HEADER_ITEMS`.
        require: items every message must carry (see :class:`~.fetch.FetchAssembler`).

    Returns:
        The assembled result and the tagged completion (OK, or NO without a session code).

    Standard: RFC 9051 section 6.4.9 (UID FETCH), 7.5.2 (FETCH response).

    Raises:
        ThrottledError, TransientError, ProtocolError: NO with a session code (RFC 5530), or BAD.
        NetworkTimeout, ConnectError: as for :meth:`IMAPConnection.call`.
    """
    client = connection.client
    uid_set = wire.sequence_set(uids)
    what = f"UID FETCH {items} for {len(uids)} UIDs"
    lines, status = connection.completion(
        await connection.call(what, lambda: client.uid_fetch(uid_set, items)), what
    )
    if status.condition == "BAD" or status.code in SESSION_CODES:
        raise connection.refused(status, what)
    return imap_fetch.parse_fetch(lines, requested=uids, require=require), status


async def uid_search(connection: IMAPConnection, mailbox: str, criterion: str) -> list[int]:
    """``UID SEARCH criterion`` in the selected ``mailbox``; the UIDs in server order.

    Standard: RFC 9051 section 6.4.4 and 7.3.4.

    Raises:
        ProtocolError: a broken SEARCH response (RFC 9051 section 7.3.4), BAD.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
            :meth:`IMAPConnection.command`.
    """
    lines = await connection.command(
        f"UID SEARCH {criterion} in {mailbox!r}", lambda client: client.uid_search(criterion), slow=True
    )
    try:
        return wire.parse_search(lines)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, str(exc), standard=exc.standard) from None


async def scan_headers(connection: IMAPConnection, mailbox: str) -> MailboxHeaders:
    """Scan one mailbox without downloading bodies: SELECT, UID SEARCH ALL, then
    ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])`` in batches of :data:`MAX_MESSAGES_PER_FETCH`.

    ``BODY.PEEK`` leaves ``\\Seen`` alone. A UID that a FETCH completing OK did not return was
    expunged meanwhile and is left out; one that a FETCH answered NO did not return is a failure.

    Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 (SEARCH), 6.4.5 (``BODY.PEEK[HEADER]``).

    Cancelled at any await: the session is discarded; nothing changed on the server.

    Raises:
        ProtocolError: the mailbox cannot be selected (e.g. ``[NONEXISTENT]``), BAD, broken replies.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`IMAPConnection.open`.
    """
    info = await connection.selection.select(mailbox)
    scan = MailboxHeaders(mailbox, info.uidvalidity)
    if info.exists == 0:
        return scan
    uids = await uid_search(connection, mailbox, "ALL")
    for chunk in chunks(sorted(set(uids)), MAX_MESSAGES_PER_FETCH):
        result, status = await uid_fetch(connection, chunk, HEADER_ITEMS, ("RFC822.SIZE", "BODY[HEADER]"))
        scan.messages.update(result.messages)
        scan.failures.update(result.failures)
        if not status.ok:
            for uid in chunk:
                if uid not in result.messages and uid not in result.failures:
                    scan.failures[uid] = f"not returned ({status.describe()})"
    return scan


async def _select_unchanged(connection: IMAPConnection, mailbox: str, uidvalidity: int) -> bool:
    """SELECT ``mailbox`` unless it is selected already; True when its UIDVALIDITY is still ``uidvalidity``.

    Raises:
        As :func:`fetch_sizes`.
    """
    if connection.selected != mailbox:
        await connection.selection.select(mailbox)
    return connection.uidvalidity == uidvalidity


async def fetch_identities(
    connection: IMAPConnection, mailbox: str, uidvalidity: int, uids: Sequence[int]
) -> dict[int, tuple[int, bytes]]:
    """Read size and Message-ID field of messages without their bodies.

    ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`` in batches of
    :data:`MAX_MESSAGES_PER_FETCH`, after a SELECT unless ``mailbox`` is selected already. Used to
    recognise archived messages under new UIDs after a UIDVALIDITY change without downloading
    them again. ``BODY.PEEK`` leaves ``\\Seen`` alone.

    Returns:
        UID to (RFC822.SIZE in octets, the Message-ID field lines as sent, ending with the empty
        line). UIDs the server did not return, or returned incompletely, are left out; so is
        everything when the mailbox's UIDVALIDITY is no longer ``uidvalidity``.

    Standard: RFC 9051 section 6.4.5 (``BODY.PEEK[HEADER.FIELDS]``, RFC822.SIZE), 6.4.9.

    Cancelled at any await: the session is discarded; nothing changed on the server.

    Raises:
        As :func:`fetch_sizes`.
    """
    if not await _select_unchanged(connection, mailbox, uidvalidity):
        return {}
    found: dict[int, tuple[int, bytes]] = {}
    for chunk in chunks(sorted(set(uids)), MAX_MESSAGES_PER_FETCH):
        result, _status = await uid_fetch(
            connection, chunk, IDENTITY_ITEMS, ("RFC822.SIZE", "BODY[HEADER.FIELDS]")
        )
        for uid, message in result.messages.items():
            if message.size_octets is not None and message.header_fields is not None:
                found[uid] = (message.size_octets, message.header_fields)
    return found


async def fetch_sizes(
    connection: IMAPConnection, mailbox: str, uidvalidity: int, uids: Sequence[int]
) -> dict[int, int]:
    """RFC822.SIZE of ``uids`` now, never from a cache: :func:`check_uids` without header sections.

    Returns:
        UID to size in octets; UIDs not returned are left out, and everything when the mailbox's
        UIDVALIDITY is no longer ``uidvalidity``.

    Standard: RFC 9051 section 6.4.9, 7.5.2 (RFC822.SIZE; a message's size never changes, 2.3.4).

    Raises:
        As :func:`check_uids`.
    """
    sizes, _headers = await check_uids(connection, mailbox, uidvalidity, uids, ())
    return sizes


async def check_uids(
    connection: IMAPConnection,
    mailbox: str,
    uidvalidity: int,
    uids: Sequence[int],
    header_uids: Sequence[int],
) -> tuple[dict[int, int], dict[int, bytes]]:
    """RFC822.SIZE of ``uids`` and the header sections of ``header_uids``, all in one round trip.

    ``UID FETCH (UID RFC822.SIZE)`` in commands of at most :data:`MAX_UIDS_PER_COMMAND` UIDs and
    ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])`` (``\\Seen`` untouched) in commands of at most
    :data:`MAX_MESSAGES_PER_FETCH`, sent together, up to
    :data:`~maild.protocols.imap.client.MAX_PIPELINED_COMMANDS` per write (one write for up to
    40,000 UIDs), after a SELECT unless ``mailbox`` is selected already. Used every cycle to check
    that known UIDs still name the archived messages (see
    :func:`maild.fetch.resync.verify_uid_map`). None of these commands changes what the next one
    does: a refused one (NO) leaves its UIDs out, BAD or a session code stops the check.

    Returns:
        UID to size in octets, and UID to header section (with its empty line, as sent); UIDs not
        returned are left out, and everything when the mailbox's UIDVALIDITY is no longer
        ``uidvalidity``.

    Standard: RFC 9051 section 5.5 (pipelining), 6.4.5 (``BODY.PEEK[HEADER]``), 6.4.9, 7.5.2
    (RFC822.SIZE; a message's size never changes, section 2.3.4).

    Raises:
        ProtocolError: the mailbox cannot be selected, BAD, broken responses.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`IMAPConnection.open`.
    """
    if not await _select_unchanged(connection, mailbox, uidvalidity):
        return {}, {}
    commands: list[tuple[Sequence[int], str]] = [
        (chunk, SIZE_ITEMS) for chunk in chunks(sorted(set(uids)), MAX_UIDS_PER_COMMAND)
    ]
    commands += [(chunk, HEADER_ITEMS) for chunk in chunks(sorted(set(header_uids)), MAX_MESSAGES_PER_FETCH)]
    sizes: dict[int, int] = {}
    headers: dict[int, bytes] = {}
    client = connection.client
    for start in range(0, len(commands), MAX_PIPELINED_COMMANDS):
        batch = commands[start : start + MAX_PIPELINED_COMMANDS]
        texts = [f"UID FETCH {wire.sequence_set(chunk)} {items}" for chunk, items in batch]
        what = f"UID check of {sum(len(chunk) for chunk, _ in batch)} UIDs in {len(batch)} commands"
        replies = await connection.call(what, functools.partial(client.pipeline, texts))
        for (chunk, items), reply in zip(batch, replies, strict=True):
            command_what = f"UID FETCH {items} for {len(chunk)} UIDs"
            lines, status = connection.completion(reply, command_what)
            if status.condition == "BAD" or status.code in SESSION_CODES:
                raise connection.refused(status, command_what)
            if items == SIZE_ITEMS:
                _read_sizes(lines, chunk, sizes)
                continue
            result = imap_fetch.parse_fetch(lines, requested=chunk, require=("BODY[HEADER]",))
            for uid, message in result.messages.items():
                if message.header is not None:
                    headers[uid] = message.header
    return sizes, headers


def _read_sizes(lines: Sequence[Part], chunk: Sequence[int], found: dict[int, int]) -> None:
    """Add the RFC822.SIZE of each UID of ``chunk`` among the size responses ``lines`` to ``found``."""
    wanted = frozenset(chunk)
    rest: list[Part] = []
    for part in lines:  # the plain form by one regex (the assembler costs ~100 us a line)
        plain = _SIZE_LINE.fullmatch(part) if isinstance(part, bytes) else None
        if plain is None:
            rest.append(part)
            continue
        uid = int(plain.group(1) or plain.group(4))
        if uid in wanted:
            found[uid] = int(plain.group(2) or plain.group(3))
    if rest:  # anything else by the one set of FETCH rules
        result = imap_fetch.parse_fetch(rest, requested=chunk, require=("RFC822.SIZE",))
        for uid, message in result.messages.items():
            if message.size_octets is not None:
                found.setdefault(uid, message.size_octets)


#: A size response in its plain form, either item order: ``[* ]n FETCH (UID u RFC822.SIZE s)``.
#: Numbers of up to 10 digits; anything else goes to the assembler.
_SIZE_LINE = re.compile(
    rb"(?:\* )?\d{1,10} FETCH \("
    rb"(?:UID (\d{1,10}) RFC822\.SIZE (\d{1,10})|RFC822\.SIZE (\d{1,10}) UID (\d{1,10}))\)",
    re.IGNORECASE,
)


async def fetch_header_sections(
    connection: IMAPConnection, mailbox: str, uidvalidity: int, uids: Sequence[int]
) -> dict[int, bytes]:
    """The header sections of ``uids`` (``BODY.PEEK[HEADER]``, ``\\Seen`` untouched), in batches of
    :data:`MAX_MESSAGES_PER_FETCH`, after a SELECT unless ``mailbox`` is selected already.

    Returns:
        UID to the header section with its empty line, as sent; UIDs not returned are left out, and
        everything when the mailbox's UIDVALIDITY is no longer ``uidvalidity``.

    Standard: RFC 9051 section 6.4.5 (``BODY.PEEK[HEADER]``).

    Raises:
        As :func:`fetch_sizes`.
    """
    headers = await _fetch_sections(connection, mailbox, uidvalidity, uids, HEADER_ITEMS, "BODY[HEADER]")
    return {uid: message.header for uid, message in headers if message.header is not None}


async def fetch_header_fields(
    connection: IMAPConnection, mailbox: str, uidvalidity: int, uids: Sequence[int]
) -> dict[int, bytes]:
    """The Subject, From and Date lines of ``uids`` (:data:`FAILED_HEADER_ITEMS`; ``BODY.PEEK``, so
    ``\\Seen`` is untouched), in batches of :data:`MAX_MESSAGES_PER_FETCH`, after a SELECT unless
    ``mailbox`` is selected already. Used to show messages whose body could not be fetched.

    Returns:
        UID to the field lines as sent (ending with the empty line); UIDs not returned are left out,
        and everything when the mailbox's UIDVALIDITY is no longer ``uidvalidity``.

    Standard: RFC 9051 section 6.4.5 (``BODY.PEEK[HEADER.FIELDS (...)]``); RFC 3501 section 6.4.5.

    Raises:
        As :func:`fetch_sizes`.
    """
    fields = await _fetch_sections(
        connection, mailbox, uidvalidity, uids, FAILED_HEADER_ITEMS, "BODY[HEADER.FIELDS]"
    )
    return {uid: message.header_fields for uid, message in fields if message.header_fields is not None}


async def _fetch_sections(
    connection: IMAPConnection,
    mailbox: str,
    uidvalidity: int,
    uids: Sequence[int],
    items: str,
    section: imap_fetch.FetchItem,
) -> list[tuple[int, imap_fetch.FetchedMessage]]:
    """The responses to ``UID FETCH uids items`` requiring ``section``, in batches of
    :data:`MAX_MESSAGES_PER_FETCH`, after a SELECT unless ``mailbox`` is selected already; nothing
    when the mailbox's UIDVALIDITY is no longer ``uidvalidity``.

    Raises:
        As :func:`fetch_sizes`.
    """
    if not await _select_unchanged(connection, mailbox, uidvalidity):
        return []
    found: list[tuple[int, imap_fetch.FetchedMessage]] = []
    for chunk in chunks(sorted(set(uids)), MAX_MESSAGES_PER_FETCH):
        result, _status = await uid_fetch(connection, chunk, items, (section,))
        found.extend(result.messages.items())
    return found
