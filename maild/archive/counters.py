"""The archive's figures the daemon keeps in memory: messages per account, messages and octets in all.

Read once when the daemon starts (:meth:`maild.archive.store.Store.keep_counters`), then kept
current by every committed batch (:meth:`ArchiveCounters.add`, called by
:meth:`maild.archive.store.Store.store_batch` after its commit returned): ``maild status`` answers
from them without reading the archive, so another process's lock or a large archive never delays
it (issue 15, item 7). Changes made other ways (a purge, a UID re-link, another process) are picked
up by the next full read, which replaces them (:meth:`ArchiveCounters.replace`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maild.model import StoreOutcome


@dataclass(slots=True)
class ArchiveCounters:
    """Live figures of the archive.

    Attributes:
        by_account: account name to the distinct archived messages linked to it.
        messages: distinct messages in the archive.
        octets: their total size in octets.
    """

    by_account: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    octets: int = 0

    def add(self, account: str, outcome: StoreOutcome) -> None:
        """Count one committed batch of ``account``."""
        if outcome.account_messages:
            self.by_account[account] = self.by_account.get(account, 0) + outcome.account_messages
        self.messages += outcome.new_messages
        self.octets += outcome.new_octets

    def replace(self, by_account: dict[str, int], messages: int, octets: int) -> None:
        """Take the figures of a full read of the archive (made while no batch committed)."""
        self.by_account = dict(by_account)
        self.messages = messages
        self.octets = octets
