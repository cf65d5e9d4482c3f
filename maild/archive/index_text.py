"""What the full-text index holds for one message: header text, body text and attachment file names.

Runs on the fetch path (in :func:`maild.archive.batches._prepare`'s worker thread), so it is one cheap
pass: :func:`maild.archive.parse.parse` (shared with the header summary) finds the parts without
parsing bodies, then only the text parts
shown inline are decoded (no more than the text still wanted, HTML up to :data:`MAX_TEXT_PART_OCTETS`),
HTML is reduced to text with regular expressions, and the whole body text is cut at
:data:`MAX_BODY_CHARS`: what follows is not searchable.

What this module extracts is what :mod:`maild.archive.fts` must hand FTS5 again to remove a row:
changing it needs a schema migration that rebuilds the index.

Standard: RFC 5322 (From, To, Cc, Subject), RFC 2047 (encoded words), RFC 2045/2046 (parts, charsets).
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass

from maild.archive.parse import ParsedMessage, parse
from maild.message import decode_field

MAX_TEXT_PART_OCTETS = 512 * 1024
"""Encoded octets of one HTML part decoded for the index (markup and all); the rest is not indexed."""
MAX_BODY_CHARS = 5_000
"""Characters of body text indexed per message: about 750 words, a letter of a page and a half. What
follows them (the rest of a long text; in a reply, usually the quoted earlier messages, which are
indexed with those messages) is **not searchable**. Tokenising the text is most of what the index
costs on the fetch path: with 200,000 (the first limit) indexing added 34-42 % to the fetch's CPU on
the benchmark's corpus, whose bodies hold 10.6 KB of text on average (docs/performance.md, "Full-text
search")."""
PLAIN_OCTETS_PER_CHAR = 6
"""Encoded octets decoded per character still wanted from a text/plain part: a quoted-printable
UTF-8 umlaut takes six (``=C3=BC``), so the limit never cuts text that would have been kept."""

_SCRIPT_RE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_BLOCK_RE = re.compile(r"<(?:br|p|div|li|tr|h[1-6]|table|hr)\b[^>]*>", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")
_LINES_RE = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class IndexText:
    """The columns of one row of the full-text index (``messages_fts``), in column order.

    Attributes:
        sender: the From field, decoded.
        recipients: the To and Cc fields, decoded.
        subject: the Subject field, decoded.
        body: decoded text of the text/plain parts shown inline or, when there are none (HTML-only
            mail), of the text/html parts reduced to text; a multipart/alternative's HTML twin of
            its plain text is not indexed twice.
        attachments: the file names of all parts, one per line.
    """

    sender: str
    recipients: str
    subject: str
    body: str
    attachments: str

    def row(self) -> tuple[str, str, str, str, str]:
        """The values in column order."""
        return (self.sender, self.recipients, self.subject, self.body, self.attachments)


def html_text(markup: str) -> str:
    """Reduce HTML to text cheaply: scripts, styles and comments dropped, tags removed, entities decoded.

    Returns:
        The text, a line break for each block element, runs of blanks folded.
    """
    text = _COMMENT_RE.sub(" ", _SCRIPT_RE.sub(" ", markup))
    text = _TAG_RE.sub("", _BLOCK_RE.sub("\n", text))
    return _LINES_RE.sub("\n", _SPACE_RE.sub(" ", html.unescape(text))).strip()


def _decode(data: bytes, charset: str | None) -> str:
    name = charset or "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    try:
        return data.decode(name, "replace")
    except (LookupError, ValueError):  # codecs such as 'rot13' are not text encodings
        return data.decode("utf-8", "replace")


def index_text(raw: bytes, parsed: ParsedMessage | None = None) -> IndexText:
    """Extract what the full-text index holds for ``raw``. Never raises on a malformed message.

    Args:
        raw: the message as stored.
        parsed: its header summary, Cc fields and MIME parts from :func:`maild.archive.parse.parse`
            when the caller has them (the store does: one pass serves the summary and the index);
            None to parse here. From, To and Subject come from the summary; Cc from every Cc field.

    Returns:
        The index columns; empty strings for what the message lacks.
    """
    if parsed is None:
        parsed = parse(raw)
    summary = parsed.summary
    cc = "\n".join(value for value in map(decode_field, parsed.cc_fields) if value)
    leaves = parsed.leaves
    names = [leaf.filename for leaf in leaves if leaf.filename]
    shown = [leaf for leaf in leaves if leaf.disposition != "attachment"]
    kind = "text/plain" if any(leaf.content_type == "text/plain" for leaf in shown) else "text/html"
    bodies: list[str] = []
    size = 0
    for leaf in shown:
        if size >= MAX_BODY_CHARS:
            break
        if leaf.content_type == kind:
            wanted = MAX_BODY_CHARS - size
            limit = MAX_TEXT_PART_OCTETS if kind == "text/html" else wanted * PLAIN_OCTETS_PER_CHAR
            text = _decode(leaf.decoded(raw, limit), leaf.charset)
            if kind == "text/html":
                text = html_text(text)
            bodies.append(text[: MAX_BODY_CHARS - size])
            size += len(bodies[-1])

    return IndexText(
        sender=summary.from_ or "",
        recipients="\n".join(v for v in (summary.to, cc) if v),
        subject=summary.subject or "",
        body="\n".join(bodies),
        attachments="\n".join(names),
    )
