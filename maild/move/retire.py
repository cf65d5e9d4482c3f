"""Retire the old account of a move, and check what purging an account's archive would lose.

:func:`retire` is step 3 of :mod:`maild.move.migrate`'s procedure: only when nothing of A is missing in
B (in :func:`~maild.move.target.move_mailboxes`), A stops fetching, its archive stays, and the archive
records that A was migrated into B (finishing the move). :func:`check_purge` serves
``maild accounts remove --purge``. Only the CLI prints; this module returns reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from maild.archive.move_queries import MigrationStore
from maild.config.dropin import dropin_path, set_enabled
from maild.config.loader import Config
from maild.errors import MaildError, MigrationError
from maild.move.compare import ArchiveEntry, bodies_needed, compare
from maild.move.source_check import SourceCheck, check_source
from maild.move.source_recheck import arrived_since, list_sizes, resized_since
from maild.move.target import (
    CompareOutcome,
    compare_accounts,
    configured_mailboxes,
    digest_bodies,
    open_session,
    scan_server,
    target_account,
    target_digests,
)
from maild.protocols.imap.mailbox import IMAPMailbox


class AlreadyRetired(MaildError):
    """``maild retire A --into B`` of an account the archive records as retired already: nothing is
    checked or changed (session 15; before, the whole check ran again and "retired" was printed as if
    it were new, with a second retirement time recorded).

    Attributes:
        account: A.
        retired_at: when it was retired (aware, UTC).
        retired_into: the account it was retired into (B, or another one).
    """

    def __init__(self, account: str, retired_at: datetime, retired_into: str) -> None:
        super().__init__(
            f"{account} was already retired into {retired_into} at {retired_at:%Y-%m-%d %H:%M} UTC"
        )
        self.account = account
        self.retired_at = retired_at
        self.retired_into = retired_into


@dataclass(slots=True)
class RetireOutcome:
    """What :func:`retire` did.

    Attributes:
        comparison: the comparison that allowed it.
        disabled: how A was stopped: ``"drop-in"`` (``enabled = false`` written to its drop-in),
            ``"already disabled"`` (``enabled = false`` in the main file), ``"not configured"``.
        accepted: messages uploaded earlier and gone from B, accepted as deleted (``--accept-deleted``).
        source_check: what A's server still holds that A never archived
            (:func:`maild.move.source_check.check_source`).
        accepted_unfetched: True when ``--accept-unfetched`` let A retire although its server held
            messages not archived (``source_check.unarchived``) or could not be checked
            (``source_check.error``); the decision is recorded in the archive.
    """

    comparison: CompareOutcome
    disabled: str
    accepted: list[ArchiveEntry] = field(default_factory=list)
    source_check: SourceCheck | None = None
    accepted_unfetched: bool = False


def unfetched_advice(check: SourceCheck, target: str) -> str:
    """Why A cannot be retired while its server holds mail A never archived (or is unknown), with the
    ways forward: ``maild fetch A`` then retire again, or ``--accept-unfetched``."""
    a = check.source
    accept = f"`maild retire {a} --into {target} --accept-unfetched`"
    if check.error is not None:
        return (
            f"{a}'s server ({check.host or 'not configured'}) could not be checked for mail {a} never"
            f" archived: {check.error}; run `maild retire {a} --into {target}` again when it can be reached,"
            f" or {accept} if the old provider is gone for good (recorded in the archive)"
        )
    counts = check.counts()
    stored = sum(1 for u in check.unarchived if u.stored)
    steps = [f"run `maild fetch {a}`"] if stored < len(check.unarchived) else []
    if "set aside" in counts or "failed" in counts:
        steps[:1] = [f"run `maild fetch-now --retry-failed {a}` (or `maild fetch {a}`)"]
    if "too large" in counts:
        steps.append(f"raise max_message_size of {a} for those too large")
    if "duplicate UIDL" in counts:
        steps.append(f"remove or move the messages sharing a UIDL on {a}'s server (see its log)")
    return (
        f"{a}'s server ({check.host}) holds {len(check.unarchived)} messages that {a} never archived"
        f" and {target} does not hold ({check.summary()}): they would stay on the old server once {a}"
        " is retired; "
        + (f"{stored} of them are in {a}'s archive now (the check stored what it read); " if stored else "")
        + "".join(f"{step}, " for step in steps)
        + ("then " if steps else "run ")
        + f"`maild migrate {a} --to {target}` and `maild retire {a} --into {target}` again"
        + _accept_clause(accept, target, stored, len(check.unarchived) - stored)
    )


def _accept_clause(accept: str, target: str, stored: int, rest: int) -> str:
    """The ``--accept-unfetched`` way of :func:`unfetched_advice`: none when the check stored every
    message named (they are in A's archive, missing in B: :func:`stored_advice`), else for those
    not stored, once ``maild migrate`` has run when some were."""
    if not rest:
        return ""
    if stored:
        return (
            f"; or, once `maild migrate` has run, {accept} for the {rest} not stored if {target} holds"
            " them or they are not wanted (recorded in the archive)"
        )
    return f"; or {accept} if {target} holds them or they are not wanted (recorded in the archive)"


def stored_advice(check: SourceCheck, target: str) -> str:
    """Why ``--accept-unfetched`` does not retire A when the check stored messages B lacks.

    The comparison of A's archive with B ran before the check; what the check stored (read from A's
    server, A's archive lacking it, :mod:`maild.move.source_pop3`) is a message of A's archive now,
    missing in B: ``maild migrate`` uploads it. ``--accept-unfetched`` accepts mail kept nowhere (left
    on A's server); recording such a message as "never fetched", left behind, was wrong (session 14's
    review: retire went ahead with A's archive holding mail B lacked)."""
    a = check.source
    stored = sum(1 for u in check.unarchived if u.stored)
    return (
        f"{stored} messages on {a}'s server that {a} never archived are in {a}'s archive now (retire's"
        f" check stored what it read) and {target} does not hold them, so they are not left behind and"
        f" `--accept-unfetched` does not cover them: run `maild migrate {a} --to {target}`, then"
        f" `maild retire {a} --into {target}` again"
    )


def missing_advice(outcome: CompareOutcome) -> str:
    """Why A cannot be retired into B yet, naming the commands that move forward.

    Messages never uploaded: ``maild migrate``. Messages uploaded earlier and gone from B since
    (someone deleted them there): ``maild retire --accept-deleted`` when that was meant (the archive
    keeps them), or ``maild migrate --reupload`` to put them back.
    """
    a, b = outcome.source, outcome.target.name
    missing = outcome.missing
    earlier = outcome.uploaded_earlier
    never = len(missing) - len(earlier)
    parts = [f"{len(missing)} messages of {a} are missing in {b} ({', '.join(outcome.mailboxes)})"]
    if never:
        uploaded = {e.message for e in earlier}
        archive_only = sum(1 for e in missing if not e.on_server and e.message not in uploaded)
        parts.append(
            f"{never} were never uploaded ({archive_only} exist only in the archive): run"
            f" `maild migrate {a} --to {b}`"
        )
    if earlier:
        parts.append(
            f"{len(earlier)} were uploaded earlier and are no longer in {b} (deleted there?): run"
            f" `maild retire {a} --into {b} --accept-deleted` if that was meant (maild's archive keeps"
            f" them), or `maild migrate {a} --to {b} --reupload` to upload them again"
        )
    return "; ".join(parts)


async def retire(
    config: Config,
    store: MigrationStore,
    source: str,
    target_name: str,
    *,
    accept_deleted: bool = False,
    accept_unfetched: bool = False,
    clock: Callable[[], datetime],
) -> RetireOutcome:
    """Retire A into B: only when nothing of A is missing in B (see :func:`move_mailboxes`).

    Then A is disabled (``enabled = false`` in its drop-in, rewritten atomically), its archive is
    kept, ``accounts.retired_at``/``retired_into`` are recorded and the move is finished. An
    account in the main file is never rewritten: it must already say ``enabled = false`` there
    (the error says so).

    Args:
        accept_deleted: messages uploaded earlier and no longer in B (someone deleted them there)
            do not count as missing: the decision is recorded in the archive (``appends.accepted_at``),
            which keeps the messages; :attr:`RetireOutcome.accepted` lists them. Messages never
            uploaded still count.
        accept_unfetched: messages on A's server that A never archived and B does not hold, or A's
            server being unreachable, do not stop the retire: recorded in the archive (table
            ``unfetched_accepted``) and returned in :attr:`RetireOutcome.source_check`.

    Before retiring, A's server is checked read only (:func:`maild.move.source_check.check_source`):
    what it lists that A's archive lacks must be held by B (or A's archive) by content.

    Raises:
        AlreadyRetired: the archive records A as retired (into B or another account): nothing was
            read from any server and nothing changed.
        MigrationError: messages of A are missing in B (how many, and the command for each kind);
            A's server holds messages A never archived that B lacks, or could not be checked (the
            error; see :func:`unfetched_advice`); or A is enabled in a file maild does not rewrite.
        ConfigError, StoreError, and B's server errors.
    """
    record = (await store.account_records()).get(source)
    if record is not None and record.retired_at is not None:
        raise AlreadyRetired(source, record.retired_at, record.retired_into or "?")
    target = target_account(config, source, target_name)
    account = config.accounts.get(source)
    outcome = await compare_accounts(store, source, target)
    accepted: list[ArchiveEntry] = []
    if accept_deleted and outcome.uploaded_earlier and len(outcome.uploaded_earlier) == len(outcome.missing):
        accepted = outcome.uploaded_earlier
    elif outcome.missing:
        raise MigrationError(missing_advice(outcome))
    if outcome.comparison.unreadable:
        raise MigrationError(
            f"{len(outcome.comparison.unreadable)} messages in {target_name} could not be read, so whether"
            f" all of {source} is there is unknown; run `maild retire {source} --into {target_name}` again"
            f" later. First: {next(iter(outcome.comparison.unreadable.values()))}"
        )
    c = outcome.comparison
    source_check = await check_source(
        config,
        store,
        source,
        archive=[m.entry for m in c.both] + c.only_a,
        target_entries=outcome.scan.entries,
        clock=clock,
        target_bodies=lambda keys: target_digests(target, keys),
    )
    unfetched = bool(source_check.unarchived) or not source_check.checked
    if unfetched and not accept_unfetched:
        raise MigrationError(unfetched_advice(source_check, target_name))
    if source_check.checked:  # mail that reached A's server during the check was not seen by it
        await _require_nothing_new(config, source_check, target_name)
    if any(u.stored for u in source_check.unarchived):  # in A's archive now: missing in B, not unfetched
        raise MigrationError(stored_advice(source_check, target_name))
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
    # one transaction: the decisions are recorded with the retirement or not at all (a kill between
    # them left an acceptance of a retirement that did not happen)
    await store.retire(
        source,
        target_name,
        clock(),
        accepted_missing=[e.message for e in accepted],
        unfetched=_unfetched_rows(source_check) if unfetched else (),
    )
    return RetireOutcome(outcome, disabled, accepted, source_check, accepted_unfetched=unfetched)


async def _require_nothing_new(config: Config, check: SourceCheck, target: str) -> None:
    """List A's server again (under the move lock, just before anything is changed) and refuse when
    it lists a message the check did not, or one the check listed at another size
    (:mod:`maild.move.source_recheck`).

    Raises:
        MigrationError: something arrived or changed size (one line: how many, and to run the
            command again), or the listing failed (the error: what is on A's server is unknown
            again).
    """
    a = check.source
    again = f"run `maild retire {a} --into {target}` again"
    try:
        now = await list_sizes(config, a)
    except MaildError as exc:
        raise MigrationError(
            f"{a}'s server ({check.host}) could not be listed again before recording the retirement,"
            f" so what arrived there during the check is unknown: {exc}; {again}"
        ) from None
    from maild.archive.schema import failure_key_text

    new = arrived_since(check.keys, now)
    if new:
        raise MigrationError(
            f"{len(new)} messages reached {a}'s server ({check.host}) while it was being checked"
            f" (first: {failure_key_text(new[0])}); nothing was changed: {again} to check them too"
        )
    changed = resized_since(check.sizes, now)
    if changed:
        raise MigrationError(
            f"{len(changed)} messages on {a}'s server ({check.host}) are listed at another size than the"
            f" check saw under the same identity (first: {failure_key_text(changed[0])}; a server re-using"
            f" UIDLs?); nothing was changed: {again} to check them too"
        )


def _unfetched_rows(check: SourceCheck) -> list[tuple[str | None, int | None, str]]:
    """The ``unfetched_accepted`` rows of ``check``: one per message, or one for an unknown server."""
    from maild.archive.schema import failure_key_text

    if check.error is not None:
        return [(None, None, f"server not checked: {check.error}")]
    return [(failure_key_text(u.key), u.size_octets, u.reason) for u in check.unarchived]


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
