"""Delivery into a local Maildir: the format, Maildir++ folders, the config key, and the durability rule.

Crash scenarios are simulated deterministically here: the delivery or its record fails right after a
store commit, and the next cycle must catch up without writing any message twice.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maild.archive import maildir
from maild.archive.maildir import deliver, folder_name, sha256_of_name
from maild.archive.store import Store
from maild.config.loader import load_config
from maild.errors import ConfigError, DeliveryError, StoreError
from maild.fetch.cycle import fetch_cycle
from maild.model import IMAPKey, POP3Key
from tests.support.accounts import imap_account, pop3_account
from tests.support.fetching import prepare
from tests.unit.fakes import FakeServer, make_message

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NAME_RE = re.compile(r"\d+\.M\d+P\d+Q\d+H([0-9a-f]{64})\.[^/:,]+,S=(\d+)")

ODD_MESSAGES = [
    b"Subject: plain\r\n\r\nbody\r\n",
    b"Subject: Gr\xfc\xdfe\r\n\r\n\x00\xff binary\r\nFrom the start of a line\r\n.\r\n",
    b"Subject: bare LF\n\nline one\nline two\n",
    b"Subject: no final newline\r\n\r\nlast line",
]


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def clock() -> datetime:
    return T0


def files_in(root: Path, folder: str = "") -> list[Path]:
    """Every message file in ``new/`` and ``cur/`` of a folder."""
    directory = root / folder if folder else root
    return sorted(
        p for sub in ("new", "cur") if (directory / sub).is_dir() for p in (directory / sub).iterdir()
    )


async def delivery_rows(store: Store, account: str) -> list[tuple[int, str]]:
    async with store._conn.execute(
        "SELECT message, path FROM deliveries WHERE account = ? ORDER BY message", (account,)
    ) as cur:
        return [(r[0], r[1]) for r in await cur.fetchall()]


# -- folder names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mailbox", "folder"),
    [
        (None, ""),
        ("INBOX", ""),
        ("inbox", ""),
        ("Archiv", ".Archiv"),
        ("Archiv/2026", ".Archiv.2026"),
        ("Rechnungen 2.0", ".Rechnungen 2\\2e0"),
        ("Entwürfe", ".Entw&APw-rfe"),
        ("A&B", ".A&-B"),
        ("back\\slash", ".back\\5cslash"),
        ("..", ".\\2e\\2e"),
        ("/", ".\\2f"),
        ("a//b", ".a\\2f\\2fb"),
    ],
)
def test_mailbox_maps_to_maildirplusplus_folder(mailbox: str | None, folder: str) -> None:
    """IMAP mailboxes map to Maildir++ folder names with the documented encoding; INBOX is the top level."""
    assert folder_name(mailbox) == folder


@pytest.mark.parametrize("mailbox", ["..", ".", "../x", "a/../b", "/", "x/.", "./..", "\\2e", "a.b/c.d"])
def test_no_mailbox_name_escapes_the_maildir(mailbox: str) -> None:
    """A folder name never contains "/" and is never "." or "..", whatever the mailbox is called."""
    folder = folder_name(mailbox)
    assert "/" not in folder
    assert folder.startswith(".")
    assert folder not in (".", "..")
    assert folder.count(".") == mailbox.count("/") + 1 or "\\2f" in folder


def test_distinct_mailboxes_get_distinct_folders() -> None:
    """Names that differ only in "." versus "/" or in escapes stay apart."""
    names = ["a.b", "a/b", "a\\2eb", "a\\b", "A/b"]
    assert len({folder_name(n) for n in names}) == len(names)


# -- the Maildir format -------------------------------------------------------------------------------


def test_delivered_messages_read_back_byte_identical(tmp_path: Path) -> None:
    """Python's mailbox.Maildir reads every delivered message back with exactly the archived octets."""
    root = tmp_path / "anna"
    deliver(root, "", [(sha(r), r) for r in ODD_MESSAGES])
    deliver(root, folder_name("Archiv/2026"), [(sha(ODD_MESSAGES[0]), ODD_MESSAGES[0])])

    box = mailbox.Maildir(root, factory=None, create=False)
    assert sorted(box.get_bytes(k) for k in box.iterkeys()) == sorted(ODD_MESSAGES)
    assert box.list_folders() == ["Archiv.2026"]
    sub = box.get_folder("Archiv.2026")
    assert [sub.get_bytes(k) for k in sub.iterkeys()] == [ODD_MESSAGES[0]]
    assert (root / ".Archiv.2026" / "maildirfolder").is_file()


def test_file_names_follow_the_maildir_spec(tmp_path: Path) -> None:
    """Files land in new/ (tmp/ left empty) named time.MusecPpidQn with the SHA-256, host and S=size."""
    results = deliver(tmp_path, "", [(sha(r), r) for r in ODD_MESSAGES])
    assert not list((tmp_path / "tmp").iterdir())
    names = [r.path.name for r in results]
    assert len(set(names)) == len(names)
    for raw, result in zip(ODD_MESSAGES, results, strict=True):
        assert result.written
        assert result.path.parent == tmp_path / "new"
        match = NAME_RE.fullmatch(result.path.name)
        assert match, result.path.name
        assert match.group(1) == sha(raw) == sha256_of_name(result.path.name)
        assert int(match.group(2)) == len(raw) == result.path.stat().st_size
        assert str(os.getpid()) in result.path.name


def test_message_already_in_cur_is_not_written_again(tmp_path: Path) -> None:
    """A file a mail program moved to cur/ with flags still counts: the same SHA-256 is not written twice."""
    raw = ODD_MESSAGES[1]
    [first] = deliver(tmp_path, "", [(sha(raw), raw)])
    seen = tmp_path / "cur" / (first.path.name + ":2,S")
    first.path.rename(seen)

    [again] = deliver(tmp_path, "", [(sha(raw), raw)])

    assert not again.written
    assert again.path == seen
    assert files_in(tmp_path) == [seen]


def test_failed_write_leaves_no_file_in_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When writing a message fails, neither tmp/ nor new/ keeps a file of it."""
    deliver(tmp_path, "", [])  # the directories exist; only the message write fails

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        deliver(tmp_path, "", [(sha(ODD_MESSAGES[0]), ODD_MESSAGES[0])])
    assert not list((tmp_path / "tmp").iterdir())
    assert not list((tmp_path / "new").iterdir())


# -- configuration --------------------------------------------------------------------------------


def write_config(
    tmp_path: Path, value: str, employee: str = "Anna Beispiel", organisation: str = "Kanzlei"
) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""[accounts.anna-pop]
organisation = {organisation!r}
employee = {employee!r}
protocol = "pop3"
host = "127.0.0.1"
tls = "none"
username = "anna"
password = "pw"
deliver_maildir = {value!r}
""",
        encoding="utf-8",
    )
    return cfg


def test_deliver_maildir_template_is_expanded(tmp_path: Path) -> None:
    """{organisation}, {employee} and {account} are filled in; a relative path is relative to the file."""
    cfg = load_config(write_config(tmp_path, "mail/{organisation}/{employee}/{account}"))
    assert (
        cfg.accounts["anna-pop"].deliver_maildir
        == tmp_path / "mail" / "Kanzlei" / "Anna Beispiel" / "anna-pop"
    )


def test_deliver_maildir_values_cannot_add_or_climb_directories(tmp_path: Path) -> None:
    """Values with "/" or ".." stay one path component below the template's directory."""
    cfg = load_config(write_config(tmp_path, "/srv/mail/{organisation}/{employee}", "../../etc", ".."))
    path = cfg.accounts["anna-pop"].deliver_maildir
    assert path is not None
    assert path.parent.parent == Path("/srv/mail")
    assert ".." not in path.parts
    assert "." not in path.parts


def test_deliver_maildir_rejects_unknown_placeholder(tmp_path: Path) -> None:
    """An unknown placeholder is a ConfigError naming the dotted key."""
    with pytest.raises(
        ConfigError, match=r"accounts\.anna-pop\.deliver_maildir: unknown placeholder \{user\}"
    ):
        load_config(write_config(tmp_path, "/srv/mail/{user}"))


def test_account_without_deliver_maildir_has_none(tmp_path: Path) -> None:
    """deliver_maildir is optional."""
    assert pop3_account().deliver_maildir is None


# -- the fetch cycle and the durability rule ------------------------------------------------------------


async def test_cycle_delivers_each_new_message_once(store: Store, tmp_path: Path) -> None:
    """A cycle writes each new message to the Maildir and records it; the next cycle writes nothing."""
    root = tmp_path / "anna"
    account = await prepare(store, pop3_account(deliver_maildir=root))
    server = FakeServer.with_pop3(5)

    first = await fetch_cycle(account, store, server.session(), clock=clock, batch_messages=2)
    second = await fetch_cycle(account, store, server.session(), clock=clock)

    assert first.delivered == 5
    assert second.delivered == 0
    box = mailbox.Maildir(root, factory=None, create=False)
    assert sorted(box.get_bytes(k) for k in box.iterkeys()) == sorted(make_message(n) for n in range(1, 6))
    rows = await delivery_rows(store, account.name)
    assert len(rows) == 5
    assert {Path(p) for _m, p in rows} == set(files_in(root))


async def test_imap_mailboxes_are_delivered_to_subfolders(store: Store, tmp_path: Path) -> None:
    """INBOX goes to the top level and Archiv/2026 to .Archiv.2026; a message in both is delivered once."""
    root = tmp_path / "anna"
    account = await prepare(
        store,
        imap_account(mailboxes=("INBOX", "Archiv/2026"), deliver_maildir=root),
    )
    server = FakeServer(
        [
            (IMAPKey("INBOX", 7, 1), make_message(1)),
            (IMAPKey("Archiv/2026", 9, 1), make_message(2)),
            (IMAPKey("Archiv/2026", 9, 2), make_message(1)),
        ]
    )

    await fetch_cycle(account, store, server.session(), clock=clock)

    box = mailbox.Maildir(root, factory=None, create=False)
    assert [box.get_bytes(k) for k in box.iterkeys()] == [make_message(1)]
    archiv = box.get_folder("Archiv.2026")
    assert [archiv.get_bytes(k) for k in archiv.iterkeys()] == [make_message(2)]


async def test_delivery_failure_after_commit_blocks_deletion_then_catches_up_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If delivery fails after the store commit, nothing is deleted on the server; the next cycle delivers each
    message exactly once and only then deletes.

    Steps: retention "delete"; the Maildir write raises after each commit; the cycle archives everything, then
    raises DeliveryError and the server keeps all messages; restore the write; the next cycle catches up (one
    file per message) and deletes on the server.
    """
    root = tmp_path / "anna"
    account = await prepare(store, pop3_account(retention="delete", deliver_maildir=root))
    server = FakeServer.with_pop3(4)
    real = maildir._write_new

    def crash(directory: Path, digest: str, raw: bytes) -> Path:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(maildir, "_write_new", crash)
    with pytest.raises(DeliveryError, match=r"anna-pop.*Input/output error"):
        await fetch_cycle(account, store, server.session(), clock=clock, batch_messages=2)
    assert len(server.messages) == 4
    assert await store.totals() == (4, sum(len(make_message(n)) for n in range(1, 5)))
    assert files_in(root) == []
    assert await delivery_rows(store, account.name) == []

    monkeypatch.setattr(maildir, "_write_new", real)
    result = await fetch_cycle(account, store, server.session(), clock=clock)

    assert result.delivered == 4
    assert result.deleted == 4
    assert server.messages == {}
    assert sorted(p.read_bytes() for p in files_in(root)) == sorted(make_message(n) for n in range(1, 5))


async def test_files_written_but_not_recorded_are_not_written_twice(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the files are durable but before their delivery rows commit leaves one file per message.

    Steps: record_deliveries raises (the crash); the files exist without rows; the next cycle's catch-up finds
    them by SHA-256, records them, and writes nothing new.
    """
    root = tmp_path / "anna"
    account = await prepare(store, pop3_account(deliver_maildir=root))
    server = FakeServer.with_pop3(3)
    real = Store.record_deliveries

    async def crash(self: Store, *args: Any, **kwargs: Any) -> None:
        raise StoreError("simulated crash before the delivery rows commit")

    monkeypatch.setattr(Store, "record_deliveries", crash)
    with pytest.raises(StoreError):
        await fetch_cycle(account, store, server.session(), clock=clock)
    written = files_in(root)
    assert len(written) == 3
    assert await delivery_rows(store, account.name) == []

    monkeypatch.setattr(Store, "record_deliveries", real)
    result = await fetch_cycle(account, store, server.session(), clock=clock)

    assert result.delivered == 3
    assert files_in(root) == written
    assert {Path(p) for _m, p in await delivery_rows(store, account.name)} == set(written)


async def test_deleted_files_are_not_delivered_again(store: Store, tmp_path: Path) -> None:
    """When the office deletes delivered files, maild does not write them again; new mail still arrives."""
    root = tmp_path / "anna"
    account = await prepare(store, pop3_account(deliver_maildir=root))
    server = FakeServer.with_pop3(2)
    await fetch_cycle(account, store, server.session(), clock=clock)
    for path in files_in(root):
        path.unlink()
    server.add(POP3Key("uidl-3"), make_message(3))

    result = await fetch_cycle(account, store, server.session(), clock=clock)

    assert result.delivered == 1
    assert [p.read_bytes() for p in files_in(root)] == [make_message(3)]


async def test_deletion_requires_delivery_row(store: Store, tmp_path: Path) -> None:
    """Store.archived with require_delivery accepts only keys whose message has a delivery row."""
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(2)
    await fetch_cycle(account, store, server.session(), clock=clock)
    keys = [POP3Key("uidl-1"), POP3Key("uidl-2")]
    locations = await store.locations(account.name)

    assert await store.archived(account.name, keys) == set(keys)
    assert await store.archived(account.name, keys, require_delivery=True) == set()
    await store.record_deliveries(account.name, [(locations[keys[0]].message, "/x")], T0)
    assert await store.archived(account.name, keys, require_delivery=True) == {keys[0]}


async def test_unwritable_maildir_does_not_stop_archiving(store: Store, tmp_path: Path) -> None:
    """With a Maildir that cannot be created, the cycle still archives everything, then raises DeliveryError."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    account = await prepare(store, pop3_account(deliver_maildir=blocker / "anna"))
    server = FakeServer.with_pop3(3)

    with pytest.raises(DeliveryError, match="cannot deliver to Maildir"):
        await fetch_cycle(account, store, server.session(), clock=clock)

    assert (await store.totals())[0] == 3
    assert len(await store.undelivered(account.name)) == 3
