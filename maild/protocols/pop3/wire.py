"""Sans-I/O POP3 replies: status lines and the :class:`Reply` values the decoder makes.

Nothing here touches a socket. The session (:mod:`.session`) reads bytes from the server into a
:class:`~maild.protocols.pop3.decoder.ReplyDecoder` (:mod:`.decoder`), which cuts the stream into
:class:`Reply` values; the session turns them into maild's model; the bodies of listings (UIDL, LIST,
CAPA) are parsed by :mod:`.listings`.

Standards: RFC 1939 (POP3: status indicators section 3, byte-stuffing section 3, LIST section 5, UIDL
section 7), RFC 2449 (CAPA section 5, response codes section 8, PIPELINING section 6.6), RFC 3206 (the
``AUTH`` and ``SYS/TEMP``/``SYS/PERM`` response codes).

Errors raised here carry no account name (this layer does not know it); the adapter adds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maild.errors import ProtocolError
from maild.model import SpooledBody

__all__ = [
    "DEFAULT_MAX_REPLY_OCTETS",
    "MAX_STATUS_LINE_OCTETS",
    "TERMINATOR",
    "Reply",
    "StatusLine",
    "parse_status_line",
]

TERMINATOR = b"\r\n.\r\n"
"""End of a multi-line reply: CRLF, a line holding a single ".", CRLF (RFC 1939 section 3)."""

MAX_STATUS_LINE_OCTETS = 8192
"""Longest status line accepted, in octets without CRLF. RFC 2449 section 4 allows 512 octets including
CRLF; real servers stay below it, so 16 times that is lenient and still bounds the buffer on garbage."""

DEFAULT_MAX_REPLY_OCTETS = 100 * 2**20
"""Default cap on one reply, in octets (status line, body and terminator, before un-stuffing)."""

_CRLF = b"\r\n"
# RFC 2449 section 8: resp-code = "[" resp-level *("/" resp-level) "]", rchar = %x21-2E / %x30-5C / %x5E-7F.
_RESP_CODE_RE = re.compile(r"\[([\x21-\x2e\x30-\x5c\x5e-\x7e]+(?:/[\x21-\x2e\x30-\x5c\x5e-\x7e]+)*)\]")
_STATUS_RE = re.compile(rb"(\+OK|-ERR)(?:[ \t]+(.*))?", re.IGNORECASE | re.DOTALL)


def show_line(line: bytes) -> str:
    """Render a reply line for an error message: decoded leniently, at most 200 characters."""
    return line[:200].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class StatusLine:
    """A POP3 status line (RFC 1939 section 3) with its optional response code (RFC 2449 section 8).

    Attributes:
        ok: True for ``+OK``, False for ``-ERR``.
        code: the response code without brackets, upper-cased, levels separated by ``/``, e.g.
            ``"SYS/TEMP"``, ``"AUTH"``, ``"IN-USE"``, ``"LOGIN-DELAY"``; None when the line has none. A server
            that did not announce RESP-CODES may still send one; it is parsed the same way.
        text: the human-readable text after the indicator and code, stripped; may be empty.
    """

    ok: bool
    code: str | None
    text: str

    def has_code(self, code: str) -> bool:
        """Whether the response code is ``code`` or one of its sub-levels.

        ``has_code("SYS")`` is true for ``SYS/TEMP``; RFC 2449 section 8 makes codes hierarchical so that
        clients can act on the levels they know.

        Args:
            code: an upper-case code such as ``"SYS/TEMP"``.
        """
        return self.code is not None and (self.code == code or self.code.startswith(code + "/"))

    def render(self) -> str:
        """Return the line as the server sent it, normalised, e.g. ``"-ERR [SYS/TEMP] try later"``."""
        parts = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            parts.append(f"[{self.code}]")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def parse_status_line(line: bytes) -> StatusLine:
    """Parse one status line.

    Args:
        line: the line, with or without its trailing CRLF, e.g. ``b"-ERR [IN-USE] locked\\r\\n"``. The
            indicator is matched case-insensitively (lenient); text is decoded as UTF-8 with replacement.

    Returns:
        The parsed status line.

    Standard: RFC 1939 section 3 (``+OK``/``-ERR``), RFC 2449 section 8 (response codes), RFC 3206.

    Raises:
        ProtocolError: the line does not start with ``+OK`` or ``-ERR`` followed by whitespace or its end.
    """
    if line.endswith(_CRLF):
        line = line[:-2]
    match = _STATUS_RE.fullmatch(line)
    if match is None:
        raise ProtocolError("malformed POP3 status line", line=show_line(line), standard="RFC 1939 section 3")
    ok = match.group(1).upper() == b"+OK"
    text = (match.group(2) or b"").decode("utf-8", "replace").strip()
    code: str | None = None
    code_match = _RESP_CODE_RE.match(text)
    if code_match is not None:
        code = code_match.group(1).upper()
        text = text[code_match.end() :].strip()
    return StatusLine(ok=ok, code=code, text=text)


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete server reply.

    Attributes:
        status: the status line.
        body: for a multi-line ``+OK`` reply, the data lines after un-stuffing (RFC 1939 section 3): every
            line keeps its CRLF, the terminating ``.`` line is removed, octets are otherwise exactly as
            sent; ``b""`` for an empty listing or message. None for single-line replies and for ``-ERR``
            (which is always single-line), and for a body spooled or dropped (below).
        spooled: the body written to a spool file instead (:mod:`maild.spool`: a large RETR reply,
            :mod:`.spooling`), else None.
        spool_error: why a body that was to be spooled was read and dropped instead (the spool was
            full: the message is not retrieved this time), else None.
    """

    status: StatusLine
    body: bytes | None = None
    spooled: SpooledBody | None = None
    spool_error: str | None = None
