"""The typed control replies (:mod:`maild.service.status`): JSON round trips, shape, and bad replies."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from maild.errors import ControlError
from maild.fetch.cycle import CycleResult
from maild.fetch.resync import IMAPCycleInfo, UIDValidityChange
from maild.model import POP3Key, RetrievalFailure
from maild.service import replies, status
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import account_status
from tests.support.accounts import pop3_account
from tests.support.status_records import account_record, imap_record

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 2, 9, 5, 7, tzinfo=UTC)

POP3 = account_record(
    state="backoff",
    messages=12,
    last_success=NOW,
    next_run=LATER,
    last_error="connection reset",
    consecutive_failures=2,
    on_server=3,
    retention="delete-after",
    retention_days=7,
    pending_deletion=3,
    oldest_kept_since=NOW,
    identity="content-digest",
    warnings=("the server does not offer UIDL",),
    next_deletion_due=datetime(2026, 3, 9, 9, 0, tzinfo=UTC),
    last_cycle=status.CycleStatus(
        new_links=4,
        octets=4096,
        deleted=1,
        seconds=1.25,
        failures=(status.RetrievalFailureStatus("POP3Key(uidl='a')", "-ERR [SYS/TEMP] try later"),),
        too_large=("POP3Key(uidl='b')",),
    ),
    failing_messages=(
        status.FailingMessageStatus(
            "UIDL c",
            3,
            "-ERR [SYS/TEMP] locked",
            NOW,
            set_aside=True,
            next_retry=LATER,
            subject="Rechnung 42 für März",
            from_="Buchhaltung <buchhaltung@example.com>",
            date=NOW,
        ),
        status.FailingMessageStatus(
            "UIDL d", 1, "connection reset while it was being received", NOW, set_aside=False
        ),
    ),
)
IMAP = imap_record(
    mode="idle",
    imap=status.IMAPStatus(
        mailboxes=("INBOX", "Entwürfe"),
        mailbox_selection="all",
        idle=True,
        idle_mailbox="INBOX",
        last_push=LATER,
        idle_error="BYE",
        uidvalidity_changes=(status.UIDValidityChangeStatus("INBOX", 1, 2, 4, 1, NOW),),
        exclude=("Newsletter",),
    ),
    last_cycle=status.CycleStatus(
        new_links=0, octets=0, deleted=0, seconds=0.0, mailbox_failures=(("Archiv", "refused"),)
    ),
)
STATUS = status.StatusReply("1.2.3", NOW, (POP3, IMAP), status.ArchiveTotals(12, 99_000))

FETCHING = replace(
    POP3,
    name="fetching",
    state="fetching",
    history=status.HistoryStatus(NOW, LATER, 10, 2, 1234, 567_890),
    progress=status.ProgressStatus(1200, 240_000_000, 5000, 1_000_000_000, 3_200_000.5, 238.0),
)
STARTING = replace(POP3, name="starting", state="fetching", progress=status.ProgressStatus(0, 0, None, None, None, None))

REPLIES: list[Any] = [
    STATUS,
    status.StatusReply("1.2.3", NOW, (FETCHING, STARTING), status.ArchiveTotals(1, 2)),
    status.StatusReply("1.2.3", NOW, (), status.ArchiveTotals(0, 0)),
    replies.VersionReply("1.2.3"),
    replies.FetchResults(
        (replies.FetchOutcome("anna-pop", new_links=3, octets=10, seconds=0.5), replies.FetchOutcome("b", "refused"))
    ),
    replies.FetchQueued(("anna-pop", "anna-imap")),
    replies.FetchQueued(("anna-pop",), skipped=("anna-imap",)),
    replies.FetchResults((replies.FetchOutcome("anna-pop", skipped="paused"),)),
    replies.AccountStateReply("anna-pop", "paused"),
    replies.ReloadReport(added=("a",), changed=("b", "c")),
    replies.MetricsReply("maild_up 1\n"),
    replies.StopReply(),
]


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_every_reply_reads_back_equal(reply: Any) -> None:
    """from_json(to_json(x)) == x for every reply record, also through JSON text."""
    text = json.dumps(reply.to_json())

    assert type(reply).from_json(json.loads(text)) == reply


def test_account_json_keeps_the_documented_shape() -> None:
    """Account keys come in the documented order; IMAP keys only for IMAP, identity only for POP3."""
    pop = POP3.to_json()
    imap = IMAP.to_json()

    assert list(pop) == [
        "name", "organisation", "employee", "protocol", "host", "enabled", "state", "messages",
        "last_success", "next_run", "last_error", "consecutive_failures", "mode", "on_server",
        "retention", "retention_days", "identity", "warnings", "pending_deletion", "oldest_kept_since",
        "next_deletion_due", "last_cycle", "failing_messages", "sign_in",
    ]  # fmt: skip
    assert pop["last_cycle"] == {
        "new_links": 4,
        "octets": 4096,
        "deleted": 1,
        "seconds": 1.25,
        "failures": [{"key": "POP3Key(uidl='a')", "reason": "-ERR [SYS/TEMP] try later", "kind": "message"}],
        "too_large": ["POP3Key(uidl='b')"],
    }
    assert "mailboxes" not in pop
    assert "identity" not in imap
    assert "next_deletion_due" not in imap
    assert (imap["mailbox_selection"], imap["exclude"], imap["last_push"]) == (
        "all",
        ["Newsletter"],
        "2026-03-02T09:05:07Z",
    )
    assert imap["last_cycle"]["mailbox_failures"] == {"Archiv": "refused"}


def test_a_status_built_from_the_runtime_reads_back_equal() -> None:
    """What the daemon builds from its runtime (times with microseconds) survives the JSON round trip."""
    imap = replace(pop3_account("anna-imap"), protocol="imap", mailboxes=("INBOX",), port=143)
    rt = AccountRuntime(replace(imap, retention="delete-after", retention_days=30))
    rt.last_success = datetime(2026, 3, 2, 9, 0, 1, 123456, tzinfo=UTC)
    rt.uidvalidity_changes = [UIDValidityChange("INBOX", 1, 2, relinked=4, to_retrieve=1, at=rt.last_success)]
    result = CycleResult("anna-imap", on_server=3, new_links=2, seconds=0.123456)
    result.imap = IMAPCycleInfo(["INBOX"], {"Archiv": "refused"}, [])
    rt.last_result = result
    pop = AccountRuntime(pop3_account(), last_result=CycleResult("anna-pop", identity="uidl"))
    pop.last_result.failures.append(RetrievalFailure(POP3Key("x"), "-ERR busy"))  # type: ignore[union-attr]

    for record in (account_status(rt, 3, (2, rt.last_success)), account_status(pop, 0)):
        assert status.AccountStatus.from_json(json.loads(json.dumps(record.to_json()))) == record
    built = account_status(rt, 3, (2, rt.last_success)).to_json()
    assert built["next_deletion_due"] == "2026-04-01T09:00:01Z"
    assert built["last_cycle"]["new_links"] == 2


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"state": "idle"}, "'state' is 'idle'"),
        ({"messages": "5"}, "'messages' is not an integer"),
        ({"last_success": "yesterday"}, "'last_success' is not a time"),
        ({"protocol": "smtp"}, "'protocol' is 'smtp'"),
        ({"warnings": [1]}, "'warnings' is not a list of strings"),
    ],
)
def test_a_reply_that_does_not_fit_is_bad_reply(change: dict[str, Any], complaint: str) -> None:
    """A status reply of another shape raises ControlError bad-reply naming the key, in one line."""
    data = STATUS.to_json()
    data["accounts"][0].update(change)

    with pytest.raises(ControlError) as info:
        status.StatusReply.from_json(data)

    assert info.value.code == "bad-reply"
    assert complaint in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_key_is_bad_reply() -> None:
    """A reply without a required key raises ControlError bad-reply naming it."""
    data = STATUS.to_json()
    del data["archive"]

    with pytest.raises(ControlError, match="missing 'archive'") as info:
        status.StatusReply.from_json(data)
    assert info.value.code == "bad-reply"


def test_status_table_shows_warnings_and_failing_messages() -> None:
    """`maild status` (the table) shows the account's warnings, set-aside messages with reason and next
    try, and messages that failed but are retried next cycle."""
    from maild.cli.status_view import local_time, render_status

    text = render_status(status.StatusReply("1.2.3", NOW, (POP3,), status.ArchiveTotals(12, 100)), now=NOW, tz=UTC)

    assert "    warning: the server does not offer UIDL" in text
    assert (
        '    set aside after 3 failures in a row, left on the server: UIDL c "Rechnung 42 für März":'
        " -ERR [SYS/TEMP] locked"
        f" (next try {local_time(LATER, NOW, UTC)}, or `maild fetch-now --retry-failed anna-pop`)"
    ) in text
    assert "    failed 1x in a row (retried next cycle): UIDL d: connection reset" in text
