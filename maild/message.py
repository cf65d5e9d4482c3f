"""Header summaries of RFC 5322 messages, for queries and comparison.

Parsing never fails: a broken or missing field becomes None, so a malformed message is still stored.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import hashlib
import re
from datetime import UTC, datetime

from maild.model import HeaderSummary

# Only the header section is parsed; cap it so a message without a blank line costs nothing extra.
MAX_HEADER_OCTETS = 256 * 1024
_EMPTY_LINE_RE = re.compile(rb"\r?\n\r?\n")
# The fields summarise() reads, each with its continuation lines (RFC 5322 section 2.2.3 folding).
_SUMMARY_FIELD_RE = re.compile(
    rb"^(message-id|date|from|to|subject)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


def header_section(raw: bytes) -> bytes:
    """Return the header section of ``raw`` (RFC 5322 section 2.1): up to the first empty line.

    Args:
        raw: the message, CRLF or LF line endings.

    Returns:
        At most :data:`MAX_HEADER_OCTETS` octets, without the empty line.
    """
    head = raw[:MAX_HEADER_OCTETS]
    if head.startswith((b"\r\n", b"\n")):
        return b""
    end = _EMPTY_LINE_RE.search(head)
    return head[: end.start()] if end else head


def _fields(head: bytes) -> dict[str, bytes]:
    """Map lower-case field name to its first unfolded body (RFC 5322 section 2.2.3), for the fields
    :func:`summarise` reads only: one regular expression over the section, no per-line Python loop."""
    found: dict[str, bytes] = {}
    for match in _SUMMARY_FIELD_RE.finditer(head):
        name = match.group(1).decode("ascii").lower()
        if name not in found:
            found[name] = match.group(2).replace(b"\r\n", b"").replace(b"\n", b"").strip()
    return found


def decode_field(value: bytes) -> str:
    """Decode a field body: RFC 2047 encoded-words, then raw UTF-8 (RFC 6532), else Latin-1.

    Returns:
        Readable text with runs of white space folded to single spaces.
    """
    try:
        text = value.decode("utf-8")
        valid_utf8 = True
    except UnicodeDecodeError:
        text = value.decode("utf-8", "surrogateescape")
        valid_utf8 = False
    if "=?" not in text:  # no encoded word: the stdlib decoder would return the text unchanged
        return " ".join((text if valid_utf8 else value.decode("latin-1")).split())
    try:
        decoded = str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        decoded = text
    # decoded words are strict; only undecodable octets outside them come back as surrogates
    if not valid_utf8 and any("\udc80" <= c <= "\udcff" for c in decoded):
        decoded = value.decode("latin-1")
    return " ".join(decoded.split())


def parse_date(value: str) -> datetime | None:
    """Parse an RFC 5322 section 3.3 date-time; return it in UTC, or None when unparseable."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000": time zone unknown; RFC 5322 section 3.3 says treat as UTC
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def summarise(raw: bytes) -> HeaderSummary:
    """Parse the header fields maild indexes from a raw message.

    Args:
        raw: the message as stored.

    Returns:
        Message-ID, Date (UTC), From, To and Subject; each None when absent or unusable.
    """
    fields = _fields(header_section(raw))

    def text(name: str) -> str | None:
        value = fields.get(name)
        if value is None:
            return None
        decoded = decode_field(value)
        return decoded or None

    date_text = text("date")
    return HeaderSummary(
        message_id=text("message-id"),
        date=parse_date(date_text) if date_text else None,
        from_=text("from"),
        to=text("to"),
        subject=text("subject"),
    )


def sha256_hex(raw: bytes) -> str:
    """Return the SHA-256 of ``raw`` as 64 lower-case hex digits: the message's identity in the archive."""
    return hashlib.sha256(raw).hexdigest()
