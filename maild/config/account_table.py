"""One ``[accounts.NAME]`` table to an :class:`~maild.config.records.AccountConfig`: the only place its
keys are validated.

Provider presets fill missing keys first (:func:`maild.config.providers.apply_provider`); the
sign-in keys are read by :mod:`maild.config.auth`, values by :mod:`maild.config.values`. Errors are
:class:`ConfigError` naming the dotted key (the caller adds the file).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from maild.config.auth import parse_auth, secret_source_keys
from maild.config.passwords import PasswordSource, file_kind
from maild.config.records import IDLE_RESTART_MAX_S, MAX_MESSAGE_SIZE_OCTETS, AccountConfig
from maild.config.values import (
    Table,
    choice,
    expand_maildir,
    is_loopback,
    parse_duration,
    positive_int,
    required_text,
    toml_key,
    toml_string,
)
from maild.errors import ConfigError
from maild.model import CompressMode, Protocol, Retention, TLSMode
from maild.protocols.progress import MIN_RATE_OCTETS_PER_S
from maild.secret import Secret

#: Longest organisation or employee name, in characters: 200. Both are shown in ``maild status``'s
#: rows, ``accounts list`` and the journal; unbounded until session 15's QA.
MAX_PERSON_NAME_CHARS = 200
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DEFAULT_PORTS: dict[tuple[str, str], int] = {
    ("pop3", "implicit"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "none"): 110,
    ("imap", "implicit"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
}


def _mailbox_name(table: Table, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{table.key(key)}: expected mailbox names (no CR, LF or NUL), got {value!r}")
    return "INBOX" if value.upper() == "INBOX" else value


def _parse_imap(t: Table) -> dict[str, Any]:
    """The IMAP-only keys of an account table, as :class:`AccountConfig` field values."""
    form = 'a list of mailbox names or "all"'
    raw_boxes = t.get("mailboxes", (list, str), ["INBOX"], form=form)
    all_mailboxes = raw_boxes == "all"
    mailboxes: tuple[str, ...] = ()
    if not all_mailboxes:
        if isinstance(raw_boxes, str) or not raw_boxes:
            raise ConfigError(f"{t.key('mailboxes')}: expected {form}, got {raw_boxes!r}")
        mailboxes = tuple(dict.fromkeys(_mailbox_name(t, "mailboxes", b) for b in raw_boxes))
    raw_exclude = t.get("exclude", list, None, form="a list of mailbox names")
    if raw_exclude is not None and not all_mailboxes:
        raise ConfigError(f'{t.key("exclude")}: only valid with mailboxes = "all"')
    exclude = tuple(dict.fromkeys(_mailbox_name(t, "exclude", b) for b in raw_exclude or ()))
    idle = t.get("idle", bool, True)
    idle_mailbox = t.get("idle_mailbox", str, None, form="a mailbox name")
    if idle_mailbox is None:
        idle_mailbox = "INBOX" if all_mailboxes or "INBOX" in mailboxes else mailboxes[0]
    else:
        idle_mailbox = _mailbox_name(t, "idle_mailbox", idle_mailbox)
        if not all_mailboxes and idle_mailbox not in mailboxes:
            raise ConfigError(
                f"{t.key('idle_mailbox')}: {idle_mailbox!r} is not one of the mailboxes fetched"
                f" ({', '.join(mailboxes)})"
            )
    restart = parse_duration(t.get("idle_restart", (str, int), "29m"), t.key("idle_restart"))
    if restart > IDLE_RESTART_MAX_S:
        raise ConfigError(
            f"{t.key('idle_restart')}: at most 29m (a server may end a session idle for 30 minutes)"
        )
    compress = cast(CompressMode, choice(t, "compress", ("auto", "always", "never"), "auto"))
    return {
        "compress": compress,
        "mailboxes": mailboxes,
        "all_mailboxes": all_mailboxes,
        "exclude": exclude,
        "idle": idle,
        "idle_mailbox": idle_mailbox,
        "idle_restart_s": restart,
    }


RETENTION_BY_PROTOCOL: dict[Protocol, tuple[Retention, ...]] = {
    "pop3": ("keep", "delete", "delete-after"),
    "imap": ("keep", "delete-after"),
}
"""The retention modes each protocol offers. IMAP has no ``"delete"``: see the README, "Deleting on
the server"."""


#: Largest ``retention_days`` accepted: 100 years (``datetime`` arithmetic overflows far beyond it).
MAX_RETENTION_DAYS = 36500


def _parse_retention(t: Table, protocol: Protocol) -> tuple[Retention, int | None]:
    """Read ``retention`` and ``retention_days``: the only place either is validated.

    Returns:
        The mode and the days (a positive integer exactly when the mode is ``"delete-after"``,
        else None); code after the configuration relies on that pairing.

    Raises:
        ConfigError: a mode the protocol does not offer, ``retention_days`` missing with
            ``"delete-after"``, given with another mode, not a positive integer or above
            :data:`MAX_RETENTION_DAYS`.
    """
    retention = cast(Retention, choice(t, "retention", RETENTION_BY_PROTOCOL[protocol], "keep"))
    retention_days = positive_int(t, "retention_days", None)
    if retention_days is not None and retention_days > MAX_RETENTION_DAYS:
        # larger values overflow date arithmetic (every cycle failed with OverflowError; QA of session 11)
        raise ConfigError(
            f"{t.key('retention_days')}: expected at most {MAX_RETENTION_DAYS} days (100 years),"
            f' got {retention_days}; to keep mail on the server for good, use retention = "keep"'
        )
    if retention == "delete-after" and retention_days is None:
        raise ConfigError(f'{t.key("retention_days")}: required when retention = "delete-after"')
    if retention != "delete-after" and retention_days is not None:
        raise ConfigError(f'{t.key("retention_days")}: only valid with retention = "delete-after"')
    return retention, retention_days


#: The tables an account table may hold (``[accounts.NAME.oauth2]``); any other table inside it is
#: most likely an account name with an unquoted dot.
_SUBTABLES = frozenset({"oauth2"})


def parse_account(name: str, data: Mapping[str, Any], where: str, path: Path) -> AccountConfig:
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: account name must match [a-z0-9][a-z0-9._-]* (at most 64 characters)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table")
    for key, value in data.items():
        if isinstance(value, Mapping) and key not in _SUBTABLES:  # [accounts.anna.pop]: "anna" + table "pop"
            raise ConfigError(
                f"{where}.{toml_key(key)}: a table inside account {name}; an account name with a dot is"
                f" written quoted: [accounts.{toml_string(f'{name}.{key}')}]"
            )
    if "provider" in data:  # issue 13: provider presets fill missing keys
        from maild.config.providers import apply_provider  # the presets' table: only when one is named

        data = apply_provider(data, where)
    t = Table(data, where)
    base = path.parent
    protocol = cast(
        Protocol,
        choice(t, "protocol", ("pop3", "imap"), None) if "protocol" in data else t.require("protocol", str),
    )
    organisation = required_text(t, "organisation", MAX_PERSON_NAME_CHARS)
    employee = required_text(t, "employee", MAX_PERSON_NAME_CHARS)
    host = required_text(t, "host")
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{t.key('host')}: expected a host name or IP address, got {host!r}")
    tls = cast(TLSMode, choice(t, "tls", ("implicit", "starttls", "none"), "implicit"))
    port = t.get("port", int, DEFAULT_PORTS[(protocol, tls)], form="an integer 1-65535")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{t.key('port')}: expected an integer 1-65535, got {port!r}")
    ca_file = t.get("ca_file", str, None, form="a path string")
    if ca_file is not None:
        ca_file = str(base / ca_file)
        import ssl  # here, not at the top: start-up time of every command that reads the config

        try:
            mode = os.stat(ca_file).st_mode  # a FIFO would block OpenSSL's read for ever (QA of session 11)
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{t.key('ca_file')}: {ca_file} is not a regular file ({file_kind(mode)})")
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no PEM certificate in it"
            raise ConfigError(f"{t.key('ca_file')}: cannot use {ca_file}: {reason}") from None
    username = required_text(t, "username")
    allow_plaintext = t.get("allow_plaintext", bool, False)
    if tls == "none" and not allow_plaintext and not is_loopback(host):
        raise ConfigError(
            f'{t.key("tls")}: "none" sends the password in clear text to {host}; '
            'use "implicit" or "starttls", or set allow_plaintext = true'
        )
    sign_in = parse_auth(t, name, base, protocol)  # issue 13: auth, sasl_mechanism, [oauth2]
    sources = [
        k for k in ("password", "password_file", "password_command", "password_credential") if k in data
    ]
    if sign_in.auth == "oauth2" and sources:
        raise ConfigError(f'{where}: {sources[0]} is not used with auth = "oauth2"; remove it')
    if len(sources) != 1 and sign_in.auth == "password":
        raise ConfigError(
            f"{where}: set exactly one of password, password_file, password_command, password_credential"
            + (f" (found {', '.join(sources)})" if sources else " (none found)")
        )
    inline = t.get("password", str, None, form="a string")
    if inline is not None and (not inline or any(c in inline for c in "\r\n")):
        # as an empty or multi-line password_file is: every sign-in would fail, or carry a second
        # command line (USER/PASS, RFC 1939 section 7); said at load time, not at each cycle
        raise ConfigError(f"{t.key('password')}: must be one non-empty line (not shown: it is a secret)")
    pw_file, pw_cmd, pw_cred = secret_source_keys(t, name, base, "password", "anna")
    password = PasswordSource(
        inline=Secret(inline) if inline is not None else None,
        file=(base / pw_file) if pw_file is not None else None,
        command=pw_cmd,
        credential=pw_cred,
    )
    poll = parse_duration(t.get("poll_interval", (str, int), "5m"), t.key("poll_interval"))
    timeout = parse_duration(t.get("timeout", (str, int), "60s"), t.key("timeout"))
    enabled = t.get("enabled", bool, True)
    max_size = positive_int(t, "max_message_size", None, MAX_MESSAGE_SIZE_OCTETS)
    min_rate = positive_int(t, "min_transfer_rate", MIN_RATE_OCTETS_PER_S)
    maildir_template = t.get("deliver_maildir", str, None, form="a directory path or template")
    deliver_maildir = (
        base
        / expand_maildir(
            maildir_template,
            t.key("deliver_maildir"),
            organisation=organisation,
            employee=employee,
            account=name,
        )
        if maildir_template is not None
        else None
    )
    imap = _parse_imap(t) if protocol == "imap" else {}
    retention, retention_days = _parse_retention(t, protocol)
    t.reject_unknown()
    return AccountConfig(
        name=name,
        organisation=organisation,
        employee=employee,
        protocol=protocol,
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
        poll_interval_s=poll,
        timeout_s=timeout,
        enabled=enabled,
        allow_plaintext=allow_plaintext,
        **imap,
        retention=retention,
        retention_days=retention_days,
        max_message_size=max_size,
        min_transfer_rate=min_rate or MIN_RATE_OCTETS_PER_S,
        deliver_maildir=deliver_maildir,
        source=path,
        sign_in=sign_in,
    )
