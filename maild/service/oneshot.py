"""``maild fetch``: one cycle of each chosen account, without a daemon, built from the daemon's parts.

The same pieces the daemon wires are composed here: the archive (:class:`~maild.archive.store.Store`),
maild's own POP3 thread pool (``pop3_threads``), the process's :class:`~maild.service.budget.Budgets`
(``max_concurrent_fetches``, ``max_connections_per_host``, transfers, memory) and a
:class:`~maild.service.runner.CycleRunner` with its kept sessions. So every limit holds for a
one-shot fetch as it does for the daemon. Sessions are not kept: an IMAP cycle ends with LOGOUT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import structlog

from maild.archive.failures import failure_records
from maild.archive.store import Store
from maild.config.loader import AccountConfig, Config
from maild.errors import ConfigError, MaildError, StoreError
from maild.fetch.cycle import CycleResult, MaildropFactory, make_maildrop, utc_now
from maild.model import ARCHIVE_FULL_PREFIX, FailureRecord
from maild.secret import redact_known
from maild.service.archive_lock import acquire_archive_lock
from maild.service.budget import Budgets
from maild.service.kept_sessions import KeptSessions
from maild.service.labels import (
    message_label,
    new_and_known,
    not_retrieved_text,
    outcome_extras,
    outcome_label,
    total_text,
    transfer_text,
)
from maild.service.memory import tune_allocator
from maild.service.runner import CycleRunner

log = structlog.get_logger("maild.service.oneshot")

__all__ = ["EXIT_DELETIONS_NOT_RECORDED", "OneShotResult", "fetch_once", "total_line"]


EXIT_DELETIONS_NOT_RECORDED = 3
"""``maild fetch``'s exit code when deletions done on a server could not be recorded in the archive
(its disk full) even when tried again at the end of the run (:data:`UNRECORDED_TEXT`)."""

UNRECORDED_TEXT = (
    "{count} deletions done on the server could not be recorded: the archive's disk is full. Free space"
    " and run `maild fetch` again before the server may give those UIDLs to new messages: until they are"
    " recorded, a new message listed under one of them at the size of the deleted one is taken for it"
    " (not archived; deleted unarchived with retention = delete)"
)
"""The line (after ``NOT RECORDED: ``) for deletions a one-shot could not record (session 14): the
daemon keeps them in memory and writes them before the account's next cycle; a one-shot cannot, so it
tries once more before it exits, and then says so and exits :data:`EXIT_DELETIONS_NOT_RECORDED`."""


@dataclass(frozen=True, slots=True)
class OneShotResult:
    """How one account's cycle of a one-shot fetch ended.

    Attributes:
        account: the account name.
        result: the cycle's result, or None when it failed.
        error: the error that ended a failed cycle, in words (never a secret), or None.
        failing: the archive's failure records of messages that failed in this cycle (with the
            Subject where the header fetch of :mod:`maild.fetch.failed_headers` read it); a failed
            cycle's line names them.
        unrecorded: deletions done on the server whose record found the archive's disk full, and
            again when tried once more before the one-shot ended (:func:`fetch_once`); ``maild
            fetch`` exits :data:`EXIT_DELETIONS_NOT_RECORDED` for them.
    """

    account: str
    result: CycleResult | None
    error: str | None = None
    failing: tuple[FailureRecord, ...] = ()
    unrecorded: int = 0

    @property
    def failed(self) -> bool:
        """Whether the cycle failed."""
        return self.result is None

    @property
    def short_of_room(self) -> bool:
        """Whether the cycle succeeded but could not retrieve messages for lack of room on this
        machine (the spool's or the archive's disk full): ``maild fetch`` exits 1 for it."""
        return self.result is not None and self.result.no_room > 0

    def line(self, size_text: Callable[[int], str] | None = None) -> str:
        """What ``maild fetch`` prints for the account: one line, then one indented line per message
        that failed (its identity, Subject where known, and the server's words) and per warning.

        ``size_text`` shows the octets fetched for a person (the CLI's ``human_size``); by default
        ``N octets``. The bracket says the size and the cycle's wall-clock time as ``maild fetch-now``
        does: ``anna: 3 new messages (1.2 MB retrieved, 0.412 s)``.
        """
        res = self.result
        if res is None:
            lines = [f"{self.account}: FAILED: {self.error}"]
            lines += [f"  not retrieved: {message_label(r.key, r.subject)}: {r.reason}" for r in self.failing]
            return "\n".join(lines)
        extra = outcome_extras(
            res.deleted, len(res.failures), res.no_room, len(res.set_aside), "listed below"
        )
        counts = new_and_known(res.new_messages, res.new_links)
        size = size_text(res.octets) if size_text is not None else f"{res.octets} octets"
        # "retrieved": the size is of everything fetched, new or not; "(148.0 MB)" after "37 already
        # archived" read as if 148 MB were new after a killed run
        lines = [f"{self.account}: {counts} ({transfer_text(size, res.seconds)}){extra}"]
        lines += failure_lines(res)
        lines += [f"  warning: {w}" for w in res.warnings]
        if self.unrecorded:
            lines.append(f"  NOT RECORDED: {UNRECORDED_TEXT.format(count=self.unrecorded)}")
        return "\n".join(lines)


def total_line(
    results: Sequence[OneShotResult], size_text: Callable[[int], str], seconds: float
) -> str | None:
    """The closing line of ``maild fetch`` for more than one account (None for one):
    :func:`~maild.service.labels.total_text` of every account's cycle, ``seconds`` the whole command's
    wall-clock time (the accounts run at once)."""
    if len(results) < 2:
        return None
    done = [r.result for r in results if r.result is not None]
    size = size_text(sum(c.octets for c in done))
    new = sum(c.new_messages for c in done)
    links = sum(c.new_links for c in done)
    return total_text(len(results), new, links, size, seconds, failed=len(results) - len(done))


LISTED_FAILURES = 20
"""At most this many messages that failed are named one by one under an account's line of ``maild
fetch`` (default 20); the rest are counted (``  ... and 480 more not retrieved``)."""


def failure_lines(res: CycleResult) -> list[str]:
    """The indented lines under an account's line of ``maild fetch`` naming the messages not
    retrieved: one per message up to :data:`LISTED_FAILURES`, then one line counting the rest. A
    batch lost to a full archive disk (reasons beginning :data:`~maild.model.ARCHIVE_FULL_PREFIX`: one
    cause, not a fault of each message) is one line: ``  not retrieved: 120 messages: local archive:
    database or disk is full``."""
    full = [f for f in res.failures if f.reason.startswith(ARCHIVE_FULL_PREFIX)]
    own = [f for f in res.failures if not f.reason.startswith(ARCHIVE_FULL_PREFIX)]
    lines = [
        f"  not retrieved: {message_label(f.key, res.subjects.get(f.key))}: {f.reason}"
        for f in own[:LISTED_FAILURES]
    ]
    if len(own) > LISTED_FAILURES:
        lines.append(f"  ... and {len(own) - LISTED_FAILURES} more not retrieved")
    if full:
        count = f"{len(full)} message{'s' if len(full) > 1 else ''}"
        lines.append(f"  not retrieved: {count}: {full[0].reason}")
    return lines


async def _failed_since(store: Store, account: str, started: datetime) -> tuple[FailureRecord, ...]:
    """The failure records of ``account`` whose last failure is not older than ``started`` (UTC);
    empty when the archive cannot say (a failed cycle is reported anyway)."""
    try:
        records = await failure_records(store, account)
    except MaildError:
        return ()
    return tuple(r for r in records.values() if r.last_failed_at >= started)


def _log_not_retrieved(res: CycleResult, state_dir: Path, level: Literal["warning", "info"]) -> None:
    """The warning (journald priority 4; ``level`` info on a terminal, where the result line says it)
    that a fetched account left messages on the server, for cron mail and the journal (the one-shot's
    exit code is 0 for messages that failed on the server's side: the account was fetched; 1 when
    some failed for lack of room on this machine, :attr:`CycleResult.no_room`)."""
    local = res.no_room
    action = "they stay on the server and are retried at the next fetch"
    if local:
        full = any(f.reason.startswith(ARCHIVE_FULL_PREFIX) for f in res.failures)
        where = "the archive is there and its disk is full" if full else "large messages are spooled there"
        action = f"free space in {state_dir} ({where}); {action}"
    (log.warning if level == "warning" else log.info)(
        "fetch.messages-not-retrieved",
        account=res.account,
        messages=len(res.failures),
        local=local,
        summary=not_retrieved_text(len(res.failures), local, "listed below"),
        action=action,
    )


def chosen_accounts(config: Config, names: Sequence[str]) -> list[AccountConfig]:
    """The accounts named (in that order), or every enabled account when none is named.

    Raises:
        ConfigError: a name is not a configured account.
    """
    unknown = [n for n in names if n not in config.accounts]
    if unknown:
        raise ConfigError(f"{config.path}: no account named {unknown[0]!r}")
    if names:
        return [config.accounts[n] for n in names]
    return [a for a in config.accounts.values() if a.enabled]


#: Most messages with PDF/Office attachments (``messages.has_documents``, schema 13) whose attachment text
#: a one-shot ``maild fetch`` extracts after its cycles (50): messages without documents are not read
#: again, so the inline work is bounded by documents (each 1-40 ms of the worker's CPU, up to its
#: timeout when hostile). A larger backlog (the first fetch of a big mailbox) is left pending for the
#: daemon's background indexer or ``maild reindex``, and one line says so: the fetch stays a fetch.
ONESHOT_DOCUMENT_MESSAGES = 50


async def _index_documents(store: Store, bound: int = ONESHOT_DOCUMENT_MESSAGES) -> None:
    """With the ``documents`` extra: add the text of the PDF and Office attachments of what was just
    fetched (and anything else pending) to the index, as the daemon's background indexer would, when
    at most ``bound`` messages are pending; a larger backlog is left pending (``documents.deferred``).
    An unreadable attachment is logged (``documents.failed``) and never fails the fetch."""
    from maild.archive.document_text import available  # only after new mail: the one-shot start stays cheap

    if not available():
        return
    try:
        waiting = await store.documents_pending()
    except StoreError as exc:
        log.warning("documents.store-failed", error=str(exc))
        return
    if not waiting:  # nothing to index: neither the indexer's module nor its worker's is loaded
        return
    if waiting > bound:
        log.warning(
            "documents.deferred",
            pending=waiting,
            limit=bound,
            action="attachment text is indexed by the running daemon or by `maild reindex`",
        )
        return
    from maild.archive.document_worker import DocumentWorker

    worker = DocumentWorker()
    try:
        run, _ = await store.index_documents(worker)
    except StoreError as exc:
        log.warning("documents.store-failed", error=str(exc))
        return
    finally:
        await worker.close()
    log.info("documents.indexed", messages=run.messages, documents=run.documents, failures=run.failures)


async def _record_deletions(store: Store, res: OneShotResult) -> OneShotResult:
    """Write the deletions of ``res``'s account that its cycle could not record (the archive's disk
    full after ``+OK`` to QUIT, :meth:`Store.mark_deleted`) once more, before the one-shot ends and
    forgets them; ``res`` with :attr:`OneShotResult.unrecorded` set when that fails too."""
    count = store.unrecorded_deletions(res.account)
    if not count:
        return res
    try:
        await store.write_pending(res.account)
    except StoreError as exc:
        log.warning("fetch.deletions-not-recorded", account=res.account, deletions=count, error=str(exc))
        return replace(res, unrecorded=count)
    log.info("fetch.deletions-recorded-late", account=res.account, deletions=count)
    return res


async def fetch_once(
    config: Config,
    names: Sequence[str],
    *,
    maildrop_factory: MaildropFactory = make_maildrop,
    failure_level: Literal["warning", "info"] = "warning",
    on_left_open: Callable[[str], None] | None = None,
) -> list[OneShotResult]:
    """Run one fetch cycle of each chosen account, all at once within the configured limits.

    Args:
        config: the validated configuration.
        names: account names; empty: every enabled account.
        maildrop_factory: makes the unopened adapter of an account (tests pass stand-ins).
        failure_level: the level of the ``fetch.failed`` log line of a failed cycle, and of the
            ``fetch.messages-not-retrieved`` line of a fetched account that left messages on the
            server: ``"info"`` when the caller shows each result where the same person reads the log
            (``maild fetch`` on a terminal), so that a failure is said once; ``"warning"`` for cron
            mail, files and the journal (priority 4).
        on_left_open: told once, with the reason, when a transaction on the archive is left open
            (its ``COMMIT`` and ``ROLLBACK`` failed: :attr:`ArchiveConnection.on_left_open
            <maild.archive.connection.ArchiveConnection.on_left_open>`); the archive guard stops every
            deletion after it, and the next run opens the archive afresh.

    Returns:
        One result per account, in the order of :func:`chosen_accounts`.

    Raises:
        ConfigError: an unknown account name (nothing was fetched).
        StoreError: the archive cannot be opened, or another maild (a daemon or a ``maild fetch``)
            holds its fetcher lock (:mod:`maild.service.archive_lock`).

    With the ``documents`` extra, the attachment text of new messages is indexed after the cycles
    (:mod:`maild.archive.document_index`) when at most :data:`ONESHOT_DOCUMENT_MESSAGES` messages with
    documents are pending.

    Cancellation: running cycles are cancelled (their sessions aborted: committed batches stay
    committed, nothing uncommitted is deleted on a server); the archive is closed and the thread
    pool shut down.
    """
    accounts = chosen_accounts(config, names)
    fetch_lock = acquire_archive_lock(config.daemon.database)  # not beside a daemon or another fetch
    tune_allocator()  # before the worker threads start: see maild/service/memory.py
    executor = ThreadPoolExecutor(max_workers=config.daemon.pop3_threads, thread_name_prefix="maild-pop3")
    try:
        store = await Store.open(config.daemon.database)
        store.db.on_left_open = on_left_open
        try:
            records = [(a.name, a.organisation, a.employee, a.protocol) for a in config.accounts.values()]
            await store.ensure_accounts(records, utc_now())  # one look-up for all, not one each
            budgets = Budgets.from_config(config.daemon)
            sessions = KeptSessions(budgets)
            runner = CycleRunner(store, executor, budgets, sessions, maildrop_factory, utc_now)

            async def one(acc: AccountConfig) -> OneShotResult:
                # each account's task its context, as the daemon's account loops: every line of its
                # cycle names the account (aioimaplib's too: bound before its connection is made)
                structlog.contextvars.bind_contextvars(account=acc.name, organisation=acc.organisation)
                started = utc_now().replace(microsecond=0)  # failure records keep whole seconds
                try:
                    result = await runner.run(acc, keep_open=False)
                except MaildError as exc:
                    error = redact_known(str(exc))
                    log_failure = log.warning if failure_level == "warning" else log.info
                    log_failure("fetch.failed", account=acc.name, outcome=outcome_label(exc), error=error)
                    return OneShotResult(acc.name, None, error, await _failed_since(store, acc.name, started))
                assert result is not None  # runs without a proceed() check
                if result.failures:
                    _log_not_retrieved(result, config.daemon.state_dir, failure_level)
                return OneShotResult(acc.name, result)

            try:
                results = list(await asyncio.gather(*(one(a) for a in accounts)))
            finally:
                await sessions.drop_all()
            results = [await _record_deletions(store, res) for res in results]
            if any(r.result is not None and r.result.new_messages for r in results):
                await _index_documents(store)
            return results
        finally:
            await store.close()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        fetch_lock.release()
