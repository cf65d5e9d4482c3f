"""Robustness of the daemon and the CLI against operator mistakes (found by a break-it review)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.maildconf import short_dir


def maild(cfg: Path, *args: str, before: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``-c cfg`` before (default) or after the subcommand words."""
    argv = ["-c", str(cfg), *args] if before else [*args, "-c", str(cfg)]
    return subprocess.run(
        [sys.executable, "-m", "maild", *argv], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def daemon() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A running `maild run` with no accounts; yields (config path, process)."""
    directory = short_dir()
    cfg = directory / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{directory}/state"\ncontrol_socket = "{directory}/c.sock"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "maild", "-c", str(cfg), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while maild(cfg, "status").returncode != 0:
        assert time.monotonic() < deadline, "daemon did not come up"
        time.sleep(0.1)
    yield cfg, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_second_daemon_refuses_and_leaves_the_first_ones_socket(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """A second `maild run` on the same config exits 1 and the first daemon still answers on its socket."""
    cfg, first = daemon
    second = maild(cfg, "run")
    assert second.returncode == 1
    assert "another maild is listening" in second.stderr
    assert first.poll() is None
    assert maild(cfg, "status").returncode == 0, "the second daemon removed the first one's socket"


def status_despite_broken_config(cfg: Path, appended: str, complaint: str) -> None:
    """Append ``appended`` to ``cfg``: `maild status --json` names ``complaint`` on stderr and still
    gets the running daemon's answer (exit 0, no accounts)."""
    cfg.write_text(cfg.read_text() + appended)
    done = maild(cfg, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert complaint in done.stderr
    assert json.loads(done.stdout)["accounts"] == []


def test_client_commands_work_while_the_config_on_disk_is_broken(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """With an invalid config on disk, `status` warns about it but still asks the running daemon."""
    cfg, _proc = daemon
    status_despite_broken_config(cfg, "bogus = 1\n", "bogus")
    rejected = maild(cfg, "reload")
    assert rejected.returncode == 1
    assert "bogus" in rejected.stderr


def test_reload_of_a_broken_config_names_each_problem_once_on_its_own_line(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """`maild reload` with two problems in the file: exit 1, each problem once, every stderr line a
    `maild: ` line, and the daemon runs on (QA of session 15: each problem was printed twice, first
    as a warning of the client, then in the daemon's reply, whose second problem had no `maild:`)."""
    cfg, proc = daemon
    cfg.write_text(cfg.read_text() + "bogus_one = 1\n[alerts]\nbogus_two = 2\n")  # two problems
    rejected = maild(cfg, "reload")
    assert rejected.returncode == 1
    lines = rejected.stderr.splitlines()
    assert all(line.startswith("maild: ") for line in lines), lines
    assert sum("bogus_one" in line for line in lines) == 1, lines
    assert sum("bogus_two" in line for line in lines) == 1, lines
    assert "nothing changed" in rejected.stderr
    proc.send_signal(signal.SIGHUP)  # systemctl reload: the same refusal, and the daemon stays up
    assert maild(cfg, "status", "--json").returncode == 0
    assert proc.poll() is None


def test_client_commands_find_the_daemon_when_the_config_is_not_even_toml(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """A TOML syntax error (a missing quote) still leaves `status` asking the daemon on its configured socket."""
    cfg, _proc = daemon
    status_despite_broken_config(cfg, '[accounts.broken]\nhost = "unterminated\n', "not valid TOML")


def test_malformed_control_requests_get_errors_and_the_daemon_stays_healthy(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """Deeply nested JSON and a non-string account get JSON errors; the daemon answers status afterwards."""
    cfg, _proc = daemon
    sock_path = cfg.parent / "c.sock"
    for payload, code in (
        (b"[" * 30000 + b"\n", "bad-json"),
        (b'{"command":"fetch-now","account":{"a":1}}\n', "bad-request"),
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(sock_path))
            sock.sendall(payload)
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
    assert maild(cfg, "status").returncode == 0


def test_config_option_after_nested_subcommands(tmp_path: Path) -> None:
    """`-c` is accepted after nested subcommands such as `messages list` and `accounts list`."""
    directory = short_dir()
    cfg = directory / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{directory}/state"\ncontrol_socket = "{directory}/c.sock"\n')
    for words in (("messages", "list"), ("accounts", "list")):
        done = maild(cfg, *words, before=False)
        assert "unrecognized arguments" not in done.stderr, done.stderr


def test_messages_list_of_unknown_account_is_an_error(tmp_path: Path) -> None:
    """`messages list --account NOSUCH` says the account is unknown and exits 1 instead of printing nothing."""
    import asyncio
    from datetime import UTC, datetime

    from maild.archive.store import Store

    directory = short_dir()

    async def create() -> None:
        store = await Store.open(directory / "state" / "maild.sqlite3")
        await store.ensure_account("anna", "O", "E", "pop3", datetime.now(UTC))
        await store.close()

    asyncio.run(create())
    cfg = directory / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{directory}/state"\ncontrol_socket = "{directory}/c.sock"\n')
    done = maild(cfg, "messages", "list", "--account", "nosuch")
    assert done.returncode == 1
    assert "nosuch" in done.stderr
    assert maild(cfg, "messages", "list", "--account", "anna").returncode == 0


def test_a_second_fetcher_on_the_same_archive_is_refused_until_the_first_one_dies(
    daemon: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    """Another configuration naming the same state directory (its own control socket) and a one-shot
    `maild fetch` beside the daemon are refused with one line naming the lock and the holder; a
    SIGKILLed daemon leaves no stale lock behind."""
    cfg, first = daemon
    other = cfg.with_name("other.toml")
    state = cfg.parent / "state"
    other.write_text(f'[daemon]\nstate_dir = "{state}"\ncontrol_socket = "{cfg.parent}/other.sock"\n')
    for argv in ((other, "run"), (other, "fetch"), (cfg, "fetch")):
        refused = maild(*argv)
        assert refused.returncode == 1, refused
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert "another maild" in lines[0] and f"held by PID {first.pid}" in lines[0], lines[0]
        assert "maild.sqlite3.lock" in lines[0]
    assert first.poll() is None
    assert maild(cfg, "status").returncode == 0, "the refused daemon disturbed the first one"
    first.kill()
    first.wait(timeout=15)
    after = maild(other, "fetch")
    assert after.returncode == 0, after.stderr
    assert "another maild" not in after.stderr
