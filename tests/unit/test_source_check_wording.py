"""What ``compare`` and ``retire`` say about A's server once the check stores what it read and may
fall back to RETR (maild.cli.move_lines.render_source_check, maild.move.retire.unfetched_advice)."""

from __future__ import annotations

from maild.cli.move_lines import render_source_check, source_check_json
from maild.model import POP3Key
from maild.move.retire import stored_advice, unfetched_advice
from maild.move.source_check import SourceCheck, Unarchived


def _check(*, stored: tuple[bool, ...], retr: int = 0) -> SourceCheck:
    unarchived = [Unarchived(POP3Key(f"u{i}"), 10, "never fetched", stored=s) for i, s in enumerate(stored)]
    return SourceCheck(
        "pop", host="h", listed=5, unarchived=unarchived, stored=sum(stored), retr_fallbacks=retr
    )


def test_all_stored_names_migrate_not_fetch() -> None:
    """When the check stored every message it names, the way forward is migrate, not fetch."""
    check = _check(stored=(True, True))
    advice = unfetched_advice(check, "imap")
    assert "2 of them are in pop's archive now (the check stored what it read)" in advice
    assert "maild fetch" not in advice
    assert "run `maild migrate pop --to imap` and `maild retire pop --into imap` again" in advice
    assert "--accept-unfetched" not in advice  # it does not retire past a stored message (stored_advice)
    line = render_source_check(check, "imap")
    assert "2 stored into pop's archive by this check" in line
    assert "maild fetch" not in line


def test_some_not_stored_still_name_fetch() -> None:
    """One message the check did not store (not read): fetch comes first, as before."""
    advice = unfetched_advice(_check(stored=(True, False)), "imap")
    assert "1 of them are in pop's archive now" in advice
    assert "run `maild fetch pop`, then `maild migrate pop --to imap`" in advice
    assert "once `maild migrate` has run, `maild retire pop --into imap --accept-unfetched` for the 1 not" in advice
    assert "of them are in" not in unfetched_advice(_check(stored=(False,)), "imap")
    assert "; or `maild retire pop --into imap --accept-unfetched` if imap holds them" in unfetched_advice(
        _check(stored=(False,)), "imap"
    )


def test_stored_advice_names_migrate_and_why_accept_unfetched_does_not_cover_them() -> None:
    """With ``--accept-unfetched``, messages the check stored refuse in one line naming migrate."""
    advice = stored_advice(_check(stored=(True, False, True)), "imap")
    assert advice.startswith("2 messages on pop's server that pop never archived are in pop's archive now")
    assert "`--accept-unfetched` does not cover them: run `maild migrate pop --to imap`, then" in advice
    assert "\n" not in advice


def test_a_retr_fallback_is_never_silent() -> None:
    """Messages read with RETR get a note in compare's output and a count in its JSON."""
    assert "note:" not in render_source_check(_check(stored=(False,)), "imap")
    check = _check(stored=(False,), retr=3)
    assert "note: 3 read with RETR, not TOP" in render_source_check(check, "imap")
    assert "note: 3 read with RETR" in render_source_check(SourceCheck("pop", listed=1, retr_fallbacks=3), "imap")
    doc = source_check_json(check)
    assert (doc["source_server"]["retr_fallbacks"], doc["source_server"]["stored"]) == (3, 0)
    assert doc["not_archived"][0]["stored"] is False
