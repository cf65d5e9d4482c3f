"""Sans-I/O SASL for the client side: which mechanism, what to send, how to answer a challenge.

Nothing here touches a socket. An adapter asks :func:`choose_mechanism` with what the server
advertised (IMAP ``CAPABILITY`` ``AUTH=...`` atoms, POP3 ``CAPA`` ``SASL`` parameters), builds a
:class:`ClientExchange` and then moves base64 lines between the exchange and the wire:

    exchange = ClientExchange(mechanism, username, secret, host=host, port=port)
    first = exchange.initial_line()            # goes on the AUTH/AUTHENTICATE line (SASL-IR)
    # ... for every "+ <base64>" continuation the server sends:
    reply = exchange.answer(challenge_line)    # the next line to send (may be b"" or b"*")
    # ... after the final status: exchange.error says why the server refused a token, if it said.

Mechanisms: ``PLAIN`` (RFC 4616), ``XOAUTH2`` (Google's and Microsoft's format, no RFC) and
``OAUTHBEARER`` (RFC 7628). ``LOGIN`` is not a mechanism here: with ``auth = "password"`` and no
``PLAIN`` offered, the adapters fall back to POP3 ``USER``/``PASS`` and IMAP ``LOGIN``.

Every secret-bearing value (the password or token, the raw initial response and its base64 form) is
listed by :meth:`ClientExchange.secrets` so that callers can redact anything a server echoes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from maild.errors import ProtocolError
from maild.secret import MIN_GLOBAL_REDACT_CHARS, mask_form, shown

__all__ = [
    "CANCEL_LINE",
    "MAX_CHALLENGE_OCTETS",
    "MECHANISMS",
    "OAUTH_MECHANISMS",
    "AuthMethod",
    "ClientExchange",
    "ErrorStatus",
    "Mechanism",
    "choose_mechanism",
    "decode_challenge",
    "encode_response",
    "imap_mechanisms",
    "imap_sasl_ir",
    "initial_response",
    "parse_error_status",
    "pop3_mechanisms",
    "redact",
]

Mechanism = Literal["PLAIN", "XOAUTH2", "OAUTHBEARER"]
AuthMethod = Literal["password", "oauth2"]

MECHANISMS: Final[tuple[Mechanism, ...]] = ("PLAIN", "XOAUTH2", "OAUTHBEARER")
#: Mechanisms that carry an OAuth2 bearer token, most preferred first: the standard one (RFC 7628)
#: where offered, else the proprietary one every large provider speaks.
OAUTH_MECHANISMS: Final[tuple[Mechanism, ...]] = ("OAUTHBEARER", "XOAUTH2")

CANCEL_LINE: Final = b"*"
"""The client's line that ends an exchange (RFC 5034 section 4, RFC 3501 section 6.2.2)."""

#: Largest decoded server challenge accepted, in octets. RFC 7628's error JSON is a few hundred
#: octets; PLAIN expects an empty one. The wire reader caps the line itself.
MAX_CHALLENGE_OCTETS: Final = 8192

#: XOAUTH2/OAUTHBEARER error statuses that mean "this token is not (or no longer) good": a fresh
#: token may work. Google answers ``400`` for an expired token; RFC 7628 section 3.2.2 and Dovecot
#: use ``invalid_token`` (RFC 6750 section 3.1); Microsoft-style servers ``401``.
_TOKEN_REJECTED: Final = frozenset({"400", "401", "invalid_token", "expired_token"})


def imap_mechanisms(capabilities: Iterable[str]) -> frozenset[str]:
    """The SASL mechanisms in an IMAP CAPABILITY list, upper-cased (``AUTH=XOAUTH2`` -> ``XOAUTH2``).

    Standard: RFC 3501 section 6.2.2 (``AUTH=`` capability atoms).
    """
    return frozenset(c[5:].upper() for c in capabilities if c.upper().startswith("AUTH=") and len(c) > 5)


def imap_sasl_ir(capabilities: Iterable[str]) -> bool:
    """Whether the server accepts an initial response on the AUTHENTICATE line (RFC 4959 ``SASL-IR``)."""
    return any(c.upper() == "SASL-IR" for c in capabilities)


def pop3_mechanisms(caps: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """The SASL mechanisms in a POP3 CAPA reply as parsed into tag -> parameters (``SASL PLAIN LOGIN``).

    Standard: RFC 2449 section 6.3; RFC 5034 section 5 (initial responses are always allowed).
    """
    return frozenset(m.upper() for m in caps.get("SASL", ()))


def choose_mechanism(offered: Iterable[str], auth: AuthMethod, forced: str | None = None) -> Mechanism | None:
    """Pick the mechanism to use, or None when none of ours fits.

    Args:
        offered: mechanism names the server advertised (any case).
        auth: ``"password"``: PLAIN when offered, else None (the caller falls back to USER/PASS or
            LOGIN). ``"oauth2"``: OAUTHBEARER, else XOAUTH2; PLAIN carries a token only when
            ``forced`` (some servers, Dovecot's oauth2 passdb among them, take a token as password).
        forced: the account's ``sasl_mechanism``; used only when the server offers it.

    Returns:
        The mechanism, or None: for ``"password"`` fall back to the plain login command; for
        ``"oauth2"`` there is no way to send a token, which the caller reports.
    """
    have = {m.upper() for m in offered}
    if forced is not None:
        name = forced.upper()
        return next((m for m in MECHANISMS if m == name and m in have), None)
    if auth == "password":
        return "PLAIN" if "PLAIN" in have else None
    return next((m for m in OAUTH_MECHANISMS if m in have), None)


def _saslname(username: str) -> str:
    """RFC 7628 section 3.1 / RFC 5801 section 4 ``saslname``: ``=`` and ``,`` escaped."""
    return username.replace("=", "=3D").replace(",", "=2C")


def initial_response(mechanism: Mechanism, username: str, secret: str, *, host: str, port: int) -> bytes:
    """The client's first message for ``mechanism``, not yet base64-encoded.

    - PLAIN: ``NUL username NUL password`` (no authorization identity; RFC 4616 section 2).
    - XOAUTH2: ``user=USERNAME ^A auth=Bearer TOKEN ^A ^A`` (Google's "XOAUTH2 mechanism"; Microsoft
      uses the same format).
    - OAUTHBEARER: GS2 header ``n,a=USERNAME,`` then ``^A``-separated ``host=``, ``port=`` and
      ``auth=Bearer TOKEN``, ending ``^A ^A`` (RFC 7628 section 3.1, kvsep = %x01).

    Raises:
        ValueError: ``username`` or ``secret`` contains NUL, CR, LF or ^A (they would change the
            message's structure); the message does not contain them.
    """
    for value in (username, secret, host):
        if any(c in value for c in "\0\r\n\x01"):
            raise ValueError("username, secret or host contains NUL, CR, LF or ^A")
    if mechanism == "PLAIN":
        return b"\0" + username.encode("utf-8") + b"\0" + secret.encode("utf-8")
    if mechanism == "XOAUTH2":
        return f"user={username}\x01auth=Bearer {secret}\x01\x01".encode()
    gs2 = f"n,a={_saslname(username)},"
    return f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01".encode()


def encode_response(raw: bytes) -> bytes:
    """Base64 of a client response; an empty initial response is ``=`` (RFC 4959 section 3,
    RFC 5034 section 4), so use this only for initial responses when ``raw`` may be empty."""
    return base64.b64encode(raw) if raw else b"="


def decode_challenge(text: bytes) -> bytes:
    """Decode the base64 text of a server challenge (the part after ``+ ``).

    Raises:
        ProtocolError: not base64, or longer than :data:`MAX_CHALLENGE_OCTETS` decoded
            (RFC 5034 section 4, RFC 3501 section 7.5).
    """
    text = text.strip()
    if len(text) > (MAX_CHALLENGE_OCTETS * 4) // 3 + 4:
        raise ProtocolError("SASL challenge too long", standard="RFC 5034 section 4")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("SASL challenge is not base64", standard="RFC 5034 section 4") from None


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """What an XOAUTH2/OAUTHBEARER server says when it refuses a token (a JSON object challenge).

    Attributes:
        status: the ``status`` member: an HTTP status (``"400"``, ``"401"``) or an RFC 6750 error
            code (``"invalid_token"``); ``""`` when missing.
        scope: the ``scope`` member, the scope the server wants; ``""`` when missing.
        schemes: the ``schemes`` member (``"bearer"``); ``""`` when missing.
    """

    status: str
    scope: str = ""
    schemes: str = ""

    @property
    def token_rejected(self) -> bool:
        """Whether the status says the token is invalid or expired, so a fresh token may succeed."""
        return self.status.lower() in _TOKEN_REJECTED

    def render(self) -> str:
        """Short text for errors and logs (holds nothing secret)."""
        parts = [f"status={self.status or '?'}"]
        if self.scope:
            parts.append(f"scope={self.scope}")
        return " ".join(parts)


def parse_error_status(challenge: bytes) -> ErrorStatus | None:
    """Parse a decoded XOAUTH2/OAUTHBEARER error challenge; None when it is not a JSON object.

    Standard: RFC 7628 section 3.2.2 (``status``, ``scope``, ``openid-configuration``); Google's
    XOAUTH2 document for the same members.
    """
    try:
        data = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None

    def member(name: str) -> str:
        value = data.get(name, "")
        # masked before the cut: a secret cut in two is not recognised later (QA of session 10)
        return shown(str(value), 200) if isinstance(value, str | int) else ""

    return ErrorStatus(status=member("status"), scope=member("scope"), schemes=member("schemes"))


class ClientExchange:
    """One client-side SASL exchange, without I/O.

    Lines given and returned are the base64 text of a ``+`` continuation and of the client's reply,
    without CRLF.

    Args:
        mechanism: the chosen mechanism.
        username: the login name.
        secret: password (PLAIN with ``auth = "password"``) or OAuth2 access token.
        host, port: the server's, for OAUTHBEARER's ``host=``/``port=`` (RFC 7628 section 3.1).

    Raises:
        ValueError: see :func:`initial_response`.
    """

    def __init__(self, mechanism: Mechanism, username: str, secret: str, *, host: str, port: int) -> None:
        self.mechanism: Mechanism = mechanism
        self._raw = initial_response(mechanism, username, secret, host=host, port=port)
        self._secret = secret
        self._sent_initial = False
        self._answered_error = False
        self.error: ErrorStatus | None = None
        """The server's error status, once it sent one (XOAUTH2/OAUTHBEARER only)."""

    def __repr__(self) -> str:
        return f"ClientExchange({self.mechanism}, <secret hidden>)"

    def initial_line(self) -> bytes:
        """The initial response in base64, to send on the AUTH/AUTHENTICATE command line (SASL-IR,
        RFC 4959; RFC 5034 section 4). Call at most once, and only when the server takes it."""
        self._sent_initial = True
        return encode_response(self._raw)

    def answer(self, challenge_line: bytes) -> bytes:
        """The reply line to a server continuation (``+ BASE64``; pass the part after ``+ ``).

        - No initial response sent yet: an empty challenge asks for it (RFC 4422 section 5).
        - XOAUTH2/OAUTHBEARER: a JSON error challenge is recorded in :attr:`error` and answered with
          an empty line (XOAUTH2) or ``AQ==`` (``%x01``, RFC 7628 section 3.2.3); the server then
          sends its final failure.
        - Anything else (a second challenge, a challenge PLAIN does not expect): ``*``, cancelling
          the exchange (RFC 5034 section 4, RFC 3501 section 6.2.2); the server then answers with a
          failure status.

        Raises:
            ProtocolError: the challenge is not base64 or too long.
        """
        challenge = decode_challenge(challenge_line)
        if not self._sent_initial and not challenge:
            return self.initial_line()
        if self.mechanism != "PLAIN" and self._sent_initial and not self._answered_error:
            status = parse_error_status(challenge)
            if status is not None:
                self.error = status
                self._answered_error = True
                return b"" if self.mechanism == "XOAUTH2" else base64.b64encode(b"\x01")
        return CANCEL_LINE

    def secrets(self) -> tuple[str, ...]:
        """Every form of the secret that may appear on the wire, longest first, for redaction: the
        base64 initial response (and it without padding) and the secret itself."""
        encoded = base64.b64encode(self._raw).decode("ascii")
        forms = {encoded, encoded.rstrip("="), self._secret}
        return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every one of ``secrets`` replaced by ``********``; one shorter than
    :data:`~maild.secret.MIN_GLOBAL_REDACT_CHARS` only where it is no part of a longer word
    (:func:`~maild.secret.mask_form`: a password ``a`` garbled every word of a refusal)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = mask_form(text, secret, whole=len(secret) < MIN_GLOBAL_REDACT_CHARS)
    return text
