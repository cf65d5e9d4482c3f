"""IMAP IDLE (RFC 2177): :class:`IMAPIdleSession`, a session waiting for the server to announce changes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aioimaplib

from maild.errors import ConnectError, MaildError, NetworkTimeout, ProtocolError
from maild.model import ServerSettings
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap import wire
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.protocols.imap.session import consume_outcome


class IMAPIdleSession(IMAPMailbox):
    """A session that selects one mailbox and waits in IDLE for the server to announce changes.

    Connection, TLS, login, SELECT and the guards against aioimaplib's hangs are those of
    :class:`IMAPMailbox`; this adds the IDLE steps, each bounded in time and raced against the loss
    of the connection (aioimaplib's own ``idle_start`` hangs forever when the server closes before
    its ``+`` continuation, and ``wait_server_push`` sits out its whole timeout after a hang-up):

    * :meth:`idle_start` sends IDLE and returns once the server's ``+`` arrived;
    * :meth:`idle_wait` returns what the server pushed, or nothing after the given time;
    * :meth:`idle_done` sends DONE and waits for the tagged OK;
    * :meth:`noop` asks the server for a sign of life between IDLE rounds.

    A ``* BYE`` (RFC 9051 section 7.1.5), end of file or a reset is a :class:`~maild.errors.ConnectError`
    at once, silence beyond ``timeout_s`` where an answer is due a :class:`~maild.errors.NetworkTimeout`;
    either way the session is discarded. Not safe for concurrent use by several tasks.

    Args:
        settings: as for :class:`IMAPMailbox`.
        mailbox: the readable name of the mailbox to watch.
    """

    def __init__(self, settings: ServerSettings, mailbox: str = "INBOX") -> None:
        super().__init__(settings, (mailbox,))
        self.mailbox = mailbox
        self._idle_task: asyncio.Future[Any] | None = None

    @property
    def supports_idle(self) -> bool:
        """Whether the server advertised IDLE after login (RFC 2177 section 3)."""
        return "IDLE" in self.capabilities

    @property
    def idling(self) -> bool:
        """Whether an IDLE command is outstanding (sent, not yet ended with DONE)."""
        return self._idle_task is not None

    def keepalive(self, idle_s: int, interval_s: int, count: int) -> None:
        """Turn on TCP keepalive, so that a peer that vanished without a reset is noticed.

        After ``idle_s`` seconds without traffic the kernel probes every ``interval_s`` seconds and
        closes the connection after ``count`` unanswered probes; the loss then arrives like any other.
        Best effort: options the platform lacks are skipped.
        """
        with contextlib.suppress(Exception):
            sock = self._client.protocol.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", idle_s),
                ("TCP_KEEPINTVL", interval_s),
                ("TCP_KEEPCNT", count),
            ):
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    async def select_mailbox(self) -> wire.SelectInfo:
        """SELECT the watched mailbox.

        Raises:
            ProtocolError: it cannot be selected (e.g. ``[NONEXISTENT]``), BAD.
            ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`open`.
        """
        return await self._select(self.mailbox)

    def _check_alive(self, what: str) -> Any:
        """The protocol object of a usable, connected session (raises otherwise)."""
        protocol = self._protocol
        if self._lost is None or self._lost.done():
            self._discard("connection lost")
            raise self._error(ConnectError, f"{what}: connection lost")
        return protocol

    async def idle_start(self) -> None:
        """Send IDLE and return once the server's ``+`` continuation arrived.

        Standard: RFC 2177 section 3.

        Cancelled at any await: the session is discarded.

        Raises:
            ProtocolError: the server lacks IDLE, answered NO or BAD, or IDLE is already running.
            ConnectError: the connection was lost before the ``+`` (aioimaplib issue #110).
            NetworkTimeout: no ``+`` within ``timeout_s`` seconds.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("IDLE")
        if self._idle_task is not None:
            raise self._error(ProtocolError, "IDLE is already running")
        if not self.supports_idle:
            raise self._error(ProtocolError, "server lacks IDLE", standard="RFC 2177")
        assert self._lost is not None
        protocol._idle_event.clear()
        command = aioimaplib.IdleCommand(protocol.new_tag(), protocol.idle_queue, loop=protocol.loop)
        idle = asyncio.ensure_future(protocol.execute(command))
        idle.add_done_callback(consume_outcome)
        self._idle_task = idle
        ack = asyncio.ensure_future(protocol.wait_for_idle_response())
        try:
            await asyncio.wait(
                (idle, ack, self._lost), timeout=self._settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._discard("IDLE cancelled")
            raise
        finally:
            if not ack.done():
                ack.cancel()
        if ack.done() and not ack.cancelled() and not idle.done():
            return
        self._idle_task = None
        if idle.done() and not idle.cancelled() and idle.exception() is None:
            _lines, status = self._completion(idle.result(), "IDLE")
            self._discard("IDLE refused")
            raise self._refused(status, "IDLE")
        if self._lost.done() or idle.done():
            self._discard("connection lost before IDLE continuation")
            raise self._error(ConnectError, "IDLE: connection lost before the server's continuation")
        self._discard("IDLE continuation timed out")
        raise self._error(
            NetworkTimeout, f"IDLE: no continuation from server within {self._settings.timeout_s:g} s"
        )

    def _drain(self, protocol: Any) -> list[imap_lex.Part]:
        lines: list[imap_lex.Part] = []
        while not protocol.idle_queue.empty():
            item = protocol.idle_queue.get_nowait()
            if isinstance(item, list):
                lines.extend(item)
        return lines

    def _events(self, lines: list[imap_lex.Part], what: str) -> wire.MailboxEvents:
        events = wire.parse_mailbox_events(lines)
        if events.bye is not None:
            self._idle_task = None
            self._discard("server said BYE")
            raise self._error(ConnectError, f"{what}: server closed the session: BYE {events.bye}")
        return events

    async def idle_wait(self, timeout_s: float) -> wire.MailboxEvents:
        """Wait up to ``timeout_s`` seconds for the server to push untagged responses during IDLE.

        Returns:
            What arrived (``changed`` is true for EXISTS, RECENT or EXPUNGE); empty after the time.

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            ProtocolError: no IDLE is running, or the server ended it unasked.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("IDLE")
        idle = self._idle_task
        if idle is None:
            raise self._error(ProtocolError, "IDLE is not running")
        assert self._lost is not None
        lines = self._drain(protocol)
        if not lines:
            get = asyncio.ensure_future(protocol.idle_queue.get())
            get.add_done_callback(consume_outcome)
            try:
                await asyncio.wait(
                    (get, idle, self._lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                get.cancel()
                self._discard("IDLE wait cancelled")
                raise
            if get.done() and not get.cancelled():
                item = get.result()
                lines = list(item) if isinstance(item, list) else []
            else:
                get.cancel()
            lines += self._drain(protocol)
        events = self._events(lines, "IDLE")
        if lines:
            return events
        if self._lost.done():
            self._idle_task = None
            self._discard("connection lost during IDLE")
            raise self._error(ConnectError, "IDLE: connection lost")
        if idle.done():
            self._idle_task = None
            self._discard("server ended IDLE")
            raise self._error(ProtocolError, "IDLE: the server ended IDLE without DONE", standard="RFC 2177")
        return events

    async def idle_done(self) -> wire.MailboxEvents:
        """End IDLE with DONE and wait up to ``timeout_s`` seconds for the tagged OK.

        Returns:
            What the server pushed and nobody collected yet. Nothing when no IDLE was running.

        Cancelled at any await: the session is discarded.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            NetworkTimeout: no completion within ``timeout_s`` seconds (a dead or stalled server).
            ProtocolError: IDLE ended NO or BAD.
            TransientError: the session was discarded earlier.
        """
        idle = self._idle_task
        if idle is None:
            return wire.MailboxEvents()
        protocol = self._check_alive("DONE")
        assert self._lost is not None
        self._idle_task = None
        if not idle.done():
            protocol.idle_done()
        try:
            await asyncio.wait(
                (idle, self._lost), timeout=self._settings.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._discard("DONE cancelled")
            raise
        events = self._events(self._drain(protocol), "DONE")
        if not idle.done() or idle.cancelled() or idle.exception() is not None:
            if self._lost.done() or idle.done():
                self._discard("connection lost after DONE")
                raise self._error(ConnectError, "DONE: connection lost")
            self._discard("DONE timed out")
            raise self._error(
                NetworkTimeout, f"DONE: no answer from server within {self._settings.timeout_s:g} s"
            )
        _lines, status = self._completion(idle.result(), "IDLE")
        if not status.ok:
            self._discard("IDLE ended with an error")
            raise self._refused(status, "IDLE")
        return events

    async def noop(self) -> wire.MailboxEvents:
        """Send NOOP (a liveness check) and return the mailbox events that came with its answer.

        Standard: RFC 9051 section 6.1.2.

        Raises:
            ConnectError: ``* BYE``, or the connection was lost.
            NetworkTimeout: no answer within ``timeout_s`` seconds.
            ProtocolError: NOOP answered BAD; a broken response.
            TransientError: the session was discarded earlier.
        """
        protocol = self._check_alive("NOOP")
        lines = await self._command("NOOP", lambda: protocol.simple_command("NOOP"))
        return self._events(lines, "NOOP")

    async def close(self) -> None:
        """End IDLE if it runs (best effort), then LOGOUT as :meth:`IMAPMailbox.close` does."""
        if self._idle_task is not None:
            try:
                await self.idle_done()
            except MaildError:
                await self.abort()
                return
        await super().close()

    async def abort(self) -> None:
        """Close the connection at once, dropping a running IDLE. Never raises."""
        idle, self._idle_task = self._idle_task, None
        if idle is not None and not idle.done():
            idle.cancel()
        await super().abort()
