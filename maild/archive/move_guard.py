"""The archive's answer to "is this POP3 account's server the mailbox a move is filling?".

A fetch cycle of an account that deletes (POP3, or IMAP on ``delete-after``; before session 10 POP3
only) asks :func:`overlapping_moves` right before deciding deletions
(after every commit of the cycle returned). The answer is the unfinished moves (``moves`` rows
without ``finished_at``, schema v5) whose target holds, by content, something this account's
server holds now: a message linked to a present location of the account (neither gone nor
deleted) that is also uploaded into the target (``appends``) or linked to a present location of
the target. Identity is the SHA-256 of the octets, so host names play no part:
``pop.provider.de`` and ``imap.provider.de`` serving one mailbox are found the moment the POP3
account fetches a message that ``maild migrate`` uploaded. :func:`maild.policy.move_suspension`
turns the answer into the reason deletion is suspended.

What it cannot see: a server that changes a message's octets between the protocols (then the
digests differ), and uploads into mailboxes the POP3 account does not see (which it cannot delete
either).

A function over the :class:`~maild.archive.store.Store` rather than a method of it: the store
module is shared by the whole fetch path and past the size the style guide asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.archive.store import Store


@dataclass(frozen=True, slots=True)
class UnfinishedMove:
    """A move that is not finished and whose target holds what a POP3 account's server holds.

    Attributes:
        source: the account ``maild migrate`` uploads from.
        target: the IMAP account it uploads into.
        shared: how many messages the POP3 account's server and the target hold in common.
    """

    source: str
    target: str
    shared: int


async def overlapping_moves(store: Store, account: str) -> list[UnfinishedMove]:
    """The unfinished moves whose target shares messages with ``account``'s server now.

    Args:
        store: the open archive.
        account: the account whose present locations are compared (POP3 or IMAP).

    Returns:
        The moves, ordered by target then source; empty when there is none.

    Raises:
        StoreError: SQLite failed.
    """
    # a private helper of the store on purpose: see the module docstring
    rows = await store._all(
        "SELECT mv.source, mv.target, count(DISTINCT lp.message) FROM moves mv"
        " JOIN locations lp ON lp.account = ? AND lp.gone_at IS NULL AND lp.deleted_at IS NULL"
        " WHERE mv.finished_at IS NULL AND mv.target <> ? AND ("
        " EXISTS (SELECT 1 FROM appends a WHERE a.account = mv.target AND a.message = lp.message)"
        " OR EXISTS (SELECT 1 FROM locations lt WHERE lt.account = mv.target AND lt.message = lp.message"
        " AND lt.gone_at IS NULL AND lt.deleted_at IS NULL))"
        " GROUP BY mv.source, mv.target ORDER BY mv.target, mv.source",
        (account, account),
    )
    return [UnfinishedMove(str(r[0]), str(r[1]), int(r[2])) for r in rows]
