"""AUTHENTICATE for :class:`~maild.protocols.imap.connection.IMAPConnection` (RFC 9051 section 6.2.2).

:class:`AuthenticateOver` is the :class:`maild.auth.imap.AuthenticateTransport` that
:func:`maild.auth.imap.authenticate` drives: each line goes through the connection's client
(:meth:`~maild.protocols.imap.client.IMAPClient.authenticate`), each wait through
:meth:`~maild.protocols.imap.connection.IMAPConnection.call` (inactivity limit, connection loss, error
mapping).

May import: :mod:`maild.auth.imap`, :mod:`maild.errors`, :mod:`maild.protocols.imap.client` and
:mod:`maild.protocols.imap.wire`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from maild.auth import imap as imap_auth
from maild.errors import AccountError, ConnectError, ProtocolError
from maild.protocols.imap import wire
from maild.protocols.imap.client import Authentication, IMAPClient, Reply
from maild.protocols.imap.lex import Part

__all__ = ["AuthenticateOver", "Connection"]

T = TypeVar("T")


class Connection(Protocol):
    """What this module needs of :class:`~maild.protocols.imap.connection.IMAPConnection` (which
    imports this module, so it is described here rather than imported)."""

    @property
    def client(self) -> IMAPClient: ...
    async def call(self, what: str, start: Callable[[], Awaitable[T]]) -> T: ...
    def completion(self, reply: Reply, what: str) -> tuple[list[Part], wire.StatusResponse]: ...
    def discard(self, reason: str) -> None: ...
    def error(self, cls: type[AccountError], message: str) -> AccountError: ...


class AuthenticateOver:
    """:class:`maild.auth.imap.AuthenticateTransport` over an :class:`IMAPConnection`'s client.

    Every wait goes through :meth:`IMAPConnection.call` (inactivity limit, connection loss, error
    mapping); ``what`` is always ``"AUTHENTICATE"``, never a line that holds the secret.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._exchange: Authentication | None = None
        #: The parsed tagged status of the last AUTHENTICATE (its CAPABILITY code is kept by the caller).
        self.final: wire.StatusResponse | None = None

    async def send_command(self, command: bytes) -> None:
        """Start ``AUTHENTICATE MECH [initial-response]`` (the tag is the client's)."""
        words = command.split(b" ")
        if len(words) not in (2, 3) or words[0] != b"AUTHENTICATE":
            raise ValueError("expected AUTHENTICATE MECHANISM [INITIAL-RESPONSE]")
        initial = words[2] if len(words) == 3 else None
        del command, words[2:]
        self._exchange = self._connection.client.authenticate(words[1].decode("ascii"), initial)

    async def send_line(self, line: bytes) -> None:
        """Answer a continuation request."""
        exchange = self._exchange
        assert exchange is not None
        try:
            exchange.send_line(line)
        except OSError:
            self._connection.discard("connection lost during AUTHENTICATE")
            raise self._connection.error(ConnectError, "AUTHENTICATE: connection lost") from None

    async def read_response(self) -> imap_auth.Continuation | imap_auth.TaggedStatus:
        """The next continuation request or the tagged status (parsed, RFC 9051 section 7.1)."""
        exchange = self._exchange
        assert exchange is not None
        item = await self._connection.call("AUTHENTICATE", exchange.next)
        if isinstance(item, bytes):
            return imap_auth.Continuation(item)
        _lines, status = self._connection.completion(item, "AUTHENTICATE")
        self.final = status
        if status.condition not in ("OK", "NO", "BAD"):
            raise self._connection.error(
                ProtocolError, f"AUTHENTICATE: unexpected completion {status.condition}"
            )
        return imap_auth.TaggedStatus(status.condition, status.code, status.text)
