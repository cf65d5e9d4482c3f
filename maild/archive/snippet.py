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

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass, replace

from maild.archive.index_text import index_text
from maild.model import HeaderSummary

SNIPPET_TOKENS = 12
"""Words of context in a search hit's snippet."""
SNIPPET_SOURCE_OCTETS = 256 * 1024
"""Octets of a hit's message read to make its snippet (256 KiB: the text parts come first in almost all
mail, and 50 hits then read at most 12.5 MiB); words beyond them are not quoted."""
MAX_HIGHLIGHT_TERMS = 32
"""Words of a query that are looked for in the snippet; the rest of a longer query is not marked."""
ELLIPSIS = " … "

_WORD_CHAR = r"[^\W_]"
_WORD_RE = re.compile(_WORD_CHAR + "+")
_QUERY_RE = re.compile(r'"((?:[^"]|"")*)"?|(\S+?)(\*?)(?=\s|$|[()"])|[()]')
_KEYWORDS = frozenset({"AND", "OR", "NOT", "NEAR"})
_COLUMN_ORDER = ("subject", "sender", "recipients", "attachments", "body")
"""Columns in the order they are searched for the query's words: the short ones first; the first that
holds every word is quoted without reading the others, else the one that holds the most."""


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


_SPAN_CHARS = 100
"""Matches starting within this many characters of each other count as one spot when the best is chosen."""
_REGION_CHARS = 1000
"""Characters around the best spot split into words for the snippet (never the whole text)."""
_TAIL_CHARS = 40
_MAX_MATCHES = 64
"""Matches looked at per column: enough to find a spot with several of the query's words."""


@functools.cache
def _variants() -> dict[str, str]:
    """Base letter -> the letters of Latin-1 and Latin Extended-A/B that fold to it (``a`` -> ``àáâãäå…``)."""
    found: dict[str, list[str]] = {}
    for code in range(0xC0, 0x250):
        char = chr(code)
        folded = fold(char)
        if len(folded) == 1 and folded != char.lower():
            found.setdefault(folded, []).append(char)
    return {base: "".join(chars) for base, chars in found.items()}


def _letter_class(char: str) -> str:
    more = _variants().get(char, "")
    return f"[{re.escape(char)}{more}]" if more else re.escape(char)


@functools.lru_cache(maxsize=32)
def _pattern(terms: tuple[_Term, ...]) -> re.Pattern[str] | None:
    """One case-insensitive expression finding every term as a whole word (a prefix term: as the start of
    one), accented letters matching their base letter as the tokenizer folds them; group ``n + 1`` is
    term ``n``. Runs over the original text, so no folded copy of it is made."""
    if not terms:
        return None
    groups = "|".join(
        "(" + "".join(_letter_class(c) for c in t.word) + (_WORD_CHAR + "*" if t.prefix else "") + ")"
        for t in terms
    )
    # \b rather than a look-behind: twice as fast; it differs only next to "_", a separator to FTS5.
    return re.compile(rf"\b(?:{groups})(?!{_WORD_CHAR})", re.IGNORECASE)


def _best_spot(matches: list[tuple[int, int]]) -> tuple[int, int]:
    """(distinct terms near the best spot, where it starts) of a column's (offset, term) matches."""
    anchor, best = 0, 0
    for n, (start, _) in enumerate(matches):
        found = len({term for s, term in matches[n : n + SNIPPET_TOKENS] if s < start + _SPAN_CHARS})
        if found > best:
            anchor, best = start, found
    return best, anchor


def _window(text: str, anchor: int, starts: set[int]) -> str:
    """About :data:`SNIPPET_TOKENS` words of ``text`` around offset ``anchor``; words at ``starts`` in [ ]."""
    low = max(0, anchor - _REGION_CHARS // 4)
    high = min(len(text), anchor + _REGION_CHARS)
    words = list(_WORD_RE.finditer(text, low, high))
    if words and low > 0 and words[0].start() == low and _WORD_RE.match(text, low - 1):
        words.pop(0)  # cut in the middle of a word
    if words and high < len(text) and words[-1].end() == high and _WORD_RE.match(text, high):
        words.pop()
    if not words:
        return ""
    first = next((n for n, w in enumerate(words) if w.end() > anchor), 0)
    start = max(0, min(first - SNIPPET_TOKENS // 4, len(words) - SNIPPET_TOKENS))
    pieces: list[str] = []
    position = words[start].start()
    earlier = _WORD_RE.search(text, 0, position) is not None
    if not earlier:
        position = 0
    for w in words[start : start + SNIPPET_TOKENS]:
        pieces.append(text[position : w.start()])
        pieces.append(f"[{w.group()}]" if w.start() in starts else w.group())
        position = w.end()
    later = _WORD_RE.search(text, position) is not None
    if not later:  # the window reaches the end: its closing punctuation too
        pieces.append(text[position : position + _TAIL_CHARS])
    quoted = " ".join("".join(pieces).split())
    return (ELLIPSIS.lstrip() if earlier else "") + quoted + (ELLIPSIS.rstrip() if later else "")


def make_snippet(raw: bytes, query: str, summary: HeaderSummary | None = None, documents: str = "") -> str:
    """The snippet of a search hit: about :data:`SNIPPET_TOKENS` words of the column that holds most
    of the query's words, those words in ``[`` ``]``; the start of the body when none is found.

    Args:
        raw: the message's octets, or their first :data:`SNIPPET_SOURCE_OCTETS`.
        query: the FTS5 query that found it.
        summary: the message's decoded From, To and Subject as the archive keeps them, which saves
            decoding them again (the stdlib's RFC 2047 decoder was half of a search's time).
        documents: the text of its PDF and Office attachments the index holds (``document_text``,
            v11), searched with the file names, so a hit in a PDF shows the PDF's words.

    Returns:
        One line of text; empty if the message has no text at all.
    """
    text = index_text(raw, summary)
    if documents:
        text = replace(text, attachments=f"{text.attachments}\n{documents}")
    terms = query_terms(query)[:MAX_HIGHLIGHT_TERMS]
    pattern = _pattern(tuple(terms))
    wanted = len({t.word for t in terms})
    best: tuple[int, int, str, list[tuple[int, int]]] = (0, 0, "", [])
    for column in _COLUMN_ORDER:
        value: str = getattr(text, column)
        if pattern is None or best[0] >= wanted:
            break
        found_matches = itertools.islice(pattern.finditer(value), _MAX_MATCHES)
        matches = [(m.start(), m.lastindex or 0) for m in found_matches]
        found, anchor = _best_spot(matches)
        if found > best[0]:
            best = (found, anchor, value, matches)
    if not best[0]:
        return _window(text.body or text.subject, 0, set())
    return _window(best[2], best[1], {s for s, _ in best[3]})
