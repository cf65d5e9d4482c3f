"""Helpers for tests that run real fetch cycles (POP3 adapter, real SQLite archive) against a server.

Used by the retention tests against the scripted POP3 server and against Dovecot (directly or through
the fault-injecting proxy).
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from maild.archive.store import Store
from maild.config.loader import AccountConfig
from maild.fetch.cycle import CycleResult, fetch_cycle, make_maildrop
from maild.model import Location, MessageKey, RetrievalFailure, RetrievedMessage
from maild.protocols.base import Maildrop
from maild.protocols.imap import fetch as imap_fetch
from tests.support import accounts

if TYPE_CHECKING:
    from tests.support.scripted_pop3 import ScriptedPOP3

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock returning aware UTC datetimes, for ``fetch_cycle(clock=...)``."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock forward by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


def pop3_account(
    host: str, port: int, username: str, password: str, *, name: str = "anna-pop", **overrides: Any
) -> AccountConfig:
    """A POP3 account on ``host:port`` (plaintext, fine on loopback), retention "keep", 10 s timeouts."""
    values: dict[str, Any] = {"timeout_s": 10.0, **overrides}
    return accounts.pop3_account(name, host=host, port=port, username=username, password=password, **values)


def with_retention(account: AccountConfig, retention: str, days: int | None = None) -> AccountConfig:
    """``account`` with another retention mode."""
    return replace(account, retention=retention, retention_days=days)  # type: ignore[arg-type]


async def prepare(store: Store, account: AccountConfig) -> AccountConfig:
    """Record ``account`` in the archive, as the daemon does at start; returns ``account``."""
    await store.ensure_account(account.name, account.organisation, account.employee, account.protocol, T0)
    return account


async def cycle(
    account: AccountConfig,
    store: Store,
    executor: concurrent.futures.ThreadPoolExecutor,
    *,
    clock: Callable[[], datetime] | None = None,
    **kwargs: Any,
) -> CycleResult:
    """One fetch cycle through a fresh POP3/IMAP adapter, as the scheduler runs it (with a fresh
    adapter for the header fetch of failed messages)."""
    maildrop = make_maildrop(account, executor)
    if clock is not None:
        kwargs["clock"] = clock
    kwargs.setdefault("reconnect", lambda: make_maildrop(account, executor))
    return await fetch_cycle(account, store, maildrop, **kwargs)


async def archived(store: Store) -> list[bytes]:
    """The raw octets of every message in the archive, in storing order."""
    ids = await _message_ids(store)
    raws = await store.raw_messages(ids)
    return [raws[i] for i in ids]


async def _message_ids(store: Store) -> list[int]:
    rows = await store._all("SELECT id FROM messages ORDER BY id")
    return [int(r[0]) for r in rows]


async def locations(store: Store, account: str) -> dict[MessageKey, Location]:
    """The account's recorded server identities."""
    return await store.locations(account)


def crlf(data: bytes) -> bytes:
    """Every bare LF as CRLF, as Dovecot serves Maildir files over POP3 and IMAP."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


async def retrieve_everything(maildrop: Maildrop) -> list[RetrievedMessage | RetrievalFailure]:
    """Take an open maildrop's inventory, then retrieve everything in it."""
    entries = await maildrop.inventory()
    return [item async for item in maildrop.retrieve([entry.key for entry in entries])]


#: A body line the fault proxy is told to cut the connection at (:func:`letter`).
MARKER = b"CHOKE-ON-THIS-LINE"


def letter(n: int, marker: bytes = b"") -> bytes:
    """A small CRLF message (Subject ``Schreiben n``) with a unique Message-ID; ``marker`` on a line of its body."""
    return (
        b"From: Kanzlei Berger <post@kanzlei-berger.example>\r\nTo: Anna <anna@example.com>\r\n"
        b"Subject: Schreiben %d\r\nMessage-ID: <choke-%d@kanzlei-berger.example>\r\n\r\n"
        b"Zeile eins\r\n%s\r\nZeile drei\r\n" % (n, n, marker)
    )


def fast_path_heads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The list that collects, from now on, the head of every FETCH response the IMAP fast path takes
    (:meth:`maild.protocols.imap.fetch.FetchAssembler.feed_plain`), which then runs as before."""
    taken: list[bytes] = []
    feed_plain = imap_fetch.FetchAssembler.feed_plain

    def counted(self: Any, fields: Any, head: bytes, literal: Any) -> None:
        taken.append(head)
        feed_plain(self, fields, head, literal)

    monkeypatch.setattr(imap_fetch.FetchAssembler, "feed_plain", counted)
    return taken


WITHOUT_TOP = ("UIDL", "USER")
"""CAPA of a scripted POP3 server that does not offer TOP (RFC 1939 section 7: TOP is optional)."""


async def keeping(server: ScriptedPOP3, store: Store) -> AccountConfig:
    """The POP3 account ``alice`` at the scripted ``server`` (retention "keep"), recorded in ``store``."""
    account = pop3_account(server.host, server.port, "alice", "secret")
    await prepare(store, account)
    return account


def since(server: ScriptedPOP3, mark: int, verb: str) -> list[str]:
    """The commands to the scripted ``server`` starting with ``verb`` sent after the first ``mark`` ones."""
    return [c for c in server.commands[mark:] if c.startswith(verb)]
