"""The async interface both protocol adapters satisfy.

POP3 blocks in a worker thread of maild's own pool; IMAP is native asyncio. Callers cannot tell.
Foreign exceptions (``OSError``, ``ssl.SSLError``, ``poplib.error_proto``, aioimaplib's) stop at the
adapter and come out as :mod:`maild.errors` classes.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence

from maild.model import InventoryEntry, MessageKey, RetrievalFailure, RetrievedMessage
from maild.spool import Spool


class Maildrop(abc.ABC):
    """One authenticated session with one account's server.

    Life cycle: :meth:`open`, then any number of :meth:`inventory` / :meth:`retrieve` / :meth:`delete`,
    then :meth:`close` (orderly end) or :meth:`abort` (after any error or cancellation). Not safe for
    concurrent use by several tasks.
    """

    spool: Spool | None = None
    """Where :meth:`retrieve` writes messages of at least ``spool.threshold_octets`` as they arrive
    (their ``raw`` then a :class:`~maild.spool.SpooledBody`; see :mod:`maild.spool`); None: every
    message is held in memory. Set by the fetch cycle to the archive's spool before retrieving."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, negotiate TLS and authenticate.

        Raises:
            ConnectError: the host cannot be reached or the TLS handshake fails.
            AuthError: the server refused the credentials.
            ThrottledError: the server asked us to come back later.
            NetworkTimeout: an operation exceeded the account's timeout.
            ProtocolError: a reply broke the protocol grammar.
        """

    @abc.abstractmethod
    async def inventory(self) -> list[InventoryEntry]:
        """Return what the server holds now, in server order.

        POP3: one entry per message of the maildrop (UIDL and LIST, RFC 1939 section 7 and 5).
        IMAP: one entry per message of each configured mailbox (SELECT, UID SEARCH ALL).

        Raises:
            The errors of :meth:`open` except AuthError.
        """

    @abc.abstractmethod
    def retrieve(
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Retrieve the given messages, yielding each as it completes, in the order of ``keys``.

        A message the server refuses individually (POP3 ``-ERR`` to RETR, IMAP FETCH without a body)
        is yielded as :class:`RetrievalFailure` and the rest continue. A connection failure raises.
        Keys must come from this session's :meth:`inventory`.

        The fetch cycle calls this once with everything it retrieves and cuts its commit batches
        from the stream, so an adapter should keep the link busy across its own windows (send the
        next window's commands before the consumer has taken the current one), holding at most
        about ``window_octets()`` octets of messages it has read but not yet yielded, and no more
        than one further window requested from the server. ``window_octets`` is asked again for
        every window (the share of the memory budget changes as other cycles start and end); None:
        the adapter's own limit.

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: the session is broken; call :meth:`abort`.
        """

    async def peek(self, keys: Sequence[MessageKey]) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        """Download ``keys`` whole for a look, changing as little on the server as the protocol
        allows (``maild retire``'s check of A's server): POP3 ``TOP n <lines>`` (RETR only as a
        logged fallback, see :meth:`maild.protocols.pop3.maildrop.POP3Maildrop.peek`); default
        :meth:`retrieve` (IMAP's ``BODY.PEEK[]`` leaves the flags alone).

        Raises:
            The errors of :meth:`retrieve`.
        """
        async for item in self.retrieve(keys):
            yield item

    async def sizes(self, keys: Sequence[MessageKey]) -> Mapping[MessageKey, int]:
        """Sizes in octets of ``keys`` that the inventory did not report, asked in as few round trips
        as the protocol allows, so that commit batches can be sized by octets before retrieval.

        Default: none known (POP3's inventory already has LIST sizes). Missing keys are fine:
        :meth:`retrieve` handles them as usual.

        Raises:
            The errors of :meth:`retrieve`.
        """
        return {}

    async def header_fields(
        self, keys: Sequence[MessageKey], *, max_octets: int
    ) -> Mapping[MessageKey, bytes]:
        """Header lines of messages that failed to arrive, so that they can be shown by Subject
        (:mod:`maild.fetch.failed_headers`); never marks a message read.

        POP3: ``TOP n 0`` (the whole header section; keys from this session's :meth:`inventory`).
        IMAP: ``UID FETCH uid (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)])``. Default: none.

        Args:
            keys: the messages.
            max_octets: cap on one message's reply in octets.

        Returns:
            Key to the header lines as sent; keys the server did not answer are left out.

        Raises:
            The errors of :meth:`retrieve`: the session is broken; call :meth:`abort`.
        """
        return {}

    @property
    def identity(self) -> str:
        """How the last :meth:`inventory` identified messages across sessions.

        ``"server"`` (default): by identities the server assigns and keeps (POP3 UIDL, IMAP
        UIDVALIDITY/UID). POP3 reports ``"uidl"``, or ``"content-digest"`` when the server has no UIDL
        and identities are digests of the messages' content (see :mod:`maild.protocols.pop3.identity`):
        those may change if the server rewrites a message, so ``retention = "delete-after"``, which
        relies on an identity staying the same for days, is refused for them.
        """
        return "server"

    @property
    def identity_warnings(self) -> Sequence[str]:
        """Warnings about the last :meth:`inventory`'s identities for the status, e.g. that they are
        content digests; empty when all is as usual."""
        return ()

    @property
    def duplicate_uidls(self) -> frozenset[str]:
        """POP3: the UIDLs the last :meth:`inventory` found on more than one message; those messages
        are left out of it (a UIDL must name one message, RFC 1939 section 7) and the fetch never
        takes them. Empty for IMAP (a UID names one message of its mailbox) and before an inventory.
        """
        return frozenset()

    @property
    def mailbox_failures(self) -> Mapping[str, str]:
        """IMAP: each configured mailbox the last :meth:`inventory` could not select (its readable
        name) to why; the inventory left it out, so what it holds is unknown. Empty for POP3 (one
        maildrop, nothing to select) and before an inventory."""
        return {}

    @property
    def pipelining(self) -> bool:
        """Whether this session sends commands ahead in windows, one round trip per window (POP3:
        the server announced PIPELINING, RFC 2449 section 6.6, and the window exceeds 1); default
        False. Bounds that count round trips (the POP3 deletion checks) read it."""
        return False

    def covers(self, key: MessageKey) -> bool:
        """Whether the last :meth:`inventory` looked where ``key`` lives, so that its absence there
        means the message left the server.

        POP3: always (one maildrop). IMAP: False for keys of a mailbox that could not be selected
        or is not fetched (any more); see :meth:`IMAPMailbox.covers
        <maild.protocols.imap.mailbox.IMAPMailbox.covers>`.
        """
        return True

    @abc.abstractmethod
    async def delete(self, keys: Sequence[MessageKey]) -> Sequence[MessageKey] | None:
        """Mark the given messages for deletion.

        POP3: DELE each (RFC 1939 section 5); deletion takes effect only when :meth:`close` succeeds
        (UPDATE state, RFC 1939 section 6). IMAP: flag ``\\Deleted`` and expunge (see
        :meth:`IMAPMailbox.delete <maild.protocols.imap.mailbox.IMAPMailbox.delete>`). The caller must have
        committed the messages durably first.

        Returns:
            The keys whose deletion was sent when that is a subset of ``keys`` (IMAP may skip a
            mailbox), or None for all of them.

        Raises:
            ProtocolError: the server refused a DELE.
            NetworkTimeout, ConnectError: the session is broken; nothing is deleted on POP3.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """End the session in order: POP3 QUIT (enters UPDATE, applies deletions), IMAP LOGOUT.

        Raises:
            ProtocolError: POP3 QUIT was answered ``-ERR`` (deletions may not have happened).
            NetworkTimeout, ConnectError: no ``+OK`` to QUIT arrived; treat deletions as not done.
        """

    @property
    def parked(self) -> bool:
        """Whether :meth:`park` kept the session open for a later cycle."""
        return False

    async def park(self) -> bool:
        """End a successful cycle but keep the session for the next one, where the protocol allows.

        POP3 cannot: a maildrop is a snapshot taken at login and locked until QUIT (RFC 1939
        section 8), so this default simply calls :meth:`close` and returns False. IMAP keeps the
        logged-in connection (see :meth:`KeptSession.park
        <maild.protocols.imap.kept.KeptSession.park>`).

        Raises:
            The errors of :meth:`close` when it closes.
        """
        await self.close()
        return False

    async def resume(self, *, max_age_s: float, probe_timeout_s: float) -> bool:
        """Take a parked session back for a new cycle, instead of :meth:`open`. False: not usable
        (it was discarded; use a fresh adapter). Default: False. Never raises."""
        return False

    @abc.abstractmethod
    async def abort(self) -> None:
        """End the session without applying anything: POP3 RSET then QUIT, best effort; then close.

        Never raises; safe to call at any time, also after :meth:`close` or a failed :meth:`open`.
        """

    async def hang_up(self) -> None:
        """End the session sending nothing more (no POP3 ``QUIT``, so no UPDATE state: RFC 1939
        section 6 forbids removing any message then), and close: for a session that read messages
        it could not keep, on a server that may delete what was downloaded when the session ends
        with QUIT (``RSET`` is no promise there). Default :meth:`abort` (IMAP: nothing is removed
        without EXPUNGE). Never raises; safe to call at any time.
        """
        await self.abort()

    def served_unkept(self, *kept: Collection[MessageKey]) -> bool:
        """Whether this session asked the server for a message (POP3 ``RETR`` or ``TOP``) whose key
        is in none of ``kept`` (collections of keys durably stored: their commit returned, or the
        archive holds them). Such a session must not end with POP3 ``QUIT``: a server deleting what
        was downloaded removes it in the UPDATE state (RSET does not undo that on such servers).
        Default False (IMAP: nothing is removed without EXPUNGE). O(messages served).
        """
        return False

    async def abandon(self, *kept: Collection[MessageKey]) -> None:
        """End a session that failed (an error, a full disk, a cancellation): :meth:`hang_up` when
        it served a message in none of ``kept`` (:meth:`served_unkept`), so that nothing maild does
        not hold is removed (RFC 1939 section 6: no UPDATE without QUIT); :meth:`abort` (RSET,
        QUIT) otherwise. Never raises; safe at any time.
        """
        if self.served_unkept(*kept):
            await self.hang_up()
        else:
            await self.abort()
