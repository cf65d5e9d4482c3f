"""IMAP ``AUTHENTICATE`` (RFC 3501 and RFC 9051 section 6.2.2; SASL-IR, RFC 4959) over a minimal interface.

:func:`authenticate` needs only :class:`AuthenticateTransport` (send the command, send a continuation
line, read the next continuation or the tagged status); :mod:`maild.protocols.imap.connection`
provides it over its aioimaplib client and calls this before falling back to ``LOGIN``. The SASL logic is
:mod:`maild.auth.sasl`; the retry-once on a refused token matches POP3 (:mod:`maild.protocols.pop3.auth`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeVar

import structlog

from maild.auth import sasl
from maild.errors import AuthError, MaildError, ProtocolError, ThrottledError, TransientError
from maild.model import ServerSettings
from maild.secret import Secret

__all__ = ["AuthenticateTransport", "Continuation", "TaggedStatus", "authenticate"]

log = structlog.get_logger("maild.imap")

#: Server responses read in one exchange at most (initial ``+``, error challenge, tagged status, spare).
_MAX_EXCHANGE_STEPS = 4
#: Response codes after which signing in is deferred, not refused (RFC 5530 section 3).
_THROTTLE_CODES = frozenset({"UNAVAILABLE", "LIMIT", "INUSE"})
#: Most threads getting OAuth2 tokens for IMAP sign-ins at once: 16. A token request may wait up to
#: :data:`maild.auth.endpoint.HTTP_TIMEOUT_S` (30 s) for an endpoint, so these threads are their own
#: pool: in the event loop's default executor (6 threads on a 2-core server) a hanging endpoint of six
#: accounts held every thread, and the archive's CPU work for every other account queued behind them
#: (QA of session 14).
TOKEN_THREADS: Final = 16

_T = TypeVar("_T")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


async def _in_token_thread(function: Callable[..., _T], *args: object) -> _T:
    """Run ``function(*args)`` in the token threads (:data:`TOKEN_THREADS`), with this task's context
    (the account bound for logging), as :func:`asyncio.to_thread` does in the default executor."""
    global _pool  # one pool per process, made at the first OAuth2 sign-in
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=TOKEN_THREADS, thread_name_prefix="maild-oauth2")
        pool = _pool
    call = functools.partial(contextvars.copy_context().run, function, *args)
    return await asyncio.get_running_loop().run_in_executor(pool, call)


@dataclass(frozen=True, slots=True)
class Continuation:
    """A command continuation request: ``+ TEXT`` (the text after ``+ ``, base64 for AUTHENTICATE)."""

    text: bytes


@dataclass(frozen=True, slots=True)
class TaggedStatus:
    """The tagged completion of the AUTHENTICATE command.

    Attributes:
        result: ``"OK"``, ``"NO"`` or ``"BAD"``.
        code: the response code without brackets, upper case (``"AUTHENTICATIONFAILED"``), or None.
        text: the human-readable text after the code.
    """

    result: Literal["OK", "NO", "BAD"]
    code: str | None = None
    text: str = ""


class AuthenticateTransport(Protocol):
    """What :func:`authenticate` needs from an IMAP connection in the not-authenticated state.

    Implementations add the tag and CRLF, read untagged responses themselves (a ``CAPABILITY``
    response code on the OK is theirs to keep) and apply their own timeouts; they raise maild
    errors (ConnectError, NetworkTimeout, ProtocolError) for I/O failures.
    """

    async def send_command(self, command: bytes) -> None:
        """Send ``TAG command CRLF`` (``command`` like ``b"AUTHENTICATE PLAIN AGFu..."``; holds a secret)."""
        ...

    async def send_line(self, line: bytes) -> None:
        """Send one continuation response line plus CRLF (may hold a secret)."""
        ...

    async def read_response(self) -> Continuation | TaggedStatus:
        """The next continuation request, or the command's tagged status."""
        ...


async def _secret(settings: ServerSettings) -> Secret:
    if settings.auth == "password":
        return settings.password
    if settings.tokens is None:
        raise AuthError(f"account {settings.account}: no token source configured", account=settings.account)
    return await _in_token_thread(settings.tokens.access_token)  # may call a token endpoint: off the loop


async def _exchange(
    transport: AuthenticateTransport, exchange: sasl.ClientExchange, sasl_ir: bool
) -> TaggedStatus:
    mech = exchange.mechanism.encode("ascii")
    if sasl_ir:
        await transport.send_command(b"AUTHENTICATE " + mech + b" " + exchange.initial_line())
    else:
        await transport.send_command(b"AUTHENTICATE " + mech)
    for _ in range(_MAX_EXCHANGE_STEPS):
        response = await transport.read_response()
        if isinstance(response, TaggedStatus):
            return response
        await transport.send_line(exchange.answer(response.text))
    raise ProtocolError("AUTHENTICATE exchange did not end", standard="RFC 3501 section 6.2.2")


def _refusal(
    settings: ServerSettings, mech: str, status: TaggedStatus, secrets: tuple[str, ...]
) -> MaildError:
    where = f"account {settings.account!r}: IMAP {settings.host}:{settings.port}"
    text = sasl.redact(status.text, (settings.password.reveal(), *secrets))
    shown = f"{status.result}{f' [{status.code}]' if status.code else ''} {text}".strip()
    if status.code in _THROTTLE_CODES:
        return ThrottledError(f"{where}: AUTHENTICATE {mech} deferred: {shown}", account=settings.account)
    if status.result == "NO" and status.code == "SERVERBUG":  # the server's fault, not the credentials'
        return TransientError(f"{where}: AUTHENTICATE {mech} failed: {shown}", account=settings.account)
    return AuthError(f"{where}: AUTHENTICATE {mech} refused: {shown}", account=settings.account)


async def authenticate(
    transport: AuthenticateTransport, capabilities: frozenset[str], settings: ServerSettings
) -> bool:
    """Sign in with AUTHENTICATE when a mechanism fits; False when the caller should use LOGIN.

    Mechanism from ``capabilities`` (the ``AUTH=`` atoms) by :func:`maild.auth.sasl.choose_mechanism`;
    the initial response goes on the command line when ``SASL-IR`` is offered (RFC 4959), else after
    the server's empty ``+``. A token refused as invalid or expired (the JSON error challenge) is
    invalidated and one new token tried, as for POP3. ``BAD`` after a cancel (``*``) is a refusal.

    Args:
        transport: the connection, not authenticated yet.
        capabilities: the CAPABILITY atoms as sent (any case), after STARTTLS if used.
        settings: account, user name, password or token source, ``auth`` and ``sasl_mechanism``.

    Returns:
        True when signed in (read CAPABILITY again afterwards, RFC 3501 section 6.2.2); False for
        ``auth = "password"`` without a forced mechanism when ``AUTH=PLAIN`` is not offered.

    Raises:
        AuthError: ``NO`` (or ``BAD`` after a cancel) with the server's text, never the secret; no
            usable mechanism for ``oauth2`` or a forced one; from the token source.
        ThrottledError: ``NO [UNAVAILABLE]``/``[LIMIT]``/``[INUSE]`` (RFC 5530).
        TransientError: ``NO [SERVERBUG]`` (RFC 5530): the server's fault, not counted as a refusal.
        ProtocolError: a challenge that is not base64, an exchange that does not end.
        TransientError, ConfigError: from the token source; transport errors as raised by it.

    Cancellation: the connection is mid-command; discard it.
    """
    caps = list(capabilities)
    offered = sasl.imap_mechanisms(caps)
    mech = sasl.choose_mechanism(offered, settings.auth, settings.sasl_mechanism)
    if mech is None:
        if settings.auth == "password" and settings.sasl_mechanism is None:
            return False
        wanted = settings.sasl_mechanism or " or ".join(sasl.OAUTH_MECHANISMS)
        raise AuthError(
            f"account {settings.account!r}: IMAP server offers no SASL {wanted}"
            f" (AUTH=: {' '.join(sorted(offered)) or 'none'})",
            account=settings.account,
        )
    retry = settings.auth == "oauth2"
    while True:
        secret = await _secret(settings)
        try:
            exchange = sasl.ClientExchange(
                mech, settings.username, secret.reveal(), host=settings.host, port=settings.port
            )
        except ValueError:
            raise AuthError(
                f"account {settings.account!r}: username or secret contains a line break, NUL or ^A",
                account=settings.account,
            ) from None
        secret.add_forms(exchange.secrets())  # a server echoing the base64 line: masked like the secret
        log.debug("imap.auth.started", account=settings.account, mechanism=mech, auth=settings.auth)
        status = await _exchange(transport, exchange, sasl.imap_sasl_ir(caps))
        if status.result == "OK":
            return True
        error = exchange.error
        if retry and settings.tokens is not None and error is not None and error.token_rejected:
            retry = False
            log.info("imap.auth.token_refused", account=settings.account, mechanism=mech, status=error.status)
            tokens = settings.tokens
            await _in_token_thread(tokens.invalidate, secret)
            if await _in_token_thread(tokens.access_token) != secret:
                continue
        refusal = _refusal(settings, mech, status, exchange.secrets())
        if error is not None:
            refusal.args = (f"{refusal.args[0]} ({error.render()})",)
        raise refusal
