"""Start-up cost of the one-shot commands, by what they import (issue 19 item 1; no timing).

Every ``maild --help``, ``maild status`` from monitoring, ``maild messages search`` from the CRM and
one-shot ``maild fetch`` from cron starts a Python process: what it imports is most of its CPU
(docs/performance.md, "Session 5: start-up"). Each test runs one command in a fresh interpreter,
as ``python -m maild`` does, and reads ``sys.modules`` when it ends: the modules of
:data:`HEAVY_MODULES` that the command does not need must not be there. A lazy import moved back to
the top of a module (or a new top-level import of a heavy library) fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import short_dir

#: Modules that cost start-up time, each with the reason; a command loads only those it needs.
HEAVY_MODULES: dict[str, str] = {
    "asyncio": "the event loop (some 30 modules): only fetching and the archive writer run one",
    "structlog": "logging set-up (with colorama, uuid, pickle): only commands that log configure it",
    "ssl": "TLS: only a connection, or a ca_file check, needs it",
    "oauthlib": "OAuth2 grants (some 80 modules): only a token request",
    "urllib.request": "HTTP to OAuth2 endpoints (http.client, email.parser): only a token request",
    "http.client": "loaded by urllib.request: only a token request",
    "importlib.metadata": "distribution metadata (email.parser, zipfile, a sys.path scan)",
    "tomli_w": "writing drop-in files: only accounts add/set",
    "aiosqlite": "the archive writer's thread: the read-only query commands use sqlite3",
    "aioimaplib": "IMAP: only an IMAP account's cycle",
    "maild.protocols.imap.mailbox": "the IMAP adapter: only an IMAP account's cycle",
    "maild.protocols.pop3.maildrop": "the POP3 adapter: only a POP3 account's cycle",
    "maild.fetch.resync": "an IMAP cycle's UIDVALIDITY resync and UID check (3 dataclasses): only IMAP",
    "maild.fetch.folders": "an IMAP cycle's unselected mailboxes and their records: only IMAP",
    "maild.archive.document_index": "the attachment-text indexer: the daemon, `maild reindex`, and a one-shot"
    " fetch only when PDF/Office attachments wait within its bound (not to count them)",
    "maild.archive.document_worker": "the attachment-text worker's handle: only when a document is indexed",
    "maild.archive.maildir": "the Maildir writer: only an account with deliver_maildir, and export",
    "maild.archive.index_text": "the index text and the MIME walk: storing new mail, search snippets",
    "maild.archive.parse": "a message's one parse (summary, MIME parts): storing new mail, search snippets",
    "email.header": "the stdlib's RFC 2047 decoder (email.charset, quopri, base64mime): encoded header"
    " fields and the MIME walk, so storing new mail and search snippets; not a fetch without new mail",
    "email.utils": "the stdlib's date parser (calendar, email._parseaddr): a Date not in the usual form",
    "maild.cli.status_view": "the status table and the check line: only status, check, fetch-now",
    "maild.cli.manpage": "the man page from the parser: only `maild manpage` (and the build)",
    "maild.archive.store": "the archive writer, its schema and migrations: fetch and admin commands",
    "maild.archive.move_queries": "the move commands' archive queries",
    "maild.auth.tokens": "the OAuth2 token store: only OAuth2 accounts and `accounts authorize`",
    "maild.auth.oauth2": "OAuth2 endpoint checks and token requests: only an OAuth2 account's",
    "maild.protocols.pop3.digest_inventory": "the inventory of a POP3 server without UIDL",
    "maild.service.daemon": "the daemon: only `maild run`",
    "maild.service.scheduler": "the daemon's scheduler: only `maild run`",
    "maild.service.snapshot": "the daemon's status snapshot: only `maild run`",
    "maild.move.migrate": "the move commands",
    "maild.fetch.pop3_listed": "the POP3 listed-size checks: only a POP3 cycle that has something to check",
    "maild.fetch.pop3_check": "the POP3 deletion check: only a POP3 cycle with deletion candidates",
    "email.message": "the stdlib's message classes (email.utils, calendar): a mailed alert, the query commands",
}

#: What the daemon of password accounts may load of :data:`HEAVY_MODULES` (the rest it must not: the
#: OAuth2 token store, the Maildir writer, a mailed alert's message classes, the POP3 checks of a
#: cycle that has nothing to check; docs/performance.md, "Session 15").
DAEMON_MODULES = frozenset(
    {
        "asyncio",
        "structlog",
        "ssl",
        "aiosqlite",
        "aioimaplib",
        "maild.archive.store",
        "maild.archive.document_index",
        "maild.archive.document_worker",
        "maild.archive.index_text",
        "maild.archive.parse",
        "email.header",
        "maild.protocols.imap.mailbox",
        "maild.protocols.pop3.maildrop",
        "maild.fetch.resync",
        "maild.fetch.folders",
        "maild.service.daemon",
        "maild.service.scheduler",
        "maild.service.snapshot",
    }
)

#: The CLI's command-group modules: the dispatch imports one only when its subcommand runs.
GROUP_MODULES = frozenset({"maild.cli.archive", "maild.cli.backup", "maild.cli.accounts", "maild.cli.move"})

#: Runs ``maild.cli.main.main(argv)`` as ``python -m maild`` would, then writes the names in
#: ``sys.modules`` as JSON to the file named by ``$MAILD_TEST_MODULES``.
RUNNER = """
import json, os, sys
from maild.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
with open(os.environ["MAILD_TEST_MODULES"], "w") as fh:
    json.dump(sorted(sys.modules), fh)
sys.exit(code)
"""


def loaded_after(tmp: Path, *argv: str) -> tuple[int, set[str], str]:
    """Run ``maild ARGV`` in a fresh interpreter; its exit code, the modules it loaded and its output."""
    out = tmp / "modules.json"
    out.unlink(missing_ok=True)
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "MAILD_TEST_MODULES": str(out), "PYTHONPATH": repo}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    modules = set(json.loads(out.read_text())) if out.exists() else set()
    return proc.returncode, modules, proc.stdout + proc.stderr


def heavy(modules: set[str], allowed: frozenset[str] = frozenset()) -> set[str]:
    """The heavy modules (or any of their submodules) in ``modules`` that are not ``allowed``."""
    return {
        name
        for name in HEAVY_MODULES
        if name not in allowed and any(m == name or m.startswith(name + ".") for m in modules)
    }


def write_config(
    directory: Path, dovecot: Dovecot | None = None, users: dict[str, MailUser] | None = None
) -> Path:
    """``config.toml`` in ``directory``: a POP3 and an IMAP account on ``dovecot`` (plain text on
    loopback, no ca_file: the loader would check it with ssl), or no account without ``dovecot``."""
    accounts: dict[str, dict[str, object]] = {}
    for protocol, user in (users or {}).items():
        assert dovecot is not None
        secret = directory / f"{protocol}.secret"
        secret.write_text(user.password + "\n")
        secret.chmod(0o600)
        accounts[protocol] = {
            "organisation": "Startup",
            "employee": user.name,
            "protocol": protocol,
            "host": dovecot.host,
            "port": dovecot.ports.pop3 if protocol == "pop3" else dovecot.ports.imap,
            "tls": "none",
            "username": user.name,
            "password_file": str(secret),
        }
        if protocol == "imap":
            accounts[protocol]["idle"] = False
    doc = {
        "daemon": {"state_dir": str(directory / "state"), "control_socket": str(directory / "control.sock")},
        "accounts": accounts,
    }
    path = directory / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def test_help_imports_no_implementation(tmp_path: Path) -> None:
    """`maild --help` builds the whole parser (every subcommand) and loads none of the heavy modules."""
    code, modules, output = loaded_after(tmp_path, "--help")

    assert code == 0, output
    assert "messages" in output and "fetch" in output
    assert "maild.cli.accounts" in modules, "the runner did not run the CLI"
    assert heavy(modules) == set()


def test_version_is_answered_without_building_the_parser(tmp_path: Path) -> None:
    """`maild --version` prints the version without building any subcommand's parser: no command-group
    module is loaded (the whole parser loads all four)."""
    from maild import __version__

    code, modules, output = loaded_after(tmp_path, "--version")

    assert (code, output) == (0, f"maild {__version__}\n")
    assert "maild.cli.main" in modules, "the runner did not run the CLI"
    assert not modules & GROUP_MODULES
    assert heavy(modules) == set()


def test_manpage_is_built_from_the_parser_without_the_implementations(tmp_path: Path) -> None:
    """`maild manpage` (generated from the parser) still lists every subcommand, without heavy modules."""
    code, modules, output = loaded_after(tmp_path, "manpage")

    assert code == 0, output
    assert "accounts authorize" in output and "messages search" in output
    assert heavy(modules, frozenset({"maild.cli.manpage"})) == set()


def test_status_without_a_daemon_reads_the_config_and_nothing_heavy(tmp_path: Path) -> None:
    """`maild status` with no daemon (exit 3) loads the config and the control client, no heavy module."""
    config = write_config(tmp_path)

    code, modules, output = loaded_after(tmp_path, "-c", str(config), "status")

    assert code == 3, output
    assert {"maild.config.loader", "maild.service.control_client"} <= modules
    assert heavy(modules, frozenset({"maild.cli.status_view"})) == set()
    assert not modules & GROUP_MODULES
    assert "maild.service.replies" not in modules  # the status records only
    assert "unicodedata" not in modules  # the config's odd-key quoting (session 15) loads it on errors only


@pytest.mark.dovecot
def test_one_shot_commands_load_only_what_they_need(dovecot: Dovecot, mail_user: MailUser) -> None:
    """The one-shot commands load only their own heavy modules.

    Steps: deliver two messages; configure a POP3 and an IMAP account for the same user; `maild fetch
    pop3` (archives both); `maild fetch imap`; `maild fetch pop3` again (a no-op); `maild messages
    list` and `maild messages search`; check each one's modules.
    """
    dovecot.deliver_many(mail_user.name, [_letter(1), _letter(2)])
    directory = short_dir("maildstart-")
    try:
        _run_one_shot_commands(directory, dovecot, mail_user)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run_one_shot_commands(directory: Path, dovecot: Dovecot, mail_user: MailUser) -> None:
    config = write_config(directory, dovecot, {"pop3": mail_user, "imap": mail_user})
    cli = ("-c", str(config))
    fetched_pop3 = frozenset({"asyncio", "structlog", "ssl", "aiosqlite", "maild.archive.store"})
    parsers = frozenset({"maild.archive.index_text", "maild.archive.parse", "email.header"})
    stored = fetched_pop3 | parsers  # new mail was parsed
    reading = parsers | {"email.utils", "email.message"}  # maild.archive.query's email.parser loads them
    imap_steps = ("maild.fetch.resync", "maild.fetch.folders")

    for argv, allowed, group in (
        (("fetch", "pop3"), stored | {"maild.protocols.pop3.maildrop"}, None),
        (("fetch", "imap"), stored | {"aioimaplib", "maild.protocols.imap.mailbox", *imap_steps}, None),
        (("fetch", "pop3"), fetched_pop3 | {"maild.protocols.pop3.maildrop"}, None),  # nothing new
        (("messages", "list"), reading, "maild.cli.archive"),
        (("messages", "search", "Startbrief"), reading, "maild.cli.archive"),
    ):
        code, modules, output = loaded_after(directory, *cli, *argv)

        assert code == 0, output
        assert heavy(modules, allowed) == set(), argv
        if argv[0] == "fetch":  # the presets' tables: only an account with `provider =` (and `accounts add`)
            assert "maild.config.providers" not in modules
        assert allowed <= modules, argv  # the command ran: it loaded what it needs
        assert modules & GROUP_MODULES == ({group} if group else set()), argv


def _letter(n: int) -> bytes:
    return (
        f"From: Anna <anna@example.org>\r\nTo: office@example.org\r\nSubject: Startbrief {n}\r\n"
        f"Message-ID: <startup-{n}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Letter {n}.\r\n"
    ).encode()


@pytest.mark.dovecot
def test_the_daemon_of_password_accounts_loads_no_token_store_maildir_or_mail_classes(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """`maild run` with a POP3 and an IMAP account (passwords, no `deliver_maildir`, no alert mail)
    runs a cycle of each that stores new mail, and loads neither the OAuth2 token store
    (``maild.auth.tokens``, ``maild.auth.oauth2``), the Maildir writer, ``email.message`` nor the POP3
    checks (nothing to delete): each is imported where it is used (session 15: 25 modules, about
    1 MB of the daemon's resident memory).

    Steps: deliver two messages; start the daemon; wait for both accounts' `fetch.complete`; SIGTERM;
    read the daemon's ``sys.modules``.
    """
    dovecot.deliver_many(mail_user.name, [_letter(1), _letter(2)])
    directory = short_dir("maildrun-")
    try:
        config = write_config(directory, dovecot, {"pop3": mail_user, "imap": mail_user})
        modules, log = _daemon_modules(directory, config)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    assert log.count('"fetch.complete"') >= 2, log[-3000:]
    assert heavy(modules, DAEMON_MODULES) == set(), log[-3000:]
    assert {"maild.service.daemon", "maild.archive.parse", "maild.protocols.imap.mailbox"} <= modules


def _daemon_modules(directory: Path, config: Path) -> tuple[set[str], str]:
    """Run `maild run` with ``config`` until both accounts completed a cycle (at most 60 s), stop it
    with SIGTERM; the modules it had loaded and its log."""
    out = directory / "modules.json"
    log = directory / "daemon.log"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "MAILD_TEST_MODULES": str(out), "PYTHONPATH": repo}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, "-c", str(config), "run"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count('"fetch.complete"') < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    return (set(json.loads(out.read_text())) if out.exists() else set()), text
