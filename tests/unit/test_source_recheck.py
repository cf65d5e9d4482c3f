"""The second listing of A's server before ``maild retire`` records (maild.move.source_recheck): what
it counts as arrived, and that it is read only and ends every session."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.errors import ConnectError, MaildError
from maild.model import IMAPKey, MessageKey, POP3Key
from maild.move.source_recheck import arrived_since, list_server, resized_since
from tests.unit.test_source_check import DuplicatesMaildrop, FakeMaildrop, _config

_keys = st.frozensets(st.builds(POP3Key, st.text("abc", min_size=1, max_size=3)), max_size=8)


@given(checked=_keys, now=_keys)
def test_arrived_since_is_exactly_what_the_check_did_not_list(
    checked: frozenset[MessageKey], now: frozenset[MessageKey]
) -> None:
    """Every identity listed now and not checked is named once; nothing checked, and nothing that left
    the server, ever is."""
    assert set(arrived_since(checked, now)) == now - checked
    assert len(arrived_since(checked, now)) == len(now - checked)


def test_a_new_uidvalidity_is_a_new_identity() -> None:
    """An IMAP mailbox whose UIDVALIDITY changed after the check lists identities the check did not."""
    assert arrived_since({IMAPKey("INBOX", 7, 1)}, {IMAPKey("INBOX", 8, 1)}) == [IMAPKey("INBOX", 8, 1)]


async def test_list_server_lists_read_only_and_counts_duplicates(tmp_path: Path) -> None:
    """The listing opens, lists and closes: no download, no deletion; shared UIDLs are listed too."""
    fake = DuplicatesMaildrop({"a": b"x\r\n\r\n", "b": b"y\r\n\r\n"})
    keys = await list_server(_config(tmp_path), "pop", maildrop_factory=lambda _account, _executor: fake)
    assert keys == {POP3Key("a"), POP3Key("b"), POP3Key("dup")}
    assert fake.calls == ["open", "inventory", "close"]


async def test_list_server_failure_aborts_and_raises(tmp_path: Path) -> None:
    """A server that cannot be reached raises its error after the session is aborted; an account not
    configured raises too (the caller refuses: an unknown)."""
    fake = FakeMaildrop({}, fail_open=ConnectError("refused"))
    with pytest.raises(ConnectError):
        await list_server(_config(tmp_path), "pop", maildrop_factory=lambda _account, _executor: fake)
    assert fake.calls == ["open", "abort"]
    with pytest.raises(MaildError, match="not in the configuration"):
        await list_server(_config(tmp_path), "gone")


_key = st.builds(POP3Key, st.text("abc", min_size=1, max_size=3))


@given(
    checked=st.dictionaries(_key, st.integers(0, 3), max_size=8),
    now=st.dictionaries(_key, st.none() | st.integers(0, 3), max_size=8),
)
def test_resized_since_is_exactly_what_both_list_at_two_sizes(
    checked: dict[MessageKey, int], now: dict[MessageKey, int | None]
) -> None:
    """An identity listed by both at two known sizes is named once; one at the same size, one only
    in either, or one listed now without a size, never is."""
    expected = {k for k, size in now.items() if size is not None and k in checked and checked[k] != size}
    assert set(resized_since(checked, now)) == expected
    assert len(resized_since(checked, now)) == len(expected)


async def test_a_uidl_re_used_for_another_message_during_the_check_refuses_retire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check lists ``u1`` (10 octets); before the retirement is recorded the server lists ``u1``
    for another message (11 octets: a server re-using UIDLs, the old one gone); the second listing
    refuses in one line, as for an arrival. Session 14 compared identities only and went on
    (retire14's ``_require_nothing_new`` returned): fails there. At 10 octets again it goes on (what
    the fetch's size check cannot tell either)."""
    import maild.move.source_recheck as recheck
    from maild.errors import MigrationError
    from maild.move.retire import _require_nothing_new
    from maild.move.source_check import SourceCheck

    fake = FakeMaildrop({"u1": b"a\r\n\r\nbbbbbb"})  # 11 octets
    monkeypatch.setattr(recheck, "make_maildrop", lambda _account, _executor: fake)
    check = SourceCheck("pop", host="h", listed=1, keys=frozenset({POP3Key("u1")}))
    check.sizes = {POP3Key("u1"): 10}
    config = _config(tmp_path)
    with pytest.raises(MigrationError, match=r"^1 messages on pop's server \(h\) are listed at another size"):
        await _require_nothing_new(config, check, "imap")
    fake.messages["u1"] = b"a\r\n\r\nbbbbb"  # 10 octets
    await _require_nothing_new(config, check, "imap")
