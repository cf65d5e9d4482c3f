"""POP3 -> IMAP: compare inventories, APPEND what exists only locally, retire the old account.

The procedure of the seed text, made verifiable. Account A (typically POP3, possibly with
``retention = "delete"``, so much of its mail exists only in maild's archive) is to be replaced by
account B (IMAP, often the same mailbox):

1. :func:`~maild.move.target.compare_accounts`: A's archive (everything ever fetched for A) against
   B's server now. B's mailboxes are scanned with ``UID FETCH (UID RFC822.SIZE BODY.PEEK[HEADER])``;
   bodies are downloaded only where :func:`maild.move.compare.bodies_needed` says the headers cannot
   decide (all in :mod:`maild.move.target`).
2. :func:`migrate`: every message of A that B lacks is uploaded with APPEND (RFC 9051 section
   6.3.12), with its INTERNALDATE and ``\\Seen``; each server OK is recorded in ``appends`` at once.
   Re-running is safe: recorded and present messages are skipped, and a message whose OK was never
   recorded (crash between the two) is found in B by comparing. A refused message is reported with
   the server's reply and the run goes on.
3. :func:`maild.move.retire.retire`: only when nothing of A is missing in B: A stops fetching, its
   archive stays, and the archive records that A was migrated into B.

Only the CLI (:mod:`maild.cli.move`) prints; this module returns reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from maild.archive.move_queries import MigrationStore, UploadSource
from maild.config.loader import AccountConfig, Config
from maild.errors import ConnectError, MaildError, MigrationError
from maild.move.compare import ArchiveEntry, upload_order
from maild.move.target import (
    CompareOutcome,
    compare_accounts,
    configured_mailboxes,
    move_mailboxes,
    open_session,
    target_account,
)
from maild.protocols.imap.mailbox import AppendResult, IMAPMailbox

__all__ = [  # CompareOutcome, compare_accounts, target_account: re-exported for maild.cli.move
    "UPLOAD_BATCH",
    "CompareOutcome",
    "MigrationReport",
    "Upload",
    "UploadProgress",
    "compare_accounts",
    "deleting_source",
    "ensure_mailbox",
    "migrate",
    "plan_uploads",
    "target_account",
    "upload_flags",
    "upload_internaldate",
]

#: Messages whose octets are read from the archive at once while uploading.
UPLOAD_BATCH = 50

UploadProgress = Callable[[int, int, int, int], None]
"""Called after each upload with (messages done, messages planned, octets done, octets planned)."""


def deleting_source(config: Config, source: str, target: AccountConfig) -> str | None:
    """Explain why uploading into ``target`` could be undone, or return None.

    That is the case when A is an enabled account that deletes what it fetches (``retention`` other
    than ``"keep"``), whatever the host names and A's protocol: ``pop.provider.de`` and
    ``imap.provider.de`` (or two names of one IMAP server) are often one mailbox, and then A's fetch
    cycles would archive the uploaded messages as new ones (new UIDLs or UIDs) and delete them from
    the server again (at once with ``delete``, ``retention_days`` later with ``delete-after``). (Other
    POP3 accounts that turn out to share B's mailbox have their deletions suspended while the move is
    unfinished: :func:`maild.policy.move_suspension`; other IMAP accounts do not, see
    docs/moving-a-mailbox.md.)
    """
    account = config.accounts.get(source)
    if account is None or not account.enabled or account.retention == "keep":
        return None
    return (
        f"account {source} deletes the messages it fetches (retention = {account.retention!r}); if its"
        f" server ({account.host}) is the mailbox of {target.name} ({target.host}) under another name,"
        f" its next fetch would delete what is uploaded, and host names cannot tell. First set"
        f' retention = "keep" (or enabled = false) for {source} in {account.source} (and `maild reload`'
        f" a running daemon), then run `maild migrate {source} --to {target.name}` again"
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
        warnings: what the administrator should know (an upload into a mailbox B does not fetch).
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
    warnings: list[str] = field(default_factory=list)


def plan_uploads(before: CompareOutcome, mailbox: str, *, reupload: bool = False) -> MigrationReport:
    """Decide what to upload into ``mailbox`` from a comparison.

    Left out: messages accepted as deleted (``retire --accept-deleted``) and messages recorded as
    uploaded into B that B no longer holds (someone deleted them there; uploading again would undo
    that), unless ``reupload`` (``migrate --reupload``: the administrator wants them back); and
    copies with the same identity as another planned message.

    Raises:
        MigrationError: some of B's messages could not be read, so any upload might duplicate one.
    """
    report = MigrationReport(mailbox, before)
    missing = before.comparison.only_a if reupload else before.missing
    earlier = set() if reupload else {e.message for e in before.uploaded_earlier}
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
    reupload: bool = False,
    unseen: bool = False,
    create: bool = False,
    clock: Callable[[], datetime],
    progress: UploadProgress | None = None,
    on_plan: Callable[[MigrationReport], None] | None = None,
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
        reupload: upload again what was uploaded earlier and is no longer in B (deleted there),
            and what ``retire --accept-deleted`` accepted as deleted.
        create: create ``mailbox`` in B first when LIST does not show it (``--create``).
        unseen: upload with no flags at all (employees see the moved mail as unread), instead of
            the flags maild knows (:func:`upload_flags`).
        clock: the current aware UTC time, for the records.
        progress: called after each upload (:data:`UploadProgress`).
        on_plan: called with the report once the plan is made, before the first upload.

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
    records = await store.append_records(target.name)
    session = open_session(target)
    try:
        await session.open()
        await ensure_mailbox(session, source, target.name, mailbox, create=create and not dry_run)
        fetched = await configured_mailboxes(session, target)
        mailboxes = await move_mailboxes(session, target, records, (mailbox,))
        before = await compare_accounts(store, source, target, mailboxes, session=session)
        report = plan_uploads(before, mailbox, reupload=reupload)
        if mailbox not in fetched:
            report.warnings.append(
                f"{target.name} does not fetch mailbox {mailbox!r} (its mailboxes: {', '.join(fetched)}):"
                " maild will not archive what is uploaded there; compare and retire count it all the same"
            )
        if dry_run:
            await session.close()
            return report
        if on_plan is not None:
            on_plan(report)
        if report.planned:
            await store.start_move(source, target.name, clock())
        uidvalidity = before.scan.uidvalidity[mailbox]
        flags = (lambda _upload: frozenset()) if unseen else (lambda upload: upload_flags(protocol, upload))
        session = await _upload(store, session, report, flags, target, uidvalidity, clock, progress)
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


async def ensure_mailbox(
    session: IMAPMailbox, source: str, target: str, mailbox: str, *, create: bool
) -> None:
    """Make sure B has ``mailbox`` (LIST), creating it when ``create`` (``migrate --create``).

    Raises:
        MigrationError: it does not exist and ``create`` is false (the message names ``--create``).
        ProtocolError, and B's server errors: LIST or CREATE failed.
    """
    if mailbox in {m.name for m in await session.list_mailboxes()}:
        return
    if not create:
        raise MigrationError(
            f"{target} has no mailbox {mailbox!r}: run `maild migrate {source} --to {target}"
            f" --mailbox {mailbox} --create` to create it and upload into it"
        )
    await session.create_mailbox(mailbox)


async def _upload(
    store: MigrationStore,
    session: IMAPMailbox,
    report: MigrationReport,
    flags: Callable[[UploadSource], frozenset[str]],
    target_account: AccountConfig,
    uidvalidity: int,
    clock: Callable[[], datetime],
    progress: UploadProgress | None,
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
    octets_done = 0
    octets_planned = sum(e.size_octets for e in planned)
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
                    flags=flags(upload),
                    internaldate=upload_internaldate(upload),
                )
            except ConnectError as exc:  # the session ended (BYE): this message is refused, once
                report.refused.append(Upload(entry, AppendResult(False, str(exc))))
                done += 1
                octets_done += entry.size_octets
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
                    progress(done, len(planned), octets_done, octets_planned)
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
            octets_done += entry.size_octets
            if progress is not None:
                progress(done, len(planned), octets_done, octets_planned)
    return session
