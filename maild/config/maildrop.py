"""The protocol adapter an account's configuration describes, not yet connected.

One builder for every caller that talks to an account's server: the fetch cycle (through
:mod:`maild.fetch.cycle`, the scheduler and the one-shot) and the move's check of the old account's
server (:mod:`maild.move.source_check`), so that what ``maild retire`` lists is what the fetch sees.
The adapters' modules are imported on first use (start-up: a POP3-only one-shot loads no IMAP module).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from maild.config.loader import AccountConfig
from maild.protocols.base import Maildrop


def make_maildrop(account: AccountConfig, executor: ThreadPoolExecutor) -> Maildrop:
    """Create the adapter for ``account``'s protocol (not yet connected): POP3 (RFC 1939) runs in
    ``executor``'s threads; IMAP (RFC 9051) over the account's configured mailboxes.

    Raises:
        ConfigError: the password cannot be obtained.
    """
    settings = account.server_settings()
    if account.protocol == "pop3":
        from maild.protocols.pop3.maildrop import POP3Maildrop

        return POP3Maildrop(settings, executor, max_message_size=account.max_message_size)
    from maild.protocols.imap.mailbox import IMAPMailbox

    return IMAPMailbox(
        settings,
        account.mailboxes,
        list_all=account.all_mailboxes,
        exclude=account.exclude,
        max_message_size=account.max_message_size,
    )
