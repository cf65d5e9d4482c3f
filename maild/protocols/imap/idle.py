"""IMAP IDLE (RFC 2177): :class:`IMAPIdleSession`, a session waiting for the server to announce changes.

The session *holds* an :class:`~maild.protocols.imap.connection.IMAPConnection` (connection, TLS, login,
SELECT, guards, error mapping) and drives IDLE rounds through the client's
:class:`~maild.protocols.imap.client.IdleRound`; it has no retrieval, deletion or APPEND.

May import: asyncio, :mod:`maild.errors`, :mod:`maild.model`, the connection, the client's public names
and the sans-I/O IMAP modules. Never aioimaplib.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from maild.errors import ConnectError, MaildError, NetworkTimeout, ProtocolError
from maild.model import ServerSettings
from maild.protocols.imap import status, wire
from maild.protocols.imap.client import IdleRound
from maild.protocols.imap.connection import IMAPConnection
from maild.protocols.imap.lex import Part


class IMAPIdleSession:
    """A session that selects one mailbox and waits in IDLE for the server to announce changes.

    Each IDLE step is bounded in time and raced against the loss of the connection (aioimaplib's
    own ``idle_start`` hangs forever when the server closes before its ``+`` continuation, and
    ``wait_server_push`` sits out its whole timeout after a hang-up):

    * :meth:`idle_start` sends IDLE and returns once the server's ``+`` arrived;
    * :meth:`idle_wait` returns what the server pushed, or nothing after the given time;
    * :meth:`idle_done` sends DONE and waits for the tagged OK;
    * :meth:`noop` asks the server for a sign of life between IDLE rounds.

    A ``* BYE`` (RFC 9051 section 7.1.5), end of file or a reset is a :class:`~maild.errors.ConnectError`
    at once, silence beyond ``timeout_s`` where an answer is due a :class:`~maild.errors.NetworkTimeout`;
    either way the session is discarded. Not safe for concurrent use by several tasks.

    With NOTIFY (RFC 5465, :meth:`notify`), the server also reports new and expunged messages of the
    other watched mailboxes on this one connection (``* STATUS`` responses, counted in
    :attr:`~.wire.MailboxEvents.notified`), so one IDLE covers every mailbox.

    Args:
        settings: server, TLS mode, credentials and ``timeout_s`` (seconds).
        mailbox: the readable name of the mailbox to select and watch.
        notify_mailboxes: the other mailboxes to watch with NOTIFY where the server offers it:
            readable names, None for every mailbox of the user (``personal``), or empty for none.

    Raises:
        ValueError: a mailbox name cannot be sent (CR, LF, NUL, lone surrogate).

    Attributes:
        connection: the connection this session holds.
        mailbox: the watched mailbox's readable name.
        notifying: whether NOTIFY is in effect (set by :meth:`notify`).
    """

    def __init__(
        self, settings: ServerSettings, mailbox: str = "INBOX", notify_mailboxes: Sequence[str] | None = ()
    ) -> None:
        wire.mailbox_argument(mailbox)
        for name in notify_mailboxes or ():
            wire.mailbox_argument(name)
        self.connection = IMAPConnection(settings)
        self.mailbox = mailbox
        self.notify_mailboxes = None if notify_mailboxes is None else tuple(notify_mailboxes)
        self.notifying = False
        self.notify_refused: str | None = None
        """Why the server refused NOTIFY on this session (:meth:`notify`), or None."""
        self._idle: IdleRound | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login, upper-cased."""
        return self.connection.capabilities

    @property
    def supports_idle(self) -> bool:
        """Whether the server advertised IDLE after login (RFC 2177 section 3)."""
        return "IDLE" in self.connection.capabilities

    @property
    def idling(self) -> bool:
        """Whether an IDLE command is outstanding (sent, not yet ended with DONE)."""
        return self._idle is not None

    async def open(self) -> None:
        """Connect, negotiate TLS, LOGIN (the watched mailbox selected right behind it, pipelined);
        see :meth:`.connection.IMAPConnection.open` (same Raises)."""
        await self.connection.open(preselect=self.mailbox)

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None:
        """Turn on TCP keepalive; see :meth:`.connection.IMAPConnection.keepalive`."""
        self.connection.keepalive(idle_s, interval_s, count)

    async def select_mailbox(self) -> wire.SelectInfo:
        """SELECT the watched mailbox.

        Standard: RFC 9051 section 6.3.2.

        Raises:
            ProtocolError: it cannot be selected (e.g. ``[NONEXISTENT]``), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        return await self.connection.selection.select(self.mailbox)

    async def notify(self) -> bool:
        """Ask for news of every watched mailbox with NOTIFY, where the server offers it.

        Call after :meth:`select_mailbox`, before IDLE. Returns True when NOTIFY is in effect (then
        ``* STATUS`` pushes count as changes); False when the server lacks NOTIFY, refused it (NO or
        BAD: the reason is kept in :attr:`notify_refused`) or nothing but the selected mailbox is to
        be watched (then only the selected mailbox is watched, as before; the other mailboxes wait
        for the poll).

        Standard: RFC 5465 section 3 and 5.2.

        Raises:
            ProtocolError: a broken response.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        names = self.notify_mailboxes
        if "NOTIFY" not in self.capabilities or names == ():
            return False
        try:
            await status.notify_set(self.connection, names)
        except status.NotifyRefused as exc:
            self.notify_refused = str(exc)
            return False
        self.notifying = True
        return True

    def _fail(
        self, cls: type[ConnectError | NetworkTimeout | ProtocolError], reason: str, message: str
    ) -> MaildError:
        """Drop the IDLE round, discard the connection and return the error to raise."""
        self._idle = None
        self.connection.discard(reason)
        if cls is ProtocolError:
            return self.connection.error(ProtocolError, message, standard="RFC 2177")
        return self.connection.error(cls, message)

    async def idle_start(self) -> None:
        """Send IDLE and return once the server's ``+`` continuation arrived.

        Standard: RFC 2177 section 3.

        Cancelled at any await: the session is discarded.

        Raises:
            ProtocolError: the server lacks IDLE (RFC 2177 section 3), answered NO or BAD (RFC 9051
                section 7.1), or IDLE is already running.
            ConnectError: the connection was lost before the ``+`` (aioimaplib issue #110).
            NetworkTimeout: no ``+`` within ``timeout_s`` seconds.
            TransientError: the session was discarded earlier.
        """
        connection = self.connection
        lost = connection.lost("IDLE")
        if self._idle is not None:
            raise connection.error(ProtocolError, "IDLE is already running")
        if not self.supports_idle:
            raise connection.error(ProtocolError, "server lacks IDLE", standard="RFC 2177")
        idle = self._idle = connection.client.start_idle()
        ack = idle.continuation()
        timeout_s = connection.settings.timeout_s
        try:
            await asyncio.wait(
                (idle.command, ack, lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            connection.discard("IDLE cancelled")
            raise
        finally:
            if not ack.done():
                ack.cancel()
        command = idle.command
        if ack.done() and not ack.cancelled() and not command.done():
            return
        self._idle = None
        if command.done() and not command.cancelled() and command.exception() is None:
            _lines, status = connection.completion(command.result(), "IDLE")
            connection.discard("IDLE refused")
            raise connection.refused(status, "IDLE")
        if lost.done() or command.done():
            raise self._fail(
                ConnectError,
                "connection lost before IDLE continuation",
                "IDLE: connection lost before the server's continuation",
            )
        raise self._fail(
            NetworkTimeout,
            "IDLE continuation timed out",
            f"IDLE: no continuation from server within {timeout_s:g} s",
        )

    def _events(self, lines: list[Part], what: str) -> wire.MailboxEvents:
        events = wire.parse_mailbox_events(lines)
        if events.bye is not None:
            raise self._fail(
                ConnectError, "server said BYE", f"{what}: server closed the session: BYE {events.bye}"
            )
        return events

    async def idle_wait(self, timeout_s: float) -> wire.MailboxEvents:
        """Wait up to ``timeout_s`` seconds for the server to push untagged responses during IDLE.

        Returns:
            What arrived (``changed`` is true for EXISTS, RECENT or EXPUNGE); empty after the time.

        Standard: RFC 2177 section 3; RFC 9051 section 7.3.1 and 7.5.1 (EXISTS, EXPUNGE).

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE`` (RFC 9051 section 7.1.5), or the connection was lost.
            ProtocolError: no IDLE is running, or the server ended it unasked (RFC 2177 section 3).
            TransientError: the session was discarded earlier.
        """
        connection = self.connection
        lost = connection.lost("IDLE")
        idle = self._idle
        if idle is None:
            raise connection.error(ProtocolError, "IDLE is not running")
        lines = idle.drain()
        if not lines:
            push = idle.next_push()
            try:
                await asyncio.wait(
                    (push, idle.command, lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                push.cancel()
                connection.discard("IDLE wait cancelled")
                raise
            if push.done() and not push.cancelled():
                lines = push.result()
            else:
                push.cancel()
            lines += idle.drain()
        events = self._events(lines, "IDLE")
        if lines:
            return events
        if lost.done():
            raise self._fail(ConnectError, "connection lost during IDLE", "IDLE: connection lost")
        if idle.command.done():
            raise self._fail(ProtocolError, "server ended IDLE", "IDLE: the server ended IDLE without DONE")
        return events

    async def idle_done(self) -> wire.MailboxEvents:
        """End IDLE with DONE and wait up to ``timeout_s`` seconds for the tagged OK.

        Returns:
            What the server pushed and nobody collected yet. Nothing when no IDLE was running.

        Standard: RFC 2177 section 3.

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE`` (RFC 9051 section 7.1.5), or the connection was lost.
            NetworkTimeout: no completion within ``timeout_s`` seconds (a dead or stalled server).
            ProtocolError: IDLE ended NO or BAD (RFC 9051 section 7.1).
            TransientError: the session was discarded earlier.
        """
        idle = self._idle
        if idle is None:
            return wire.MailboxEvents()
        connection = self.connection
        lost = connection.lost("DONE")
        self._idle = None
        command = idle.command
        if not command.done():
            idle.send_done()
        timeout_s = connection.settings.timeout_s
        try:
            await asyncio.wait((command, lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connection.discard("DONE cancelled")
            raise
        events = self._events(idle.drain(), "DONE")
        if not command.done() or command.cancelled() or command.exception() is not None:
            if lost.done() or command.done():
                raise self._fail(ConnectError, "connection lost after DONE", "DONE: connection lost")
            raise self._fail(
                NetworkTimeout, "DONE timed out", f"DONE: no answer from server within {timeout_s:g} s"
            )
        _lines, status = connection.completion(command.result(), "IDLE")
        if not status.ok:
            connection.discard("IDLE ended with an error")
            raise connection.refused(status, "IDLE")
        return events

    async def noop(self) -> wire.MailboxEvents:
        """Send NOOP (a liveness check) and return the mailbox events that came with its answer.

        Standard: RFC 9051 section 6.1.2.

        Raises:
            ConnectError: ``* BYE`` (RFC 9051 section 7.1.5), or the connection was lost.
            NetworkTimeout: no answer within ``timeout_s`` seconds.
            ProtocolError: NOOP answered BAD (RFC 9051 section 7.1); a broken response.
            TransientError: the session was discarded earlier.
        """
        self.connection.lost("NOOP")
        lines = await self.connection.command("NOOP", lambda client: client.simple("NOOP"))
        return self._events(lines, "NOOP")

    async def close(self) -> None:
        """End IDLE if it runs (best effort), then LOGOUT (see :meth:`.connection.IMAPConnection.close`)."""
        if self._idle is not None:
            try:
                await self.idle_done()
            except MaildError:
                await self.abort()
                return
        await self.connection.close()

    async def abort(self) -> None:
        """Close the connection at once, dropping a running IDLE. Never raises."""
        idle, self._idle = self._idle, None
        if idle is not None and not idle.command.done():
            idle.command.cancel()
        self.connection.abort()
