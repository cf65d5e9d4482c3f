"""Which messages of one account's archive another account's IMAP server holds: sans-I/O comparison.

``maild compare A B``, ``maild migrate A --to B`` and ``maild retire A --into B`` all ask the same
question: is every message ever fetched for account A (its archive, including what is no longer on
A's server) present on B's server now? Nothing here does I/O: the caller reads A's archive, scans B's
mailboxes (``UID RFC822.SIZE BODY.PEEK[HEADER]``), asks :func:`bodies_needed` which few bodies it must
download to decide, and hands everything to :func:`compare`.

Identity of a message, strongest first:

1. **the SHA-256 of its octets**. IMAP servers hand out a message with every bare LF turned into
   CRLF (Dovecot does), so each side is also hashed in that form; either digest may match;
2. **a record of our own upload**: ``maild migrate`` recorded the server's ``[APPENDUID]`` (RFC 4315)
   for the message, and that UID is still in the mailbox under the same UIDVALIDITY. This catches
   servers that store a message differently from how it was sent (Dovecot turns NUL into 0x80);
3. **Message-ID plus size plus Date**: equal Message-ID field, equal size in octets (as archived, or
   in CRLF form, against RFC822.SIZE) and equal Date (UTC; both missing counts as equal). A body is
   downloaded only when the Message-ID matches but size or Date do not, to look at the octets;
4. a message **without Message-ID** is identified by its header section **and** body, that is by the
   digest of its octets (rule 1): two messages with equal header fields but different bodies are two
   messages. Its body is downloaded only when B holds a message with the same header section.

So with Message-IDs (nearly all mail) no body is downloaded at all.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from maild.message import header_section, summarise
from maild.model import IMAPKey

_BARE_LF = re.compile(rb"(?<!\r)\n")

#: How a message of A was found in B (see the module docstring).
MatchRule = Literal["sha256", "appended", "message-id"]


def to_crlf(raw: bytes) -> bytes:
    """Return ``raw`` with every bare LF turned into CRLF (the form IMAP servers hand out)."""
    return _BARE_LF.sub(b"\r\n", raw) if b"\n" in raw else raw


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_digest(raw_or_header: bytes) -> str:
    """SHA-256 (hex) of a message's header section in CRLF form, without trailing line ends.

    The same for a whole message and for its ``BODY[HEADER]`` (which carries the empty line).
    """
    return _digest(to_crlf(header_section(raw_or_header)).rstrip(b"\r\n"))


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One distinct archived message of account A, reduced to what identifies it.

    Attributes:
        message: the archive's ``messages.id`` row id.
        sha256: SHA-256 (hex) of the octets as archived.
        sha256_crlf: SHA-256 (hex) of the octets with bare LFs made CRLF (equal to ``sha256`` when
            the message has none).
        header_sha256: :func:`header_digest` of the message.
        size_octets: size in octets as archived.
        size_crlf: size in octets in CRLF form.
        message_id: the Message-ID field, or None.
        date: the Date field in UTC, or None when missing or unparseable.
        from_: the From field, decoded, or None.
        subject: the Subject field, decoded, or None.
        on_server: True while A's server still holds it (not gone, not deleted by maild).
    """

    message: int
    sha256: str
    sha256_crlf: str
    header_sha256: str
    size_octets: int
    size_crlf: int
    message_id: str | None
    date: datetime | None
    from_: str | None
    subject: str | None
    on_server: bool

    @property
    def where(self) -> str:
        """``"still on A's server"`` or ``"archive only"`` (lost if A's archive went)."""
        return "still on A's server" if self.on_server else "archive only"


def archive_entry(message: int, raw: bytes, *, on_server: bool) -> ArchiveEntry:
    """Build the :class:`ArchiveEntry` of an archived message from its octets.

    Args:
        message: its ``messages.id``.
        raw: its octets exactly as archived.
        on_server: whether A's server still holds it.
    """
    crlf = to_crlf(raw)
    summary = summarise(raw)
    sha = _digest(raw)
    return ArchiveEntry(
        message=message,
        sha256=sha,
        sha256_crlf=sha if crlf is raw else _digest(crlf),
        header_sha256=header_digest(raw),
        size_octets=len(raw),
        size_crlf=len(crlf),
        message_id=summary.message_id,
        date=summary.date,
        from_=summary.from_,
        subject=summary.subject,
        on_server=on_server,
    )


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One message on B's server, as the header scan saw it.

    Attributes:
        key: (mailbox, UIDVALIDITY, UID).
        size_octets: RFC822.SIZE in octets.
        header_sha256: :func:`header_digest` of its ``BODY[HEADER]``.
        message_id, date, from_, subject: as in :class:`ArchiveEntry`.
    """

    key: IMAPKey
    size_octets: int
    header_sha256: str
    message_id: str | None
    date: datetime | None
    from_: str | None
    subject: str | None


def server_entry(key: IMAPKey, size_octets: int, header: bytes) -> ServerEntry:
    """Build the :class:`ServerEntry` of a message from its RFC822.SIZE and ``BODY[HEADER]`` octets."""
    summary = summarise(header)
    return ServerEntry(
        key=key,
        size_octets=size_octets,
        header_sha256=header_digest(header),
        message_id=summary.message_id,
        date=summary.date,
        from_=summary.from_,
        subject=summary.subject,
    )


@dataclass(frozen=True, slots=True)
class BodyDigest:
    """Digests of a message downloaded from B's server: SHA-256 (hex) as sent and in CRLF form."""

    sha256: str
    sha256_crlf: str


def body_digest(raw: bytes) -> BodyDigest:
    """Digest the octets of a message downloaded from B's server."""
    crlf = to_crlf(raw)
    sha = _digest(raw)
    return BodyDigest(sha, sha if crlf is raw else _digest(crlf))


def _mid_keys(entry: ArchiveEntry) -> set[tuple[str, int, datetime | None]]:
    assert entry.message_id is not None
    return {(entry.message_id, size, entry.date) for size in (entry.size_octets, entry.size_crlf)}


def bodies_needed(
    archive: Iterable[ArchiveEntry],
    server: Iterable[ServerEntry],
    appended: Mapping[int, Collection[IMAPKey]] | None = None,
) -> list[IMAPKey]:
    """Return the messages of B whose octets must be downloaded before :func:`compare` can decide.

    Those are: messages without Message-ID whose header section equals that of an archived message
    without Message-ID (only the body tells them apart), and messages whose Message-ID equals an
    archived one while size or Date differ (only the octets tell whether the server's size is
    merely counted differently). Messages recorded as our own uploads need nothing.

    Returns:
        Keys in the order of ``server``.
    """
    recorded = {key for keys in (appended or {}).values() for key in keys}
    mid_keys: set[tuple[str, int, datetime | None]] = set()
    mids: set[str] = set()
    headers_without_mid: set[str] = set()
    for entry in archive:
        if entry.message_id is None:
            headers_without_mid.add(entry.header_sha256)
        else:
            mid_keys |= _mid_keys(entry)
            mids.add(entry.message_id)
    needed: list[IMAPKey] = []
    for item in server:
        if item.key in recorded:
            continue
        if item.message_id is None:
            if item.header_sha256 in headers_without_mid:
                needed.append(item.key)
        elif (item.message_id, item.size_octets, item.date) not in mid_keys and item.message_id in mids:
            needed.append(item.key)
    return needed


@dataclass(frozen=True, slots=True)
class Match:
    """A message of A found in B.

    Attributes:
        entry: the archived message.
        key: one message of B that is the same message (the first found).
        rule: which identity rule matched.
    """

    entry: ArchiveEntry
    key: IMAPKey
    rule: MatchRule


@dataclass(slots=True)
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        only_a: archived messages of A that B lacks, oldest Date first (no Date: last).
        only_b: messages of B that match nothing of A, by (mailbox, UID).
        both: archived messages of A that B holds, oldest Date first.
        unreadable: messages of B whose header or body could not be read, with the reason; they
            match nothing, so their presence is unknown.
    """

    only_a: list[ArchiveEntry] = field(default_factory=list)
    only_b: list[ServerEntry] = field(default_factory=list)
    both: list[Match] = field(default_factory=list)
    unreadable: dict[IMAPKey, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when nothing of A is missing in B."""
        return not self.only_a


def _by_date(entry: ArchiveEntry) -> tuple[int, str, int]:
    return (0, entry.date.isoformat(), entry.message) if entry.date else (1, "", entry.message)


def compare(
    archive: Iterable[ArchiveEntry],
    server: Iterable[ServerEntry],
    *,
    bodies: Mapping[IMAPKey, BodyDigest] | None = None,
    appended: Mapping[int, Collection[IMAPKey]] | None = None,
    unreadable: Mapping[IMAPKey, str] | None = None,
) -> Comparison:
    """Compare A's archive with B's server content by the identity rules of the module docstring.

    Args:
        archive: every distinct archived message of A.
        server: every readable message of B's scanned mailboxes.
        bodies: digests of the B messages downloaded as :func:`bodies_needed` asked (more are
            allowed; a missing one simply cannot match by digest).
        appended: archive row id to the keys ``maild migrate`` recorded for it in B (with UID); a
            key counts only when the scan still lists it.
        unreadable: B messages that could not be read, with the reason (passed through).

    Returns:
        The three lists; every message of B that is the same as some message of A (several copies
        included) is left out of ``only_b``.
    """
    servers = list(server)
    by_key = {item.key: item for item in servers}
    by_mid: defaultdict[tuple[str, int, datetime | None], list[IMAPKey]] = defaultdict(list)
    for item in servers:
        if item.message_id is not None:
            by_mid[(item.message_id, item.size_octets, item.date)].append(item.key)
    by_sha: defaultdict[str, list[IMAPKey]] = defaultdict(list)
    for key, digest in (bodies or {}).items():
        if key in by_key:
            by_sha[digest.sha256].append(key)
            if digest.sha256_crlf != digest.sha256:
                by_sha[digest.sha256_crlf].append(key)
    result = Comparison(unreadable=dict(unreadable or {}))
    matched: set[IMAPKey] = set()
    for entry in sorted(archive, key=_by_date):
        found: list[IMAPKey] = []
        rule: MatchRule | None = None
        for hex_digest in dict.fromkeys((entry.sha256, entry.sha256_crlf)):
            found += by_sha.get(hex_digest, [])
        if found:
            rule = "sha256"
        recorded = [key for key in (appended or {}).get(entry.message, ()) if key in by_key]
        if recorded:
            found += recorded
            rule = rule or "appended"
        if entry.message_id is not None:
            by_id = [key for mid_key in sorted(_mid_keys(entry), key=str) for key in by_mid.get(mid_key, [])]
            if by_id:
                found += by_id
                rule = rule or "message-id"
        if rule is None:
            result.only_a.append(entry)
            continue
        matched.update(found)
        result.both.append(Match(entry, found[0], rule))
    result.only_b = sorted(
        (item for item in servers if item.key not in matched),
        key=lambda item: (item.key.mailbox, item.key.uidvalidity, item.key.uid),
    )
    return result


def identity(entry: ArchiveEntry) -> tuple[str, ...]:
    """The identity of an archived message under rules 3 and 4, as a hashable value.

    Two archived messages with the same identity are the same message to :func:`compare` (for
    example two copies differing only in a trace header of equal length): uploading one suffices.
    """
    if entry.message_id is not None:
        date = entry.date.isoformat() if entry.date else ""
        return ("message-id", entry.message_id, str(entry.size_crlf), date)
    return ("sha256", entry.sha256_crlf)


def upload_order(missing: Sequence[ArchiveEntry]) -> tuple[list[ArchiveEntry], list[ArchiveEntry]]:
    """Choose what to upload from the messages of A that B lacks.

    Returns:
        (to upload: one per :func:`identity`, oldest Date first; left out as copies of one of them).
    """
    chosen: dict[tuple[str, ...], ArchiveEntry] = {}
    copies: list[ArchiveEntry] = []
    for entry in sorted(missing, key=_by_date):
        if identity(entry) in chosen:
            copies.append(entry)
        else:
            chosen[identity(entry)] = entry
    return list(chosen.values()), copies
