"""What the log looks like where it lands (:mod:`maild.log`): syslog priorities for the journal read
back from the real output, logfmt and JSON, third-party loggers capped, logs on stderr only, and the
exit code of ``maild run`` with a broken configuration."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from maild.log import configure_logging, stream_is_journal, syslog_priority
from tests.support.terminal import run_on_terminal

PRIORITY_LINE = re.compile(r"^<(\d)>(.*)$")


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, *, log_format: str | None = None) -> Path:
    """A config with one POP3 account on a loopback port where nothing listens."""
    fmt = f'log_format = "{log_format}"\n' if log_format else ""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "state"\ncontrol_socket = "ctl.sock"\n{fmt}\n'
        "[accounts.anna-pop]\n"
        'organisation = "Kanzlei"\nemployee = "Anna"\nprotocol = "pop3"\nhost = "127.0.0.1"\n'
        f'port = {closed_port()}\ntls = "none"\nusername = "anna"\npassword = "geheim-Passwort-42"\n'
    )
    cfg.chmod(0o600)
    return cfg


def run_maild(*args: str, stderr_file: Path, journal: bool) -> subprocess.CompletedProcess[str]:
    """Run ``python -m maild ARGS`` with stderr in ``stderr_file``; ``$JOURNAL_STREAM`` names that file
    when ``journal`` (as systemd names its journal socket), so the child believes it is the journal."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with stderr_file.open("w") as err:
        if journal:
            st = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        return subprocess.run(
            [sys.executable, "-m", "maild", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )


def test_journal_lines_carry_syslog_priorities_in_logfmt(tmp_path: Path) -> None:
    """With stderr as the journal, every line of a failing ``maild fetch`` starts with ``<N>``; the refused
    connection is ``<4>`` (warning), debug lines ``<7>``; the rest is logfmt without a timestamp.

    Steps: run ``maild fetch --log-level debug`` against a closed port with ``$JOURNAL_STREAM`` naming
    the stderr file; read the file as journald would (priority prefix, then MESSAGE).
    """
    cfg = write_config(tmp_path)
    errors = tmp_path / "stderr"

    done = run_maild("-c", str(cfg), "--log-level", "debug", "fetch", stderr_file=errors, journal=True)

    assert done.returncode == 1
    assert done.stdout.startswith("anna-pop: FAILED")
    entries = [PRIORITY_LINE.match(line) for line in errors.read_text().splitlines()]
    assert entries and all(entries), errors.read_text()
    parsed = [(int(m.group(1)), m.group(2)) for m in entries if m]
    failed = [(p, text) for p, text in parsed if "event=fetch.failed" in text]
    assert failed and failed[0][0] == 4
    assert failed[0][1].startswith("level=warning event=fetch.failed")
    assert all(p == 7 for p, text in parsed if text.startswith("level=debug"))
    assert not any("timestamp=" in text for _p, text in parsed)
    assert "geheim-Passwort-42" not in errors.read_text() + done.stdout


def test_cli_logs_go_to_stderr_and_stdout_keeps_only_results(tmp_path: Path) -> None:
    """``maild fetch --log-level debug`` outside the journal: stdout holds only the result line, every
    log line is JSON on stderr (not a terminal)."""
    cfg = write_config(tmp_path)
    errors = tmp_path / "stderr"

    done = run_maild("-c", str(cfg), "--log-level", "debug", "fetch", stderr_file=errors, journal=False)

    assert done.returncode == 1
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["anna-pop"]
    events = [json.loads(line) for line in errors.read_text().splitlines()]
    assert "fetch.failed" in {e["event"] for e in events}


def run_maild_on_terminal(*args: str) -> tuple[int, str]:
    """Run ``python -m maild ARGS`` with stdout and stderr on one pseudo-terminal, as a person at a
    shell sees it; its exit code and everything it wrote there."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    code, seen = run_on_terminal(*args, stderr_too=True, env=env)
    return code, seen.decode("utf-8", "replace")


def test_a_failed_account_is_said_once_on_a_terminal(tmp_path: Path) -> None:
    """``maild fetch`` on a terminal (stdout and stderr): a failed account shows its ``FAILED`` result
    line and no ``fetch.failed`` warning beside it; with ``--log-level info`` that line is there, at
    info. (With stderr in a file or the journal the warning stays: the tests above.)"""
    cfg = write_config(tmp_path)

    code, seen = run_maild_on_terminal("-c", str(cfg), "fetch")

    assert code == 1
    assert seen.count("FAILED") == 1, seen
    assert "fetch.failed" not in seen
    code, seen = run_maild_on_terminal("-c", str(cfg), "--log-level", "info", "fetch")
    assert code == 1
    assert "fetch.failed" in seen and "info" in seen.split("fetch.failed")[0].splitlines()[-1], seen
    assert "geheim-Passwort-42" not in seen


@pytest.mark.parametrize(
    ("levelno", "priority"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2)],
)
def test_syslog_priority_of_each_level(levelno: int, priority: int) -> None:
    """Python levels map to RFC 5424 severities: debug 7, info 6, warning 4, error 3, critical 2."""
    assert syslog_priority(levelno) == priority


def test_json_after_prefix_and_capped_libraries(tmp_path: Path) -> None:
    """JSON in the journal keeps ``<N>``; aiosqlite/asyncio/aioimaplib records below WARNING never appear,
    even when their loggers are lowered to DEBUG afterwards; their warnings do."""
    out_path = tmp_path / "log"
    with out_path.open("w") as out:
        st = os.fstat(out.fileno())
        os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        try:
            configure_logging("debug", fmt="json", stream=out)
        finally:
            del os.environ["JOURNAL_STREAM"]
        for name in ("aiosqlite", "asyncio", "aioimaplib.aioimaplib"):
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).debug("executing INSERT ... ('From: a@b\\r\\n\\r\\nsecret body',)")
            logging.getLogger(name).warning("%s warns", name)
        structlog.get_logger("maild.test").error("fetch.failed", account="anna-pop", password="hunter2")
        logging.getLogger().handlers[0].flush()
    lines = out_path.read_text().splitlines()

    assert all(PRIORITY_LINE.match(line) for line in lines)
    assert not any("secret body" in line or "hunter2" in line for line in lines)
    records = [(line[1], json.loads(line[3:])) for line in lines]
    assert [(p, r["event"]) for p, r in records] == [
        ("4", "aiosqlite warns"),
        ("4", "asyncio warns"),
        ("4", "aioimaplib.aioimaplib warns"),
        ("3", "fetch.failed"),
    ]
    assert records[-1][1]["password"] == "********"


def test_stream_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    """A stream is the journal only when ``$JOURNAL_STREAM`` names its device and inode."""
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        value = f"{st.st_dev}:{st.st_ino}"

        assert stream_is_journal(a, value)
        assert not stream_is_journal(b, value)
        assert not stream_is_journal(a, "")
        assert not stream_is_journal(a, "garbage")


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ('[daemon]\nstate_dirr = "/x"\n', ["daemon.state_dirr"]),
        ('[daemon]\nstate_dirr = "/x"\n[alerts]\nafter = "soon"\n', ["alerts.after", "daemon.state_dirr"]),
    ],
    ids=["one-error", "two-errors"],
)
def test_run_with_an_invalid_config_exits_78_one_line_per_error(
    tmp_path: Path, text: str, keys: list[str]
) -> None:
    """``maild run`` with an invalid config exits 78 (EX_CONFIG, named by RestartPreventExitStatus=)
    and names each wrong key on its own line."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    errors = tmp_path / "stderr"

    done = run_maild("-c", str(cfg), "run", stderr_file=errors, journal=False)

    checked = run_maild("-c", str(cfg), "check-config", stderr_file=tmp_path / "check", journal=False)

    assert done.returncode == 78
    assert done.stdout == ""
    lines = errors.read_text().splitlines()
    assert [line.startswith(f"maild: {cfg}: {key}: ") for line, key in zip(lines, keys, strict=True)] == [
        True
    ] * len(keys)
    assert (checked.returncode, (tmp_path / "check").read_text().splitlines()) == (1, lines)


def test_the_unit_file_stops_restarting_on_exit_78_65_74_and_restarts_on_75() -> None:
    """systemd/maild.service names the config-error exit code, the archive-needs-the-admin one
    (session 14: a newer or log-less archive restarted every RestartSec for ever) and the repeated
    failed rollback (session 15) in RestartPreventExitStatus=, and they are the codes ``maild run``
    returns; the first failed rollback's 75 is restarted (Restart=on-failure, not prevented)."""
    from maild.cli.main import (
        EXIT_ARCHIVE_FAILING,
        EXIT_ARCHIVE_NEEDS_ADMIN,
        EXIT_ARCHIVE_RESTART,
        EXIT_CONFIG,
    )

    unit = (Path(__file__).parents[2] / "systemd" / "maild.service").read_text()

    prevented = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.MULTILINE)
    assert prevented is not None
    assert prevented.group(1).split() == [
        str(EXIT_CONFIG),
        str(EXIT_ARCHIVE_NEEDS_ADMIN),
        str(EXIT_ARCHIVE_FAILING),
    ]
    assert str(EXIT_ARCHIVE_RESTART) not in prevented.group(1).split()
    assert re.search(r"^Restart=on-failure$", unit, re.MULTILINE)


def test_events_below_the_level_are_dropped_before_the_processors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At level info a debug event never reaches the time stamp or the redaction (the fetch path logs
    several per batch); an info event goes through the whole chain and is written."""
    import maild.log

    seen: list[str] = []
    real = maild.log.redact_secrets

    def spy(logger: object, name: str, event: dict[str, object]) -> object:
        seen.append(str(event["event"]))
        return real(logger, name, event)

    monkeypatch.setattr(maild.log, "redact_secrets", spy)
    out_path = tmp_path / "log"
    with out_path.open("w") as out:
        configure_logging("info", fmt="json", stream=out)
        log = structlog.get_logger("maild.test")
        log.debug("fetch.commit.started", messages=3)
        log.info("fetch.complete", account="anna-pop")
        logging.getLogger().handlers[0].flush()
    assert seen == ["fetch.complete"]
    assert [json.loads(line)["event"] for line in out_path.read_text().splitlines()] == ["fetch.complete"]
