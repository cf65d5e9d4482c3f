"""The FETCH fast path against the real Dovecot 2.3 (``tests/faults/test_imap_fast_fetch.py`` compares
it with the generic path on scripted streams): Dovecot's body responses are in the shape the fast path
takes, and what it takes is every octet as delivered."""

from __future__ import annotations

import pytest

from maild.protocols.imap import reading as imap_reading
from maild.protocols.imap.mailbox import IMAPMailbox
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import crlf, fast_path_heads, retrieve_everything


@pytest.mark.dovecot
async def test_dovecot_answers_in_the_usual_shape_and_the_fast_path_keeps_every_octet(
    dovecot: Dovecot, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the real Dovecot 2.3: every body response of a retrieval (flags none, one, several;
    empty-line bodies, 8-bit, a large literal read straight into its own buffer) is taken by the
    fast path, and each message comes out octet for octet as delivered, with its flags and date.

    Steps: deliver the corpus with flags; retrieve it; count the responses handed over read
    already; compare bodies with the delivered octets (CRLF as Dovecot serves them)."""
    messages = [
        *corpus.generate(12, seed=19, size_mix=corpus.SMALL_MIX),
        corpus.large_message(3 * imap_reading.DIRECT_LITERAL_OCTETS + 7),
    ]
    flags = ["", "S", "SF", "FRS"]
    for n, raw in enumerate(messages):
        dovecot.deliver(mail_user.name, raw, flags=flags[n % len(flags)])
    taken = fast_path_heads(monkeypatch)
    settings = dovecot_account(dovecot, mail_user, "imap", "none").server_settings()
    mailbox = IMAPMailbox(settings)
    await mailbox.open()
    try:
        items = await retrieve_everything(mailbox)
    finally:
        await mailbox.close()
    assert len(taken) == len(messages)
    assert [bytes(item.raw) for item in items] == [crlf(raw) for raw in messages]  # type: ignore[union-attr, arg-type]
    expected_flags = [
        {
            "": set(),
            "S": {"\\Seen"},
            "SF": {"\\Seen", "\\Flagged"},
            "FRS": {"\\Seen", "\\Flagged", "\\Answered"},
        }[flags[n % 4]]
        for n in range(len(messages))
    ]
    assert [set(item.flags) for item in items] == expected_flags  # type: ignore[union-attr]
    assert all(item.internaldate is not None and not item.missing for item in items)  # type: ignore[union-attr]
