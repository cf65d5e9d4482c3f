"""POP3 ``AUTH`` (RFC 5034) for :class:`~maild.protocols.pop3.session.POP3Session`, in its worker thread.

The SASL exchange itself is :mod:`maild.auth.sasl` (sans-I/O); this module moves its lines over the
session's socket. It runs in the AUTHORIZATION state, after STLS and before anything else reads from
the socket, so lines are read straight from poplib's buffered file.

Secrets: the token or password travels only inside :class:`~maild.auth.sasl.ClientExchange` and the
one function that writes a line; every text that can reach an error or a log passes through
:func:`maild.auth.sasl.redact` with all wire forms of the secret.
"""

from __future__ import annotations

import io
import poplib
from collections.abc import Sequence
from typing import Protocol, cast

import structlog

from maild.auth import sasl
from maild.errors import AuthError, ConnectError, MaildError, ProtocolError
from maild.model import ServerSettings
from maild.protocols.pop3 import wire
from maild.protocols.pop3.session_errors import SessionErrors
from maild.secret import Secret

__all__ = ["MAX_AUTH_COMMAND_OCTETS", "authenticate"]

log = structlog.get_logger("maild.pop3")

#: Longest AUTH command line with an initial response, CRLF included: a longer initial response is
#: sent after an empty ``+`` challenge instead (RFC 5034 section 4). OAuth2 tokens of Microsoft 365
#: (over 1,000 octets) always go that way.
MAX_AUTH_COMMAND_OCTETS = 255

#: Server lines of an exchange at most read before giving up (initial challenge, error challenge,
#: final status, with room for one more).
_MAX_EXCHANGE_LINES = 4


class AuthSession(Protocol):
    """What this module needs of :class:`maild.protocols.pop3.session.POP3Session` (which imports this
    module, so it is described here rather than imported)."""

    settings: ServerSettings
    errors: SessionErrors

    def where(self) -> str: ...
    def redact(self, text: str) -> str: ...
    def add_secrets(self, secrets: Sequence[str]) -> None: ...
    def connection_closed(self, doing: str) -> ConnectError: ...
    def protocol_error(self, message: str, *, line: str = "", standard: str = "") -> ProtocolError: ...
    def translate(self, exc: BaseException, doing: str, *, connecting: bool = False) -> MaildError | None: ...


def _read_line(session: AuthSession, pop: poplib.POP3) -> bytes:
    """One server line with its CRLF, at most :data:`wire.MAX_STATUS_LINE_OCTETS` octets.

    Raises:
        ProtocolError: the line is too long. ConnectError: the server closed the connection.
        OSError: from the socket.
    """
    file = cast(io.BufferedIOBase, pop.file)
    line = file.readline(wire.MAX_STATUS_LINE_OCTETS + 1)
    if not line:
        raise session.connection_closed("during AUTH")
    if len(line) > wire.MAX_STATUS_LINE_OCTETS or not line.endswith(b"\n"):
        raise session.protocol_error("AUTH reply line too long", standard="RFC 5034 section 4")
    return line


def _send(pop: poplib.POP3, line: bytes) -> None:
    """Write one client line. Its own frame, so a secret-bearing ``line`` is in no frame a later
    error's traceback shows."""
    pop.sock.sendall(line + b"\r\n")


def _exchange(
    session: AuthSession, pop: poplib.POP3, exchange: sasl.ClientExchange
) -> wire.StatusLine | MaildError:
    """Run one AUTH exchange to its final status line.

    Returns:
        The final ``+OK``/``-ERR`` status, or the error to raise (returned, not raised, so that no
        exception chain leads back to frames holding the secret).
    """
    mech = exchange.mechanism
    first = exchange.initial_line()
    command = b"AUTH " + mech.encode("ascii") + b" " + first
    if len(command) + 2 > MAX_AUTH_COMMAND_OCTETS:
        command = b"AUTH " + mech.encode("ascii")
        pending: bytes | None = first
    else:
        pending = None
    del first
    try:
        _send(pop, command)
        del command
        for _ in range(_MAX_EXCHANGE_LINES):
            line = _read_line(session, pop)
            body = line.rstrip(b"\r\n")
            if body == b"+" or body.startswith(b"+ "):
                challenge = body[2:]
                if pending is not None and not challenge.strip():
                    reply, pending = pending, None
                else:
                    reply = exchange.answer(challenge)
                _send(pop, reply)
                del reply
                continue
            return wire.parse_status_line(line)
        return session.protocol_error("AUTH exchange did not end", standard="RFC 5034 section 4")
    except MaildError as exc:
        return session.translate(exc, "authenticating") or exc
    except OSError as exc:
        error = session.translate(exc, f"authenticating with {mech}", connecting=True)
        assert error is not None  # every OSError is translated
        return error


def _refused(session: AuthSession, mech: str, status: wire.StatusLine) -> MaildError:
    """The error for a ``-ERR`` final status, with the server's text redacted: deferred, failed or
    refused by its response code (:meth:`SessionErrors.login_refused`)."""
    return session.errors.login_refused(status, f"AUTH {mech}")


def authenticate(session: AuthSession, pop: poplib.POP3, offered: frozenset[str]) -> bool:
    """Log in with AUTH when a mechanism fits, else tell the caller to use USER/PASS.

    With ``auth = "oauth2"`` the access token comes from ``settings.tokens`` (blocking; this runs in
    the POP3 worker thread). When the server refuses a token saying it is invalid or expired
    (XOAUTH2/OAUTHBEARER error status) the token is invalidated and the exchange tried once more
    with a new one, if the source gives a different token; then the refusal is reported.

    Args:
        session: the session (for its settings, error helpers and redaction).
        pop: its connected poplib object, in the AUTHORIZATION state (after STLS if any).
        offered: the mechanisms of CAPA's ``SASL`` line.

    Returns:
        True when logged in; False when the caller should log in with USER/PASS (``auth =
        "password"``, no ``sasl_mechanism``, PLAIN not offered).

    Raises:
        AuthError: refused (``-ERR`` without a code below), with the server's text, never the secret;
            or no usable mechanism for ``auth = "oauth2"`` or a forced ``sasl_mechanism``; or from
            the token source (grant revoked).
        ThrottledError: ``[SYS/TEMP]``, ``[IN-USE]`` or ``[LOGIN-DELAY]``.
        ProtocolError: ``[SYS/PERM]``, a malformed reply or a challenge that is not base64.
        ConnectError, NetworkTimeout: the connection failed meanwhile.
        TransientError, ConfigError: from the token source.

    Standard: RFC 5034 sections 4 and 6; RFC 4616; RFC 7628 section 3.2.3; RFC 3206.
    """
    s = session.settings
    mech = sasl.choose_mechanism(offered, s.auth, s.sasl_mechanism)
    if mech is None:
        if s.auth == "password" and s.sasl_mechanism is None:
            return False
        wanted = s.sasl_mechanism or " or ".join(sasl.OAUTH_MECHANISMS)
        shown = " ".join(sorted(offered)) or "none"
        raise AuthError(
            f"{session.where()}: server offers no SASL {wanted} (CAPA SASL: {shown})", account=s.account
        )
    error = _attempt(session, pop, mech, retry=s.auth == "oauth2")
    if error is not None:
        raise error  # outside any except block: no chain back to frames holding the secret
    return True


def _secret(session: AuthSession) -> Secret:
    s = session.settings
    if s.auth == "password":
        return s.password
    if s.tokens is None:
        raise AuthError(f"{session.where()}: no token source configured", account=s.account)
    return s.tokens.access_token()


def _attempt(
    session: AuthSession, pop: poplib.POP3, mech: sasl.Mechanism, *, retry: bool
) -> MaildError | None:
    s = session.settings
    secret = _secret(session)
    try:
        exchange = sasl.ClientExchange(mech, s.username, secret.reveal(), host=s.host, port=s.port)
    except ValueError:
        return AuthError(
            f"{session.where()}: username or secret contains a line break, NUL or ^A", account=s.account
        )
    session.add_secrets(exchange.secrets())
    secret.add_forms(exchange.secrets())  # also where only the live secrets are masked (logs, status)
    log.debug("pop3.auth.started", account=s.account, mechanism=mech, auth=s.auth)
    outcome = _exchange(session, pop, exchange)
    if isinstance(outcome, MaildError):
        return outcome
    if outcome.ok:
        return None
    error = exchange.error
    if retry and s.tokens is not None and error is not None and error.token_rejected:
        log.info("pop3.auth.token_refused", account=s.account, mechanism=mech, status=error.status)
        s.tokens.invalidate(secret)
        fresh = s.tokens.access_token()
        if fresh != secret:
            return _attempt(session, pop, mech, retry=False)
    refusal = _refused(session, mech, outcome)
    if error is not None:
        refusal.args = (f"{refusal.args[0]} ({error.render()})",)
    return refusal
