"""Mailbox names on the server: LIST every mailbox, CREATE one, over an open connection.

Names are readable here and travel as quoted modified UTF-7 (RFC 3501 section 5.1.3): aioimaplib
sends arguments raw.

May import: :mod:`maild.errors`, the connection and the sans-I/O IMAP modules.
"""

from __future__ import annotations

from maild.errors import ProtocolError
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap import wire
from maild.protocols.imap.connection import IMAPConnection

__all__ = ["create_mailbox", "list_mailboxes"]


async def list_mailboxes(connection: IMAPConnection) -> list[imap_list.ListedMailbox]:
    """LIST every mailbox (``LIST "" "*"``), with special-use attributes when the server has them.

    With ``SPECIAL-USE`` and ``LIST-EXTENDED`` the command is ``LIST "" "*" RETURN (SPECIAL-USE)``
    (RFC 6154 section 5.1); other servers may still put ``\\Trash`` and the like in a plain LIST.

    Standard: RFC 9051 section 6.3.9 (LIST); RFC 6154.

    Raises:
        ProtocolError: LIST refused or a broken response (a name that is not modified UTF-7,
            RFC 3501 section 5.1.3).
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
            :meth:`IMAPConnection.command`.
    """
    args: tuple[str, ...] = ('""', '"*"')
    if {"SPECIAL-USE", "LIST-EXTENDED"} <= connection.capabilities:
        args = (*args, "RETURN", "(SPECIAL-USE)")
    lines = await connection.command("LIST", lambda client: client.simple("LIST", *args))
    try:
        return imap_list.parse_list(lines)
    except ProtocolError as exc:
        raise connection.error(ProtocolError, f"LIST: {exc}", standard=exc.standard) from None


async def create_mailbox(connection: IMAPConnection, mailbox: str) -> None:
    """CREATE ``mailbox`` (readable name; encoded to modified UTF-7 and quoted here).

    Standard: RFC 9051 section 6.3.4, RFC 3501 section 6.3.3 (CREATE).

    Raises:
        ProtocolError: the name cannot be sent; CREATE refused (e.g. ``[ALREADYEXISTS]``, RFC 5530).
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for
            :meth:`IMAPConnection.command`.
    """
    try:
        argument = wire.mailbox_argument(mailbox)
    except ValueError as exc:
        raise connection.error(ProtocolError, f"CREATE {mailbox!r}: {exc}") from None
    await connection.command(f"CREATE {mailbox!r}", lambda client: client.simple("CREATE", argument))
