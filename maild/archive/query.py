"""Queries of the archive for people and programs: what ``maild messages list|show|raw`` print.

Reads go through :class:`maild.archive.reader.ArchiveReader` (SQLite ``mode=ro``), so they work while the
daemon runs and never write. A message's ID is the SHA-256 of its octets (64 hex digits); any
unique prefix of at least :data:`MIN_ID_DIGITS` digits names it too.
"""

from __future__ import annotations

import email.errors
import email.policy
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from html.parser import HTMLParser
from typing import Any

from maild.archive.mime import walk
from maild.archive.reader import ArchivedMessage, ArchiveReader, SearchHit
from maild.errors import QueryError
from maild.message import sha256_hex

MIN_ID_DIGITS = 8
_ID_RE = re.compile(r"[0-9a-f]{%d,64}" % MIN_ID_DIGITS)  # noqa: UP031 - a regex quantifier
_SHOWN_HEADERS = ("Date", "From", "To", "Cc", "Subject", "Message-ID")
_BLOCK_TAGS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"})
# email's header and content parsers raise these on malformed input; a query must still answer.
_PARSE_ERRORS = (ValueError, LookupError, TypeError, IndexError, AttributeError, email.errors.MessageError)


def parse_since(text: str) -> datetime:
    """Parse ``--since``: ``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (UTC unless offset).

    Raises:
        QueryError: another form.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(
            f"expected a date such as 2026-11-30 or 2026-11-30T09:00+01:00, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_id(reader: ArchiveReader, text: str) -> str:
    """Return the full SHA-256 that ``text`` (a SHA-256 or a unique prefix of it) names.

    Raises:
        QueryError: not 8 to 64 hex digits, no such message, or a prefix matching several messages.
    """
    wanted = text.strip().lower()
    if not _ID_RE.fullmatch(wanted):
        raise QueryError(
            f"message ID must be {MIN_ID_DIGITS} to 64 hex digits (a SHA-256 or a prefix of one),"
            f" got {text!r}"
        )
    matches = reader.sha256_with_prefix(wanted)
    if not matches:
        raise QueryError(f"no message with ID {wanted} in the archive")
    if len(matches) > 1:
        many = len(matches) > 5
        shown = ", ".join(m[:16] for m in matches[:5]) + (", ..." if many else "")
        raise QueryError(
            f"message ID {wanted} is ambiguous: it starts {'more than 5' if many else len(matches)}"
            f" messages' IDs ({shown}); give more digits"
        )
    return matches[0]


def on_server(message: ArchivedMessage) -> bool:
    """Tell whether some account's server still held the message at its last fetch cycle."""
    return any(loc.state == "on-server" for loc in message.locations)


def accounts_of(message: ArchivedMessage) -> list[str]:
    """The accounts the message is linked to, sorted, each once."""
    return sorted({loc.account for loc in message.locations})


def message_json(message: ArchivedMessage) -> dict[str, Any]:
    """The JSON object ``maild messages list --json`` prints for one message (see docs/archive.md)."""
    return {
        "id": message.sha256,
        "date": message.date,
        "from": message.from_header,
        "to": message.to_header,
        "cc": message.cc_header,
        "subject": message.subject,
        "message_id": message.message_id,
        "size_octets": message.size_octets,
        "stored_at": message.stored_at,
        "accounts": accounts_of(message),
        "on_server": on_server(message),
        "locations": [
            {"account": loc.account, "mailbox": loc.mailbox, "state": loc.state} for loc in message.locations
        ],
    }


def _char_width(char: str) -> int:
    """Terminal columns of one character: 0 for combining marks and controls, 2 for East Asian wide."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _width(text: str) -> int:
    return len(text) if text.isascii() else sum(_char_width(c) for c in text)


def _cell(text: str | None, width: int) -> str:
    """``text`` on one line, cut with ``…`` and padded with blanks to exactly ``width`` terminal columns
    (wide characters such as CJK or emoji count two, combining accents none)."""
    value = " ".join((text or "").split())
    if _width(value) > width:
        kept: list[str] = []
        used = 0
        for char in value:
            w = _char_width(char)
            if used + w > width - 1:
                break
            kept.append(char)
            used += w
        value = "".join(kept) + "…"
    return value + " " * (width - _width(value))


SizeText = Callable[[int], str]
"""How a table shows a size in octets to a person; the CLI passes ``maild.cli.units.human_size``
(this layer may not import the CLI)."""


def render_list(messages: list[ArchivedMessage], size_text: SizeText = str) -> str:
    """A table: ID prefix, date (UTC), from, subject, size (``size_text`` of the octets), accounts,
    on-server state.

    Columns line up in a terminal: text is cut and padded by display width, and the accounts column is
    as wide as its widest entry.
    """
    accounts = [",".join(accounts_of(m)) for m in messages]
    width = max([len("ACCOUNTS"), *(_width(a) for a in accounts)])
    header = f"{'ID':<12}  {'DATE (UTC)':<16}  {'FROM':<28}  {'SUBJECT':<40}  {'SIZE':>9}"
    lines = [f"{header}  {'ACCOUNTS':<{width}}  STATE"]
    for m, names in zip(messages, accounts, strict=True):
        date = m.date[:16].replace("T", " ") if m.date else "-"
        state = "on-server" if on_server(m) else "archive-only"
        lines.append(
            f"{m.sha256[:12]}  {date:<16}  {_cell(m.from_header, 28)}  {_cell(m.subject, 40)}"
            f"  {size_text(m.size_octets):>9}  {_cell(names, width)}  {state}"
        )
    return "\n".join(lines)


class _TextExtractor(HTMLParser):
    """Crude HTML to text: drops script and style, breaks lines at block elements, keeps the rest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Render HTML as plain text, crudely: tags removed, entities decoded, one line per block."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def _part_text(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except _PARSE_ERRORS:
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def body_text(raw: bytes) -> str:
    """A text rendering of a message's body: its text/plain part, else its text/html part as text.

    Line ends are LF: the CRLF of the wire format (RFC 5322 section 2.1) and a stray CR become LF, as
    text on this system has them. The exact octets stay available (``maild messages raw``, export).

    Returns:
        the text, or a note in parentheses when the message has no text part.
    """
    msg = _parse(raw)
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except _PARSE_ERRORS:
        part = None
    if part is None:
        return "(no text part)\n"
    text = _part_text(part).replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        return html_to_text(text)
    return text if text.endswith("\n") else text + "\n"


def headers_and_attachments(raw: bytes) -> tuple[dict[str, str], list[str]]:
    """The shown header fields (decoded) and one line per attachment: name, type, decoded size."""
    msg = _parse(raw)
    fields: dict[str, str] = {}
    for name in _SHOWN_HEADERS:
        try:
            value = msg.get(name)
        except _PARSE_ERRORS:
            value = None
        if value is not None:
            fields[name] = " ".join(str(value).split())
    attachments: list[str] = []
    try:
        for part in msg.iter_attachments():
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            attachments.append(
                f"{part.get_filename() or '(unnamed)'} ({part.get_content_type()}, {size} octets)"
            )
    except _PARSE_ERRORS:
        pass
    return fields, attachments


def render_show(message: ArchivedMessage, size_text: SizeText | None = None) -> str:
    """What ``maild messages show`` prints: ID, headers, where the message is, attachments, body text.

    ``size_text`` renders the size for a person (``15.6 kB``); the exact octets follow in brackets.
    """
    assert message.raw is not None
    fields, attachments = headers_and_attachments(message.raw)
    lines = [f"ID: {message.sha256}"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    octets = f"{message.size_octets} octets"
    lines.append(f"Size: {size_text(message.size_octets)} ({octets})" if size_text else f"Size: {octets}")
    lines.append(f"Stored: {message.stored_at}")
    for loc in message.locations:
        where = f"{loc.account} {loc.mailbox}" if loc.mailbox else loc.account
        lines.append(f"Account: {where} ({loc.state})")
    lines += [f"Attachment: {a}" for a in attachments]
    return "\n".join(lines) + "\n\n" + body_text(message.raw)


def parts_json(raw: bytes) -> list[dict[str, Any]]:
    """Each leaf MIME part of ``raw`` as ``maild messages show --json`` lists it (see docs/archive.md).

    Returns:
        Objects ``{"part", "content_type", "filename", "disposition", "attachment", "size_octets",
        "sha256"}``: the IMAP section number, the decoded file name (or None), size and SHA-256 (hex)
        of the decoded content.
    """
    out: list[dict[str, Any]] = []
    for leaf in walk(raw):
        data = leaf.decoded(raw)
        out.append(
            {
                "part": leaf.part,
                "content_type": leaf.content_type,
                "filename": leaf.filename,
                "disposition": leaf.disposition,
                "attachment": leaf.is_attachment,
                "size_octets": len(data),
                "sha256": sha256_hex(data),
            }
        )
    return out


def show_json(message: ArchivedMessage) -> dict[str, Any]:
    """``maild messages show --json``: :func:`message_json`, decoded headers, parts, body text.

    ``attachments`` (one readable line per attachment) is kept for programs written against earlier
    versions; ``parts`` is the data.
    """
    assert message.raw is not None
    fields, attachments = headers_and_attachments(message.raw)
    return {
        **message_json(message),
        "headers": fields,
        "parts": parts_json(message.raw),
        "attachments": attachments,
        "body_text": body_text(message.raw),
    }


def search_json(hit: SearchHit) -> dict[str, Any]:
    """One object of ``maild messages search --json``: :func:`message_json` plus ``snippet`` and ``score``."""
    return {**message_json(hit.message), "snippet": hit.snippet, "score": score_value(hit.score)}


def score_value(score: float) -> float:
    """A BM25 score for output, to 4 significant digits (never ``-0.0``).

    FTS5 gives a word found in more than half of the messages a weight of 1e-6 (BM25's IDF would be
    negative), so such scores are tiny, e.g. ``-2.41e-06``; rounding to decimal places made them ``-0.0``.
    """
    return float(f"{score:.4g}") or 0.0


def render_search(hits: list[SearchHit], size_text: SizeText = str) -> str:
    """The search table: :func:`render_list`'s columns, each hit followed by its snippet, indented."""
    lines = render_list([h.message for h in hits], size_text).split("\n")
    out = lines[:1]
    for line, hit in zip(lines[1:], hits, strict=True):
        out.append(line)
        out.append("    " + " ".join(hit.snippet.split()))
    return "\n".join(out)
