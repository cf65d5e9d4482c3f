"""Search snippets, made from the message itself: the full-text index keeps no copy of the text.

The index is contentless (:mod:`maild.archive.fts`), so FTS5's ``snippet()`` has nothing to quote.
For each hit shown, the reader hands the first :data:`SNIPPET_SOURCE_OCTETS` of the message to
:func:`make_snippet`, which extracts the index text again (:func:`maild.archive.index_text.index_text`),
finds the query's words in it the way the index's tokenizer does (letters and digits, case and
diacritics folded), and quotes about :data:`SNIPPET_TOKENS` words around the best spot, matches in
``[`` ``]``. Pure functions; no I/O.

Standard: the query language is FTS5's (https://sqlite.org/fts5.html#full_text_query_syntax); only
its words, "phrases" and ``prefix*`` terms matter here (``NOT`` terms are not highlighted).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from maild.archive.index_text import index_text

SNIPPET_TOKENS = 12
"""Words of context in a search hit's snippet."""
SNIPPET_SOURCE_OCTETS = 2**20
"""Octets of a hit's message read to make its snippet (1 MiB); words beyond them are not quoted."""
ELLIPSIS = " … "

_WORD_RE = re.compile(r"[^\W_]+")
_QUERY_RE = re.compile(r'"((?:[^"]|"")*)"?|(\S+?)(\*?)(?=\s|$|[()"])|[()]')
_KEYWORDS = frozenset({"AND", "OR", "NOT", "NEAR"})
_COLUMN_ORDER = ("subject", "body", "sender", "recipients", "attachments")
"""Which column's snippet is shown when several match equally well."""


@dataclass(frozen=True, slots=True)
class _Term:
    word: str
    prefix: bool


def fold(word: str) -> str:
    """A word as the index's tokenizer (``unicode61 remove_diacritics 2``) stores it: lower case,
    without diacritics."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def query_terms(query: str) -> list[_Term]:
    """The words of an FTS5 query to highlight: bare words and the words of phrases; ``word*`` is a prefix.

    Keywords (``AND``/``OR``/``NOT``/``NEAR``), column filters (``subject:``), ``^`` and the term after
    ``NOT`` are left out.
    """
    terms: list[_Term] = []
    negate = False
    for match in _QUERY_RE.finditer(query):
        phrase, bare, star = match.group(1), match.group(2), match.group(3)
        if bare is not None and bare in _KEYWORDS:
            negate = bare == "NOT"
            continue
        if phrase is None and bare is None:  # a parenthesis
            continue
        text = phrase.replace('""', '"') if phrase is not None else bare.rpartition(":")[2].lstrip("-^+")
        words = _WORD_RE.findall(text)
        if not negate:
            for n, word in enumerate(words):
                terms.append(_Term(fold(word), prefix=bool(star) and n == len(words) - 1))
        negate = False
    return terms


def _matches(word: str, terms: list[_Term]) -> int:
    """Index of the first term ``word`` (folded) matches, or -1."""
    for n, term in enumerate(terms):
        if word == term.word or (term.prefix and word.startswith(term.word)):
            return n
    return -1


def _column_snippet(text: str, terms: list[_Term]) -> tuple[int, str]:
    """(distinct terms found, snippet) of one column's text."""
    words = list(_WORD_RE.finditer(text))
    if not words:
        return 0, ""
    hits = [_matches(fold(w.group()), terms) for w in words]
    best_start, best_found = 0, 0
    for n, hit in enumerate(hits):
        if hit < 0:
            continue
        start = max(0, min(n - SNIPPET_TOKENS // 4, len(words) - SNIPPET_TOKENS))
        found = len({h for h in hits[start : start + SNIPPET_TOKENS] if h >= 0})
        if found > best_found:
            best_start, best_found = start, found
    end = min(len(words), best_start + SNIPPET_TOKENS)
    pieces: list[str] = []
    position = words[best_start].start() if best_start else 0
    for n in range(best_start, end):
        w = words[n]
        pieces.append(text[position : w.start()])
        pieces.append(f"[{w.group()}]" if hits[n] >= 0 else w.group())
        position = w.end()
    if end == len(words):  # the window reaches the end: its closing punctuation too
        pieces.append(text[position:])
    quoted = " ".join("".join(pieces).split())
    before = ELLIPSIS.lstrip() if best_start else ""
    after = ELLIPSIS.rstrip() if end < len(words) else ""
    return best_found, before + quoted + after


def make_snippet(raw: bytes, query: str) -> str:
    """The snippet of a search hit: about :data:`SNIPPET_TOKENS` words of the column that holds most
    of the query's words, those words in ``[`` ``]``; the start of the body when none is found.

    Args:
        raw: the message's octets, or their first :data:`SNIPPET_SOURCE_OCTETS`.
        query: the FTS5 query that found it.

    Returns:
        One line of text; empty if the message has no text at all.
    """
    text = index_text(raw)
    terms = query_terms(query)
    found = {column: _column_snippet(getattr(text, column), terms) for column in _COLUMN_ORDER}
    best = max(_COLUMN_ORDER, key=lambda column: (found[column][0], -_COLUMN_ORDER.index(column)))
    if found[best][0] == 0:
        best = next((c for c in ("body", "subject") if found[c][1]), best)
    return found[best][1]
