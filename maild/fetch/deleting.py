"""Step 4 of a fetch cycle (:mod:`maild.fetch.cycle`): which messages may be deleted now, and
deleting them (POP3 ``DELE``; IMAP ``\\Deleted`` and expunge).

Run after every commit of the cycle returned. The rules are :mod:`maild.policy`'s
(:func:`~maild.policy.select_deletions`, :func:`~maild.policy.confirm_deletions`): this module asks
them, queries the archive for the durable re-check (:meth:`Store.archived`), has every POP3
candidate not shown in this session to be the archived message checked or left
(:mod:`maild.fetch.pop3_check`, :mod:`maild.fetch.pop3_listed`), and asks whether an unfinished move
suspends the account's deletions (:func:`move_suspension`, also asked before the POP3 checks: a
suspended account's candidates are not read, session 15). Split from :mod:`maild.fetch.cycle` in
session 15 with no change of behaviour.

May import: :mod:`maild.policy`, the archive, the protocols' base interface and the fetch cycle's
helper modules (never :mod:`maild.fetch.cycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from maild import policy, pop3_uidls
from maild.archive.move_guard import overlapping_moves
from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.fetch.result import CycleResult
from maild.model import IMAPKey, InventoryEntry, Location, MessageKey
from maild.protocols.base import Maildrop

if TYPE_CHECKING:
    from maild.fetch import pop3_listed

log = structlog.get_logger("maild.fetch.cycle")  # the cycle's events, under the cycle's logger

REAPPEARED_WARNING = (
    "{count} messages on the server carry an identity maild already deleted there, or saw leave the"
    " server and now listed with another size (a server re-using UIDLs?): left on the server,"
    " neither retrieved nor deleted"
)
"""The cycle's warning for identities listed again after maild deleted them or saw them leave."""


async def move_suspension(store: Store, account: str) -> str | None:
    """Why an unfinished move suspends ``account``'s deletions now (:func:`maild.policy.move_suspension`
    over :func:`maild.archive.move_guard.overlapping_moves`), or None.

    Raises:
        StoreError: SQLite failed.
    """
    moves = await overlapping_moves(store, account)
    return policy.move_suspension(account, [(m.source, m.target, m.shared) for m in moves])


def suspend(result: CycleResult, reason: str) -> None:
    """Record in ``result`` that the cycle deletes nothing for ``reason`` (an unfinished move)."""
    result.deletion_suspended = reason
    result.warnings.append(reason)
    log.warning("fetch.delete.suspended", reason=reason)


async def pop3_suspects(
    account: AccountConfig,
    store: Store,
    inventory: Sequence[InventoryEntry],
    known: Mapping[MessageKey, Location],
    back: Sequence[MessageKey],
    result: CycleResult,
    now: datetime,
    *,
    deletes: bool,
) -> tuple[pop3_uidls.ListedKnown, list[MessageKey]]:
    """The known POP3 UIDLs this session compares with the archived message after its retrieval
    (:mod:`maild.fetch.pop3_listed`): those listed at another size (:func:`maild.pop3_uidls.listed_known`)
    and, when the cycle ``deletes``, every possible deletion candidate whatever its size (a UIDL
    re-used at the very size of the archived message is caught only by its header section), unless
    an unfinished move suspends the account's deletions (then recorded in ``result``, and those
    candidates are not read: session 15; asked again by :func:`delete_now`).

    Args:
        account, store, inventory, result: the cycle's.
        known: the account's recorded identities (the cycle's snapshot).
        back: keys recorded gone and listed again.
        now: the current time, aware, UTC.
        deletes: the account's retention deletes and no refusal applies.

    Returns:
        :func:`~maild.pop3_uidls.listed_known`'s answer and the suspects, in server order.

    Raises:
        StoreError: SQLite failed.
    """
    odd = pop3_uidls.listed_known(inventory, known, back)
    suspects = list(odd.other_size)
    if not deletes:
        return odd, suspects
    listed_odd = {*odd.other_size, *odd.relisted}
    retention, days = account.retention, account.retention_days
    due = pop3_uidls.deletion_suspects(retention, days, inventory, known, set(back), now)
    due = [key for key in due if key not in listed_odd]
    # deletions an unfinished move suspends need no check (asked again before deleting: a move may
    # start meanwhile; one that ends meanwhile waits for the next cycle)
    if due and (suspended := await move_suspension(store, account.name)) is not None:
        suspend(result, suspended)
    else:
        suspects += due
    return odd, suspects


async def delete_now(
    account: AccountConfig,
    store: Store,
    maildrop: Maildrop,
    inventory: Sequence[InventoryEntry],
    result: CycleResult,
    *,
    clock: Callable[[], datetime],
    require_delivery: bool,
    verified: set[IMAPKey] | None,
    listed: pop3_listed.ListedCheck | None,
    retrieved: Collection[MessageKey],
) -> list[MessageKey]:
    """Decide the deletions of a cycle whose commits have all returned, and send them.

    Asks whether an unfinished move suspends the account's deletions (unless ``result`` already
    says so), selects the candidates, re-checks in the archive that each is stored (and, with
    ``require_delivery``, delivered), checks POP3 candidates not shown in this session to be the
    archived message (:func:`maild.fetch.pop3_check.verify_candidates`; the others wait), and marks
    the rest deleted. Warnings go to ``result``.

    Args:
        account: the account (its retention decides; call only when it is not ``"keep"`` and no
            :func:`maild.policy.deletion_refusal` applies).
        store: the open archive.
        maildrop: the cycle's open session.
        inventory: this session's inventory.
        result: the cycle's result so far.
        clock: the current aware UTC time.
        require_delivery: the account delivers to a Maildir: only delivered messages are deleted.
        verified: IMAP keys verified by UID in this session, or None (POP3).
        listed: the POP3 listed-size checks of the cycle, or None.
        retrieved: keys retrieved and committed in this session.

    Returns:
        The keys marked deleted in this session (POP3: applied only at ``+OK`` to QUIT); empty when
        nothing was.

    Raises:
        StoreError: the archive failed (``ArchiveReplaced`` included); nothing was marked.
        NetworkTimeout, ConnectError, ProtocolError: the session broke (POP3: nothing is deleted).

    Cancelled: POP3 marks take effect only at QUIT, which a cancelled cycle never sends.
    """
    # Any protocol: an IMAP account on delete-after reaching the target's mailbox under another
    # host name would delete the uploads too (QA of session 10: before, POP3 accounts only).
    # Asked now that every commit returned, whatever an earlier answer of the cycle said.
    if result.deletion_suspended is None:
        suspended = await move_suspension(store, account.name)
        if suspended is not None:
            suspend(result, suspended)
    if result.deletion_suspended is not None:
        return []
    known = await store.locations(account.name)
    if again := policy.reappeared(inventory, known):
        result.warnings.append(REAPPEARED_WARNING.format(count=len(again)))
    candidates = policy.select_deletions(account.retention, account.retention_days, inventory, known, clock())
    if not candidates:
        return []
    # the durable re-check, made now that every commit has returned
    archived = await store.archived(account.name, candidates, require_delivery=require_delivery)
    checked: Collection[MessageKey] | None = verified
    if account.protocol != "imap":  # a known UIDL may name another message now (another server, re-used)
        from maild.fetch import pop3_check, pop3_listed  # POP3 only: an IMAP cycle loads neither

        shown = pop3_listed.shown_in_session(listed, retrieved)
        unchecked = pop3_check.unchecked(candidates, shown)
        waits = set(unchecked)  # once: set(unchecked) per candidate was quadratic
        listed_keys = [key for key in candidates if key not in waits]
        verdict = await pop3_check.verify_candidates(
            account.name, store, maildrop, inventory, listed_keys, retrieved
        )
        checked = verdict.deletable
        result.warnings.extend(verdict.warnings())
        # past this cycle's bounds, or due since its start: a later cycle checks them
        unresolved = listed.unresolved if listed is not None else frozenset()
        if untold := [key for key in unchecked if key not in unresolved]:
            result.warnings.append(pop3_check.waiting_warning(len(untold)))
    to_delete = policy.confirm_deletions(candidates, archived, checked)
    if not to_delete:
        return []
    await store.verify_identity()  # the commits landed in the file at the archive's path
    log.debug("fetch.delete.started", messages=len(to_delete))
    sent = await maildrop.delete(to_delete)
    if sent is not None:  # IMAP may skip a mailbox (see IMAPMailbox.delete)
        to_delete = list(sent)
    log.debug("fetch.delete.complete", messages=len(to_delete))
    return to_delete
