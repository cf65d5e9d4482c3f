"""Account configurations for tests: the one place that spells out an :class:`AccountConfig`.

- :func:`pop3_account`, :func:`imap_account`: accounts for tests whose sessions are fakes or a
  scripted server (loopback, plaintext, password ``pw``); every field can be overridden.
- :func:`dovecot_account`: an account of a user on the test Dovecot, for either protocol and any TLS mode.
"""

from __future__ import annotations

from typing import Any

from maild.config.loader import AccountConfig, PasswordSource
from maild.model import Protocol, TLSMode
from maild.secret import Secret
from tests.support.dovecot import Dovecot, MailUser

ORGANISATION = "Kanzlei Berger"
EMPLOYEE = "Anna Berger"


def _account(protocol: Protocol, name: str, overrides: dict[str, Any]) -> AccountConfig:
    values: dict[str, Any] = {
        "name": name,
        "organisation": ORGANISATION,
        "employee": EMPLOYEE,
        "protocol": protocol,
        "host": "127.0.0.1",
        "port": 110 if protocol == "pop3" else 143,
        "tls": "none",
        "ca_file": None,
        "username": name,
        "password": PasswordSource(inline=Secret("pw")),
        "poll_interval_s": 3600.0,
    }
    if protocol == "imap":
        values |= {"mailboxes": ("INBOX",), "timeout_s": 1.0, "idle_restart_s": 60.0}
    if isinstance(overrides.get("password"), str):
        overrides = {**overrides, "password": PasswordSource(inline=Secret(overrides["password"]))}
    values.update(overrides)
    return AccountConfig(**values)


def pop3_account(name: str = "anna-pop", **overrides: Any) -> AccountConfig:
    """A POP3 account (loopback port 110, plaintext, password ``pw``, retention "keep", hourly polls).

    ``password`` may be given as a plain string.
    """
    return _account("pop3", name, overrides)


def imap_account(name: str = "anna-imap", **overrides: Any) -> AccountConfig:
    """An IMAP account like :func:`pop3_account` on port 143: INBOX only, 1 s timeouts, IDLE re-issued every 60 s."""
    return _account("imap", name, overrides)


def dovecot_account(
    dovecot: Dovecot, user: MailUser, protocol: Protocol, tls: TLSMode = "none", **overrides: Any
) -> AccountConfig:
    """``user``'s account on ``dovecot`` over ``protocol`` (port chosen by TLS mode; the test CA when TLS).

    Timeouts are 10 s; the name is ``anna-pop`` or ``anna-imap`` unless ``name`` is given.
    """
    implicit = tls == "implicit"
    ports = dovecot.ports
    values: dict[str, Any] = {
        "host": dovecot.host,
        "port": (ports.pop3s if implicit else ports.pop3)
        if protocol == "pop3"
        else (ports.imaps if implicit else ports.imap),
        "tls": tls,
        "ca_file": None if tls == "none" else str(dovecot.ca_file),
        "username": user.name,
        "password": user.password,
        "timeout_s": 10.0,
    }
    values.update(overrides)
    name = values.pop("name", "anna-pop" if protocol == "pop3" else "anna-imap")
    return _account(protocol, name, values)
