"""How ``maild compare`` shows a comparison of A's archive with B's server: text and JSON.

Used by :mod:`maild.cli.move` (``compare``, and ``migrate``'s closing comparison). Only prints what
it is given: the comparison itself is :func:`maild.move.migrate.compare_accounts`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from maild.cli.move_lines import line
from maild.cli.units import count

if TYPE_CHECKING:
    from maild.move.compare import ArchiveEntry
    from maild.move.migrate import CompareOutcome


def where(entry: ArchiveEntry, source: str) -> str:
    """Where an archived message of A is: still on A's server, or in the archive only."""
    return f"still on {source}'s server" if entry.on_server else "archive only"


def render_comparison(outcome: CompareOutcome, *, lists: bool = True) -> str:
    """Render a comparison: counts, then the messages only in A, only in B and in both."""
    c = outcome.comparison
    a, b = outcome.source, outcome.target.name
    archive_only = sum(1 for e in c.only_a if not e.on_server)
    lines = [
        f"{a} (archive) compared with {b} ({outcome.target.host}, {', '.join(outcome.mailboxes)}):",
        f"  only in {a}: {len(c.only_a)} ({archive_only} archive only,"
        f" {len(c.only_a) - archive_only} still on {a}'s server)",
        f"  only in {b}: {len(c.only_b)}",
        f"  in both: {len(c.both)}",
    ]
    if outcome.bodies_downloaded:
        lines.append(f"  bodies downloaded to decide: {outcome.bodies_downloaded}")
    if c.unreadable:
        lines.append(f"  unreadable in {b}: {len(c.unreadable)} (presence unknown)")
    accepted = outcome.accepted
    if accepted:
        lines.append(
            f"  accepted as deleted in {b} (`retire --accept-deleted`; kept in the archive): {len(accepted)}"
        )
    if outcome.missing:
        from maild.move.retire import missing_advice

        lines.append(missing_advice(outcome))
    elif c.unreadable:
        unreadable = count(len(c.unreadable))
        lines.append(f"whether all of {a} is in {b} is unknown: {unreadable} messages unreadable")
    else:
        lines.append(f"nothing of {a} is missing in {b}")
    if not lists:
        return "\n".join(lines)
    if c.only_a:
        lines += ["", f"Only in {a} (missing in {b}):"]
        lines += [line(e, where(e, a)) for e in c.only_a]
    if c.only_b:
        lines += ["", f"Only in {b}:"]
        lines += [line(s, f"{s.key.mailbox} UID {s.key.uid}") for s in c.only_b]
    if c.both:
        lines += ["", "In both:"]
        lines += [line(m.entry, f"{m.key.mailbox} UID {m.key.uid} ({m.rule})") for m in c.both]
    if c.unreadable:
        lines += ["", f"Unreadable in {b}:"]
        lines += [f"  {k.mailbox} UID {k.uid}: {reason}" for k, reason in c.unreadable.items()]
    return "\n".join(lines)


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def archive_json(entry: ArchiveEntry, source: str) -> dict[str, Any]:
    """An archived message of A as a JSON-ready mapping (see docs/moving-a-mailbox.md)."""
    return {
        "sha256": entry.sha256,
        "message_id": entry.message_id,
        "date": iso(entry.date),
        "from": entry.from_,
        "subject": entry.subject,
        "size_octets": entry.size_octets,
        "where": where(entry, source),
    }


def comparison_json(outcome: CompareOutcome) -> dict[str, Any]:
    """The comparison as a JSON-ready mapping (see docs/moving-a-mailbox.md)."""
    c = outcome.comparison
    a = outcome.source
    return {
        "source": a,
        "target": outcome.target.name,
        "mailboxes": list(outcome.mailboxes),
        "complete": outcome.complete,
        "counts": {
            "missing": len(outcome.missing),
            "uploaded_earlier_missing": len(outcome.uploaded_earlier),
            "accepted_deleted": len(outcome.accepted),
            "only_in_source": len(c.only_a),
            "archive_only": sum(1 for e in c.only_a if not e.on_server),
            "only_in_target": len(c.only_b),
            "in_both": len(c.both),
            "unreadable": len(c.unreadable),
            "bodies_downloaded": outcome.bodies_downloaded,
        },
        "only_in_source": [archive_json(e, a) for e in c.only_a],
        "only_in_target": [
            {
                "mailbox": s.key.mailbox,
                "uidvalidity": s.key.uidvalidity,
                "uid": s.key.uid,
                "message_id": s.message_id,
                "date": iso(s.date),
                "from": s.from_,
                "subject": s.subject,
                "size_octets": s.size_octets,
            }
            for s in c.only_b
        ],
        "in_both": [
            {**archive_json(m.entry, a), "mailbox": m.key.mailbox, "uid": m.key.uid, "rule": m.rule}
            for m in c.both
        ],
        "unreadable": [
            {"mailbox": k.mailbox, "uid": k.uid, "reason": reason} for k, reason in c.unreadable.items()
        ],
    }
