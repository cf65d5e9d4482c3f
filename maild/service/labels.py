"""Cycle outcomes and failed messages in a few words, for logs, metrics, status and ``maild fetch``.

Pure functions of maild's errors and model, kept apart so that the one-shot ``maild fetch``
(:mod:`maild.service.oneshot`) prints its lines without loading the scheduler, the status snapshot
and the reply records (start-up time, docs/performance.md session 5). :mod:`maild.service.scheduler`,
:mod:`maild.service.snapshot` and :mod:`maild.service.replies` import them from here.
"""

from __future__ import annotations

from maild.errors import (
    AuthError,
    ConfigError,
    ProtocolError,
    StoreError,
    ThrottledError,
    TransientError,
)
from maild.model import IMAPKey, MessageKey


def outcome_label(error: BaseException) -> str:
    """A short label of a failed cycle for logs and metrics: ``auth``, ``throttled``, ``transient``,
    ``protocol``, ``config``, ``store`` or ``internal``."""
    for cls, label in (
        (AuthError, "auth"),
        (ThrottledError, "throttled"),
        (TransientError, "transient"),
        (ProtocolError, "protocol"),
        (ConfigError, "config"),
        (StoreError, "store"),
    ):
        if isinstance(error, cls):
            return label
    return "internal"


def messages_text(n: int, adjective: str = "") -> str:
    """``"1 new message"``, ``"0 new messages"``, ``"2 messages"``: ``n`` with the noun in the right number.

    Since session 9 (``1 new message``; before: ``1 new messages``): a script parsing the lines accepts
    both, ``r"(\\d+) new messages?"`` (docs/operations.md, "Output of maild fetch and fetch-now").
    """
    noun = "message" if n == 1 else "messages"
    return f"{n} {adjective} {noun}" if adjective else f"{n} {noun}"


def new_and_known(new_messages: int, new_links: int) -> str:
    """``"N new messages"`` (new to the archive; ``"1 new message"``), with ``", M already archived"``
    when some of what an account fetched was in the archive already (through another account: a mailbox
    being moved, a copy).

    Args:
        new_messages: messages whose content the archive did not hold before.
        new_links: messages newly linked to the account (includes ``new_messages``).
    """
    known = new_links - new_messages
    return messages_text(new_messages, "new") + (f", {known} already archived" if known > 0 else "")


def transfer_text(size: str, seconds: float) -> str:
    """``"148.0 MB retrieved, 3.021 s"``: what a cycle received (``size``, already in words) and how long
    it took (wall-clock seconds, shown to the millisecond); the bracket of ``maild fetch``'s and ``maild
    fetch-now``'s line per account, so the two say it the same way."""
    return f"{size} retrieved, {seconds:.3f} s"


def total_text(
    accounts: int, new_messages: int, new_links: int, size: str, seconds: float, failed: int = 0
) -> str:
    """``"all 3 accounts: 12 new messages (48.0 MB retrieved, 4.102 s)"`` (``", 1 failed"`` after the
    bracket when accounts failed): the closing line of ``maild fetch`` and ``maild fetch-now`` for more
    than one account. ``seconds`` is the wall-clock time of the whole command (the accounts run at
    once, so it is not the sum of theirs). The line cannot be read as an account's: account names have
    no spaces.

    Args:
        accounts: accounts the command fetched (failed ones included, skipped ones not).
        new_messages: of ``new_links``, messages new to the archive.
        new_links: messages newly linked to an account, all accounts together.
        size: the octets retrieved, all accounts together, in words.
        seconds: the command's wall-clock duration in seconds.
        failed: accounts whose cycle failed.
    """
    failures = f", {failed} failed" if failed else ""
    counts = new_and_known(new_messages, new_links)
    return f"all {accounts} accounts: {counts} ({transfer_text(size, seconds)}){failures}"


def not_retrieved_text(not_retrieved: int, no_room: int, where: str) -> str:
    """``"2 messages not retrieved (retried at the next fetch; listed below)"``: the words of ``maild
    fetch`` and ``maild fetch-now`` for the messages a cycle that succeeded could not retrieve, with
    ``"; M for lack of room on this machine"`` inside the brackets when some failed on this machine's
    side (a full spool or archive disk: both commands then exit 1, docs/operations.md "Exit codes").

    Args:
        not_retrieved: messages not retrieved in the cycle (> 0).
        no_room: of those, the ones that failed for lack of room on this machine.
        where: where the admin finds them named (``"listed below"``, ``"see maild status anna"``).
    """
    side = f"; {no_room} for lack of room on this machine" if no_room else ""
    return f"{messages_text(not_retrieved)} not retrieved (retried at the next fetch{side}; {where})"


def outcome_extras(deleted: int, not_retrieved: int, no_room: int, set_aside: int, where: str) -> str:
    """What follows the bracket of an account's line in ``maild fetch`` and ``maild fetch-now``:
    ``", 3 deleted on the server, 2 messages not retrieved (...), 1 set aside after repeated
    failures (see maild status)"``; empty when there is nothing to add. Arguments are counts of
    messages in the cycle; ``where`` as in :func:`not_retrieved_text`."""
    extra = f", {deleted} deleted on the server" if deleted else ""
    if not_retrieved:
        extra += f", {not_retrieved_text(not_retrieved, no_room, where)}"
    if set_aside:
        extra += f", {set_aside} set aside after repeated failures (see maild status)"
    return extra


def key_label(key: MessageKey) -> str:
    """A server identity in words: ``UIDL abc`` or ``INBOX UID 5 (UIDVALIDITY 17)``."""
    if isinstance(key, IMAPKey):
        return f"{key.mailbox} UID {key.uid} (UIDVALIDITY {key.uidvalidity})"
    return f"UIDL {key.uidl}"


def message_label(key: MessageKey, subject: str | None) -> str:
    """A failed message in words: its identity (:func:`key_label`) and, where known, its Subject in
    quotes: ``UIDL abc "Rechnung 42"``."""
    return f'{key_label(key)} "{subject}"' if subject else key_label(key)
