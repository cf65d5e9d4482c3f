"""Every relative link and ``#anchor`` in README.md and docs/*.md leads to an existing file and heading.

Anchors are GitHub's heading slugs: the heading's text without markup, lower-cased, punctuation
removed, spaces turned into hyphens, and ``-1``, ``-2``, ... appended to repeated slugs.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their 1-based numbers."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w is Unicode: umlauts stay
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        line = _CODE_SPAN.sub("code", line)
        found.extend((number, m.group(1)) for m in _LINK.finditer(line))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(path):
        if _EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not linked.exists():
            problems.append(f"{where}: no such file")
        elif fragment:
            if linked.suffix != ".md" or linked.is_dir():
                problems.append(f"{where}: an anchor into something that is not a Markdown file")
            elif unquote(fragment) not in anchors(linked):
                problems.append(f"{where}: no heading with this anchor in {linked.relative_to(root)}")
    return problems


def test_there_are_documents_to_check() -> None:
    assert (ROOT / "README.md").exists()
    assert len(DOCUMENTS) > 1


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Moving a mailbox from POP3 to IMAP", "moving-a-mailbox-from-pop3-to-imap"),
        ("How fetching works, and the guarantee", "how-fetching-works-and-the-guarantee"),
        ("Targets (issue 7), from the tables below", "targets-issue-7-from-the-tables-below"),
        ("IMAP: deleting on the server", "imap-deleting-on-the-server"),
        ("The `retention` key", "the-retention-key"),
        ("Entwürfe & Co", "entwürfe--co"),
    ],
)
def test_slugs_follow_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_broken_links_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "# Title\n\n[ok](#title) [bad](#nothing) [gone](b.md)\n\n```\n[code](#x)\n```\n"
    )
    problems = broken_links(tmp_path / "a.md", tmp_path)
    assert len(problems) == 2
    assert "#nothing" in problems[0]
    assert "no such file" in problems[1]
