"""Shared pieces of the move commands' output: one line per message, the clock, the set-up.

Used by :mod:`maild.cli.move` and :mod:`maild.cli.move_verify` (a command module may not import a
sibling command module, see tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from maild.cli.common import load_args_config
from maild.cli.units import count, human_size

if TYPE_CHECKING:
    from maild.config.loader import Config
    from maild.move.compare import ArchiveEntry, ServerEntry
    from maild.move.source_check import SourceCheck, Unarchived

#: Characters of From and Subject shown per line in text output.
FROM_CHARS = 32
SUBJECT_CHARS = 48


def now() -> datetime:
    return datetime.now(UTC)


def setup(args: argparse.Namespace) -> Config:
    from maild.log import configure_logging  # structlog: start-up time only the move commands need

    config = load_args_config(args)
    configure_logging(args.log_level or "warning")
    return config


def date_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if moment else "(no date)       "


def clip(text: str | None, width: int) -> str:
    value = text or "-"
    return value if len(value) <= width else value[: width - 1] + "…"


def line(entry: ArchiveEntry | ServerEntry, tail: str) -> str:
    return (
        f"  {date_text(entry.date)}  {clip(entry.from_, FROM_CHARS):<{FROM_CHARS}}"
        f"  {clip(entry.subject, SUBJECT_CHARS):<{SUBJECT_CHARS}}  {tail}"
    ).rstrip()


def _unarchived_line(item: Unarchived) -> str:
    from maild.archive.schema import failure_key_text

    when = item.date.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if item.date else "(no date)"
    size = human_size(item.size_octets) if item.size_octets is not None else "size unknown"
    subject = item.subject or "(no subject)"
    return f"  {when}  {subject[:48]:<48}  {size:>8}  {item.reason} ({failure_key_text(item.key)})"


def render_unfetched_accepted(check: SourceCheck) -> str:
    """What ``retire --accept-unfetched`` accepted: A's server unchecked (the error), or each message
    on A's server that A never archived and B lacks (date, Subject, size, why, server identity)."""
    a = check.source
    if check.error is not None:
        return (
            f"{a}: its server ({check.host or 'not configured'}) was not checked ({check.error});"
            " accepted (`--accept-unfetched`, recorded in the archive)"
        )
    lines = [
        f"{a}: {count(len(check.unarchived))} messages on its server ({check.host}) were never archived and"
        f" are not in the target ({check.summary()}); accepted as left behind (`--accept-unfetched`,"
        " recorded in the archive):"
    ]
    lines += [_unarchived_line(u) for u in check.unarchived]
    return "\n".join(lines)


def render_source_check(check: SourceCheck, target: str) -> str:
    """The line ``maild compare`` adds about A's server: how many messages it lists that A never
    archived and ``target`` lacks, or why it could not be checked."""
    a = check.source
    if check.error is not None:
        return f"  {a}'s server not checked: {check.error} (`maild retire` refuses until it can be)"
    held = f", {check.held} more held by content" if check.held else ""
    stored = f", {check.stored} stored into {a}'s archive by this check" if check.stored else ""
    retr = ""
    if check.retr_fallbacks:
        retr = (
            f"\n  note: {check.retr_fallbacks} read with RETR, not TOP (not offered, refused or short):"
            f" {a}'s server may have marked them read (or deleted them: they were stored first)"
        )
    if not check.unarchived:
        return (
            f"  on {a}'s server, never archived and not in {target}: 0 ({check.listed} listed{held}{stored})"
            + retr
        )
    fetch = "" if all(u.stored for u in check.unarchived) else f"run `maild fetch {a}`, then "
    return (
        f"  on {a}'s server, never archived and not in {target}: {len(check.unarchived)}"
        f" ({check.summary()}; {check.listed} listed{held}{stored}): {fetch}"
        f"`maild migrate {a} --to {target}`" + retr
    )


def source_check_json(check: SourceCheck) -> dict[str, Any]:
    """A's server check as JSON-ready fields: ``source_server`` (checked, error, listed, held,
    not_archived, by reason) and ``not_archived`` (one entry per message)."""
    from maild.archive.schema import failure_key_text

    return {
        "source_server": {
            "checked": check.checked,
            "error": check.error,
            "listed": check.listed,
            "held_by_content": check.held,
            "not_archived": len(check.unarchived),
            "by_reason": dict(check.counts()),
            "stored": check.stored,
            "retr_fallbacks": check.retr_fallbacks,
        },
        "not_archived": [
            {
                "key": failure_key_text(u.key),
                "size_octets": u.size_octets,
                "reason": u.reason,
                "message_id": u.message_id,
                "date": u.date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if u.date else None,
                "from": u.from_,
                "subject": u.subject,
                "stored": u.stored,
            }
            for u in check.unarchived
        ],
    }
