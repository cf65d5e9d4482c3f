"""The ``[alerts]`` table: who is told when an account needs the administrator, and when.

Two channels, either or both: ``command`` (an argv list, no shell, given one JSON event on stdin) and
``mail_to`` (mail through the local ``sendmail`` interface, the standard way a Debian server sends
mail: Postfix, Exim or msmtp's ``msmtp-mta`` provide ``/usr/sbin/sendmail``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maild.config.values import Table, parse_duration
from maild.errors import ConfigError

#: Default seconds an account must keep failing before ``failing`` is sent.
DEFAULT_AFTER_S = 3600.0
#: Default seconds before a still-firing alert of the same account, kind and message is sent again.
DEFAULT_REPEAT_S = 86400.0
#: Default percentage of free space on the archive's file system below which ``disk_full`` is sent.
DEFAULT_DISK_FREE_PERCENT = 10.0
DEFAULT_SENDMAIL = "/usr/sbin/sendmail"
#: Default seconds before an OAuth2 refresh token (its consent) ends from which ``token_expiry`` is sent.
DEFAULT_TOKEN_EXPIRY_AHEAD_S = 7 * 86400.0
#: Default seconds the daemon's event loop may be late (blocked) before ``daemon`` is sent.
DEFAULT_LOOP_LAG_S = 10.0


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """The ``[alerts]`` table.

    Attributes:
        command: argv run once per event with the JSON event on stdin, or None.
        mail_to: addresses mailed once per event (empty: no mail).
        mail_from: the envelope sender and From header, or None (the MTA's default).
        sendmail: the sendmail-compatible program, with leading arguments of its own (for example
            ``["/usr/bin/msmtp", "-C", "/etc/maild/msmtprc"]``).
        after_s: seconds an account must keep failing before ``failing`` is sent (lockouts and
            set-aside messages are sent at once).
        repeat_s: seconds before an unchanged, still-firing alert is sent again.
        disk_free_percent: free space (percent of the archive's file system) below which
            ``disk_full`` is sent; 0 turns it off.
        token_expiry_ahead_s: seconds before an OAuth2 refresh token ends (the end of the
            consent) from which ``token_expiry`` is sent.
        loop_lag_s: seconds the event loop may be blocked (late to wake) before the ``daemon``
            alert says so.
    """

    command: tuple[str, ...] | None = None
    mail_to: tuple[str, ...] = ()
    mail_from: str | None = None
    sendmail: tuple[str, ...] = (DEFAULT_SENDMAIL,)
    after_s: float = DEFAULT_AFTER_S
    repeat_s: float = DEFAULT_REPEAT_S
    disk_free_percent: float = DEFAULT_DISK_FREE_PERCENT
    token_expiry_ahead_s: float = DEFAULT_TOKEN_EXPIRY_AHEAD_S
    loop_lag_s: float = DEFAULT_LOOP_LAG_S

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return self.command is not None or bool(self.mail_to)


def _address(value: object, key: str) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in " \t\r\n,<>\0"):
        raise ConfigError(f"{key}: expected a mail address such as \"admin@example.org\", got {value!r}")
    return value


def _resolved(program: str, base: Path) -> str:
    """A relative path with a ``/`` is relative to the config file; a bare name is looked up in PATH."""
    return str(base / program) if "/" in program and not Path(program).is_absolute() else program


def parse_alerts(data: Mapping[str, Any], where: str, base: Path) -> AlertsConfig:
    """Validate the ``[alerts]`` table.

    Args:
        data: the table as read from TOML.
        where: its dotted name, ``alerts``.
        base: the directory relative paths (``command[0]``, ``sendmail``) are resolved against.

    Raises:
        ConfigError: an unknown key, a wrong type, an empty command, a malformed address, a
            percentage outside 0-99.
    """
    t = Table(data, where)
    command = t.get("command", list, None, form="a list of strings (argv, no shell)")
    if command is not None and (not command or not all(isinstance(a, str) and a for a in command)):
        raise ConfigError(f"{t.key('command')}: expected a non-empty list of strings (argv, no shell)")
    mail_to_raw = t.get("mail_to", (str, list), None, form="an address or a list of addresses")
    mail_to_list = [mail_to_raw] if isinstance(mail_to_raw, str) else list(mail_to_raw or [])
    mail_to = tuple(_address(a, t.key("mail_to")) for a in mail_to_list)
    mail_from_raw = t.get("mail_from", str, None, form="a mail address")
    mail_from = _address(mail_from_raw, t.key("mail_from")) if mail_from_raw is not None else None
    sendmail_raw = t.get("sendmail", (str, list), DEFAULT_SENDMAIL, form="a path or an argv list")
    sendmail = [sendmail_raw] if isinstance(sendmail_raw, str) else sendmail_raw
    if not sendmail or not all(isinstance(a, str) and a for a in sendmail):
        raise ConfigError(f"{t.key('sendmail')}: expected a path or a non-empty list of strings (argv)")
    after = parse_duration(t.get("after", (str, int), "1h"), t.key("after"))
    repeat = parse_duration(t.get("repeat", (str, int), "1d"), t.key("repeat"))
    disk = t.get("disk_free_percent", (int, float), DEFAULT_DISK_FREE_PERCENT, form="a number 0-99")
    if not 0 <= disk < 100:
        raise ConfigError(f"{t.key('disk_free_percent')}: expected a number 0-99, got {disk!r}")
    ahead = parse_duration(t.get("token_expiry_ahead", (str, int), "7d"), t.key("token_expiry_ahead"))
    lag = parse_duration(t.get("loop_lag", (str, int), "10s"), t.key("loop_lag"))
    t.reject_unknown()
    return AlertsConfig(
        command=(_resolved(command[0], base), *command[1:]) if command is not None else None,
        mail_to=mail_to,
        mail_from=mail_from,
        sendmail=(_resolved(sendmail[0], base), *sendmail[1:]),
        after_s=after,
        repeat_s=repeat,
        disk_free_percent=float(disk),
        token_expiry_ahead_s=ahead,
        loop_lag_s=lag,
    )
