"""maild backup and restore: consistent copies of a live archive, integrity checks, restore only when stopped."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from maild.archive.backup import backup, check_copy
from maild.cli.main import main
from maild.errors import StoreError
from tests.support.archive import T0, build_archive, letter, pop


def _config(tmp_path: Path) -> tuple[Path, Path]:
    """A configuration without accounts: (config file, its archive path)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "control.sock"}"\n'
    )
    return cfg, tmp_path / "state" / "maild.sqlite3"


def _count(db: Path, sql: str = "SELECT count(*) FROM messages") -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_backups_of_an_archive_being_written_are_consistent_snapshots(tmp_path: Path) -> None:
    """Backups taken while another process commits pass the integrity check and hold whole transactions.

    Steps: start the writer subprocess (one message per transaction: message row, location row and
    index row together); take five backups while it writes; in each copy every message has its
    location and its index row, and the copy is not in WAL mode (one self-contained file).
    """
    db = tmp_path / "maild.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.support.archive_writer", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    copies: list[Path] = []
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            if line.startswith("stored ") and int(line.split()[1]) >= 5 * (len(copies) + 1):
                path, check = backup(db, tmp_path / f"copy{len(copies)}.sqlite3", compress=False, now=T0)
                assert check.messages >= 5 * (len(copies) + 1)
                copies.append(path)
                if len(copies) == 5:
                    break
    finally:
        (tmp_path / "maild.sqlite3.stop").touch()
        writer.wait(timeout=60)
        for pipe in (writer.stdout, writer.stderr):
            if pipe is not None:
                pipe.close()
    for copy in copies:
        messages = _count(copy)
        assert _count(copy, "SELECT count(DISTINCT message) FROM locations") == messages
        assert _count(copy, "SELECT count(*) FROM messages_fts") == messages
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600


async def test_compressed_backup_into_a_directory_with_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild backup DIR --compress --keep 1` writes maild-TIME.sqlite3.gz, reports it checked, prunes older ones."""
    cfg, db = _config(tmp_path)
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 4)])
    out = tmp_path / "backups"
    out.mkdir()
    (out / "maild-20000101T000000Z.sqlite3").write_bytes(b"old")

    assert main(["-c", str(cfg), "backup", str(out), "--compress", "--keep", "1"]) == 0
    printed = capsys.readouterr().out
    (made,) = out.iterdir()
    assert made.name.startswith("maild-") and made.name.endswith(".sqlite3.gz")
    assert "3 messages, schema version" in printed and "integrity ok" in printed
    assert "deleted old backup" in printed
    assert gzip.decompress(made.read_bytes())[:16] == b"SQLite format 3\x00"


async def test_backup_never_overwrites(tmp_path: Path) -> None:
    """An existing DEST file is refused, untouched."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    dest = tmp_path / "b.sqlite3"
    dest.write_bytes(b"precious")

    with pytest.raises(FileExistsError):
        backup(db, dest, compress=False, now=T0)
    assert dest.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b.sqlite3",
        "maild.sqlite3",
        "maild.sqlite3-shm",
        "maild.sqlite3-wal",
    ]


def test_restore_puts_a_backup_back_and_keeps_the_previous_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restore of a .gz backup: the archive holds the backup's messages, the old one is kept, readers work."""
    cfg, db = _config(tmp_path)
    asyncio.run(build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 4)]))
    assert main(["-c", str(cfg), "backup", str(tmp_path / "b.sqlite3.gz")]) == 0
    asyncio.run(build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(4, 9)]))
    assert _count(db) == 8

    assert main(["-c", str(cfg), "restore", str(tmp_path / "b.sqlite3.gz")]) == 0

    assert _count(db) == 3
    kept = [
        p
        for p in db.parent.iterdir()
        if ".before-restore-" in p.name and not p.name.endswith(("-wal", "-shm"))
    ]
    assert len(kept) == 1 and _count(kept[0]) == 8
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode) == 0o640
    assert "restored" in capsys.readouterr().out
    assert main(["messages", "list", "--database", str(db)]) == 0


async def test_restore_refuses_a_damaged_backup_and_changes_nothing(tmp_path: Path) -> None:
    """A backup that fails the check is refused in one line; the archive is untouched."""
    cfg, db = _config(tmp_path)
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    good = tmp_path / "b.sqlite3"
    backup(db, good, compress=False, now=T0)
    damaged = tmp_path / "damaged.sqlite3"
    data = bytearray(good.read_bytes())
    # a whole page's worth (32 KiB pages): a page header is hit wherever the middle falls
    data[len(data) // 2 : len(data) // 2 + 32768] = b"\xff" * 32768
    damaged.write_bytes(bytes(data))
    not_sqlite = tmp_path / "text.sqlite3"
    not_sqlite.write_text("hello")

    for bad in (damaged, not_sqlite):
        with pytest.raises(StoreError):
            check_copy(bad)
        assert main(["-c", str(cfg), "restore", str(bad)]) == 1
    assert _count(db) == 1
    assert not [p for p in db.parent.iterdir() if "restore" in p.name]


async def test_restore_refuses_while_the_daemon_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With something listening on the control socket, restore refuses and says to stop the daemon."""
    cfg, db = _config(tmp_path)
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    backup(db, tmp_path / "b.sqlite3", compress=False, now=T0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "control.sock"))
        listener.listen(1)
        assert main(["-c", str(cfg), "restore", str(tmp_path / "b.sqlite3")]) == 1
    assert "stop it first" in capsys.readouterr().err


async def test_backup_into_a_missing_directory_is_one_line_naming_dest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DEST in a directory that does not exist: one line naming DEST and the reason, exit 1 (before
    session 10: the raw errno text naming a temporary file the admin never named)."""
    cfg, db = _config(tmp_path)
    await build_archive(db, [("anna-pop", pop(1), letter(1))])
    dest = tmp_path / "missing" / "b.sqlite3"

    assert main(["-c", str(cfg), "backup", str(dest)]) == 1

    err = capsys.readouterr().err
    assert err == f"maild: cannot write a backup to {dest}: No such file or directory\n"
    assert not (tmp_path / "missing").exists()


FULL_BACKUP = """
import json, os, subprocess, sys
dest, cfg = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dest], check=True)
done = subprocess.run(
    [sys.executable, "-m", "maild", "-c", cfg, "backup", os.path.join(dest, "b.sqlite3")],
    capture_output=True, text=True,
)
print(json.dumps({"rc": done.returncode, "err": done.stderr, "left": sorted(os.listdir(dest))}))
"""
"""Run in :data:`~tests.support.namespaces.UNSHARE` as ``python -c FULL_BACKUP DEST CONFIG``: a 1 MiB tmpfs
on DEST, then ``maild backup DEST/b.sqlite3``; prints its exit code, stderr and what DEST holds, as JSON."""


async def test_a_backup_that_runs_out_of_room_leaves_no_file_behind(tmp_path: Path) -> None:
    """A backup onto a full file system (a 1 MiB tmpfs in a user and mount namespace, the archive 22 MB)
    fails with one line and leaves nothing there: not the partial copy, and not SQLite's rollback journal
    of it (``.b.sqlite3.partial-journal`` was left; QA of session 11)."""
    from tests.support.namespaces import UNSHARE, namespace_state_dir

    directory, dest = namespace_state_dir()
    try:
        cfg, db = _config(tmp_path)
        # 22 MB: smaller copies fail before SQLite's journal is left behind
        rows = [("anna-pop", pop(n), letter(n) + os.urandom(20_000).hex().encode()) for n in range(450)]
        await build_archive(db, rows)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run(
            [*UNSHARE, sys.executable, "-c", FULL_BACKUP, str(dest), str(cfg)],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        result = json.loads(done.stdout)
        assert result["rc"] == 1, result
        assert result["err"].startswith("maild: ") and len(result["err"].strip().splitlines()) == 1, result
        assert result["left"] == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_message_whose_octets_changed_on_disk_fails_the_backup_and_prunes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bit of a message's octets flipped in the archive (its recorded SHA-256 unchanged): SQLite's
    integrity check passes, and before (QA of session 14) so did the backup, whose ``--keep 1`` then
    deleted the older backup that still held the message as it arrived. Now the backup is written,
    nothing is pruned, and it exits 1 with one line naming the message."""
    cfg, db = _config(tmp_path)
    await build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 4)])
    with sqlite3.connect(db) as conn:
        digest, raw = conn.execute("SELECT sha256, raw FROM messages WHERE id = 2").fetchone()
        flipped = bytes([raw[0] ^ 1]) + raw[1:]
        conn.execute("UPDATE messages SET raw = ? WHERE id = 2", (flipped,))
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    out = tmp_path / "backups"
    out.mkdir()
    older = out / "maild-20000101T000000Z.sqlite3"
    older.write_bytes(b"older")

    assert main(["-c", str(cfg), "backup", str(out), "--keep", "1"]) == 1

    printed, err = capsys.readouterr()
    assert older.exists()
    assert "deleted old backup" not in printed
    (line,) = err.strip().splitlines()
    assert line.startswith("maild: 1 archived message no longer matches its SHA-256")
    assert digest[:12] in line
    (made,) = [p for p in out.iterdir() if p != older]
    assert check_copy(made).damaged == (digest,)


async def test_an_intact_archive_and_a_zero_octet_message_count_as_undamaged(tmp_path: Path) -> None:
    """The content check hashes every message as stored: none differs in a sound archive, the 0-octet
    message included (SQLite hands back its empty blob as b'')."""
    db = tmp_path / "maild.sqlite3"
    await build_archive(db, [("anna-pop", pop(1), letter(1)), ("anna-pop", pop(2), b"")])

    check = check_copy(db)

    assert (check.messages, check.damaged, check.damaged_count) == (2, (), 0)


def test_restore_of_a_backup_with_a_damaged_message_warns_in_one_line_and_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup holds a message whose octets no longer match its SHA-256: restore goes on (the
    archive it replaces is kept) and says so in one line naming the message."""
    cfg, db = _config(tmp_path)
    asyncio.run(build_archive(db, [("anna-pop", pop(n), letter(n)) for n in range(1, 4)]))
    with sqlite3.connect(db) as conn:
        digest, raw = conn.execute("SELECT sha256, raw FROM messages WHERE id = 1").fetchone()
        conn.execute("UPDATE messages SET raw = ? WHERE id = 1", (bytes([raw[0] ^ 1]) + raw[1:],))
    conn.close()
    assert main(["-c", str(cfg), "backup", str(tmp_path / "b.sqlite3")]) == 1
    capsys.readouterr()

    assert main(["-c", str(cfg), "restore", str(tmp_path / "b.sqlite3")]) == 0

    out, err = capsys.readouterr()
    assert "restored" in out
    (line,) = [x for x in err.splitlines() if x.startswith("maild: warning:")]
    assert "1 archived message no longer matches its SHA-256" in line and digest[:12] in line
    assert _count(db) == 3


@pytest.mark.parametrize("compress", [[], ["--compress"]])
def test_backup_of_a_newer_archive_names_the_archive_and_leaves_nothing(
    tmp_path: Path, compress: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive of a newer schema (a newer maild wrote it): exit 1, one line naming the archive and
    the reason (both versions), never a ``.partial`` file's name; no file made in DEST, the archive
    byte for byte as it was (session 15: the line named the partial copy)."""
    from maild.archive.schema import SCHEMA_VERSION

    cfg, db = _config(tmp_path)
    asyncio.run(build_archive(db, [("anna-pop", pop(1), letter(1))]))
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    octets = db.read_bytes()
    dest = tmp_path / "backups"
    dest.mkdir()
    made: list[str] = []
    real_open = os.open

    def watching_open(path: object, *args: object, **kwargs: object) -> int:
        made.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", watching_open)
        assert main(["-c", str(cfg), "backup", str(dest), *compress]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"maild: archive {db} has schema version {SCHEMA_VERSION + 1}, newer than this maild"
        f" ({SCHEMA_VERSION}); upgrade maild\n"
    )
    assert not [name for name in made if "partial" in name]
    assert list(dest.iterdir()) == []
    assert db.read_bytes() == octets
