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


def new_and_known(new_messages: int, new_links: int) -> str:
    """``"N new messages"`` (new to the archive), with ``", M already archived"`` when some of what an
    account fetched was in the archive already (through another account: a mailbox being moved, a copy).

    Args:
        new_messages: messages whose content the archive did not hold before.
        new_links: messages newly linked to the account (includes ``new_messages``).
    """
    known = new_links - new_messages
    return f"{new_messages} new messages" + (f", {known} already archived" if known > 0 else "")


def key_label(key: MessageKey) -> str:
    """A server identity in words: ``UIDL abc`` or ``INBOX UID 5 (UIDVALIDITY 17)``."""
    if isinstance(key, IMAPKey):
        return f"{key.mailbox} UID {key.uid} (UIDVALIDITY {key.uidvalidity})"
    return f"UIDL {key.uidl}"


def message_label(key: MessageKey, subject: str | None) -> str:
    """A failed message in words: its identity (:func:`key_label`) and, where known, its Subject in
    quotes: ``UIDL abc "Rechnung 42"``."""
    return f'{key_label(key)} "{subject}"' if subject else key_label(key)
