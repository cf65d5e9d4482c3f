"""A's server listed again just before ``maild retire`` records the retirement: mail that arrived
during the check.

:func:`maild.move.source_check.check_source` lists A's server, reads and compares; the comparison of
A's archive with B and the check take seconds to minutes, and mail arriving at A's server meanwhile
was not seen (session 13's "Left"). So :func:`maild.move.retire.retire`, holding the move lock, lists
A's server once more (POP3 UIDL and LIST; IMAP the inventory of its configured mailboxes: identities
only, nothing downloaded, read only) right before it changes anything, and refuses when an identity
appears that the check did not list (:func:`arrived_since`). What left the server meanwhile (a
message fetched by hand, or deleted by a server that deletes what is downloaded) is no concern: the
check decided about it already. An identity the check listed and that is listed now at another size
(POP3 LIST, IMAP RFC822.SIZE) names another message: a POP3 server re-using a UIDL, during the check,
for mail that arrived (:func:`resized_since`; session 14's review: identities alone took it for the
message checked). The window left is the time of that listing plus the retirement's one transaction,
not the command's run time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from maild.config.loader import Config
from maild.config.maildrop import make_maildrop
from maild.errors import MaildError
from maild.model import MessageKey
from maild.move.source_server import list_source
from maild.protocols.base import Maildrop

#: POP3 worker threads of the listing's own pool: one session, one thread.
RECHECK_THREADS = 1


async def list_server(
    config: Config, source: str, *, maildrop_factory: Callable[..., Maildrop] | None = None
) -> frozenset[MessageKey]:
    """The server identities A's server lists now: the keys of :func:`list_sizes`."""
    return frozenset(await list_sizes(config, source, maildrop_factory=maildrop_factory))


async def list_sizes(
    config: Config, source: str, *, maildrop_factory: Callable[..., Maildrop] | None = None
) -> dict[MessageKey, int | None]:
    """The server identities A's server lists now, as :func:`~maild.move.source_check.check_source`
    counts them (messages sharing a UIDL included, by their UIDL), each with the size in octets it
    is listed with (None: not listed with one, a shared UIDL or an IMAP inventory without sizes).

    Args:
        config: the configuration; A's server settings come from it.
        source: account A.
        maildrop_factory: ``(account, executor) -> Maildrop``; default
            :func:`maild.config.maildrop.make_maildrop` (the fetch's own).

    Returns:
        POP3 keys (UIDL) or IMAP keys (mailbox, UIDVALIDITY, UID) of every listed message, to its
        size.

    Raises:
        MaildError: A is not configured, or its server could not be reached, signed in to or listed
            (a configured IMAP mailbox refused included); the session was ended without changes.

    Standard: RFC 1939 sections 5 and 7 (LIST, UIDL); RFC 9051 section 6.4.4 (UID SEARCH).
    """
    account = config.accounts.get(source)
    if account is None:
        raise MaildError(f"account {source} is not in the configuration, so its server is unknown")
    factory = maildrop_factory if maildrop_factory is not None else make_maildrop
    executor = ThreadPoolExecutor(max_workers=RECHECK_THREADS, thread_name_prefix="maild-retire-relist")
    maildrop: Maildrop | None = None
    try:
        maildrop = factory(account, executor)
        listing = await list_source(maildrop)
        await maildrop.close()
    except BaseException:
        if maildrop is not None:
            await maildrop.abort()
        raise
    finally:
        executor.shutdown(wait=False)
    return listing.sizes()


def arrived_since(checked: Collection[MessageKey], now: Collection[MessageKey]) -> list[MessageKey]:
    """The identities listed ``now`` that the check did not list (``checked``), sorted by their text.

    A UIDL or UID re-used for another message after the check is not seen here (it is the same
    identity); the check itself decides such a message by content when it runs again.
    """
    return sorted((k for k in now if k not in checked), key=repr)


def resized_since(
    checked: Mapping[MessageKey, int], now: Mapping[MessageKey, int | None]
) -> list[MessageKey]:
    """The identities listed by the check and ``now`` at two different sizes in octets (both known),
    sorted by their text: another message under the identity the check decided about.

    A re-used identity at the same size is not seen here (nor by the fetch's own size check,
    :func:`maild.policy.pop3_sizes_differ`).
    """
    return sorted(
        (k for k, size in now.items() if size is not None and k in checked and checked[k] != size), key=repr
    )
