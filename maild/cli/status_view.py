"""``maild status`` and ``maild check`` as text: a summary line first, accounts in trouble before
healthy ones, and the monitoring-plugin line.

Everything here is a pure function of a :class:`~maild.service.status.StatusReply`, the current time
and a time zone, so the renderings are tested against golden text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from maild.cli.units import count, human_size

if TYPE_CHECKING:
    from maild.service.status import AccountStatus, ArchiveTotals, ProgressStatus, StatusReply

#: Exit codes of ``maild status`` (systemctl's convention for "not running").
STATUS_OK = 0
STATUS_ATTENTION = 1
STATUS_NOT_RUNNING = 3
#: Exit codes and words of ``maild check`` (the monitoring-plugin convention of Nagios, Icinga,
#: Zabbix: https://www.monitoring-plugins.org/doc/guidelines.html#AEN78).
CHECK_OK, CHECK_WARNING, CHECK_CRITICAL, CHECK_UNKNOWN = 0, 1, 2, 3
CHECK_WORDS = {CHECK_OK: "OK", CHECK_WARNING: "WARNING", CHECK_CRITICAL: "CRITICAL", CHECK_UNKNOWN: "UNKNOWN"}
#: Consecutive failed cycles from which ``maild check`` says CRITICAL instead of WARNING (a lockout or
#: a permanent error is CRITICAL at once).
CRITICAL_FAILURES = 3
#: Paused accounts named in ``maild check``'s line at most; the rest are counted.
MAX_NAMED = 3


def local_advice(directory: str | None) -> str:
    """What to do when messages failed on this machine's side (``"local"`` failures): ``free space in
    /var/lib/maild`` (the archive's directory, where large messages are spooled)."""
    return f"free space in {directory}" if directory else "free space in the archive's directory (state_dir)"


WAL_HELD_ADVICE = (
    "a program keeps a read transaction open on the archive (a CRM's long query, a connection left"
    " inside BEGIN, `maild backup`): end it, and the log is copied and starts again at the next commit;"
    ' `fuser -v {directory}/*` lists the processes with the archive open (docs/archive.md, "Long reads'
    ' and the write-ahead log")'
)
"""What ``maild status`` says to do about a held write-ahead log (``{directory}``: the archive's)."""


def wal_attention(archive: ArchiveTotals, since: str) -> str | None:
    """Why the archive needs the administrator although storing goes on, or None: a reader holds its
    write-ahead log (``archive: write-ahead log held by a reader since 10:42, 173.0 MB; storing goes
    on``). ``since`` is :attr:`~maild.service.status.ArchiveTotals.wal_held_since` as the caller shows
    times. ``maild status`` exits 1 and ``maild check`` warns for it."""
    if archive.wal_held_since is None:
        return None
    size = f", {human_size(archive.wal_octets)}" if archive.wal_octets is not None else ""
    return f"archive: write-ahead log held by a reader since {since}{size}; storing goes on"


def needs_attention(reply: StatusReply) -> bool:
    """Whether ``maild status`` exits 1 (:data:`STATUS_ATTENTION`): an account needs attention, the
    archive was replaced (deletions stopped everywhere, even before any cycle fails), or a reader
    holds the archive's write-ahead log."""
    return bool(
        problem_accounts(reply.accounts) or reply.archive.replaced or reply.archive.wal_held_since is not None
    )


def attention(a: AccountStatus) -> str | None:
    """:func:`maild.service.status.attention`, imported on first use: :mod:`maild.cli.main` imports this
    module for every command, and only the status commands need the reply records."""
    from maild.service.status import attention as reason

    return reason(a)


def local_time(moment: datetime | None, now: datetime, tz: tzinfo | None) -> str:
    """``moment`` in ``tz`` (None: the system's zone): ``HH:MM`` today, else ``YYYY-MM-DD HH:MM``; ``-``
    for None. The zone is named once, in the summary line."""
    if moment is None:
        return "-"
    here = moment.astimezone(tz)
    if here.date() == now.astimezone(tz).date():
        return here.strftime("%H:%M")
    return here.strftime("%Y-%m-%d %H:%M")


def local_failures(a: AccountStatus) -> int:
    """:func:`maild.service.status.local_failures`, imported on first use (as :func:`attention`)."""
    from maild.service.status import local_failures as count_local

    return count_local(a)


def archive_full(a: AccountStatus) -> bool:
    """:func:`maild.service.status.archive_full`, imported on first use (as :func:`attention`)."""
    from maild.service.status import archive_full as full

    return full(a)


def archive_full_stop(a: AccountStatus) -> bool:
    """:func:`maild.service.status.archive_full_stop`, imported on first use (as :func:`attention`)."""
    from maild.service.status import archive_full_stop as stopped

    return stopped(a)


def zone_name(now: datetime, tz: tzinfo | None) -> str:
    """The abbreviation of ``tz`` at ``now`` (``CET``, ``UTC``), or its offset when it has none."""
    here = now.astimezone(tz)
    return here.tzname() or here.strftime("UTC%z")


def problem_accounts(accounts: Sequence[AccountStatus]) -> list[AccountStatus]:
    """The accounts that need attention (see :func:`~maild.service.status.attention`), in order."""
    return [a for a in accounts if attention(a) is not None]


def summary_line(reply: StatusReply, now: datetime, tz: tzinfo | None) -> str:
    """``20 accounts: 18 ok, 1 auth_failed, 1 paused; last fetch 13:02 CET``.

    Healthy accounts count as ``ok`` (a paused or disabled one by its state); each account needing
    attention counts under its state. "last fetch" is the latest successful cycle of any account.
    """
    counts: Counter[str] = Counter()
    for a in reply.accounts:
        if attention(a) is not None or a.state in ("paused", "disabled", "stopped"):
            counts[a.state] += 1
        else:
            counts["ok"] += 1
    parts = [f"{counts.pop('ok')} ok"] if counts.get("ok") else []
    parts += [f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    noun = "account" if len(reply.accounts) == 1 else "accounts"
    line = f"{len(reply.accounts)} {noun}: " + (", ".join(parts) or "none configured")
    successes = [a.last_success for a in reply.accounts if a.last_success is not None]
    last = local_time(max(successes), now, tz) if successes else "never"
    return f"{line}; last fetch {last} {zone_name(now, tz)}" if successes else f"{line}; last fetch never"


def _retention(a: AccountStatus) -> str:
    if a.retention == "delete-after" and a.retention_days is not None:
        return f"{a.retention_days}d"
    return a.retention


def _row(a: AccountStatus, now: datetime, tz: tzinfo | None) -> list[str]:
    state = a.state if a.mode == "polling" or a.state != "waiting" else f"{a.state} ({a.mode})"
    return [
        "!" if attention(a) is not None else " ",
        a.name,
        a.organisation,
        a.employee,
        a.protocol,
        state,
        count(a.messages),
        local_time(a.last_success, now, tz),
        local_time(a.next_run, now, tz),
        _retention(a),
        count(a.pending_deletion),
        str(len(a.warnings)) if a.warnings else "-",
    ]


_HEADER = ["", "ACCOUNT", "ORGANISATION", "EMPLOYEE", "PROTO", "STATE", "MESSAGES", "LAST OK", "NEXT",
           "RETENTION", "PENDING", "WARNINGS"]  # fmt: skip
_RIGHT = frozenset({6, 10})


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.rjust(w) if i in _RIGHT else c.ljust(w) for i, (c, w) in pairs]
        out.append(" ".join(cells).rstrip())
    return out


def _details(
    a: AccountStatus, now: datetime, tz: tzinfo | None, directory: str | None = None
) -> list[str]:
    """Lines under the table for one account: why it needs attention, its warnings, IMAP notes;
    ``directory`` is the archive's (``ArchiveTotals.directory``), named for local failures."""
    lines: list[str] = []
    reason = attention(a)
    if reason is not None:
        n = a.consecutive_failures
        failures = f", {n} failed cycle{'s' if n > 1 else ''} in a row" if n else ""
        since = a.history.failing_since if a.history is not None else None
        failing = f" since {local_time(since, now, tz)}" if since is not None else ""
        lines.append(f"! {a.name}: {reason}{failures}{failing}")
        if local_failures(a) and archive_full(a):
            lines.append(
                f"    {local_advice(directory)}: the archive is there, and its disk is full: what"
                " arrived was not stored; the messages stay on the server and are retried at every cycle"
            )
        elif local_failures(a):
            lines.append(
                f"    {local_advice(directory)}: large messages are spooled there before they are"
                " archived; they stay on the server and are retried at every cycle"
            )
        elif archive_full_stop(a):
            lines.append(
                f"    {local_advice(directory)}: the archive is there, and its disk is full: nothing is"
                " deleted on the server until there is room (see the warning below)"
            )
    elif a.last_error:
        lines.append(f"  {a.name}:")
    if a.progress is not None:
        lines.append(f"    {progress_text(a.progress)}")
    if a.last_error:
        lines.append(f"    error: {a.last_error}")
    if a.deletion_suspended:
        lines.append(f"    deletion suspended: {a.deletion_suspended}")
    lines.extend(f"    warning: {w}" for w in a.warnings)
    for f in a.failing_messages:
        what = f'{f.key} "{f.subject}"' if f.subject else f.key
        if f.set_aside:
            lines.append(
                f"    set aside after {f.failures} failures in a row, left on the server: {what}:"
                f" {f.reason} (next try {local_time(f.next_retry, now, tz)},"
                f" or `maild fetch-now --retry-failed {a.name}`)"
            )
        elif f.kind == "local":
            lines.append(
                f"    not retrieved {f.failures}x in a row on this machine (retried every cycle, never"
                f" set aside): {what}: {f.reason}"
            )
        else:
            lines.append(f"    failed {f.failures}x in a row (retried next cycle): {what}: {f.reason}")
    lines.extend(_sign_in_lines(a, now, tz))
    if a.last_cycle is not None:
        lines.extend(f"    set aside (too large, left on the server): {k}" for k in a.last_cycle.too_large)
        lines.extend(f"    mailbox {m!r} not fetched: {r}" for m, r in a.last_cycle.mailbox_failures or ())
    if a.imap is not None:
        if a.mode == "reconnecting" or a.imap.idle_error:
            push = local_time(a.imap.last_push, now, tz) if a.imap.last_push else "never"
            error = f", {a.imap.idle_error}" if a.imap.idle_error else ""
            lines.append(f"    IDLE on {a.imap.idle_mailbox!r}: {a.mode}, last push {push}{error}")
        lines.extend(
            f"    UIDVALIDITY of {c.mailbox!r} changed at {local_time(c.at, now, tz)}:"
            f" {c.relinked} recognised without download, {c.to_retrieve} retrieved"
            for c in a.imap.uidvalidity_changes
        )
    if lines and not lines[0].startswith(("!", "  " + a.name)):
        lines.insert(0, f"  {a.name}:")
    return lines


def _sign_in_lines(a: AccountStatus, now: datetime, tz: tzinfo | None) -> list[str]:
    """OAuth2 accounts: the grant, the access token's and the refresh token's ends (issue 13)."""
    s = a.sign_in
    if s.auth != "oauth2":
        return []
    parts = [f"    sign-in: oauth2 ({s.grant or '?'})"]
    if s.token_expires_at is not None:
        parts.append(f"token until {local_time(s.token_expires_at, now, tz)}")
    if s.refresh_token_obtained_at is not None:
        age_days = (now - s.refresh_token_obtained_at).total_seconds() / 86400
        parts.append(f"refresh token {max(age_days, 0):.1f} days old")
    if s.refresh_token_expires_at is not None:
        parts.append(f"ends {local_time(s.refresh_token_expires_at, now, tz)}")
    line = ", ".join(parts)
    return [line, f"    WARNING: {s.warning}"] if s.warning else [line]


def duration_text(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``: a rough duration for estimates."""
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def progress_text(p: ProgressStatus) -> str:
    """``fetching 1,200/5,000 messages (240.0 MB/1.0 GB), 3.2 MB/s, about 4 min left``; without the
    octets' total (an IMAP inventory has no sizes) ``(240.0 MB so far)``."""
    if p.messages_total is None:
        return "fetching: taking the inventory"
    text = f"fetching {count(p.messages_done)}/{count(p.messages_total)} messages"
    if p.octets_total:
        text += f" ({human_size(p.octets_done)}/{human_size(p.octets_total)})"
    elif p.octets_total is None and p.octets_done:
        text += f" ({human_size(p.octets_done)} so far)"
    if p.rate_octets_per_s is not None:
        text += f", {human_size(p.rate_octets_per_s)}/s"
    if p.seconds_left is not None:
        text += f", about {duration_text(p.seconds_left)} left"
    return text


def render_status(
    reply: StatusReply, *, now: datetime, tz: tzinfo | None = None, failed_only: bool = False
) -> str:
    """The text of ``maild status``: summary line, an archive problem, table (trouble first), details,
    archive line.

    Args:
        reply: the daemon's status.
        now: the current time (aware), for "today" and the zone's name.
        tz: the zone times are shown in; None is the system's local zone.
        failed_only: list only the accounts that need attention (``--failed``).
    """
    problems = problem_accounts(reply.accounts)
    healthy = [a for a in reply.accounts if a not in problems]
    shown = problems if failed_only else problems + healthy
    lines = [summary_line(reply, now, tz)]
    if reply.archive.replaced:  # deletions stopped on every server: trouble first
        lines.append(f"ARCHIVE PROBLEM: {reply.archive.replaced}")
    held = wal_attention(reply.archive, local_time(reply.archive.wal_held_since, now, tz))
    if held is not None:
        directory = reply.archive.directory or "STATE_DIR"
        lines.append(f"! {held}")
        lines.append(f"    {WAL_HELD_ADVICE.format(directory=directory)}")
    if shown:
        lines.append("")
        lines.extend(_table([_HEADER] + [_row(a, now, tz) for a in shown]))
    details = [line for a in shown for line in _details(a, now, tz, reply.archive.directory)]
    if details:
        lines.append("")
        lines.extend(details)
    lines.append("")
    lines.append(
        f"archive: {count(reply.archive.messages)} messages, {human_size(reply.archive.octets)};"
        f" times in {zone_name(now, tz)}"
    )
    return "\n".join(lines)


def check_line(reply: StatusReply, now: datetime) -> tuple[int, str]:
    """The ``maild check`` verdict and its one line, ``MAILD WARNING - text | perfdata``.

    CRITICAL: the archive replaced under the daemon (deletions stopped), an account locked out,
    failing permanently, or failing :data:`CRITICAL_FAILURES` cycles in a row. WARNING: any other
    account needing attention, including one paused after a failure and one whose messages failed
    on this machine's side (``"local"``: mail blocked by the disk; the line then ends with
    ``free space in DIR``); and a reader holding the archive's write-ahead log (:func:`wal_attention`,
    time in UTC, with what to do). An account paused by the admin
    while healthy leaves the verdict alone but is named (``paused by the admin: anna-pop``). Perfdata
    (the plugin guidelines'
    ``'label'=value[UOM];warn;crit;min;max``): accounts, ok, problems, archived messages and bytes,
    and the largest fetch lag (seconds since an enabled account's last successful cycle).
    """
    problems = problem_accounts(reply.accounts)
    critical = [
        a for a in problems
        if a.state in ("auth_failed", "error") or a.consecutive_failures >= CRITICAL_FAILURES
    ]  # fmt: skip
    since = reply.archive.wal_held_since
    held = wal_attention(reply.archive, f"{since:%H:%M} UTC") if since is not None else None
    code = CHECK_WARNING if problems or held else CHECK_OK
    if critical or reply.archive.replaced:
        code = CHECK_CRITICAL
    if reply.archive.replaced:  # deletions stopped on every server: first, whatever else is wrong
        text = f"archive problem: {reply.archive.replaced}"
    elif problems:
        text = ", ".join(f"{a.name} {attention(a)}" for a in (critical or problems))
        more = len(problems) - len(critical or problems)
        text += f" (and {more} more)" if more > 0 else ""
        if any(local_failures(a) or archive_full_stop(a) for a in problems):
            text += f"; {local_advice(reply.archive.directory)}"
    else:
        text = "" if held else f"{len(reply.accounts)} accounts ok"
    if held and not reply.archive.replaced:  # storing goes on, but the log's file grows until it ends
        held += "; end the long read transaction on the archive (docs/archive.md)"
        text = f"{text}; {held}" if text else held
    # Paused without a failure is the admin's decision (a holiday, a move): OK, but said, so that a
    # pause nobody remembers does not go unseen. Paused after a failure is a problem (above).
    paused = [a.name for a in reply.accounts if a.state == "paused" and attention(a) is None]
    if paused:
        text += f"; paused by the admin: {', '.join(paused[:MAX_NAMED])}"
        text += f" (and {len(paused) - MAX_NAMED} more)" if len(paused) > MAX_NAMED else ""
    perf = [
        f"accounts={len(reply.accounts)};;;0",
        f"ok={len(reply.accounts) - len(problems)};;;0",
        f"problems={len(problems)};1;;0",
        f"messages={reply.archive.messages};;;0",
        f"archive={reply.archive.octets}B;;;0",
    ]
    if reply.archive.wal_octets is not None:
        perf.append(f"wal={reply.archive.wal_octets}B;;;0")
    lags = [
        (now - (a.last_success or reply.started_at)).total_seconds()
        for a in reply.accounts
        if a.enabled and a.state not in ("paused", "disabled")
    ]
    if lags:
        perf.append(f"fetch_lag={max(0, round(max(lags)))}s;;;0")
    return code, f"MAILD {CHECK_WORDS[code]} - {text} | {' '.join(perf)}"
