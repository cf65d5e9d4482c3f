"""The status records (:mod:`maild.service.status`) built from the scheduler's runtime and the archive.

The daemon's ``status`` and ``fetch-now`` commands call these; nothing here changes state. The
scheduler's own state name ``idle`` (waiting for the next cycle) is reported as ``waiting`` so that it
cannot be mistaken for the IMAP IDLE mode.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from maild import __version__
from maild.archive.failures import failure_records
from maild.archive.store import Store
from maild.errors import AuthError
from maild.fetch.cycle import CycleResult
from maild.model import FailureRecord, MessageKey
from maild.policy import SET_ASIDE_RETRY_S, next_deletion_due, set_aside
from maild.service.account_runtime import AUTH_LOCKOUT_FAILURES, AccountRuntime
from maild.service.labels import key_label
from maild.service.replies import FetchOutcome
from maild.service.status import (
    AccountState,
    AccountStatus,
    ArchiveTotals,
    CycleStatus,
    FailingMessageStatus,
    HistoryStatus,
    IMAPStatus,
    ProgressStatus,
    RetrievalFailureStatus,
    SignInStatus,
    StatusReply,
    UIDValidityChangeStatus,
)


def _whole_seconds(moment: datetime | None) -> datetime | None:
    """``moment`` without its fraction of a second (the status JSON carries whole seconds)."""
    return moment.replace(microsecond=0) if moment is not None else None


def reported_state(rt: AccountRuntime) -> AccountState:
    """The account's state as the control socket reports it (the scheduler's ``idle`` is ``waiting``)."""
    return "waiting" if rt.state == "idle" else rt.state


def _cycle_status(res: CycleResult) -> CycleStatus:
    return CycleStatus(
        new_messages=res.new_messages,
        new_links=res.new_links,
        octets=res.octets,
        deleted=res.deleted,
        seconds=round(res.seconds, 3),
        failures=tuple(RetrievalFailureStatus(repr(f.key), f.reason, f.kind) for f in res.failures),
        too_large=tuple(repr(k) for k in res.too_large),
        mailbox_failures=tuple(res.imap.mailbox_failures.items()) if res.imap is not None else None,
    )


def failing_messages(
    records: Mapping[MessageKey, FailureRecord], now: datetime
) -> tuple[FailingMessageStatus, ...]:
    """The status of an account's failure records at ``now`` (aware UTC), most failures first."""
    aside = set_aside(records, now)
    retry = timedelta(seconds=SET_ASIDE_RETRY_S)
    ordered = sorted(records.values(), key=lambda r: (-r.failures, r.first_failed_at))
    return tuple(
        FailingMessageStatus(
            key=key_label(r.key),
            failures=r.failures,
            reason=r.reason,
            last_failed_at=_whole_seconds(r.last_failed_at) or r.last_failed_at,
            set_aside=r.key in aside,
            next_retry=_whole_seconds(r.last_failed_at + retry) if r.key in aside else None,
            subject=r.subject,
            from_=r.from_,
            date=r.date,
            kind=r.kind,
        )
        for r in ordered
    )


def imap_status(rt: AccountRuntime) -> IMAPStatus:
    """The IMAP part of an account's status: mailboxes, IDLE, UIDVALIDITY changes."""
    acc = rt.config
    res = rt.last_result
    watcher = rt.watcher
    info = res.imap if res is not None else None
    return IMAPStatus(
        mailboxes=tuple(info.mailboxes) if info is not None else acc.mailboxes,
        mailbox_selection="all" if acc.all_mailboxes else "list",
        idle=acc.idle,
        idle_mailbox=acc.idle_mailbox,
        last_push=_whole_seconds(rt.last_push),
        idle_error=watcher.last_error if watcher is not None else None,
        uidvalidity_changes=tuple(
            UIDValidityChangeStatus(
                mailbox=change.mailbox,
                old_uidvalidity=change.old_uidvalidity,
                new_uidvalidity=change.new_uidvalidity,
                relinked=change.relinked,
                to_retrieve=change.to_retrieve,
                at=_whole_seconds(change.at),
            )
            for change in rt.uidvalidity_changes
        ),
        exclude=acc.exclude if acc.all_mailboxes else None,
    )


def sign_in_status(rt: AccountRuntime) -> SignInStatus:
    """The account's sign-in method and, for OAuth2, its tokens' health (from memory, no I/O)."""
    oauth = rt.config.sign_in.oauth2
    if oauth is None:
        return SignInStatus(auth=rt.config.sign_in.auth)
    from maild.auth.tokens import peek_source  # OAuth2 accounts only: the daemon of passwords loads none

    source = peek_source(oauth)
    if source is None:  # no token asked for yet
        return SignInStatus(auth="oauth2", grant=oauth.grant)
    health = source.health()
    return SignInStatus(
        auth="oauth2",
        grant=health.grant,
        token_expires_at=_whole_seconds(health.token_expires_at),
        refresh_token_obtained_at=_whole_seconds(health.refresh_token_obtained_at),
        refresh_token_expires_at=_whole_seconds(health.refresh_token_expires_at),
        warning=health.warning,
    )


def account_status(
    rt: AccountRuntime,
    messages: int,
    kept: tuple[int, datetime | None] = (0, None),
    failing: tuple[FailingMessageStatus, ...] = (),
) -> AccountStatus:
    """The status record of one account (see docs/control-socket.md).

    Args:
        rt: the scheduler's runtime record.
        messages: archived messages linked to the account.
        kept: (archived messages still on the server, earliest first-fetch time among them, UTC).
        failing: the account's failing messages (:func:`failing_messages`).
    """
    acc = rt.config
    res = rt.last_result
    oldest_kept_since = _whole_seconds(kept[1])
    return AccountStatus(
        name=acc.name,
        organisation=acc.organisation,
        employee=acc.employee,
        protocol=acc.protocol,
        host=acc.host,
        enabled=acc.enabled,
        state=reported_state(rt),
        messages=messages,
        last_success=_whole_seconds(rt.last_success),
        next_run=_whole_seconds(rt.next_run),
        last_error=rt.last_error,
        consecutive_failures=rt.consecutive_failures,
        mode=rt.mode,
        on_server=res.on_server - res.deleted if res is not None else None,  # as left by the last cycle
        imap=imap_status(rt) if acc.protocol == "imap" else None,
        retention=acc.retention,
        retention_days=acc.retention_days,
        # POP3: "uidl", or "content-digest" for a server without UIDL
        identity=res.identity if res is not None and acc.protocol == "pop3" else None,
        warnings=tuple(res.warnings) if res is not None else (),
        pending_deletion=0 if acc.retention == "keep" else kept[0],
        oldest_kept_since=oldest_kept_since,
        next_deletion_due=next_deletion_due(acc.retention, acc.retention_days, oldest_kept_since),
        last_cycle=_cycle_status(res) if res is not None else None,
        failing_messages=failing,
        deletion_suspended=res.deletion_suspended if res is not None else None,
        history=_history_status(rt),
        progress=_progress_status(rt) if rt.state == "fetching" else None,
        sign_in=sign_in_status(rt),
    )


def _progress_status(rt: AccountRuntime) -> ProgressStatus | None:
    p = rt.progress
    if p is None:
        return None
    rate = p.rate_octets_per_s()
    left = p.seconds_left()
    return ProgressStatus(
        messages_done=p.messages_done,
        octets_done=p.octets_done,
        messages_total=p.messages_total,
        octets_total=p.octets_total,
        rate_octets_per_s=round(rate, 1) if rate is not None else None,
        seconds_left=round(left, 1) if left is not None else None,
    )


def _history_status(rt: AccountRuntime) -> HistoryStatus:
    h = rt.history()
    return HistoryStatus(
        failing_since=_whole_seconds(h.failing_since),
        last_error_at=_whole_seconds(h.last_error_at),
        cycles_ok=h.cycles_ok,
        cycles_failed=h.cycles_failed,
        fetched_messages=h.fetched_messages,
        fetched_octets=h.fetched_octets,
    )


_log = structlog.get_logger("maild.service")

#: The longest a status request waits for the archive's figures when it has none yet, in seconds;
#: after that it answers without them (``archive.read_at`` null).
ARCHIVE_WAIT_S = 1.0
#: Figures older than this many seconds are read again in the background; the request answers with
#: those it has meanwhile.
ARCHIVE_MAX_AGE_S = 2.0


@dataclass(frozen=True, slots=True)
class _Figures:
    counts: dict[str, int]
    kept: dict[str, tuple[int, datetime | None]]
    messages: int
    octets: int
    read_at: datetime
    read_at_s: float
    generation: int
    failures: dict[str, dict[MessageKey, FailureRecord]]


class ArchiveFigures:
    """The archive's counts for status, read in the background and served from memory.

    Reading them is never on a status request's critical wait: the archive's one connection may
    sit behind another process's lock for its whole busy timeout, and counting takes long on a
    large archive. A request waits at most :data:`ARCHIVE_WAIT_S` for a fresh read (one at a
    time, going on in the background when the request stops waiting), then answers with the
    figures last read.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._figures: _Figures | None = None
        self._reading: asyncio.Task[None] | None = None
        self._names: set[str] = set()
        """Accounts whose failure records are read (every account a request has named so far)."""

    async def _read(self, names: tuple[str, ...]) -> None:
        store = self._store
        generation = store.generation
        try:
            counts = await store.message_counts()
            kept = await store.on_server_summary()
            messages, octets = await store.totals()
            failures = {name: await failure_records(store, name) for name in names}
        except Exception as exc:
            _log.warning("status.archive-read-failed", error=str(exc))
            return
        loop_now = asyncio.get_running_loop().time()
        self._figures = _Figures(
            counts, kept, messages, octets, datetime.now(UTC), loop_now, generation, failures
        )
        if store.counters is not None and store.generation == generation:
            store.counters.replace(counts, messages, octets)  # no batch committed while counting

    async def get(self, names: tuple[str, ...] = ()) -> _Figures | None:
        """The latest figures, or None when none could be read yet.

        Figures older than :data:`ARCHIVE_MAX_AGE_S`, or read before the archive last changed, are
        read again; the request waits for that read at most :data:`ARCHIVE_WAIT_S` seconds and
        otherwise answers with the figures it had.
        """
        now = asyncio.get_running_loop().time()
        figures = self._figures
        self._names.update(names)
        stale = (
            figures is None
            or now - figures.read_at_s > ARCHIVE_MAX_AGE_S
            or figures.generation != self._store.generation
            or not set(names) <= figures.failures.keys()
        )
        if stale:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.create_task(self._read(tuple(self._names)))
            # A read queues behind a write of the daemon's one connection, and that write may wait
            # for another process's lock for the whole busy timeout: then the request does not wait
            # (the counts come from the counters the daemon keeps; the rest from the last read).
            if not (self._store.writing and self._store.counters is not None):
                await asyncio.wait((self._reading,), timeout=ARCHIVE_WAIT_S)
        return self._figures


_FIGURES: weakref.WeakKeyDictionary[Store, ArchiveFigures] = weakref.WeakKeyDictionary()


def archive_figures(store: Store) -> ArchiveFigures:
    """The one :class:`ArchiveFigures` of ``store`` in this process."""
    figures = _FIGURES.get(store)
    if figures is None:
        figures = _FIGURES[store] = ArchiveFigures(store)
    return figures


async def status_reply(
    accounts: dict[str, AccountRuntime], store: Store, started_at: datetime, only: str | None = None
) -> StatusReply:
    """The full status: accounts in configuration order (or just ``only``) and archive totals.

    Messages per account and the archive's totals come from the counters the daemon keeps
    (:mod:`maild.archive.counters`, current with every committed batch) when it keeps them; the
    rest of the archive's figures (pending deletions, failing messages) from :class:`ArchiveFigures`
    (at most :data:`ARCHIVE_MAX_AGE_S` old while the archive answers); the accounts' states from
    the scheduler's memory.

    Args:
        accounts: the scheduler's runtime records by account name, in configuration order.
        store: the open archive.
        started_at: when the daemon started (UTC).
        only: one account name, or None for all.
    """
    names = tuple(name for name in accounts if only is None or name == only)
    figures = await archive_figures(store).get(names)
    counts = figures.counts if figures is not None else {}
    kept = figures.kept if figures is not None else {}
    messages, octets = (figures.messages, figures.octets) if figures is not None else (0, 0)
    if store.counters is not None:  # the daemon's: current with every committed batch
        counts, messages, octets = store.counters.by_account, store.counters.messages, store.counters.octets
    read_at = figures.read_at.replace(microsecond=0) if figures is not None else None
    records = figures.failures if figures is not None else {}
    now = datetime.now(UTC)
    failing = {name: failing_messages(records.get(name, {}), now) for name in names}
    await store.recheck_wal()  # a reader that ended since the last write: released, not "held"
    wal = store.wal_snapshot()
    return StatusReply(
        version=__version__,
        started_at=started_at.replace(microsecond=0),
        accounts=tuple(
            account_status(rt, counts.get(name, 0), kept.get(name, (0, None)), failing[name])
            for name, rt in accounts.items()
            if only is None or name == only
        ),
        archive=ArchiveTotals(
            messages,
            octets,
            read_at,
            store.replaced,
            str(store.spool.directory),
            wal.octets,
            _whole_seconds(wal.held_since),
        ),
    )


def fetch_outcome(rt: AccountRuntime, result: CycleResult | None) -> FetchOutcome:
    """One account's ``fetch-now`` outcome: the cycle's counts, or why it did not succeed."""
    if result is None:
        return FetchOutcome(rt.config.name, error=rt.last_error or reported_state(rt))
    return FetchOutcome(
        rt.config.name,
        new_links=result.new_links,
        octets=result.octets,
        seconds=round(result.seconds, 3),
        new_messages=result.new_messages,
        deleted=result.deleted,
        not_retrieved=len(result.failures),
        no_room=result.no_room,
        set_aside=len(result.set_aside),
        warnings=tuple(result.warnings),
    )


def locked_out_outcome(rt: AccountRuntime) -> FetchOutcome | None:
    """``fetch-now``'s outcome for an account locked out after refused logins, not tried; else None.

    A locked-out account is not logged into on request: each refusal counts towards the provider's
    own lockout. The outcome is a failure (the account needs the administrator) that says what
    ends the lockout.
    """
    if not rt.config.enabled or rt.paused or rt.auth_failures < AUTH_LOCKOUT_FAILURES:
        return None
    name = rt.config.name
    reauthorize = isinstance(rt.last_exception, AuthError) and rt.last_exception.reauthorize
    # After a restart the lockout is remembered (schema v7) but not the exception: its text says it.
    if reauthorize or "maild accounts authorize" in (rt.last_error or ""):
        why = "the provider refused the stored OAuth2 grant"  # issue 13: locked at the first refusal
        how = f"run `maild accounts authorize {name}`"
    else:
        why = f"{rt.auth_failures} refused logins in a row locked the account out"
        how = (
            "fix the password (a new password file or credential ends the lockout by itself) or run"
            f" `maild resume {name}`"
        )
    return FetchOutcome(
        name, error=f"not tried: {why}; {how}", locked_out_since=rt.last_error_at or rt.failing_since
    )


def skip_reason(rt: AccountRuntime) -> str | None:
    """Why ``fetch-now`` skips ``rt`` without counting it as failed: ``paused``, ``disabled``, or None."""
    if not rt.config.enabled:
        return "disabled"
    if rt.paused:
        return "paused"
    return None
