"""One guarded client call of an IMAP connection: raced against inactivity, a progress floor and the loss
of the connection, with the only mapping of foreign exceptions to :mod:`maild.errors` in the IMAP adapter.

aioimaplib leaves a command pending forever when the connection drops, and its own timeout never fires
while octets trickle in; :func:`guarded_call` bounds both. It is the body of
:meth:`maild.protocols.imap.connection.IMAPConnection.call` (split out of ``connection`` by job, session 14
follow-up), and works on anything with the connection's ``settings``, ``discard`` and ``error``
(:class:`Guarded`); it never imports the connection.

May import: asyncio, ssl, :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.protocols.progress`,
:mod:`maild.protocols.imap.client` and :mod:`maild.protocols.imap.protocol` (a bound only).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from maild.errors import (
    SHOWN_REPLY_OCTETS,
    AccountError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
)
from maild.model import ServerSettings
from maild.protocols.imap.client import IMAPClient, LibraryError, LibraryTimeout
from maild.protocols.imap.protocol import MAX_BYE_OCTETS
from maild.protocols.progress import ProgressFloor
from maild.secret import shown

__all__ = [
    "COMMAND_MIN_RATE_OCTETS_PER_S",
    "COMMAND_WINDOW_TIMEOUTS",
    "MIN_UPLOAD_OCTETS_PER_S",
    "SLOW_COMMAND_TIMEOUTS",
    "Guarded",
    "consume_outcome",
    "guarded_call",
    "lost_error",
]

#: Slowest upload rate assumed for APPEND, in octets per second: while a message is being sent
#: nothing arrives, so the inactivity limit is extended by its size divided by this rate.
MIN_UPLOAD_OCTETS_PER_S = 32 * 1024
#: Floor on the receive rate of a command's response other than a message transfer (which has the
#: account's ``min_transfer_rate``), in octets per second: 64. Far below any real server (a listing
#: of sizes arrives at kilobytes per second even at 50 ms round trips), far above one octet a second.
COMMAND_MIN_RATE_OCTETS_PER_S = 64
#: The window of that floor, in multiples of the account's ``timeout_s``: 2 (two minutes at the default
#: 60 s). A response that is complete within it is never measured; a longer one must bring at least
#: COMMAND_MIN_RATE_OCTETS_PER_S x window octets per window. Bounds a trickled response like POP3's
#: one-line replies (``LINE_REPLY_TIMEOUTS``, session 13).
COMMAND_WINDOW_TIMEOUTS = 2
#: The deadline of a command a server may rightly work on for long without a word, in multiples of the
#: account's ``timeout_s``: 10 (ten minutes at the default 60 s). ``EXPUNGE``/``UID EXPUNGE`` of a large
#: mailbox and ``UID SEARCH`` of a big one (RFC 9051 sections 6.4.3, 6.4.9, 6.4.4) are answered only
#: once the server has done the work; with the account's ``timeout_s`` (silence) and the floor above
#: (after 2 x ``timeout_s``) they were cut and retried, for ever (session 15). Such a command
#: (``slow=True``) may be silent that long, and its response is measured against the same
#: COMMAND_MIN_RATE_OCTETS_PER_S floor in windows of that length: a server trickling it is still cut,
#: after ten ``timeout_s`` instead of two.
SLOW_COMMAND_TIMEOUTS = 10

T = TypeVar("T")


class Guarded(Protocol):
    """What a guarded call needs of its connection (an :class:`~.connection.IMAPConnection`)."""

    settings: ServerSettings

    def discard(self, reason: str) -> None:
        """Mark the connection unusable and close it. Never raises."""

    def error(
        self, cls: type[AccountError], message: str, *, line: str = "", standard: str = ""
    ) -> AccountError:
        """An error of class ``cls`` naming the account, secrets masked."""


def consume_outcome(task: asyncio.Future[Any]) -> None:
    """Mark a task's exception as retrieved (it may finish after we stopped waiting)."""
    if not task.cancelled():
        task.exception()


async def guarded_call(
    connection: Guarded,
    client: IMAPClient,
    lost: asyncio.Future[None],
    what: str,
    start: Callable[[], Awaitable[T]],
    *,
    send_octets: int = 0,
    timeout_s: float | None = None,
    progress: ProgressFloor | None = None,
    on_transfer: Callable[[int, float], None] = lambda octets, seconds: None,
    slow: bool = False,
) -> T:
    """Run one client call of an open connection, raced against inactivity and the loss of the connection.

    Args:
        connection: the connection ``client`` belongs to; discarded on any failure.
        client: its open client. lost: resolved when its connection is lost.
        what: the command, for error messages (never holds a secret).
        start: makes the awaitable.
        send_octets: octets the command uploads (APPEND); the inactivity limit is extended by
            ``send_octets / MIN_UPLOAD_OCTETS_PER_S`` seconds, since nothing arrives meanwhile.
        timeout_s: the inactivity limit in seconds; default the account's ``timeout_s``.
        progress: the progress floor of a message transfer this wait belongs to (the time spent here
            counts towards its windows), or None: then a floor of :data:`COMMAND_MIN_RATE_OCTETS_PER_S`
            in windows of :data:`COMMAND_WINDOW_TIMEOUTS` x ``timeout_s`` (plus the upload's allowance)
            applies.
        on_transfer: called with the wire octets received and the seconds waited, after a wait with
            ``progress`` (a message transfer; the link's rate is measured on those only).
        slow: a command the server may work on silently for long (``EXPUNGE``, ``UID SEARCH``): without
            ``timeout_s``, the inactivity limit and the floor's window are both
            :data:`SLOW_COMMAND_TIMEOUTS` x the account's ``timeout_s``.

    Cancelled: the connection is discarded and the cancellation propagates.

    Raises:
        NetworkTimeout: nothing arrived for ``timeout_s`` seconds, or data arrived slower than the
            floor over one of its windows ("server too slow").
        ConnectError: the connection was lost or could not be made, or TLS failed.
        ProtocolError: aioimaplib rejected the state of the session or a response, or the server broke
            a :class:`~.client.ReadLimits` cap (the text names which; the connection was dropped before
            the data was read).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(start())
    task.add_done_callback(consume_outcome)
    began = loop.time() + send_octets / MIN_UPLOAD_OCTETS_PER_S
    limit_s = connection.settings.timeout_s if timeout_s is None else timeout_s
    window_s = COMMAND_WINDOW_TIMEOUTS * limit_s
    if slow and timeout_s is None:
        limit_s = window_s = SLOW_COMMAND_TIMEOUTS * connection.settings.timeout_s
    transfer = progress is not None
    if progress is None:
        # Any other command's response (the greeting, CAPABILITY, LOGIN, SELECT, listings, ...):
        # the inactivity limit never fires while octets trickle in, so a server sending one octet
        # a second held the session, its cycle slot and its host connection for days (QA of
        # session 14). A floor far below any real response, measured only after a first window of
        # COMMAND_WINDOW_TIMEOUTS x timeout_s (SLOW_COMMAND_TIMEOUTS x for a slow command) plus the
        # upload's own allowance.
        progress = ProgressFloor(
            COMMAND_MIN_RATE_OCTETS_PER_S,
            window_s + send_octets / MIN_UPLOAD_OCTETS_PER_S,
            loop.time,
        )
    progress.go(client.received_octets)
    wire_before, wait_began = client.wire_octets, loop.time()
    try:
        while not task.done():
            remaining = max(began, client.last_received) + limit_s - loop.time()
            if remaining <= 0:
                connection.discard(f"{what} timed out")
                raise connection.error(NetworkTimeout, f"{what}: no data from server for {limit_s:g} s")
            too_slow = progress.check(client.received_octets)
            if too_slow is not None:
                connection.discard(f"{what}: server too slow")
                raise connection.error(NetworkTimeout, f"{what}: {too_slow}")
            remaining = min(remaining, max(progress.remaining_s(), 0.01))
            await asyncio.wait((task, lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and lost.done():
                connection.discard(f"connection lost during {what}")
                raise lost_error(connection, what, client)
        return task.result()
    except asyncio.CancelledError:
        connection.discard(f"{what} cancelled")
        current = asyncio.current_task()
        if task.cancelled() and current is not None and not current.cancelling():
            raise connection.error(ProtocolError, f"{what}: cancelled inside aioimaplib") from None
        raise
    except MaildError:
        connection.discard(f"{what} failed")
        raise
    except (TimeoutError, LibraryTimeout):
        connection.discard(f"{what} timed out")
        raise connection.error(NetworkTimeout, f"{what}: timed out after {limit_s:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        connection.discard("TLS certificate rejected")
        raise connection.error(
            ConnectError, f"{what}: TLS certificate rejected: {exc.verify_message}"
        ) from None
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        connection.discard(f"{what} failed: {type(exc).__name__}")
        raise connection.error(ConnectError, f"{what}: {type(exc).__name__}: {exc}") from None
    except (LibraryError, RecursionError, ValueError) as exc:
        connection.discard(f"{what} failed in aioimaplib")
        detail = str(exc) if isinstance(exc, LibraryError) else f"{type(exc).__name__}: {exc}"
        raise connection.error(ProtocolError, f"{what}: aioimaplib failed: {detail}") from None
    finally:
        progress.stop()
        if transfer:
            on_transfer(client.wire_octets - wire_before, loop.time() - wait_began)
        if not task.done():
            task.cancel()


def lost_error(connection: Guarded, what: str, client: IMAPClient) -> AccountError:
    """The error for a lost connection, with the cap broken or the server's last words if known."""
    if client.exceeded is not None:
        return connection.error(ProtocolError, f"{what}: {client.exceeded}; connection dropped")
    greeting = client.greeting_refused
    if greeting is not None:
        # masked before the cut (a secret cut in two is not recognised later)
        text = shown(bytes(greeting[:SHOWN_REPLY_OCTETS]).decode("utf-8", "replace"), 200)
        return connection.error(ConnectError, f"{what}: server refused the session: {text}")
    bye = client.last_bye
    if bye is not None:
        text = shown(bye.decode("utf-8", "replace"), MAX_BYE_OCTETS)
        return connection.error(ConnectError, f"{what}: server closed the connection: {text}")
    return connection.error(ConnectError, f"{what}: connection lost")
