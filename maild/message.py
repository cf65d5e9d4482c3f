"""Header summaries of RFC 5322 messages, for queries and comparison, and the one header-field scanner.

:func:`scan_header` finds a header section's end and the fields asked for; the summary
(:func:`summarise`) and the MIME walk (:mod:`maild.archive.mime`) both use it, and the store path
scans each message's top-level header once for both (:mod:`maild.archive.parse`).

Parsing never fails: a broken or missing field becomes None, so a malformed message is still stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

from maild.model import HeaderSummary

# Only the header section is parsed; cap it so a message without a blank line costs nothing extra.
MAX_HEADER_OCTETS = 256 * 1024
SUMMARY_FIELDS = (b"message-id", b"date", b"from", b"to", b"cc", b"subject")
"""The fields :func:`summarise` reads (lower-case names)."""
DECODE_CACHE_ENTRIES = 4096
"""Decoded field bodies remembered by :func:`decode_field` (From and To repeat from message to
message: an office's correspondents, the account's own address); the cache is emptied when full."""
DECODE_CACHE_MAX_OCTETS = 512
"""Only field bodies up to this many octets are remembered, so the cache holds at most about 2 MiB."""
_FIELD_BODY_RE = re.compile(rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)")
_decoded: dict[bytes, str] = {}
"""The decode cache; batches are prepared in worker threads, and each access is one dict operation."""
_NAMES_RE: dict[tuple[bytes, ...], re.Pattern[bytes]] = {}


class HeaderScan(NamedTuple):
    """One pass over a header section: where it ends and the fields asked for.

    A named tuple, not a frozen dataclass: one or more are made for every message stored, and a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``.

    Attributes:
        head_end: offset of the end of the header section (the empty line's first octet, or the end
            of the window searched when there is no empty line).
        body_start: offset of what follows the empty line (the body).
        fields: (lower-case name, raw field body with its folding line breaks) of each field asked
            for, in order of appearance.
    """

    head_end: int
    body_start: int
    fields: list[tuple[bytes, bytes]]


def blank_line(raw: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Find the first empty line (``\\r?\\n\\r?\\n``) in ``raw[start:end]``: (where it starts, where what
    follows starts), or None. Two ``bytes.find`` calls, several times faster than a regular expression
    scanning the header section (RFC 5322 section 2.1: the empty line ends the header section)."""
    crlf = raw.find(b"\n\r\n", start, end)  # CRLF mail: found soon; then LF is sought only before it
    lf = raw.find(b"\n\n", start, end if crlf < 0 else crlf + 1)
    if lf >= 0:
        first, after = lf, lf + 2
    elif crlf >= 0:
        first, after = crlf, crlf + 3
    else:
        return None
    return (first - 1 if first > start and raw[first - 1] == 0x0D else first), after


def header_fields(head: bytes, names: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
    """The fields called ``names`` (lower-case) in the header section ``head``, in order of appearance.

    Returns:
        (lower-case name, raw field body with its folding line breaks) for each; names are matched
        case-insensitively at the start of a line (RFC 5322 section 2.2). Found by one regular
        expression of the names over a lower-cased copy (a case-insensitive expression over the
        original was several times slower; one ``bytes.find`` pass per name, a third slower).
    """
    pattern = _NAMES_RE.get(names)
    if pattern is None:
        if len(_NAMES_RE) >= 64:  # callers use a few fixed tuples; bound it anyway
            _NAMES_RE.clear()
        alternatives = b"|".join(re.escape(name) for name in names)
        pattern = _NAMES_RE[names] = re.compile(rb"\n(" + alternatives + rb")[ \t]*:")
    found: list[tuple[bytes, bytes]] = []
    for match in pattern.finditer(b"\n" + head.lower()):
        body = _FIELD_BODY_RE.match(head, match.end(1) - 1)  # the lower-cased copy is shifted by one
        if body:
            found.append((match.group(1), body.group(1)))
    return found


def scan_header(
    raw: bytes,
    names: tuple[bytes, ...],
    start: int = 0,
    end: int | None = None,
    limit: int = MAX_HEADER_OCTETS,
) -> HeaderScan:
    """Find the end of the header section at ``start`` and the fields ``names`` in it, in one pass.

    Args:
        raw: the message (or a part of it: ``start``/``end`` are offsets into ``raw``).
        names: lower-case field names wanted.
        start, end: the part to read; ``end`` None is the end of ``raw``.
        limit: octets searched for the empty line; a longer header section is cut there.

    Returns:
        The header section's end, the body's start and the fields. A part that starts with an
        empty line has no header fields (RFC 5322 section 2.1).
    """
    stop = len(raw) if end is None else end
    if raw.startswith(b"\r\n", start):
        return HeaderScan(start, start + 2, [])
    if raw.startswith(b"\n", start):
        return HeaderScan(start, start + 1, [])
    window_end = min(stop, start + limit)
    blank = blank_line(raw, start, window_end)
    head_end, body_start = blank if blank else (window_end, window_end)
    return HeaderScan(head_end, body_start, header_fields(raw[start:head_end], names))


def header_section(raw: bytes) -> bytes:
    """Return the header section of ``raw`` (RFC 5322 section 2.1): up to the first empty line.

    Args:
        raw: the message, CRLF or LF line endings.

    Returns:
        At most :data:`MAX_HEADER_OCTETS` octets, without the empty line.
    """
    if raw.startswith((b"\r\n", b"\n")):
        return b""
    blank = blank_line(raw, 0, MAX_HEADER_OCTETS)
    return raw[: blank[0] if blank else MAX_HEADER_OCTETS]


def same_header_section(archived: bytes, served: bytes) -> bool:
    """Whether the archived message ``archived`` and the header section a server sends for it now
    (``served``: the body of a POP3 ``TOP n 0`` reply, un-stuffed, RFC 1939 section 7; or an IMAP
    ``BODY.PEEK[HEADER]``, RFC 9051 section 6.4.5) have the same header section (RFC 5322 section
    2.1), compared octet for octet.

    The whole sections are compared, however long (not cut at :data:`MAX_HEADER_OCTETS`: two
    messages alike in their first 256 KiB are not the same). The line end before the empty line
    belongs to neither side: :func:`header_section` keeps the last CRLF of a message that is all
    header (no empty line, no body) but not the one before an empty line, and servers send that
    empty line (RFC 1939 words TOP as "the headers ..., the blank line separating the headers from
    the body"; IMAP's ``HEADER`` includes it). An empty header section (0 octets, or a message that
    starts with the empty line) proves nothing and never matches: another header-less message under
    the same UIDL or UID would be taken for the archived one (session 13's reviews).

    Used by :mod:`maild.fetch.pop3_check` and :mod:`maild.fetch.resync` before anything is deleted.
    """
    section = _whole_header_section(archived)
    return bool(section) and section == _whole_header_section(served)


def _whole_header_section(raw: bytes) -> bytes:
    """The header section of ``raw``, however long, without its final CRLF or LF."""
    if raw.startswith((b"\r\n", b"\n")):
        return b""
    blank = blank_line(raw, 0, len(raw))
    section = raw[: blank[0]] if blank else raw
    if section.endswith(b"\r\n"):
        return section[:-2]
    return section[:-1] if section.endswith(b"\n") else section


def decode_field(value: bytes) -> str:
    """Decode a field body: RFC 2047 encoded-words, then raw UTF-8 (RFC 6532), else Latin-1.

    Short bodies are remembered (:data:`DECODE_CACHE_ENTRIES`): the stdlib's RFC 2047 decoder was
    the largest part of the header summary's CPU, and the same From and To come again and again.

    Returns:
        Readable text with runs of white space folded to single spaces.
    """
    cached = _decoded.get(value)
    if cached is not None:
        return cached
    text = _decode_field(value)
    if len(value) <= DECODE_CACHE_MAX_OCTETS:
        if len(_decoded) >= DECODE_CACHE_ENTRIES:
            _decoded.clear()
        _decoded[value] = text
    return text


def _decode_field(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
        valid_utf8 = True
    except UnicodeDecodeError:
        text = value.decode("utf-8", "surrogateescape")
        valid_utf8 = False
    if "=?" not in text:  # no encoded word: the stdlib decoder would return the text unchanged
        return " ".join((text if valid_utf8 else value.decode("latin-1")).split())
    words = _only_encoded_words(text)
    if words is not None:
        return " ".join(words.split())
    # imported here: a fetch that stores nothing, and most header fields, never need the stdlib's
    # RFC 2047 decoder (email.header with email.charset, quopri, base64mime: 3 ms of every start-up;
    # docs/performance.md, "Session 10: fixed costs")
    import email.errors
    import email.header

    try:
        decoded = str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        decoded = text
    # decoded words are strict; only undecodable octets outside them come back as surrogates
    if not valid_utf8 and any("\udc80" <= c <= "\udcff" for c in decoded):
        decoded = value.decode("latin-1")
    return " ".join(decoded.split())


_ENCODED_WORD_RE = re.compile(r"=\?([^?]*?)\?([qQbB])\?(.*?)\?=")
"""An RFC 2047 section 2 encoded-word, exactly as the stdlib's ``email.header.ecre`` finds one."""
_LINE_BREAK_RE = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e]")
"""The ASCII characters ``str.splitlines`` (so ``email.header.decode_header``) breaks lines at."""
_Q_ESCAPE_RE = re.compile(rb"=[a-fA-F0-9]{2}")
_SAME_CODEC_CHARSETS = frozenset(
    ("utf-8", "us-ascii", "iso-8859-1", "iso-8859-2", "iso-8859-15", "windows-1252")
)
"""Charsets whose ``email.charset.Charset`` input and output codec is the charset itself (``us-ascii``:
none, which means ``us-ascii``), and that encode back whatever they decode: for these the stdlib's
``make_header`` gives the words' octets decoded, nothing more (tests/unit/test_fast_paths.py)."""


def _only_encoded_words(text: str) -> str | None:
    """``text`` (ASCII, one line) made only of RFC 2047 encoded-words of one of
    :data:`_SAME_CODEC_CHARSETS`, with at most white space between them, decoded exactly as
    ``str(email.header.make_header(email.header.decode_header(text)))`` decodes it; None for any other
    text (and for words the stdlib would refuse), which goes to the stdlib.

    The usual encoded Subject of mail (one charset, one or more words) takes a few microseconds here,
    against 15-20 through ``email.header`` (docs/performance.md, "Session 11: the store path's user
    time"). Standard: RFC 2047 sections 2, 4.1 (B), 4.2 (Q) and 6.2 (white space between words).
    """
    if not text.isascii() or _LINE_BREAK_RE.search(text):
        return None
    import binascii  # here: maild.message is imported by every command, binascii only needed now

    charset = None
    octets = []
    pos = 0
    for match in _ENCODED_WORD_RE.finditer(text):
        gap = text[pos : match.start()]
        if gap and (pos == 0 or not gap.isspace()):  # text before the first word, or between words
            return None
        pos = match.end()
        name, encoding, payload = match.groups()
        name = name.lower()
        if charset is None:
            if name not in _SAME_CODEC_CHARSETS:
                return None
            charset = name
        elif name != charset:
            return None
        data = payload.encode("ascii")
        if encoding in "qQ":
            octets.append(_Q_ESCAPE_RE.sub(_q_octet, data.replace(b"_", b" ")))
        else:
            if len(data) % 4:
                data += b"==="[: 4 - len(data) % 4]
            try:
                octets.append(binascii.a2b_base64(data) if data else b"")
            except binascii.Error:
                return None
    if charset is None or pos != len(text):
        return None
    try:
        return b"".join(octets).decode(charset)
    except UnicodeDecodeError:
        return None


def _q_octet(match: re.Match[bytes]) -> bytes:
    """``=XX`` (either case) -> its octet, as the stdlib's ``quoprimime.header_decode`` decodes it."""
    return bytes((int(match[0][1:], 16),))


#: The usual form of an RFC 5322 section 3.3 date-time, ``Mon, 08 Jan 2024 08:56:00 +0200``: read by
#: :func:`parse_date` without the stdlib's general parser. Only a subset of what that parser takes
#: (a four-digit year from 1000, a numeric zone other than ``-0000``, nothing after it), read the same
#: way; any other form goes to the stdlib (a property of tests/unit/test_message.py compares the two).
_USUAL_DATE = re.compile(
    r"(?:[A-Za-z]{3}, )?([0-9]{1,2}) ([A-Za-z]{3}) ([1-9][0-9]{3}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})\Z"
)
_MONTH_NUMBERS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ZONES: dict[str, timezone] = {}
"""The zones of the numeric offsets seen (at most 24 * 60 * 2 of them), made once each."""


def _usual_date(value: str) -> datetime | bool | None:
    """``value`` in the usual form read as :func:`parse_date` reads it (None: not a valid date), or
    False when it is not in that form (the stdlib's parser decides)."""
    match = _USUAL_DATE.match(value)
    if match is None:
        return False
    day, month_name, year, hour, minute, second, zone_text = match.groups()
    month = _MONTH_NUMBERS.get(month_name.lower())
    if month is None or zone_text == "-0000":
        return False
    zone = _ZONES.get(zone_text)
    if zone is None:
        offset = int(zone_text[1:3]) * 3600 + int(zone_text[3:5]) * 60
        try:
            zone = timezone(timedelta(seconds=-offset if zone_text[0] == "-" else offset))
        except ValueError:  # 24 hours or more: the stdlib's datetime refuses it too
            return None
        _ZONES[zone_text] = zone
    try:
        return datetime(
            int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone
        ).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_date(value: str) -> datetime | None:
    """Parse an RFC 5322 section 3.3 date-time; return it in UTC, or None when unparseable."""
    usual = _usual_date(value)
    if usual is not False:
        return usual if isinstance(usual, datetime) else None
    import email.utils  # here: only a date not in the usual form needs the stdlib's parser (1.4 ms)

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
        Message-ID, Date (UTC), From, To, Cc and Subject; each None when absent or unusable.
    """
    return summary_of(scan_header(raw, SUMMARY_FIELDS).fields)


def summary_of(found: list[tuple[bytes, bytes]]) -> HeaderSummary:
    """The header summary from the fields :func:`scan_header` found (any names; the first of each of
    :data:`SUMMARY_FIELDS` is used, unfolded per RFC 5322 section 2.2.3, then decoded)."""
    get = dict(reversed(found)).get  # the first of each name: later ones are overwritten by it
    # Message-ID and Date differ from message to message: decoded without the cache, which they
    # would only fill (and empty) for the From and To that repeat; the same text either way.
    date_text = _unfolded(get(b"date"), _decode_field)
    return HeaderSummary(
        message_id=_unfolded(get(b"message-id"), _decode_field),
        date=parse_date(date_text) if date_text else None,
        from_=_unfolded(get(b"from"), decode_field),
        to=_unfolded(get(b"to"), decode_field),
        subject=_unfolded(get(b"subject"), decode_field),
        cc=_unfolded(get(b"cc"), decode_field),
    )


def _unfolded(value: bytes | None, decode: Callable[[bytes], str]) -> str | None:
    """A raw field body unfolded (its line breaks removed, RFC 5322 section 2.2.3), stripped and
    decoded; None when absent or empty. Most bodies have no line break: they are not copied for it."""
    if value is None:
        return None
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return decode(value.strip()) or None


def sha256_hex(raw: bytes) -> str:
    """Return the SHA-256 of ``raw`` as 64 lower-case hex digits: the message's identity in the archive."""
    return hashlib.sha256(raw).hexdigest()
