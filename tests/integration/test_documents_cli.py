"""Text of PDF and Office attachments through the command line, against a real Dovecot (issue 18, stretch):
`maild fetch` archives, `maild messages search` says the text is pending, `maild reindex` reads it and
search finds the PDF invoice; a running daemon indexes it on its own. Needs the documents extra."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import documents as docs
from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = [pytest.mark.dovecot, pytest.mark.usefixtures("documents_extra")]


def invoice(n: int) -> bytes:
    return docs.mail_with(
        n,
        [
            (
                "Abrechnung 2025.pdf",
                docs.PDF,
                docs.make_pdf(["Heizkostenabrechnung 2025", "Betrag 1.234,56 EUR"]),
            ),
            ("Mietvertrag.docx", docs.DOCX, docs.make_docx(["Mietvertrag Lindenstraße 7"])),
            ("Protokoll.odt", docs.ODT, docs.make_odt(["Eigentümerversammlung Protokoll"])),
        ],
        subject=f"Ihre Unterlagen {n}",
        body="Sehr geehrte Frau Berger, anbei die Unterlagen.",
    )


def hostile(n: int) -> bytes:
    return docs.mail_with(
        n,
        [
            ("bombe.docx", docs.DOCX, docs.make_docx_bomb()),
            ("geheim.pdf", docs.PDF, docs.make_pdf_encrypted("Geheim")),
            ("kaputt.pdf", docs.PDF, docs.make_pdf(["Abgeschnitten"])[:250]),
        ],
        subject=f"Feindlich {n}",
    )


def search(cfg: Path, *words: str) -> tuple[list[dict[str, object]], str]:
    done = maild_cli(cfg, "messages", "search", "--json", *words)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_fetch_then_search_finds_the_pdf_invoice_and_reindex_keeps_it(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Steps: deliver an invoice mail (PDF, DOCX, ODT) and a hostile one (ZIP bomb, encrypted and
    truncated PDF); one-shot `maild fetch --log-level info` archives both and indexes their attachment text (3
    unreadable attachments logged as documents.failed at info, the fetch still succeeds); search finds the
    invoice by its PDF's, DOCX's and ODT's words, with nothing pending; the hostile mail is found by
    its subject; `maild reindex` rebuilds the index with the stored text (nothing pending to read) and
    search still finds the PDF's words."""
    dovecot.deliver(mail_user.name, invoice(1))
    dovecot.deliver(mail_user.name, hostile(2))
    cfg = write_config(
        short_dir(), dovecot, [AccountSpec("anna-imap", "imap", mail_user.name, mail_user.password)]
    )
    fetched = maild_cli(cfg, "--log-level", "info", "fetch", timeout_s=180)
    assert fetched.returncode == 0, fetched.stderr
    assert "2 new messages" in fetched.stdout
    failed = [e for e in map(json.loads, fetched.stderr.splitlines()) if e["event"] == "documents.failed"]
    # damaged, encrypted, a bomb: the sender's problem, at info (below `maild fetch`'s default warning)
    assert sorted(e["filename"] for e in failed) == ["bombe.docx", "geheim.pdf", "kaputt.pdf"]
    assert {e["level"] for e in failed} == {"info"}

    for words in (["Heizkostenabrechnung", "2025"], ["Lindenstraße"], ["Eigentümerversammlung"]):
        hits, err = search(cfg, *words)
        assert [h["subject"] for h in hits] == ["Ihre Unterlagen 1"], words
        assert "not indexed yet" not in err
    assert "[Heizkostenabrechnung] [2025]" in str(
        search(cfg, "Heizkostenabrechnung", "2025")[0][0]["snippet"]
    )
    hits, _ = search(cfg, "Feindlich")
    assert [h["subject"] for h in hits] == ["Feindlich 2"]

    rebuilt = maild_cli(cfg, "reindex", timeout_s=180)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "attachment text: 0 messages read" in rebuilt.stdout
    hits, _ = search(cfg, "Heizkostenabrechnung")
    assert [h["subject"] for h in hits] == ["Ihre Unterlagen 1"]


def test_the_running_daemon_indexes_attachment_text_on_its_own(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Steps: start the daemon with an invoice mail waiting; without any reindex, search by the PDF's
    words finds it once the daemon's indexer has run (polled through the CLI); SIGTERM stops the daemon
    and its worker process cleanly (exit 0)."""
    dovecot.deliver(mail_user.name, invoice(3))
    directory = short_dir()
    cfg = write_config(
        directory, dovecot, [AccountSpec("anna-imap", "imap", mail_user.name, mail_user.password)]
    )
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        deadline = time.monotonic() + 120
        hits: list[dict[str, object]] = []
        while time.monotonic() < deadline and not hits:
            done = maild_cli(cfg, "messages", "search", "--json", "Heizkostenabrechnung")
            hits = json.loads(done.stdout) if done.returncode == 0 else []  # no archive yet: not started
            if not hits:
                time.sleep(0.2)
        assert [h["subject"] for h in hits] == ["Ihre Unterlagen 3"]
        assert stop_maild(proc) == 0
    log = (directory / "daemon.log").read_text()
    assert "documents.indexed" in log
