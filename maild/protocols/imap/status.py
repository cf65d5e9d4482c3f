"""Cheap looks at many mailboxes: LIST-STATUS, pipelined STATUS, and SELECT with UID SEARCH in one trip.

A poll of an account with many mailboxes costs round trips, not octets: today's SELECT and
``UID SEARCH ALL`` per mailbox took two round trips each (200 for 100 mailboxes, 10 s at 50 ms).
These functions ask for the state of every mailbox at once, so that the fetch cycle can leave the
unchanged ones alone (see :mod:`maild.fetch.folders`):

* :func:`list_with_status`: one ``LIST ... RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY
  HIGHESTMODSEQ))`` when the server has LIST-STATUS (RFC 5819), the names and states of every
  mailbox in one round trip;
* :func:`status_many`: ``STATUS`` for each mailbox, :data:`~.client.MAX_PIPELINED_COMMANDS` per
  round trip, for servers without LIST-STATUS;
* :func:`select_and_search`: ``SELECT`` and ``UID SEARCH ALL`` sent together, one round trip per
  mailbox that changed (a failed SELECT leaves no mailbox selected, so the SEARCH then fails
  harmlessly instead of searching another mailbox, RFC 9051 section 6.3.2).

HIGHESTMODSEQ is asked for only when the server has CONDSTORE (RFC 7162 section 3.1.6).

May import: :mod:`maild.errors`, the connection, the sans-I/O IMAP modules. Never aioimaplib.
"""

from __future__ import annotations

from collections.abc import Sequence

from maild.errors import ProtocolError
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap import wire
from maild.protocols.imap.client import MAX_PIPELINED_COMMANDS, Reply
from maild.protocols.imap.connection import SESSION_CODES, IMAPConnection, SelectRefused
from maild.protocols.imap.lex import Part


class NotifyRefused(ProtocolError):
    """NOTIFY SET was answered NO or BAD without a throttling or server-bug code, or with ``[LIMIT]``
    (RFC 5465 section 3: e.g. ``[NOTIFICATIONOVERFLOW]``, a filter the server does not support;
    :data:`NOTIFY_LIMIT_CODES`). The session is intact; it watches its selected mailbox only, as on a
    server without NOTIFY."""


#: Longest list of mailbox names maild sends in one LIST-STATUS or NOTIFY command, in octets (default
#: 8,000): beyond it LIST-STATUS lists every mailbox (``"*"``, the caller picks its own) and NOTIFY
#: watches ``personal``. RFC 7162 section 4 asks clients to keep command lines within 8,192 octets;
#: Dovecot 2.3 refuses lines over 64 KiB (``BAD ... command line too large``, about 3,000 names), and
#: that BAD failed every cycle of an account configured with that many mailboxes.
MAX_LIST_PATTERNS_OCTETS = 8000

#: Response codes of a NOTIFY refusal that are NotifyRefused although :meth:`IMAPConnection.refused`
#: counts them as throttling (default: ``LIMIT``). RFC 5530 section 3: LIMIT is "an implementation
#: limit of some kind" (here: too many mailboxes to watch); the same NOTIFY fails again in every new
#: session, so dropping the session for it signed in again and again (backoff up to reconnect_cap_s)
#: and never entered IDLE (review of session 15). UNAVAILABLE and INUSE pass; they still drop it.
NOTIFY_LIMIT_CODES = frozenset({"LIMIT"})

#: STATUS items asked for every mailbox; HIGHESTMODSEQ is added with CONDSTORE.
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY")


def status_items(capabilities: frozenset[str]) -> str:
    """The parenthesised STATUS item list for a server with ``capabilities``, e.g.
    ``"(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"``."""
    items = list(STATUS_ITEMS)
    if "CONDSTORE" in capabilities:
        items.append("HIGHESTMODSEQ")
    return "(" + " ".join(items) + ")"


def _name_list(mailboxes: Sequence[str] | None) -> str | None:
    """The names as a parenthesised list of mailbox arguments, or None for None or a list longer
    than :data:`MAX_LIST_PATTERNS_OCTETS`."""
    if mailboxes is None:
        return None
    names = "(" + " ".join(wire.mailbox_argument(name) for name in mailboxes) + ")"
    return names if len(names.encode()) <= MAX_LIST_PATTERNS_OCTETS else None


def _parsed(
    connection: IMAPConnection, what: str, lines: Sequence[Part], *, skip_broken_names: bool = False
) -> dict[str, imap_list.MailboxStatus]:
    try:
        return imap_list.parse_status(lines, skip_broken_names=skip_broken_names)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, f"{what}: {exc}", standard=exc.standard) from None


def _prelude(connection: IMAPConnection) -> list[str]:
    """Commands sent ahead of the status look in the same write: ``UNSELECT`` and, the first time,
    ``ENABLE QRESYNC``, where the server has them.

    A kept session may still have a mailbox selected on the server (maild forgets its selection
    between cycles), and STATUS of the selected mailbox may be stale (RFC 9051 section 6.3.11).
    UNSELECT (RFC 3691) closes it without expunging (unlike CLOSE); with nothing selected it is
    answered BAD, which is ignored. ENABLE is valid only with no mailbox selected (RFC 5161 section
    3.1), so QRESYNC is enabled only after an UNSELECT. Servers without UNSELECT answered the NOOP
    that took the session back, which brings a selected mailbox up to date on servers that do not
    keep it stale.
    """
    if "UNSELECT" not in connection.capabilities or connection.selection.preselected is not None:
        return []  # a fresh session whose sign-in carried a SELECT: nothing stale to close
    connection.selection.note(None)
    if "QRESYNC" in connection.capabilities and "QRESYNC" not in connection.enabled:
        return ["UNSELECT", "ENABLE QRESYNC"]
    return ["UNSELECT"]


def _after_prelude(connection: IMAPConnection, commands: list[str], replies: list[Reply]) -> None:
    """Note what the prelude's ENABLE turned on (``* ENABLED QRESYNC``, RFC 5161 section 3.2)."""
    for command, reply in zip(commands, replies, strict=False):
        if command.startswith("ENABLE ") and reply.result == "OK":
            for part in reply.lines[:-1]:
                if isinstance(part, bytes) and part.upper().startswith((b"ENABLED", b"* ENABLED")):
                    connection.enabled.update(part.decode("ascii", "replace").upper().split()[1:])


async def list_with_status(
    connection: IMAPConnection, mailboxes: Sequence[str] | None
) -> tuple[list[imap_list.ListedMailbox], dict[str, imap_list.MailboxStatus]]:
    """LIST with the STATUS of each listed mailbox, in one command (the server must have LIST-STATUS).

    Args:
        connection: an open connection.
        mailboxes: readable names to look at (sent as patterns; ``*`` and ``%`` in a name may match
            others, which the caller ignores), or None for every mailbox (``"*"``). Names longer in
            all than :data:`MAX_LIST_PATTERNS_OCTETS` are not sent: every mailbox is listed, and
            one whose name is not valid modified UTF-7 is left out (none of the names given).

    Returns:
        The LIST entries (special-use attributes included when the server has SPECIAL-USE) and
        readable name to status for each selectable one. A configured mailbox that does not exist
        is simply missing from both.

    Standard: RFC 5819 section 2 (LIST-STATUS), RFC 5258 section 3 (LIST-EXTENDED, several patterns),
    RFC 6154 section 5.1 (RETURN SPECIAL-USE).

    Raises:
        ProtocolError: refused or broken responses.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
            :meth:`IMAPConnection.command`.
    """
    names = _name_list(mailboxes)
    # "*" instead of the configured names: what else it lists is none of the account's, and one
    # name there that is not valid modified UTF-7 must not fail the account's every status look
    everything_for_some = mailboxes is not None and names is None
    patterns = names or '"*"'
    returns = f"STATUS {status_items(connection.capabilities)}"
    if "SPECIAL-USE" in connection.capabilities:
        returns = f"SPECIAL-USE {returns}"
    command = f'LIST "" {patterns} RETURN ({returns})'
    first = _prelude(connection)
    replies = await _pipeline(connection, "LIST-STATUS", [*first, command])
    _after_prelude(connection, first, replies)
    reply = replies[-1]
    lines, status = connection.completion(reply, "LIST-STATUS")
    if not status.ok:
        raise connection.refused(status, "LIST-STATUS")
    try:
        listed = imap_list.parse_list(lines, skip_broken_names=everything_for_some)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, f"LIST-STATUS: {exc}", standard=exc.standard) from None
    return listed, _parsed(connection, "LIST-STATUS", lines, skip_broken_names=everything_for_some)


async def status_many(
    connection: IMAPConnection, mailboxes: Sequence[str]
) -> dict[str, imap_list.MailboxStatus]:
    """STATUS of each of ``mailboxes``, about :data:`~.client.MAX_PIPELINED_COMMANDS` per round trip.

    Returns:
        Readable name to status; a mailbox the server refused (NO: no such mailbox, no permission;
        BAD: a server that does not know STATUS, although RFC 9051 requires it) is left out, so
        that the caller lists it in full.

    Standard: RFC 9051 section 6.3.11 (STATUS; "the STATUS command MUST NOT be used as a 'check
    for new messages in the selected mailbox'": the selected mailbox's state is not relied on
    here, every mailbox is selected again when it changed); RFC 7162 section 3.1.6.

    Raises:
        ProtocolError: broken responses.
        ThrottledError, TransientError: NO with a session code (RFC 5530).
        NetworkTimeout, ConnectError: as for :meth:`IMAPConnection.call`.
    """
    items = status_items(connection.capabilities)
    found: dict[str, imap_list.MailboxStatus] = {}
    names = list(dict.fromkeys(mailboxes))
    per_trip = MAX_PIPELINED_COMMANDS - 2  # room for the prelude
    for start in range(0, len(names), per_trip):
        chunk = names[start : start + per_trip]
        commands = [f"STATUS {wire.mailbox_argument(name)} {items}" for name in chunk]
        first = _prelude(connection) if start == 0 else []
        replies = await _pipeline(connection, f"STATUS of {len(chunk)} mailboxes", [*first, *commands])
        _after_prelude(connection, first, replies)
        replies = replies[len(first) :]
        for name, reply in zip(chunk, replies, strict=True):
            what = f"STATUS {name!r}"
            lines, status = connection.completion(reply, what)
            if status.code in SESSION_CODES:
                raise connection.refused(status, what)
            if status.ok:  # NO (no such mailbox) or BAD (a server without STATUS): listed in full
                found.update(_parsed(connection, what, lines))
    return found


async def select_and_search(connection: IMAPConnection, mailbox: str) -> tuple[wire.SelectInfo, list[int]]:
    """SELECT ``mailbox`` and ``UID SEARCH ALL`` in one round trip.

    Returns:
        What SELECT reported, and the UIDs in server order.

    Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 and 6.4.9 (UID SEARCH), 5.5 (pipelining).

    Raises:
        SelectRefused: NO without a session code (no such mailbox, no permission).
        ProtocolError: BAD, a broken response.
        ThrottledError, TransientError, NetworkTimeout, ConnectError: as for
            :meth:`MailboxSelection.select <.selection.MailboxSelection.select>`.
    """
    argument = wire.mailbox_argument(mailbox)
    what = f"SELECT {mailbox!r}"
    connection.selection.note(None)
    select_reply, search_reply = await _pipeline(connection, what, [f"SELECT {argument}", "UID SEARCH ALL"])
    info = _selected(connection, mailbox, what, select_reply)
    search_what = f"UID SEARCH ALL in {mailbox!r}"
    search_lines, search_status = connection.completion(search_reply, search_what)
    if not search_status.ok:
        raise connection.refused(search_status, search_what)
    try:
        return info, wire.parse_search(search_lines)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, str(exc), standard=exc.standard) from None


async def select_changes(
    connection: IMAPConnection, mailbox: str, before: imap_list.MailboxStatus, known: frozenset[int]
) -> tuple[wire.SelectInfo, list[int] | None]:
    """SELECT ``mailbox`` with QRESYNC and ask for UIDs from the old UIDNEXT on, in one round trip.

    The session must have enabled QRESYNC. The server then reports what was expunged since
    ``before.highest_modseq`` as ``VANISHED (EARLIER)`` (RFC 7162 section 3.2.5.2) instead of maild
    listing every UID; ``UID SEARCH UID <old UIDNEXT>:*`` gives the new ones.

    Args:
        connection: a session that enabled QRESYNC.
        mailbox: the readable name.
        before: the status at the mailbox's last full listing (UIDVALIDITY, UIDNEXT and
            HIGHESTMODSEQ known).
        known: the UIDs the mailbox held then.

    Returns:
        What SELECT reported, and the UIDs now in ascending order; None instead of the UIDs when the
        answer cannot be trusted (a new UIDVALIDITY, or a count that differs from EXISTS): then list
        the mailbox in full.

    Standard: RFC 7162 section 3.2.5 (SELECT with QRESYNC), 3.2.10 (VANISHED); RFC 9051 section
    6.4.4 (UID SEARCH; ``n:*`` includes the last message even when its UID is below n).

    Raises:
        As :func:`select_and_search`; ProtocolError also for a broken VANISHED line.
    """
    argument = wire.mailbox_argument(mailbox)
    what = f"SELECT {mailbox!r} (QRESYNC)"
    connection.selection.note(None)
    qresync = f"SELECT {argument} (QRESYNC ({before.uidvalidity} {before.highest_modseq}))"
    select_reply, search_reply = await _pipeline(
        connection, what, [qresync, f"UID SEARCH UID {before.uidnext}:*"]
    )
    info = _selected(connection, mailbox, what, select_reply)
    search_what = f"UID SEARCH UID {before.uidnext}:* in {mailbox!r}"
    search_lines, search_status = connection.completion(search_reply, search_what)
    if not search_status.ok:
        raise connection.refused(search_status, search_what)
    if info.uidvalidity != before.uidvalidity:
        return info, None
    try:
        lines = select_reply.lines[:-1]
        vanished = imap_list.vanished_among(lines, known)
        found = wire.parse_search(search_lines)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, str(exc), standard=exc.standard) from None
    assert before.uidnext is not None
    uids = sorted((known - vanished) | {uid for uid in found if uid >= before.uidnext})
    return info, (uids if len(uids) == info.exists else None)


def _selected(connection: IMAPConnection, mailbox: str, what: str, reply: Reply) -> wire.SelectInfo:
    """Check a pipelined SELECT's reply; note the selection; return what it reported."""
    lines, status = connection.completion(reply, what)
    if status.condition == "NO" and status.code not in SESSION_CODES:
        raise SelectRefused(
            f"{connection.account}: {what} refused: {status.describe()}", account=connection.account
        )
    if not status.ok:
        raise connection.refused(status, what)
    info = wire.parse_select(lines, status)
    connection.selection.note(mailbox, info.uidvalidity)
    return info


async def notify_set(connection: IMAPConnection, mailboxes: Sequence[str] | None) -> None:
    """Ask for news of new and expunged messages in every watched mailbox on this connection.

    Sends ``NOTIFY SET (selected (MessageNew MessageExpunge)) (<filter> (MessageNew
    MessageExpunge))`` where the filter is ``personal`` (every mailbox of the user) for None or
    names longer in all than :data:`MAX_LIST_PATTERNS_OCTETS`, else ``mailboxes (name ...)``. The
    server then reports a change in a mailbox that is not selected with an untagged ``STATUS``
    (MESSAGES, UIDNEXT, UIDVALIDITY), also during IDLE (RFC 5465 section 5.2).

    Standard: RFC 5465 section 3 (NOTIFY SET), 5.2 (MessageNew and MessageExpunge go together), 6.

    Raises:
        NotifyRefused: NOTIFY answered NO or BAD (e.g. ``[NOTIFICATIONOVERFLOW]``, ``[LIMIT]``:
            :data:`NOTIFY_LIMIT_CODES`); nothing changed.
        ProtocolError: a broken response.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
            :meth:`IMAPConnection.command` (a NO with ``[UNAVAILABLE]``, ``[INUSE]`` or
            ``[SERVERBUG]`` among them).
    """
    events = "(MessageNew MessageExpunge)"
    names = _name_list(mailboxes)
    other = f"personal {events}" if names is None else f"mailboxes {names} {events}"
    reply = (await _pipeline(connection, "NOTIFY", [f"NOTIFY SET (selected {events}) ({other})"]))[0]
    _lines, status = connection.completion(reply, "NOTIFY")
    if not status.ok:
        error = connection.refused(status, "NOTIFY")
        if type(error) is ProtocolError or status.code in NOTIFY_LIMIT_CODES:
            # the filter refused, or too much to watch: neither passes with a new session
            raise NotifyRefused(str(error), account=connection.account) from None
        raise error


async def _pipeline(connection: IMAPConnection, what: str, commands: list[str]) -> list[Reply]:
    client = connection.client
    return await connection.call(what, lambda: client.pipeline(commands))
