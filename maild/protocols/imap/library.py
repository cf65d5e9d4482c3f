"""aioimaplib's pin and the values maild exchanges with it: read limits, replies, errors.

The vocabulary shared by the modules that wrap aioimaplib 2.0.3 (:mod:`~.protocol`, :mod:`~.commands`,
:mod:`~.client`): the pinned and the installed release, the caps on what one connection reads
(:class:`ReadLimits`, RFC 9051 section 4.3 sets no limit of its own), a command's answer
(:class:`Reply`, RFC 9051 section 7 and 7.1), the translation of the library's results and exceptions
into those values and :class:`LibraryError`, and the quieting of the library's logger.

May import: importlib.metadata (when asked for the installed release), logging, aioimaplib,
:mod:`maild.protocols.imap.lex`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aioimaplib

from maild.protocols.imap.lex import Part

__all__ = [
    "MAX_BUFFERED_OCTETS",
    "MAX_LINE_OCTETS",
    "MAX_LITERAL_CEILING_OCTETS",
    "MAX_LITERAL_OCTETS",
    "MAX_UNTAGGED_PER_COMMAND",
    "PATCHED_AIOIMAPLIB",
    "LibraryError",
    "LibraryTimeout",
    "ReadLimits",
    "Reply",
    "installed_aioimaplib",
    "quiet_library_logger",
    "tagged_status",
]

#: The aioimaplib release whose internals this module was written for (pinned in pyproject.toml).
PATCHED_AIOIMAPLIB = "2.0.3"


def installed_aioimaplib() -> str:
    """The installed aioimaplib release, from its distribution metadata.

    A function, not a constant computed at import: :mod:`importlib.metadata` (with email.parser,
    zipfile and a scan of every ``sys.path`` entry) cost a one-shot IMAP ``maild fetch`` tens of
    milliseconds of start-up CPU for a value nothing at run time reads (docs/performance.md,
    session 5). The module attribute ``AIOIMAPLIB_VERSION`` still answers, on first access.
    """
    import importlib.metadata

    return importlib.metadata.version("aioimaplib")


def __getattr__(name: str) -> str:
    """``AIOIMAPLIB_VERSION``: :func:`installed_aioimaplib`, read when first asked for (PEP 562)."""
    if name == "AIOIMAPLIB_VERSION":
        return installed_aioimaplib()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Longest response line maild reads, in octets, CRLF and literals excluded. RFC 9051 sets no limit;
#: the longest legitimate lines are ``* SEARCH`` answers for a whole mailbox (about 8 octets per
#: message: 16 MiB covers two million messages).
MAX_LINE_OCTETS = 16 * 2**20
#: Largest literal maild reads, in octets, when the account sets no ``max_message_size`` (RFC 9051
#: section 4.3 allows up to 2**32 - 1). The same as POP3's reply cap.
MAX_LITERAL_OCTETS = 100 * 2**20
#: Largest literal maild reads whatever the account's ``max_message_size``: 1 GiB, in octets (the
#: configuration refuses a larger ``max_message_size``; this holds for any caller that did not load
#: one, too). Until session 15 a huge ``max_message_size`` raised the cap without limit.
MAX_LITERAL_CEILING_OCTETS = 2**30
#: Most octets of response data (lines and literals) held for one command at a time: what a command
#: keeps until its tagged completion, or what one streaming FETCH response holds until it is complete.
MAX_BUFFERED_OCTETS = 128 * 2**20
#: Most untagged (and continuation) response lines between two tagged completions. A streaming body
#: FETCH of 2,500 messages takes about 7,500.
MAX_UNTAGGED_PER_COMMAND = 100_000
#: Digits of a literal's size beyond which the announcement is refused before converting it.


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Caps on what one connection reads; a server exceeding any of them loses the connection.

    The check happens before the data is kept: a literal over the cap is refused on its
    announcement, before any of its octets are read, and a line over the cap as soon as that
    many octets without CRLF have arrived.

    Attributes:
        line_octets: longest response line in octets (literals excluded).
        literal_octets: largest literal in octets.
        buffered_octets: most octets held for one command (or one streaming FETCH response).
        untagged_per_command: most untagged and continuation lines between two tagged completions.

    Raises:
        ValueError: a cap is not positive.
    """

    line_octets: int = MAX_LINE_OCTETS
    literal_octets: int = MAX_LITERAL_OCTETS
    buffered_octets: int = MAX_BUFFERED_OCTETS
    untagged_per_command: int = MAX_UNTAGGED_PER_COMMAND

    def __post_init__(self) -> None:
        if min(self.line_octets, self.literal_octets, self.buffered_octets, self.untagged_per_command) < 1:
            raise ValueError("read limits must be positive")


class LibraryError(Exception):
    """aioimaplib refused a call (wrong state, unexpected response); the text names its exception."""


class LibraryTimeout(LibraryError):
    """aioimaplib's own timer expired (maild passes no library timers, so this should not happen)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's answer as aioimaplib framed it.

    Attributes:
        result: ``"OK"``, ``"NO"`` or ``"BAD"`` as the library reports the tagged completion.
        lines: the untagged parts (text lines as ``bytes`` without CRLF, literals as ``bytearray``,
            the shape :mod:`maild.protocols.imap.wire` describes), then the tagged completion's text
            after its result word as the last element.
    """

    result: str
    lines: list[Part]


def tagged_status(line: bytes) -> bool:
    """Whether ``line`` is a tagged completion as aioimaplib recognises one (``A12 OK ...``)."""
    return aioimaplib.tagged_status_response_re.match(line) is not None


def _reply(response: Any) -> Reply:
    return Reply(str(response.result), list(response.lines))


async def _run(awaitable: Awaitable[Any]) -> Reply:
    """Await a library coroutine and translate its result and its exceptions into maild's."""
    try:
        response = await awaitable
    except aioimaplib.CommandTimeout as exc:
        raise LibraryTimeout(f"{type(exc).__name__}: {exc}") from None
    except aioimaplib.AioImapException as exc:
        raise LibraryError(f"{type(exc).__name__}: {exc}") from None
    return _reply(response)


def quiet_library_logger() -> None:
    """Keep aioimaplib's logger at WARNING: at DEBUG it writes message bodies and some passwords."""
    for name in ("aioimaplib", "aioimaplib.aioimaplib"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
