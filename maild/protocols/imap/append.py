"""APPEND: upload one message into a mailbox over an open connection (moving a mailbox uses it).

May import: :mod:`maild.errors`, the connection and the sans-I/O IMAP modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from maild.errors import ProtocolError
from maild.protocols.imap import wire
from maild.protocols.imap.connection import IMAPConnection

__all__ = ["APPEND_SESSION_CODES", "AppendResult", "append_message"]

#: APPEND refusals that concern the session rather than the message (RFC 5530): raised, not returned.
APPEND_SESSION_CODES = frozenset({"UNAVAILABLE", "INUSE", "SERVERBUG"})


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The server's answer to one APPEND.

    Attributes:
        ok: True when the server stored the message (tagged OK).
        status: the tagged completion as one line, e.g. ``"OK [APPENDUID 38505 3955] Append completed"``
            or ``"NO [OVERQUOTA] Quota exceeded"`` (for reports; match on ``code``, never on text).
        code: the response code's atom, e.g. ``"APPENDUID"``, ``"TOOBIG"``, ``"OVERQUOTA"``, or None.
        uidvalidity, uid: from ``[APPENDUID uidvalidity uid]`` (RFC 4315 section 3) when the server
            offers UIDPLUS, else None.
    """

    ok: bool
    status: str
    code: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None


async def append_message(
    connection: IMAPConnection,
    mailbox: str,
    raw: bytes,
    *,
    flags: Iterable[str] = (),
    internaldate: datetime | None = None,
) -> AppendResult:
    """Upload one message into ``mailbox`` with APPEND, keeping its flags and INTERNALDATE.

    The mailbox name is encoded (modified UTF-7) and quoted here; the message travels as a
    synchronising literal, octet for octet. The inactivity limit is extended while it is sent
    (see :data:`~.connection.MIN_UPLOAD_OCTETS_PER_S`).

    Args:
        mailbox: readable mailbox name, e.g. ``"INBOX"``; it must exist.
        raw: the message octets (CRLF line endings, as archived).
        flags: flags to set, e.g. ``{"\\Seen"}``.
        internaldate: the INTERNALDATE to set (aware; sent in UTC), or None for the server's now.

    Returns:
        The outcome. A refusal of this message (NO, e.g. ``[TOOBIG]`` RFC 7889,
        ``[OVERQUOTA]``/``[LIMIT]`` RFC 5530, ``[TRYCREATE]``; or BAD) is returned with ``ok``
        False, so that a caller can report it and go on with the next message.

    Standard: RFC 9051 section 6.3.12, RFC 3501 section 6.3.11 (APPEND); RFC 4315 section 3
    (APPENDUID).

    Cancelled at any await: the session is discarded; the server may or may not have stored
    the message (compare before appending again).

    Raises:
        ProtocolError: a flag or the mailbox name cannot be sent; a broken response.
        ThrottledError, TransientError: NO ``[UNAVAILABLE]``/``[INUSE]``/``[SERVERBUG]`` (the
            session, not the message, is the problem).
        NetworkTimeout, ConnectError: as for :meth:`IMAPConnection.call`; the outcome is unknown.
    """
    try:
        argument = wire.mailbox_argument(mailbox)
        flag_list = wire.format_flag_list(flags)
        date = wire.format_internaldate(internaldate) if internaldate is not None else None
    except ValueError as exc:
        raise connection.error(ProtocolError, f"APPEND to {mailbox!r}: {exc}") from None
    client = connection.client
    what = f"APPEND to {mailbox!r} ({len(raw)} octets)"
    _lines, status = connection.completion(
        await connection.call(
            what,
            lambda: client.append(raw, argument, flag_list, date),
            send_octets=len(raw),
        ),
        what,
    )
    if status.condition == "NO" and status.code in APPEND_SESSION_CODES:
        raise connection.refused(status, what)
    if not status.ok:
        return AppendResult(False, status.describe(), status.code)
    appenduid = wire.parse_appenduid(status)
    if appenduid is None:
        return AppendResult(True, status.describe(), status.code)
    return AppendResult(True, status.describe(), status.code, appenduid[0], appenduid[1])
