"""POP3 retrieval in RETR windows (RFC 1939 section 7, RFC 2449 section 6.6): :class:`RETRWindows`.

One :meth:`~maild.protocols.pop3.maildrop.POP3Maildrop.retrieve` call plans windows of RETR commands
(up to ``window`` commands and about a window's octets by LIST size), sends the next window ahead
of reading the current one when the server announces PIPELINING (a sliding window: at most two
windows requested and unread), reads each window in parts of about :data:`HAND_OFF_OCTETS` (one
executor job each) and turns each part's replies into what the maildrop yields: retrieved messages
and per-message failures, in key order. The maildrop keeps the session, its inventory and the
executor; this module only borrows them for one call.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import structlog

from maild.errors import MaildError
from maild.model import MessageKey, POP3Key, RetrievalFailure, RetrievedMessage
from maild.protocols.pop3 import identity, wire
from maild.spool import local_failure

if TYPE_CHECKING:
    from maild.protocols.pop3.digest_inventory import Run
    from maild.protocols.pop3.session import POP3Session
    from maild.spool import Spool

_log = structlog.stdlib.get_logger("maild.protocols.pop3.maildrop")  # its events, as before the split

HAND_OFF_OCTETS = 2**20
"""About how many octets of messages (LIST sizes) one executor job of a retrieval
(:meth:`RETRWindows.results`) reads before handing them to the event loop (at least one message).
Bounds what the adapter holds beyond the consumer's batches: a whole RETR window (up to
``window_octets``) stays in flight on the connection, not in this process."""
MIN_WINDOW_OCTETS = 8 * 2**20
"""Default floor of a RETR window in octets (LIST sizes), whatever the consumer's ``window_octets()``
asks. The consumer sizes windows by its memory share (:data:`maild.limits.MEMORY_BUDGET_OCTETS`),
but a POP3 window is not held here (it is read in parts of :data:`HAND_OFF_OCTETS`; the rest
waits on the connection), so shrinking it saves no memory and only costs round trips: at 50 ms,
8 MiB per window (two in flight) carries about 300 MB/s, more than one stream of the benchmark
needs. (In ``maildrop.py`` until session 15.)"""


def window_budget(
    asked: Callable[[], int] | None, default_octets: int, floor_octets: int
) -> Callable[[], int]:
    """The size in octets (LIST sizes) of each next RETR window: the consumer's ``asked()`` raised to
    ``floor_octets`` (the window waits on the connection, not in memory), or ``default_octets`` when
    the consumer asks nothing."""
    if asked is None:
        return lambda: default_octets
    return lambda: max(asked(), floor_octets)


class RETRWindows:
    """The RETR windows of one retrieval over a logged-in POP3 session (see the module docstring).

    Args:
        session: the maildrop's session, in the TRANSACTION state (RFC 1939 section 4).
        run: the maildrop's executor step runner (cancellation shuts the socket and breaks the session).
        account: the account's name, for log events.
        window: most RETR commands in one window (with PIPELINING; 1 without).
        msgnum: the message-number of a key in this session, or None when it has none (not in the
            inventory, or its UIDL is not unique).
        size_by_uidl: UIDL (or digest identity) to its size in octets by LIST.
        duplicates: UIDLs the inventory found on more than one message.
        digests: whether identities are digests of content (each message is checked against its own).
        spool: where messages of at least its threshold are written as they arrive, or None.
    """

    def __init__(
        self,
        session: POP3Session,
        run: Run,
        *,
        account: str,
        window: int,
        msgnum: Callable[[MessageKey], int | None],
        size_by_uidl: Mapping[str, int],
        duplicates: frozenset[str],
        digests: bool,
        spool: Spool | None,
    ) -> None:
        self._session = session
        self._run = run
        self._account = account
        self._window = window
        self._msgnum = msgnum
        self._size_by_uidl = size_by_uidl
        self._duplicates = duplicates
        self._digests = digests
        self._spool = spool
        #: Keys whose RETR the server answered ``-ERR``: not served (nothing downloaded).
        self.refused: set[MessageKey] = set()

    async def results(
        self, keys: Sequence[MessageKey], budget: Callable[[], int]
    ) -> AsyncGenerator[RetrievedMessage | RetrievalFailure, None]:
        """RETR each of ``keys`` in windows of about ``budget()`` octets by LIST size (asked per
        window); yield messages and failures in the order of ``keys`` (the contract of
        :meth:`~maild.protocols.pop3.maildrop.POP3Maildrop.retrieve`).

        When the session breaks mid-window, what arrived whole before it is yielded first, then the
        error is raised.

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken.
        """
        pending = collections.deque(keys)
        window = self._next_window(pending, budget())
        sent = False
        while window:
            ahead = self._next_window(pending, budget())
            send_ahead = ahead if self._session.pipelining else []
            # the first job sends this window's RETRs (unless sent ahead already) and the next window's
            to_send = [[] if sent else [n for _, n in window if n is not None]]
            to_send.append([n for _, n in send_ahead if n is not None])
            sent = any(n is not None for _, n in send_ahead)
            for part in self._hand_off_parts(window):
                replies, mismatched, broken = await self._run(
                    functools.partial(self._retrieve_part, part, to_send)
                )
                to_send = []
                results = self._part_results(part, replies, mismatched)
                del replies
                results.reverse()
                while results:
                    yield results.pop()  # drop our reference before the consumer runs
                if broken is not None:
                    raise broken
            window = ahead

    def _next_window(
        self, pending: collections.deque[MessageKey], octets: int
    ) -> list[tuple[MessageKey, int | None]]:
        """Take the next RETR window off ``pending``: up to ``window`` commands (1 without PIPELINING)
        and about ``octets`` octets by LIST size, at least one message; keys without a message-number
        ride along (they fail without asking the server)."""
        limit = self._window if self._session.pipelining else 1
        window: list[tuple[MessageKey, int | None]] = []
        count = total = 0
        while pending:
            key = pending[0]
            msgnum = self._msgnum(key)
            if msgnum is not None:
                size = self._size_by_uidl[cast(POP3Key, key).uidl]
                if count and (count >= limit or total + size > octets):
                    break
                count += 1
                total += size
            window.append((pending.popleft(), msgnum))
        return window

    def _hand_off_parts(
        self, window: Sequence[tuple[MessageKey, int | None]]
    ) -> list[list[tuple[MessageKey, int | None]]]:
        """Cut a RETR window into the parts one executor job reads: about :data:`HAND_OFF_OCTETS`
        by LIST size, at least one message each."""
        parts: list[list[tuple[MessageKey, int | None]]] = []
        part: list[tuple[MessageKey, int | None]] = []
        octets = 0
        for key, msgnum in window:
            part.append((key, msgnum))
            if msgnum is not None:
                octets += self._size_by_uidl[cast(POP3Key, key).uidl]
                if octets >= HAND_OFF_OCTETS:
                    parts.append(part)
                    part, octets = [], 0
        if part:
            parts.append(part)
        return parts

    def _part_results(
        self,
        part: Sequence[tuple[MessageKey, int | None]],
        replies: list[wire.Reply],
        mismatched: frozenset[int],
    ) -> list[RetrievedMessage | RetrievalFailure]:
        """What to yield for ``part``: its messages and failures in order, up to the first reply that
        did not arrive (the session broke there)."""
        results: list[RetrievedMessage | RetrievalFailure] = []
        it = iter(replies)
        for key, msgnum in part:
            if msgnum is None:
                duplicate = cast(POP3Key, key).uidl in self._duplicates
                reason = (
                    "UIDL is not unique in the maildrop" if duplicate else "not in this session's inventory"
                )
                results.append(RetrievalFailure(key, reason))
                continue
            reply = next(it, None)
            if reply is None:  # the session broke before this reply was complete
                break
            body = reply.spooled if reply.spooled is not None else reply.body
            if reply.spool_error is not None:  # read and dropped: not retrieved this cycle
                results.append(local_failure(key, reply.spool_error))
            elif body is None:
                self.refused.add(key)
                results.append(RetrievalFailure(key, self._session.redact(reply.status.render())))
            elif msgnum in mismatched:
                uidl = cast(POP3Key, key).uidl
                _log.warning("pop3.identity.mismatch", account=self._account, key=uidl)
                reason = "content differs from its digest identity; not stored"
                results.append(RetrievalFailure(key, reason))
                if reply.spooled is not None:
                    reply.spooled.close()
            else:
                results.append(RetrievedMessage(key, body))
        return results

    def _retrieve_part(
        self, part: Sequence[tuple[MessageKey, int | None]], send: Sequence[Sequence[int]] = ()
    ) -> tuple[list[wire.Reply], frozenset[int], MaildError | None]:
        """Read the RETR replies of one part of a window (in the worker thread), after sending the
        RETRs of each list of message-numbers in ``send`` (one send each: the window's own on its
        first part, unless sent ahead already, and the next window's, read by later jobs).

        With digest identities, also return the message-numbers whose octets do not match their
        identity (see :func:`~maild.protocols.pop3.identity.key_matches`), which must not be stored
        under it. When the session breaks, return the replies that arrived whole before it (a prefix
        of the part's) with the error, for the caller to raise after yielding them."""
        targets = [(cast(POP3Key, key), n) for key, n in part if n is not None]
        session = self._session
        replies: list[wire.Reply] = []
        broken: MaildError | None = None
        try:
            with session.mapped("retrieving"):
                for numbers in send:
                    if numbers:
                        session.send_ahead([f"RETR {n}" for n in numbers], multiline=True)
                session.receive(len(targets), multiline=True, into=replies, spool=self._spool)
        except MaildError as exc:  # mapped: the session is broken
            broken = exc
        if not self._digests:
            return replies, frozenset(), broken
        mismatched = frozenset(
            n
            for (key, n), reply in zip(targets, replies, strict=False)
            if (
                reply.body is not None
                and not identity.key_matches(key.uidl, reply.body, self._size_by_uidl[key.uidl])
            )
            or (
                reply.spooled is not None
                and not identity.spooled_key_matches(key.uidl, reply.spooled, self._size_by_uidl[key.uidl])
            )
        )
        return replies, mismatched, broken
