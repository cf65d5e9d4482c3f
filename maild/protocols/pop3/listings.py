"""Sans-I/O parsing of POP3 listing bodies: UIDL (unique-id listings), LIST (scan listings), CAPA.

Each parser takes the un-stuffed body of a multi-line reply (:attr:`~maild.protocols.pop3.wire.Reply.body`)
and returns typed values or raises :class:`~maild.errors.ProtocolError`. Listings in the usual shape
(one ``msgnum SP field CRLF`` per line, nothing else) take a fast path of one regular expression;
anything else goes through a line-by-line parser that accepts the same and explains errors.

Standards: RFC 1939 (LIST section 5, UIDL section 7), RFC 2449 (CAPA section 5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from maild.errors import SHOWN_REPLY_OCTETS, ProtocolError

__all__ = ["MAX_UIDL_OCTETS", "UIDLListing", "parse_capa", "parse_scan_listing", "parse_uidl_listing"]

MAX_UIDL_OCTETS = 70
"""Longest unique-id listing the RFC allows, in octets (RFC 1939 section 7). Informational: longer ones
are accepted, because rejecting them would make those messages unreachable."""

_CRLF = b"\r\n"
_UIDL_BAD_OCTETS = re.compile(rb"[\x00-\x20\x7f]")
# Fast paths for listings in the usual shape (one ``msgnum SP field CRLF`` per line, nothing else);
# anything else goes through the line-by-line parsers, which accept the same and explain errors.
_UIDL_LINE = rb"(0*[1-9][0-9]*) ([^\x00-\x20\x7f]+)\r\n"
_UIDL_BODY = re.compile(rb"(?:0*[1-9][0-9]* [^\x00-\x20\x7f]+\r\n)*")
_UIDL_LINES = re.compile(_UIDL_LINE)
_SCAN_BODY = re.compile(rb"(?:0*[1-9][0-9]* [0-9]+\r\n)*")
_SCAN_LINES = re.compile(rb"(0*[1-9][0-9]*) ([0-9]+)\r\n")


def _show(line: bytes) -> str:
    """Render a listing line for :class:`~maild.errors.ProtocolError`: its first
    :data:`~maild.errors.SHOWN_REPLY_OCTETS` octets decoded leniently (the error masks secrets, then
    keeps 200 characters)."""
    return line[:SHOWN_REPLY_OCTETS].decode("utf-8", "replace")


def _listing_lines(
    body: bytes, what: str, standard: str, valid: Callable[[list[bytes]], bool]
) -> Iterator[tuple[int, bytes]]:
    """Yield (msgnum, the first field after it) for each non-blank line of a listing body.

    ``what`` names the line in errors (e.g. ``"scan listing"``), ``standard`` the RFC section, and
    ``valid`` judges the fields after the message-number.

    Raises:
        ProtocolError: a message-number that is not a positive decimal or repeats, or fields that
            ``valid`` refuses.
    """
    seen: set[int] = set()
    for line in body.split(_CRLF):
        fields = line.split()
        if not fields:
            continue
        if not fields[0].isdigit() or int(fields[0]) < 1:
            raise ProtocolError("malformed message-number in listing", line=_show(line))
        msgnum, rest = int(fields[0]), fields[1:]
        if not valid(rest):
            raise ProtocolError(
                f"malformed {what} for message {msgnum}",
                line=_show(b" ".join([str(msgnum).encode(), *rest])),
                standard=standard,
            )
        if msgnum in seen:
            raise ProtocolError(f"message-number {msgnum} listed twice", standard=standard)
        seen.add(msgnum)
        yield msgnum, rest[0]


@dataclass(frozen=True, slots=True)
class UIDLListing:
    """A parsed UIDL listing.

    Attributes:
        uidl_by_msgnum: mapping of message-number (1-based, this session only) to unique-id listing, in
            listing order. Duplicated uidls are included here.
        duplicates: mapping of each uidl that appears more than once to the message-numbers carrying it,
            ascending. Such messages cannot be addressed by uidl; the adapter leaves them out.
    """

    uidl_by_msgnum: Mapping[int, str]
    duplicates: Mapping[str, tuple[int, ...]]


def parse_uidl_listing(body: bytes) -> UIDLListing:
    """Parse the body of a multi-line UIDL reply.

    Args:
        body: un-stuffed lines ``msgnum SP uidl CRLF`` as returned in :attr:`Reply.body`.

    Returns:
        The listing. A uidl is decoded as Latin-1, so any octet except whitespace and controls survives and
        ``uidl.encode("latin-1")`` gives back the wire octets. Length is not checked (RFC 1939 says at most
        70 octets; longer ones are accepted). Blank lines are skipped.

    Standard: RFC 1939 section 7 (uidl = 1*70 octets in 0x21-0x7E; unique within the maildrop).

    Raises:
        ProtocolError: a line lacks a uidl, has more than two fields, has a message-number that is not a
            positive decimal or repeats one, or its uidl contains a control octet.
    """
    if _UIDL_BODY.fullmatch(body):
        pairs = _UIDL_LINES.findall(body)
        fast = {int(n): u.decode("latin-1") for n, u in pairs}
        if len(fast) == len(pairs) and len(set(fast.values())) == len(fast):  # no repeats
            return UIDLListing(uidl_by_msgnum=fast, duplicates={})
    uidl_by_msgnum: dict[int, str] = {}
    msgnums_by_uidl: dict[str, list[int]] = {}
    lines = _listing_lines(
        body,
        "UIDL listing line",
        "RFC 1939 section 7",
        lambda rest: len(rest) == 1 and not _UIDL_BAD_OCTETS.search(rest[0]),
    )
    for msgnum, uidl_octets in lines:
        uidl = uidl_octets.decode("latin-1")
        uidl_by_msgnum[msgnum] = uidl
        msgnums_by_uidl.setdefault(uidl, []).append(msgnum)
    duplicates = {u: tuple(sorted(ns)) for u, ns in msgnums_by_uidl.items() if len(ns) > 1}
    return UIDLListing(uidl_by_msgnum=uidl_by_msgnum, duplicates=duplicates)


def parse_scan_listing(body: bytes) -> dict[int, int]:
    """Parse the body of a multi-line LIST reply.

    Args:
        body: un-stuffed lines ``msgnum SP octets [SP anything] CRLF``.

    Returns:
        Mapping of message-number to size in octets, in listing order. Blank lines are skipped; fields
        after the size are ignored (RFC 1939 section 5 allows them).

    Standard: RFC 1939 section 5 (LIST, scan listing).

    Raises:
        ProtocolError: a line lacks the size, a number is not a non-negative decimal, or a
            message-number repeats.
    """
    if _SCAN_BODY.fullmatch(body):
        pairs = _SCAN_LINES.findall(body)
        fast = {int(n): int(octets) for n, octets in pairs}
        if len(fast) == len(pairs):  # no message-number repeats
            return fast
    sizes: dict[int, int] = {}
    lines = _listing_lines(
        body, "scan listing", "RFC 1939 section 5", lambda rest: bool(rest) and rest[0].isdigit()
    )
    for msgnum, octets in lines:
        sizes[msgnum] = int(octets)
    return sizes


def parse_capa(body: bytes) -> dict[str, tuple[str, ...]]:
    """Parse the body of a multi-line CAPA reply.

    Args:
        body: un-stuffed lines ``capa-tag *(SP param) CRLF``.

    Returns:
        Mapping of upper-cased capability name (tags are case-insensitive) to its parameters as sent,
        e.g. ``{"PIPELINING": (), "SASL": ("PLAIN", "LOGIN"), "UIDL": ()}``. Blank lines are skipped;
        non-ASCII octets become U+FFFD. A repeated tag keeps the last parameters.

    Standard: RFC 2449 section 5 (CAPA) and section 6 (initial capabilities).
    """
    caps: dict[str, tuple[str, ...]] = {}
    for line in body.split(_CRLF):
        fields = line.decode("ascii", "replace").split()
        if fields:
            caps[fields[0].upper()] = tuple(fields[1:])
    return caps
