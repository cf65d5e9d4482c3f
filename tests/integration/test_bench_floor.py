"""The benchmark's raw-client no-op floor (``tests/bench/floor.py``) completes against Dovecot."""

from __future__ import annotations

import pytest

from tests.bench.floor import imap_floor_s, pop3_floor_s
from tests.support.dovecot import Dovecot, MailUser


def test_floors_run_the_whole_exchange(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Each floor logs in, lists and logs out (a wrong exchange would hang or raise)."""
    dovecot.deliver(mail_user.name, b"Subject: floor\r\n\r\nbody\r\n")
    assert pop3_floor_s(dovecot.host, dovecot.ports.pop3, mail_user.name, mail_user.password, repeat=2) > 0
    fresh, kept = imap_floor_s(dovecot.host, dovecot.ports.imap, mail_user.name, mail_user.password, repeat=2)
    assert fresh > 0
    assert kept > 0


def test_pop3_floor_with_a_wrong_password_fails(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A refused login is not timed as a no-op: it raises."""
    with pytest.raises(ConnectionError, match="PASS refused"):
        pop3_floor_s(dovecot.host, dovecot.ports.pop3, mail_user.name, "wrong", repeat=1)


def test_imap_floor_with_a_wrong_password_fails(dovecot: Dovecot, mail_user: MailUser) -> None:
    """LOGIN answered NO ends the measurement with an error."""
    with pytest.raises(ConnectionError, match="LOGIN refused"):
        imap_floor_s(dovecot.host, dovecot.ports.imap, mail_user.name, "wrong", repeat=1)
