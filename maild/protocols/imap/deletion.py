"""Deleting messages on an IMAP server: flag ``\\Deleted``, then expunge exactly those.

:func:`delete_messages` is what :meth:`IMAPMailbox.delete <maild.protocols.imap.mailbox.IMAPMailbox.delete>`
runs on its connection: ``UID EXPUNGE`` with UIDPLUS (RFC 4315), otherwise a plain EXPUNGE guarded so
that it never removes a message some other client marked ``\\Deleted``.

May import: structlog, :mod:`maild.errors`, :mod:`maild.model`, the connection, the client's public
names, :mod:`~maild.protocols.imap.scan` and the sans-I/O IMAP modules. Never aioimaplib.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import structlog

from maild.errors import ProtocolError
from maild.model import IMAPKey, MessageKey
from maild.protocols.imap import wire
from maild.protocols.imap.client import IMAPClient
from maild.protocols.imap.connection import IMAPConnection
from maild.protocols.imap.scan import MAX_UIDS_PER_COMMAND, chunks, uid_search

_log = structlog.get_logger("maild.protocols.imap.mailbox")


async def delete_messages(connection: IMAPConnection, keys: Sequence[MessageKey]) -> list[MessageKey]:
    """Delete messages: ``UID STORE +FLAGS.SILENT (\\Deleted)``, then expunge only those.

    With UIDPLUS: ``UID EXPUNGE`` of exactly the given UIDs (RFC 4315 section 2.1), so other
    messages that some other client marked ``\\Deleted`` stay. Without UIDPLUS only a plain
    EXPUNGE exists, which removes *every* ``\\Deleted`` message of the mailbox; so, per mailbox:
    ``UID SEARCH DELETED`` first, and if any message other than the given ones is marked, nothing
    there is touched. Otherwise the given UIDs are flagged, ``UID SEARCH DELETED`` runs again
    (another client may have marked one meanwhile: then the flags just set are removed again and
    the mailbox is skipped), and only then EXPUNGE. Skipped mailboxes are logged
    (``imap.expunge-skipped``) and their keys left out of the result.

    Mailboxes are processed in the order first named, at most :data:`MAX_UIDS_PER_COMMAND` UIDs
    per command. UIDs no longer present are ignored by the server. The caller must have committed
    the messages durably first.

    Returns:
        The keys whose deletion was sent (all given keys except those of skipped mailboxes).

    Standard: RFC 9051 section 6.4.6 (STORE), 6.4.3 (EXPUNGE), 6.4.4 (SEARCH DELETED);
    RFC 4315 section 2.1 (UID EXPUNGE).

    Cancelled at any await: the session is discarded; some messages may be expunged already and
    some only flagged ``\\Deleted`` (expunged by the next EXPUNGE of any client).

    Raises:
        TypeError: a key is not an :class:`~maild.model.IMAPKey`.
        ProtocolError: a mailbox cannot be selected, is read-only, or its UIDVALIDITY changed
            (nothing of that mailbox is deleted); STORE, SEARCH or EXPUNGE refused.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for :meth:`IMAPConnection.open`.
    """
    by_mailbox: dict[str, list[IMAPKey]] = {}
    for key in keys:
        if not isinstance(key, IMAPKey):
            raise TypeError(f"IMAPMailbox cannot delete {type(key).__name__}")
        by_mailbox.setdefault(key.mailbox, []).append(key)
    done: list[MessageKey] = []
    uidplus = "UIDPLUS" in connection.capabilities
    for mailbox, mailbox_keys in by_mailbox.items():
        info = await connection.selection.select(mailbox)
        stale = {key.uidvalidity for key in mailbox_keys} - {info.uidvalidity}
        if stale:
            raise connection.error(ProtocolError, f"UIDVALIDITY of {mailbox!r} changed; not deleting there")
        if info.read_only:
            raise connection.error(ProtocolError, f"{mailbox!r} is read-only; not deleting there")
        uids = sorted({key.uid for key in mailbox_keys})
        if uidplus:
            for chunk in chunks(uids, MAX_UIDS_PER_COMMAND):
                await _store_deleted(connection, mailbox, chunk, "+FLAGS.SILENT")
                uid_set = wire.sequence_set(chunk)
                await connection.command(
                    f"UID EXPUNGE in {mailbox!r}",
                    functools.partial(IMAPClient.uid_expunge, uid_set=uid_set),
                    slow=True,  # a large mailbox: the server may be silent for minutes
                )
        elif not await _expunge_without_uidplus(connection, mailbox, uids):
            continue
        done.extend(mailbox_keys)
    return done


async def _store_deleted(connection: IMAPConnection, mailbox: str, uids: Sequence[int], change: str) -> None:
    uid_set = wire.sequence_set(uids)
    await connection.command(
        f"UID STORE {change} \\Deleted in {mailbox!r}",
        lambda client: client.uid_store(uid_set, change, r"(\Deleted)"),
    )


async def _deleted_uids(connection: IMAPConnection, mailbox: str) -> set[int]:
    return set(await uid_search(connection, mailbox, "DELETED"))


def _log_expunge_skipped(connection: IMAPConnection, mailbox: str, reason: str, other_deleted: int) -> None:
    _log.warning(
        "imap.expunge-skipped",
        account=connection.account,
        mailbox=mailbox,
        reason=reason,
        other_deleted=other_deleted,
    )


async def _expunge_without_uidplus(connection: IMAPConnection, mailbox: str, uids: list[int]) -> bool:
    """Flag ``uids`` and EXPUNGE, unless that would expunge another ``\\Deleted`` message.

    Returns:
        True when EXPUNGE was sent, False when the mailbox was skipped (nothing left flagged
        by maild).
    """
    wanted = set(uids)
    before = await _deleted_uids(connection, mailbox)
    foreign = before - wanted
    if foreign:
        _log_expunge_skipped(
            connection,
            mailbox,
            "other messages are marked \\Deleted and the server lacks UIDPLUS",
            len(foreign),
        )
        return False
    for chunk in chunks(uids, MAX_UIDS_PER_COMMAND):
        await _store_deleted(connection, mailbox, chunk, "+FLAGS.SILENT")
    foreign = await _deleted_uids(connection, mailbox) - wanted
    if foreign:
        flagged_by_us = sorted(wanted - before)
        for chunk in chunks(flagged_by_us, MAX_UIDS_PER_COMMAND):
            await _store_deleted(connection, mailbox, chunk, "-FLAGS.SILENT")
        _log_expunge_skipped(
            connection,
            mailbox,
            "another client marked messages \\Deleted meanwhile and the server lacks UIDPLUS",
            len(foreign),
        )
        return False
    await connection.command(f"EXPUNGE in {mailbox!r}", IMAPClient.expunge, slow=True)
    return True
