"""The check of A's server before ``maild retire`` (maild.move.source_check): its pure decisions at
every bound, and its I/O through a recording fake Maildrop (read only, errors become an unknown)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from maild.archive.move_queries import MigrationStore
from maild.config.loader import Config, load_config
from maild.errors import AuthError, ConnectError
from maild.model import (
    FailureRecord,
    IMAPKey,
    InventoryEntry,
    MessageKey,
    POP3Key,
    RetrievalFailure,
    RetrievedMessage,
)
from maild.move.compare import ArchiveEntry, BodyDigest, archive_entry, body_digest, server_entry, to_crlf
from maild.move.source_check import (
    SourceCheck,
    Unarchived,
    body_wanted,
    check_source,
    held_by,
    not_archived,
    reason_for,
)
from maild.policy import SET_ASIDE_AFTER_FAILURES
from maild.protocols.base import Maildrop

NOW = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)


def _letter(n: int, *, mid: bool = True, body: bytes = b"Text\r\n") -> bytes:
    head = b"From: a@example.org\r\nSubject: Brief %d\r\nDate: Mon, 7 Dec 2026 10:%02d:00 +0000\r\n" % (
        n,
        n % 60,
    )
    if mid:
        head += b"Message-ID: <m%d@example.org>\r\n" % n
    return head + b"\r\n" + body


def _record(key: MessageKey, failures: int) -> FailureRecord:
    return FailureRecord(key, failures, "-ERR", NOW, NOW, False, None, None, None, 0, "message")


# -- reason_for -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"), [(999, "never fetched"), (1000, "never fetched"), (1001, "too large")]
)
def test_too_large_only_above_max_message_size(size: int, expected: str) -> None:
    """A message is "too large" exactly when its size exceeds max_message_size (the fetch's own bound)."""
    assert reason_for(POP3Key("u"), size, {}, set(), 1000) == expected


def test_no_max_message_size_or_no_size_is_never_too_large() -> None:
    """Without max_message_size or without a reported size nothing is "too large"."""
    assert reason_for(POP3Key("u"), 10**9, {}, set(), None) == "never fetched"
    assert reason_for(POP3Key("u"), None, {}, set(), 1) == "never fetched"


def test_set_aside_failed_and_never_fetched_come_from_the_records() -> None:
    """Set aside (policy.set_aside) beats a failure record, which beats "never fetched"; size beats all."""
    key = POP3Key("u")
    records = {key: _record(key, SET_ASIDE_AFTER_FAILURES)}
    assert reason_for(key, 10, records, {key}, None) == "set aside"
    assert reason_for(key, 10, records, set(), None) == "failed"
    assert reason_for(key, 10, {}, set(), None) == "never fetched"
    assert reason_for(key, 11, records, {key}, 10) == "too large"


# -- not_archived -----------------------------------------------------------------------------------


def test_not_archived_keeps_server_order_and_drops_every_archived_key() -> None:
    """Keys A's locations hold (also those seen gone or deleted) are archived; the rest keep order."""
    inventory = [InventoryEntry(POP3Key(u), 5) for u in ("c", "a", "b", "d")]
    assert [e.key for e in not_archived(inventory, {POP3Key("a"), POP3Key("d")})] == [
        POP3Key("c"),
        POP3Key("b"),
    ]
    imap = [InventoryEntry(IMAPKey("INBOX", 7, 1)), InventoryEntry(IMAPKey("INBOX", 8, 1))]
    assert not_archived(imap, {IMAPKey("INBOX", 7, 1)}) == [imap[1]]  # a new UIDVALIDITY is not archived


# -- held_by ----------------------------------------------------------------------------------------


def _entry(raw: bytes, message: int = 1) -> ArchiveEntry:
    return archive_entry(message, raw, on_server=False)


@pytest.mark.parametrize("delta", [-1, 1])
def test_held_by_archive_needs_the_exact_size(delta: int) -> None:
    """Message-ID and Date equal but the size one octet off: not held (rule 3 needs all three)."""
    raw = _letter(1)
    entry = _entry(raw)
    assert held_by(entry.message_id, entry.date, len(raw), [entry], []) == "archive"
    assert held_by(entry.message_id, entry.date, len(raw) + delta, [entry], []) is None


def test_held_by_archive_in_crlf_form_and_by_target() -> None:
    """An archived message with bare LFs matches the server's CRLF size; B's scan holds by RFC822.SIZE."""
    raw = _letter(2).replace(b"\r\n", b"\n")
    entry = _entry(raw)
    assert held_by(entry.message_id, entry.date, len(to_crlf(raw)), [entry], []) == "archive"
    other = _letter(3)
    b = server_entry(IMAPKey("INBOX", 1, 9), len(other), other)
    assert held_by(b.message_id, b.date, len(other), [entry], [b]) == "target"
    assert held_by(b.message_id, b.date, len(other) + 1, [entry], [b]) is None
    assert (
        held_by(b.message_id, b.date + timedelta(seconds=1) if b.date else None, len(other), [], [b]) is None
    )


def test_without_message_id_only_the_octets_hold() -> None:
    """No Message-ID: header equality alone never holds; the downloaded octets' SHA-256 does."""
    from maild.move.compare import body_digest

    raw = _letter(4, mid=False)
    entry = _entry(raw)
    b = server_entry(IMAPKey("INBOX", 1, 9), len(raw), raw)
    assert held_by(None, entry.date, len(raw), [entry], [b]) is None
    assert body_wanted(raw, [entry])
    assert not body_wanted(_letter(4, mid=False, body=b"x\r\n").replace(b"Brief", b"Brif"), [entry])
    assert not body_wanted(_letter(4), [entry])  # with Message-ID: no body needed
    assert held_by(None, entry.date, len(raw), [entry], [], body_digest(raw)) == "archive"
    twin = _letter(4, mid=False, body=b"other\r\n")
    assert held_by(None, entry.date, len(twin), [entry], [], body_digest(twin)) is None


@given(
    n=st.integers(0, 500),
    body=st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n") + b"\r\n"),
    lf=st.booleans(),
)
def test_held_by_agrees_with_compare_rule_3(n: int, body: bytes, lf: bool) -> None:
    """For any message with Message-ID, held_by(server's header, size) says "archive" exactly when
    compare.compare (the general path) matches the same message by rule 3 as B's copy."""
    from maild.move.compare import compare

    raw = _letter(n, body=body)
    archived = raw.replace(b"\r\n", b"\n") if lf else raw
    entry = _entry(archived)
    on_server = to_crlf(archived)
    for size in (len(on_server) - 1, len(on_server), len(on_server) + 1):
        b = server_entry(IMAPKey("INBOX", 1, 1), size, on_server)
        general = bool(compare([entry], [b]).both)
        assert (held_by(b.message_id, b.date, size, [entry], []) == "archive") == general


# -- SourceCheck wording ----------------------------------------------------------------------------


def test_summary_names_each_reason_in_order() -> None:
    """The refusal's "why" lists each reason with its count, none that has no message."""
    check = SourceCheck(
        "pop",
        unarchived=[
            Unarchived(POP3Key("a"), 1, "too large"),
            Unarchived(POP3Key("b"), 1, "never fetched"),
            Unarchived(POP3Key("c"), 1, "never fetched"),
        ],
    )
    assert check.counts() == {"never fetched": 2, "too large": 1}
    assert (
        check.summary()
        == "2 never fetched (arrived after its last fetch?), 1 larger than its max_message_size"
    )


# -- check_source over a fake Maildrop --------------------------------------------------------------


class FakeMaildrop(Maildrop):
    """A POP3-like maildrop holding ``messages`` (UIDL to octets); records every call."""

    def __init__(self, messages: dict[str, bytes], *, fail_open: Exception | None = None) -> None:
        self.messages = messages
        self.fail_open = fail_open
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")
        if self.fail_open is not None:
            raise self.fail_open

    async def inventory(self) -> list[InventoryEntry]:
        self.calls.append("inventory")
        return [InventoryEntry(POP3Key(u), len(raw)) for u, raw in self.messages.items()]

    async def header_fields(self, keys: Sequence[MessageKey], *, max_octets: int) -> dict[MessageKey, bytes]:
        self.calls.append("header_fields")
        out: dict[MessageKey, bytes] = {}
        for key in keys:
            assert isinstance(key, POP3Key)
            raw = self.messages[key.uidl]
            out[key] = raw[: raw.index(b"\r\n\r\n") + 4]
        return out

    async def retrieve(  # type: ignore[override]
        self, keys: Sequence[MessageKey], *, window_octets: Callable[[], int] | None = None
    ) -> AsyncIterator[RetrievedMessage | RetrievalFailure]:
        self.calls.append("retrieve")
        for key in keys:
            assert isinstance(key, POP3Key)
            yield RetrievedMessage(key, self.messages[key.uidl])

    async def delete(self, keys: Sequence[MessageKey]) -> None:
        self.calls.append("delete")

    async def close(self) -> None:
        self.calls.append("close")

    async def abort(self) -> None:
        self.calls.append("abort")


def _config(tmp_path: Path, **pop: object) -> Config:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    account = {"organisation": "O", "employee": "E", "username": "u", "password_file": str(secret)}
    doc = {
        "daemon": {"state_dir": str(tmp_path / "state"), "control_socket": str(tmp_path / "c.sock")},
        "accounts": {"pop": {"protocol": "pop3", "host": "127.0.0.1", **account, **pop}},
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_config(path)


async def _check(
    tmp_path: Path,
    fake: FakeMaildrop,
    archived: dict[str, bytes],
    *,
    target: dict[IMAPKey, bytes] | None = None,
    deleted: Sequence[str] = (),
    **pop: object,
) -> SourceCheck:
    config = _config(tmp_path, **pop)
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:
        await store.ensure_account("pop", "O", "E", "pop3", NOW)
        if archived:
            batch = [RetrievedMessage(POP3Key(u), raw) for u, raw in archived.items()]
            await store.store_batch("pop", batch, NOW)
        if deleted:
            await store.mark_deleted("pop", [POP3Key(u) for u in deleted], NOW)
        archive = await store.archive_entries("pop")
        return await check_source(
            config,
            store,
            "pop",
            archive=archive,
            target_entries=[server_entry(k, len(raw), raw) for k, raw in (target or {}).items()],
            clock=lambda: NOW,
            maildrop_factory=lambda _account, _executor: fake,
            target_bodies=(lambda keys: _b_digests(target or {}, keys)),
        )
    finally:
        await store.close()


async def test_check_reads_only_and_counts_what_is_not_held(tmp_path: Path) -> None:
    """The check opens, lists, reads headers (and one body: no Message-ID, header as archived), then
    QUITs: it never deletes; a new message and a twin with another body are not archived, a copy under
    a new UIDL (by Message-ID or by octets) is held."""
    old = _letter(1)
    no_mid = _letter(2, mid=False)
    fake = FakeMaildrop(
        {
            "u1": old,
            "copy": old,  # the same message under another UIDL (an upload into the same mailbox)
            "u2": no_mid,
            "copy2": no_mid,
            "twin": _letter(2, mid=False, body=b"zweite Fassung\r\n"),
            "new": _letter(3),
        }
    )
    check = await _check(tmp_path, fake, {"u1": old, "u2": no_mid})
    # POP3: each unarchived message read whole once (peek), no header-only read; then QUIT
    assert fake.calls == ["open", "inventory", "retrieve", "close"]
    assert check.error is None
    assert check.listed == 6
    assert check.held == 2
    assert [(u.key, u.reason, u.stored) for u in check.unarchived] == [
        (POP3Key("twin"), "never fetched", True),
        (POP3Key("new"), "never fetched", True),
    ]
    assert check.unarchived[1].subject == "Brief 3"
    assert check.stored == 2  # what was read and A's archive lacked is in A's archive now


async def _b_digests(target: dict[IMAPKey, bytes], keys: Sequence[IMAPKey]) -> dict[IMAPKey, BodyDigest]:
    return {k: body_digest(target[k]) for k in keys}


def _same_identity_other_body(n: int) -> tuple[bytes, bytes]:
    """Two different messages with equal Message-ID, Date and size (a crafted or resent one)."""
    return _letter(n, body=b"Pay to DE01\r\n"), _letter(n, body=b"Pay to DE99\r\n")


async def test_same_identity_other_octets_in_archive_is_not_held(tmp_path: Path) -> None:
    """A's archive holds a message with the same Message-ID, Date and size as a new one on A's
    server but other octets: the new one is not archived (fails when rule 3 alone decides)."""
    archived, new = _same_identity_other_body(5)
    assert len(archived) == len(new) and archived != new
    fake = FakeMaildrop({"u1": archived, "resent": new, "copy": archived})
    check = await _check(tmp_path, fake, {"u1": archived})
    assert [(u.key, u.reason) for u in check.unarchived] == [(POP3Key("resent"), "never fetched")]
    assert check.held == 1  # the true copy is held by its octets
    assert "delete" not in fake.calls


async def test_same_identity_other_octets_in_b_is_not_held(tmp_path: Path) -> None:
    """B holds a message with the same Message-ID, Date and size as one A never archived but other
    octets: not held; B's true copy (or one of two B messages of that identity) holds it."""
    in_b, new = _same_identity_other_body(6)
    fake = FakeMaildrop({"new": new})
    check = await _check(tmp_path, fake, {}, target={IMAPKey("INBOX", 1, 1): in_b})
    assert [u.key for u in check.unarchived] == [POP3Key("new")]
    fake = FakeMaildrop({"new": new})
    (tmp_path / "again").mkdir()  # the first check stored "new" into A's archive in tmp_path
    check = await _check(
        tmp_path / "again", fake, {}, target={IMAPKey("INBOX", 1, 1): in_b, IMAPKey("INBOX", 1, 2): new}
    )
    assert (check.held, check.unarchived) == (1, [])


@pytest.mark.parametrize("extra", [0, 1])
async def test_beyond_the_content_bound_a_match_is_not_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    """At CONTENT_CHECK_MESSAGES copies the octets are compared (held); one more and none is
    downloaded: each counts as "not verified" and the refusal says why."""
    from maild.move import source_check

    monkeypatch.setattr(source_check, "CONTENT_CHECK_MESSAGES", 3)
    old = _letter(7)
    messages = {"u1": old} | {f"c{i}": old for i in range(3 + extra)}
    fake = FakeMaildrop(messages)
    check = await _check(tmp_path, fake, {"u1": old})
    if extra:
        assert "retrieve" not in fake.calls
        assert check.counts() == {"not verified": 4}
        assert "too many or too large to download" in check.summary()
    else:
        assert (check.held, check.unarchived) == (3, [])


@pytest.mark.parametrize("extra", [0, 1])
async def test_beyond_the_octet_bound_a_match_is_not_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    """CONTENT_CHECK_OCTETS is inclusive: exactly that many octets are downloaded, one more is not."""
    from maild.move import source_check

    old = _letter(8)
    monkeypatch.setattr(source_check, "CONTENT_CHECK_OCTETS", 2 * len(old) - extra)
    fake = FakeMaildrop({"u1": old, "c1": old, "c2": old})
    check = await _check(tmp_path, fake, {"u1": old})
    assert check.counts() == ({"not verified": 2} if extra else {})


class DuplicatesMaildrop(FakeMaildrop):
    """A POP3 maildrop whose listing had UIDL ``dup`` twice: left out of the inventory."""

    @property
    def duplicate_uidls(self) -> frozenset[str]:
        return frozenset({"dup"})


async def test_messages_sharing_a_uidl_are_not_archived(tmp_path: Path) -> None:
    """The POP3 adapter leaves messages sharing a UIDL out of its inventory (and the fetch never
    takes them): the check counts them, else retire would leave them on A's server."""
    fake = DuplicatesMaildrop({"u1": _letter(1)})
    check = await _check(tmp_path, fake, {"u1": _letter(1)})
    assert [(u.key, u.reason) for u in check.unarchived] == [(POP3Key("dup"), "duplicate UIDL")]
    assert check.listed == 2
    assert "sharing their UIDL" in check.summary()


class RefusedMailboxMaildrop(FakeMaildrop):
    """An IMAP-like maildrop whose server refused to SELECT one configured mailbox (left out)."""

    mailbox_failures = {"Altpost": "NO [NOPERM] no access"}  # noqa: RUF012 -- read only


async def test_a_mailbox_refused_by_select_makes_the_server_unknown(tmp_path: Path) -> None:
    """IMAP's inventory skips a mailbox the server refuses to select (its mail unseen): the check
    is then an unknown (retire refuses; --accept-unfetched decides), the session aborted."""
    fake = RefusedMailboxMaildrop({"u1": _letter(1)})
    check = await _check(tmp_path, fake, {"u1": _letter(1)})
    assert not check.checked
    assert check.error is not None and "'Altpost': NO [NOPERM] no access" in check.error
    assert fake.calls == ["open", "inventory", "abort"]


async def test_a_deleted_uidl_listed_again_is_decided_by_its_octets(tmp_path: Path) -> None:
    """maild deleted UIDL "u1" from A's server; the server lists "u1" again: a server re-using
    UIDLs may hold another message there (the fetch leaves it unarchived when its size differs).
    It is held only when its octets are the archived message's (equal Message-ID, Date and size
    but other octets included); else not archived, "came back"."""
    old, impostor = _same_identity_other_body(9)
    fake = FakeMaildrop({"u1": impostor, "u2": _letter(10, body=b"longer body\r\n")})
    check = await _check(tmp_path, fake, {"u1": old, "u2": _letter(10)}, deleted=["u1", "u2"])
    assert [(u.key, u.reason) for u in check.unarchived] == [
        (POP3Key("u1"), "came back"),
        (POP3Key("u2"), "came back"),
    ]
    (tmp_path / "again").mkdir()
    fake = FakeMaildrop({"u1": old})
    check = await _check(tmp_path / "again", fake, {"u1": old}, deleted=["u1"])
    assert (check.held, check.unarchived) == (1, [])


async def test_nothing_unarchived_reads_no_header(tmp_path: Path) -> None:
    """When every listed message is archived the check ends after the listing."""
    fake = FakeMaildrop({"u1": _letter(1)})
    check = await _check(tmp_path, fake, {"u1": _letter(1)})
    assert fake.calls == ["open", "inventory", "close"]
    assert (check.listed, check.held, check.unarchived) == (1, 0, [])


@pytest.mark.parametrize("error", [AuthError("sign-in refused"), ConnectError("cannot connect")])
async def test_server_errors_become_an_unknown_and_abort(tmp_path: Path, error: Exception) -> None:
    """A refused sign-in or a failed connection is returned as the check's error (session aborted)."""
    fake = FakeMaildrop({}, fail_open=error)
    check = await _check(tmp_path, fake, {})
    assert fake.calls == ["open", "abort"]
    assert not check.checked
    assert check.error == str(error)


async def test_an_account_not_configured_is_an_unknown(tmp_path: Path) -> None:
    """A retired-into-nowhere account missing from the configuration cannot be checked."""
    config = _config(tmp_path)
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:
        check = await check_source(config, store, "gone", archive=[], target_entries=[], clock=lambda: NOW)
    finally:
        await store.close()
    assert check.error is not None
    assert "not in the configuration" in check.error


def test_the_check_builds_a_s_adapter_as_the_fetch_does() -> None:
    """The check's default adapter builder is the fetch's own (maild.config.maildrop.make_maildrop,
    which maild.fetch.cycle uses too), so what retire lists is what the fetch sees."""
    import inspect

    from maild.config.maildrop import make_maildrop
    from maild.fetch import cycle
    from maild.move import source_check

    assert cycle.make_maildrop is make_maildrop
    assert source_check.make_maildrop is make_maildrop
    assert "maildrop_factory = make_maildrop" in inspect.getsource(source_check)


@pytest.mark.parametrize(("listed", "resized"), [(99, True), (100, False), (101, True), (None, False)])
def test_resized_identities_at_the_recorded_size_plus_minus_one(listed: int | None, resized: bool) -> None:
    """A UIDL listed one octet off the server size recorded for it is another message; at that size,
    without a LIST size, or without a recorded size, it is not."""
    from maild.move.source_check import resized_identities

    inventory = [InventoryEntry(POP3Key("u1"), listed), InventoryEntry(POP3Key("u2"), 5)]
    assert resized_identities(inventory, {POP3Key("u1"): 100}) == ({POP3Key("u1")} if resized else set())
