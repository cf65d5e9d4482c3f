"""Sans-I/O reading of one FETCH response line into its data items (RFC 9051 section 7.5.2).

:func:`read_fetch_line` turns one logical response line (text parts and literals, see
:func:`~maild.protocols.imap.lex.group_lines`) into a :class:`FetchLine`: the usual body response by
one regular expression, every other shape by the lexer. :class:`~maild.protocols.imap.fetch.FetchAssembler`
merges the lines into messages.

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib),
:mod:`maild.protocols.imap.lex`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from maild.protocols.imap.lex import (
    FETCH_START,
    LexError,
    Part,
    Token,
    excerpt,
    lex,
    part_octets,
    strip_untagged,
    text_of,
)

__all__ = ["PLAIN_BODY_RESPONSE", "FetchLine", "read_fetch_line"]


#: RFC822 is the IMAP4rev1 name of the same octets as BODY[] (RFC 3501 section 6.4.5).
_ITEM_ALIASES = {"RFC822": "BODY[]", "RFC822.HEADER": "BODY[HEADER]"}


def _fetch_items(tokens: list[Token]) -> dict[str, Token]:
    """Turn ``(NAME value NAME value ...)`` into a mapping of upper-cased names to values."""
    if len(tokens) != 1 or not isinstance(tokens[0], list):
        raise LexError("FETCH data is not one parenthesised list")
    items = tokens[0]
    if len(items) % 2:
        raise LexError("FETCH data has a name without a value")
    result: dict[str, Token] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(name, str):
            raise LexError("FETCH item name is not an atom")
        key = name.upper()
        if key.startswith("BODY[HEADER.FIELDS "):  # the field list as the server echoes it
            key = "BODY[HEADER.FIELDS]"
        result[_ITEM_ALIASES.get(key, key)] = value
    return result


@dataclass(frozen=True, slots=True)
class FetchLine:
    """One FETCH response line (RFC 9051 section 7.5.2), lexed.

    Attributes:
        seq: the message sequence number it names.
        items: data item name (upper-case, aliases resolved, e.g. ``"BODY[]"``) to its value. When
            ``error`` is set, only ``"UID"`` (its digits) if it could still be read, else empty.
        error: None, or why the line broke the grammar (``"malformed FETCH response: ..."``; with an
            excerpt of the line when no UID could be read).
    """

    seq: int
    items: dict[str, Token]
    error: str | None = None


def read_fetch_line(logical: Sequence[Part], head: bytes | None = None) -> FetchLine | None:
    """Lex one logical line (from :func:`~maild.protocols.imap.lex.group_lines`) as a FETCH response.

    Args:
        logical: the line's text parts and literals.
        head: its first part with ``* `` stripped, if the caller has it already.

    Returns:
        The FETCH response, or None when the line is not ``n FETCH ...`` at all. Never raises for
        server data: a line that breaks the grammar comes back with ``error`` set.
    """
    if head is None:
        head = strip_untagged(logical[0])
    start = FETCH_START.match(head)
    if start is None:
        return None
    seq = int(start.group(1))
    if len(logical) == 3 and logical[2] == b")":
        plain = _plain_body(head[start.end() :], logical[1])
        if plain is not None:
            return FetchLine(seq, plain)
    return _lexed_fetch_line(seq, logical, head, start.end())


#: The usual shape of a body FETCH response, ``(UID u FLAGS (f ...) INTERNALDATE "d" BODY[] {n}``
#: (Dovecot's order; flags plain atoms, the date without escapes), then the literal and ``)``. It is
#: read by one regular expression instead of the lexer's loop over every octet; any other shape, or
#: anything this cannot read exactly as the lexer would, goes to the lexer
#: (a property of ``tests/unit/test_fuzz.py`` compares the two).
_PLAIN_FLAGS = rb"\(((?:[\\$]?[A-Za-z0-9_.+-]+)(?: [\\$]?[A-Za-z0-9_.+-]+)*)?\)"
_PLAIN_BODY = re.compile(
    rb"\(UID ([0-9]{1,10}) FLAGS " + _PLAIN_FLAGS + rb" "
    rb'INTERNALDATE "([ -!#-\[\]-~]*)" BODY\[\] \{([0-9]{1,12})\}\Z'
)

PLAIN_BODY_RESPONSE = re.compile(
    rb"\* ([0-9]{1,10}) FETCH \(UID ([0-9]{1,10}) FLAGS " + _PLAIN_FLAGS + rb" "
    rb'INTERNALDATE "([ -!#-)+-\[\]-~]*)" BODY\[\] \{([0-9]{1,12})\}\Z'
)
"""The first line of an untagged FETCH response in :data:`_PLAIN_BODY`'s shape, as received (``* n
FETCH (UID u FLAGS (...) INTERNALDATE "d" BODY[] {size}``, without its CRLF): groups sequence number,
UID, flag text (None when empty), date, literal size. A subset of what the generic path reads the
same way: the date excludes ``*`` as well, since aioimaplib's untagged handling deletes every ``* ``
of a line (so such a line keeps the library's reading). Matched by the client's FETCH framing
(:mod:`maild.protocols.imap.protocol`) straight in its read buffer; the response is then taken by
:meth:`~maild.protocols.imap.fetch.FetchAssembler.feed_plain` without the lexer."""


def _plain_body(text: bytes, literal: Part) -> dict[str, Token] | None:
    """The items of a response in the shape of :data:`_PLAIN_BODY` (as the lexer reads them), or None."""
    match = _PLAIN_BODY.match(text)
    if match is None or part_octets(literal) != int(match.group(4)):
        return None
    flag_text = match.group(2)
    if flag_text and b"NIL" in flag_text.upper():
        return None  # the lexer reads a NIL atom as nil: not a flag list (a flag merely containing it, too)
    names = flag_text.decode("ascii").split(" ") if flag_text else []
    flags: list[Token] = [*names]
    return {
        "UID": match.group(1).decode("ascii"),
        "FLAGS": flags,
        "INTERNALDATE": match.group(3),
        "BODY[]": literal,
    }


def _lexed_fetch_line(seq: int, logical: Sequence[Part], head: bytes, offset: int) -> FetchLine:
    """Read a FETCH response line with the lexer (every shape the grammar allows); see
    :func:`read_fetch_line`. ``head[offset:]`` is the text after ``n FETCH ``."""
    try:
        return FetchLine(seq, _fetch_items(lex([head[offset:], *logical[1:]])))
    except LexError as exc:
        text_parts = b" ".join(bytes(text_of(p)) for p in logical[::2])  # odd positions hold literals
        uid_match = re.search(rb"[( ]UID (\d+)", text_parts, re.IGNORECASE)
        reason = f"malformed FETCH response: {exc}"
        if uid_match is not None:
            return FetchLine(seq, {"UID": uid_match.group(1).decode("ascii")}, reason)
        return FetchLine(seq, {}, f"{reason}: {excerpt(head)}")
