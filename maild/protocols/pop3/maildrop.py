"""POP3 adapter: the async :class:`POP3Maildrop` over a blocking POP3 session in a worker thread.

Blocking work runs in maild's thread pool, one executor job per step (login, inventory, one window of
RETRs or DELEs, QUIT: :mod:`~maild.protocols.pop3.steps`); the session itself (poplib, TLS, maild's
own reply reader) lives in :mod:`maild.protocols.pop3.session`. The steps' jobs are in their own
modules (session 15's split): the inventory (:mod:`~maild.protocols.pop3.inventories`), RETR windows
(:mod:`~maild.protocols.pop3.retrieval`), TOP reads (:mod:`~maild.protocols.pop3.top_reads`), DELE
(:mod:`~maild.protocols.pop3.marking`), what was served (:mod:`~maild.protocols.pop3.served`).

Cancellation: cancelling asyncio does not stop a thread, so a cancelled step shuts the socket down, which
makes the blocked thread return at once. The session is then broken: :meth:`POP3Maildrop.abort` only
closes it. Dropping a POP3 session without ``+OK`` to QUIT never enters the UPDATE state, so nothing marked
with DELE is deleted (RFC 1939 section 6).

Only this module, :mod:`~maild.protocols.pop3.session` and the IMAP adapter's modules catch
``poplib.error_proto``, ``ssl.SSLError`` and ``OSError``; they leave it as :mod:`maild.errors` classes
naming the account, never the password.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import cast

import structlog

from maild.model import (
    InventoryEntry,
    MessageKey,
    POP3Key,
    RetrievalFailure,
    RetrievedMessage,
    ServerSettings,
)
from maild.protocols.base import Maildrop
from maild.protocols.pop3 import inventories, marking, top_reads
from maild.protocols.pop3.retrieval import MIN_WINDOW_OCTETS, RETRWindows, window_budget
from maild.protocols.pop3.served import ServedLedger
from maild.protocols.pop3.session import (
    ABORT_TIMEOUT_S,
    READ_CHUNK_OCTETS,
    POP3Session,
)
from maild.protocols.pop3.steps import SessionSteps

__all__ = ["ABORT_TIMEOUT_S", "READ_CHUNK_OCTETS", "POP3Maildrop"]

_log = structlog.stdlib.get_logger(__name__)


class POP3Maildrop(Maildrop):
    """One POP3 session (RFC 1939) with one account's server, run in maild's thread pool.

    Identities are UIDLs (RFC 1939 section 7). Message-numbers are remembered for this session only and
    never leave this object. Messages whose UIDL appears more than once in the listing cannot be
    addressed by UIDL: :meth:`inventory` leaves them out and logs ``pop3.uidl.duplicate``. A server
    without UIDL gets identities computed from the messages' content instead (see
    :mod:`~maild.protocols.pop3.identity` and :attr:`identity`).

    Args:
        settings: how to reach and log in. Every socket operation (connect, TLS handshake, each send,
            each read) is limited to ``settings.timeout_s`` seconds.
        executor: maild's POP3 thread pool; each step is one job in it.
        window: most RETR or DELE commands sent ahead in one round trip when the server announces
            PIPELINING (RFC 2449 section 6.6); one at a time otherwise. 1 disables pipelining.
        window_octets: about how many octets of messages (LIST sizes) one RETR window may request; a
            window always holds at least one message.
        max_reply_octets: cap on one reply in octets; a larger message fails the session with
            ProtocolError.
        max_message_size: the account's ``max_message_size`` in octets, or None. Without UIDL, a
            message larger than this (by LIST) is never read to identify it (neither RETR nor
            ``TOP n 0``: a server may delete what it served at QUIT): the fetch cycle skips it
            anyway. It gets the placeholder identity ``"unidentified:<octets>:<msgnum>"``, which
            names nothing in the archive.
        min_window_octets: floor of a RETR window in octets whatever :meth:`retrieve`'s
            ``window_octets()`` asks (see :data:`MIN_WINDOW_OCTETS`); 0 for none.
    """

    def __init__(
        self,
        settings: ServerSettings,
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        window: int = 200,  # one commit batch of fetch/cycle.py in one round trip (see docs/performance.md)
        window_octets: int = 16 * 2**20,
        max_reply_octets: int = 100 * 2**20,
        max_message_size: int | None = None,
        min_window_octets: int = MIN_WINDOW_OCTETS,
    ) -> None:
        if window < 1 or window_octets < 1 or max_reply_octets < 1:
            raise ValueError("window, window_octets and max_reply_octets must be positive")
        self._settings = settings
        self._window = window
        self._window_octets = window_octets
        self._min_window_octets = min_window_octets
        self._max_message_size = max_message_size
        self._session = POP3Session(settings, max_reply_octets)
        self._steps = SessionSteps(self._session, executor, settings.account)
        self._run = self._steps.run
        #: The last :meth:`inventory` (message-numbers and sizes of this session), None before it.
        self._found: inventories.Inventory | None = None
        #: What :meth:`peek` learnt: how the server sizes messages, the reads that fell back to RETR.
        self._peeked = top_reads.PeekMemory()
        #: What this session served (RETR, TOP; a server deleting downloaded mail may remove it at
        #: QUIT); see :meth:`served_unkept`.
        self._served = ServedLedger()

    @property
    def retr_fallbacks(self) -> list[tuple[MessageKey, str]]:
        """Messages :meth:`peek` read with RETR (TOP not offered, refused or short), with why."""
        return self._peeked.fallbacks

    @property
    def capabilities(self) -> Mapping[str, tuple[str, ...]]:
        """The server's CAPA after login (RFC 2449 section 5): upper-cased tag to parameters; empty if
        the server has no CAPA."""
        return dict(self._session.caps)

    @property
    def pipelining(self) -> bool:
        """Whether commands go out in windows (PIPELINING announced, RFC 2449 section 6.6, and a
        window above 1); known after :meth:`open`."""
        return self._window > 1 and self._session.pipelining

    @property
    def duplicate_uidls(self) -> frozenset[str]:
        """UIDLs that the last :meth:`inventory` found on more than one message, left out of it."""
        return self._found.duplicates if self._found is not None else frozenset()

    @property
    def identity(self) -> str:
        """``"uidl"``, or ``"content-digest"`` when the last :meth:`inventory` found no UIDL and
        identified the messages by digests of their content (see :mod:`~maild.protocols.pop3.identity`)."""
        return self._found.identity if self._found is not None else "uidl"

    @property
    def identity_warnings(self) -> Sequence[str]:
        """What the last :meth:`inventory` could not do as usual, in words for the status: digest
        identities and their cost, messages left out of the inventory."""
        return self._found.warnings if self._found is not None else ()

    def _require_open(self) -> None:
        self._steps.require_open()

    async def open(self) -> None:
        """Connect, negotiate TLS, log in with USER/PASS, read CAPA.

        TLS: ``implicit`` wraps from the first octet; ``starttls`` issues STLS (RFC 2595 section 4) and
        never sends USER/PASS if STLS fails; the certificate and host name are always verified against
        ``settings.ca_file`` or the system store.

        Cancelled: nothing on the server has changed. The socket is shut down, or, while the TCP or TLS
        connection is still being made, closed by the connecting thread as soon as it has it (at most
        ``timeout_s`` later). Call :meth:`abort`.

        Raises:
            ConnectError: DNS failure, connection refused, TLS handshake or verification failure.
            AuthError: ``-ERR`` to USER or PASS, unless with a code below (RFC 3206 ``[AUTH]``).
            ThrottledError: ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]`` on the greeting or login.
            TransientError: the greeting was ``-ERR`` without such a code.
            NetworkTimeout: an operation exceeded ``timeout_s``.
            ProtocolError: ``[SYS/PERM]`` at login, STLS refused or not offered, or a malformed reply.
        """
        await self._steps.open()

    async def inventory(self) -> list[InventoryEntry]:
        """UIDL and LIST: one entry per message, in message-number order, sizes in octets from LIST.

        Messages sharing a UIDL are left out (see :attr:`duplicate_uidls`), with a warning. When the
        server does not offer UIDL or refuses it permanently, identities are digests of the messages'
        content instead (``TOP n 0`` and, where needed, RETR; see :mod:`~maild.protocols.pop3.inventories`).

        Cancelled: nothing changes on the server; the session is broken (call :meth:`abort`).

        Standard: RFC 1939 section 7 (UIDL, TOP), section 5 (LIST).

        Raises:
            ThrottledError: UIDL was refused with ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]``
                (a passing condition: identities are not switched to digests for it).
            ProtocolError: the server refused LIST, a listing is malformed, or the two listings disagree
                on the message-numbers.
            NetworkTimeout, ConnectError: the session is broken.
        """
        self._require_open()
        self._found = None
        found = await inventories.take_inventory(
            self._session,
            self._run,
            window=self._window,
            window_octets=self._window_octets,
            max_message_size=self._max_message_size,
        )
        self._found = found
        # every message the digest inventory read to name it (TOP n 0 or RETR): a server deleting
        # what TOP served removes it at QUIT unless it is kept (see served_unkept)
        self._served.named((POP3Key(key) for key in found.served), found.served_unnamed)
        return found.entries

    def _msgnum(self, key: MessageKey) -> int | None:
        if not isinstance(key, POP3Key):
            raise TypeError(f"POP3 key expected, got {type(key).__name__}")
        if self._found is None:
            raise RuntimeError("inventory() must run before retrieve() or delete()")
        return self._found.msgnum_by_uidl.get(key.uidl)

    def _sizes(self) -> dict[str, int]:
        return self._found.size_by_uidl if self._found is not None else {}

    async def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """RETR each message, pipelined in windows when the server allows; yield in the order of ``keys``.

        The windows are :class:`~maild.protocols.pop3.retrieval.RETRWindows`': read in parts of about
        :data:`~maild.protocols.pop3.retrieval.HAND_OFF_OCTETS` (one executor job each, so the adapter
        holds one part, not a window), the next window's RETRs sent before the current one's replies
        are read (with PIPELINING; at most two windows requested and unread). When the session breaks
        mid-window, the messages that arrived whole before it are yielded first, then the error is
        raised (the fetch cycle commits them). Windows hold up to ``window`` commands and about
        ``window_octets()`` octets by LIST size (asked per window; default the adapter's
        ``window_octets``, and never below ``min_window_octets``: a window waits on the connection).
        ``raw`` is the message exactly as sent after un-stuffing, CRLF line endings (RFC 1939 section 3).
        A ``-ERR`` to one RETR yields :class:`RetrievalFailure` with the server's line; a key not in this
        session's inventory (or with a duplicated UIDL) yields RetrievalFailure without asking the server.
        With digest identities (:attr:`identity`), a message whose octets do not match its identity
        yields RetrievalFailure too, so that nothing is stored (and then deleted) under a wrong identity.

        Cancelled while awaiting a window: the socket is shut down and the session broken; nothing was
        deleted. Closing the generator early (it is suspended at a yield) leaves the session usable:
        replies to a window sent ahead are read and dropped by the next command, and :meth:`abort`
        then hangs up without QUIT.

        Standard: RFC 1939 section 7 (RETR), RFC 2449 section 6.6 (PIPELINING).

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken; call :meth:`abort`.
            TypeError: a key is not a POP3Key. RuntimeError: :meth:`inventory` has not run.
        """
        self._require_open()
        # checks every key before the first RETR; each is served before it is sent (one cut short
        # may count as a download)
        self._served.asked([key for key in keys if self._msgnum(key) is not None])

        windows = RETRWindows(
            self._session,
            self._run,
            account=self._settings.account,
            window=self._window,
            msgnum=self._msgnum,
            size_by_uidl=self._sizes(),
            duplicates=self.duplicate_uidls,
            digests=self.identity == "content-digest",
            spool=self.spool,
        )
        budget = window_budget(window_octets, self._window_octets, self._min_window_octets)
        async with contextlib.aclosing(windows.results(keys, budget)) as results:
            while True:
                try:  # no local reference while the consumer runs
                    yield self._noted(await anext(results), windows.refused)
                except StopAsyncIteration:
                    return

    def _noted(
        self, item: RetrievedMessage | RetrievalFailure, refused: Collection[MessageKey]
    ) -> RetrievedMessage | RetrievalFailure:
        """``item``, after taking a message whose RETR was answered ``-ERR`` out of the served ones
        (nothing was downloaded; see :meth:`served_unkept`)."""
        if isinstance(item, RetrievalFailure) and item.key in refused:
            self._served.refused(item.key)
        return item

    async def header_fields(
        self, keys: Sequence[MessageKey], *, max_octets: int
    ) -> dict[MessageKey, bytes]:
        """The header sections of ``keys`` (from this session's :meth:`inventory`) by ``TOP n 0``,
        ``window`` commands per round trip with PIPELINING, one otherwise
        (:func:`~maild.protocols.pop3.top_reads.header_sections`), each reply capped at ``max_octets``.
        Keys not in the inventory, or whose TOP was answered ``-ERR``, are left out; everything is
        when CAPA lists capabilities without TOP (TOP is optional, RFC 1939 section 7).

        Returns:
            Key to the header section as sent, un-stuffed, with the empty line that ends it.

        Cancelled: the socket is shut down and the session broken (call :meth:`abort`).

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken (a reply over
                ``max_octets`` included); call :meth:`abort`.
        """
        self._require_open()
        if self._session.caps and "TOP" not in self._session.caps:
            return {}
        targets = [(key, n) for key in keys if (n := self._msgnum(key)) is not None]
        if not targets:
            return {}
        window = self._window if self._session.pipelining else 1
        return await top_reads.header_sections(
            self._session, self._run, targets, max_octets=max_octets, window=window, served=self._served
        )

    async def peek(
        self, keys: Sequence[MessageKey]
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Each of ``keys`` whole, read with ``TOP n <lines>`` in windows of up to ``window``
        commands and about ``window_octets`` octets by LIST size, yielded in the order of ``keys``;
        where TOP is not offered, refused or not the whole message, with RETR instead, which servers
        may take as a download (Dovecot sets ``\\Seen``; some delete), listed in
        :attr:`retr_fallbacks` (:func:`~maild.protocols.pop3.top_reads.whole_messages`). A key not
        in this session's inventory yields RetrievalFailure.

        Cancelled: the socket is shut down and the session broken (call :meth:`abort`).

        Standard: RFC 1939 section 7 (TOP, RETR), RFC 2449 sections 6.1 (CAPA TOP) and 6.6.

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken; call :meth:`abort`.
        """
        self._require_open()
        known: list[tuple[MessageKey, int, int]] = []
        for key in keys:
            if (msgnum := self._msgnum(key)) is None:
                yield RetrievalFailure(key, "not in this session's inventory (or its UIDL is shared)")
            else:
                known.append((key, msgnum, self._sizes()[cast(POP3Key, key).uidl]))
        reads = top_reads.whole_messages(
            self._session,
            self._run,
            known,
            account=self._settings.account,
            window=self._window,
            window_octets=self._window_octets,
            served=self._served,
            memory=self._peeked,
            retrieve=self.retrieve,
        )
        async with contextlib.aclosing(reads) as items:
            async for item in items:
                yield item

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        """DELE each message, pipelined in windows of up to ``window`` commands when allowed.

        Deletion takes effect only when :meth:`close` gets ``+OK`` to QUIT (RFC 1939 section 6).
        Every key is checked before anything is sent.

        Cancelled: the socket is shut down and the session broken; since no QUIT follows, nothing is
        deleted.

        Standard: RFC 1939 section 5 (DELE), RFC 2449 section 6.6 (PIPELINING).

        Raises:
            ProtocolError: the server refused a DELE (all replies of the window were read first, so the
                session stays usable; :meth:`abort` un-marks everything).
            NetworkTimeout, ConnectError: the session is broken; nothing is deleted.
            ValueError: a key is not in this session's inventory or its UIDL is not unique: such a
                message is never deleted. TypeError, RuntimeError: as for :meth:`retrieve`.
        """
        self._require_open()
        targets: list[tuple[POP3Key, int]] = []
        seen: set[int] = set()  # a repeated key gets one DELE: a second would be refused
        for key in keys:
            msgnum = self._msgnum(key)
            if msgnum is None:
                raise ValueError(
                    f"account {self._settings.account!r}: cannot delete {key!r}: not addressable"
                )
            if msgnum not in seen:
                seen.add(msgnum)
                targets.append((cast(POP3Key, key), msgnum))
        limit = self._window if self._session.pipelining else 1
        await marking.mark_deleted(self._session, self._run, targets, limit)

    async def close(self) -> None:
        """QUIT: the server enters UPDATE and removes the messages marked with DELE; then close.

        Only ``+OK`` to QUIT means the deletions were applied (RFC 1939 section 6).

        Cancelled: QUIT may or may not have reached the server, so deletions may or may not have
        happened; the socket is shut down.

        Raises:
            ProtocolError: QUIT was answered ``-ERR``; deletions may not have happened.
            NetworkTimeout, ConnectError: no reply to QUIT; treat deletions as not done.
        """
        await self._steps.quit()

    async def abort(self) -> None:
        """End the session without applying deletions; never raises (cancellation still propagates).

        An open, in-step session gets RSET and, only after ``+OK`` to it, QUIT, each limited to
        :data:`ABORT_TIMEOUT_S`; a broken one (after an error or cancellation) is only closed, waiting
        at most that long for a step still running in its thread. Either way no UPDATE with deletions
        happens. Safe to call at any time and more than once.

        Cancelled: the socket is closed before the cancellation propagates.

        Standard: RFC 1939 section 5 (RSET) and section 6 (no UPDATE without QUIT).
        """
        await self._steps.end(polite=True)

    async def hang_up(self) -> None:
        """End the session without another command (no RSET, no QUIT: the server never enters UPDATE
        and must remove nothing, RFC 1939 section 6) and close; never raises. A step still running
        is shut down as in :meth:`abort`.

        For retire's check (:mod:`maild.move.source_pop3`) and a failed fetch cycle
        (:meth:`abandon`): a message the server served (TOP or RETR) that was not kept must not
        be removed by a server deleting downloaded mail at QUIT, and ``RSET`` is no promise that
        it does not.

        Standard: RFC 1939 section 6.
        """
        await self._steps.end(polite=False)

    def served_unkept(self, *kept: Collection[MessageKey]) -> bool:
        """Whether a message this session asked for by RETR (also one cut short, not one answered
        ``-ERR``) or TOP (whole, :meth:`peek`; ``TOP n 0``, :meth:`header_fields`) is in none of
        ``kept``. The digest inventory of a server without UIDL counts with every message it read,
        by RETR or ``TOP n 0`` (one read and left without an identity is never kept). See
        :meth:`Maildrop.served_unkept <maild.protocols.base.Maildrop.served_unkept>` and
        :meth:`abandon` (then :meth:`hang_up`, not RSET and QUIT).

        Standard: RFC 1939 section 6 (a session ended without QUIT never enters UPDATE).
        """
        return self._served.unkept(*kept)
