"""Sanity checks of the test infrastructure itself: the Dovecot fixture and the message corpus.

Only stdlib clients (poplib, imaplib) are used, so a failure here points at the fixture, not at maild.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import imaplib
import os
import poplib
import re
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser, encode_mutf7

TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- client helpers


def pop3_login(server: Dovecot, user: MailUser, mode: str) -> poplib.POP3:
    """A logged-in poplib session over ``mode``: ``plain``, ``stls`` or ``implicit`` TLS."""
    context = server.client_ssl_context()
    client: poplib.POP3
    if mode == "implicit":
        client = poplib.POP3_SSL(server.host, server.ports.pop3s, context=context, timeout=TIMEOUT_S)
    else:
        client = poplib.POP3(server.host, server.ports.pop3, timeout=TIMEOUT_S)
        if mode == "stls":
            client.stls(context=context)
    client.user(user.name)
    client.pass_(user.password)
    return client


def imap_login(server: Dovecot, user: MailUser, mode: str) -> imaplib.IMAP4:
    """A logged-in imaplib session over ``mode``: ``plain``, ``starttls`` or ``implicit`` TLS."""
    context = server.client_ssl_context()
    client: imaplib.IMAP4
    if mode == "implicit":
        client = imaplib.IMAP4_SSL(server.host, server.ports.imaps, ssl_context=context, timeout=TIMEOUT_S)
    else:
        client = imaplib.IMAP4(server.host, server.ports.imap, timeout=TIMEOUT_S)
        if mode == "starttls":
            client.starttls(ssl_context=context)
    client.login(user.name, user.password)
    return client


def pop3_retr(client: poplib.POP3, msgnum: int) -> bytes:
    """RETR as bytes with CRLF line endings (poplib already undid the dot-stuffing)."""
    _, lines, _ = client.retr(msgnum)
    return b"".join(line + b"\r\n" for line in lines)


def imap_fetch_all(client: imaplib.IMAP4, mailbox: str = "INBOX") -> list[tuple[int, int, bytes]]:
    """``(uid, RFC822.SIZE, BODY[])`` of every message of ``mailbox``, in UID order (read-only)."""
    typ, _ = client.select(imap_quote(encode_mutf7(mailbox)), readonly=True)
    assert typ == "OK"
    typ, data = client.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    result = []
    for item in data:
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            size = re.search(rb"RFC822\.SIZE (\d+)", item[0])
            assert uid and size
            result.append((int(uid[1]), int(size[1]), item[1]))
    return sorted(result)


def imap_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def long_poplib_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let stdlib poplib read the corpus's lines over 2,048 octets."""
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 24)


# ---------------------------------------------------------------------------- logins over every transport


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_pop3_login(dovecot: Dovecot, mail_user: MailUser, mode: str) -> None:
    """POP3 logs in with the tricky password over plain, STLS and POP3S, TLS verified against ca_file."""
    client = pop3_login(dovecot, mail_user, mode)
    try:
        assert client.stat() == (0, 0)
        if mode != "plain":
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        client.quit()


@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit"])
def test_imap_login(dovecot: Dovecot, mail_user: MailUser, mode: str) -> None:
    """IMAP logs in with the tricky password over plain, STARTTLS and IMAPS, TLS verified against ca_file."""
    client = imap_login(dovecot, mail_user, mode)
    try:
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
        if mode != "plain":
            assert isinstance(client.sock, ssl.SSLSocket)
    finally:
        client.logout()


def test_certificate_is_not_trusted_without_ca_file(dovecot: Dovecot) -> None:
    """A client that does not load ca_file refuses the server certificate."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=_unrelated_ca_pem())
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(dovecot.host, dovecot.ports.pop3s, context=context, timeout=TIMEOUT_S)


def _unrelated_ca_pem() -> str:
    import trustme

    return trustme.CA().cert_pem.bytes().decode("ascii")


def test_wrong_password_is_refused(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A wrong password gets POP3 ``-ERR [AUTH]`` and IMAP ``[AUTHENTICATIONFAILED]``."""
    pop = poplib.POP3(dovecot.host, dovecot.ports.pop3, timeout=TIMEOUT_S)
    try:
        pop.user(mail_user.name)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            pop.pass_(mail_user.password + "x")
    finally:
        pop.close()
    imap = imaplib.IMAP4(dovecot.host, dovecot.ports.imap, timeout=TIMEOUT_S)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(mail_user.name, "wrong")
    finally:
        imap.shutdown()


def test_password_with_colon_and_non_ascii(
    dovecot: Dovecot, mail_user_factory: Callable[..., MailUser]
) -> None:
    """Passwords with ``:``, backslashes, quotes and UTF-8 survive the passwd-file (POP3 sends UTF-8)."""
    user = mail_user_factory(password='a:b\\c "d" Grüße ')
    client = pop3_login(dovecot, user, "plain")
    client.quit()


# ---------------------------------------------------------------------------- delivery


def test_delivered_messages_are_visible_byte_for_byte(
    dovecot: Dovecot, mail_user: MailUser, long_poplib_lines: None
) -> None:
    """Corpus messages delivered to INBOX come back unchanged over POP3 and IMAP, sizes included."""
    messages = list(corpus.generate(40, seed=7))
    dovecot.deliver_many(mail_user.name, messages)

    imap = imap_login(dovecot, mail_user, "implicit")
    try:
        fetched = imap_fetch_all(imap)
    finally:
        imap.logout()
    assert [body for _, _, body in fetched] == messages
    assert [size for _, size, _ in fetched] == [len(m) for m in messages]

    pop = pop3_login(dovecot, mail_user, "implicit")
    try:
        _, listing, _ = pop.list()
        assert [int(line.split()[1]) for line in listing] == [len(m) for m in messages]
        assert [pop3_retr(pop, n) for n in range(1, len(messages) + 1)] == messages
        _, uidls, _ = pop.uidl()
        uids = [int(line.split()[1][:8], 16) for line in uidls]
        assert all(re.fullmatch(rb"[0-9a-f]{16}", line.split()[1]) for line in uidls)
        assert uids == [uid for uid, _, _ in fetched]
    finally:
        pop.rset()
        pop.quit()
    assert dovecot.maildir_messages(mail_user.name) == messages


def _renamed_to_cur(path: Path) -> Path:
    """Move a Maildir file as Dovecot does when a session sees it (``new/`` -> ``cur/``, ``:2,S``)."""
    target = path.parent.parent / "cur" / (path.name.split(":", 1)[0] + ":2,S")
    path.rename(target)
    return target


def test_maildir_read_survives_dovecot_moving_a_file_while_new_is_listed(
    dovecot: Dovecot, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message moved from new/ to cur/ right after new/ was listed is read once, not twice or missing.

    Dovecot is made to do the move at that moment by renaming the file as it would, from inside the
    listing of new/ (the race behind a once-failing test).
    """
    messages = [b"Subject: eins\r\n\r\n1\r\n", b"Subject: zwei\r\n\r\n2\r\n"]
    dovecot.deliver_many(mail_user.name, messages, index=False)
    real_iterdir = Path.iterdir

    def iterdir_then_move(self: Path) -> Iterator[Path]:
        listed = list(real_iterdir(self))
        if self.name == "new":
            for path in listed:
                _renamed_to_cur(path)
        return iter(listed)

    monkeypatch.setattr(Path, "iterdir", iterdir_then_move)

    assert dovecot.maildir_messages(mail_user.name) == messages


def test_maildir_read_survives_a_flag_rename_between_listing_and_reading(
    dovecot: Dovecot, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file renamed after the listing (a flag change) is found under its new name on a second listing."""
    messages = [b"Subject: eins\r\n\r\n1\r\n"]
    dovecot.deliver_many(mail_user.name, messages, index=False)
    real_read_bytes = Path.read_bytes
    renamed: list[Path] = []

    def rename_once_then_read(self: Path) -> bytes:
        if not renamed:
            renamed.append(_renamed_to_cur(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", rename_once_then_read)

    assert dovecot.maildir_messages(mail_user.name) == messages
    assert renamed


def test_uids_follow_delivery_order(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Messages delivered in a burst get ascending UIDs in delivery order."""
    messages = [corpus.make_message(subject=f"Nr. {n}", message_id=f"<order-{n}@test>") for n in range(300)]
    dovecot.deliver_many(mail_user.name, messages)
    imap = imap_login(dovecot, mail_user, "plain")
    try:
        fetched = imap_fetch_all(imap)
    finally:
        imap.logout()
    assert [uid for uid, _, _ in fetched] == list(range(1, 301))
    assert [body for _, _, body in fetched] == messages


def test_non_ascii_mailboxes(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Messages delivered to nested non-ASCII mailboxes are listed in modified UTF-7 and readable."""
    raw = corpus.make_message(subject="Entwurf")
    dovecot.deliver(mail_user.name, raw, mailbox="Geschäftlich/Entwürfe & Notizen")
    dovecot.create_mailbox(mail_user.name, "Übergaben")
    assert dovecot.maildir_path(mail_user.name, "Übergaben").is_dir()
    imap = imap_login(dovecot, mail_user, "plain")
    try:
        typ, listing = imap.list()
        assert typ == "OK"
        names = {
            line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in listing if isinstance(line, bytes)
        }
        assert {
            "INBOX",
            "Gesch&AOQ-ftlich",
            "Gesch&AOQ-ftlich/Entw&APw-rfe &- Notizen",
            "&ANw-bergaben",
        } <= names
        assert imap_fetch_all(imap, "Geschäftlich/Entwürfe & Notizen") == [(1, len(raw), raw)]
    finally:
        imap.logout()


def test_flags_and_internaldate(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Maildir flags and the received time given to deliver() show as IMAP FLAGS and INTERNALDATE."""
    received = dt.datetime(2023, 5, 17, 9, 30, 15, tzinfo=dt.UTC)
    dovecot.deliver(mail_user.name, corpus.make_message(), flags="SF", received=received)
    dovecot.deliver(mail_user.name, corpus.make_message())
    imap = imap_login(dovecot, mail_user, "plain")
    try:
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:2", "(FLAGS INTERNALDATE)")
        assert typ == "OK"
    finally:
        imap.logout()
    first, second = (item.decode() for item in data if isinstance(item, bytes))
    assert "\\Seen" in first
    assert "\\Flagged" in first
    assert '"17-May-2023 09:30:15 +0000"' in first
    assert "\\Seen" not in second


def test_delivery_is_seen_by_selected_session(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A message delivered while a session has INBOX selected shows up as EXISTS after NOOP."""
    imap = imap_login(dovecot, mail_user, "plain")
    try:
        imap.select("INBOX")
        dovecot.deliver(mail_user.name, corpus.make_message())
        imap.noop()
        _, exists = imap.response("EXISTS")
        assert exists[-1] == b"1"
    finally:
        imap.logout()


def test_doveadm_helper(dovecot: Dovecot, mail_user: MailUser) -> None:
    """doveadm() runs against this instance: mailbox status counts delivered messages."""
    dovecot.deliver_many(mail_user.name, corpus.generate(5, seed=3, size_mix=corpus.SMALL_MIX))
    result = dovecot.doveadm("mailbox", "status", "-u", mail_user.name, "messages", "INBOX")
    assert result.stdout.split() == ["INBOX", "messages=5"]


def test_restart_keeps_ports_users_and_mail(private_dovecot: Dovecot) -> None:
    """restart() cuts connected clients off and comes back on the same ports with users and mail.

    Steps: deliver, log in over IMAP, restart, see the old session fail, log in again, find the message.
    """
    server = private_dovecot
    user = server.add_user("restart", 'pa ss"\\')
    raw = corpus.make_message()
    server.deliver(user.name, raw)
    ports = server.ports
    old = imap_login(server, user, "implicit")
    server.restart()
    assert server.ports == ports
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        old.noop()
    old.shutdown()
    pop = pop3_login(server, user, "plain")
    try:
        assert pop3_retr(pop, 1) == raw
    finally:
        pop.quit()


def test_stop_frees_the_ports(private_dovecot: Dovecot) -> None:
    """After stop() nothing listens on the ports any more and running is false."""
    private_dovecot.stop()
    assert not private_dovecot.running
    with pytest.raises(ConnectionRefusedError):
        poplib.POP3(private_dovecot.host, private_dovecot.ports.pop3, timeout=TIMEOUT_S)


def test_mutf7_encoding() -> None:
    """Mailbox names are encoded in modified UTF-7 as RFC 3501 section 5.1.3 shows."""
    assert encode_mutf7("INBOX") == "INBOX"
    assert encode_mutf7("Entwürfe") == "Entw&APw-rfe"
    assert encode_mutf7("A & B") == "A &- B"
    assert encode_mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"


# ---------------------------------------------------------------------------- the corpus


def test_corpus_is_deterministic_and_prefix_stable() -> None:
    """The same seed gives the same bytes, a longer run starts with a shorter one, another seed differs."""
    first = list(corpus.generate(30, seed=5))
    assert first == list(corpus.generate(30, seed=5))
    assert list(corpus.generate(10, seed=5)) == first[:10]
    assert first[0] != next(corpus.generate(1, seed=6))


def test_corpus_has_the_promised_variety() -> None:
    """A default-mix sample has CRLF only, unique Message-IDs, long lines, dots, From lines, umlauts."""
    sample = list(corpus.generate(300, seed=11))
    ids: list[str] = []
    missing_ids = long_lines = lone_dots = from_lines = attachments = 0
    subjects: list[str] = []
    for raw in sample:
        assert raw.endswith(b"\r\n")
        assert not re.search(rb"(?<!\r)\n|\r(?!\n)", raw)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert not message.defects
        if message["Message-ID"] is None:
            missing_ids += 1
        else:
            ids.append(str(message["Message-ID"]))
        subjects.append(str(message["Subject"]))
        long_lines += max(map(len, raw.split(b"\r\n"))) > corpus.MAX_POPLIB_LINE_OCTETS
        lone_dots += b"\r\n.\r\n" in raw
        from_lines += b"\r\nFrom " in raw
        attachments += any(part.get_content_disposition() == "attachment" for part in message.walk())
    assert len(ids) == len(set(ids))
    assert 0 < missing_ids < 30
    assert long_lines > 10
    assert lone_dots > 10
    assert from_lines > 10
    assert attachments > 10
    assert any(re.search("[äöüÄÖÜß]", s) for s in subjects)
    sizes = sorted(map(len, sample))
    assert 2_000 <= sizes[len(sizes) // 2] <= 25_000
    assert sizes[-1] > 100_000


def test_make_message_options() -> None:
    """make_message encodes the subject, can omit the Message-ID and keeps a bytes body verbatim."""
    raw = corpus.make_message(subject="Schlüsselübergabe", body=b"a\r\n.\r\nb\r\n", with_message_id=False)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Schlüsselübergabe"
    assert message["Message-ID"] is None
    assert raw.endswith(b"\r\n\r\na\r\n.\r\nb\r\n")
    rich = corpus.make_message(
        html="<p>x</p>", attachments=[("application/pdf", "Rechnung März.pdf", b"%PDF")]
    )
    parts = email.message_from_bytes(rich, policy=email.policy.default)
    files = [p.get_filename() for p in parts.walk() if p.get_content_disposition() == "attachment"]
    assert files == ["Rechnung März.pdf"]


@pytest.mark.parametrize("octets", [1_000, 1_001, 65_536, 2_000_003])
def test_large_message_has_exact_size(octets: int) -> None:
    """large_message(n) is exactly n octets and a valid MIME message."""
    raw = corpus.large_message(octets)
    assert len(raw) == octets
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert not message.defects
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed",
        "text/plain",
        "application/zip",
    ]


# ---------------------------------------------------------------------------- the sandbox


@pytest.fixture
def sandbox_dir(dovecot: Dovecot) -> Iterator[Path]:
    """An empty directory for a sandbox; the sandbox is taken down and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="maild-sandbox-", dir="/tmp"))
    try:
        yield directory
    finally:
        subprocess.run(
            [sys.executable, "-m", "tests.support.sandbox", "down", "--dir", str(directory)],
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)


def test_sandbox_up_and_down(sandbox_dir: Path) -> None:
    """The sandbox outlives its command, serves its config's accounts, and goes away on ``down``.

    Steps: ``up`` with 5 messages, read config.toml, log in over POP3S and IMAPS with its values,
    ``down``, check that the Dovecot process is gone.
    """
    run = [sys.executable, "-m", "tests.support.sandbox"]
    up = subprocess.run(
        [*run, "up", "--dir", str(sandbox_dir), "--messages", "5"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    config = tomllib.loads((sandbox_dir / "config.toml").read_text(encoding="utf-8"))
    pop_account = config["accounts"]["demo-pop"]
    imap_account = config["accounts"]["demo-imap"]
    secret = Path(pop_account["password_file"])
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text(encoding="utf-8")
    context = ssl.create_default_context(cafile=pop_account["ca_file"])

    pop = poplib.POP3_SSL(pop_account["host"], pop_account["port"], context=context, timeout=TIMEOUT_S)
    pop.user(pop_account["username"])
    pop.pass_(password)
    assert pop.stat()[0] == 5
    pop.quit()
    imap = imaplib.IMAP4_SSL(
        imap_account["host"], imap_account["port"], ssl_context=context, timeout=TIMEOUT_S
    )
    imap.login(imap_account["username"], password)
    assert imap.select("INBOX", readonly=True) == ("OK", [b"5"])
    imap.logout()

    pid = int((sandbox_dir / "dovecot.pid").read_text())
    down = subprocess.run(
        [*run, "down", "--dir", str(sandbox_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not os.path.exists(sandbox_dir / "dovecot.pid")
