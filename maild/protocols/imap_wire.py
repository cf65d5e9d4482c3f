"""Sans-I/O IMAP parsing: response lines in, typed values out.

Nothing here touches a socket or imports aioimaplib. The input shape is the one aioimaplib 2.0.3 hands
back in ``Response.lines``, which the functions below accept as a flat sequence of "parts":

* a text line is ``bytes`` without CRLF, optionally still carrying the ``* `` untagged prefix;
* a line ending in a literal marker ``{n}`` is followed by one part holding exactly the literal's
  ``n`` octets (aioimaplib passes a ``bytearray``), then by the rest of that line when the rest is not
  empty (``b")"``, ``b" UID 7)"``);
* the tagged completion text (aioimaplib puts it last) is *not* part of the input: callers split it
  off and give it to :func:`parse_completion`.

Malformed server input raises :class:`~maild.errors.ProtocolError` naming the RFC section, except in
FETCH responses, where one broken or incomplete message becomes a per-message failure so that the
rest of a batch still arrives.

Standards: RFC 9051 (IMAP4rev2) with RFC 3501 (IMAP4rev1) where Dovecot 2.3 still speaks it,
RFC 5530 (response codes), RFC 6154 (special-use mailboxes).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, TypeAlias, cast

from maild.errors import ProtocolError

#: One part of an aioimaplib response: a text line (bytes) or a literal's octets (bytearray).
Part: TypeAlias = bytes | bytearray

#: A lexed IMAP value: atom or number (``str``), string (``bytes``, or the literal's ``bytearray``
#: unchanged), NIL (``None``) or a parenthesised list.
Token: TypeAlias = "str | bytes | bytearray | list[Token] | None"  # noqa: S105 -- not a password

#: UIDs, UIDVALIDITY and message sizes are unsigned 32-bit numbers (RFC 9051 section 9, ``nz-number``).
MAX_NUMBER = 2**32 - 1

#: Longest excerpt of a server line quoted in an error or failure reason, in characters.
EXCERPT_CHARS = 120

_RFC_SEQSET = "RFC 9051 section 9 (sequence-set)"
_RFC_MUTF7 = "RFC 3501 section 5.1.3"
_RFC_FETCH = "RFC 9051 section 7.5.2"

_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\Z")
_MESSAGE_EVENT = re.compile(rb"(\d+) (EXISTS|RECENT|EXPUNGE)\Z", re.IGNORECASE)
_FETCH_START = re.compile(rb"(\d+) FETCH ", re.IGNORECASE)
_STATUS = re.compile(rb"(OK|NO|BAD|BYE|PREAUTH)(?: |\Z)", re.IGNORECASE)
_TEXT_CODE = re.compile(rb"\[([^\]\s]+)(?: ([^\]]*))?\]")
_DATE_TIME = re.compile(
    r"\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\Z",
)
#: Month names of ``date-month``, fixed English (never the locale's, unlike ``calendar.month_abbr``).
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}


def _spelling_table(words: str) -> dict[str, str]:
    """Map upper-cased flag or attribute names to their RFC spelling."""
    return {w.upper(): w for w in words.split()}


#: System flags, RFC 9051 section 2.3.2 (\Recent from RFC 3501).
_SYSTEM_FLAGS = _spelling_table(r"\Seen \Answered \Flagged \Deleted \Draft \Recent \*")
#: Mailbox name attributes, RFC 9051 section 7.3.1 and RFC 5258; special-use, RFC 6154 section 2 and
#: RFC 8457 (\Important).
_MAILBOX_ATTRIBUTES = _spelling_table(
    r"\Noinferiors \Noselect \NonExistent \HasChildren \HasNoChildren \Marked \Unmarked \Subscribed"
    r" \Remote \All \Archive \Drafts \Flagged \Junk \Sent \Trash \Important"
)


def _excerpt(data: bytes | bytearray | str) -> str:
    """Return the start of a server line for an error message, decoded lossily."""
    text = data if isinstance(data, str) else bytes(data[: EXCERPT_CHARS * 2]).decode("utf-8", "replace")
    return text[:EXCERPT_CHARS]


def _strip_untagged(line: bytes | bytearray) -> bytes:
    """Drop a leading ``* `` (aioimaplib leaves it on some lines) and return immutable bytes."""
    data = bytes(line)
    return data[2:] if data.startswith(b"* ") else data


# --------------------------------------------------------------------------------------------------
# Modified UTF-7 mailbox names (RFC 3501 section 5.1.3; RFC 9051 section 5.1 keeps it for servers
# without UTF8=ACCEPT)
# --------------------------------------------------------------------------------------------------


def _mutf7_run(chars: list[str]) -> str:
    data = "".join(chars).encode("utf-16-be")
    return "&" + base64.b64encode(data).rstrip(b"=").replace(b"/", b",").decode("ascii") + "-"


def encode_mailbox_name(name: str) -> str:
    """Encode a mailbox name as modified UTF-7 for the wire.

    Printable US-ASCII (0x20 to 0x7E) stands for itself, ``&`` becomes ``&-``, every other run of
    characters becomes ``&`` + modified base64 of its UTF-16BE form (``,`` for ``/``, no padding) + ``-``.
    The result is pure ASCII and still needs quoting (:func:`quote_astring`).

    Standard: RFC 3501 section 5.1.3.

    Raises:
        ValueError: the name contains a lone surrogate, which UTF-16 cannot carry.
    """
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if " " <= ch <= "~":
            if run:
                out.append(_mutf7_run(run))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_mutf7_run(run))
    return "".join(out)


def decode_mailbox_name(wire: str | bytes | bytearray) -> str:
    """Decode a modified UTF-7 mailbox name as sent by the server into readable Unicode.

    Only the canonical form is accepted (the one :func:`encode_mailbox_name` produces), so that
    ``encode_mailbox_name(decode_mailbox_name(x)) == x`` and the name can be sent back in SELECT.

    Standard: RFC 3501 section 5.1.3.

    Raises:
        ProtocolError: raw 8-bit or control characters, a ``&`` run without ``-``, invalid base64 or
            UTF-16, printable ASCII hidden in base64, or another non-canonical form.
    """
    if isinstance(wire, bytes | bytearray):
        try:
            text = bytes(wire).decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(
                "mailbox name has raw 8-bit octets", line=_excerpt(wire), standard=_RFC_MUTF7
            ) from None
    else:
        text = wire
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not " " <= ch <= "~":
                raise ProtocolError(
                    "mailbox name has a raw non-ASCII character", line=text, standard=_RFC_MUTF7
                )
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ProtocolError("unterminated '&' run in mailbox name", line=text, standard=_RFC_MUTF7)
        chunk = text[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if not re.fullmatch(r"[A-Za-z0-9+,]+", chunk):
            raise ProtocolError("bad modified base64 in mailbox name", line=text, standard=_RFC_MUTF7)
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            decoded = base64.b64decode(padded, validate=True).decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError(
                "bad modified base64 in mailbox name", line=text, standard=_RFC_MUTF7
            ) from None
        out.append(decoded)
    result = "".join(out)
    if encode_mailbox_name(result) != text:
        raise ProtocolError("mailbox name is not canonical modified UTF-7", line=text, standard=_RFC_MUTF7)
    return result


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def quote_astring(value: str) -> str:
    """Return ``value`` as an IMAP quoted string: ``"`` + value with ``\\`` and ``"`` escaped + ``"``.

    Always quoting is valid wherever an astring is (user names, passwords, mailbox names) and avoids
    guessing which atoms a server accepts. Characters beyond ASCII are sent as UTF-8: RFC 9051
    section 4.3 allows that in quoted strings, and Dovecot 2.3 (IMAP4rev1) accepts it for LOGIN.
    A literal would be the only other way, and aioimaplib cannot send one outside APPEND.

    Standard: RFC 9051 section 4.3 and section 9 (``quoted``); RFC 3501 section 4.3.

    Raises:
        ValueError: ``value`` contains CR, LF or NUL, which no IMAP string can carry in a quoted
            string (and which would split the command line on the wire).
    """
    if any(c in value for c in "\r\n\x00"):
        raise ValueError("CR, LF and NUL cannot be sent in an IMAP quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sequence_set(uids: Iterable[int]) -> str:
    """Compress UIDs into a sequence-set string such as ``"1:5,7,9:12"``.

    Duplicates are dropped and the UIDs sorted, so ranges are as long as possible.

    Standard: RFC 9051 section 9 (``sequence-set``).

    Raises:
        ValueError: no UIDs were given, or one is outside 1 to 2**32 - 1.
    """
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty sequence-set cannot be sent")
    if ordered[0] < 1 or ordered[-1] > MAX_NUMBER:
        raise ValueError(f"UIDs must be 1 to {MAX_NUMBER} ({_RFC_SEQSET})")
    ranges: list[str] = []
    start = prev = ordered[0]
    for uid in [*ordered[1:], -1]:
        if uid == prev + 1:
            prev = uid
            continue
        ranges.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    return ",".join(ranges)


# --------------------------------------------------------------------------------------------------
# Status responses (RFC 9051 section 7.1) and CAPABILITY (section 7.2.2)
# --------------------------------------------------------------------------------------------------

Condition = Literal["OK", "NO", "BAD", "BYE", "PREAUTH"]


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """A status response: tagged completion or untagged ``* OK [CODE] text``.

    Attributes:
        condition: ``"OK"``, ``"NO"`` or ``"BAD"`` (tagged), or also ``"BYE"``/``"PREAUTH"`` (untagged).
        code: the response code's atom upper-cased, e.g. ``"AUTHENTICATIONFAILED"``, ``"UIDVALIDITY"``,
            ``"UNAVAILABLE"`` (RFC 5530), or None when the response has no ``[...]``.
        code_args: the text after the code's atom inside the brackets, e.g. ``"3857529045"``; ``""`` if none.
        text: the human-readable text after the code; for logs only, never matched on.
    """

    condition: Condition
    code: str | None = None
    code_args: str = ""
    text: str = ""

    @property
    def ok(self) -> bool:
        """True for ``OK`` (and ``PREAUTH``, which is a successful greeting)."""
        return self.condition in ("OK", "PREAUTH")

    def describe(self) -> str:
        """Return a one-line rendering for error messages, e.g. ``"NO [UNAVAILABLE] try later"``."""
        code = f" [{self.code}{' ' + self.code_args if self.code_args else ''}]" if self.code else ""
        return f"{self.condition}{code} {self.text}".strip()[: EXCERPT_CHARS * 2]


def parse_status(line: bytes | bytearray | str) -> StatusResponse:
    """Parse an untagged status response such as ``* OK [UIDVALIDITY 3857529045] UIDs valid``.

    The ``* `` prefix is optional (aioimaplib strips it from most lines).

    Standard: RFC 9051 section 7.1 (``resp-cond-state``, ``resp-text-code``); RFC 5530.

    Raises:
        ProtocolError: the line does not start with OK, NO, BAD, BYE or PREAUTH.
    """
    data = _strip_untagged(line.encode("utf-8") if isinstance(line, str) else line)
    match = _STATUS.match(data)
    if match is None:
        raise ProtocolError("not a status response", line=_excerpt(data), standard="RFC 9051 section 7.1")
    condition = cast(Condition, match.group(1).upper().decode("ascii"))
    rest = data[match.end() :]
    code: str | None = None
    code_args = ""
    code_match = _TEXT_CODE.match(rest)
    if code_match is not None:
        code = code_match.group(1).decode("ascii", "replace").upper()
        code_args = (code_match.group(2) or b"").decode("utf-8", "replace").strip()
        rest = rest[code_match.end() :].lstrip(b" ")
    return StatusResponse(condition, code, code_args, rest.decode("utf-8", "replace"))


def parse_completion(result: str, text: bytes | bytearray) -> StatusResponse:
    """Parse a tagged completion as aioimaplib returns it: ``Response.result`` and the last line.

    Args:
        result: ``"OK"``, ``"NO"`` or ``"BAD"`` as aioimaplib reports it.
        text: the rest of the tagged line after the result word, e.g. ``b"[READ-WRITE] Select completed"``.

    Standard: RFC 9051 section 7.1 (tagged ``resp-cond-state``).

    Raises:
        ProtocolError: ``result`` is not OK, NO or BAD.
    """
    if result.upper() not in ("OK", "NO", "BAD"):
        raise ProtocolError(
            "tagged response is not OK, NO or BAD",
            line=f"{result} {_excerpt(text)}",
            standard="RFC 9051 section 7.1",
        )
    return parse_status(result.encode("ascii") + b" " + bytes(text))


def parse_tagged_status(line: bytes | bytearray) -> tuple[str, StatusResponse]:
    """Parse a whole tagged status line such as ``A001 NO [AUTHENTICATIONFAILED] Invalid credentials``.

    Returns:
        The tag and the parsed status.

    Standard: RFC 9051 section 7.1.

    Raises:
        ProtocolError: no tag, or the condition is not OK, NO or BAD.
    """
    tag, sep, rest = bytes(line).partition(b" ")
    if not sep or not tag or tag in (b"*", b"+"):
        raise ProtocolError("not a tagged status line", line=_excerpt(line), standard="RFC 9051 section 7.1")
    result, _, text = rest.partition(b" ")
    return tag.decode("ascii", "replace"), parse_completion(result.decode("ascii", "replace"), text)


def parse_capability(data: bytes | bytearray | str) -> frozenset[str]:
    """Parse a capability list into upper-cased names, e.g. ``{"IMAP4REV1", "UIDPLUS", "AUTH=PLAIN"}``.

    Accepts ``* CAPABILITY ...``, ``CAPABILITY ...``, the bare list (aioimaplib strips the keyword)
    or the arguments of a ``[CAPABILITY ...]`` response code.

    Standard: RFC 9051 section 7.2.2.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    words = _strip_untagged(raw).decode("ascii", "replace").split()
    if words and words[0].upper() == "CAPABILITY":
        words = words[1:]
    return frozenset(w.upper() for w in words)


# --------------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------------


class _LexError(ValueError):
    """Raised by the lexer; turned into a ProtocolError or a per-message failure by the caller."""


_ATOM_STOP = frozenset(b' (){"\r\n')


def _group_lines(parts: Sequence[Part]) -> list[list[Part]]:
    """Regroup aioimaplib's flat parts into logical response lines.

    Each logical line is ``[text, literal, text, literal, ..., text?]``. After a literal, the next part
    continues the same line when it begins with SP or ``)``: the grammar allows nothing else there, and
    a new response line always begins with ``*``, a digit or a letter. aioimaplib drops an empty rest
    of line (a LIST name sent as the last literal), so the rest may be missing.
    """
    lines: list[list[Part]] = []
    i = 0
    while i < len(parts):
        current: list[Part] = [parts[i]]
        i += 1
        while True:
            match = _LITERAL_AT_END.search(current[-1])
            if match is None:
                break
            if i >= len(parts):
                break  # truncated: the lexer reports the missing literal
            current.append(parts[i])
            i += 1
            if i < len(parts) and (not parts[i] or parts[i][:1] in (b" ", b")")):
                current.append(parts[i])
                i += 1
            else:
                break
        lines.append(current)
    return lines


def _lex(line: Sequence[Part]) -> list[Token]:
    """Lex one logical line (text parts alternating with literal octets) into nested tokens.

    Raises:
        _LexError: unbalanced parentheses, an unterminated quoted string, a literal whose octet count
            does not match its ``{n}`` marker, or a missing literal.
    """
    stack: list[list[Token]] = [[]]
    index = 0
    while index < len(line):
        text = bytes(line[index])
        index += 1
        pos = 0
        end = len(text)
        literal_size: int | None = None
        match = _LITERAL_AT_END.search(text)
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
                    raise _LexError("unbalanced ')'")
                stack.pop()
                pos += 1
            elif byte == 0x22:  # "
                pos += 1
                chunk = bytearray()
                while True:
                    if pos >= end:
                        raise _LexError("unterminated quoted string")
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
                    raise _LexError(f"unexpected {chr(byte)!r}")
                atom = text[start:pos].decode("utf-8", "replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)
        if literal_size is not None:
            if index >= len(line):
                raise _LexError("literal announced but missing")
            literal = line[index]
            index += 1
            if len(literal) != literal_size:
                raise _LexError(f"literal of {len(literal)} octets announced as {literal_size}")
            stack[-1].append(literal)
    if len(stack) != 1:
        raise _LexError("unbalanced '('")
    return stack[0]


def _number(token: Token, what: str, maximum: int = MAX_NUMBER) -> int:
    if not isinstance(token, str) or not (token.isascii() and token.isdigit()) or int(token) > maximum:
        raise _LexError(f"{what} is not a number up to {maximum}")
    return int(token)


def _single(tokens: list[Token]) -> Token:
    if len(tokens) != 1:
        raise _LexError(f"expected one value, got {len(tokens)}")
    return tokens[0]


def _flags(token: Token, table: dict[str, str]) -> frozenset[str]:
    if not isinstance(token, list) or not all(isinstance(t, str) for t in token):
        raise _LexError("flag list is not a parenthesised list of atoms")
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
        return _flags(_single(_lex([data])), _SYSTEM_FLAGS)
    except _LexError as exc:
        raise ProtocolError(
            f"bad flag list: {exc}", line=_excerpt(data), standard="RFC 9051 section 2.3.2"
        ) from None


# --------------------------------------------------------------------------------------------------
# SELECT (RFC 9051 section 6.3.2) and UID SEARCH (section 7.3.4)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectInfo:
    """What SELECT reported about a mailbox.

    Attributes:
        exists: number of messages in the mailbox (``* n EXISTS``).
        uidvalidity: the UIDVALIDITY value, a positive 32-bit integer.
        uidnext: the predicted next UID, or None when the server did not send it (optional in RFC 3501).
        flags: the flags defined in the mailbox (``* FLAGS (...)``).
        permanent_flags: flags the client may change permanently (``[PERMANENTFLAGS (...)]``), or None.
        highest_modseq: ``[HIGHESTMODSEQ n]`` (RFC 7162 section 3.1.2.1), or None.
        read_only: True for ``[READ-ONLY]``, False for ``[READ-WRITE]``, None if the completion said neither.
    """

    exists: int
    uidvalidity: int
    uidnext: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    permanent_flags: frozenset[str] | None = None
    highest_modseq: int | None = None
    read_only: bool | None = None


def parse_select(lines: Sequence[Part], completion: StatusResponse | None = None) -> SelectInfo:
    """Parse the untagged lines of a SELECT response (tagged completion excluded).

    Lines such as ``3 EXISTS``, ``OK [UIDVALIDITY 3857529045] UIDs valid``, ``OK [UIDNEXT 4]``,
    ``FLAGS (\\Seen ...)``, ``OK [PERMANENTFLAGS (...)]``, ``OK [HIGHESTMODSEQ 7]``; unknown lines
    are ignored. ``completion`` supplies ``[READ-ONLY]``/``[READ-WRITE]``.

    Standard: RFC 9051 section 6.3.2 (REQUIRED: EXISTS, UIDVALIDITY); RFC 3501 section 6.3.1.

    Raises:
        ProtocolError: EXISTS or UIDVALIDITY missing, or a number that is not a 32-bit value.
    """
    standard = "RFC 9051 section 6.3.2"
    exists: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    highest_modseq: int | None = None
    flags: frozenset[str] = frozenset()
    permanent: frozenset[str] | None = None
    for part in lines:
        data = _strip_untagged(part)
        try:
            event = _MESSAGE_EVENT.match(data)
            if event is not None:
                if event.group(2).upper() == b"EXISTS":
                    exists = _number(event.group(1).decode("ascii"), "EXISTS")
                continue
            if data[:6].upper() == b"FLAGS ":
                flags = parse_flags(data[6:])
                continue
            if _STATUS.match(data) is None:
                continue
            status = parse_status(data)
            if status.code == "UIDVALIDITY":
                uidvalidity = _number(status.code_args, "UIDVALIDITY")
            elif status.code == "UIDNEXT":
                uidnext = _number(status.code_args, "UIDNEXT")
            elif status.code == "HIGHESTMODSEQ":  # a 63-bit mod-sequence-value, RFC 7162 section 7
                highest_modseq = _number(status.code_args, "HIGHESTMODSEQ", 2**63 - 1)
            elif status.code == "PERMANENTFLAGS":
                permanent = parse_flags(status.code_args)
        except _LexError as exc:
            raise ProtocolError(str(exc), line=_excerpt(data), standard=standard) from None
    if exists is None:
        raise ProtocolError("SELECT response lacks EXISTS", standard=standard)
    if uidvalidity is None or uidvalidity == 0:
        raise ProtocolError("SELECT response lacks a valid UIDVALIDITY", standard=standard)
    read_only: bool | None = None
    if completion is not None and completion.code in ("READ-ONLY", "READ-WRITE"):
        read_only = completion.code == "READ-ONLY"
    return SelectInfo(exists, uidvalidity, uidnext, flags, permanent, highest_modseq, read_only)


def parse_search(lines: Sequence[Part]) -> list[int]:
    """Parse the untagged lines of a (UID) SEARCH response into numbers, in server order.

    Accepts ``* SEARCH 1 2 3``, ``SEARCH 1 2 3``, the bare ``1 2 3`` aioimaplib leaves, an empty line
    (no match), and an RFC 7162 ``(MODSEQ n)`` trailer. Interleaved ``n EXISTS``/``EXPUNGE``/``RECENT``,
    FETCH and status lines are skipped.

    Standard: RFC 9051 section 7.3.4 (obsolete SEARCH response, still sent by IMAP4rev1 servers);
    RFC 3501 section 7.2.5.

    Raises:
        ProtocolError: a search line holds something other than numbers.
    """
    found: list[int] = []
    for part in lines:
        data = _strip_untagged(part)
        if _MESSAGE_EVENT.match(data) or _FETCH_START.match(data) or _STATUS.match(data):
            continue
        words = data.split()
        if words and words[0].upper() == b"SEARCH":
            words = words[1:]
        elif words and not words[0].isdigit():
            continue  # FLAGS, LIST, ... pushed by the server
        if len(words) >= 2 and words[-2].upper() == b"(MODSEQ" and words[-1].endswith(b")"):
            words = words[:-2]
        for word in words:
            if not word.isdigit() or not 0 < int(word) <= MAX_NUMBER:
                raise ProtocolError(
                    "SEARCH response holds a non-number",
                    line=_excerpt(data),
                    standard="RFC 9051 section 7.3.4",
                )
            found.append(int(word))
    return found


# --------------------------------------------------------------------------------------------------
# FETCH (RFC 9051 section 7.5.2)
# --------------------------------------------------------------------------------------------------


def parse_internaldate(value: str | bytes | bytearray) -> datetime:
    """Parse an INTERNALDATE such as ``17-Jul-1996 02:44:25 -0700`` into an aware UTC datetime.

    The day may be space-padded (``" 7-Jul-1996"``, ``date-day-fixed``); month names match
    case-insensitively.

    Standard: RFC 9051 section 9 (``date-time``); RFC 3501 section 9.

    Raises:
        ValueError: not in that form or not a valid date.
    """
    text = value if isinstance(value, str) else bytes(value).decode("ascii", "replace")
    match = _DATE_TIME.match(text)
    if match is None:
        raise ValueError(f"not an IMAP date-time: {text[:40]!r}")
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    month_number = _MONTHS.get(month.upper())
    if month_number is None:
        raise ValueError(f"unknown month in IMAP date-time: {text[:40]!r}")
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
    local = datetime(  # noqa: DTZ001 -- the zone is given on the next line
        int(year), month_number, int(day), int(hour), int(minute), int(second)
    )
    return local.replace(tzinfo=timezone(offset)).astimezone(UTC)


#: Items a caller may require in :func:`parse_fetch`, by their response name.
FetchItem = Literal[
    "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]", "BODY[HEADER]", "BODY[HEADER.FIELDS]"
]


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """The data items one message's FETCH responses carried, merged.

    Attributes:
        uid: the message's UID.
        seq: its message sequence number in this session (RFC 9051 section 2.3.1.2).
        flags: its flags, or None when not sent.
        internaldate: INTERNALDATE in UTC, or None when not sent.
        size_octets: RFC822.SIZE in octets, or None when not sent.
        body: ``BODY[]`` (or ``RFC822``) octets exactly as sent, or None when not sent.
        header: ``BODY[HEADER]`` (or ``RFC822.HEADER``) octets exactly as sent (the header section
            with its terminating empty line, RFC 9051 section 6.4.5), or None when not sent.
        header_fields: ``BODY[HEADER.FIELDS (...)]`` octets as sent (the named fields and the empty
            line), or None when not sent. Whatever fields were asked for, the item is stored under
            this one name.
    """

    uid: int
    seq: int
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    size_octets: int | None = None
    body: bytes | None = None
    header: bytes | None = None
    header_fields: bytes | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Everything a FETCH command's untagged responses said.

    Attributes:
        messages: complete messages by UID (every required item present and valid).
        failures: messages the server answered incompletely, by UID: a short reason such as
            ``"BODY[] is NIL"``. The caller retries them later.
        exists: the last ``* n EXISTS`` seen, or None.
        expunged: sequence numbers from ``* n EXPUNGE`` lines, in arrival order.
        ignored: FETCH responses without a UID or for a UID not requested (for example the highest
            UID that ``UID FETCH n:*`` returns when n is beyond it), plus unknown lines.
        malformed: excerpts of FETCH lines that broke the grammar and could not be tied to a UID.
    """

    messages: dict[int, FetchedMessage] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    exists: int | None = None
    expunged: tuple[int, ...] = ()
    ignored: int = 0
    malformed: tuple[str, ...] = ()


#: RFC822 is the IMAP4rev1 name of the same octets as BODY[] (RFC 3501 section 6.4.5).
_ITEM_ALIASES = {"RFC822": "BODY[]", "RFC822.HEADER": "BODY[HEADER]"}


def _fetch_items(tokens: list[Token]) -> dict[str, Token]:
    """Turn ``(NAME value NAME value ...)`` into a mapping of upper-cased names to values."""
    if len(tokens) != 1 or not isinstance(tokens[0], list):
        raise _LexError("FETCH data is not one parenthesised list")
    items = tokens[0]
    if len(items) % 2:
        raise _LexError("FETCH data has a name without a value")
    result: dict[str, Token] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(name, str):
            raise _LexError("FETCH item name is not an atom")
        key = name.upper()
        if key.startswith("BODY[HEADER.FIELDS "):  # the field list as the server echoes it
            key = "BODY[HEADER.FIELDS]"
        result[_ITEM_ALIASES.get(key, key)] = value
    return result


def _build_message(seq: int, uid: int, items: dict[str, Token], require: Iterable[str]) -> FetchedMessage:
    """Validate the merged items of one message. Raises _LexError with the per-message reason."""
    for name in require:
        if name not in items:
            raise _LexError(f"{name} missing")
        if items[name] is None:
            raise _LexError(f"{name} is NIL")
    flags = _flags(items["FLAGS"], _SYSTEM_FLAGS) if items.get("FLAGS") is not None else None
    internaldate: datetime | None = None
    raw_date = items.get("INTERNALDATE")
    if raw_date is not None:
        if not isinstance(raw_date, bytes | bytearray):
            raise _LexError("INTERNALDATE is not a string")
        try:
            internaldate = parse_internaldate(raw_date)
        except ValueError as exc:
            raise _LexError(str(exc)) from None
    size = items.get("RFC822.SIZE")
    size_octets = _number(size, "RFC822.SIZE") if size is not None else None
    raw_body = items.get("BODY[]")
    body: bytes | None = None
    if raw_body is not None:
        if not isinstance(raw_body, bytes | bytearray):
            raise _LexError("BODY[] is not a string")
        body = raw_body if isinstance(raw_body, bytes) else bytes(raw_body)  # the one copy
    raw_header = items.get("BODY[HEADER]")
    if raw_header is not None and not isinstance(raw_header, bytes | bytearray):
        raise _LexError("BODY[HEADER] is not a string")
    header = bytes(raw_header) if raw_header is not None else None
    raw_fields = items.get("BODY[HEADER.FIELDS]")
    if raw_fields is not None and not isinstance(raw_fields, bytes | bytearray):
        raise _LexError("BODY[HEADER.FIELDS] is not a string")
    header_fields = bytes(raw_fields) if raw_fields is not None else None
    return FetchedMessage(uid, seq, flags, internaldate, size_octets, body, header, header_fields)


def parse_fetch(
    lines: Sequence[Part],
    *,
    requested: Iterable[int] | None = None,
    require: Iterable[FetchItem] = (),
) -> FetchResult:
    """Parse the untagged lines of a (UID) FETCH response (tagged completion excluded).

    Data items may come in any order, with UID before or after the body literal, and spread over
    several FETCH responses for the same message sequence number (they are merged, later values
    win). ``* n EXISTS`` and ``* n EXPUNGE`` lines in between are reported, not fatal.

    Args:
        lines: aioimaplib's parts, see the module docstring.
        requested: the UIDs asked for; responses for other UIDs are counted in ``ignored``.
            None accepts every UID.
        require: items every message must carry non-NIL; a message lacking one becomes a failure.

    Returns:
        Messages and per-message failures keyed by UID. A UID that appears in neither was not
        returned by the server at all (expunged meanwhile, or the server's NO).

    Standard: RFC 9051 section 7.5.2 (FETCH response), section 6.4.9 (UID FETCH always includes UID);
    RFC 3501 section 7.4.2.

    This function never raises for server data: a FETCH line it cannot parse becomes a failure of
    its UID when the UID can still be read, otherwise an entry in ``malformed``.
    """
    wanted = None if requested is None else set(requested)
    required = tuple(dict.fromkeys(("UID", *require)))
    merged: dict[int, dict[str, Token]] = {}
    broken: dict[int, str] = {}
    exists: int | None = None
    expunged: list[int] = []
    ignored = 0
    malformed: list[str] = []
    for logical in _group_lines(lines):
        head = _strip_untagged(logical[0])
        event = _MESSAGE_EVENT.match(head) if len(logical) == 1 else None
        if event is not None:
            kind = event.group(2).upper()
            if kind == b"EXISTS":
                exists = int(event.group(1))
            elif kind == b"EXPUNGE":
                expunged.append(int(event.group(1)))
            continue
        start = _FETCH_START.match(head)
        if start is None:
            ignored += 1
            continue
        seq = int(start.group(1))
        try:
            items = _fetch_items(_lex([head[start.end() :], *logical[1:]]))
        except _LexError as exc:
            text_parts = b" ".join(bytes(p) for p in logical[::2])  # odd positions hold literals
            uid_match = re.search(rb"[( ]UID (\d+)", text_parts, re.IGNORECASE)
            reason = f"malformed FETCH response: {exc}"
            if uid_match is not None:
                broken[seq] = reason
                merged.setdefault(seq, {})["UID"] = uid_match.group(1).decode("ascii")
            else:
                malformed.append(f"{reason}: {_excerpt(head)}")
            continue
        merged.setdefault(seq, {}).update(items)
    messages: dict[int, FetchedMessage] = {}
    failures: dict[int, str] = {}
    for seq, items in merged.items():
        raw_uid = items.get("UID")
        try:
            uid = _number(raw_uid, "UID") if raw_uid is not None else None
        except _LexError:
            uid = None
        if uid is None or uid == 0 or (wanted is not None and uid not in wanted):
            ignored += 1
            continue
        if seq in broken:
            failures[uid] = broken[seq]
            continue
        try:
            messages[uid] = _build_message(seq, uid, items, required)
        except _LexError as exc:
            failures[uid] = str(exc)
    return FetchResult(messages, failures, exists, tuple(expunged), ignored, tuple(malformed))


# --------------------------------------------------------------------------------------------------
# LIST (RFC 9051 section 7.3.1)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListedMailbox:
    """One mailbox from a LIST response.

    Attributes:
        name: the name as readable Unicode (modified UTF-7 decoded); ``"INBOX"`` in any case becomes
            ``"INBOX"`` (RFC 9051 section 5.1).
        delimiter: the hierarchy delimiter, e.g. ``"/"`` or ``"."``, or None for a flat name space.
        attributes: name attributes in RFC spelling, e.g. ``{"\\\\HasNoChildren", "\\\\Sent"}``
            (RFC 6154 special-use included).
    """

    name: str
    delimiter: str | None
    attributes: frozenset[str]

    @property
    def selectable(self) -> bool:
        """False when the server marks the name ``\\Noselect`` or ``\\NonExistent``."""
        return not self.attributes & {r"\Noselect", r"\NonExistent"}


def _list_fields(tokens: list[Token]) -> tuple[frozenset[str], str | None, bytes]:
    """Split ``(attributes) delimiter name [extended]`` into attributes, delimiter and wire name."""
    if len(tokens) < 3 or not isinstance(tokens[0], list):
        raise _LexError("expected (attributes) delimiter name")
    attributes = _flags(tokens[0], _MAILBOX_ATTRIBUTES)
    raw_delim, raw_name = tokens[1], tokens[2]
    if raw_delim is not None and not (isinstance(raw_delim, bytes) and len(raw_delim) == 1):
        raise _LexError("delimiter is neither NIL nor one quoted character")
    delimiter = None if raw_delim is None else raw_delim.decode("ascii", "replace")
    if isinstance(raw_name, str):
        return attributes, delimiter, raw_name.encode("utf-8")
    if isinstance(raw_name, bytes | bytearray):
        return attributes, delimiter, bytes(raw_name)
    raise _LexError("mailbox name is neither atom nor string")


def parse_list(lines: Sequence[Part], *, utf8: bool = False) -> list[ListedMailbox]:
    """Parse the untagged lines of a LIST (or LSUB) response, in server order.

    Names may be atoms, quoted strings (with ``\\"`` and ``\\\\`` escapes) or literals; extended data
    (RFC 5258 ``("CHILDINFO" ...)``) is skipped; other lines are ignored.

    Args:
        lines: aioimaplib's parts (``LIST`` keyword present or stripped, ``* `` optional).
        utf8: names are UTF-8 (after ``ENABLE UTF8=ACCEPT``, RFC 9051 section 6.3.1) rather than
            modified UTF-7.

    Standard: RFC 9051 section 7.3.1 (``mailbox-list``); RFC 3501 section 7.2.2; RFC 6154 section 2.

    Known limit: aioimaplib 2.0.3 deletes every ``* `` inside untagged lines, so a quoted name
    containing an asterisk followed by a space arrives damaged (send such names as literals).

    Raises:
        ProtocolError: a LIST line breaks the grammar or a name is not valid modified UTF-7.
    """
    standard = "RFC 9051 section 7.3.1"
    found: list[ListedMailbox] = []
    for logical in _group_lines(lines):
        head = _strip_untagged(logical[0])
        keyword = head[:5].upper()
        if keyword in (b"LIST ", b"LSUB "):
            head = head[5:]
        elif not head.startswith(b"("):
            continue
        try:
            attributes, delimiter, wire_name = _list_fields(_lex([head, *logical[1:]]))
        except _LexError as exc:
            raise ProtocolError(str(exc), line=_excerpt(head), standard=standard) from None
        if utf8:
            try:
                name = wire_name.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(
                    "mailbox name is not UTF-8", line=_excerpt(wire_name), standard=standard
                ) from None
        else:
            name = decode_mailbox_name(wire_name)
        if name.upper() == "INBOX":
            name = "INBOX"
        found.append(ListedMailbox(name, delimiter, attributes))
    return found


#: Special-use attributes (RFC 6154 section 2) of mailboxes that ``mailboxes = "all"`` leaves out:
#: deleted mail and spam are not the office's mail.
SKIPPED_SPECIAL_USE = frozenset({r"\Trash", r"\Junk"})


def choose_mailboxes(listed: Sequence[ListedMailbox], exclude: Iterable[str] = ()) -> list[str]:
    """Pick the mailboxes that ``mailboxes = "all"`` means from a LIST response.

    Left out: names the server marks ``\\Noselect`` or ``\\NonExistent`` (nothing to select), the
    special-use ``\\Trash`` and ``\\Junk`` mailboxes (:data:`SKIPPED_SPECIAL_USE`), and every name in
    ``exclude`` together with the mailboxes beneath it (``"Archiv"`` excludes ``"Archiv/2025"`` when
    the server's delimiter is ``/``). ``INBOX`` matches in any case. The result keeps the server's
    order with ``INBOX`` first and each name once.

    Standard: RFC 9051 section 7.3.1 (name attributes); RFC 6154 section 2 (special-use).
    """
    excluded = [name.upper() if name.upper() == "INBOX" else name for name in exclude]

    def is_excluded(mailbox: ListedMailbox) -> bool:
        for name in excluded:
            if mailbox.name == name:
                return True
            if mailbox.delimiter and mailbox.name.startswith(name + mailbox.delimiter):
                return True
        return False

    chosen: list[str] = []
    for mailbox in listed:
        if not mailbox.selectable or mailbox.attributes & SKIPPED_SPECIAL_USE or is_excluded(mailbox):
            continue
        if mailbox.name not in chosen:
            chosen.append(mailbox.name)
    if "INBOX" in chosen:
        chosen.remove("INBOX")
        chosen.insert(0, "INBOX")
    return chosen


# --------------------------------------------------------------------------------------------------
# Mailbox events pushed during IDLE or returned with NOOP (RFC 2177; RFC 9051 section 7.4)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxEvents:
    """What untagged responses said about the selected mailbox while no command asked for them.

    Attributes:
        exists: the last ``* n EXISTS`` (message count now), or None.
        recent: the last ``* n RECENT`` (RFC 3501 section 7.3.2), or None.
        expunged: how many ``* n EXPUNGE`` responses arrived.
        bye: the text of a ``* BYE``: the server is closing the connection (RFC 9051 section
            7.1.5), or None.
        other: other untagged lines (``* OK Still here``, ``* n FETCH (FLAGS ...)``, ...).
    """

    exists: int | None = None
    recent: int | None = None
    expunged: int = 0
    bye: str | None = None
    other: int = 0

    @property
    def changed(self) -> bool:
        """True when the mailbox gained or lost messages: worth a fetch cycle."""
        return self.exists is not None or bool(self.recent) or self.expunged > 0

    def merge(self, later: MailboxEvents) -> MailboxEvents:
        """Combine with events that arrived after these."""
        return MailboxEvents(
            later.exists if later.exists is not None else self.exists,
            later.recent if later.recent is not None else self.recent,
            self.expunged + later.expunged,
            later.bye if later.bye is not None else self.bye,
            self.other + later.other,
        )


def parse_mailbox_events(lines: Sequence[Part]) -> MailboxEvents:
    """Sort untagged lines pushed by the server (``* `` prefix optional) into :class:`MailboxEvents`.

    Literal parts (a pushed FETCH may carry one) count as other data. Never raises: a line this
    does not understand is counted in ``other``.

    Standard: RFC 2177 (IDLE); RFC 9051 sections 7.1.5 (BYE), 7.4.1 (EXPUNGE), 7.3.3 (EXISTS);
    RFC 3501 section 7.3.2 (RECENT).
    """
    exists: int | None = None
    recent: int | None = None
    expunged = 0
    bye: str | None = None
    other = 0
    for part in lines:
        if isinstance(part, bytearray):
            continue
        data = _strip_untagged(part)
        event = _MESSAGE_EVENT.match(data)
        if event is not None:
            kind = event.group(2).upper()
            number = int(event.group(1))
            if kind == b"EXISTS":
                exists = number
            elif kind == b"RECENT":
                recent = number
            else:
                expunged += 1
        elif data[:4].upper() == b"BYE " or data.upper() == b"BYE":
            bye = data[4:].decode("utf-8", "replace")[:EXCERPT_CHARS] or "BYE"
        elif data:
            other += 1
    return MailboxEvents(exists, recent, expunged, bye, other)


# --------------------------------------------------------------------------------------------------
# APPEND (RFC 9051 section 6.3.12; RFC 3501 section 6.3.11) and its response codes
# --------------------------------------------------------------------------------------------------

#: Response codes of a refused APPEND that concern the one message, with what they mean.
#: TOOBIG: RFC 7889 section 4 (APPENDLIMIT); OVERQUOTA: RFC 5530 section 3 (also RFC 9208);
#: LIMIT: RFC 5530 section 3 (Dovecot's answer for ``quota_max_mail_size``); PARSE: RFC 5530.
APPEND_REFUSAL_CODES = {
    "TOOBIG": "the message is larger than the server accepts",
    "OVERQUOTA": "the mailbox is over its quota",
    "LIMIT": "the message hits a server limit",
    "PARSE": "the server could not parse the message",
}

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(moment: datetime) -> str:
    """Format an aware datetime as an APPEND ``date-time`` argument, in UTC, quoted.

    Example: ``"30-Nov-2026 09:00:00 +0000"`` (with the double quotes). Month names are the fixed
    English ones, never the locale's.

    Standard: RFC 9051 section 9 (``date-time``); RFC 3501 section 9.

    Raises:
        ValueError: ``moment`` is naive, or its year is outside 1 to 9999.
    """
    if moment.tzinfo is None:
        raise ValueError("an INTERNALDATE needs an aware datetime")
    utc = moment.astimezone(UTC)
    return (
        f'"{utc.day:02d}-{_MONTH_NAMES[utc.month - 1]}-{utc.year:04d}'
        f' {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} +0000"'
    )


def format_flag_list(flags: Iterable[str]) -> str | None:
    """Format flags as a parenthesised list, e.g. ``(\\Seen)``; None when there are none.

    Standard: RFC 9051 section 6.3.12 (``flag-list``), section 9 (``flag``).

    Raises:
        ValueError: a flag is not a system flag or a keyword atom.
    """
    ordered = sorted(set(flags))
    for flag in ordered:
        name = flag[1:] if flag.startswith("\\") else flag
        if not name or any(c in _FLAG_FORBIDDEN or not " " < c < "\x7f" for c in name):
            raise ValueError(f"not an IMAP flag: {flag!r}")
    return "(" + " ".join(ordered) + ")" if ordered else None


_FLAG_FORBIDDEN = frozenset('(){%*"\\]')


def parse_appenduid(status: StatusResponse) -> tuple[int, int] | None:
    """Return (UIDVALIDITY, UID) from an APPEND completion's ``[APPENDUID v u]`` code, or None.

    None when the server sent no APPENDUID (no UIDPLUS), or sent a UID set (MULTIAPPEND) or
    something malformed: the message was appended all the same, so this is information, not an error.

    Standard: RFC 4315 section 3 (``resp-code-apnd``).
    """
    if status.code != "APPENDUID":
        return None
    words = status.code_args.split()
    if len(words) != 2 or not all(w.isascii() and w.isdigit() for w in words):
        return None
    uidvalidity, uid = int(words[0]), int(words[1])
    if not (0 < uidvalidity <= MAX_NUMBER and 0 < uid <= MAX_NUMBER):
        return None
    return uidvalidity, uid
