"""Message identities for POP3 maildrops without UIDL: digests of the content, sans-I/O.

UIDL is optional (RFC 1939 section 7). Without it a server offers only message-numbers, which change
between sessions, so maild derives each message's identity (the ``uidl`` of its
:class:`~maild.model.POP3Key`) from the message itself:

``"hdr:" + hex``
    SHA-256 of the size from LIST (decimal, CRLF) and the header section as ``TOP n 0`` returned it.
    Used only when the header section is *distinctive*: it ends with the empty line, is at most
    :data:`MAX_HEADER_OCTETS`, has a non-empty Message-ID field and at least one Received field, and no
    other message of the same listing has the same digest. The first Received field is added by the
    provider's own mail server when it accepts the message, with its time and usually a queue ID, so
    two deliveries never share it, and no sender can forge it; the Message-ID tells apart messages the
    server received in the same second; the size catches a different body under a copied header.
    Costs one small ``TOP`` per message and cycle.
``"sha256:" + hex``
    SHA-256 of the whole message as RETR returned it (un-stuffed, exactly what the archive stores).
    Used for every message whose header section is not distinctive, when the server lacks TOP, and for
    both messages of a listing whose header digests collide. Identical copies in one listing (same
    digest) get ``"#2"``, ``"#3"``, ... in listing order; the copies are interchangeable, so which one is
    which does not matter. Costs a full download of such a message in every cycle (the archive cannot
    tell it is known without the digest).

Both are stable across sessions as long as the server serves the same octets (a server that rewrites
stored messages, e.g. adding ``Status:`` fields to an mbox, gives them new identities).

Standard: RFC 1939 section 7 (UIDL optional; TOP), RFC 5322 sections 2.1 (header section), 3.6.4
(Message-ID), 3.6.7 (Received, trace fields prepended by each server).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from maild.message import header_fields
from maild.model import CONTENT_KEY_PREFIX, SpooledBody

__all__ = [
    "CONTENT_PREFIX",
    "HEADER_PREFIX",
    "MAX_HEADER_OCTETS",
    "IdentityPlan",
    "content_digest",
    "content_keys",
    "header_key",
    "header_section",
    "is_content_key",
    "is_digest_key",
    "key_matches",
    "plan_identities",
]

HEADER_PREFIX = "hdr:"
"""Prefix of a header identity."""

CONTENT_PREFIX = CONTENT_KEY_PREFIX
"""Prefix of a full-content identity."""

MAX_HEADER_OCTETS = 256 * 1024
"""A header section longer than this, in octets, is not used as an identity (the content is)."""

_EMPTY_LINE = b"\r\n\r\n"
_DISTINCTIVE_FIELDS = (b"message-id", b"received")
_NOT_A_VALUE = b"\r\n\x0b\x0c"
"""Octets that, first after the colon and blanks, mean a field has no value on its first line."""


def is_digest_key(uidl: str) -> bool:
    """Whether a POP3Key's ``uidl`` is a digest identity made here rather than a server's UIDL."""
    return uidl.startswith((HEADER_PREFIX, CONTENT_PREFIX))


def is_content_key(uidl: str) -> bool:
    """Whether a POP3Key's ``uidl`` is a full-content identity (the digest of exactly the stored octets)."""
    return uidl.startswith(CONTENT_PREFIX)


def header_section(data: bytes) -> bytes | None:
    """The header section of a message or of a ``TOP n 0`` reply body, including its last CRLF.

    Not :func:`maild.message.scan_header`: an identity is the digest of exactly these octets, and the
    shared scanner also ends a header section at an empty line of bare LFs, which would change the
    identities of messages already archived under ``"hdr:"`` keys.

    Args:
        data: un-stuffed message octets, CRLF line endings.

    Returns:
        The octets before the empty line that ends the header section, ending with CRLF; None when
        there is no such empty line within :data:`MAX_HEADER_OCTETS`, or the section is empty (no usable
        header identity).
    """
    if data.startswith(b"\r\n"):
        return None
    end = data.find(_EMPTY_LINE, 0, MAX_HEADER_OCTETS + len(_EMPTY_LINE))
    if end < 0:
        return None
    return data[: end + 2]


def distinctive(header: bytes) -> bool:
    """Whether a header section identifies its message: a Message-ID with a value and a Received field.

    A Message-ID field has a value when something other than white space follows its colon and blanks
    on the field's first line. Fields are found by the shared scanner,
    :func:`maild.message.header_fields` (case-insensitive names at a line start, RFC 5322 section 2.2).

    Args:
        header: a header section as returned by :func:`header_section`.
    """
    fields = header_fields(header, _DISTINCTIVE_FIELDS)
    if not any(name == b"received" for name, _ in fields):
        return False
    for name, body in fields:
        if name == b"message-id":
            value = body.lstrip(b" \t")
            if value and value[0] not in _NOT_A_VALUE:
                return True
    return False


def header_key(header: bytes, size_octets: int) -> str:
    """The header identity: ``"hdr:"`` and the SHA-256 of the LIST size and the header section.

    Args:
        header: a distinctive header section (see :func:`distinctive`).
        size_octets: the message's size from LIST (RFC 1939 section 5).
    """
    digest = hashlib.sha256(b"%d\r\n" % size_octets)
    digest.update(header)
    return HEADER_PREFIX + digest.hexdigest()


def spooled_key_matches(uidl: str, body: SpooledBody, size_octets: int) -> bool:
    """:func:`key_matches` for a message received into a spool file (:mod:`maild.spool`): its
    SHA-256 was computed while it was written, and its head holds the whole header section (the
    head is at least ``maild.message.MAX_HEADER_OCTETS`` long, the most :func:`header_section` reads).
    """
    if uidl.startswith(CONTENT_PREFIX):
        return uidl[len(CONTENT_PREFIX) :].partition("#")[0] == body.sha256
    return key_matches(uidl, body.head, size_octets)


def content_digest(raw: bytes) -> str:
    """The SHA-256 of a whole message, hex; the same digest the archive keys messages by."""
    return hashlib.sha256(raw).hexdigest()


def content_keys(digests: Mapping[int, str]) -> dict[int, str]:
    """Full-content identities for message-numbers whose content digests are known.

    Args:
        digests: mapping of message-number to :func:`content_digest` of its RETR octets.

    Returns:
        Mapping of message-number to ``"sha256:" + hex``; the second and later message (by
        message-number) with the same digest get ``"#2"``, ``"#3"``, ... appended.
    """
    seen: dict[str, int] = {}
    keys: dict[int, str] = {}
    for msgnum in sorted(digests):
        digest = digests[msgnum]
        seen[digest] = seen.get(digest, 0) + 1
        copy = seen[digest]
        keys[msgnum] = CONTENT_PREFIX + digest + (f"#{copy}" if copy > 1 else "")
    return keys


@dataclass(frozen=True, slots=True)
class IdentityPlan:
    """How each message of a listing gets its identity.

    Attributes:
        header_keys: mapping of message-number to its header identity, for messages with a distinctive
            header section that no other message of the listing shares.
        need_content: message-numbers (ascending) that must be retrieved in full to get a content identity.
        collisions: of ``need_content``, those whose distinctive header digest another message shares.
    """

    header_keys: dict[int, str]
    need_content: list[int]
    collisions: list[int]


def plan_identities(sizes: Mapping[int, int], tops: Mapping[int, bytes | None]) -> IdentityPlan:
    """Decide which messages are identified by their header section and which by their full content.

    Args:
        sizes: mapping of message-number to size in octets from LIST.
        tops: mapping of message-number to the body of its ``TOP n 0`` reply, or None when TOP was
            refused or not sent; message-numbers missing here count as None.

    Returns:
        The plan; every message-number of ``sizes`` is in exactly one of ``header_keys`` and
        ``need_content``.
    """
    candidates: dict[int, str] = {}
    need: set[int] = set()
    for msgnum, size in sizes.items():
        top = tops.get(msgnum)
        header = header_section(top) if top is not None else None
        if header is not None and distinctive(header):
            candidates[msgnum] = header_key(header, size)
        else:
            need.add(msgnum)
    counts: dict[str, int] = {}
    for key in candidates.values():
        counts[key] = counts.get(key, 0) + 1
    collisions = sorted(n for n, key in candidates.items() if counts[key] > 1)
    need.update(collisions)
    header_keys = {n: key for n, key in sorted(candidates.items()) if counts[key] == 1}
    return IdentityPlan(header_keys, sorted(need), collisions)


def key_matches(uidl: str, raw: bytes, size_octets: int) -> bool:
    """Whether retrieved octets are the message a digest identity names.

    Checked for every message retrieved under a digest identity before it is handed on for storing,
    so that the archive holds, under that identity, exactly what the identity was computed from: for
    ``"sha256:"`` the same content; for ``"hdr:"`` the same header section and LIST size.

    Args:
        uidl: the digest identity (``"hdr:…"`` or ``"sha256:…"``, optionally with ``"#n"``).
        raw: the retrieved message, un-stuffed.
        size_octets: the message's size from this session's LIST.

    Returns:
        False for a mismatch and for a ``uidl`` that is not a digest identity.
    """
    if uidl.startswith(CONTENT_PREFIX):
        return uidl[len(CONTENT_PREFIX) :].partition("#")[0] == content_digest(raw)
    if uidl.startswith(HEADER_PREFIX):
        header = header_section(raw)
        return header is not None and header_key(header, size_octets) == uidl
    return False
