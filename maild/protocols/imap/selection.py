"""The mailbox an IMAP connection has selected, and the SELECT pipelined behind its sign-in.

:class:`MailboxSelection` is held by :class:`~maild.protocols.imap.connection.IMAPConnection` (as
``connection.selection``) and runs its commands through the connection's guarded call
(:meth:`~maild.protocols.imap.connection.IMAPConnection.call`, ``completion``, ``refused``). It keeps
which mailbox is selected under which UIDVALIDITY, and the answers of the ``SELECT`` (and
``UID SEARCH ALL``) sent right behind the sign-in until the first :meth:`MailboxSelection.select`
takes them (RFC 9051 section 5.5).

May import: asyncio, :mod:`maild.errors`, :mod:`maild.protocols.imap.client`,
:mod:`maild.protocols.imap.codes`, :mod:`maild.protocols.imap.signin` (what a connection offers, as
its ``Session``), the sans-I/O IMAP modules.

Standard: RFC 9051 section 6.3.2 (SELECT), 6.4.4 and 7.3.4 (SEARCH), 5.5 (pipelining); RFC 3501
section 6.3.1.
"""

from __future__ import annotations

import asyncio

from maild.errors import ProtocolError
from maild.protocols.imap import wire
from maild.protocols.imap.client import IMAPClient, Reply
from maild.protocols.imap.codes import SESSION_CODES
from maild.protocols.imap.signin import Session

__all__ = ["MailboxSelection", "SelectRefused"]


class SelectRefused(ProtocolError):
    """SELECT was answered NO (no such mailbox, no permission): per-key failures in retrieve()."""


class MailboxSelection:
    """The selected mailbox of one connection, and the SELECT pipelined behind its sign-in.

    Args:
        connection: the connection whose commands select (it holds this object).
    """

    def __init__(self, connection: Session) -> None:
        self._connection = connection
        self._selected: str | None = None
        self._uidvalidity = 0
        self._preselect: tuple[str, asyncio.Future[Reply | None]] | None = None
        self._presearch: tuple[str, asyncio.Future[Reply | None]] | None = None
        """The ``UID SEARCH ALL`` sent behind the pipelined SELECT, until :meth:`select` passes its
        mailbox on to :meth:`take_search` (or drops it when another mailbox was asked for)."""

    @property
    def selected(self) -> str | None:
        """The readable name of the selected mailbox, or None (not selected, or a SELECT failed)."""
        return self._selected

    @property
    def uidvalidity(self) -> int:
        """UIDVALIDITY of the mailbox the last successful SELECT chose (0 before any)."""
        return self._uidvalidity

    @property
    def preselected(self) -> str | None:
        """The mailbox whose SELECT went out behind the sign-in and awaits :meth:`select`, or None."""
        return self._preselect[0] if self._preselect is not None else None

    def follow_sign_in(self, client: IMAPClient, mailbox: str, *, search: bool) -> None:
        """Queue ``SELECT mailbox`` (and with ``search`` ``UID SEARCH ALL``) to be written right
        behind the sign-in command (see :meth:`~maild.protocols.imap.client.IMAPClient.follow_sign_in`);
        the next :meth:`select` of ``mailbox`` takes the answer instead of asking."""
        self._preselect = (mailbox, client.follow_sign_in("SELECT", wire.mailbox_argument(mailbox)))
        if search:
            self._presearch = (mailbox, client.follow_sign_in("UID", "SEARCH", "ALL"))

    def forget(self) -> None:
        """Nothing is selected, nothing pipelined waits (a kept session taken back: every cycle
        selects again, RFC 9051 section 6.3.2)."""
        self._selected = None
        self._preselect = self._presearch = None

    def note(self, mailbox: str | None, uidvalidity: int = 0) -> None:
        """Record the outcome of a SELECT sent by other means (a pipeline): ``mailbox`` selected under
        ``uidvalidity``, or None when it failed (no mailbox is selected then, RFC 9051 section 6.3.2)."""
        self._selected, self._uidvalidity = mailbox, (uidvalidity if mailbox is not None else 0)

    async def select(self, mailbox: str) -> wire.SelectInfo:
        """SELECT ``mailbox`` (read-write, so that STORE works; no flags change by selecting).

        Args:
            mailbox: the readable name; encoded to modified UTF-7 and quoted here.

        Standard: RFC 9051 section 6.3.2 (SELECT); RFC 3501 section 6.3.1.

        Raises:
            SelectRefused: NO without a session code (no such mailbox, no permission).
            ThrottledError, TransientError, ProtocolError: NO with a session code, BAD, broken.
            NetworkTimeout, ConnectError: as for :meth:`IMAPConnection.call`.
        """
        connection = self._connection
        client = connection.client
        argument = wire.mailbox_argument(mailbox)
        what = f"SELECT {mailbox!r}"
        self._selected = None
        reply: Reply | None = None
        preselect, self._preselect = self._preselect, None
        presearch, self._presearch = self._presearch, None
        if preselect is not None:  # sent behind the sign-in: take its answer (or let it pass)
            pipelined = preselect[1]
            answer = await connection.call(what, lambda: asyncio.shield(pipelined))
            if preselect[0] == mailbox:
                reply = answer
                self._presearch = presearch  # for take_search, once this SELECT is known to be OK
        if reply is None:
            reply = await connection.call(what, lambda: client.select(argument))
        lines, status = connection.completion(reply, what)
        if status.condition == "NO" and status.code not in SESSION_CODES:
            account = connection.account
            raise SelectRefused(f"{account}: {what} refused: {status.describe()}", account=account)
        if not status.ok:
            raise connection.refused(status, what)
        info = wire.parse_select(lines, status)
        self._selected, self._uidvalidity = mailbox, info.uidvalidity
        return info

    async def take_search(self, mailbox: str) -> list[int] | None:
        """The UIDs of ``mailbox`` from the ``UID SEARCH ALL`` sent behind the sign-in's SELECT (see
        :meth:`follow_sign_in`), once :meth:`select` of that mailbox took the pipelined SELECT's OK;
        else None (not sent, another mailbox, or taken already: ask with a command of its own).

        Standard: RFC 9051 section 6.4.4 and 7.3.4 (SEARCH), 5.5 (pipelining).

        Raises:
            ProtocolError: the search was refused (BAD, NO) or its response is broken.
            ThrottledError, TransientError: NO with a session code (RFC 5530).
            NetworkTimeout, ConnectError: as for :meth:`IMAPConnection.call`.
        """
        presearch, self._presearch = self._presearch, None
        if presearch is None or presearch[0] != mailbox or self._selected != mailbox:
            return None
        connection = self._connection
        pending = presearch[1]
        what = f"UID SEARCH ALL in {mailbox!r}"
        reply = await connection.call(what, lambda: asyncio.shield(pending), slow=True)
        if reply is None:
            return None
        lines, status = connection.completion(reply, what)
        if not status.ok:
            raise connection.refused(status, what)
        try:
            return wire.parse_search(lines)
        except ProtocolError as exc:
            raise connection.error(ProtocolError, str(exc), standard=exc.standard) from None
