"""What a POP3 session's failures become: maild errors naming the account, never the password.

:class:`SessionErrors` is held by :class:`~maild.protocols.pop3.session.POP3Session` (one per
session): it knows the account, the server and the secrets to redact, and turns what poplib, ``ssl``
and the socket raise, and the server's refusals, into :mod:`maild.errors` classes. It reads and
writes nothing; the session decides when to ask. Refusals are classified by their RFC 2449/3206
response codes, never by free text: a throttling code defers (:class:`~maild.errors.ThrottledError`,
retried later), ``SYS/PERM`` is a server failure, anything else at login is a refusal of the
credentials (:class:`~maild.errors.AuthError`).
"""

from __future__ import annotations

import contextlib
import poplib
import ssl
from collections.abc import Iterator, Sequence

from maild.auth import sasl
from maild.errors import (
    AuthError,
    ConnectError,
    MaildError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import ServerSettings
from maild.protocols.pop3 import wire
from maild.protocols.pop3.lines import LineTooSlow

__all__ = ["THROTTLE_CODES", "SessionErrors"]

#: Response codes that mean "come back later" (RFC 3206 section 5, RFC 2449 section 8.1).
THROTTLE_CODES = ("SYS/TEMP", "IN-USE", "LOGIN-DELAY")


class SessionErrors:
    """The error translation of one POP3 session (see the module docstring)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._secrets: tuple[str, ...] = ()

    def where(self) -> str:
        """``account 'NAME': POP3 HOST:PORT``, the start of every error message."""
        s = self.settings
        return f"account {s.account!r}: POP3 {s.host}:{s.port}"

    def redact(self, text: str) -> str:
        """Return ``text`` with the password (and every wire form of a SASL secret registered with
        :meth:`add_secrets`) replaced, should a server ever echo it."""
        return sasl.redact(text, (self.settings.password.reveal(), *self._secrets))

    def add_secrets(self, secrets: Sequence[str]) -> None:
        """Have :meth:`redact` also remove ``secrets`` (tokens, base64 SASL responses) from now on."""
        self._secrets = (*self._secrets, *secrets)

    def protocol_error(self, message: str, *, line: str = "", standard: str = "") -> ProtocolError:
        """A ProtocolError naming the account, with the server's line redacted."""
        return ProtocolError(
            f"{self.where()}: {message}",
            account=self.settings.account,
            line=self.redact(line),
            standard=standard,
        )

    def connection_closed(self, doing: str) -> ConnectError:
        """The error for a connection the server closed while ``doing`` (``"during AUTH"``)."""
        return ConnectError(
            f"{self.where()}: server closed the connection {doing}", account=self.settings.account
        )

    def translate(self, exc: BaseException, doing: str, *, connecting: bool = False) -> MaildError | None:
        """The maild error for a foreign exception raised while ``doing``, naming the account.

        Args:
            exc: what was raised: a ProtocolError of the sans-I/O parsers (named here), TimeoutError,
                ``ssl.SSLError`` or another OSError.
            doing: what the session was doing, in words (``"retrieving"``), for the message.
            connecting: an OSError means "cannot connect" rather than "connection lost".

        Returns:
            The error to raise, or None for exceptions that need no translation (maild errors that
            already name the account, bugs).
        """
        acct = self.settings.account
        if isinstance(exc, ProtocolError):
            if exc.account:
                return None
            named = ProtocolError(f"{self.where()}: {self.redact(exc.args[0])}", account=acct)
            named.line, named.standard = self.redact(exc.line), exc.standard
            return named
        if isinstance(exc, LineTooSlow):
            return NetworkTimeout(f"{self.where()}: server too slow: {exc} while {doing}", account=acct)
        if isinstance(exc, TimeoutError):
            return NetworkTimeout(
                f"{self.where()}: no progress for {self.settings.timeout_s} s while {doing}", account=acct
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectError(f"{self.where()}: TLS failed while {doing}: {exc}", account=acct)
        if isinstance(exc, OSError):
            what = "cannot connect" if connecting else "connection lost"
            return ConnectError(f"{self.where()}: {what} while {doing}: {exc}", account=acct)
        return None

    @contextlib.contextmanager
    def mapped(self, doing: str, *, connecting: bool = False) -> Iterator[None]:
        """Translate foreign exceptions raised while ``doing`` (see :meth:`translate`).

        Raises:
            NetworkTimeout, ConnectError, ProtocolError: as :meth:`translate` makes them.
        """
        try:
            yield
        except Exception as exc:
            error = self.translate(exc, doing, connecting=connecting)
            if error is None:
                raise
            raise error from exc

    def refusal(self, exc: poplib.error_proto, doing: str) -> wire.StatusLine | MaildError:
        """The server's status line inside a poplib error, or the error to raise for poplib's own
        complaints (``"-ERR EOF"``, ``"line too long"``) and for a malformed line.

        Standard: RFC 1939 section 3 (status indicators).
        """
        arg = exc.args[0] if exc.args else b""
        if isinstance(arg, str):  # poplib's own text, not the server's
            if arg == "-ERR EOF":
                return ConnectError(
                    f"{self.where()}: server closed the connection while {doing}",
                    account=self.settings.account,
                )
            return self.protocol_error(f"{arg} while {doing}", standard="RFC 1939 section 3")
        try:
            return wire.parse_status_line(bytes(arg))
        except ProtocolError as bad:
            return self.translate(bad, doing) or bad

    def login_refused(self, status: wire.StatusLine, step: str) -> MaildError:
        """The error for a ``-ERR`` to a login step (``"login"`` for USER/PASS, ``"AUTH PLAIN"``), with
        the server's text redacted: deferred on a throttling code, a server failure on ``SYS/PERM``,
        else the credentials were refused.

        Standard: RFC 1939 section 7, RFC 5034 section 4; RFC 2449 section 8.1 and RFC 3206 sections
        4-5 for the response codes.
        """
        acct = self.settings.account
        reply = self.redact(status.render())
        if any(status.has_code(c) for c in THROTTLE_CODES):
            return ThrottledError(f"{self.where()}: {step} deferred: {reply}", account=acct)
        if status.has_code("SYS/PERM"):
            return self.protocol_error(f"{step} failed: {reply}", line=reply, standard="RFC 3206 section 4")
        return AuthError(f"{self.where()}: {step} refused: {reply}", account=acct)

    def greeting_refused(self, exc: poplib.error_proto) -> MaildError:
        """The error for a greeting poplib rejected: deferred on a throttling code, else transient
        (a server that refuses sessions now may accept them later).

        Standard: RFC 1939 section 4 (greeting), RFC 3206 section 5.
        """
        status = self.refusal(exc, "greeting")
        if isinstance(status, MaildError):
            return status
        acct = self.settings.account
        if any(status.has_code(c) for c in THROTTLE_CODES):
            return ThrottledError(f"{self.where()}: greeting {status.render()}", account=acct)
        return TransientError(f"{self.where()}: server refused the session: {status.render()}", account=acct)

    def stls_failed(self, exc: poplib.error_proto | UnicodeDecodeError) -> MaildError:
        """The error for a failed STLS: the server closed the connection, or a protocol error (maild
        never logs in without the TLS it was told to use).

        Standard: RFC 2595 section 4.
        """
        reason: object = exc.args[0] if isinstance(exc, poplib.error_proto) and exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if reason == "-ERR EOF":
            return ConnectError(
                f"{self.where()}: server closed the connection at STLS", account=self.settings.account
            )
        return self.protocol_error(
            "STLS failed; refusing to log in without TLS", line=str(reason), standard="RFC 2595 section 4"
        )
