"""Sans-I/O IMAP lexing shared by the parsers: response parts in, tokens out.

The input shape is the one aioimaplib 2.0.3 hands back in ``Response.lines`` (see
:mod:`maild.protocols.imap.wire`). :func:`lex` turns one response (its text lines and literals) into
:data:`Token` values; :class:`LexError` is what the parsers turn into a
:class:`~maild.errors.ProtocolError` or a per-message failure. Imports nothing but ``errors`` and
``model`` (the spooled body a :class:`SpooledLiteral` resolves to).

Standard: RFC 9051 section 4 (data formats) and 9 (formal syntax).

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib), :mod:`maild.errors`,
:mod:`maild.model` (value types).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import TypeAlias

from maild.errors import ProtocolError
from maild.model import SpooledBody


class SpooledLiteral:
    """A literal written to a spool file as it arrived, standing where its octets would in a response.

    Made by :mod:`maild.protocols.imap.spooling` for a literal of at least the spool's threshold on
    the streaming FETCH only; the lexer checks its announced size like any literal's and hands it
    on as a token; :func:`maild.protocols.imap.fetch.build_message` accepts it as ``BODY[]`` only
    (anywhere else it fails its message: its octets are not in memory to be read).

    Attributes:
        size_octets: the literal's size in octets, as its ``{n}`` announced it (all of them were
            read off the connection).
        outcome: resolves, once the last part is written (in a worker thread), to the spooled body
            or to why the spool could not take it (``"local spool: ..."``); the streaming retrieval
            awaits it before it hands the message on (:mod:`maild.protocols.imap.stream`).
    """

    __slots__ = ("outcome", "size_octets")

    def __init__(self, size_octets: int, outcome: Awaitable[SpooledBody | str]) -> None:
        self.size_octets = size_octets
        self.outcome = outcome

    def __repr__(self) -> str:
        return f"SpooledLiteral(size_octets={self.size_octets})"


#: One part of an aioimaplib response: a text line (bytes), a literal's octets (bytearray), or a
#: literal that went to a spool file instead (:class:`SpooledLiteral`).
Part: TypeAlias = bytes | bytearray | SpooledLiteral

#: A lexed IMAP value: atom or number (``str``), string (``bytes``, or the literal's ``bytearray``
#: or :class:`SpooledLiteral` unchanged), NIL (``None``) or a parenthesised list.
Token: TypeAlias = "str | bytes | bytearray | SpooledLiteral | list[Token] | None"  # noqa: S105 -- not a password

#: UIDs, UIDVALIDITY and message sizes are unsigned 32-bit numbers (RFC 9051 section 9, ``nz-number``).
MAX_NUMBER = 2**32 - 1

#: Longest excerpt of a server line quoted in an error or failure reason, in characters.
EXCERPT_CHARS = 120

LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\Z")
MESSAGE_EVENT = re.compile(rb"(\d+) (EXISTS|RECENT|EXPUNGE)\Z", re.IGNORECASE)
FETCH_START = re.compile(rb"(\d+) FETCH ", re.IGNORECASE)


def _spelling_table(words: str) -> dict[str, str]:
    """Map upper-cased flag or attribute names to their RFC spelling."""
    return {w.upper(): w for w in words.split()}


#: System flags, RFC 9051 section 2.3.2 (\Recent from RFC 3501).
SYSTEM_FLAGS = _spelling_table(r"\Seen \Answered \Flagged \Deleted \Draft \Recent \*")
#: Mailbox name attributes, RFC 9051 section 7.3.1 and RFC 5258; special-use, RFC 6154 section 2 and
#: RFC 8457 (\Important).
MAILBOX_ATTRIBUTES = _spelling_table(
    r"\Noinferiors \Noselect \NonExistent \HasChildren \HasNoChildren \Marked \Unmarked \Subscribed"
    r" \Remote \All \Archive \Drafts \Flagged \Junk \Sent \Trash \Important"
)


def excerpt(data: bytes | bytearray | str) -> str:
    """Return the start of a server line for an error message, decoded lossily."""
    text = data if isinstance(data, str) else bytes(data[: EXCERPT_CHARS * 2]).decode("utf-8", "replace")
    return text[:EXCERPT_CHARS]


def text_of(part: Part) -> bytes | bytearray:
    """The octets of a part in a text line's place. A :class:`SpooledLiteral` is only ever made in a
    literal's place (after a ``{n}`` line); anywhere else it reads as no text."""
    return b"" if isinstance(part, SpooledLiteral) else part


def part_octets(part: Part) -> int:
    """Octets a part stands for: a text line's or literal's length, a spooled literal's size."""
    return part.size_octets if isinstance(part, SpooledLiteral) else len(part)


def strip_untagged(line: Part) -> bytes:
    """Drop a leading ``* `` (aioimaplib leaves it on some lines) and return immutable bytes."""
    data = bytes(text_of(line))
    return data[2:] if data.startswith(b"* ") else data


# --------------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------------


class LexError(ValueError):
    """Raised by the lexer; turned into a ProtocolError or a per-message failure by the caller."""


_ATOM_STOP = frozenset(b' (){"\r\n')


def group_lines(parts: Sequence[Part]) -> list[list[Part]]:
    """Regroup aioimaplib's flat parts into logical response lines.

    Each logical line is ``[text, literal, text, literal, ..., text?]``. After a literal, the next part
    continues the same line when it begins with SP or ``)``: the grammar allows nothing else there, and
    a new response line always begins with ``*``, a digit or a letter. aioimaplib drops an empty rest
    of line (a LIST name sent as the last literal), so the rest may be missing.

    Spurious line breaks after a literal (an extra CRLF inside the open parenthesised list, CPython
    bpo-44408, IMAPClient #162) are tolerated: whitespace-only text lines after a literal are joined
    with the text line that follows them when that one continues the response (begins with SP or
    ``)``, or is whitespace-only too). The literal's octets are never touched.
    """
    lines: list[list[Part]] = []
    i = 0
    while i < len(parts):
        current: list[Part] = [parts[i]]
        i += 1
        while True:
            match = LITERAL_AT_END.search(text_of(current[-1]))
            if match is None:
                break
            if i >= len(parts):
                break  # truncated: the lexer reports the missing literal
            current.append(parts[i])
            i += 1
            if i < len(parts) and _continues(parts[i]):
                rest = bytes(text_of(parts[i]))
                i += 1
                while not rest.strip(b" \t") and i < len(parts) and _continues(parts[i]):
                    rest += bytes(text_of(parts[i]))  # a whitespace-only line: a spurious CRLF
                    i += 1
                current.append(rest)
            else:
                break
        lines.append(current)
    return lines


def _continues(part: Part) -> bool:
    """Whether a part after a literal continues the same response (see :func:`group_lines`)."""
    if isinstance(part, SpooledLiteral):  # a literal's place, never a continued line
        return False
    return not part or part[:1] in (b" ", b")", b"\t")


#: What :func:`paren_depth` skips: a quoted string (escapes honoured; unterminated: to the end of the
#: line) or a ``[...]`` section spec, as :func:`lex` reads them.
_UNCOUNTED = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|\[[^\]]*(?:\]|\Z)')


def paren_depth(text: bytes | bytearray, depth: int = 0) -> int:
    """Return the parenthesis depth after one text line of a response, starting at ``depth``.

    The lexer's rules (:func:`lex`): parentheses inside quoted strings and inside ``[...]`` section
    specs do not count (a trailing literal marker ``{n}`` holds none; the literal's octets are never
    passed here). An unterminated quoted string ends with the line. Used to frame FETCH responses
    (a response ends when the depth is back at zero after a text line). Runs in C: one scan for
    quotes and brackets, then counts.

    Standard: RFC 9051 section 4 (data formats) and 7.5.2 (FETCH response).
    """
    data = text if type(text) is bytes else bytes(text)
    if b'"' in data or b"[" in data:
        data = _UNCOUNTED.sub(b"", data)
    return depth + data.count(b"(") - data.count(b")")


def lex(line: Sequence[Part]) -> list[Token]:
    """Lex one logical line (text parts alternating with literal octets) into nested tokens.

    Raises:
        LexError: unbalanced parentheses, an unterminated quoted string, a literal whose octet count
            does not match its ``{n}`` marker, or a missing literal.
    """
    stack: list[list[Token]] = [[]]
    index = 0
    while index < len(line):
        text = bytes(text_of(line[index]))
        index += 1
        pos = 0
        end = len(text)
        literal_size: int | None = None
        match = LITERAL_AT_END.search(text)
        if match is not None:
            literal_size = int(match.group(1))
            end = match.start()
        while pos < end:
            byte = text[pos]
            if byte == 0x20:
                pos += 1
            elif byte == 0x28:  # (
                new: list[Token] = []
                stack[-1].append(new)
                stack.append(new)
                pos += 1
            elif byte == 0x29:  # )
                if len(stack) == 1:
                    raise LexError("unbalanced ')'")
                stack.pop()
                pos += 1
            elif byte == 0x22:  # "
                pos += 1
                chunk = bytearray()
                while True:
                    if pos >= end:
                        raise LexError("unterminated quoted string")
                    c = text[pos]
                    if c == 0x5C and pos + 1 < end:  # backslash escape
                        chunk.append(text[pos + 1])
                        pos += 2
                    elif c == 0x22:
                        pos += 1
                        break
                    else:
                        chunk.append(c)
                        pos += 1
                stack[-1].append(bytes(chunk))
            else:
                start = pos
                depth = 0
                while pos < end:
                    c = text[pos]
                    if c == 0x5B:  # [ : section specs may hold spaces and parentheses
                        depth += 1
                    elif c == 0x5D and depth:
                        depth -= 1
                    elif depth == 0 and c in _ATOM_STOP:
                        break
                    pos += 1
                if pos == start:
                    raise LexError(f"unexpected {chr(byte)!r}")
                atom = text[start:pos].decode("utf-8", "replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)
        if literal_size is not None:
            if index >= len(line):
                raise LexError("literal announced but missing")
            literal = line[index]
            index += 1
            size = part_octets(literal)
            if size != literal_size:
                raise LexError(f"literal of {size} octets announced as {literal_size}")
            stack[-1].append(literal)
    if len(stack) != 1:
        raise LexError("unbalanced '('")
    return stack[0]


def parse_number(token: Token, what: str, maximum: int = MAX_NUMBER) -> int:
    """Read a lexed atom as a number from 0 to ``maximum`` (default: 32-bit, RFC 9051 section 9).

    Raises:
        LexError: not an atom of ASCII digits, or above ``maximum``; ``what`` names the item.
    """
    if not isinstance(token, str) or not (token.isascii() and token.isdigit()) or int(token) > maximum:
        raise LexError(f"{what} is not a number up to {maximum}")
    return int(token)


def single(tokens: list[Token]) -> Token:
    """The one token of a lexed line.

    Raises:
        LexError: none or several tokens.
    """
    if len(tokens) != 1:
        raise LexError(f"expected one value, got {len(tokens)}")
    return tokens[0]


def flag_set(token: Token, table: dict[str, str]) -> frozenset[str]:
    """Read a lexed parenthesised list of atoms; names found in ``table`` get their RFC spelling.

    Standard: RFC 9051 section 2.3.2 (flags), 7.3.1 (mailbox attributes).

    Raises:
        LexError: not a list of atoms.
    """
    if not isinstance(token, list) or not all(isinstance(t, str) for t in token):
        raise LexError("flag list is not a parenthesised list of atoms")
    return frozenset(table.get(t.upper(), t) for t in token if isinstance(t, str))


def parse_flags(token_text: bytes | bytearray | str) -> frozenset[str]:
    """Parse a parenthesised flag list such as ``(\\Seen $Forwarded)``.

    System flags (``\\Seen``, ``\\Answered``, ``\\Flagged``, ``\\Deleted``, ``\\Draft``, ``\\Recent``,
    ``\\*``) are returned in their RFC spelling whatever case the server used; keywords as sent.

    Standard: RFC 9051 section 2.3.2.

    Raises:
        ProtocolError: not a list of atoms.
    """
    data = token_text.encode("utf-8") if isinstance(token_text, str) else bytes(token_text)
    try:
        return flag_set(single(lex([data])), SYSTEM_FLAGS)
    except LexError as exc:
        raise ProtocolError(
            f"bad flag list: {exc}", line=excerpt(data), standard="RFC 9051 section 2.3.2"
        ) from None
