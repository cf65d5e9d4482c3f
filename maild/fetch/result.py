"""What one fetch cycle did (:class:`CycleResult`) and the words it leaves for the status: a session
that did not end cleanly (:func:`end_failed`), the Subjects of failed messages (:func:`subjects`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from maild.model import FailureRecord, HeaderSummary, MessageKey, RetrievalFailure, StoreOutcome

if TYPE_CHECKING:  # annotations only: the status and alert modules read results without the cycle
    from maild.errors import MaildError
    from maild.fetch.resync import IMAPCycleInfo

log = structlog.get_logger("maild.fetch.cycle")


@dataclass(slots=True)
class CycleResult:
    """What one fetch cycle did.

    Attributes:
        account: the account name.
        on_server: messages in the server's inventory.
        new_messages: messages new to the archive (distinct content).
        new_links: messages newly linked to this account (includes ``new_messages``).
        octets: size in octets of the messages newly linked.
        failures: messages the server refused to hand out this cycle (retried next cycle).
        too_large: messages skipped for exceeding ``max_message_size`` (left on the server).
        set_aside: messages skipped because they failed too often in a row (left on the server,
            see :func:`maild.policy.set_aside`).
        deleted: messages deleted on the server (confirmed by ``+OK`` to QUIT).
        delivered: messages delivered to the account's Maildir (``deliver_maildir``) in this cycle.
        seconds: wall-clock duration of the cycle.
        imap: IMAP only: mailboxes covered, mailboxes that could not be selected, UIDVALIDITY
            changes (see :mod:`maild.fetch.resync`); None for POP3.
        identity: how messages were identified (:attr:`Maildrop.identity
            <maild.protocols.base.Maildrop.identity>`): ``"server"``, ``"uidl"`` or ``"content-digest"``.
        warnings: what the status should show about this cycle, in words (digest identities,
            messages whose identity reappeared after maild deleted it, a suspended deletion).
        deletion_suspended: why this cycle deleted nothing although retention would
            (:func:`maild.policy.move_suspension`), or None.
        subjects: the Subject of failed and set-aside messages where known (from the archive's
            failure records and this cycle's header fetch, :mod:`maild.fetch.failed_headers`).
    """

    account: str
    on_server: int = 0
    new_messages: int = 0
    new_links: int = 0
    octets: int = 0
    failures: list[RetrievalFailure] = field(default_factory=list)
    too_large: list[MessageKey] = field(default_factory=list)
    set_aside: list[MessageKey] = field(default_factory=list)
    deleted: int = 0
    delivered: int = 0
    seconds: float = 0.0
    imap: IMAPCycleInfo | None = None
    identity: str = "server"
    warnings: list[str] = field(default_factory=list)
    deletion_suspended: str | None = None
    subjects: dict[MessageKey, str] = field(default_factory=dict)

    @property
    def no_room(self) -> int:
        """Of :attr:`failures`, the messages not retrieved for lack of room on this machine (kind
        ``"local"``: the spool's or the archive's disk full)."""
        return sum(1 for f in self.failures if f.kind == "local")

    def add(self, outcome: StoreOutcome) -> None:
        """Accumulate one committed batch."""
        self.new_messages += outcome.new_messages
        self.new_links += outcome.new_links
        self.octets += outcome.octets


def end_failed(
    protocol: str, to_delete: list[MessageKey], error: MaildError, result: CycleResult
) -> list[MessageKey]:
    """The session's end (POP3 QUIT, IMAP LOGOUT) failed after everything was stored: warn, and
    return the deletions that still count as done.

    POP3: only ``+OK`` to QUIT confirms the deletions (RFC 1939 section 6), so none is recorded; the
    next cycle finds the messages (still archived) and deletes them again, or finds them gone. IMAP:
    the deletions happened at EXPUNGE, before LOGOUT.
    """
    log.warning("fetch.close.failed", error=str(error))
    if protocol == "pop3" and to_delete:
        result.warnings.append(
            f"everything was stored, but the session did not end cleanly ({error}):"
            f" {len(to_delete)} deletions not confirmed by the server, tried again next cycle"
        )
        return []
    result.warnings.append(f"everything was stored, but the session did not end cleanly ({error})")
    return to_delete


def subjects(
    records: Mapping[MessageKey, FailureRecord],
    found: Mapping[MessageKey, HeaderSummary],
    keys: list[MessageKey],
) -> dict[MessageKey, str]:
    """The known Subject of each of ``keys``: just read, else from its failure record."""
    out: dict[MessageKey, str] = {}
    for key in keys:
        summary, record = found.get(key), records.get(key)
        subject = (summary.subject if summary is not None else None) or (record.subject if record else None)
        if subject:
            out[key] = subject
    return out
