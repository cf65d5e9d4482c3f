"""Two ``maild backup`` runs into one destination at once (session 13, defect 3): the timer's and one
by hand. Before, the second failed on the first one's ``.NAME.partial`` ("exists already") and then, in
its clean-up, deleted that partial copy (and its rollback journal) while the first was still writing
it; into a directory, both wrote and pruned at once. Now the second is refused at once with one line
(``maild.archive.backup.destination_lock``), exit 1, and writes and removes nothing; the first's backup
is complete and sound.

Two real processes are started together, each with a barrier inside its copy (its ``_snapshot`` waits
for a line on stdin before copying): whichever takes the destination first stops there, holding it,
so the other one meets it deterministically.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from maild.archive.backup import check_copy
from tests.support.archive import build_archive, letter, pop
from tests.support.daemonproc import end_process, wait_until

MESSAGES = 40

GATED_BACKUP = """
import sys
import maild.archive.backup as backup
from maild.cli.main import main

copy = backup._snapshot

def gated(source, target):
    print("ready", flush=True)
    sys.stdin.readline()
    copy(source, target)

backup._snapshot = gated
sys.exit(main(sys.argv[1:]))
"""


def start_backup(cfg: Path, *args: str) -> subprocess.Popen[str]:
    """``maild -c CFG backup ARGS`` in a process of its own whose copy waits at the barrier."""
    return subprocess.Popen(
        [sys.executable, "-c", GATED_BACKUP, "-c", str(cfg), "backup", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("shape", ["file", "directory --keep"])
async def test_a_second_backup_into_the_same_destination_is_refused_and_the_first_is_sound(
    tmp_path: Path, shape: str
) -> None:
    """Steps: an archive of 40 messages; two gated backups into one DEST (a file, or a directory with
    --compress --keep 1) start together; one exits 1 with one line "another maild backup is writing
    into DIR" and nothing on stdout, while the other waits at its barrier with its partial copy
    untouched; released, the first exits 0 and its backup passes the integrity check with the 40
    messages; nothing else is left in the directory."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "c.sock"}"\n'
    )
    await build_archive(
        tmp_path / "state" / "maild.sqlite3", [("anna-pop", pop(n), letter(n)) for n in range(MESSAGES)]
    )
    out = tmp_path / "backups"
    out.mkdir()
    if shape == "file":
        args = [str(out / "b.sqlite3")]
    else:
        (out / "maild-20000101T000000Z.sqlite3").write_bytes(b"an old backup")
        args = [str(out), "--compress", "--keep", "1"]
    both = [start_backup(cfg, *args), start_backup(cfg, *args)]  # started together
    try:
        wait_until(lambda: any(p.poll() is not None for p in both), "one of the two to be refused")
        (refused,) = [p for p in both if p.poll() is not None]
        (first,) = [p for p in both if p is not refused]
        stdout, stderr = refused.communicate()
        assert refused.returncode == 1, (stdout, stderr)
        assert stdout == ""
        assert stderr.splitlines() == [
            f"maild: another maild backup is writing into {out}; nothing written: run this one again"
            " when it has finished"
        ]
        assert first.stdout is not None and first.stdout.readline() == "ready\n"  # at its barrier
        partials = [p.name for p in out.iterdir() if p.name.endswith(".partial")]
        assert len(partials) == 1  # the first's copy in the making: not removed by the second
        stdout, stderr = first.communicate("go\n", timeout=120)
        assert first.returncode == 0, (stdout, stderr)
    finally:
        for process in both:
            end_process(process)
    (made,) = out.iterdir()  # the old one pruned; no partial, journal or lock file left
    assert made.name == "b.sqlite3" if shape == "file" else made.name.endswith(".sqlite3.gz")
    assert f"{made}: {MESSAGES} messages" in stdout
    if shape == "file":
        check = check_copy(made)
        assert check.messages == MESSAGES
    else:
        import gzip

        plain = tmp_path / "plain.sqlite3"
        plain.write_bytes(gzip.decompress(made.read_bytes()))
        assert check_copy(plain).messages == MESSAGES


def test_a_backup_after_one_that_was_killed_is_not_refused(tmp_path: Path) -> None:
    """A backup killed at its barrier (SIGKILL) leaves its partial copy but no lock: the next backup
    into the same file is not refused, removes the killed one's partial and writes a sound copy."""
    import asyncio

    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "c.sock"}"\n'
    )
    asyncio.run(
        build_archive(
            tmp_path / "state" / "maild.sqlite3", [("anna-pop", pop(n), letter(n)) for n in range(5)]
        )
    )
    dest = tmp_path / "b.sqlite3"
    killed = start_backup(cfg, str(dest))
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "ready\n"
        killed.kill()
        killed.communicate()  # reaped, its pipes closed
    finally:
        end_process(killed)
    assert (tmp_path / ".b.sqlite3.partial").exists()
    again = start_backup(cfg, str(dest))
    stdout, stderr = again.communicate("go\n", timeout=120)
    assert again.returncode == 0, (stdout, stderr)
    assert check_copy(dest).messages == 5
    assert not (tmp_path / ".b.sqlite3.partial").exists()


@pytest.mark.parametrize("compress", [False, True])
def test_a_backup_into_a_directory_after_one_that_was_killed_removes_its_partial(
    tmp_path: Path, compress: bool
) -> None:
    """QA of session 13: into a directory each run names its file by the time, so the killed run's
    ``.maild-TIME.sqlite3.partial`` (a whole archive's size) was never the next one's and stayed
    forever, unseen by ``--keep``. Steps: a backup into a directory killed at its barrier, its partial
    left; the next one (a later second) into the same directory, holding the lock, removes it: only
    its own backup is left."""
    import asyncio
    import time

    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ncontrol_socket = "{tmp_path / "c.sock"}"\n'
    )
    asyncio.run(
        build_archive(
            tmp_path / "state" / "maild.sqlite3", [("anna-pop", pop(n), letter(n)) for n in range(5)]
        )
    )
    out = tmp_path / "backups"
    out.mkdir()
    args = [str(out), *(["--compress"] if compress else [])]
    killed = start_backup(cfg, *args)
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "ready\n"
        killed.kill()
        killed.communicate()
    finally:
        end_process(killed)
    (left,) = out.iterdir()
    assert left.name.startswith(".maild-") and left.name.endswith(".partial")
    time.sleep(1.1)  # the next run's file name is of a later second (names have seconds)
    again = start_backup(cfg, *args)
    stdout, stderr = again.communicate("go\n", timeout=120)
    assert again.returncode == 0, (stdout, stderr)
    (made,) = out.iterdir()  # before the fix: the killed one's partial too
    assert made.name.startswith("maild-") and not made.name.startswith(".")
