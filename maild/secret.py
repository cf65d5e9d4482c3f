"""Secrets (passwords, tokens) that never show themselves, and the redaction of every live one.

:class:`Secret` hides its value from ``repr()``, ``str()``, logs and tracebacks; every instance alive is
known to :func:`redact_known`, the last line of defence wherever server text or an error is shown or
logged (status, log events, CLI output), which masks each secret in every shape a server or maild may
quote it in (:func:`_forms`). :func:`shown` masks, then cuts; :func:`mask_form` masks one form.
Standard: RFC 3986 section 2.1 (percent-encoding of a form the token endpoint echoes).

May import: the standard library only (a base module, like :mod:`maild.model`).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable

#: Every :class:`Secret` alive in this process, so that :func:`redact_known` can find their values in
#: any text (a server echoing a LOGIN line, an error message) before it is shown or logged.
_LIVE_SECRETS: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()
"""Keyed by identity, not by value: secrets compare by value, and a set of them kept only the first of
equal ones, so a second object of the same password (a reloaded configuration, two accounts sharing
it) was never registered and went unmasked once the first was gone (QA of session 12)."""
_MASK = "********"
#: Shortest secret :func:`redact_known` masks everywhere: a one- or two-character value would blank
#: out unrelated text in every log line (errors that quote server text still mask any length). The
#: same bound applies to each form given to :meth:`Secret.add_forms`, on its own length: the wire
#: forms of a short secret (the base64 of ``\0user\0ab``, ``PASS ab``, ``anna "ab"``) are long and
#: unique, so they are masked whatever the secret's own length (session 13). Default 4 characters.
MIN_GLOBAL_REDACT_CHARS = 4


def _repr_inner(value: str, quote: str) -> str:
    r"""``value`` as it appears inside a Python ``repr()`` delimited by ``quote``.

    ``repr()`` escapes character by character, so the secret's form inside the repr of any longer
    text (an error quoting a server's reply with ``!r``) is the concatenation of each character's
    own escape; only the delimiting quote differs (``'`` unless the whole text holds ``'`` and no ``"``).
    """
    other = '"' if quote == "'" else "'"
    return "".join("\\" + quote if ch == quote else other if ch == other else repr(ch)[1:-1] for ch in value)


def _forms(value: str) -> tuple[str, ...]:
    r"""Every shape the secret keeps when maild or a server quotes text holding it, longest first.

    As sent; as an IMAP quoted string carries it (``\\`` and ``\"`` escaped); inside a Python
    ``repr()`` of a str, delimited by ``'`` or ``"`` (an error message quoting a server's reply with
    ``!r`` doubles a backslash and escapes control characters), of the secret as sent or of its
    quoted-string form (a server echoing a LOGIN line); inside the ``repr()`` of the UTF-8 bytes
    (non-ASCII as ``\xNN``); percent-encoded as in a form body or URL (RFC 3986 section 2.1; ``+``
    for a space as ``application/x-www-form-urlencoded`` writes it).
    """
    import urllib.parse  # here: computed once per secret, at its first redaction, not at start-up

    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    raw = value.encode("utf-8", "surrogateescape")
    as_bytes = "".join("\\'" if b == 0x27 else repr(bytes([b]))[2:-1] for b in raw)
    # as a form field or URL carries it (an OAuth2 token endpoint echoing the request body)
    forms = {value, quoted, as_bytes, urllib.parse.quote_plus(value), urllib.parse.quote(value, safe="")}
    for shown in (value, quoted):  # an error quoting a LOGIN line with repr() shows the quoted form
        forms |= {_repr_inner(shown, "'"), _repr_inner(shown, '"')}
    return tuple(sorted(forms, key=len, reverse=True))


def redact_known(text: str) -> str:
    """``text`` with the value of every live :class:`Secret` replaced by ``********``.

    A last line of defence wherever server text or an error is shown or logged (status, log
    events, CLI output): it finds a password or token whatever shape a server wrapped it in, as
    long as its octets appear unchanged. Longer secrets are masked first, so one secret inside
    another never leaves part of the longer one shown.
    """
    if not text:
        return text
    # longest first: a shorter secret inside a longer one ("password" in "my-password-9") masked
    # first would leave the rest of the longer one shown (QA of session 10, seen in CI)
    # valuerefs(): one copy of the references, which other threads may add to meanwhile
    live = [secret for ref in _LIVE_SECRETS.valuerefs() if (secret := ref()) is not None]
    for secret in sorted(live, key=lambda s: len(s.reveal()), reverse=True):
        if len(secret.reveal()) >= MIN_GLOBAL_REDACT_CHARS:
            text = secret.redact(text)
        else:  # too short to mask alone, but its wire forms are long (QA of session 12, defect 2 of 13)
            text = secret.redact_added(text)
    return text


def mask_form(text: str, form: str, *, whole: bool) -> str:
    """``text`` with ``form`` (a secret, or one of its wire forms) replaced by ``********``.

    Args:
        text: what may be shown.
        form: the text to mask (non-empty).
        whole: mask it only where it is not part of a longer word (no word character, ``\\w``,
            right before or after it): for a secret shorter than :data:`MIN_GLOBAL_REDACT_CHARS`,
            whose every letter would otherwise be masked inside unrelated words (a password ``a``
            made ``Authentication`` into ``Authentic********tion``, QA of session 13), and for its
            wire forms (``PASS c`` is not the start of ``PASS command``). An echo stands apart:
            ``PASS a``, ``"a"``, ``b'PASS a\\r\\n'``.

    Returns:
        ``text`` masked (the same object when ``form`` does not occur).
    """
    if form not in text:
        return text
    if not whole:
        return text.replace(form, _MASK)
    return re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", _MASK, text)


def shown(text: str, chars: int) -> str:
    """``text`` as it may be shown: every live secret masked (:func:`redact_known`), then cut to
    ``chars`` characters.

    The order is the point: a reply cut first could keep part of an echoed secret (its first
    characters before the cut), which no later redaction recognises. Every place that shows at most
    N characters of server text (error replies, greetings, BYE texts, SASL error members) uses this.

    Args:
        text: server text, already decoded; callers bound what they decode (e.g. at most
            :data:`maild.errors.SHOWN_REPLY_OCTETS` octets of a reply).
        chars: the most characters kept, >= 0.
    """
    return redact_known(text)[:chars]


class Secret:
    """A password or token that never shows itself in ``repr()``, ``str()``, logs or tracebacks.

    Use :meth:`reveal` at the single point where the secret goes onto the wire. Every instance is
    known to :func:`redact_known` while it lives.
    """

    __slots__ = ("__weakref__", "_extra", "_forms", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._forms: tuple[str, ...] | None = None  # computed at the first redact()
        self._extra: frozenset[str] = frozenset()  # see add_forms
        _LIVE_SECRETS[id(self)] = self

    def reveal(self) -> str:
        """Return the secret text (only for sending it to the server)."""
        return self._value

    def add_forms(self, forms: Iterable[str]) -> None:
        """Mask ``forms`` too wherever this secret is masked, for as long as it lives: the shapes it
        takes on the wire inside a longer value that no quoting of the secret alone gives, such as
        the base64 of a SASL response holding it (RFC 4616, RFC 7628), which a server may echo in a
        ``BYE`` or a line that is no IMAP response (QA of session 12: shown in full in the error,
        status and log), or the arguments of a POP3 ``PASS`` or IMAP ``LOGIN`` line. A few per secret
        (each mechanism's, with and without padding); forms shorter than
        :data:`MIN_GLOBAL_REDACT_CHARS` are ignored. A form is masked by :func:`redact_known` whatever
        the secret's own length (:meth:`redact_added`): a 2-character password is not masked
        alone, the base64 line holding it is."""
        extra = self._extra | {form for form in forms if len(form) >= MIN_GLOBAL_REDACT_CHARS}
        if extra != self._extra:
            self._extra = frozenset(extra)
            self._forms = None

    def redact(self, text: str) -> str:
        """``text`` with this secret replaced by ``********``: raw, as an IMAP quoted string, or as
        Python's ``repr()`` shows it inside a longer str or bytes (see :func:`_forms`), and in the
        forms given to :meth:`add_forms`; a secret shorter than :data:`MIN_GLOBAL_REDACT_CHARS`
        only where it is no part of a longer word (:func:`mask_form`)."""
        if not self._value:
            return text
        if self._forms is None:
            self._forms = tuple(sorted({*_forms(self._value), *self._extra}, key=len, reverse=True))
        short = len(self._value) < MIN_GLOBAL_REDACT_CHARS  # only where it stands alone: mask_form
        for form in self._forms:
            text = mask_form(text, form, whole=short)
        return text

    def redact_added(self, text: str) -> str:
        """``text`` with only the forms given to :meth:`add_forms` replaced by ``********``, longest
        first: what :func:`redact_known` masks of a secret too short to mask on its own."""
        for form in sorted(self._extra, key=len, reverse=True):
            text = mask_form(text, form, whole=True)  # not inside a longer word: see mask_form
        return text

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
