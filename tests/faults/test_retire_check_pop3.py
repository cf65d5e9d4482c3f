"""Retire's check of a POP3 A against the scripted server: read with TOP, never RETR unless said so,
and nothing lost on a server that deletes what is downloaded (maild.move.source_pop3).

Each test names what it needs the scripted server for: a TOP that comes back short, a CAPA without
TOP, a server that removes a message the moment it is served by RETR or TOP. Every test here fails
on session 13's check (``TOP n 0`` for each header, RETR for each candidate, nothing stored).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from maild.archive.move_queries import MigrationStore
from maild.config.maildrop import make_maildrop
from maild.model import POP3Key, RetrievedMessage
from maild.move.compare import body_digest
from maild.move.source_check import SourceCheck, check_source
from maild.protocols.base import Maildrop
from tests.support.fetching import pop3_account
from tests.support.rawsocket import leaked_threads
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message
from tests.unit.test_source_check import NOW, _config


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")


async def _check(tmp_path: Path, server: ScriptedPOP3, archived: dict[str, bytes]) -> SourceCheck:
    """Run the check of account ``pop`` (the scripted server) with ``archived`` (UIDL to octets) in
    A's archive, through the real POP3 adapter; no B."""
    config = _config(tmp_path)
    account = pop3_account(server.host, server.port, "alice", "secret", name="pop")
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")

    def factory(_account: object, executor: concurrent.futures.ThreadPoolExecutor) -> Maildrop:
        return make_maildrop(account, executor)

    try:
        await store.ensure_account("pop", "O", "E", "pop3", NOW)
        batch = [RetrievedMessage(POP3Key(u), raw) for u, raw in archived.items()]
        await store.store_batch("pop", batch, NOW)
        return await check_source(
            config,
            store,
            "pop",
            archive=await store.archive_entries("pop"),
            target_entries=[],
            clock=lambda: NOW,
            maildrop_factory=factory,
        )
    finally:
        await store.close()


async def _archived_digests(tmp_path: Path) -> set[str]:
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:
        return {e.sha256 for e in await store.archive_entries("pop")}
    finally:
        await store.close()


def _maildrop() -> tuple[bytes, list[ScriptedMessage]]:
    """An archived message ``old`` (UIDL ``u1``), its copy under a new UIDL, and a new message."""
    old = sample_message(1, [b"Erste Zeile", b"zweite Zeile"])
    return old, [
        ScriptedMessage(old, uidl="u1"),
        ScriptedMessage(old, uidl="copy"),
        ScriptedMessage(sample_message(2, [b"neu", b"", b"Gruss"]), uidl="new"),
    ]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_the_check_reads_with_top_for_the_whole_message_never_retr(
    tmp_path: Path, pipelining: bool
) -> None:
    """Each message A never archived is read once with ``TOP n <its LIST size>`` (one window, sent at
    once with PIPELINING); no RETR, no ``TOP n 0``, no DELE: the copy is held by its octets, the new
    one is not (and now archived)."""
    old, messages = _maildrop()
    with ScriptedPOP3(messages, pipelining=pipelining) as server:
        check = await _check(tmp_path, server, {"u1": old})
        commands = server.commands
    assert not [c for c in commands if c.startswith(("RETR", "DELE"))]
    assert [c for c in commands if c.startswith("TOP")] == [
        f"TOP 2 {len(old)}",
        f"TOP 3 {len(messages[2].raw)}",
    ]
    assert (check.held, [(u.key, u.reason, u.stored) for u in check.unarchived]) == (
        1,
        [(POP3Key("new"), "never fetched", True)],
    )
    assert check.unarchived[0].subject == "Message 2"
    assert check.retr_fallbacks == 0


@pytest.mark.parametrize("how", ["short", "-ERR TOP disabled", "no TOP in CAPA"])
async def test_top_short_refused_or_missing_falls_back_to_retr_and_says_so(tmp_path: Path, how: str) -> None:
    """A TOP reply shorter than LIST's size (a capped TOP), a refused TOP or a CAPA without TOP: the
    message is read with RETR instead, a warning is logged for it and the check counts it; the
    decision is the same as with TOP (the copy held, the new one not). A short reply is never
    taken for the message (it would be held by nothing, and stored cut)."""
    old, messages = _maildrop()
    capa = ["USER", "UIDL", "RESP-CODES"] if how == "no TOP in CAPA" else None
    if how != "no TOP in CAPA":
        for message in messages:
            message.top = how
    with ScriptedPOP3(messages, capa=capa) as server, capture_logs() as logs:
        check = await _check(tmp_path, server, {"u1": old})
        commands = server.commands
    assert [c for c in commands if c.startswith("RETR")] == ["RETR 2", "RETR 3"]
    fallbacks = [e for e in logs if e["event"] == "pop3.peek.retr_fallback"]
    assert [(e["log_level"], e["key"]) for e in fallbacks] == [
        ("warning", POP3Key("copy")),
        ("warning", POP3Key("new")),
    ]
    assert check.retr_fallbacks == 2
    assert (check.held, [u.key for u in check.unarchived]) == (1, [POP3Key("new")])
    assert body_digest(messages[2].raw).sha256 in await _archived_digests(tmp_path)  # whole, not cut


@pytest.mark.parametrize("top", ["as-retr", "short"])
async def test_a_server_deleting_what_is_downloaded_loses_nothing(tmp_path: Path, top: str) -> None:
    """A server that removes each message the moment RETR or TOP serves it: every message the check
    read is gone from the server afterwards, and each is held by A's archive (by its octets) when
    the check returns: the new one stored by the check, the copy held as archived already.

    Steps: the maildrop holds the archived message, a copy of it under a new UIDL and a new message;
    the check runs (with TOP, or with a short TOP and so RETR); the server lists only the archived
    one; A's archive holds the octets of every message the server deleted.
    """
    old, messages = _maildrop()
    if top == "short":
        for message in messages:
            message.top = "short"
    with ScriptedPOP3(messages, delete_on_download=True) as server:
        check = await _check(tmp_path, server, {"u1": old})
        left = [m.uidl for m in server.maildrop]
        deleted = server.deleted
    assert check.checked
    assert left == ["u1"]
    assert {m.uidl for m in deleted} == {"copy", "new"}
    held = await _archived_digests(tmp_path)
    assert {body_digest(m.raw).sha256 for m in deleted} <= held
    assert [(u.key, u.stored) for u in check.unarchived] == [(POP3Key("new"), True)]


async def test_a_message_that_came_back_under_a_deleted_uidl_is_kept_on_a_deleting_server(tmp_path: Path) -> None:
    """A UIDL maild deleted earlier, listed again for another message ("came back": the archive links
    the UIDL to the old message), on a server that deletes what TOP serves: the check reads it to
    compare, so the server drops it; A's archive must hold its octets when the check returns (under
    its content identity, ``sha256:<hex>``, not the UIDL the old message keeps), or it is lost.

    Session 14's check compared it and kept nothing (guarantee.md's "Left"): fails there.
    """
    old = sample_message(1, [b"alt"])
    back = sample_message(2, [b"nicht dieselbe Nachricht", b"", b"Gruss"])
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:
        await store.ensure_account("pop", "O", "E", "pop3", NOW)
        await store.store_batch("pop", [RetrievedMessage(POP3Key("u1"), old)], NOW)
        await store.mark_deleted("pop", [POP3Key("u1")], NOW)
    finally:
        await store.close()
    with ScriptedPOP3([ScriptedMessage(back, uidl="u1")], delete_on_download=True) as server:
        check = await _check(tmp_path, server, {})
        deleted = server.deleted
    assert [m.uidl for m in deleted] == ["u1"]
    assert [(u.key, u.reason, u.stored) for u in check.unarchived] == [(POP3Key("u1"), "came back", True)]
    assert body_digest(back).sha256 in await _archived_digests(tmp_path)
    store = await MigrationStore.open(tmp_path / "state" / "maild.sqlite3")
    try:  # the UIDL still names the old message: the fetch's view of u1 is unchanged
        sizes = await store.archived_sizes("pop", [POP3Key("u1")])
    finally:
        await store.close()
    assert sizes[POP3Key("u1")][1] == len(old)


def _cut_to_the_lf_size(n: int) -> bytes:
    """A message whose last body line, CRLF included, is as long as the message has CRLFs: cut off
    by a capping TOP, the rest is exactly its size counted with one octet per line end."""
    crlfs = sample_message(n, [b"eins", b"zwei", b"x"]).count(b"\r\n")
    raw = sample_message(n, [b"eins", b"zwei", b"x" * (crlfs - 2)])
    assert len(raw) - len(raw.rpartition(b"zwei\r\n")[2]) == len(raw) - raw.count(b"\r\n")
    return raw


async def test_a_capped_top_as_long_as_a_size_counting_line_ends_as_one_is_not_taken(tmp_path: Path) -> None:
    """A server that LISTs sizes with one octet per line end (its first message's TOP is whole only
    that way) and caps TOP: a reply cut short by exactly as many octets as the message has line ends
    is as long as LIST's size. It must not be taken (and stored) as the message: RETR reads it
    whole, said. Session 14's check stored the cut message in A's archive (LIST's size equal to the
    archived one's, a later ``maild fetch`` with ``retention = "delete"`` would take the whole
    message on the server for it, with no header check, and delete it)."""
    first = sample_message(1, [b"ganz"])
    cut = _cut_to_the_lf_size(2)
    messages = [
        ScriptedMessage(first, uidl="a", list_size=len(first) - first.count(b"\r\n")),
        ScriptedMessage(cut, uidl="b", list_size=len(cut) - cut.count(b"\r\n"), top="short"),
    ]
    with ScriptedPOP3(messages) as server:
        check = await _check(tmp_path, server, {})
        commands = server.commands
    assert [c for c in commands if c.startswith("RETR")] == ["RETR 2"]
    assert check.retr_fallbacks == 1
    held = await _archived_digests(tmp_path)
    assert {body_digest(first).sha256, body_digest(cut).sha256} <= held


async def test_a_message_served_short_and_not_kept_is_not_removed_at_quit(tmp_path: Path) -> None:
    """A server that removes what RETR or TOP served when QUIT starts UPDATE (RSET or not), caps TOP,
    and refuses the RETR fallback: the check got the message in part and kept nothing of it, so it
    must end the session without QUIT: the server still lists it afterwards (the copy, served whole
    and held by A's archive, too), and the check names it (not archived). Session 14's check sent
    QUIT: the server removed it, kept nowhere.
    """
    old, messages = _maildrop()
    messages[2].top, messages[2].retr_error = "short", "-ERR [SYS/TEMP] try later"
    with ScriptedPOP3(messages, delete_on_download="at-quit") as server:
        check = await _check(tmp_path, server, {"u1": old})
        left = [m.uidl for m in server.maildrop]
        commands = server.commands
    assert "QUIT" not in commands and "RSET" not in commands
    assert left == ["u1", "copy", "new"]
    assert check.checked
    assert [(u.key, u.stored) for u in check.unarchived] == [(POP3Key("new"), False)]


async def test_a_store_failing_during_the_check_does_not_quit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive failing to store what the check read (disk full): the session ends without QUIT,
    so a server removing what was downloaded at UPDATE keeps it. Session 14 aborted with RSET and
    QUIT: the server removed the message the check had read and not stored."""
    from maild.errors import StoreError

    real = MigrationStore.store_batch

    async def failing(self: MigrationStore, account: str, batch: list[RetrievedMessage], now: object) -> object:
        if batch and batch[0].key == POP3Key("new"):
            raise StoreError("disk full")
        return await real(self, account, batch, now)  # type: ignore[arg-type]

    monkeypatch.setattr(MigrationStore, "store_batch", failing)
    old, messages = _maildrop()
    with ScriptedPOP3(messages, delete_on_download="at-quit") as server:
        check = await _check(tmp_path, server, {"u1": old})
        left = [m.uidl for m in server.maildrop]
        commands = server.commands
    assert check.error is not None and "disk full" in check.error  # A's server counts as not checked
    assert "QUIT" not in commands
    assert left == ["u1", "copy", "new"]


async def test_a_uidl_re_used_after_the_check_stored_its_message_is_decided_by_content(tmp_path: Path) -> None:
    """The check stores ``u1``'s message and the server's LIST size for it; the server then lists
    ``u1`` for another message of another size (a re-used UIDL, as retire's second listing refuses:
    ``resized_since``). The re-run check must not take ``u1`` for the archived message by its key:
    it reads it, and as nothing holds it, stores it (under its content identity) and names it.
    Session 14's re-run passed it as archived, and the retirement left it on the old server: fails
    there (nothing unarchived)."""
    first = sample_message(1, [b"erste"])
    other = sample_message(2, [b"eine ganz andere Nachricht", b"", b"Gruss"])
    with ScriptedPOP3([ScriptedMessage(first, uidl="u1")]) as server:
        check = await _check(tmp_path, server, {})
    assert [(u.key, u.stored) for u in check.unarchived] == [(POP3Key("u1"), True)]
    with ScriptedPOP3([ScriptedMessage(other, uidl="u1")]) as server:
        again = await _check(tmp_path, server, {})
    assert [(u.key, u.reason, u.stored) for u in again.unarchived] == [(POP3Key("u1"), "came back", True)]
    assert body_digest(other).sha256 in await _archived_digests(tmp_path)
    with ScriptedPOP3([ScriptedMessage(first, uidl="u1")]) as server:  # the same message: by its key
        same = await _check(tmp_path, server, {})
    assert (same.unarchived, same.held) == ([], 0)
