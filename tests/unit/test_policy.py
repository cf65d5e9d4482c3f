"""Pure decisions (``maild.policy``): what to retrieve, what left the server, what may be deleted now and
when it is due, how long to wait before the next cycle or IDLE connection, how shared limits split."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from maild.errors import ConnectError, ThrottledError
from maild.model import FailureRecord, IMAPKey, InventoryEntry, Location, MessageKey, POP3Key
from maild.policy import (
    SET_ASIDE_AFTER_FAILURES,
    SET_ASIDE_RETRY_S,
    confirm_deletions,
    deletion_refusal,
    in_flight,
    next_deletion_due,
    plan_retrieval,
    presence_changes,
    reappeared,
    select_deletions,
    set_aside,
)
from maild.pop3_uidls import (
    listed_known,
    pop3_sizes_differ,
)
from maild.waiting import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    JITTER_CAP_S,
    JITTER_FRACTION,
    RECONNECT_BASE_S,
    RECONNECT_CAP_S,
    THROTTLE_MIN_S,
    backoff_delay_s,
    next_cycle_delay_s,
    reconnect_delay_s,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def k(n: int) -> POP3Key:
    return POP3Key(f"uidl-{n}")


def inv(*numbers: int, size: int | None = 100) -> list[InventoryEntry]:
    return [InventoryEntry(k(n), size) for n in numbers]


def loc(
    first: datetime = NOW,
    *,
    gone: datetime | None = None,
    deleted: datetime | None = None,
    message: int = 1,
    listed: int | None = 100,
) -> Location:
    return Location(
        message=message, first_fetched_at=first, gone_at=gone, deleted_at=deleted, listed_size=listed
    )


# -- plan_retrieval ---------------------------------------------------------------------------------


def test_plan_retrieves_unknown_keys_in_server_order() -> None:
    """Keys the archive lacks are planned for retrieval in server order; known keys are skipped."""
    known = {k(2): loc(), k(4): loc()}

    plan = plan_retrieval(inv(5, 1, 2, 3, 4), known, None)

    assert plan.retrieve == [k(5), k(1), k(3)]
    assert plan.too_large == []


def test_plan_for_empty_inventory_is_empty() -> None:
    """An empty server yields an empty plan."""
    plan = plan_retrieval([], {k(1): loc()}, 10)

    assert (plan.retrieve, plan.too_large) == ([], [])


def test_plan_skips_messages_above_max_message_size() -> None:
    """Messages larger than max_message_size go to too_large; a message of exactly that size is retrieved."""
    inventory = [InventoryEntry(k(1), 1000), InventoryEntry(k(2), 1001), InventoryEntry(k(3), 10)]

    plan = plan_retrieval(inventory, {}, 1000)

    assert plan.retrieve == [k(1), k(3)]
    assert plan.too_large == [k(2)]


def test_plan_retrieves_messages_of_unknown_size() -> None:
    """A message whose size the server did not report is retrieved even with a size limit."""
    inventory = [InventoryEntry(k(1), None), InventoryEntry(k(2), 5000)]

    plan = plan_retrieval(inventory, {}, 100)

    assert plan.retrieve == [k(1)]
    assert plan.too_large == [k(2)]


def test_plan_without_limit_retrieves_huge_messages() -> None:
    """Without max_message_size, any size is retrieved."""
    plan = plan_retrieval([InventoryEntry(k(1), 2**40)], {}, None)

    assert plan.retrieve == [k(1)]


def test_plan_does_not_report_known_large_messages_as_too_large() -> None:
    """A large message already archived is neither retrieved nor reported as too large."""
    plan = plan_retrieval([InventoryEntry(k(1), 5000)], {k(1): loc()}, 100)

    assert (plan.retrieve, plan.too_large) == ([], [])


def test_plan_distinguishes_imap_keys_by_uidvalidity() -> None:
    """An IMAP UID under a new UIDVALIDITY is a different message and is retrieved."""
    old = IMAPKey("INBOX", 100, 7)
    new = IMAPKey("INBOX", 200, 7)

    plan = plan_retrieval([InventoryEntry(old, 1), InventoryEntry(new, 1)], {old: loc()}, None)

    assert plan.retrieve == [new]


# -- presence_changes -------------------------------------------------------------------------------


def test_presence_reports_recorded_keys_missing_from_inventory_as_gone() -> None:
    """Recorded keys not on the server and not yet marked gone are reported gone."""
    known = {k(1): loc(), k(2): loc(), k(3): loc(gone=NOW)}

    changes = presence_changes(inv(2), known)

    assert changes.gone == [k(1)]
    assert changes.back == []


def test_presence_reports_gone_keys_seen_again_as_back() -> None:
    """Keys marked gone that are in the inventory again are reported back, unless maild deleted them."""
    known = {k(1): loc(gone=NOW), k(2): loc(gone=NOW, deleted=NOW), k(3): loc()}

    changes = presence_changes(inv(1, 2, 3), known)

    assert changes.back == [k(1)]
    assert changes.gone == []


def test_presence_with_nothing_recorded_is_empty() -> None:
    """With no records there is nothing gone or back, whatever the server holds."""
    changes = presence_changes(inv(1, 2), {})

    assert (changes.gone, changes.back) == ([], [])


def test_presence_of_empty_inventory_marks_all_present_records_gone() -> None:
    """An empty inventory marks every record not yet gone as gone."""
    known: dict[MessageKey, Location] = {k(1): loc(), k(2): loc(gone=NOW)}

    assert presence_changes([], known).gone == [k(1)]


# -- select_deletions -------------------------------------------------------------------------------


def test_keep_selects_nothing() -> None:
    """Retention "keep" never selects anything, however old."""
    known = {k(1): loc(NOW - timedelta(days=10_000))}

    assert select_deletions("keep", None, inv(1), known, NOW) == []


def test_delete_selects_every_archived_message_on_the_server() -> None:
    """Retention "delete" selects each inventory key recorded in the archive, in server order."""
    known = {k(1): loc(), k(3): loc(NOW - timedelta(days=1))}

    assert select_deletions("delete", None, inv(3, 2, 1), known, NOW) == [k(3), k(1)]


def test_delete_never_selects_unknown_keys() -> None:
    """A message not recorded in the archive is never selected, in any mode."""
    assert select_deletions("delete", None, inv(1, 2), {}, NOW) == []
    assert select_deletions("delete-after", 1, inv(1, 2), {}, NOW) == []


def test_delete_never_selects_keys_missing_from_the_inventory() -> None:
    """Archived keys that are not on the server any more are not selected."""
    known = {k(1): loc(), k(2): loc()}

    assert select_deletions("delete", None, inv(2), known, NOW) == [k(2)]


@pytest.mark.parametrize(
    ("age", "selected"),
    [
        (timedelta(0), False),
        (timedelta(days=6, hours=23, minutes=59), False),
        (timedelta(days=7), True),
        (timedelta(days=7, seconds=1), True),
        (timedelta(days=400), True),
        (-timedelta(days=1), False),
    ],
)
def test_delete_after_counts_days_from_first_fetch(age: timedelta, selected: bool) -> None:
    """With "delete-after" 7 days, a message first fetched less than 7 days before now stays; older ones go."""
    known = {k(1): loc(NOW - age)}

    result = select_deletions("delete-after", 7, inv(1), known, NOW)

    assert result == ([k(1)] if selected else [])


def test_delete_after_selects_only_the_old_ones_in_server_order() -> None:
    """Among several archived messages, only those past the retention period are selected."""
    known = {
        k(1): loc(NOW - timedelta(days=40)),
        k(2): loc(NOW - timedelta(days=2)),
        k(3): loc(NOW - timedelta(days=31)),
    }

    assert select_deletions("delete-after", 30, inv(3, 2, 1, 4), known, NOW) == [k(3), k(1)]


def test_delete_after_uses_the_injected_clock() -> None:
    """The same records give different answers for different values of ``now``."""
    known = {k(1): loc(NOW)}

    assert select_deletions("delete-after", 3, inv(1), known, NOW + timedelta(days=2)) == []
    assert select_deletions("delete-after", 3, inv(1), known, NOW + timedelta(days=3)) == [k(1)]


def test_delete_after_without_days_raises() -> None:
    """ "delete-after" without retention_days (which the configuration never lets through) raises
    ValueError rather than deleting without a cutoff."""
    with pytest.raises(ValueError, match="retention_days"):
        select_deletions("delete-after", None, inv(1), {k(1): loc()}, NOW)


# -- identities maild already deleted ---------------------------------------------------------------


def test_identity_deleted_before_is_not_deleted_again() -> None:
    """A POP3 identity maild already deleted (after +OK to QUIT) that is on the server again is never selected."""
    known = {k(1): loc(deleted=NOW - timedelta(days=1), gone=NOW - timedelta(days=1)), k(2): loc()}

    assert select_deletions("delete", None, inv(1, 2), known, NOW) == [k(2)]
    assert select_deletions("delete-after", 1, inv(1, 2), known, NOW + timedelta(days=2)) == [k(2)]
    assert reappeared(inv(1, 2), known) == [k(1)]


@pytest.mark.parametrize(("listed", "taken_back"), [(99, False), (100, True), (101, False), (None, False)])
def test_identity_back_after_it_left_is_taken_back_only_at_the_expected_size(
    listed: int | None, taken_back: bool
) -> None:
    """A POP3 UIDL back on the server after it left is the archived message only at its size, +-1 needs a check."""
    known = {k(1): loc(gone=NOW)}

    assert listed_known(inv(1, size=listed), known, [k(1)]).other_size == ([] if taken_back else [k(1)])


@pytest.mark.parametrize(("listed", "suspect"), [(99, True), (100, False), (101, True), (None, True)])
def test_a_known_uidl_never_seen_gone_is_checked_when_listed_at_another_size(
    listed: int | None, suspect: bool
) -> None:
    """A UIDL recorded present and listed +-1 octet off (or without a size) is checked, whatever the retention (session 14)."""
    assert listed_known(inv(1, size=listed), {k(1): loc()}, []).other_size == ([k(1)] if suspect else [])


def test_identity_without_an_expected_size_is_checked() -> None:
    """A known POP3 UIDL whose expected size is unknown is not taken for the archived message unchecked."""
    assert listed_known(inv(1), {k(1): loc(listed=None)}, []).other_size == [k(1)]


def test_the_listed_size_check_spares_deleted_gone_unknown_content_and_imap_keys() -> None:
    """Identities maild deleted, gone ones not back, unknown ones, full-content identities and IMAP keys are never suspects."""
    content = POP3Key("sha256:" + "cd" * 32)
    imap = IMAPKey("INBOX", 7, 3)
    known = {
        k(1): loc(deleted=NOW, gone=NOW),
        k(2): loc(gone=NOW),
        content: loc(),
        imap: loc(listed=None),
        k(4): loc(),
    }
    inventory = [*inv(1, 2, 3, 4, size=5), InventoryEntry(content, 5), InventoryEntry(imap, None)]

    assert listed_known(inventory, known, []).other_size == [k(4)]
    assert listed_known(inventory, known, [k(2)]).other_size == [k(2), k(4)]


def test_identities_maild_deleted_and_listed_again_are_other_messages_to_archive() -> None:
    """A POP3 UIDL or header identity maild deleted and the server lists again is to be archived anew;
    full-content identities, IMAP keys, gone-but-not-deleted and unlisted ones are not (session 14)."""
    header = POP3Key("hdr:" + "ab" * 32)
    content = POP3Key("sha256:" + "cd" * 32)
    imap = IMAPKey("INBOX", 7, 3)
    known: dict[MessageKey, Location] = {
        key: loc(deleted=NOW, gone=NOW) for key in (k(1), header, content, imap, k(4))
    }
    known[k(2)] = loc(gone=NOW)
    known[k(3)] = loc()
    inventory = [
        *inv(1, 2, 3),
        InventoryEntry(header, 9),
        InventoryEntry(content, 5),
        InventoryEntry(imap, None),
    ]

    assert listed_known(inventory, known, []).relisted == [k(1), header]


def test_identity_still_recorded_gone_but_listed_is_never_deleted() -> None:
    """A POP3 UIDL listed while its record says gone (not taken back: another size) is neither selected nor known as back."""
    known = {k(1): loc(gone=NOW - timedelta(days=1)), k(2): loc()}

    assert select_deletions("delete", None, inv(1, 2), known, NOW) == [k(2)]
    assert reappeared(inv(1, 2), known) == [k(1)]


@pytest.mark.parametrize(("listed", "differs"), [(99, True), (100, False), (101, True), (None, True)])
def test_a_pop3_candidate_listed_with_another_size_needs_its_header_checked(
    listed: int | None, differs: bool
) -> None:
    """A POP3 deletion candidate listed at the expected size passes; +-1 octet or no size needs a header check."""
    assert pop3_sizes_differ([k(1)], inv(1, size=listed), {k(1): 100}, ()) == ([k(1)] if differs else [])


def test_the_size_check_spares_retrieved_content_and_imap_keys() -> None:
    """Keys retrieved in this session, full-content identities and IMAP keys never need the POP3 header check."""
    content = POP3Key("sha256:" + "cd" * 32)
    imap = IMAPKey("INBOX", 7, 3)
    inventory = [*inv(1, 2, size=5), InventoryEntry(content, 5), InventoryEntry(imap, None)]
    candidates = [k(1), k(2), content, imap]

    assert pop3_sizes_differ(candidates, inventory, {}, {k(1)}) == [k(2)]


def test_header_identity_deleted_before_is_not_deleted_again() -> None:
    """A header-digest identity seen again after its deletion names an unverified message: never selected."""
    key = POP3Key("hdr:" + "ab" * 32)
    known: dict[MessageKey, Location] = {key: loc(deleted=NOW, gone=NOW)}

    assert select_deletions("delete", None, [InventoryEntry(key, 10)], known, NOW) == []
    assert reappeared([InventoryEntry(key, 10)], known) == [key]


def test_content_identity_deleted_before_may_be_deleted_again() -> None:
    """A full-content identity proves the archive holds the same octets, so a re-delivered copy may go."""
    key = POP3Key("sha256:" + "cd" * 32)
    known: dict[MessageKey, Location] = {key: loc(deleted=NOW, gone=NOW)}

    assert select_deletions("delete", None, [InventoryEntry(key, 10)], known, NOW) == [key]
    assert reappeared([InventoryEntry(key, 10)], known) == []


def test_imap_identity_deleted_before_may_be_deleted_again() -> None:
    """IMAP (mailbox, UIDVALIDITY, UID) is never reused, so the rule about reappearing identities is POP3's only."""
    key = IMAPKey("INBOX", 7, 1)
    known: dict[MessageKey, Location] = {key: loc(deleted=NOW, gone=NOW)}

    assert select_deletions("delete", None, [InventoryEntry(key, 10)], known, NOW) == [key]


# -- refusal, confirmation, due date ----------------------------------------------------------------


def test_delete_after_is_refused_for_content_digest_identities() -> None:
    """ "delete-after" with digest identities (no UIDL) is refused, naming the key, the host and the way out."""
    reason = deletion_refusal("delete-after", "content-digest", account="anna", host="pop.example")
    assert reason is not None
    assert reason.startswith('accounts.anna.retention: "delete-after" refused: pop.example offers no UIDL')
    assert 'retention = "delete"' in reason


@pytest.mark.parametrize(
    ("retention", "identity"),
    [
        ("delete", "content-digest"),
        ("keep", "content-digest"),
        ("delete-after", "uidl"),
        ("delete-after", "server"),
    ],
)
def test_other_combinations_are_not_refused(retention: str, identity: str) -> None:
    """Only "delete-after" with digest identities is refused; "delete" proves each message in the session."""
    assert deletion_refusal(retention, identity, account="a", host="h") is None  # type: ignore[arg-type]


def test_only_candidates_the_archive_confirms_may_be_deleted() -> None:
    """The final decision keeps the candidates the archive query found, in server order, and nothing else."""
    assert confirm_deletions([k(3), k(1), k(2)], {k(1), k(3), k(9)}) == [k(3), k(1)]
    assert confirm_deletions([k(1)], set()) == []


def test_next_deletion_due_is_first_fetch_plus_retention_days() -> None:
    """With "delete-after" N days the oldest kept message is due N days after its first fetch (UTC)."""
    assert next_deletion_due("delete-after", 30, NOW) == NOW + timedelta(days=30)


@pytest.mark.parametrize(
    ("retention", "days", "oldest"), [("keep", None, NOW), ("delete", None, NOW), ("delete-after", 30, None)]
)
def test_nothing_is_due_without_delete_after_or_without_kept_messages(
    retention: str, days: int | None, oldest: datetime | None
) -> None:
    """Other modes have no due date; nor has "delete-after" when no archived message is on the server."""
    assert next_deletion_due(retention, days, oldest) is None  # type: ignore[arg-type]


# -- waiting before the next cycle ------------------------------------------------------------------


class LowRandom(random.Random):
    """Jitter source that always picks the lowest value."""

    def uniform(self, a: float, b: float) -> float:
        return a


class HighRandom(random.Random):
    """Jitter source that always picks the highest value."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("failures", "expected_s"),
    [(1, BACKOFF_BASE_S), (2, 2 * BACKOFF_BASE_S), (3, 4 * BACKOFF_BASE_S), (4, 8 * BACKOFF_BASE_S)],
)
def test_backoff_doubles_per_failure(failures: int, expected_s: float) -> None:
    """Without jitter, the delay starts at the base and doubles with each consecutive failure."""
    assert backoff_delay_s(failures, ConnectError("refused"), LowRandom()) == expected_s


@pytest.mark.parametrize("failures", [7, 8, 20, 200])
def test_backoff_is_capped(failures: int) -> None:
    """However many failures, the delay without jitter never exceeds the cap."""
    assert backoff_delay_s(failures, ConnectError("refused"), LowRandom()) == BACKOFF_CAP_S


def test_backoff_jitter_adds_at_most_ten_percent() -> None:
    """The highest jitter adds exactly JITTER_FRACTION of the delay, and a seeded rng stays within it."""
    assert backoff_delay_s(2, ConnectError("x"), HighRandom()) == pytest.approx(60 * (1 + JITTER_FRACTION))
    rng = random.Random(7)
    delays = [backoff_delay_s(1, ConnectError("x"), rng) for _ in range(200)]
    assert all(BACKOFF_BASE_S <= d <= BACKOFF_BASE_S * (1 + JITTER_FRACTION) for d in delays)
    assert len(set(delays)) > 1


def test_throttling_waits_at_least_the_throttle_minimum() -> None:
    """A ThrottledError waits at least THROTTLE_MIN_S even on the first failure, and still doubles past it."""
    assert backoff_delay_s(1, ThrottledError("[LOGIN-DELAY]"), LowRandom()) == THROTTLE_MIN_S
    assert backoff_delay_s(1, ConnectError("x"), LowRandom()) < THROTTLE_MIN_S
    assert backoff_delay_s(7, ThrottledError("[IN-USE]"), LowRandom()) == BACKOFF_CAP_S


def test_after_a_success_the_next_cycle_waits_the_poll_interval_plus_capped_jitter() -> None:
    """A successful cycle is followed by the poll interval plus at most 10 % (and at most JITTER_CAP_S)."""
    assert next_cycle_delay_s(300.0, 0, None, LowRandom()) == 300.0
    assert next_cycle_delay_s(100.0, 0, None, HighRandom()) == pytest.approx(110.0)
    assert next_cycle_delay_s(3600.0, 0, None, HighRandom()) == 3600.0 + JITTER_CAP_S


def test_after_a_failure_the_next_cycle_backs_off() -> None:
    """A failed cycle is followed by the backoff delay, not the poll interval."""
    assert next_cycle_delay_s(3600.0, 2, ConnectError("x"), LowRandom()) == 2 * BACKOFF_BASE_S


def test_reconnect_delay_doubles_and_is_capped() -> None:
    """IDLE reconnection waits 1, 2, 4, ... seconds up to the cap of five minutes."""
    delays = [reconnect_delay_s(n) for n in range(1, 12)]
    assert delays[:4] == [RECONNECT_BASE_S, 2 * RECONNECT_BASE_S, 4 * RECONNECT_BASE_S, 8 * RECONNECT_BASE_S]
    assert max(delays) == RECONNECT_CAP_S == delays[-1]


def failure_record(key: MessageKey, failures: int, last: datetime, *, retry: bool = False) -> FailureRecord:
    return FailureRecord(key, failures, "-ERR locked", last - timedelta(hours=1), last, retry)


def test_a_message_is_set_aside_after_three_failures_in_a_row_until_a_day_has_passed() -> None:
    """Three failures in a row set a message aside; two do not; a day after the last failure, or with a retry asked for, it is tried again."""
    a, b, c, d = POP3Key("a"), POP3Key("b"), POP3Key("c"), POP3Key("d")
    records = {
        a: failure_record(a, SET_ASIDE_AFTER_FAILURES, NOW - timedelta(hours=23)),
        b: failure_record(b, SET_ASIDE_AFTER_FAILURES - 1, NOW - timedelta(minutes=5)),
        c: failure_record(c, 7, NOW - timedelta(seconds=SET_ASIDE_RETRY_S)),
        d: failure_record(d, 5, NOW - timedelta(minutes=5), retry=True),
    }

    assert set_aside(records, NOW) == {a}


def test_a_local_failure_never_sets_a_message_aside_whatever_its_reason_says() -> None:
    """set_aside tests the record's kind, not its reason: a message whose last failures were this
    machine's ("local": the spool's disk) is never skipped, however many; one of kind "message" is,
    even when its reason happens to read like the spool's."""
    local, message = POP3Key("local"), POP3Key("message")
    last = NOW - timedelta(minutes=5)
    records = {
        local: FailureRecord(local, 9, "disk short of the reserve", last, last, kind="local"),
        message: FailureRecord(message, 3, "local spool: a server's words", last, last, kind="message"),
    }

    assert set_aside(records, NOW) == {message}


def test_set_aside_messages_are_planned_apart_and_never_retrieved() -> None:
    """plan_retrieval lists skipped keys as set aside (left on the server), not to retrieve."""
    inventory = [InventoryEntry(POP3Key(u), 10) for u in ("a", "b", "c")]

    plan = plan_retrieval(inventory, {}, None, frozenset({POP3Key("b")}))

    assert (plan.retrieve, plan.set_aside) == ([POP3Key("a"), POP3Key("c")], [POP3Key("b")])


def test_the_message_in_flight_is_the_first_asked_for_that_did_not_come_out() -> None:
    """in_flight names the first key asked for that neither arrived nor failed on its own; None when all came out."""
    order: list[MessageKey] = [POP3Key("a"), POP3Key("b"), POP3Key("c")]

    assert in_flight(order, {POP3Key("a")}) == POP3Key("b")
    assert in_flight(order, set(order)) is None


def test_imap_deletion_needs_a_uid_verified_in_this_session() -> None:
    """With a verified set (IMAP), a candidate archived but not re-verified in this session is not deleted; without one (POP3), archived suffices."""
    one, two = IMAPKey("INBOX", 7, 1), IMAPKey("INBOX", 7, 2)

    assert confirm_deletions([one, two], {one, two}, {two}) == [two]
    assert confirm_deletions([one, two], {one, two}, None) == [one, two]
    assert confirm_deletions([one, two], {one}, {one, two}) == [one]
