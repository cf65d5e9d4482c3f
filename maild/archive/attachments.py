"""Writing a message's parts to files for ``maild messages attachment``: decoded, byte-exact, safe names.

A file name comes from the sender, so it is hostile until cleaned: :func:`safe_filename` keeps only its
last path component, drops control characters, characters Windows forbids and leading dots, and
bounds its length; the file is created with ``O_EXCL | O_NOFOLLOW`` inside the chosen directory, so an
existing file or a planted symbolic link is never overwritten or followed.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from maild.archive.mime import Leaf, walk

MAX_FILENAME_OCTETS = 200
"""Longest file name written, in UTF-8 octets (file systems allow 255; room is left for a ``-N`` suffix)."""
MAX_NAME_COLLISIONS = 1000
"""Suffixes ``-2`` ... tried when a name is taken; beyond that the part is refused."""
_FORBIDDEN = frozenset('<>:"/\\|?*')


@dataclass(frozen=True, slots=True)
class WrittenPart:
    """A part written by :func:`write_all`: its IMAP section number, the file, its size in octets."""

    part: str
    path: Path
    size_octets: int


def safe_filename(name: str | None, part: str, content_type: str) -> str:
    """A file name for a part that cannot leave the target directory or hide.

    Args:
        name: the part's decoded file name, as the sender wrote it, or None.
        part: its IMAP section number (for a name when ``name`` is unusable).
        content_type: its lower-case ``type/subtype`` (for the extension of a made-up name).

    Returns:
        The last component of ``name`` with ``/`` and ``\\`` as separators, without control characters,
        ``<>:"|?*`` and leading dots or blanks, cut to :data:`MAX_FILENAME_OCTETS`; or
        ``part-<part><extension>`` when nothing is left.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and c not in _FORBIDDEN)
    base = base.strip().lstrip(". ").rstrip(". ")
    encoded = base.encode("utf-8")
    if len(encoded) > MAX_FILENAME_OCTETS:
        stem, dot, ext = base.rpartition(".")
        keep = ("." + ext) if dot and len(ext.encode()) <= 16 else ""
        room = MAX_FILENAME_OCTETS - len(keep.encode())
        base = (stem if keep else base).encode()[:room].decode("utf-8", "ignore").rstrip(". ") + keep
    if not base:
        extension = mimetypes.guess_extension(content_type, strict=False) or ".bin"
        base = f"part-{part}{extension}"
    return base


def _create_exclusive(directory: Path, name: str, data: bytes) -> Path:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    for n in range(1, MAX_NAME_COLLISIONS + 1):
        candidate = name if n == 1 else f"{stem}-{n}" + (f".{ext}" if ext else "")
        path = directory / candidate
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path
    raise FileExistsError(f"{directory / name}: {MAX_NAME_COLLISIONS} files of that name exist already")


def attachment_leaves(raw: bytes) -> list[Leaf]:
    """The parts of ``raw`` a mail reader shows as attachments (see :attr:`Leaf.is_attachment`)."""
    return [leaf for leaf in walk(raw) if leaf.is_attachment]


def write_all(raw: bytes, directory: Path) -> list[WrittenPart]:
    """Write every attachment of ``raw`` into ``directory`` (created if missing), decoded, under safe names.

    A name already taken gets ``-2``, ``-3``, ... before its extension; nothing is overwritten.

    Returns:
        What was written, in part order.

    Raises:
        OSError: the directory cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[WrittenPart] = []
    for leaf in attachment_leaves(raw):
        data = leaf.decoded(raw)
        path = _create_exclusive(directory, safe_filename(leaf.filename, leaf.part, leaf.content_type), data)
        written.append(WrittenPart(leaf.part, path, len(data)))
    return written
