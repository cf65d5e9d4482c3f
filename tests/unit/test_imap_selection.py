"""Mailbox selection, pushed mailbox events, the IMAP configuration keys of issue 4, and the store's
mailbox records: pure functions and a real SQLite file, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.archive.store import Store
from maild.config.loader import IDLE_RESTART_MAX_S, load_config
from maild.model import IMAPKey, RetrievedMessage
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import lex as imap_lex
from maild.protocols.imap import listing as imap_list
from maild.protocols.imap import wire
from maild.protocols.imap.listing import ListedMailbox
from maild.protocols.imap.wire import MailboxEvents
from tests.unit.test_config import account_file, load_error

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- choose_mailboxes -------------------------------------------------------------------------------


def listed(name: str, *attributes: str, delimiter: str | None = "/") -> ListedMailbox:
    return ListedMailbox(name, delimiter, frozenset(attributes))


LISTING = [
    listed("Archiv", r"\Noselect", r"\HasChildren"),
    listed("Archiv/2026", r"\HasNoChildren"),
    listed("Entwürfe", r"\Drafts"),
    listed("Gesendet", r"\Sent"),
    listed("INBOX", r"\HasNoChildren"),
    listed("Papierkorb", r"\Trash"),
    listed("Spam", r"\Junk"),
    listed("Weg", r"\NonExistent"),
    listed("Newsletter"),
    listed("Newsletter/alt"),
    listed("Newsletters"),
]


def test_choose_mailboxes_skips_noselect_trash_junk_and_puts_inbox_first() -> None:
    """\\Noselect, \\NonExistent, \\Trash and \\Junk are left out; \\Drafts and \\Sent stay; INBOX comes first."""
    assert imap_list.choose_mailboxes(LISTING) == [
        "INBOX",
        "Archiv/2026",
        "Entwürfe",
        "Gesendet",
        "Newsletter",
        "Newsletter/alt",
        "Newsletters",
    ]


@pytest.mark.parametrize(
    ("exclude", "left_out"),
    [
        (["Newsletter"], {"Newsletter", "Newsletter/alt"}),  # with children, not "Newsletters"
        (["Newsletter/alt"], {"Newsletter/alt"}),
        (["inbox"], {"INBOX"}),
        (["Archiv"], {"Archiv/2026"}),
        (["gesendet"], set()),  # names other than INBOX match exactly
    ],
)
def test_choose_mailboxes_exclude_by_name(exclude: list[str], left_out: set[str]) -> None:
    """exclude matches a name and the mailboxes beneath it; INBOX in any case."""
    everything = set(imap_list.choose_mailboxes(LISTING))
    assert everything - set(imap_list.choose_mailboxes(LISTING, exclude)) == left_out


def test_choose_mailboxes_flat_namespace_and_duplicates() -> None:
    """Without a delimiter only exact names are excluded; a name listed twice is chosen once."""
    flat = [listed("A", delimiter=None), listed("A.b", delimiter=None), listed("A", delimiter=None)]
    assert imap_list.choose_mailboxes(flat, ["A"]) == ["A.b"]
    assert imap_list.choose_mailboxes(flat) == ["A", "A.b"]


class _CountedName(str):
    """A mailbox name that counts how often it is compared for equality."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountedName.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_choose_mailboxes_compares_each_name_a_bounded_number_of_times() -> None:
    """10,000 listed mailboxes (``mailboxes = "all"``, every poll) cost a few comparisons each: the
    names chosen so far are a set. Before, each was looked up in the list of those chosen (50 million
    comparisons: 0.6 s of the event loop per poll at 10,000 mailboxes, 18 s at 50,000)."""
    many = [listed(_CountedName(f"Kunden/Kunde {n:05d}")) for n in range(10_000)]
    many.insert(5_000, listed(_CountedName("INBOX")))
    _CountedName.compared = 0
    chosen = imap_list.choose_mailboxes(many)
    assert chosen[0] == "INBOX" and len(chosen) == 10_001
    assert _CountedName.compared < 3 * len(many), _CountedName.compared


def _choose_reference(listed_boxes: list[ListedMailbox], exclude: list[str]) -> list[str]:
    """choose_mailboxes() as written before session 15 (lists only): the specification."""
    excluded = [name.upper() if name.upper() == "INBOX" else name for name in exclude]
    chosen: list[str] = []
    for mailbox in listed_boxes:
        if not mailbox.selectable or mailbox.attributes & imap_list.SKIPPED_SPECIAL_USE:
            continue
        if any(
            mailbox.name == name or (mailbox.delimiter and mailbox.name.startswith(name + mailbox.delimiter))
            for name in excluded
        ):
            continue
        if mailbox.name not in chosen:
            chosen.append(mailbox.name)
    if "INBOX" in chosen:
        chosen.remove("INBOX")
        chosen.insert(0, "INBOX")
    return chosen


_names = st.sampled_from(["INBOX", "A", "A/b", "A.b", "B", "B/A", "Trash", "inbox", "Ü/ß"])
_attributes = st.frozensets(st.sampled_from([r"\Noselect", r"\NonExistent", r"\Trash", r"\Junk", r"\Sent"]))


@given(
    st.lists(st.builds(ListedMailbox, _names, st.sampled_from(["/", ".", None]), _attributes), max_size=12),
    st.lists(_names, max_size=3),
)
def test_choose_mailboxes_equals_the_plain_definition(boxes: list[ListedMailbox], exclude: list[str]) -> None:
    """Same names, same order (server order, INBOX first, each once) as the plain list definition."""
    assert imap_list.choose_mailboxes(boxes, exclude) == _choose_reference(boxes, exclude)


# -- parse_mailbox_events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"4 EXISTS", b"1 RECENT"], MailboxEvents(exists=4, recent=1)),
        ([b"* 3 EXPUNGE", b"* 2 EXPUNGE", b"* 5 EXISTS"], MailboxEvents(exists=5, expunged=2)),
        ([b"OK Still here"], MailboxEvents(other=1)),
        ([b"1 FETCH (FLAGS (\\Seen))"], MailboxEvents(other=1)),
        ([b"BYE Server shutting down"], MailboxEvents(bye="Server shutting down")),
        ([b"* BYE"], MailboxEvents(bye="BYE")),
        ([b"0 RECENT"], MailboxEvents(recent=0)),
        ([b"1 FETCH (X {3}", bytearray(b"abc"), b")"], MailboxEvents(other=2)),
        ([], MailboxEvents()),
    ],
)
def test_parse_mailbox_events(lines: list[imap_lex.Part], expected: MailboxEvents) -> None:
    """Untagged responses pushed during IDLE are sorted into EXISTS, RECENT, EXPUNGE, BYE and the rest."""
    assert wire.parse_mailbox_events(lines) == expected


def test_mailbox_events_changed_and_merge() -> None:
    """EXISTS, a non-zero RECENT or an EXPUNGE is a change; merging keeps the later values and sums expunges."""
    assert not MailboxEvents(recent=0, other=3).changed
    assert MailboxEvents(exists=0).changed
    merged = MailboxEvents(exists=3, expunged=1).merge(MailboxEvents(recent=1, expunged=2, bye="x"))
    assert merged == MailboxEvents(exists=3, recent=1, expunged=3, bye="x")
    assert merged.changed


def test_parse_fetch_header_fields_under_one_name() -> None:
    """BODY[HEADER.FIELDS (...)] is stored as header_fields whatever field list the server echoes."""
    lines: list[imap_lex.Part] = [
        b"1 FETCH (UID 5 RFC822.SIZE 40 BODY[HEADER.FIELDS (Message-ID)] {21}",
        bytearray(b"Message-ID: <a@b>\r\n\r\n"),
        b")",
        b'2 FETCH (UID 6 RFC822.SIZE 9 BODY[HEADER.FIELDS ("MESSAGE-ID" "DATE")] "\r\n")',
        b"3 FETCH (UID 7 RFC822.SIZE 9 BODY[HEADER.FIELDS.NOT (MESSAGE-ID)] {2}",
        bytearray(b"\r\n"),
        b")",
    ]
    result = imap_fetch.parse_fetch(lines, require=("RFC822.SIZE", "BODY[HEADER.FIELDS]"))
    assert {uid: m.header_fields for uid, m in result.messages.items()} == {
        5: b"Message-ID: <a@b>\r\n\r\n",
        6: b"\r\n",
    }
    assert result.failures == {7: "BODY[HEADER.FIELDS] missing"}


# -- configuration ----------------------------------------------------------------------------------


def imap(tmp_path: Path, body: str) -> object:
    return load_config(account_file(tmp_path, body, protocol="imap")).accounts["acct"]


def test_imap_defaults(tmp_path: Path) -> None:
    """Defaults: INBOX only, IDLE on, watching INBOX, re-issued every 29 minutes, retention keep."""
    acct = imap(tmp_path, "")
    assert (acct.mailboxes, acct.all_mailboxes, acct.exclude) == (("INBOX",), False, ())  # type: ignore[attr-defined]
    assert (acct.idle, acct.idle_mailbox, acct.idle_restart_s) == (True, "INBOX", IDLE_RESTART_MAX_S)  # type: ignore[attr-defined]
    assert IDLE_RESTART_MAX_S == 29 * 60


def test_imap_all_mailboxes_with_exclude_and_idle_settings(tmp_path: Path) -> None:
    """mailboxes = "all" with exclude; idle settings as given ("90s" for idle_restart)."""
    body = 'mailboxes = "all"\nexclude = ["Newsletter", "inbox", "Newsletter"]\nidle = false\nidle_restart = "90s"\n'
    acct = imap(tmp_path, body)
    assert (acct.mailboxes, acct.all_mailboxes, acct.exclude) == ((), True, ("Newsletter", "INBOX"))  # type: ignore[attr-defined]
    assert (acct.idle, acct.idle_restart_s) == (False, 90.0)  # type: ignore[attr-defined]


def test_idle_mailbox_defaults_to_the_first_when_inbox_is_not_fetched(tmp_path: Path) -> None:
    """Without INBOX among the mailboxes, IDLE watches the first one; "inbox" is spelled INBOX."""
    assert imap(tmp_path, 'mailboxes = ["Archiv/2026", "Büro"]\n').idle_mailbox == "Archiv/2026"  # type: ignore[attr-defined]
    acct = imap(tmp_path, 'mailboxes = ["inbox", "Büro"]\nidle_mailbox = "Büro"\n')
    assert (acct.mailboxes, acct.idle_mailbox) == (("INBOX", "Büro"), "Büro")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('mailboxes = "some"\n', "mailboxes", 'a list of mailbox names or "all"'),
        ('mailboxes = ["a\\nb"]\n', "mailboxes", "no CR, LF or NUL"),
        ('exclude = ["Trash"]\n', "exclude", 'only valid with mailboxes = "all"'),
        ('mailboxes = "all"\nexclude = "Trash"\n', "exclude", "a list of mailbox names"),
        ('idle = "yes"\n', "idle", "bool"),
        ('idle_mailbox = "Archiv"\n', "idle_mailbox", "not one of the mailboxes fetched"),
        ('idle_mailbox = ""\n', "idle_mailbox", "expected mailbox names"),
        ('idle_restart = "30m"\n', "idle_restart", "at most 29m"),
        ('idle_restart = "0s"\n', "idle_restart", "positive"),
        ('idle_restart = "soon"\n', "idle_restart", "duration"),
    ],
)
def test_imap_keys_are_validated(tmp_path: Path, body: str, key: str, expected: str) -> None:
    """Bad values of the new IMAP keys are refused naming the dotted key."""
    message = load_error(account_file(tmp_path, body, protocol="imap"))
    assert f"accounts.acct.{key}" in message
    assert expected in message


@pytest.mark.parametrize("key", ["idle", "idle_mailbox", "idle_restart", "exclude"])
def test_imap_keys_are_unknown_for_pop3(tmp_path: Path, key: str) -> None:
    """The IDLE and mailbox-selection keys belong to IMAP accounts only."""
    message = load_error(account_file(tmp_path, f'{key} = "x"\n'))
    assert f"accounts.acct.{key}" in message
    assert "unknown key" in message


# -- store: mailbox records and relinking -----------------------------------------------------------


@pytest.fixture
async def store(store: Store) -> Store:
    """The shared open archive, with the IMAP account ``acct``."""
    await store.ensure_account("acct", "O", "E", "imap", NOW)
    return store


async def test_mailbox_states_record_uidvalidity_changes(store: Store) -> None:
    """changed_at is set when a mailbox is first recorded or its UIDVALIDITY changes, not when UIDNEXT moves."""
    later = NOW + timedelta(hours=1)
    await store.record_mailbox_states("acct", [("INBOX", 7, 5), ("Entwürfe", 9, None)], NOW)
    await store.record_mailbox_states("acct", [("INBOX", 7, 8)], later)
    states = await store.mailbox_states("acct")
    assert (states["INBOX"].uidvalidity, states["INBOX"].uidnext, states["INBOX"].changed_at) == (7, 8, NOW)
    assert (states["Entwürfe"].uidnext, states["Entwürfe"].changed_at) == (None, NOW)
    await store.record_mailbox_states("acct", [("INBOX", 70, 1)], later)
    assert (await store.mailbox_states("acct"))["INBOX"].changed_at == later
    assert await store.mailbox_states("other") == {}


async def test_relink_copies_first_fetch_flags_and_date(store: Store) -> None:
    """A relinked location points at the archived message and keeps its first-fetch time, INTERNALDATE and flags."""
    raw = b"Message-ID: <m@x>\r\n\r\nhello\r\n"
    old = IMAPKey("INBOX", 7, 3)
    await store.store_batch(
        "acct", [RetrievedMessage(old, raw, NOW - timedelta(days=1), frozenset({"\\Seen"}))], NOW
    )
    [(message, message_id, size)] = await store.mailbox_identities("acct", "INBOX")
    assert (message_id, size) == ("<m@x>", len(raw))
    new = IMAPKey("INBOX", 70, 1)

    assert await store.relink("acct", [(new, message)], NOW + timedelta(days=5)) == 1
    assert await store.relink("acct", [(new, message)], NOW + timedelta(days=6)) == 0

    locations = await store.locations("acct")
    assert locations[new].message == message
    assert locations[new].first_fetched_at == NOW
    assert await store.archived("acct", [new]) == {new}
    rows = await store._all("SELECT internaldate, flags FROM locations WHERE uidvalidity = 70")
    assert [tuple(r) for r in rows] == [("2026-03-01T09:00:00Z", "\\Seen")]
    assert await store.mailbox_identities("acct", "Entwürfe") == []
