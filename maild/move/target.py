"""Account B's side of a move: the checks, the session, the mailboxes, the scan, the comparison.

``maild compare``, ``maild migrate``, ``maild retire`` and ``--verify`` all start here:
:func:`target_account` checks that B can be compared against, :func:`open_session` makes the
session, :func:`move_mailboxes` says where the moved mail is, :func:`scan_server` reads B's headers
and sizes, :func:`digest_bodies` the few bodies :func:`maild.move.compare.bodies_needed` asks for, and
:func:`compare_accounts` puts it all against A's archive (the sans-I/O comparison itself is
:func:`maild.move.compare.compare`). Uploading is :mod:`maild.move.migrate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from maild.archive.move_queries import AppendRecord, MigrationStore, as_keys
from maild.config.loader import AccountConfig, Config
from maild.errors import ConfigError, MigrationError
from maild.model import IMAPKey, RetrievalFailure
from maild.move.compare import (
    ArchiveEntry,
    BodyDigest,
    Comparison,
    ServerEntry,
    bodies_needed,
    body_digest,
    compare,
    server_entry,
)
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap.mailbox import IMAPMailbox

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class ServerScan:
    """What B's scanned mailboxes hold.

    Attributes:
        entries: every message whose header could be read.
        unreadable: messages whose header or body could not be read, with the reason.
        uidvalidity: mailbox name to its UIDVALIDITY at the scan.
    """

    entries: list[ServerEntry] = field(default_factory=list)
    unreadable: dict[IMAPKey, str] = field(default_factory=dict)
    uidvalidity: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CompareOutcome:
    """A comparison and what it was made of.

    Attributes:
        source: account A's name.
        target: account B's configuration.
        mailboxes: B's mailboxes that were scanned.
        comparison: the result.
        scan: B's scan.
        records: the uploads into B recorded in the archive.
        bodies_downloaded: how many of B's messages had to be downloaded to decide.
    """

    source: str
    target: AccountConfig
    mailboxes: tuple[str, ...]
    comparison: Comparison
    scan: ServerScan
    records: list[AppendRecord]
    bodies_downloaded: int

    @property
    def accepted(self) -> list[ArchiveEntry]:
        """Messages only in A whose upload into B is gone and was accepted as deleted
        (``maild retire --accept-deleted``): the archive keeps them; they no longer count as missing."""
        gone = {r.message for r in self.records if r.accepted_at is not None}
        return [e for e in self.comparison.only_a if e.message in gone]

    @property
    def missing(self) -> list[ArchiveEntry]:
        """Messages of A that B lacks, less the accepted ones: what keeps the move unfinished."""
        gone = {r.message for r in self.records if r.accepted_at is not None}
        return [e for e in self.comparison.only_a if e.message not in gone]

    @property
    def uploaded_earlier(self) -> list[ArchiveEntry]:
        """Missing messages that ``maild migrate`` uploaded into B earlier (deleted there since?)."""
        earlier = {r.message for r in self.records}
        return [e for e in self.missing if e.message in earlier]

    @property
    def complete(self) -> bool:
        """Nothing of A is missing in B (accepted deletions aside) and nothing of B was unreadable."""
        return not self.missing and not self.comparison.unreadable


def target_account(config: Config, source: str, target: str) -> AccountConfig:
    """Return B's configuration after checking that A and B can be compared.

    Raises:
        MigrationError: A and B are the same account, or B is not an IMAP account.
        ConfigError: B is not configured.
    """
    if source == target:
        raise MigrationError(f"{source} and {target} are the same account")
    account = config.accounts.get(target)
    if account is None:
        raise ConfigError(f"{config.path}: no account named {target!r}")
    if account.protocol != "imap":
        raise MigrationError(
            f"account {target} is {account.protocol.upper()}: only an IMAP account can be compared"
            " against and uploaded to"
        )
    return account


async def scan_server(session: IMAPMailbox, mailboxes: Sequence[str]) -> ServerScan:
    """Scan B's ``mailboxes`` over an open session: headers and sizes, no bodies.

    Raises:
        ProtocolError: a mailbox cannot be selected; and what :meth:`IMAPMailbox.headers` raises.
    """
    scan = ServerScan()
    for mailbox in mailboxes:
        headers = await session.headers(mailbox)
        scan.uidvalidity[mailbox] = headers.uidvalidity
        for uid, item in sorted(headers.messages.items()):
            key = IMAPKey(mailbox, headers.uidvalidity, uid)
            if item.size_octets is None or item.header is None:  # required items: cannot happen
                scan.unreadable[key] = "header or size missing"
                continue
            scan.entries.append(server_entry(key, item.size_octets, item.header))
        for uid, reason in headers.failures.items():
            scan.unreadable[IMAPKey(mailbox, headers.uidvalidity, uid)] = reason
    return scan


async def digest_bodies(
    session: IMAPMailbox, keys: Sequence[IMAPKey]
) -> tuple[dict[IMAPKey, BodyDigest], dict[IMAPKey, str]]:
    """Download the bodies of ``keys`` (``BODY.PEEK[]``) and digest them; return digests and failures."""
    digests: dict[IMAPKey, BodyDigest] = {}
    failures: dict[IMAPKey, str] = {}
    if not keys:
        return digests, failures
    async for item in session.retrieve(keys):
        assert isinstance(item.key, IMAPKey)
        if isinstance(item, RetrievalFailure):
            failures[item.key] = item.reason
        else:
            digests[item.key] = body_digest(item.whole())
    return digests, failures


async def target_digests(target: AccountConfig, keys: Sequence[IMAPKey]) -> dict[IMAPKey, BodyDigest]:
    """Download B's messages ``keys`` over a session of its own and digest them (for the check of
    A's server: a match by Message-ID, Date and size must also match by octets); failures left out.

    Raises:
        ConfigError, and B's server errors.
    """
    session = open_session(target)
    try:
        await session.open()
        digests, _failures = await digest_bodies(session, keys)
        await session.close()
    except BaseException:
        await session.abort()
        raise
    return digests


def open_session(target: AccountConfig) -> IMAPMailbox:
    """Create (not yet open) an IMAP session with B's server.

    Raises:
        ConfigError: B's password cannot be obtained.
    """
    return IMAPMailbox(
        target.server_settings(),
        target.mailboxes or ("INBOX",),
        list_all=target.all_mailboxes,
        exclude=target.exclude,
    )


async def configured_mailboxes(
    session: IMAPMailbox, target: AccountConfig, extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """B's configured mailboxes (with ``mailboxes = "all"``: what LIST shows, less what the fetch
    leaves out, see :func:`maild.protocols.imap.listing.choose_mailboxes`), then ``extra``, each once.

    Raises:
        ProtocolError, and B's server errors: LIST failed.
    """
    boxes: Sequence[str] = target.mailboxes
    if target.all_mailboxes:
        boxes = imap_list.choose_mailboxes(await session.list_mailboxes(), target.exclude)
    return tuple(dict.fromkeys((*boxes, *extra)))


async def move_mailboxes(
    session: IMAPMailbox, target: AccountConfig, records: Sequence[AppendRecord], extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """Where the moved mail is: the one definition ``compare``, ``migrate`` and ``retire`` share.

    B's configured mailboxes (:func:`configured_mailboxes`), then every mailbox ``maild migrate``
    recorded an upload into (``migrate --mailbox Altpost`` counts for ``retire`` too), then
    ``extra`` (the mailbox a migration is about to upload into), each once. A recorded mailbox that
    LIST no longer shows (deleted in B) is left out: its uploads then count as deleted there, with
    the usual ways forward (``retire --accept-deleted``, ``migrate --reupload``).

    Raises:
        ProtocolError, and B's server errors: LIST failed.
    """
    configured = await configured_mailboxes(session, target)
    recorded = [r.mailbox for r in records if r.mailbox not in configured]
    if recorded:
        listed = {m.name for m in await session.list_mailboxes()}
        recorded = [m for m in recorded if m in listed]
    return tuple(dict.fromkeys((*configured, *recorded, *extra)))


async def compare_accounts(
    store: MigrationStore,
    source: str,
    target: AccountConfig,
    mailboxes: Sequence[str] | None = None,
    *,
    session: IMAPMailbox | None = None,
    progress: Progress | None = None,
) -> CompareOutcome:
    """Compare A's whole archive with B's ``mailboxes`` now.

    Args:
        store: the open archive.
        source: account A (configured or not; only its archive is read).
        target: account B, an IMAP account.
        mailboxes: B's mailboxes to scan; None: B's configured ones (:func:`configured_mailboxes`).
        session: an open session with B's server to use (and leave open); by default one is opened
            and closed here.
        progress: called while A's archive is digested (messages done, in all).

    Raises:
        MigrationError: the archive knows no account A.
        AuthError, ConnectError, NetworkTimeout, ProtocolError, ThrottledError: from B's server.
        StoreError: the archive failed.
    """
    if source not in await store.account_records():
        raise MigrationError(f"the archive knows no account {source!r}: nothing was ever fetched for it")
    entries = await store.archive_entries(source, progress)
    records = await store.append_records(target.name)
    appended = as_keys(records)
    own = session is None
    if session is None:
        session = open_session(target)
    try:
        if own:
            await session.open()
        if mailboxes is None:
            mailboxes = await move_mailboxes(session, target, records)
        scan = await scan_server(session, mailboxes)
        needed = bodies_needed(entries, scan.entries, appended)
        digests, failures = await digest_bodies(session, needed)
        if own:
            await session.close()
    except BaseException:
        if own:
            await session.abort()
        raise
    scan.unreadable.update(failures)
    comparison = compare(entries, scan.entries, bodies=digests, appended=appended, unreadable=scan.unreadable)
    return CompareOutcome(
        source, target, tuple(mailboxes), comparison, scan, records, bodies_downloaded=len(needed)
    )
