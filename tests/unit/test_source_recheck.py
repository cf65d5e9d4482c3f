"""The second listing of A's server before ``maild retire`` records (maild.move.source_recheck): what
it counts as arrived, and that it is read only and ends every session."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.errors import ConnectError, MaildError
from maild.model import IMAPKey, MessageKey, POP3Key
from maild.move.source_recheck import arrived_since, list_server
from tests.unit.test_source_check import FakeMaildrop, _config

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
    fake = FakeMaildrop({"a": b"x\r\n\r\n", "b": b"y\r\n\r\n"})
    fake.duplicate_uidls = frozenset({"dup"})  # type: ignore[attr-defined]
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
