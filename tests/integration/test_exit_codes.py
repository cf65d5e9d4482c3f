"""Exit codes scripts and monitoring rely on, against a running daemon (the table in
docs/operations.md): ``status`` 0/1/3, ``check`` 0-3 with one monitoring-plugin line, ``fetch-now``
skipping a paused account without failing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild, wait_for_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config


def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_state(
    cfg: Path, account: str, states: set[str], timeout_s: float = 60.0, *, succeeded: bool = False
) -> dict[str, object]:
    """Poll ``status --json`` until ``account`` is in one of ``states`` (and, with ``succeeded``, has
    had a successful cycle); return its record.

    ``waiting`` alone does not mean a cycle ran: a new account (at start and after a reload that
    changes it) is ``waiting`` until its first cycle takes a fetch slot. A test that needs the
    account's success waits with ``succeeded=True``.
    """
    return wait_for_account(
        cfg,
        account,
        lambda a: a["state"] in states and (not succeeded or a["last_success"] is not None),
        timeout_s,
    )


@pytest.mark.dovecot
def test_exit_codes_follow_the_accounts_health(dovecot: Dovecot, mail_user: MailUser) -> None:
    """status 1 and check WARNING/CRITICAL while an account fails, 0 for the healthy one alone; fetch-now
    skips the paused account and exits 0; with the daemon stopped status is 3 and check CRITICAL.

    Steps: a healthy POP3 account and one whose server refuses connections; wait for both cycles;
    status, status p, check; pause the failing one; fetch-now; stop; status, check.
    """
    directory = short_dir()
    down = AccountSpec(
        "down", "pop3", "x", "not-used", tls="none", extra={"host": "127.0.0.1", "port": closed_port()}
    )
    cfg = write_config(
        directory, dovecot, [AccountSpec("p", "pop3", mail_user.name, mail_user.password), down]
    )
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        wait_for_state(cfg, "p", {"waiting"}, succeeded=True)
        wait_for_state(cfg, "down", {"backoff"})

        for command in (["status", "nosuch"], ["pause", "nosuch"], ["fetch-now", "nosuch"]):
            unknown = maild_cli(cfg, *command)
            assert (unknown.returncode, unknown.stderr) == (2, "maild: no account named 'nosuch'\n"), command

        table = maild_cli(cfg, "status")
        assert table.returncode == 1, table.stderr
        summary, _blank, _header, first_row, *_ = table.stdout.splitlines()
        assert summary.startswith("2 accounts: 1 ok, 1 backoff; last fetch ")
        assert first_row.startswith("! down ")
        assert maild_cli(cfg, "status", "p").returncode == 0
        failed_only = maild_cli(cfg, "status", "--failed").stdout
        assert "! down " in failed_only and " p " not in failed_only.split("\n\n")[1]

        check = maild_cli(cfg, "check")
        assert check.returncode in (1, 2)  # 2 once the third cycle in a row has failed
        assert check.stdout.count("\n") == 1
        assert check.stdout.startswith(("MAILD WARNING - down backoff |", "MAILD CRITICAL - down backoff |"))
        assert "problems=1;1;;0" in check.stdout

        assert maild_cli(cfg, "pause", "down").returncode == 0
        fetched = maild_cli(cfg, "fetch-now")
        assert fetched.returncode == 0, fetched.stdout
        assert "down: skipped: paused" in fetched.stdout.splitlines()
        assert any(line.startswith("p: ") and "new message" in line for line in fetched.stdout.splitlines())
        queued = maild_cli(cfg, "fetch-now", "--no-wait")
        assert queued.stdout.splitlines() == [
            "queued: p",
            "skipped (paused, disabled or locked out; see `maild status`): down",
        ]
        assert stop_maild(proc) == 0

    not_running = maild_cli(cfg, "status")
    assert not_running.returncode == 3
    assert "not running" in not_running.stderr
    check = maild_cli(cfg, "check")
    assert (check.returncode, check.stdout.split(" - ")[0]) == (2, "MAILD CRITICAL")


def account_json(cfg: Path, name: str) -> dict[str, object]:
    """The account's record of ``status --json``."""
    done = maild_cli(cfg, "status", "--json")
    assert done.returncode in (0, 1), done.stderr
    return {a["name"]: a for a in json.loads(done.stdout)["accounts"]}[name]  # type: ignore[no-any-return]


@pytest.mark.dovecot
def test_history_survives_a_reload_and_a_restart(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Last success, the run of failures and its start, and the cycle counts come back after a reload
    that changes the account and after a restart, instead of starting from "never".

    Steps: a healthy and a failing account; wait for both cycles; change both accounts' poll interval
    and reload; compare; stop and start the daemon; compare again.
    """
    directory = short_dir()
    down = AccountSpec(
        "down", "pop3", "x", "not-used", tls="none", extra={"host": "127.0.0.1", "port": closed_port()}
    )
    specs = [AccountSpec("p", "pop3", mail_user.name, mail_user.password), down]
    cfg = write_config(directory, dovecot, specs)
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        # p's first cycle must have succeeded: "waiting" alone is also the state before it (the cause
        # of this test's flake: a reload during p's first cycle made a runtime without its success).
        wait_for_state(cfg, "p", {"waiting"}, succeeded=True)
        wait_for_state(cfg, "down", {"backoff"})
        before_p, before_down = account_json(cfg, "p"), account_json(cfg, "down")
        assert before_down["history"]["failing_since"] is not None  # type: ignore[index]

        for spec in specs:
            spec.extra["poll_interval"] = "2h"
        write_config(directory, dovecot, specs)
        assert "changed: down, p" in maild_cli(cfg, "reload").stdout
        reloaded_p, reloaded_down = account_json(cfg, "p"), account_json(cfg, "down")
        assert reloaded_p["last_success"] is not None
        assert reloaded_p["last_success"] >= before_p["last_success"]  # type: ignore[operator]
        history = reloaded_down["history"]
        assert history["failing_since"] == before_down["history"]["failing_since"]  # type: ignore[index]
        assert reloaded_down["last_error"] is not None
        assert stop_maild(proc) == 0

    with running_maild(maild_command(cfg), log=directory / "daemon2.log") as proc:
        wait_for_state(cfg, "down", {"backoff"})
        restarted_p, restarted_down = account_json(cfg, "p"), account_json(cfg, "down")
        assert restarted_down["history"]["failing_since"] == before_down["history"]["failing_since"]  # type: ignore[index]
        assert restarted_down["consecutive_failures"] > before_down["consecutive_failures"]  # type: ignore[operator]
        assert restarted_p["last_success"] is not None
        assert restarted_p["history"]["cycles_ok"] >= before_p["history"]["cycles_ok"]  # type: ignore[index]
        assert restarted_down["history"]["cycles_failed"] > before_down["history"]["cycles_failed"]  # type: ignore[index]
        assert stop_maild(proc) == 0
