"""Opening an IMAP session after the greeting: capabilities, STARTTLS, sign-in, COMPRESS.

:meth:`IMAPConnection.open <maild.protocols.imap.connection.IMAPConnection.open>` connects and
then asks this module, step by step, through the connection's guarded calls:

* :func:`capabilities_before_sign_in`: the greeting's ``[CAPABILITY ...]`` when it has one, else one
  CAPABILITY; with ``tls = "starttls"``, STARTTLS and CAPABILITY again (RFC 9051 section 6.2.1);
* :func:`sign_in`: AUTHENTICATE when a SASL mechanism fits (:mod:`maild.auth.imap` over
  :mod:`maild.protocols.imap.authenticate`), else LOGIN; the capabilities after sign-in come from the
  completion's ``[CAPABILITY ...]`` when it has one (section 7.1);
* :func:`maybe_compress`: COMPRESS=DEFLATE (RFC 4978) when :func:`maild.policy.want_compression`
  says so for the rate last measured from the server (:func:`link_rate`, kept by
  :func:`remember_rate`).

May import: ssl, structlog, :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.policy`,
:mod:`maild.auth.imap`, :mod:`maild.protocols.imap.client`, :mod:`maild.protocols.imap.authenticate`
and the sans-I/O IMAP modules (never the connection, which imports this module: what is needed of it
is described by :class:`Session`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from maild.auth import imap as imap_auth
from maild.errors import AccountError, AuthError, ProtocolError
from maild.model import ServerSettings
from maild.policy import want_compression
from maild.protocols.imap import wire
from maild.protocols.imap.authenticate import AuthenticateOver
from maild.protocols.imap.client import IMAPClient, Reply
from maild.protocols.imap.codes import SESSION_CODES
from maild.protocols.imap.lex import Part, text_of

__all__ = [
    "MAX_REMEMBERED_LINKS",
    "MIN_RATE_SAMPLE_OCTETS",
    "Session",
    "capabilities_before_sign_in",
    "check_version",
    "link_rate",
    "maybe_compress",
    "remember_rate",
    "sign_in",
]

#: Octets a connection must have received while message transfers waited for data before its rate
#: is kept for ``compress = "auto"`` (a shorter sample mostly measures the first round trip).
MIN_RATE_SAMPLE_OCTETS = 2 * 2**20
#: Servers (host, port) whose last measured transfer rate is remembered, at most; the oldest is
#: forgotten first.
MAX_REMEMBERED_LINKS = 1024
_LINK_RATES: dict[tuple[str, int], float] = {}

#: One logger name for the whole IMAP adapter, as before it was split into modules.
_log = structlog.get_logger("maild.protocols.imap.mailbox")

T = TypeVar("T")


def link_rate(host: str, port: int) -> float | None:
    """The last measured transfer rate from ``host:port`` in octets per second (as received from
    the socket, compressed or not), or None. Kept for the life of the process."""
    return _LINK_RATES.get((host, port))


def remember_rate(host: str, port: int, octets_per_s: float) -> None:
    """Keep ``octets_per_s`` as the rate of ``host:port`` (the oldest of more than
    :data:`MAX_REMEMBERED_LINKS` servers is forgotten)."""
    _LINK_RATES.pop((host, port), None)
    _LINK_RATES[(host, port)] = octets_per_s
    while len(_LINK_RATES) > MAX_REMEMBERED_LINKS:
        del _LINK_RATES[next(iter(_LINK_RATES))]


class Session(Protocol):
    """What this module needs of :class:`~maild.protocols.imap.connection.IMAPConnection`."""

    settings: ServerSettings

    @property
    def account(self) -> str: ...
    @property
    def client(self) -> IMAPClient: ...
    async def call(self, what: str, start: Callable[[], Awaitable[T]], *, slow: bool = False) -> T: ...
    def completion(self, reply: Reply, what: str) -> tuple[list[Part], wire.StatusResponse]: ...
    def refused(self, status: wire.StatusResponse, what: str) -> AccountError: ...
    async def command(
        self, what: str, start: Callable[[IMAPClient], Awaitable[Reply]], *, slow: bool = False
    ) -> list[Part]: ...
    def discard(self, reason: str) -> None: ...
    def error(
        self, cls: type[AccountError], message: str, *, line: str = "", standard: str = ""
    ) -> AccountError: ...


def check_version(session: Session, capabilities: frozenset[str]) -> frozenset[str]:
    """``capabilities`` when they name IMAP4rev1 or IMAP4rev2.

    Raises:
        ProtocolError: neither is named (RFC 9051 section 7.2.2).
    """
    if not capabilities & {"IMAP4REV1", "IMAP4REV2"}:
        raise session.error(
            ProtocolError,
            "server speaks neither IMAP4rev1 nor IMAP4rev2",
            standard="RFC 9051 section 7.2.2",
        )
    return capabilities


async def ask_capability(session: Session) -> frozenset[str]:
    """One CAPABILITY command; its atoms upper-cased (RFC 9051 section 6.1.1).

    Raises:
        ProtocolError: refused, broken, or no IMAP4rev1/IMAP4rev2 named.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for ``call``.
    """
    lines = await session.command("CAPABILITY", IMAPClient.capability)
    return check_version(
        session, frozenset().union(*(wire.parse_capability(text_of(line)) for line in lines))
    )


async def capabilities_before_sign_in(
    session: Session, context: ssl.SSLContext | None, *, preauth: bool
) -> frozenset[str]:
    """The capabilities to sign in with; with ``tls = "starttls"``, STARTTLS first.

    Round trips: none when the greeting carried ``[CAPABILITY ...]`` (or aioimaplib asked already),
    else one; STARTTLS adds its own and one CAPABILITY after it (RFC 9051 section 6.2.1).

    Args:
        session: the connection, greeted.
        context: the TLS context for STARTTLS (None unless ``settings.tls`` is ``"starttls"``
            or ``"implicit"``).
        preauth: the greeting was PREAUTH.

    Raises:
        ProtocolError: PREAUTH before STARTTLS, no STARTTLS offered (RFC 9051 section 6.2.1),
            STARTTLS refused, or no IMAP4rev1/IMAP4rev2.
        ThrottledError, NetworkTimeout, ConnectError, TransientError: as for ``call``.
    """
    settings = session.settings
    client = session.client
    if settings.tls != "starttls":
        known = client.greeting_capabilities or client.announced_capabilities
        return check_version(session, known) if known else await ask_capability(session)
    if preauth:
        session.discard("PREAUTH before STARTTLS")
        raise session.error(
            ProtocolError, "PREAUTH greeting: STARTTLS impossible", standard="RFC 9051 section 6.2.1"
        )
    offered = client.greeting_capabilities
    if offered is None:
        offered = await ask_capability(session)
    if "STARTTLS" not in offered:
        raise session.error(ProtocolError, "server offers no STARTTLS", standard="RFC 9051 section 6.2.1")
    assert context is not None
    tls_context = context
    reply = await session.call(
        "STARTTLS", lambda: client.starttls(tls_context, settings.host, settings.timeout_s)
    )
    _lines, status = session.completion(reply, "STARTTLS")
    if not status.ok:
        raise session.refused(status, "STARTTLS")
    return await ask_capability(session)


async def sign_in(session: Session, capabilities: frozenset[str]) -> frozenset[str]:
    """Sign in: AUTHENTICATE when a SASL mechanism fits (:func:`maild.auth.imap.authenticate`:
    ``AUTH=`` atoms, ``SASL-IR``; always for ``auth = "oauth2"``), else LOGIN with the password.

    Returns:
        The capabilities after sign-in (the completion's ``[CAPABILITY ...]``, else one CAPABILITY).

    Standard: RFC 9051 sections 6.2.2 (AUTHENTICATE), 6.2.3 (LOGIN), 7.1 (CAPABILITY code).

    Raises:
        AuthError: refused without a session code, or the user name or password holds CR, LF or NUL.
        ThrottledError: refused with ``[UNAVAILABLE]``, ``[LIMIT]`` or ``[INUSE]`` (RFC 5530).
        ProtocolError: LOGINDISABLED, BAD, or a broken response.
        NetworkTimeout, ConnectError, TransientError: as for ``call``.
    """
    transport = AuthenticateOver(session)
    if await imap_auth.authenticate(transport, capabilities, session.settings):
        status = transport.final
        if status is not None and status.code == "CAPABILITY":
            return wire.parse_capability(status.code_args)
        return await ask_capability(session)
    return await _password_login(session, capabilities)


async def _password_login(session: Session, capabilities: frozenset[str]) -> frozenset[str]:
    settings = session.settings
    if "LOGINDISABLED" in capabilities:
        raise session.error(
            ProtocolError, "server disables LOGIN here (use TLS)", standard="RFC 9051 section 6.2.3"
        )
    password = settings.password.reveal()
    try:
        user = wire.quote_astring(settings.username)
        quoted = wire.quote_astring(password)  # the check, and the form: aioimaplib quotes it alike
    except ValueError:
        raise session.error(AuthError, "user name or password contains CR, LF or NUL") from None
    # a server echoing the LOGIN line: its arguments masked like the password, whatever its length
    settings.password.add_forms([f"{user} {quoted}"])
    client = session.client
    _lines, status = session.completion(
        await session.call("LOGIN", lambda: client.login(user, password)), "LOGIN"
    )
    if status.condition == "NO" and status.code not in SESSION_CODES:
        raise session.error(AuthError, f"LOGIN refused: {status.describe()}")
    if not status.ok:
        raise session.refused(status, "LOGIN")
    if status.code == "CAPABILITY":
        return wire.parse_capability(status.code_args)
    return await ask_capability(session)


async def maybe_compress(session: Session, capabilities: frozenset[str]) -> None:
    """COMPRESS DEFLATE when :func:`maild.policy.want_compression` says so for this server now.

    A NO or BAD leaves the connection uncompressed (RFC 4978 section 3).

    Raises:
        NetworkTimeout, ConnectError, TransientError, ProtocolError: as for ``call``.
    """
    client = session.client
    if client.compressed:
        return
    settings = session.settings
    offered = "COMPRESS=DEFLATE" in capabilities
    rate = link_rate(settings.host, settings.port)
    if not want_compression(settings.compress, offered=offered, link_octets_per_s=rate):
        return
    _lines, status = session.completion(await session.call("COMPRESS", client.compress), "COMPRESS")
    if status.ok:
        _log.debug("imap.compress", account=session.account, link_octets_per_s=rate)
    else:
        _log.info("imap.compress-refused", account=session.account, status=status.describe())
