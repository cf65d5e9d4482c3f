"""The maild error hierarchy.

Every error maild raises on purpose derives from :class:`MaildError`. Errors are split by cause:
configuration, store, authentication, protocol grammar, and transient conditions that the scheduler
retries with backoff. Messages name the account and the offending item, never a secret.
"""

from __future__ import annotations


class MaildError(Exception):
    """Root of all maild errors."""


class ConfigError(MaildError):
    """The configuration is invalid.

    Raised while loading or validating configuration. The message names the file, the dotted key
    (for example ``accounts.anna-pop.port``) and the expected form.
    """

    @property
    def problems(self) -> tuple[str, ...]:
        """Each problem as one line (one here; several in :class:`ConfigErrors`)."""
        return (str(self),)


class ConfigErrors(ConfigError):
    """Several independent problems of one configuration, each one line naming its file and key.

    Raised by the loader after reading every table it could (``[daemon]``, ``[alerts]``, each
    account, each drop-in file), so the admin fixes them in one go. ``str()`` is the lines joined
    by newlines.
    """

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("\n".join(problems))
        self._problems = problems

    @property
    def problems(self) -> tuple[str, ...]:
        """The problems, one line each, in file order."""
        return self._problems


class StoreError(MaildError):
    """The archive database cannot be opened, migrated or written."""


class ArchiveNeedsAdmin(StoreError):
    """The archive is refused as it is, and only the admin can change that: its schema is newer than
    this maild (upgrade maild), or its write-ahead log lost commits (put the log back, or accept the
    loss: docs/archive.md "A lost write-ahead log"). Nothing was changed. ``maild run`` exits 65
    (``EX_DATAERR``), which the unit's ``RestartPreventExitStatus=`` names, so systemd does not start
    it again every ``RestartSec`` to the same refusal (docs review of session 14)."""


class ArchiveNeedsRestart(StoreError):
    """A transaction on the archive's one connection could not be rolled back (its ``COMMIT`` and then
    its ``ROLLBACK`` failed: an I/O error), so the connection cannot be trusted and only a new one ends
    the transaction (SQLite rolls it back when the connection closes). The daemon has stopped: no new
    cycle, running ones cancelled, nothing deleted after the failure. ``maild run`` exits 75
    (``EX_TEMPFAIL``), which the unit's ``Restart=on-failure`` restarts; or 74 (``EX_IOERR``, named by
    ``RestartPreventExitStatus=``) when it happened again within
    :data:`maild.service.restart_record.REPEAT_WINDOW_S` of the last such restart (:attr:`repeated`):
    the disk keeps failing and restarting cannot help (session 15)."""

    def __init__(self, reason: str, *, repeated: bool) -> None:
        super().__init__(reason)
        self.repeated = repeated


class ProtocolChanged(StoreError):
    """The configuration names an account with another protocol than the archive recorded for it
    (the protocol is fixed for an account's life: the mailbox is added again under a new name, see
    docs/moving-a-mailbox.md). A fault of the configuration: ``maild run`` exits 78 (``EX_CONFIG``), so
    systemd does not restart it in a loop; a reload is rejected and nothing changes."""


class DeliveryError(MaildError):
    """An account's local Maildir (``deliver_maildir``) cannot be written.

    The messages stay in the archive and undelivered; the next fetch cycle delivers them. Until then a
    POP3 server keeps them (deletion needs the Maildir file too).

    Attributes:
        account: the account name.
    """

    def __init__(self, message: str, *, account: str = "") -> None:
        super().__init__(message)
        self.account = account


class QueryError(MaildError):
    """A query of the archive (``maild messages``, ``maild export``) cannot be answered.

    Raised for a malformed, unknown or ambiguous message ID, an unknown account, or an export target
    that cannot be written; the message says which and what to do.
    """


class AccountError(MaildError):
    """An error attributable to one account's server session.

    Attributes:
        account: the account name, or ``""`` when not yet known.
    """

    def __init__(self, message: str, *, account: str = "") -> None:
        super().__init__(message)
        self.account = account


class AuthError(AccountError):
    """The server refused the credentials (RFC 3206 ``[AUTH]``, IMAP ``NO`` to LOGIN, POP3 ``-ERR`` to PASS).

    Permanent: retrying with the same password will not help and may lock the account at the provider.

    Attributes:
        reauthorize: True when only ``maild accounts authorize NAME`` can help (an OAuth2 refresh
            token refused with ``invalid_grant``, or never stored); the message says so.
    """

    def __init__(self, message: str, *, account: str = "", reauthorize: bool = False) -> None:
        super().__init__(message, account=account)
        self.reauthorize = reauthorize


SHOWN_REPLY_OCTETS = 8192
"""How much of a server's offending reply line the protocol layers decode for a
:class:`ProtocolError` (8 KiB, as much as a POP3 status line may have): the error masks every secret
in it, then keeps 200 characters. Cutting to 200 first would cut a secret echoed across the cut in
two, and its first part would be shown."""


class ProtocolError(AccountError):
    """A server reply breaks the protocol grammar or a command was refused unexpectedly.

    Attributes:
        line: the offending reply line, redacted (every live secret masked, before the cut) and
            truncated to 200 characters; callers pass up to :data:`SHOWN_REPLY_OCTETS` of it.
        standard: the RFC and section whose grammar was broken, e.g. ``"RFC 1939 section 7"``.
    """

    def __init__(self, message: str, *, account: str = "", line: str = "", standard: str = "") -> None:
        detail = message
        if line:
            # masked before the cut: a secret the server echoed across the 200th character would
            # otherwise be shown in part, which no later redaction recognises (QA of session 10)
            from maild.secret import shown

            line = shown(line, 200)
            detail += f" (reply: {line!r})"
        if standard:
            detail += f" [{standard}]"
        super().__init__(detail, account=account)
        self.line = line[:200]
        self.standard = standard


class TransientError(AccountError):
    """A condition that may pass: network failure, timeout, ``[SYS/TEMP]``, ``[IN-USE]``, ``[LOGIN-DELAY]``.

    The scheduler retries the account with capped exponential backoff.
    """


class ConnectError(TransientError):
    """The server could not be reached: DNS failure, connection refused, TLS handshake failure."""


class NetworkTimeout(TransientError):
    """A network operation exceeded the account's ``timeout``."""


class ThrottledError(TransientError):
    """The provider asked us to slow down (RFC 2449 ``[LOGIN-DELAY]``/``[IN-USE]``, RFC 3206 ``[SYS/TEMP]``,
    IMAP ``[UNAVAILABLE]``/``[LIMIT]``); the scheduler backs off longer than for other transient errors."""


class ControlError(MaildError):
    """A control-socket request failed.

    Attributes:
        code: a short machine-readable error code such as ``"unknown-command"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MigrationError(MaildError):
    """A step of moving a mailbox (``maild compare``, ``migrate``, ``retire``, ``accounts remove``)
    refuses to go on because mail could be lost or duplicated.

    Raised when: the target is not an IMAP account; the source account would delete what is uploaded
    again; messages of the target could not be read, so a duplicate could result; ``retire`` finds
    messages missing in the target; ``--purge`` would drop messages held nowhere else. The message
    says how many and what to do.
    """
