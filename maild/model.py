"""Plain value types shared by every layer of maild.

Nothing here does I/O. Datetimes are timezone-aware and in UTC. A server's password or token is a
:class:`maild.secret.Secret` (its redaction lives there).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from typing import Protocol as _Interface

from maild.secret import Secret

if TYPE_CHECKING:
    from maild.spool_view import Kept

Protocol = Literal["pop3", "imap"]

CONTENT_KEY_PREFIX = "sha256:"
"""Prefix of a POP3 identity that is the SHA-256 of the full message (servers without UIDL)."""
TLSMode = Literal["implicit", "starttls", "none"]
Retention = Literal["keep", "delete", "delete-after"]
"""What an account deletes on its server (config key ``retention``): ``"keep"`` nothing,
``"delete"`` (POP3 only) every message the archive holds, ``"delete-after"`` what was first archived
at least ``retention_days`` days ago. Validated once, by :mod:`maild.config.loader`; everything after
that takes it as given (see :mod:`maild.policy`)."""
#: IMAP ``COMPRESS=DEFLATE`` (RFC 4978) per account: ``"auto"`` (offered and a transfer measured slow),
#: ``"always"`` (offered) or ``"never"``.
CompressMode = Literal["auto", "always", "never"]


@dataclass(frozen=True, slots=True)
class POP3Key:
    """Server-side identity of a message in a POP3 maildrop.

    Attributes:
        uidl: the unique-id listing string (RFC 1939 section 7, "UIDL"): 1 to 70 characters in the range
            0x21 to 0x7E, persistent across sessions. When the server offers no UIDL, maild uses a
            digest of the message instead: ``"hdr:" + hex`` (header section and size) or
            ``"sha256:" + hex`` (full content), see :mod:`maild.protocols.pop3.identity`.
    """

    uidl: str

    @property
    def exact_content(self) -> bool:
        """Whether this identity is the SHA-256 of the message's full content (``"sha256:"`` prefix): a
        message on the server with this identity is octet for octet the archived one."""
        return self.uidl.startswith(CONTENT_KEY_PREFIX)


@dataclass(frozen=True, slots=True)
class IMAPKey:
    """Server-side identity of a message in an IMAP mailbox: (mailbox, UIDVALIDITY, UID).

    Standard: RFC 9051 section 2.3.1.1 (the pair UIDVALIDITY/UID is unique and never reused).

    Attributes:
        mailbox: the mailbox name as readable Unicode (not modified UTF-7), e.g. ``"INBOX"``.
        uidvalidity: the mailbox's UIDVALIDITY, a positive 32-bit integer.
        uid: the message's UID, a positive 32-bit integer.
    """

    mailbox: str
    uidvalidity: int
    uid: int


MessageKey = POP3Key | IMAPKey


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    """One message the server holds now.

    Attributes:
        key: its server-side identity.
        size_octets: its size in octets as the server reports it (POP3 LIST, IMAP RFC822.SIZE), or None
            when not known yet. POP3 sizes may differ slightly from the retrieved size (RFC 1939 section 11).
    """

    key: MessageKey
    size_octets: int | None = None


class SpooledBody(_Interface):
    """A received message held in a private file, not in memory: what :mod:`maild.spool` makes
    (``maild.spool.SpooledBody``); declared here so that every layer can name it without importing
    the spool's I/O.

    Attributes:
        size_octets: the message's length in octets.
        sha256: the SHA-256 of its octets, lower-case hex, computed while it was written.
        head: its first octets (at least the longest header section read anywhere,
            ``maild.message.MAX_HEADER_OCTETS``, or all of it if shorter).
        kept: the head and the octets after each ``--`` past it, kept while it was written: what
            the store parses (``maild.spool_view``), so that it reads the file only to copy it.
    """

    size_octets: int
    sha256: str
    head: bytes
    kept: Kept

    def parts(self, part_octets: int = ...) -> Iterator[bytes | memoryview]:
        """The octets in order, ``part_octets`` at a time, each valid until the next is asked for;
        OSError if the file cannot be read."""
        ...

    def read_at(self, offset: int, octets: int) -> bytes:
        """Up to ``octets`` octets from ``offset`` (fewer only at the end)."""
        ...

    def read_all(self) -> bytes:
        """All octets at once (for the few users that need them whole)."""
        ...

    def close(self) -> None:
        """Close the file: its octets leave the disk (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class RetrievedMessage:
    """A message as retrieved from the server.

    Attributes:
        key: its server-side identity.
        raw: the RFC 5322 message, exactly the octets the server sent after protocol un-stuffing
            (POP3 byte-stuffing, RFC 1939 section 3), CRLF line endings as sent: in memory
            (``bytes``), or, for a message of at least ``maild.spool.SPOOL_THRESHOLD_OCTETS``
            received while the archive's spool was in use, a :class:`~maild.spool.SpooledBody`
            (a private file, its SHA-256 and its first octets; see :mod:`maild.spool`). Read its
            length as :attr:`size_octets`, what it holds in memory as :attr:`held_octets`.
        internaldate: the IMAP INTERNALDATE (RFC 9051 section 2.3.3) in UTC, or None (POP3).
        flags: the IMAP flags at retrieval time, e.g. ``frozenset({"\\\\Seen"})``; empty for POP3.
        missing: IMAP items asked for that the server left out, e.g. ``("INTERNALDATE",)``; the
            adapter filled in its documented fallback (see ``maild.protocols.imap.stream.retrieved``).
    """

    key: MessageKey
    raw: bytes | SpooledBody
    internaldate: datetime | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    missing: tuple[str, ...] = ()

    @property
    def size_octets(self) -> int:
        """The message's length in octets, in memory or spooled."""
        raw = self.raw
        return len(raw) if isinstance(raw, bytes | bytearray) else raw.size_octets

    @property
    def held_octets(self) -> int:
        """Octets of the message held in memory: all of it, or a spooled message's head."""
        raw = self.raw
        return len(raw) if isinstance(raw, bytes | bytearray) else raw.kept.octets

    @property
    def spooled(self) -> SpooledBody | None:
        """The spool file holding the message, or None when it is in memory."""
        raw = self.raw
        return None if isinstance(raw, bytes | bytearray) else raw

    def whole(self) -> bytes:
        """The message's octets in memory: ``raw`` itself, or a spooled message read whole (for the
        few users that need them so: moving a mailbox never spools, see :mod:`maild.move`).

        Raises:
            ValueError: the spooled body was closed already. OSError: reading the spool file failed.
        """
        raw = self.raw
        return raw if isinstance(raw, bytes | bytearray) else raw.read_all()

    def release(self) -> None:
        """Close a spooled message's file (its octets leave the disk); nothing for one in memory."""
        raw = self.raw
        if not isinstance(raw, bytes | bytearray):
            raw.close()


FailureKind = Literal["local", "message"]
"""Which side a message's retrieval failed on.

``"message"``: the server's reply or the message itself (refused, broken off while it arrived, a
broken reply): counts towards setting the message aside (``maild.policy.set_aside``).
``"local"``: this machine (the spool or disk: short of the reserve, the spool's bound reached, the
state directory not writable; :func:`maild.spool.local_failure` builds these; or the archive's own
disk full when a batch is committed, reason starting :data:`ARCHIVE_FULL_PREFIX`): says nothing about
the message, which is retried at every cycle and never set aside; ``maild check`` warns and the
``local_failure`` alert is sent (``maild.service.alerts``)."""

ARCHIVE_FULL_WARNING = "the archive's disk is full"
"""How a cycle's warning begins when the archive's disk was full at one of its writes and no message
was blocked by it (nothing new, every batch committed, or the deletions' record; see
:mod:`maild.fetch.no_room`): the account then needs attention as for local failures (``maild status``
exits 1, ``maild check`` warns and names the directory to free space in; QA of session 13: before,
such a cycle, which deletes nothing until there is room, left the status at 0 and the check OK)."""

ARCHIVE_FULL_PREFIX = "local archive: "
"""How the reason of a ``"local"`` failure begins when the message arrived but the archive could not
store it: its file system full (SQLite's ``SQLITE_FULL``, ``ENOSPC``/``EDQUOT``;
:class:`maild.archive.archive_errors.ArchiveFull`). A spool failure begins ``local spool: ``
(``maild.spool.SPOOL_FAILURE_PREFIX``)."""


@dataclass(frozen=True, slots=True)
class RetrievalFailure:
    """One message could not be retrieved in this cycle; it is retried in the next one.

    Attributes:
        key: its server-side identity.
        reason: the server's reply or the cause, redacted, e.g. ``"-ERR [SYS/TEMP] try later"``.
        kind: which side failed (:data:`FailureKind`): the message or server (the default), or this
            machine (``"local"``).
    """

    key: MessageKey
    reason: str
    kind: FailureKind = "message"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """How often in a row one message failed to arrive, as the archive keeps it (schema v4, v7).

    A message fails when the server refuses it (:class:`RetrievalFailure`) or when the connection
    broke while it was being received. The record goes when the message is archived.

    Attributes:
        key: its server-side identity.
        failures: failed attempts in a row, at least 1.
        reason: the last failure's cause, with the server's words where there were any.
        first_failed_at: when the first failure of the run happened (aware, UTC).
        last_failed_at: when the last one happened (aware, UTC).
        retry_requested: ``maild fetch-now --retry-failed`` asked for one more attempt now.
        subject: the message's Subject field, RFC 2047 decoded, read by the best-effort header fetch
            of :mod:`maild.fetch.failed_headers` (schema v7); None while unknown or absent.
        from_: its From field, decoded; None while unknown or absent.
        date: its Date field (aware, UTC); None while unknown, absent or unparseable.
        header_attempts: how often that header fetch was tried for this record (it stops after
            :data:`maild.fetch.failed_headers.MAX_HEADER_ATTEMPTS`).
        kind: which side the last failure was on (:data:`FailureKind`, schema v15); ``failures``
            and ``first_failed_at`` count the run of failures of this kind (a failure of the other
            kind starts a new run).
    """

    key: MessageKey
    failures: int
    reason: str
    first_failed_at: datetime
    last_failed_at: datetime
    retry_requested: bool = False
    subject: str | None = None
    from_: str | None = None
    date: datetime | None = None
    header_attempts: int = 0
    kind: FailureKind = "message"


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """Header fields parsed from a message for queries; every field may be None when absent or broken.

    Attributes:
        message_id: the Message-ID field body, stripped (RFC 5322 section 3.6.4).
        date: the Date field as an aware UTC datetime, or None when missing or unparseable.
        from_: the From field, RFC 2047 encoded-words decoded.
        to: the To field, decoded.
        subject: the Subject field, decoded.
        cc: the Cc field, decoded (schema version 12 keeps it as ``messages.cc_header``).
    """

    message_id: str | None
    date: datetime | None
    from_: str | None
    to: str | None
    subject: str | None
    cc: str | None = None


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What one committed batch changed in the archive.

    Attributes:
        new_messages: messages whose content was not in the archive before (distinct SHA-256).
        new_links: server identities recorded for the account for the first time (includes
            ``new_messages`` and messages already archived through another account).
        octets: total size in octets of the messages in the batch that were new to the account.
        account_messages: distinct messages linked to the account for the first time (a message
            under two new identities of one account counts once).
        new_octets: total size in octets of the ``new_messages`` (new to the archive).
    """

    new_messages: int = 0
    new_links: int = 0
    octets: int = 0
    account_messages: int = 0
    new_octets: int = 0


@dataclass(frozen=True, slots=True)
class Location:
    """What the archive knows about one server-side identity of an account.

    Attributes:
        message: the archive's message row id.
        first_fetched_at: when maild first stored it for this account (UTC).
        gone_at: when maild first noticed it missing on the server (UTC), or None.
        deleted_at: when maild deleted it on the server (UTC), or None.
        listed_size: POP3: the size in octets its server should list for it (LIST, RFC 1939 section
            5): the size recorded from the server when it differed from the archived octets'
            (``locations.server_size``), else the archived octets'; None for IMAP, or when not read.
            Not part of equality (a record read back equals one built from its four times).
    """

    message: int
    first_fetched_at: datetime
    gone_at: datetime | None
    deleted_at: datetime | None
    listed_size: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How to reach and log in to one account's server.

    Attributes:
        account: the account name, used in error messages.
        host: host name or IP address.
        port: TCP port.
        tls: ``"implicit"`` (TLS from the first byte), ``"starttls"`` (POP3 STLS, RFC 2595 section 4;
            IMAP STARTTLS, RFC 9051 section 6.2.1) or ``"none"``.
        ca_file: PEM file of trusted CAs, or None for the system store. Certificate and host name are
            always verified.
        username: the login name.
        password: the password (``Secret("")`` with ``auth = "oauth2"``).
        timeout_s: limit in seconds for each network operation (connect, each command, each read).
        min_rate_octets_per_s: the progress floor of message transfers in octets per second (see
            :mod:`maild.protocols.progress`).
        progress_window_s: the window in seconds over which that floor is measured.
        auth: ``"password"`` (SASL PLAIN when offered, else USER/PASS or LOGIN) or ``"oauth2"`` (a
            bearer token from ``tokens`` over OAUTHBEARER, XOAUTH2 or a forced PLAIN).
        sasl_mechanism: the account's forced SASL mechanism (upper case), or None to choose from
            what the server advertises (see :func:`maild.auth.sasl.choose_mechanism`).
        tokens: where access tokens come from; set exactly when ``auth == "oauth2"``.
        compress: IMAP ``COMPRESS=DEFLATE`` (RFC 4978): ``"auto"``, ``"always"`` or ``"never"`` (see
            :func:`maild.policy.want_compression`); POP3 ignores it.
    """

    account: str
    host: str
    port: int
    tls: TLSMode
    ca_file: str | None
    username: str
    password: Secret
    timeout_s: float
    min_rate_octets_per_s: int = 1024
    progress_window_s: float = 30.0
    auth: Literal["password", "oauth2"] = "password"
    sasl_mechanism: str | None = None
    tokens: AccessTokenSource | None = field(default=None, compare=False)
    compress: CompressMode = "auto"


@dataclass(frozen=True, slots=True)
class AccountHistory:
    """What the archive remembers of an account's cycles across reloads and restarts.

    Attributes:
        account: the account name.
        last_success: end of the last successful cycle (UTC), or None.
        last_push: when the IMAP server last announced new mail over IDLE (UTC), or None.
        last_error: the last failure in words (never a secret), or None after a success.
        last_error_at: when that failure ended its cycle (UTC), or None.
        failing_since: end of the first failed cycle of the current run of failures (UTC), None
            while the account succeeds.
        consecutive_failures: failed cycles since the last success.
        cycles_ok, cycles_failed: all cycles ever, by outcome.
        fetched_messages, fetched_octets: messages newly archived for the account ever, and octets
            (counted in the transaction of each committed batch, so a crash does not lose them).
        auth_failures: cycles refused with an authentication error in a row (a restart keeps an
            auth lockout).
    """

    account: str
    last_success: datetime | None = None
    last_push: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    cycles_ok: int = 0
    cycles_failed: int = 0
    fetched_messages: int = 0
    fetched_octets: int = 0
    auth_failures: int = 0


class AccessTokenSource(_Interface):
    """Where an OAuth2 account's access tokens come from (implemented in :mod:`maild.auth.tokens`).

    Both methods block (they may run a command or call a token endpoint): call them from a worker
    thread, never on the event loop. Safe to call from several threads.
    """

    def access_token(self) -> Secret:
        """A bearer token valid for at least a minute more, as far as maild knows.

        Raises:
            AuthError: the grant is gone (``invalid_grant``, never authorized); the message says what
                to run. TransientError: the token endpoint or command failed in a way that may pass.
            ConfigError: the client secret or token command cannot be read or run.
        """
        ...

    def invalidate(self, token: Secret) -> None:
        """Forget ``token`` (the server refused it): the next :meth:`access_token` gets a new one."""
        ...


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback: ``localhost`` or a literal address in
    127.0.0.0/8 or ``::1``; a host name is not resolved (False). Where plaintext is allowed without
    ``allow_plaintext`` (the configuration) and where ``http://`` may be used (OAuth2 endpoints)."""
    if host == "localhost":
        return True
    import ipaddress  # on demand: start-up of the commands that never ask

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
