"""Sans-I/O IMAP parsing: response lines in, typed values out.

Nothing here touches a socket or imports aioimaplib. The input shape is the one aioimaplib 2.0.3 hands
back in ``Response.lines``, which the functions below accept as a flat sequence of "parts":

* a text line is ``bytes`` without CRLF, optionally still carrying the ``* `` untagged prefix;
* a line ending in a literal marker ``{n}`` is followed by one part holding exactly the literal's
  ``n`` octets (aioimaplib passes a ``bytearray``), then by the rest of that line when the rest is not
  empty (``b")"``, ``b" UID 7)"``);
* the tagged completion text (aioimaplib puts it last) is *not* part of the input: callers split it
  off and give it to :func:`parse_completion`.

Malformed server input raises :class:`~maild.errors.ProtocolError` naming the RFC section.

This module: argument quoting, status responses and CAPABILITY, SELECT, UID SEARCH, mailbox events
(IDLE, NOOP) and APPEND formatting. The lexer is in :mod:`maild.protocols.imap.lex`, FETCH assembly
(where one broken message is a per-message failure) in :mod:`maild.protocols.imap.fetch`, LIST in
:mod:`maild.protocols.imap.listing`, modified UTF-7 names in :mod:`maild.protocols.imap.utf7`.

May import: the standard library (no I/O: no asyncio, socket, ssl, aioimaplib), :mod:`maild.errors`,
:mod:`maild.protocols.imap.lex`.

Standards: RFC 9051 (IMAP4rev2) with RFC 3501 (IMAP4rev1) where Dovecot 2.3 still speaks it,
RFC 5530 (response codes), RFC 6154 (special-use mailboxes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, cast

from maild.errors import ProtocolError
from maild.protocols.imap.lex import (
    EXCERPT_CHARS,
    FETCH_START,
    MAX_NUMBER,
    MESSAGE_EVENT,
    LexError,
    Part,
    SpooledLiteral,
    excerpt,
    parse_flags,
    parse_number,
    strip_untagged,
)
from maild.protocols.imap.utf7 import encode_mailbox_name
from maild.secret import shown

_RFC_SEQSET = "RFC 9051 section 9 (sequence-set)"
_STATUS = re.compile(rb"(OK|NO|BAD|BYE|PREAUTH)(?: |\Z)", re.IGNORECASE)
_TEXT_CODE = re.compile(rb"\[([^\]\s]+)(?: ([^\]]*))?\]")


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


def mailbox_argument(name: str) -> str:
    """Return a readable mailbox name as a command argument: modified UTF-7, then quoted.

    Standard: RFC 3501 section 5.1.3 (modified UTF-7); RFC 9051 section 4.3 (quoted string).

    Raises:
        ValueError: the name holds CR, LF, NUL or a lone surrogate, which cannot be sent.
    """
    return quote_astring(encode_mailbox_name(name))


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
        """Return a one-line rendering for error messages, e.g. ``"NO [UNAVAILABLE] try later"``: at
        most ``2 * EXCERPT_CHARS`` characters, every live secret and its wire forms masked before the
        cut (:func:`maild.secret.shown`: a server echoing the sign-in line in a later refusal, session
        13; a secret cut in two would not be recognised later)."""
        code = f" [{self.code}{' ' + self.code_args if self.code_args else ''}]" if self.code else ""
        return shown(f"{self.condition}{code} {self.text}".strip(), EXCERPT_CHARS * 2)


def parse_status(line: bytes | bytearray | str) -> StatusResponse:
    """Parse an untagged status response such as ``* OK [UIDVALIDITY 3857529045] UIDs valid``.

    The ``* `` prefix is optional (aioimaplib strips it from most lines).

    Standard: RFC 9051 section 7.1 (``resp-cond-state``, ``resp-text-code``); RFC 5530.

    Raises:
        ProtocolError: the line does not start with OK, NO, BAD, BYE or PREAUTH.
    """
    data = strip_untagged(line.encode("utf-8") if isinstance(line, str) else line)
    match = _STATUS.match(data)
    if match is None:
        raise ProtocolError("not a status response", line=excerpt(data), standard="RFC 9051 section 7.1")
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
            line=f"{result} {excerpt(text)}",
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
        raise ProtocolError("not a tagged status line", line=excerpt(line), standard="RFC 9051 section 7.1")
    result, _, text = rest.partition(b" ")
    return tag.decode("ascii", "replace"), parse_completion(result.decode("ascii", "replace"), text)


def parse_capability(data: bytes | bytearray | str) -> frozenset[str]:
    """Parse a capability list into upper-cased names, e.g. ``{"IMAP4REV1", "UIDPLUS", "AUTH=PLAIN"}``.

    Accepts ``* CAPABILITY ...``, ``CAPABILITY ...``, the bare list (aioimaplib strips the keyword)
    or the arguments of a ``[CAPABILITY ...]`` response code.

    Standard: RFC 9051 section 7.2.2.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    words = strip_untagged(raw).decode("ascii", "replace").split()
    if words and words[0].upper() == "CAPABILITY":
        words = words[1:]
    return frozenset(w.upper() for w in words)


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
        data = strip_untagged(part)
        try:
            event = MESSAGE_EVENT.match(data)
            if event is not None:
                if event.group(2).upper() == b"EXISTS":
                    exists = parse_number(event.group(1).decode("ascii"), "EXISTS")
                continue
            if data[:6].upper() == b"FLAGS ":
                flags = parse_flags(data[6:])
                continue
            if _STATUS.match(data) is None:
                continue
            status = parse_status(data)
            if status.code == "UIDVALIDITY":
                uidvalidity = parse_number(status.code_args, "UIDVALIDITY")
            elif status.code == "UIDNEXT":
                uidnext = parse_number(status.code_args, "UIDNEXT")
            elif status.code == "HIGHESTMODSEQ":  # a 63-bit mod-sequence-value, RFC 7162 section 7
                highest_modseq = parse_number(status.code_args, "HIGHESTMODSEQ", 2**63 - 1)
            elif status.code == "PERMANENTFLAGS":
                permanent = parse_flags(status.code_args)
        except LexError as exc:
            raise ProtocolError(str(exc), line=excerpt(data), standard=standard) from None
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
        data = strip_untagged(part)
        if MESSAGE_EVENT.match(data) or FETCH_START.match(data) or _STATUS.match(data):
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
                    line=excerpt(data),
                    standard="RFC 9051 section 7.3.4",
                )
            found.append(int(word))
    return found


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
        notified: ``* STATUS`` responses: with NOTIFY (RFC 5465 section 5.2), news of messages
            added to or expunged from a mailbox that is not selected.
    """

    exists: int | None = None
    recent: int | None = None
    expunged: int = 0
    bye: str | None = None
    other: int = 0
    notified: int = 0

    @property
    def changed(self) -> bool:
        """True when the mailbox (or, with NOTIFY, another watched one) gained or lost messages:
        worth a fetch cycle."""
        return self.exists is not None or bool(self.recent) or self.expunged > 0 or self.notified > 0

    def merge(self, later: MailboxEvents) -> MailboxEvents:
        """Combine with events that arrived after these."""
        return MailboxEvents(
            later.exists if later.exists is not None else self.exists,
            later.recent if later.recent is not None else self.recent,
            self.expunged + later.expunged,
            later.bye if later.bye is not None else self.bye,
            self.other + later.other,
            self.notified + later.notified,
        )


def parse_mailbox_events(lines: Sequence[Part]) -> MailboxEvents:
    """Sort untagged lines pushed by the server (``* `` prefix optional) into :class:`MailboxEvents`.

    Literal parts (a pushed FETCH may carry one) count as other data. Never raises: a line this
    does not understand is counted in ``other``.

    Standard: RFC 2177 (IDLE); RFC 9051 sections 7.1.5 (BYE), 7.4.1 (EXPUNGE), 7.3.3 (EXISTS);
    RFC 3501 section 7.3.2 (RECENT); RFC 5465 section 5.2 (STATUS for a mailbox not selected).
    """
    exists: int | None = None
    recent: int | None = None
    expunged = 0
    bye: str | None = None
    other = 0
    notified = 0
    for part in lines:
        if isinstance(part, bytearray | SpooledLiteral):
            continue
        data = strip_untagged(part)
        event = MESSAGE_EVENT.match(data)
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
        elif data[:7].upper() == b"STATUS ":
            notified += 1
        elif data:
            other += 1
    return MailboxEvents(exists, recent, expunged, bye, other, notified)


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
