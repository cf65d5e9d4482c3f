"""POP3 -> IMAP: compare inventories, APPEND what exists only locally, retire the old account.

The procedure of the seed text, made verifiable. Account A (typically POP3, possibly with
``retention = "delete"``, so much of its mail exists only in maild's archive) is to be replaced by
account B (IMAP, often the same mailbox):

1. :func:`compare_accounts`: A's archive (everything ever fetched for A) against B's server now.
   B's mailboxes are scanned with ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])``; bodies are
   downloaded only where :func:`maild.move.compare.bodies_needed` says the headers cannot decide.
2. :func:`migrate`: every message of A that B lacks is uploaded with APPEND (RFC 9051 section
   6.3.12), with its INTERNALDATE and ``\\Seen``; each server OK is recorded in ``appends`` at once.
   Re-running is safe: recorded and present messages are skipped, and a message whose OK was never
   recorded (crash between the two) is found in B by comparing. A refused message is reported with
   the server's reply and the run goes on.
3. :func:`retire`: only when nothing of A is missing in B: A stops fetching, its archive stays, and
   the archive records that A was migrated into B.

Only the CLI (``cli_migrate.py``) prints; this module returns reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from maild.archive.move_queries import AppendRecord, MigrationStore, UploadSource, as_keys
from maild.config.dropin import dropin_path, set_enabled
from maild.config.loader import AccountConfig, Config
from maild.errors import ConfigError, ConnectError, MaildError, MigrationError
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
    upload_order,
)
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap.mailbox import AppendResult, IMAPMailbox

#: Messages whose octets are read from the archive at once while uploading.
UPLOAD_BATCH = 50

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


def deleting_source(config: Config, source: str, target: AccountConfig) -> str | None:
    """Explain why uploading into ``target`` would be undone, or return None.

    That is the case when A is an enabled POP3 account that deletes what it fetches
    (``retention`` other than ``"keep"``) from the same mailbox as B (same host and user name):
    A's next fetch cycle would archive the uploaded messages and delete them from the server again.
    """
    account = config.accounts.get(source)
    if account is None or not account.enabled or account.protocol != "pop3" or account.retention == "keep":
        return None
    if account.host.lower() != target.host.lower() or account.username != target.username:
        return None
    return (
        f"account {source} deletes the messages it fetches (retention = {account.retention!r}) from the"
        f" same mailbox as {target.name} ({target.username} at {target.host}): its next fetch would"
        f' delete what is uploaded. First set retention = "keep" or enabled = false for {source}'
        f" in {account.source} (and `maild reload` a running daemon)"
    )


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
            digests[item.key] = body_digest(item.raw)
    return digests, failures


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
            mailboxes = await configured_mailboxes(session, target)
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


def upload_internaldate(source: UploadSource) -> datetime:
    """The INTERNALDATE to give an uploaded message (UTC).

    A's recorded IMAP INTERNALDATE when there is one (the delivery time the old server kept), else
    the Date field, else when maild first fetched it.
    """
    return source.internaldate or source.date or source.first_fetched_at


def upload_flags(protocol: str, source: UploadSource) -> frozenset[str]:
    """The flags to give an uploaded message: ``\\Seen`` as A had it.

    POP3 has no flags; everything a POP3 client fetched counts as read (as Dovecot marks it on
    RETR), so POP3 messages are uploaded ``\\Seen``. IMAP messages keep ``\\Seen`` only if A saw it.
    """
    if protocol == "pop3":
        return frozenset({"\\Seen"})
    return source.flags & {"\\Seen"}


@dataclass(frozen=True, slots=True)
class Upload:
    """One APPEND and the server's answer."""

    entry: ArchiveEntry
    result: AppendResult


@dataclass(slots=True)
class MigrationReport:
    """What :func:`migrate` did.

    Attributes:
        target_mailbox: where messages were uploaded.
        before: the comparison before uploading.
        planned: the messages to upload (one per identity; oldest first).
        copies: messages of A left out because another of A with the same identity is uploaded.
        recorded_missing: messages recorded as uploaded earlier but no longer in B (deleted there?):
            not uploaded again.
        appended: uploads the server accepted.
        refused: uploads the server refused (NO or BAD), with its reply.
        stopped: why the run stopped early (connection lost, ...), or None.
        after: the comparison after uploading (None for a dry run or a stopped run).
        after_error: why that comparison failed, or None.
    """

    target_mailbox: str
    before: CompareOutcome
    planned: list[ArchiveEntry] = field(default_factory=list)
    copies: list[ArchiveEntry] = field(default_factory=list)
    recorded_missing: list[ArchiveEntry] = field(default_factory=list)
    appended: list[Upload] = field(default_factory=list)
    refused: list[Upload] = field(default_factory=list)
    stopped: str | None = None
    after: CompareOutcome | None = None
    after_error: str | None = None


def plan_uploads(before: CompareOutcome, mailbox: str) -> MigrationReport:
    """Decide what to upload into ``mailbox`` from a comparison.

    Left out: messages recorded as uploaded into ``mailbox`` under its current UIDVALIDITY (or with
    none known) that B no longer holds (someone deleted them there; uploading again would undo
    that), and copies with the same identity as another planned message.

    Raises:
        MigrationError: some of B's messages could not be read, so any upload might duplicate one.
    """
    report = MigrationReport(mailbox, before)
    uidvalidity = before.scan.uidvalidity[mailbox]
    earlier = {
        r.message for r in before.records if r.mailbox == mailbox and r.uidvalidity in (None, uidvalidity)
    }
    missing = before.comparison.only_a
    report.recorded_missing = [e for e in missing if e.message in earlier]
    report.planned, report.copies = upload_order([e for e in missing if e.message not in earlier])
    unreadable = before.comparison.unreadable
    if report.planned and unreadable:
        raise MigrationError(
            f"{len(unreadable)} messages in {before.target.name} could not be read, so whether they are"
            " copies of messages to upload is unknown; nothing was uploaded (try again later)."
            f" First: {next(iter(unreadable.values()))}"
        )
    return report


async def migrate(
    config: Config,
    store: MigrationStore,
    source: str,
    target_name: str,
    mailbox: str,
    *,
    dry_run: bool = False,
    clock: Callable[[], datetime],
    progress: Progress | None = None,
) -> MigrationReport:
    """Upload every message of A's archive that B lacks into B's ``mailbox``.

    Args:
        config: the configuration.
        store: the open archive.
        source: account A (POP3 or IMAP; configured or not).
        target_name: account B (IMAP).
        mailbox: B's mailbox to upload into (it must exist); B's configured mailboxes and this one
            are compared.
        dry_run: compare and plan only.
        clock: the current aware UTC time, for the records.
        progress: called after each upload with (done, planned).

    Returns:
        The report; ``report.after`` is a fresh comparison unless dry or stopped.

    Raises:
        MigrationError: B is not IMAP; A would delete the uploads again (:func:`deleting_source`);
            messages of B could not be read (uploading could duplicate them).
        ConfigError, StoreError, and B's server errors before the first upload. After that, a
        server closing the connection in answer to an APPEND refuses that message and the run goes
        on in a new session (see :func:`_upload`); that happening again on the next message, or a
        timeout, ends the run with ``report.stopped`` set: re-run to continue.

    Cancellation at any await: uploads recorded so far stay recorded; an upload whose OK had not
    been recorded yet is found in B by the next run's comparison.
    """
    target = target_account(config, source, target_name)
    danger = deleting_source(config, source, target)
    if danger is not None and not dry_run:
        raise MigrationError(danger)
    records_of = await store.account_records()
    if source not in records_of:
        raise MigrationError(f"the archive knows no account {source!r}: nothing was ever fetched for it")
    protocol = records_of[source].protocol
    await store.ensure_account(target.name, target.organisation, target.employee, target.protocol, clock())
    session = open_session(target)
    try:
        await session.open()
        mailboxes = await configured_mailboxes(session, target, (mailbox,))
        before = await compare_accounts(store, source, target, mailboxes, session=session)
        report = plan_uploads(before, mailbox)
        if dry_run:
            await session.close()
            return report
        uidvalidity = before.scan.uidvalidity[mailbox]
        session = await _upload(store, session, report, protocol, target, uidvalidity, clock, progress)
        if report.stopped is None:
            await session.close()
        else:
            await session.abort()
    except BaseException:
        await session.abort()
        raise
    if report.stopped is None:
        try:
            report.after = await compare_accounts(store, source, target, mailboxes)
        except MaildError as exc:  # the uploads are done and recorded; only the check is missing
            report.after_error = str(exc)
    return report


async def _upload(
    store: MigrationStore,
    session: IMAPMailbox,
    report: MigrationReport,
    protocol: str,
    target_account: AccountConfig,
    uidvalidity: int,
    clock: Callable[[], datetime],
    progress: Progress | None,
) -> IMAPMailbox:
    """APPEND each planned message, recording each OK at once; return the session in use at the end.

    A connection the server closes in answer to an APPEND (``* BYE``; Gmail does this for messages
    it refuses, e.g. with NUL octets) refuses that message with the server's words, and the run
    goes on in a new session; when the next message ends the same way too, or another session
    error happens, the run stops (``report.stopped``).
    """
    target = target_account.name
    planned = report.planned
    done = 0
    closed_before = False
    source = report.before.source
    for start in range(0, len(planned), UPLOAD_BATCH):
        batch = planned[start : start + UPLOAD_BATCH]
        sources = await store.upload_sources(source, [e.message for e in batch])
        for entry in batch:
            upload = sources.get(entry.message)
            if upload is None:  # purged meanwhile
                continue
            try:
                result = await session.append(
                    report.target_mailbox,
                    upload.raw,
                    flags=upload_flags(protocol, upload),
                    internaldate=upload_internaldate(upload),
                )
            except ConnectError as exc:  # the session ended (BYE): this message is refused, once
                report.refused.append(Upload(entry, AppendResult(False, str(exc))))
                done += 1
                if closed_before:
                    report.stopped = str(exc)
                    return session
                closed_before = True
                await session.abort()
                session = open_session(target_account)
                try:
                    await session.open()
                except MaildError as again:
                    report.stopped = str(again)
                    return session
                except BaseException:
                    await session.abort()
                    raise
                if progress is not None:
                    progress(done, len(planned))
                continue
            except MaildError as exc:
                report.stopped = str(exc)
                return session
            closed_before = False
            if result.ok:
                await store.record_append(
                    entry.message,
                    target,
                    report.target_mailbox,
                    result.uidvalidity if result.uidvalidity is not None else uidvalidity,
                    result.uid,
                    clock(),
                )
                report.appended.append(Upload(entry, result))
            else:
                report.refused.append(Upload(entry, result))
            done += 1
            if progress is not None:
                progress(done, len(planned))
    return session


@dataclass(slots=True)
class RetireOutcome:
    """What :func:`retire` did.

    Attributes:
        comparison: the comparison that allowed it.
        disabled: how A was stopped: ``"drop-in"`` (``enabled = false`` written to its drop-in),
            ``"already disabled"`` (``enabled = false`` in the main file), ``"not configured"``.
    """

    comparison: CompareOutcome
    disabled: str


async def retire(
    config: Config, store: MigrationStore, source: str, target_name: str, *, clock: Callable[[], datetime]
) -> RetireOutcome:
    """Retire A into B: only when nothing of A is missing in B's configured mailboxes.

    Then A is disabled (``enabled = false`` in its drop-in, rewritten atomically), its archive is
    kept, and ``accounts.retired_at``/``retired_into`` are recorded. An account in the main file is
    never rewritten: it must already say ``enabled = false`` there (the error says so).

    Raises:
        MigrationError: messages of A are missing in B (how many), or A is enabled in the main file.
        ConfigError, StoreError, and B's server errors.
    """
    target = target_account(config, source, target_name)
    account = config.accounts.get(source)
    outcome = await compare_accounts(store, source, target)
    missing = outcome.comparison.only_a
    if missing:
        archive_only = sum(1 for e in missing if not e.on_server)
        raise MigrationError(
            f"{len(missing)} messages of {source} are missing in {target_name} ({archive_only} exist"
            f" only in the archive); run `maild migrate {source} --to {target_name}` first"
        )
    if account is not None and account.enabled and account.source == config.path:
        raise MigrationError(
            f"nothing of {source} is missing in {target_name}, but account {source} is defined in the"
            f" main file {config.path}, which maild never rewrites: set enabled = false in"
            f" [accounts.{source}] there, then run `maild retire {source} --into {target_name}` again"
        )
    disabled = "not configured"
    if account is not None:
        if account.enabled:
            assert account.source is not None
            if account.source != dropin_path(config.path, source):
                raise MigrationError(
                    f"account {source} is defined in {account.source}, which `maild accounts add` did not"
                    f" write: set enabled = false in [accounts.{source}] there, then run `maild retire"
                    f" {source} --into {target_name}` again"
                )
            set_enabled(account.source, source, False)
            disabled = "drop-in"
        else:
            disabled = "already disabled"
    await store.retire(source, target_name, clock())
    return RetireOutcome(outcome, disabled)


@dataclass(slots=True)
class PurgeCheck:
    """Whether purging an account's archive would lose mail (see :func:`check_purge`).

    Attributes:
        exclusive: archived messages linked to no other account.
        lost: those of them found on no other account's server either: what a purge would lose.
        checked: IMAP accounts whose servers were scanned.
        unchecked: IMAP accounts whose servers could not be scanned, with the error.
    """

    exclusive: int = 0
    lost: list[ArchiveEntry] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)


async def check_purge(config: Config, store: MigrationStore, name: str) -> PurgeCheck:
    """Find the messages a purge of ``name``'s archive would lose.

    A message is safe when another account links to it in the archive, or when the server of
    another configured IMAP account (its configured mailboxes) holds it now, by the identity rules
    of :mod:`maild.move.compare`. Servers are scanned one by one only while unsafe messages
    remain. POP3 servers are not scanned (their messages are archived by the next fetch anyway).

    Raises:
        StoreError: the archive failed.
    """
    check = PurgeCheck()
    exclusive = set(await store.exclusive_messages(name))
    check.exclusive = len(exclusive)
    if not exclusive:
        return check
    remaining = [e for e in await store.archive_entries(name) if e.message in exclusive]
    for other in config.accounts.values():
        if not remaining:
            break
        if other.name == name or other.protocol != "imap":
            continue
        session: IMAPMailbox | None = None
        try:
            session = open_session(other)
            await session.open()
            scan = await scan_server(session, await configured_mailboxes(session, other))
            needed = bodies_needed(remaining, scan.entries)
            digests, _failures = await digest_bodies(session, needed)
            await session.close()
        except MaildError as exc:
            if session is not None:
                await session.abort()
            check.unchecked[other.name] = str(exc)
            continue
        check.checked.append(other.name)
        remaining = compare(remaining, scan.entries, bodies=digests).only_a
    check.lost = remaining
    return check
