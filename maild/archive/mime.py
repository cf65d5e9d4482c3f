"""A cheap walk over a message's MIME structure: its leaf parts, their headers and where their bodies are.

Used on the fetch path (the full-text index, :mod:`maild.archive.index_text`) and by ``maild messages
show --json`` / ``maild messages attachment``. The stdlib parser (``email.parser``) splits every line of
every part, attachments included: a 2.7 MB message with a 2 MB PDF took 100 ms, three times what
fetching it costs. This walk reads only the MIME fields of each header section (with regular
expressions; the stdlib header parser cost more than the rest together) and finds boundaries with
``bytes.find``, so a part's body is never touched unless asked for:
the same message takes well under a millisecond (see docs/performance.md).

Part numbers are IMAP body section numbers (RFC 9051 section 6.4.5): a single-part message's body is
part ``1``; the children of a multipart are ``1``, ``2``, ...; those of part ``2`` are ``2.1``, ``2.2``.
An attached message (``message/rfc822``) is one leaf part, not descended into.

Standard: RFC 2045 (headers, transfer encodings), RFC 2046 section 5.1.1 (multipart boundaries),
RFC 2183 (Content-Disposition), RFC 2231 and RFC 2047 (encoded file names).
"""

from __future__ import annotations

import binascii
import email.errors
import email.header
import re
import urllib.parse
from dataclasses import dataclass
from typing import NamedTuple, overload

from maild.message import HeaderScan, scan_header

MAX_PARTS = 1000
"""Leaf parts listed per message; more are ignored (a hostile message may nest or repeat parts)."""
MAX_DEPTH = 20
"""Multipart nesting levels descended; deeper multiparts count as one leaf."""
MAX_PART_HEADER_OCTETS = 64 * 1024
"""Octets searched for the end of a part's header section; longer header sections are cut there."""

MIME_FIELDS = (b"content-type", b"content-disposition", b"content-transfer-encoding")
"""The header fields the walk reads from each part (lower-case)."""
_PARAM_RE = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf MIME part of a message.

    Attributes:
        part: IMAP body section number, e.g. ``"1"`` or ``"2.1"`` (RFC 9051 section 6.4.5).
        content_type: lower-case ``type/subtype``; ``text/plain`` when absent (RFC 2045 section 5.2).
        charset: the ``charset`` parameter, lower-case, or None.
        filename: the file name, decoded (RFC 2231 parameters, RFC 2047 words), or None.
        disposition: ``"inline"``, ``"attachment"`` or None when the part has no Content-Disposition.
        encoding: the Content-Transfer-Encoding, lower-case (``7bit`` when absent).
        start, end: the part's body as offsets into the raw message (encoded, as stored).
    """

    part: str
    content_type: str
    charset: str | None
    filename: str | None
    disposition: str | None
    encoding: str
    start: int
    end: int

    @overload
    def decoded(self, raw: bytes, limit: int | None = None) -> bytes: ...

    @overload
    def decoded(self, raw: memoryview, limit: int | None = None) -> bytes | memoryview: ...

    def decoded(self, raw: bytes | memoryview, limit: int | None = None) -> bytes | memoryview:
        """The body with its transfer encoding undone (base64, quoted-printable; others as stored).

        Args:
            raw: the whole message these offsets refer to, as bytes or a view of them (the attachment
                indexer passes a view, so that the encoded octets of a part are not copied first).
            limit: decode at most this many encoded octets (None: all).

        Returns:
            The decoded octets; undecodable base64 characters are skipped, as mail readers do. A part
            without a transfer encoding comes back as the slice of ``raw``: a view when ``raw`` is
            one (``bytes()`` copies it), else bytes.
        """
        end = self.end if limit is None else min(self.end, self.start + limit)
        body = raw[self.start : end]
        try:
            if self.encoding == "base64":
                return binascii.a2b_base64(body)
            if self.encoding == "quoted-printable":
                return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return _lenient_base64(body)
        return body

    @property
    def is_attachment(self) -> bool:
        """True for a part a mail reader shows as an attachment: disposition ``attachment``, or a file name
        on a part that is not text shown inline."""
        if self.disposition == "attachment":
            return True
        return self.filename is not None and not (
            self.disposition == "inline" and self.content_type.startswith("text/")
        )


def _lenient_base64(body: bytes | memoryview) -> bytes:
    """Decode what can be decoded of damaged base64: invalid characters dropped, padding completed."""
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    try:
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
    except binascii.Error:
        return b""


class _PartHeaders(NamedTuple):
    """The MIME fields of one part's header section: (value, parameters) of each, lower-case names."""

    content_type: str
    type_params: dict[str, str]
    disposition: str | None
    disposition_params: dict[str, str]
    encoding: str


PARAMS_CACHE_ENTRIES = 512
"""Field bodies whose split :func:`_params` remembers (``text/plain; charset=utf-8`` and its like
repeat from part to part; a boundary parameter makes each multipart's own); emptied when full."""
_params_seen: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}


def _params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/sub; a=1; b="x"`` into its lower-case value and parameters (RFC 2045 section 5.1),
    with RFC 2231 parameters (``name*=``, ``name*0*=`` ...) decoded and joined. Remembered for
    :data:`PARAMS_CACHE_ENTRIES` field bodies (a new dict each call: callers may keep it)."""
    seen = _params_seen.get(value)
    if seen is None:
        main, params = _split_params(value)
        if len(_params_seen) >= PARAMS_CACHE_ENTRIES:
            _params_seen.clear()
        _params_seen[value] = seen = (main, tuple(params.items()))
        return main, params
    return seen[0], dict(seen[1])


def _split_params(value: str) -> tuple[str, dict[str, str]]:
    """:func:`_params` without the memory."""
    main, _, rest = value.partition(";")
    raw: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + rest):
        text = match.group(2).strip()
        if text.startswith('"'):
            inner = text[1:-1] if text.endswith('"') and len(text) > 1 else text[1:]
            text = _QUOTED_PAIR_RE.sub(r"\1", inner)
        raw.setdefault(match.group(1).lower(), text)
    params: dict[str, str] = {}
    extended: dict[str, list[tuple[int, bool, str]]] = {}
    for key, text in raw.items():
        if "*" not in key:
            params.setdefault(key, text)
            continue
        name, _, tail = key.partition("*")
        encoded = tail.endswith("*") or tail == ""
        digits = tail.rstrip("*")
        extended.setdefault(name, []).append((int(digits) if digits.isdigit() else 0, encoded, text))
    for name, pieces in extended.items():
        params[name] = _rfc2231(sorted(pieces))
    return main.strip().lower(), params


def _rfc2231(pieces: list[tuple[int, bool, str]]) -> str:
    """Join RFC 2231 continuations; percent-decode the encoded ones in the charset of the first."""
    charset = "utf-8"
    octets = bytearray()
    for n, (_, encoded, text) in enumerate(pieces):
        if encoded:
            if n == 0 and text.count("'") >= 2:
                charset, _, text = text.split("'", 2)
            octets += urllib.parse.unquote_to_bytes(text)
        else:
            octets += text.encode("utf-8", "surrogateescape")
    try:
        return octets.decode(charset or "utf-8", "replace")
    except LookupError:
        return octets.decode("utf-8", "replace")


def _headers(raw: bytes, start: int, end: int, top: HeaderScan | None = None) -> tuple[_PartHeaders, int]:
    """Parse the MIME fields of the header section at ``start``; return them and where the body starts.

    ``top``: the message's header section already scanned (:func:`maild.archive.parse.parse`), so
    that the top-level part's header is not read twice; its fields may include others than the MIME ones.
    """
    scan = top if top is not None else scan_header(raw, MIME_FIELDS, start, end, MAX_PART_HEADER_OCTETS)
    body_start = scan.body_start
    found: dict[bytes, str] = {}
    for name, value in scan.fields:
        if name in MIME_FIELDS and name not in found:
            found[name] = " ".join(value.decode("utf-8", "replace").split())
    content_type, type_params = _params(found.get(b"content-type", ""))
    if "/" not in content_type:
        content_type, type_params = "text/plain", ({} if content_type else type_params)
    disposition_value = found.get(b"content-disposition")
    disposition, disposition_params = _params(disposition_value) if disposition_value else (None, {})
    encoding = found.get(b"content-transfer-encoding", "7bit").strip().lower() or "7bit"
    headers = _PartHeaders(content_type, type_params, disposition or None, disposition_params, encoding)
    return headers, body_start


HYPHEN_HOPS = 16
"""Hyphens :func:`_find_delimiter` steps over one at a time before it searches for the whole delimiter
(a part's own header has a few: ``Content-Type``, ``Content-Transfer-Encoding``)."""


def _find_delimiter(raw: bytes, delim: bytes, start: int, end: int) -> int:
    """``raw.find(delim, start, end)`` for a ``delim`` that begins with ``-``, found faster.

    ``bytes.find`` of a long needle runs at about 6 GB/s here (two-way search); of one octet it is
    ``memchr``, several times faster, and the base64 of an attachment (most of a large message's octets)
    has no ``-`` at all (RFC 2045 section 6.8; docs/performance.md, "Session 11: the store path's user
    time"). So hyphens are found first: the first one where the delimiter starts is its
    first occurrence (every occurrence starts with one). After :data:`HYPHEN_HOPS` hyphens that are not
    one (text, a hostile run of them) the whole delimiter is sought from there, as before; so never
    slower than that search plus a few ``memchr`` calls.
    """
    pos = start
    for _ in range(HYPHEN_HOPS):
        i = raw.find(b"-", pos, end)
        if i < 0 or raw.startswith(delim, i, end):
            return i
        pos = i + 1
    return raw.find(delim, pos, end)


PADDING_PIECE_OCTETS = 64
"""Octets :func:`_only_padding` reads at a time after a delimiter (a copy of each piece)."""


def _only_padding(raw: bytes, pos: int, end: int) -> bool:
    """Whether ``raw[pos:end]`` holds only blanks up to its first CR or LF (or to ``end``): the
    transport padding that may follow a boundary delimiter (RFC 2046 section 5.1.1, ``dash-boundary
    transport-padding CRLF``, and ``close-delimiter transport-padding``). Read in pieces of
    :data:`PADDING_PIECE_OCTETS`, so a long line of blanks costs a few copies, never a Python step
    per octet; works on ``bytes`` and on a spooled view alike (each slice is a copy)."""
    while True:
        piece = bytes(raw[pos : min(end, pos + PADDING_PIECE_OCTETS)])
        rest = piece.lstrip(b" \t")
        if rest:
            return rest[0] in (0x0D, 0x0A)
        if pos + PADDING_PIECE_OCTETS >= end:
            return True
        pos += PADDING_PIECE_OCTETS


def _boundary_parts(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The (start, end) offsets of each body part between ``--boundary`` lines (RFC 2046 section 5.1.1).

    The CRLF before a delimiter belongs to the delimiter; a missing close delimiter ends the last part
    at ``end``.
    """
    delim = b"--" + boundary
    parts: list[tuple[int, int]] = []
    current: int | None = None
    pos = start
    octets = isinstance(raw, bytes | bytearray)  # a spooled view answers finds of "--" marks only
    while len(parts) <= MAX_PARTS:
        i = _find_delimiter(raw, delim, pos, end) if octets else raw.find(delim, pos, end)
        if i < 0:
            break
        after = i + len(delim)
        at_line_start = i == start or raw[i - 1 : i] == b"\n"
        closing = raw.startswith(b"--", after)
        if not at_line_start or not _only_padding(raw, after + 2 if closing else after, end):
            pos = i + 1
            continue
        if current is not None:
            part_end = i - 1 if i > start else i
            if part_end > current and raw[part_end - 1 : part_end] == b"\r":
                part_end -= 1
            parts.append((current, max(current, part_end)))
        if closing:
            current = None
            break
        line_end = raw.find(b"\n", after, end)
        current = end if line_end < 0 else line_end + 1
        pos = current
    if current is not None:
        parts.append((current, end))
    return parts


def _filename(headers: _PartHeaders) -> str | None:
    name = headers.disposition_params.get("filename") or headers.type_params.get("name")
    if not name:
        return None
    if "=?" in name:  # RFC 2047 words inside a parameter: not allowed (RFC 2047 section 5), but common
        name = _decode_words(name)
    return " ".join(name.split()) or None


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words, joining them with the text around them as written (no added blanks)."""
    try:
        chunks = email.header.decode_header(text)
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return text
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def walk(raw: bytes, top: HeaderScan | None = None) -> list[Leaf]:
    """List the leaf parts of ``raw`` in order, at most :data:`MAX_PARTS`.

    Args:
        raw: the message as stored, CRLF or LF line endings.
        top: the message's own header section, scanned with at least the :data:`MIME_FIELDS` and
            ending within :data:`MAX_PART_HEADER_OCTETS` (:func:`maild.archive.parse.parse` passes it);
            None to scan it here.

    Returns:
        Leaf parts, each with its IMAP section number and its body's offsets. Never raises: damaged
        structure yields fewer or larger parts, not an error.
    """
    out: list[Leaf] = []
    _walk(raw, 0, len(raw), "", 0, out, top)
    return out


def _walk(
    raw: bytes, start: int, end: int, part: str, depth: int, out: list[Leaf], top: HeaderScan | None = None
) -> None:
    headers, body_start = _headers(raw, start, end, top)
    boundary = headers.type_params.get("boundary") if headers.content_type.startswith("multipart/") else None
    if boundary and depth < MAX_DEPTH:
        for n, (s, e) in enumerate(
            _boundary_parts(raw, body_start, end, boundary.encode("utf-8", "surrogateescape")), 1
        ):
            if len(out) >= MAX_PARTS:
                return
            _walk(raw, s, e, f"{part}.{n}" if part else str(n), depth + 1, out)
        return
    charset = headers.type_params.get("charset")
    disposition = headers.disposition if headers.disposition in ("inline", "attachment") else None
    if headers.disposition is not None and disposition is None:
        disposition = "attachment"  # RFC 2183 section 2.8: an unknown disposition is treated as attachment
    out.append(
        Leaf(
            part=part or "1",
            content_type=headers.content_type,
            charset=charset.strip().lower() or None if charset else None,
            filename=_filename(headers),
            disposition=disposition,
            encoding=headers.encoding,
            start=min(body_start, end),
            end=end,
        )
    )


def find_part(raw: bytes, part: str) -> Leaf | None:
    """The leaf part numbered ``part`` (e.g. ``"2.1"``), or None."""
    return next((leaf for leaf in walk(raw) if leaf.part == part), None)
