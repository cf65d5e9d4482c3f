"""``maild retire`` checks A's server for mail A never archived, against a real Dovecot.

Before session 13 ``retire`` compared only A's archive with B: a message that arrived on A's server
after A's last fetch, one set aside after failures or one larger than ``max_message_size`` was left
on the old server when A and B are different mailboxes, and never fetched again. Each refusing test
here fails on a tree without the check (retire then exits 0).
"""

from __future__ import annotations

import imaplib
import json
import poplib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.cli.main import main
from tests.integration.test_migration import letter
from tests.support.dovecot import Dovecot, MailUser, free_port
from tests.support.maildconf import AccountSpec, short_dir, write_config

pytestmark = pytest.mark.dovecot

#: Seconds a test's own POP3 client waits for Dovecot.
TIMEOUT_S = 20.0


def _specs(pop_user: MailUser, imap_user: MailUser, *, pop: dict[str, object]) -> list[AccountSpec]:
    """``pop`` (POP3 at 127.0.0.1 as ``pop_user``) and ``imap`` (IMAP at localhost as ``imap_user``)."""
    return [
        AccountSpec("pop", "pop3", pop_user.name, pop_user.password, extra=pop),
        AccountSpec("imap", "imap", imap_user.name, imap_user.password, extra={"host": "localhost"}),
    ]


def _uidls(dovecot: Dovecot, user: MailUser) -> list[str]:
    """The UIDLs of the user's maildrop, in server order (read only: QUIT without DELE)."""
    client = poplib.POP3_SSL(
        dovecot.host, dovecot.ports.pop3s, context=dovecot.client_ssl_context(), timeout=TIMEOUT_S
    )
    try:
        client.user(user.name)
        client.pass_(user.password)
        _resp, lines, _octets = client.uidl()
        return [line.split()[1].decode() for line in lines]
    finally:
        client.quit()


def _db(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{directory / 'state' / 'maild.sqlite3'}?mode=ro", uri=True)


def _retired(directory: Path) -> tuple[str | None, str | None]:
    with _db(directory) as db:
        row = db.execute("SELECT retired_at, retired_into FROM accounts WHERE name = 'pop'").fetchone()
    return row[0], row[1]


def _moved(
    dovecot: Dovecot, pop_user: MailUser, imap_user: MailUser, capsys: pytest.CaptureFixture[str], count: int
) -> tuple[Path, Path]:
    """``pop`` archives ``count`` messages (kept on its server), is disabled, and migrate uploads them
    into ``imap``; returns (directory, config)."""
    dovecot.deliver_many(pop_user.name, [letter(i) for i in range(count)])
    directory = short_dir("maildret-")
    cfg = write_config(directory, dovecot, _specs(pop_user, imap_user, pop={"retention": "keep"}))
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    cfg = write_config(
        directory, dovecot, _specs(pop_user, imap_user, pop={"retention": "keep", "enabled": False})
    )
    if pop_user != imap_user:
        assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    capsys.readouterr()
    return directory, cfg


def _moved_apart(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str], count: int
) -> tuple[MailUser, MailUser, Path, Path]:
    """A move between two mailboxes: ``pop`` (a new user) archives ``count`` messages and is moved into
    ``imap`` (another new user) as :func:`_moved` does; returns (old user, new user, directory, config)."""
    assert callable(mail_user_factory)
    old, new = mail_user_factory(), mail_user_factory()
    directory, cfg = _moved(dovecot, old, new, capsys, count)
    return old, new, directory, cfg


def _imap_moved(dovecot: Dovecot, a: MailUser, b: MailUser) -> tuple[Path, Path]:
    """``old`` (IMAP as ``a``, INBOX and Altpost) fetches, is disabled, and migrate uploads what it
    archived into ``imap`` (IMAP at localhost as ``b``); returns (directory, config)."""
    directory = short_dir("maildret-")
    old = AccountSpec("old", "imap", a.name, a.password, extra={"mailboxes": ["INBOX", "Altpost"]})
    new = AccountSpec("imap", "imap", b.name, b.password, extra={"host": "localhost"})
    cfg = write_config(directory, dovecot, [old, new])
    assert main(["-c", str(cfg), "fetch", "old"]) == 0
    old.extra["enabled"] = False
    cfg = write_config(directory, dovecot, [old, new])
    assert main(["-c", str(cfg), "migrate", "old", "--to", "imap"]) == 0
    return directory, cfg


def _refused(cfg: Path, capsys: pytest.CaptureFixture[str], account: str = "pop", *extra: str) -> str:
    """Run ``maild retire ACCOUNT --into imap`` (with ``extra``), assert it exits 1, return its stderr."""
    assert main(["-c", str(cfg), "retire", account, "--into", "imap", *extra]) == 1
    return capsys.readouterr().err


def test_same_mailbox_new_message_in_b_does_not_stop_retire(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """One Dovecot mailbox as POP3 (127.0.0.1) and IMAP (localhost): a message delivered after pop's
    last fetch is in B, recognised by Message-ID, Date and size, so retire goes ahead.

    Steps: pop archives 4 (kept on the server) and is disabled; a 5th arrives; compare shows 0 not
    archived (1 held by content); retire exits 0 and records nothing as accepted.
    """
    directory, cfg = _moved(dovecot, mail_user, mail_user, capsys, 4)
    dovecot.deliver_many(mail_user.name, [letter(100)])

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--summary"]) == 0
    out = capsys.readouterr().out
    assert (
        "on pop's server, never archived and not in imap: 0 (5 listed, 1 more held by content,"
        " 1 stored into pop's archive by this check)" in out
    )  # read whole (TOP) and kept in pop's archive before QUIT: a server may delete what is read

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    assert "retired into imap" in capsys.readouterr().out
    assert _retired(directory)[1] == "imap"
    with _db(directory) as db:
        assert db.execute("SELECT count(*) FROM unfetched_accepted").fetchone() == (0,)


def test_same_mailbox_new_message_outside_b_is_refused_until_fetched_and_moved(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """One mailbox, but B fetches only ``Altpost``: a message delivered to INBOX after pop's last
    fetch is in none of B's mailboxes, so retire refuses; after ``maild fetch pop`` and ``migrate``
    it retires.

    Steps: pop archives 3 and is disabled; imap's mailboxes = ["Altpost"]; migrate uploads the
    3 into Altpost; a 4th arrives in INBOX; retire exits 1 naming 1 never fetched and both ways forward;
    nothing is retired; ``maild fetch pop``; retire exits 1 (missing in imap: migrate); migrate; retire 0.
    """
    dovecot.deliver_many(mail_user.name, [letter(i) for i in range(3)])
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context())
    client.login(mail_user.name, mail_user.password)
    assert client.create("Altpost")[0] == "OK"
    client.logout()
    directory = short_dir("maildret-")
    imap = AccountSpec(
        "imap",
        "imap",
        mail_user.name,
        mail_user.password,
        extra={"host": "localhost", "mailboxes": ["Altpost"]},
    )
    pop = AccountSpec("pop", "pop3", mail_user.name, mail_user.password, extra={"retention": "keep"})
    cfg = write_config(directory, dovecot, [pop, imap])
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    pop.extra["enabled"] = False
    cfg = write_config(directory, dovecot, [pop, imap])
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--mailbox", "Altpost"]) == 0
    dovecot.deliver_many(mail_user.name, [letter(200)])
    capsys.readouterr()

    err = _refused(cfg, capsys)
    assert "pop's server (127.0.0.1) holds 1 messages that pop never archived and imap does not hold" in err
    assert "1 never fetched" in err
    assert "1 of them are in pop's archive now (the check stored what it read)" in err
    assert "run `maild migrate pop --to imap`" in err
    assert "--accept-unfetched" not in err  # it is in pop's archive now: not left behind (stored_advice)
    assert _retired(directory) == (None, None)

    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert "0 new messages" in capsys.readouterr().out  # the check archived it already
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    assert "1 messages of pop are missing in imap" in capsys.readouterr().err
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap", "--mailbox", "Altpost"]) == 0
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    assert _retired(directory)[1] == "imap"


def test_different_mailboxes_unfetched_message_refused_then_fetch_migrate_retire(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A move between two mailboxes (providers): a message that reached A after its last fetch stops
    retire until it is fetched and migrated.

    Steps: pop (user 1) archives 5, is disabled, migrate uploads them into imap (user 2); a 6th arrives
    at user 1; compare exits 1 and counts it; retire exits 1 naming 1 never fetched; ``maild fetch
    pop``; migrate uploads 1; retire exits 0; user 1's maildrop was never changed by the check.
    """
    old, _new, directory, cfg = _moved_apart(dovecot, mail_user_factory, capsys, 5)
    dovecot.deliver_many(old.name, [letter(300)])
    before = _uidls(dovecot, old)

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True  # the archive is all in B: the old check's answer
    assert report["source_server"]["not_archived"] == 1
    assert report["source_server"]["by_reason"] == {"never fetched": 1}
    assert [m["subject"] for m in report["not_archived"]] == ["Abrechnung für Wohnung 300"]

    assert report["source_server"]["stored"] == 1  # compare's check kept it in pop's archive
    err = _refused(cfg, capsys)
    assert "1 messages of pop are missing in imap" in err  # archived by compare's check, not in B
    assert _retired(directory) == (None, None)
    assert _uidls(dovecot, old) == before  # read only: nothing deleted

    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    assert "uploaded 1, refused 0" in capsys.readouterr().out
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    assert _retired(directory)[1] == "imap"


def test_accept_unfetched_does_not_retire_past_what_the_check_stored_and_b_lacks(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message pop never fetched, read by retire's check and stored into pop's archive, is a
    message of pop's archive that imap lacks: ``--accept-unfetched`` (mail kept nowhere, left
    behind) does not retire past it and records nothing; ``maild migrate`` then retire does.

    Session 14 retired with ``--accept-unfetched`` and recorded the stored message in
    ``unfetched_accepted`` as "never fetched", left behind, while pop's archive held it and imap
    did not (the comparison of pop's archive with imap had run before the check stored it): fails
    there (exit 0).

    Steps: pop (user 1) archives 3 and is moved into imap (user 2); a 4th arrives on pop;
    retire --accept-unfetched exits 1 in one line naming 1 stored and migrate; not retired, no row;
    migrate; retire exits 0.
    """
    old, _new, directory, cfg = _moved_apart(dovecot, mail_user_factory, capsys, 3)
    dovecot.deliver_many(old.name, [letter(500)])

    err = _refused(cfg, capsys, "pop", "--accept-unfetched")
    assert "1 messages on pop's server that pop never archived are in pop's archive now" in err
    assert "run `maild migrate pop --to imap`, then `maild retire pop --into imap` again" in err
    assert len(err.strip().splitlines()) == 1
    assert _retired(directory) == (None, None)
    with _db(directory) as db:
        assert db.execute("SELECT count(*) FROM unfetched_accepted").fetchone() == (0,)

    assert main(["-c", str(cfg), "migrate", "pop", "--to", "imap"]) == 0
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    assert _retired(directory)[1] == "imap"


def test_set_aside_and_too_large_are_named_and_accept_unfetched_records_them(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message set aside after repeated failures and one larger than max_message_size are named as
    such; ``--accept-unfetched`` then retires, lists both and records them in the archive.

    Steps: pop (user 1, max_message_size 20 kB) archives 3 and is moved into imap (user 2); a 60 kB
    message and a small one arrive; pop fetches: the large one is left on the server; the small one gets
    3 failure records (as 3 failed cycles leave it); retire exits 1 naming 1 set aside and 1 too large;
    retire --accept-unfetched exits 0, prints both, and ``unfetched_accepted`` holds their reasons.
    """
    old, new, directory, _cfg = _moved_apart(dovecot, mail_user_factory, capsys, 3)
    pop = {"retention": "keep", "enabled": False, "max_message_size": 20_000}
    cfg = write_config(directory, dovecot, _specs(old, new, pop=pop))
    dovecot.deliver_many(old.name, [letter(400, octets=60_000)])
    assert main(["-c", str(cfg), "fetch", "pop"]) == 0
    dovecot.deliver_many(old.name, [letter(401)])
    aside = _uidls(dovecot, old)[-1]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with sqlite3.connect(directory / "state" / "maild.sqlite3") as db:
        db.execute(
            "INSERT INTO retrieval_failures (account, key, failures, reason, first_failed_at,"
            " last_failed_at, kind) VALUES ('pop', ?, 3, '-ERR broken', ?, ?, 'message')",
            (f"pop3 {aside}", now, now),
        )
    capsys.readouterr()

    err = _refused(cfg, capsys)
    assert "holds 2 messages that pop never archived" in err
    assert "1 set aside after repeated failures" in err
    assert "1 larger than its max_message_size" in err
    assert "`maild fetch-now --retry-failed pop`" in err
    assert "raise max_message_size of pop" in err
    assert _retired(directory) == (None, None)

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap", "--accept-unfetched"]) == 0
    out = capsys.readouterr().out
    assert "pop: 2 messages on its server (127.0.0.1) were never archived" in out
    assert "Abrechnung für Wohnung 400" not in out  # too large: not read at all (not even TOP n 0)
    assert "set aside (pop3 " + aside + ")" in out
    assert "retired into imap" in out
    assert _retired(directory)[1] == "imap"
    with _db(directory) as db:
        rows = db.execute(
            "SELECT account, into_account, key, reason FROM unfetched_accepted ORDER BY reason"
        ).fetchall()
    assert [(a, b, r) for a, b, _k, r in rows] == [("pop", "imap", "set aside"), ("pop", "imap", "too large")]
    assert f"pop3 {aside}" in {k for _a, _b, k, _r in rows}


@pytest.mark.parametrize("failure", ["down", "password"])
def test_unreachable_server_is_refused_and_accept_unfetched_records_it(
    dovecot: Dovecot,
    mail_user_factory: object,
    capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    """A's server that cannot be reached (nothing listens) or refuses the sign-in is an unknown: retire
    refuses naming the error and ``--accept-unfetched``; with it, it retires and records the error.

    Steps: pop (user 1) archives 2 and is moved into imap (user 2); pop's port is closed / its password
    wrong; retire exits 1 with the error; ``--accept-unfetched`` exits 0 printing that the server was
    not checked; ``unfetched_accepted`` has one row without key.
    """
    old, new, directory, _cfg = _moved_apart(dovecot, mail_user_factory, capsys, 2)
    pop: dict[str, object] = {"retention": "keep", "enabled": False}
    if failure == "down":
        pop["port"] = free_port()
        words = "cannot connect"
    else:
        words = "refused"
    specs = _specs(old, new, pop=pop)
    if failure == "password":
        specs[0] = AccountSpec("pop", "pop3", old.name, "wrong password", extra=pop)
    cfg = write_config(directory, dovecot, specs)

    err = _refused(cfg, capsys)
    assert "pop's server (127.0.0.1) could not be checked for mail pop never archived" in err
    assert words in err.lower()
    assert "--accept-unfetched` if the old provider is gone for good" in err
    assert _retired(directory) == (None, None)

    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap", "--accept-unfetched"]) == 0
    out = capsys.readouterr().out
    assert "pop: its server (127.0.0.1) was not checked" in out
    assert "accepted (`--accept-unfetched`, recorded in the archive)" in out
    assert _retired(directory)[1] == "imap"
    with _db(directory) as db:
        rows = db.execute("SELECT key, reason FROM unfetched_accepted").fetchall()
    assert len(rows) == 1
    assert rows[0][0] is None
    assert rows[0][1].startswith("server not checked: ")


def test_imap_source_unfetched_message_refused_flags_untouched(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """An IMAP account A (two mailboxes): a message that reached one of them after A's last fetch is
    found by ``UID SEARCH ALL`` and its header read with ``BODY.PEEK`` (not marked read); retire refuses.

    Steps: old (IMAP, user 1, INBOX and Altpost) archives 2 + 1 and is disabled; migrate uploads them into
    imap (user 2); a message is appended to user 1's Altpost unseen; retire exits 1 naming 1 never
    fetched; the message is still unseen; ``maild fetch old``, migrate, retire exits 0.
    """
    assert callable(mail_user_factory)
    a, b = mail_user_factory(), mail_user_factory()
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_ssl_context())
    client.login(a.name, a.password)
    assert client.create("Altpost")[0] == "OK"
    assert client.append("Altpost", "", None, letter(500))[0] == "OK"
    dovecot.deliver_many(a.name, [letter(501), letter(502)])
    directory, cfg = _imap_moved(dovecot, a, b)
    assert client.append("Altpost", "", None, letter(503))[0] == "OK"
    capsys.readouterr()

    err = _refused(cfg, capsys, "old")
    assert "old's server (127.0.0.1) holds 1 messages that old never archived and imap does not hold" in err
    assert "1 never fetched" in err
    client.select("Altpost", readonly=True)
    typ, data = client.search(None, "UNSEEN")
    assert typ == "OK"
    assert len(data[0].split()) == 2  # letter(503), and letter(500): the check marked nothing read
    client.logout()

    assert main(["-c", str(cfg), "fetch", "old"]) == 0
    assert main(["-c", str(cfg), "migrate", "old", "--to", "imap"]) == 0
    assert main(["-c", str(cfg), "retire", "old", "--into", "imap"]) == 0
    assert _retired_as(directory, "old") == "imap"


def _retired_as(directory: Path, account: str) -> str | None:
    with _db(directory) as db:
        row = db.execute("SELECT retired_into FROM accounts WHERE name = ?", (account,)).fetchone()
    return row[0]


def test_imap_source_mailbox_refused_by_select_is_an_unknown(
    dovecot: Dovecot, mail_user_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """An IMAP account A configured with a mailbox the server refuses to SELECT: the inventory
    skips it, so what it holds is unknown; retire refuses naming it (it retired before the fix)."""
    assert callable(mail_user_factory)
    a, b = mail_user_factory(), mail_user_factory()
    dovecot.deliver_many(a.name, [letter(601)])
    directory, cfg = _imap_moved(dovecot, a, b)
    capsys.readouterr()

    err = _refused(cfg, capsys, "old")
    assert "could not be checked for mail old never archived" in err
    assert "1 of its mailboxes could not be selected" in err
    assert "'Altpost'" in err
    assert _retired_as(directory, "old") is None


def test_mail_arriving_during_the_check_is_refused_before_anything_changes(
    dovecot: Dovecot,
    mail_user_factory: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message that reaches A's server after the check listed it and before the retirement is
    recorded is seen by the second listing: retire refuses in one line, changing nothing.

    Steps: pop (user 1) archives 3 and is moved into imap (user 2); retire runs with the check
    wrapped so that a 4th message is delivered to user 1 right after the check returns (nothing
    unarchived in it); retire exits 1 with one line naming 1 message and to run it again; pop is not
    retired and no acceptance is recorded; ``--accept-unfetched`` does not skip the second listing;
    run again (plain), the check itself now names it: 1 never fetched.
    """
    import maild.move.retire as retire_module

    old, _new, directory, cfg = _moved_apart(dovecot, mail_user_factory, capsys, 3)
    real = retire_module.check_source
    arrived: list[int] = []

    async def check_then_deliver(*args: object, **kwargs: object) -> object:
        check = await real(*args, **kwargs)  # type: ignore[arg-type]
        arrived.append(len(arrived))
        dovecot.deliver_many(old.name, [letter(70 + len(arrived))])
        return check

    monkeypatch.setattr(retire_module, "check_source", check_then_deliver)
    for extra in ([], ["--accept-unfetched"]):
        assert main(["-c", str(cfg), "retire", "pop", "--into", "imap", *extra]) == 1
        err = capsys.readouterr().err
        assert "1 messages reached pop's server (127.0.0.1) while it was being checked" in err
        assert "nothing was changed: run `maild retire pop --into imap` again" in err
        assert len(err.strip().splitlines()) == 1
        assert _retired(directory) == (None, None)
        with _db(directory) as db:
            assert db.execute("SELECT count(*) FROM unfetched_accepted").fetchone() == (0,)
    monkeypatch.setattr(retire_module, "check_source", real)
    # the second run's check read (and stored) the first arrival: pop's archive has it, imap not
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 1
    assert "1 messages of pop are missing in imap" in capsys.readouterr().err


def test_the_check_reads_a_pop3_a_with_top_and_leaves_seen_alone(
    dovecot: Dovecot, mail_user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dovecot's TOP does not set ``\\Seen`` (its RETR does): the check reads what pop never
    archived with ``TOP n <lines>``, so an IMAP view of the same mailbox sees it unread afterwards.

    Steps: one Dovecot mailbox as POP3 and IMAP; pop fetches 2 (RETR: an IMAP view shows them
    ``\\Seen``, which proves RETR marks); a 3rd arrives (unread); compare and retire run the check,
    which reads the 3rd whole (held by B, the same mailbox) and keeps it in pop's archive; the IMAP
    view still shows the 3rd without ``\\Seen``, and retire succeeds.
    """
    from tests.integration.test_migration import ServerView

    def seen() -> dict[bytes, bool]:
        """Message-ID to whether the IMAP view shows it ``\\Seen`` (``\\Recent`` varies by session)."""
        view = ServerView(dovecot, mail_user)
        try:
            return {
                raw.split(b"Message-ID: ")[1].split(b"\r\n")[0]: b"\\Seen" in f for raw, _when, f in view.messages()
            }
        finally:
            view.close()

    directory, cfg = _moved(dovecot, mail_user, mail_user, capsys, 2)
    assert all(seen().values())  # the fetch's RETR marked them
    dovecot.deliver_many(mail_user.name, [letter(500)])
    before = seen()
    assert before[b"<migrate-500@example.org>"] is False

    assert main(["-c", str(cfg), "compare", "pop", "imap", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["source_server"]["held_by_content"], report["source_server"]["retr_fallbacks"]) == (1, 0)
    assert seen() == before
    assert main(["-c", str(cfg), "retire", "pop", "--into", "imap"]) == 0
    assert seen() == before
    assert _retired(directory)[1] == "imap"
