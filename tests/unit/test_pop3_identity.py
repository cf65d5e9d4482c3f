"""Digest identities for POP3 maildrops without UIDL: which messages get which, and the checks at RETR."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from maild.model import POP3Key
from maild.protocols.pop3 import identity
from maild.protocols.pop3.identity import (
    content_keys,
    header_key,
    header_section,
    is_digest_key,
    key_matches,
    plan_identities,
)

HEADER = (
    b"Received: from mx.example.org by pop.example.com with ESMTP id 4Xk2; Mon, 2 Mar 2026 09:00:01 +0000\r\n"
    b"Message-ID: <one@example.org>\r\n"
    b"Subject: Angebot\r\n"
)
RAW = HEADER + b"\r\nHallo\r\n"


def test_header_section_ends_at_the_empty_line_and_keeps_the_last_crlf() -> None:
    """The header section of a message and of its TOP n 0 reply are the same octets."""
    assert header_section(RAW) == HEADER
    assert header_section(HEADER + b"\r\n") == HEADER


@pytest.mark.parametrize("data", [b"Subject: no body and no empty line\r\n", b"\r\nbody only\r\n", b""])
def test_header_section_missing(data: bytes) -> None:
    """Without an empty line ending a non-empty header section there is no header identity."""
    assert header_section(data) is None


def test_distinctive_header_gets_a_header_identity() -> None:
    """A header section with Message-ID and Received, unique in the listing, is identified by it and the size."""
    plan = plan_identities({1: len(RAW)}, {1: HEADER + b"\r\n"})

    assert plan.header_keys == {1: header_key(HEADER, len(RAW))}
    assert plan.need_content == []
    assert plan.header_keys[1].startswith("hdr:")
    assert plan.header_keys[1] == "hdr:" + hashlib.sha256(b"%d\r\n" % len(RAW) + HEADER).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        b"Message-ID: <one@example.org>\r\nSubject: x\r\n",  # no Received
        b"Received: from a by b; Mon, 2 Mar 2026 09:00:01 +0000\r\nSubject: x\r\n",  # no Message-ID
        b"Received: from a by b; Mon, 2 Mar 2026 09:00:01 +0000\r\nMessage-ID:   \r\n",  # empty Message-ID
        b"Subject: x\r\n X-Note: Received: and Message-ID: <a@b> only folded\r\n",
    ],
)
def test_header_without_message_id_or_received_is_not_distinctive(header: bytes) -> None:
    """A header section lacking a Message-ID value or a Received field is not trusted: full content instead."""
    plan = plan_identities({1: 50}, {1: header + b"\r\n"})

    assert plan.header_keys == {}
    assert plan.need_content == [1]


def test_refused_or_missing_top_needs_content() -> None:
    """Messages without a TOP reply (refused, or TOP not offered) are identified by full content."""
    plan = plan_identities({1: 10, 2: 20}, {1: None})

    assert plan.need_content == [1, 2]


def test_colliding_header_identities_fall_back_to_content() -> None:
    """Two messages of one listing with the same header section and size both get full-content identities."""
    other = HEADER.replace(b"one@", b"two@")
    plan = plan_identities(
        {1: 100, 2: 100, 3: 100}, {1: HEADER + b"\r\n", 2: other + b"\r\n", 3: HEADER + b"\r\n"}
    )

    assert plan.collisions == [1, 3]
    assert plan.need_content == [1, 3]
    assert list(plan.header_keys) == [2]


def test_same_header_different_size_is_no_collision() -> None:
    """The LIST size is part of the header identity: a copied header over another body is told apart."""
    plan = plan_identities({1: 100, 2: 101}, {1: HEADER + b"\r\n", 2: HEADER + b"\r\n"})

    assert plan.need_content == []
    assert plan.header_keys[1] != plan.header_keys[2]


def test_identical_copies_get_numbered_content_identities() -> None:
    """Identical messages in one listing get distinct, stable keys: the digest, then #2, #3 in listing order."""
    digest = hashlib.sha256(RAW).hexdigest()
    keys = content_keys({5: digest, 2: digest, 3: "0" * 64, 9: digest})

    assert keys == {
        2: f"sha256:{digest}",
        3: "sha256:" + "0" * 64,
        5: f"sha256:{digest}#2",
        9: f"sha256:{digest}#3",
    }
    assert all(is_digest_key(k) for k in keys.values())
    assert POP3Key(keys[5]).exact_content


def test_key_matches_checks_what_the_identity_was_computed_from() -> None:
    """At RETR a content identity must match the octets, a header identity the header section and LIST size."""
    content = "sha256:" + hashlib.sha256(RAW).hexdigest()
    hdr = header_key(HEADER, len(RAW))

    assert key_matches(content, RAW, len(RAW))
    assert key_matches(content + "#2", RAW, len(RAW))
    assert not key_matches(content, RAW + b"x", len(RAW))
    assert key_matches(hdr, RAW, len(RAW))
    assert key_matches(hdr, HEADER + b"\r\nanother body\r\n", len(RAW))  # the body is not part of it
    assert not key_matches(hdr, RAW, len(RAW) + 1)
    assert not key_matches(hdr, RAW.replace(b"Angebot", b"Angebox"), len(RAW))
    assert not key_matches("uidl-1", RAW, len(RAW))


_OLD_MESSAGE_ID_RE = re.compile(rb"^message-id[ \t]*:[ \t]*\S", re.IGNORECASE | re.MULTILINE)
_OLD_RECEIVED_RE = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _old_distinctive(header: bytes) -> bool:
    """The test :func:`identity.distinctive` made before it used the shared header scanner (session 5)."""
    return bool(_OLD_MESSAGE_ID_RE.search(header)) and bool(_OLD_RECEIVED_RE.search(header))


@pytest.mark.parametrize(
    "header",
    [
        b"Received: by mx\r\nMessage-ID: <a@b>\r\n",
        b"received:x\r\nmessage-id:<a@b>\r\n",
        b"RECEIVED  : x\r\nMESSAGE-ID \t: \t<a@b>\r\n",
        b"Received: x\r\nMessage-ID:\r\n <folded@b>\r\n",  # no value on the first line: not distinctive
        b"Received: x\r\nMessage-ID: \x0b<a@b>\r\n",
        b"Received: x\r\nMessage-ID:   \r\n",
        b"Received: x\r\nX-Message-ID: <a@b>\r\n",
        b"X-Received: x\r\nMessage-ID: <a@b>\r\n",
        b"Message-ID: <a@b>\r\n",
        b"Received: x\nMessage-ID: <a@b>\n",
        b"Subject: Message-ID: <a@b>\r\nReceived: x\r\n",
        b"Message-ID: \r\nMessage-ID: <second@b>\r\nReceived: y\r\n",
    ],
)
def test_distinctive_agrees_with_the_former_expressions(header: bytes) -> None:
    """The shared scanner decides distinctiveness exactly as the former expressions did on edge cases
    (a changed decision would change archived identities)."""
    assert identity.distinctive(header) is _old_distinctive(header)


def test_distinctive_agrees_with_the_former_expressions_on_random_headers() -> None:
    """On random header sections built from field-name and separator fragments, the shared scanner and
    the former expressions agree every time, and both outcomes occur."""
    rng = random.Random(5322)
    parts = [
        b"Message-ID",
        b"message-id",
        b"Received",
        b"RECEIVED",
        b"X-Received",
        b":",
        b" ",
        b"\t",
        b"\r\n",
        b"\n",
        b"\r",
        b"\x0b",
        b"<a@b>",
        b"x",
        b"\r\n ",
        b"Subject",
    ]
    seen = set()
    for _ in range(5000):
        header = b"".join(rng.choice(parts) for _ in range(rng.randrange(1, 16)))
        expected = _old_distinctive(header)
        assert identity.distinctive(header) is expected, header
        seen.add(expected)
    assert seen == {True, False}
