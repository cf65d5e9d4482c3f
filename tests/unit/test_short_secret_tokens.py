"""A password shorter than MIN_GLOBAL_REDACT_CHARS is masked only where it stands as a whole token
(QA of session 13): the server-text masks (``Secret.redact`` in IMAP errors and ALERTs,
``sasl.redact`` in POP3 refusals and AUTHENTICATE's) replaced it inside every word, so a password
``a`` made every IMAP error ``********cct: ... M********ilbox`` and every POP3 refusal
``Authentic********tion f********iled``; a wire form (``PASS c``) masked the start of ``PASS command``.
An echo of the password or of its wire forms is still masked."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from maild.auth import sasl
from maild.secret import MIN_GLOBAL_REDACT_CHARS, Secret, redact_known

MASK = "********"


def test_a_one_character_password_does_not_garble_an_imap_error() -> None:
    secret = Secret("a")
    text = "acct: SELECT refused: NO [NONEXISTENT] Mailbox does not exist"
    assert secret.redact(text) == text  # before: "********cct: ... M********ilbox ..."
    assert secret.redact('acct: LOGIN refused: NO echo LOGIN "anna" "a"') == (
        f'acct: LOGIN refused: NO echo LOGIN "anna" "{MASK}"'
    )
    assert secret.redact("BAD password a rejected") == f"BAD password {MASK} rejected"


def test_a_one_character_password_does_not_garble_a_pop3_refusal() -> None:
    assert sasl.redact("-ERR [AUTH] Authentication failed.", ("a",)) == "-ERR [AUTH] Authentication failed."
    assert sasl.redact("-ERR PASS a: wrong", ("a",)) == f"-ERR PASS {MASK}: wrong"
    assert sasl.redact("-ERR b'PASS a\\r\\n'", ("a",)) == f"-ERR b'PASS {MASK}\\r\\n'"


def test_a_wire_form_is_not_masked_at_the_start_of_a_longer_word() -> None:
    secret = Secret("c")
    secret.add_forms(["PASS c"])
    assert redact_known("-ERR PASS command not allowed") == "-ERR PASS command not allowed"
    assert redact_known("-ERR PASS c rejected") == f"-ERR {MASK} rejected"
    assert redact_known("-ERR PASS c") == f"-ERR {MASK}"
    del secret


def test_a_long_password_is_still_masked_inside_words() -> None:
    assert Secret("hunter2").redact("xhunter2x") == f"x{MASK}x"
    assert sasl.redact("xhunter2x", ("hunter2",)) == f"x{MASK}x"


WORDS = st.text(alphabet="abc1_", min_size=1, max_size=4)


@given(
    password=st.text(alphabet="abc1_", min_size=1, max_size=MIN_GLOBAL_REDACT_CHARS - 1),
    words=st.lists(WORDS, max_size=12),
    separators=st.lists(st.sampled_from([" ", ": ", ", ", '"', "(", ")", "\r\n"]), min_size=12, max_size=12),
)
def test_a_short_password_is_masked_exactly_where_it_is_a_whole_word(
    password: str, words: list[str], separators: list[str]
) -> None:
    """Against the general path: text of words joined by separators that are no word characters;
    the password is masked where a word equals it, and nowhere else (Secret.redact and sasl.redact)."""
    text = "".join(w + s for w, s in zip(words, separators, strict=False))
    expected = "".join((MASK if w == password else w) + s for w, s in zip(words, separators, strict=False))
    assert sasl.redact(text, (password,)) == expected
    assert Secret(password).redact(text) == expected
    assert re.search(rf"(?<!\w){re.escape(password)}(?!\w)", expected) is None
