"""Fetch cycles against a scripted POP3 server without UIDL: digest identities, across sessions.

Each test runs real fetch cycles (POP3 adapter, SQLite archive) against :class:`ScriptedPOP3` with
``uidl=False``, so identities are digests (see ``maild/protocols/pop3_identity.py``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.errors import ConfigError
from maild.model import POP3Key
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import account_status
from tests.support.fetching import archived, cycle, pop3_account, prepare, with_retention
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, sample_message


def traced(n: int, body: bytes = b"") -> bytes:
    """A message as a provider hands it out: Received (added by its server) and Message-ID."""
    return (
        b"Received: from mx.example.org by pop.example.com with ESMTP id Q%04d;"
        b" Mon, 2 Mar 2026 09:%02d:00 +0000\r\n"
        b"Message-ID: <traced-%d@example.org>\r\nSubject: Nachricht %d\r\n\r\n" % (n, n % 60, n, n)
    ) + (body or b"Text %d\r\n" % n)


async def account_on(server: ScriptedPOP3, store: Store, retention: str = "keep") -> AccountConfig:
    account = with_retention(pop3_account(server.host, server.port, "alice", "secret"), retention)
    await prepare(store, account)
    return account


def retr_count(server: ScriptedPOP3, since: int = 0) -> int:
    return sum(c.startswith("RETR") for c in server.commands[since:])


MIXED = [
    traced(1),  # distinctive header: header identity
    traced(2),
    sample_message(3),  # no Received: full content
    sample_message(4),  # two identical copies: sha256 and sha256#2
    sample_message(4),
    traced(7, b"Body A\r\n"),  # same header and size, other body: collision, full content
    traced(7, b"Body B\r\n"),
]


async def test_no_uidl_stores_each_message_once_across_sessions(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Without UIDL, a second session identifies every message again and stores nothing twice.

    Steps: seven messages (two with distinctive headers, one without Received, two identical copies, two
    sharing header and size); cycle 1 archives six distinct contents under seven identities; cycle 2
    reads headers and the five content-identified messages again but stores and links nothing; the
    status names the identity scheme and warns.
    """
    with ScriptedPOP3(MIXED, uidl=False) as server:
        account = await account_on(server, store)
        first = await cycle(account, store, executor)
        mark = len(server.commands)
        second = await cycle(account, store, executor)

    keys = set(await store.locations(account.name))
    assert (
        sorted(k.uidl.split(":")[0] for k in keys if isinstance(k, POP3Key)) == ["hdr"] * 2 + ["sha256"] * 5
    )
    assert POP3Key("sha256:" + hashlib.sha256(sample_message(4)).hexdigest() + "#2") in keys
    assert (first.on_server, first.new_links, first.new_messages) == (7, 7, 6)
    assert (second.on_server, second.new_links, second.new_messages) == (7, 0, 0)
    assert sorted(await archived(store)) == sorted(set(MIXED))
    assert retr_count(server, mark) == 5  # identification only: nothing retrieved for storing
    assert sum(c == "TOP 1 0" for c in server.commands[mark:]) == 1
    assert first.identity == second.identity == "content-digest"
    status = account_status(AccountRuntime(account, last_result=second), 6).to_json()
    assert status["identity"] == "content-digest"
    assert any("does not offer UIDL" in w for w in status["warnings"])
    assert any("share their header section" in w for w in status["warnings"])


async def test_no_uidl_delete_after_failed_quit_deletes_without_storing_again(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """With digest identities, a session whose QUIT fails deletes nothing; the next one deletes without re-storing.

    Steps: retention "delete"; cycle 1 stores all seven, sends DELE, QUIT is refused (nothing deleted;
    everything was stored, so the cycle ends with a warning, not an error); cycle 2 stores nothing,
    DELEs all seven again and QUIT applies it; every identity is recorded as deleted and each
    distinct content is archived once.
    """
    with ScriptedPOP3(MIXED, uidl=False, quit_error="-ERR [SYS/TEMP] update failed") as server:
        account = await account_on(server, store, "delete")
        first = await cycle(account, store, executor)
        assert first.deleted == 0
        assert any("QUIT refused" in w and "7 deletions not confirmed" in w for w in first.warnings)
        assert len(server.maildrop) == 7
        assert server.deleted == []
        server.quit_error = None
        mark = len(server.commands)
        second = await cycle(account, store, executor)
        assert server.maildrop == []

    assert (second.new_links, second.deleted) == (0, 7)
    assert retr_count(server, mark) == 5
    assert sorted(await archived(store)) == sorted(set(MIXED))
    assert all(loc.deleted_at is not None for loc in (await store.locations(account.name)).values())


async def test_no_uidl_refused_message_stays_and_is_fetched_after_numbers_shift(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A message the server refuses (TOP and RETR) is left out and kept; next session, renumbered, it is archived and deleted.

    Steps: retention "delete"; message 2 of 3 answers -ERR [SYS/TEMP]; cycle 1 archives and deletes 1
    and 3 and warns that one message could not be identified; the refusal ends; cycle 2 finds it as
    message 1, archives it and deletes it.
    """
    refused = ScriptedMessage(traced(2), retr_error="-ERR [SYS/TEMP] message locked")
    with ScriptedPOP3([traced(1), refused, traced(3)], uidl=False) as server:
        account = await account_on(server, store, "delete")
        first = await cycle(account, store, executor)
        assert server.maildrop == [refused]
        refused.retr_error = None
        second = await cycle(account, store, executor)
        assert server.maildrop == []

    assert (first.on_server, first.new_links, first.deleted) == (2, 2, 2)
    assert any(
        "could not be read to identify them (-ERR [SYS/TEMP] message locked)" in w for w in first.warnings
    )
    assert (second.on_server, second.new_links, second.deleted) == (1, 1, 1)
    assert sorted(await archived(store)) == sorted([traced(1), traced(2), traced(3)])


async def test_no_uidl_refuses_delete_after_but_archives(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """retention "delete-after" with digest identities archives everything, deletes nothing and fails saying why."""
    with ScriptedPOP3([traced(1), sample_message(2)], uidl=False) as server:
        account = pop3_account(
            server.host, server.port, "alice", "secret", retention="delete-after", retention_days=1
        )
        await prepare(store, account)
        with pytest.raises(
            ConfigError, match=r'retention: "delete-after" refused: .* offers no UIDL'
        ) as info:
            await cycle(account, store, executor)
        assert len(server.maildrop) == 2

    assert 'Use retention = "delete"' in str(info.value)
    assert not any(c.startswith("DELE") for c in server.commands)
    assert sorted(await archived(store)) == sorted([traced(1), sample_message(2)])


async def test_without_top_every_message_is_identified_by_content(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A server whose CAPA lacks TOP is never sent TOP; messages are identified by full content, unpipelined."""
    with ScriptedPOP3([traced(1), traced(2)], uidl=False, capa=["USER"]) as server:
        account = await account_on(server, store, "delete")
        result = await cycle(account, store, executor)
        assert server.maildrop == []

    assert not any(c.startswith("TOP") for c in server.commands)
    assert (result.new_links, result.deleted) == (2, 2)
    assert all(
        k.uidl.startswith("sha256:") for k in await store.locations(account.name) if isinstance(k, POP3Key)
    )


async def test_no_uidl_message_above_max_message_size_is_never_downloaded(
    store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """A message above max_message_size whose header does not identify it is not downloaded to identify it, and stays.

    Steps: retention "delete", max_message_size 10,000 octets; message 1 is 50 kB without Received,
    message 2 small; the cycle reads both headers, never sends RETR 1, archives and deletes message 2,
    reports message 1 as too large and leaves it on the server.
    """
    big = sample_message(1, long_line_octets=50_000)
    with ScriptedPOP3([big, traced(2)], uidl=False) as server:
        account = with_retention(
            pop3_account(server.host, server.port, "alice", "secret", max_message_size=10_000), "delete"
        )
        await prepare(store, account)
        result = await cycle(account, store, executor)
        assert [m.raw for m in server.maildrop] == [big]

    assert "RETR 1" not in server.commands
    assert [k.uidl for k in result.too_large if isinstance(k, POP3Key)] == [f"unidentified:{len(big)}:1"]
    assert (result.new_links, result.deleted) == (1, 1)
    assert any("above max_message_size" in w for w in result.warnings)
    assert await archived(store) == [traced(2)]
