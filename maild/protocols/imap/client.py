"""The aioimaplib layer: the only module that imports aioimaplib or touches its internals.

Everything else in :mod:`maild.protocols.imap` talks to the server through :class:`IMAPClient`, a
small maild-owned API whose values are maild types (:class:`Reply`, :data:`~.lex.Part`) and whose
errors are :class:`LibraryError` and :class:`LibraryTimeout`; aioimaplib's ``Response``, ``Command``,
tags, tasks, IDLE queue and exceptions stay in here. What it adds to aioimaplib 2.0.3 (see
``DEPENDENCIES.md`` for the measurements behind each point):

* :class:`_FastProtocol` records when data last arrived (for the inactivity limit), turns a refused
  greeting into a prompt connection loss, and removes the library's hot spots (quadratic FETCH
  completion check, eager debug formatting of every received chunk, recursion per line);
* FETCH responses are framed with the lexer's rules (:func:`~.lex.paren_depth`: parentheses inside
  quoted strings and section specs do not count, literals are skipped), not by counting every
  parenthesis as the library does;
* streaming FETCH (:class:`StreamingFetch`): each FETCH response is handed to a sink as soon as it is
  complete instead of being kept until the tagged completion, and reading can be paused;
* STARTTLS, which aioimaplib lacks (:func:`starttls`), AUTHENTICATE with continuation lines
  (:class:`Authentication`; the library has only a one-shot XOAUTH2), and IDLE rounds
  (:class:`IdleRound`) bounded by the caller instead of the library's hanging helpers;
* fewer round trips: the greeting's ``[CAPABILITY ...]`` replaces the library's CAPABILITY command,
  and commands queued with :meth:`IMAPClient.follow_sign_in` are pipelined behind LOGIN or
  AUTHENTICATE PLAIN (RFC 9051 section 5.5; the protocol routes their responses in order);
* COMPRESS=DEFLATE (RFC 4978), which aioimaplib lacks (:meth:`IMAPClient.compress`): writes go
  through :class:`~.compress.DeflatingTransport`, received data is inflated at most
  :data:`~.compress.INFLATE_PIECE_OCTETS` at a time, each piece held to the :class:`ReadLimits`.

There is no fallback to the stock protocol: ``pyproject.toml`` pins aioimaplib to exactly
:data:`PATCHED_AIOIMAPLIB`, and ``tests/faults/test_imap_library.py`` (with the IDLE pins in
``tests/faults/test_idle_faults.py``) fails when the installed version or the source of any library
method relied on here changes. A path that would only run after the pin changed is never tested.

May import: asyncio, collections, re, ssl, aioimaplib, :mod:`maild.errors`,
:mod:`maild.protocols.imap.lex`, :mod:`maild.protocols.imap.compress`.

Longer than the ~500 lines of the style guide on purpose: it is the one module allowed to import
aioimaplib, and splitting it would make two.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import aioimaplib

from maild.errors import ProtocolError
from maild.protocols.imap.compress import DeflatingTransport, Inflater
from maild.protocols.imap.lex import Part, paren_depth

__all__ = [
    "AIOIMAPLIB_VERSION",
    "MAX_PENDING_CONTINUATIONS",
    "MAX_PIPELINED_COMMANDS",
    "PATCHED_AIOIMAPLIB",
    "Authentication",
    "FetchSink",
    "IMAPClient",
    "IdleRound",
    "LibraryError",
    "LibraryTimeout",
    "ReadLimits",
    "Reply",
    "StreamingFetch",
    "quiet_library_logger",
    "starttls",
]

#: The aioimaplib release whose internals this module was written for (pinned in pyproject.toml).
PATCHED_AIOIMAPLIB = "2.0.3"
#: The installed aioimaplib release.
AIOIMAPLIB_VERSION = importlib.metadata.version("aioimaplib")


#: Longest response line maild reads, in octets, CRLF and literals excluded. RFC 9051 sets no limit;
#: the longest legitimate lines are ``* SEARCH`` answers for a whole mailbox (about 8 octets per
#: message: 16 MiB covers two million messages).
MAX_LINE_OCTETS = 16 * 2**20
#: Largest literal maild reads, in octets, when the account sets no ``max_message_size`` (RFC 9051
#: section 4.3 allows up to 2**32 - 1). The same as POP3's reply cap.
MAX_LITERAL_OCTETS = 100 * 2**20
#: Most octets of response data (lines and literals) held for one command at a time: what a command
#: keeps until its tagged completion, or what one streaming FETCH response holds until it is complete.
MAX_BUFFERED_OCTETS = 128 * 2**20
#: Most untagged (and continuation) response lines between two tagged completions. A streaming body
#: FETCH of 2,500 messages takes about 7,500.
MAX_UNTAGGED_PER_COMMAND = 100_000
#: Digits of a literal's size beyond which the announcement is refused before converting it.
_MAX_LITERAL_DIGITS = 12
#: ``[CAPABILITY ...]`` in an OK or PREAUTH greeting (RFC 9051 section 7.1, 7.1.1 and 7.1.4).
_GREETING_CAPABILITY = re.compile(rb"\* (OK|PREAUTH) \[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


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


class _Exceeded(Exception):
    """Raised inside ``data_received`` to stop reading a connection that broke a :class:`ReadLimits` cap."""


class _Switched(Exception):
    """Raised inside ``data_received`` when COMPRESS completed: ``rest`` of the chunk is compressed."""

    def __init__(self, rest: bytes) -> None:
        super().__init__("COMPRESS active")
        self.rest = rest


@dataclass(slots=True)
class _FollowUp:
    """A command to write right behind the sign-in command, and the future of its reply."""

    name: str
    args: tuple[str, ...]
    reply: asyncio.Future[Reply | None]


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


# --------------------------------------------------------------------------------------------------
# aioimaplib protocol subclasses
# --------------------------------------------------------------------------------------------------


class _FastFetchCommand(aioimaplib.FetchCommand):  # type: ignore[misc]
    """FetchCommand whose completion check is O(1) per line and follows the lexer's rules.

    The response goes on while the parenthesis depth of its text lines since the last line that
    starts a FETCH response (literals excluded, quoted strings and ``[...]`` section specs skipped,
    see :func:`~maild.protocols.imap.lex.paren_depth`) is above zero.
    """

    _depth = 0

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if isinstance(line, bytes):
            start = self.FETCH_MESSAGE_DATA_RE.match(line)
            self._depth = paren_depth(line, 0 if start else self._depth)

    def wait_data(self) -> bool:
        return self._depth > 0


#: Receives one complete FETCH response: its text lines (bytes, without ``* ``) and literals
#: (bytearray) in arrival order, the shape :meth:`~.fetch.FetchAssembler.feed` reads.
#: Called from the transport's ``data_received``: it must return quickly and must not raise.
FetchSink: TypeAlias = Callable[[list[Part]], None]


class _StreamingFetchCommand(_FastFetchCommand):
    """A FETCH that hands each complete FETCH response to a sink instead of keeping it.

    A response is complete when its depth returns to zero after a text line (after that the library
    routes no further line to this command except a new ``n FETCH (``), when the next ``n FETCH (``
    begins, or when the tagged completion arrives. Only the tagged completion stays in the library's
    ``Response.lines``; memory holds at most the response being read.

    Standard: RFC 9051 section 7.5.2 (one FETCH response per message, possibly several).
    """

    def __init__(self, tag: str, *args: Any, sink: FetchSink, prefix: str, loop: Any) -> None:
        super().__init__(tag, *args, prefix=prefix, loop=loop, timeout=None)
        self._sink = sink
        self._parts: list[Part] = []

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result != "Pending":  # the tagged completion, from Command.close()
            self._hand_over()
            aioimaplib.Command.append_to_resp(self, line, result)
            return
        text = isinstance(line, bytes)
        if text:
            start = self.FETCH_MESSAGE_DATA_RE.match(line)
            if start:
                self._hand_over()
            self._depth = paren_depth(line, 0 if start else self._depth)
        self._parts.append(line)
        if text and self._depth <= 0:
            self._hand_over()

    def _hand_over(self) -> None:
        self.held_octets = 0  # what the sink took is no longer the protocol's to count
        if self._parts:
            parts, self._parts = self._parts, []
            self._sink(parts)


#: Most octets of a BYE line kept for an error message.
MAX_BYE_OCTETS = 200


class _FastProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib 2.0.3's protocol with its hot spots removed, behaviour otherwise identical.

    * ``last_received``: the loop time of the last received chunk (for the inactivity limit);
    * a BYE (or other non-OK) greeting closes the transport (``greeting_refused`` keeps it);
    * ``data_received`` no longer formats every received chunk into a debug string;
    * ``_handle_responses`` loops over the lines of a chunk instead of recursing once per line and
      walks it by offset instead of copying the rest after every line;
    * FETCH uses :class:`_FastFetchCommand`;
    * a partial line is extended in place (each octet is copied once, not once per received chunk)
      and the :class:`ReadLimits` caps hold: a server breaking one loses the connection at once,
      ``exceeded`` saying which cap (see :meth:`_exceed`); so does a line that is no IMAP response
      at all (neither untagged, continuation nor tagged; the library would drop it and leave the
      command waiting).
    * a whitespace-only line while a FETCH response's parenthesised list is still open (an extra
      CRLF after a literal, as some servers send: CPython bpo-44408, IMAPClient #162) is skipped
      instead of ending the response and losing the rest of it (the stock protocol drops the rest
      as "unknown data"). Literal octets are never affected: they are read by count, not by line.

    A test compares it with the stock protocol on the same byte streams split at every boundary.
    """

    incomplete_line: bytes | bytearray
    current_command: Any
    transport: Any
    pending_sync_command: Any
    greeting_refused: bytes | None = None
    exceeded: str | None = None
    last_bye: bytes | None = None
    """The last untagged BYE (RFC 9051 section 7.1.5), at most :data:`MAX_BYE_OCTETS`, so that a lost
    connection can be reported with the server's words (e.g. an APPEND it refused this way)."""

    def _untagged_response(self, line: bytes) -> Any:
        if line[:6].upper() == b"* BYE ":
            self.last_bye = bytes(line[2:MAX_BYE_OCTETS])
        return super()._untagged_response(line)

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn_lost_cb: Callable[[Exception | None], None] | None,
        limits: ReadLimits | None = None,
    ) -> None:
        super().__init__(loop, conn_lost_cb)
        self.last_received = loop.time()
        self.received_octets = 0
        self.wire_octets = 0
        self.limits = limits if limits is not None else ReadLimits()
        self._untagged = 0
        self.greeting_capabilities: frozenset[str] | None = None
        self.queued: collections.deque[Any] = collections.deque()
        """Sync commands sent behind the pending one (pipelined), in sending order."""
        self.follow_ups: list[_FollowUp] = []
        """Commands waiting to be written right behind the sign-in command (see :meth:`follow_sign_in`)."""
        self._inflater: Inflater | None = None
        self._switch_to_inflate = False

    def _exceed(self, reason: str) -> None:
        """Record which cap the server broke, drop the connection, stop reading this chunk.

        The pending command then fails as for a lost connection; the connection's caller reads
        :attr:`exceeded` to say why.
        """
        self.exceeded = reason
        self.incomplete_line = b""
        if self.transport is not None:
            self.transport.abort()
        raise _Exceeded(reason)

    def _hold(self, cmd: Any, octets: int) -> None:
        """Count ``octets`` as held by ``cmd`` until its completion (or its next hand-over)."""
        held = getattr(cmd, "held_octets", 0) + octets
        cmd.held_octets = held
        if held > self.limits.buffered_octets:
            self._exceed(f"server sent more than {self.limits.buffered_octets} octets for one response")

    async def welcome(self, command: bytes) -> None:
        """Handle the greeting; on a BYE (or other non-OK) greeting, remember it and hang up.

        A greeting carrying ``[CAPABILITY ...]`` (RFC 9051 section 7.1; Dovecot sends one) is taken
        as the capability list and no CAPABILITY command is sent: one round trip less than the stock
        method, which always asks. The stock method raises inside a task nobody awaits, and the
        client then waits for a state that never comes; closing the transport turns that into a
        prompt connection-lost.
        """
        found = _GREETING_CAPABILITY.match(command)
        if found is None:
            try:
                await super().welcome(command)
            except aioimaplib.Error:
                self.greeting_refused = command
                if self.transport is not None:
                    self.transport.close()
            return
        atoms = found.group(2).decode("ascii", "replace").split()
        async with self.state_condition:
            self.greeting_capabilities = frozenset(a.upper() for a in atoms)
            self.capabilities = set(atoms)
            versions = [a.upper() for a in atoms if a.upper() in aioimaplib.AllowedVersions]
            self.imap_version = versions[-1] if versions else None
            self.state = aioimaplib.AUTH if found.group(1).upper() == b"PREAUTH" else aioimaplib.NONAUTH
            self.state_condition.notify_all()

    # ------------------------------------------------------------------ pipelining (RFC 9051 5.5)

    async def execute(self, command: Any, scrub: str | None = None) -> Any:
        """The library's ``execute``, first waiting for every pipelined command still in flight."""
        while self.queued:
            await self.queued[-1]._event.wait()
        return await super().execute(command, scrub)

    def _response_done(self, line: bytes) -> None:
        pending = self.pending_sync_command
        tag, _, rest = line.partition(b" ")
        if isinstance(pending, _PipelineCommand):  # one of several tagged completions (pipeline())
            if pending.complete(tag.decode("ascii", "replace"), rest):
                self.pending_sync_command = self.queued.popleft() if self.queued else None
            return
        compress_ok = (
            pending is not None
            and pending.name == "COMPRESS"
            and rest[:2].upper() == b"OK"
            and tag.decode("ascii", "replace") == pending.tag
        )
        super()._response_done(line)
        if compress_ok:
            # RFC 4978 section 3: both directions are compressed from the octet after this CRLF.
            self.transport = DeflatingTransport(self.transport)
            self._switch_to_inflate = True
        if self.pending_sync_command is None and self.queued:
            self.pending_sync_command = self.queued.popleft()

    def follow_sign_in(self) -> bytes:
        """Queue the :attr:`follow_ups` behind the sign-in command being sent; return their lines.

        Each becomes a pipelined sync command (its responses routed to it once the commands before
        it completed); its future resolves with its :class:`Reply`. Called by the sign-in command
        (LOGIN, or AUTHENTICATE PLAIN with an initial response: neither can be followed by a
        continuation request that the next line would answer).
        """
        follow_ups, self.follow_ups = self.follow_ups, []
        data = b""
        for follow_up in follow_ups:
            command = aioimaplib.Command(follow_up.name, self.new_tag(), *follow_up.args, loop=self.loop)
            self.queued.append(command)
            data += str(command).encode("ascii") + aioimaplib.CRLF
            task = asyncio.ensure_future(self._follow_up_done(command, follow_up.reply))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return data

    def drop_follow_ups(self) -> None:
        """Resolve the :attr:`follow_ups` with None: they were not sent (sign-in not pipelinable)."""
        follow_ups, self.follow_ups = self.follow_ups, []
        for follow_up in follow_ups:
            if not follow_up.reply.done():
                follow_up.reply.set_result(None)

    async def _follow_up_done(self, command: Any, reply: asyncio.Future[Reply | None]) -> None:
        await command._event.wait()
        result = _reply(command.response)
        if result.result == "OK" and command.name == "SELECT":
            self.state = aioimaplib.SELECTED
        if not reply.done():
            reply.set_result(result)

    def signed_in(self) -> None:
        """Enter the authenticated state after a sign-in's OK (unless a pipelined SELECT did already)."""
        if self.state == aioimaplib.NONAUTH:
            self.state = aioimaplib.AUTH

    # ------------------------------------------------------------------ receiving

    def data_received(self, d: bytes) -> None:
        if self.exceeded is not None:
            return
        self.last_received = self.loop.time()
        self.wire_octets += len(d)
        if self._inflater is None:
            try:
                self._receive(d)
            except _Switched as switched:
                self.received_octets -= len(switched.rest)  # counted as plain; inflated below
                self._inflate(switched.rest)
            return
        self._inflate(d)

    def _inflate(self, data: bytes) -> None:
        """Inflate ``data`` (RFC 4978, raw DEFLATE) piece by piece, each through the read limits."""
        inflater = self._inflater
        assert inflater is not None
        try:
            for piece in inflater.pieces(data):
                self._receive(piece)
                if self.exceeded is not None:
                    return  # the rest is never inflated
        except ProtocolError as exc:
            with contextlib.suppress(_Exceeded):
                self._exceed(str(exc))

    def _receive(self, d: bytes) -> None:
        """Handle received plain octets (inflated already on a compressed connection)."""
        if self.exceeded is not None:
            return
        self.received_octets += len(d)
        partial = self.incomplete_line
        if partial:
            if d.find(b"\r\n") < 0 and not (partial[-1:] == b"\r" and d[:1] == b"\n"):
                # still no line end: extend in place instead of joining again on every chunk
                if not isinstance(partial, bytearray):
                    partial = self.incomplete_line = bytearray(partial)
                partial += d
                if len(partial) > self.limits.line_octets:
                    with contextlib.suppress(_Exceeded):
                        self._exceed(f"server sent a line longer than {self.limits.line_octets} octets")
                return
            d = bytes(partial) + d
        try:
            self._handle_responses(d, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data
            if len(incomplete_read.data) > self.limits.line_octets:
                with contextlib.suppress(_Exceeded):
                    self._exceed(f"server sent a line longer than {self.limits.line_octets} octets")
        except _Exceeded:
            self.current_command = None
        except _Switched:
            self.incomplete_line = b""
            self.current_command = None
            raise

    def _handle_responses(self, data: bytes, line_handler: Any, current_cmd: Any = None) -> None:
        view = memoryview(data)
        pos = 0
        size = len(data)
        while True:
            if pos >= size:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                missing = current_cmd._expected_size - len(current_cmd._resp_literal_data)
                current_cmd.append_literal_data(view[pos : pos + missing])
                pos = min(pos + missing, size)
                if current_cmd.wait_literal_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
            end = data.find(aioimaplib.CRLF, pos)
            if end < 0:
                raise aioimaplib.IncompleteRead(current_cmd, data[pos:])
            limits = self.limits
            if end - pos > limits.line_octets:
                self._exceed(f"server sent a line longer than {limits.line_octets} octets")
            line = data[pos:end]
            pos = end + 2
            if current_cmd is not None and not line.strip(b" \t") and current_cmd.wait_data():
                continue  # a spurious blank line inside an open FETCH list (bpo-44408): skipped
            if tagged_status(line):
                self._untagged = 0
            elif line:
                self._untagged += 1
                if self._untagged > limits.untagged_per_command:
                    self._exceed(
                        f"server sent more than {limits.untagged_per_command} untagged lines for one command"
                    )
            if (
                current_cmd is None
                and line
                and self.state != aioimaplib.CONNECTED
                and not line.startswith((b"*", b"+"))
                and not tagged_status(line)
            ):  # aioimaplib would log and drop it, and the command would wait for its timeout
                text = bytes(line[:60]).decode("ascii", "backslashreplace")
                self._exceed(f"server sent a line that is not an IMAP response: {text!r}")
            cmd = line_handler(line, current_cmd)
            if self._switch_to_inflate:  # COMPRESS completed: the rest of the chunk is compressed
                self._switch_to_inflate = False
                self._inflater = Inflater()
                raise _Switched(bytes(view[pos:]))
            if cmd is not None:
                self._hold(cmd, len(line))
            begin_literal = aioimaplib.literal_data_re.match(line)
            if begin_literal:
                digits = begin_literal.group("size")
                literal_octets = int(digits) if len(digits) <= _MAX_LITERAL_DIGITS else 2**64
                if literal_octets > limits.literal_octets:
                    self._exceed(
                        f"server announced a literal of {digits[:20].decode()} octets"
                        f" (the limit is {limits.literal_octets})"
                    )
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                self._hold(cmd, literal_octets)
                cmd.begin_literal_data(literal_octets)
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None

    async def fetch(
        self,
        message_set: str,
        message_parts: str,
        by_uid: bool = False,
        timeout: Any = None,  # noqa: ASYNC109 -- the library's signature
    ) -> Any:
        command = _FastFetchCommand(
            self.new_tag(),
            message_set,
            message_parts,
            prefix="UID" if by_uid else "",
            loop=self.loop,
            timeout=timeout,
        )
        return await self.execute(command)


class _LibraryClient(aioimaplib.IMAP4):  # type: ignore[misc]
    """``aioimaplib.IMAP4`` building :class:`_FastProtocol` (same code as the library's method).

    ``read_limits`` is kept before the library's ``__init__`` runs, since that connects at once.
    """

    def __init__(self, *args: Any, read_limits: ReadLimits | None = None, **kwargs: Any) -> None:
        self.read_limits = read_limits
        super().__init__(*args, **kwargs)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _FastProtocol(local_loop, conn_lost_cb, self.read_limits)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


# --------------------------------------------------------------------------------------------------
# Streaming FETCH, STARTTLS, IDLE
# --------------------------------------------------------------------------------------------------


class StreamingFetch:
    """One ``[UID] FETCH`` whose responses go to ``sink`` one by one while the command runs.

    aioimaplib keys pending async commands by name, so no other FETCH may run on the session until
    :meth:`run` has returned.

    Args:
        protocol: the session's protocol object (a :class:`_FastProtocol`).
        message_set: the sequence set, e.g. ``"1:2000,2005"``.
        items: the data items, e.g. ``"(UID FLAGS INTERNALDATE BODY.PEEK[])"``.
        sink: receives each complete FETCH response (see :data:`FetchSink`).
        by_uid: send ``UID FETCH`` (RFC 9051 section 6.4.9).

    Raises:
        TypeError: ``protocol`` is not the patched protocol.
    """

    def __init__(
        self, protocol: Any, message_set: str, items: str, sink: FetchSink, *, by_uid: bool = True
    ) -> None:
        if not isinstance(protocol, _FastProtocol):
            raise TypeError("streaming FETCH needs the patched aioimaplib protocol")
        self._protocol = protocol
        self._command = _StreamingFetchCommand(
            protocol.new_tag(),
            message_set,
            items,
            sink=sink,
            prefix="UID" if by_uid else "",
            loop=protocol.loop,
        )

    async def run(self) -> Reply:
        """Send the command and wait for its tagged completion.

        Returns:
            The reply; its ``lines`` hold only the tagged completion text.

        Raises:
            LibraryError: the session is not in SELECTED state.
        """
        return await _run(self._protocol.execute(self._command))

    @property
    def completed(self) -> bool:
        """Whether the tagged completion has arrived (:meth:`run` returns at the next loop turn)."""
        return bool(self._command._event.is_set())

    def pause_reading(self) -> None:
        """Stop reading from the connection (TCP flow control then holds the server back)."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the connection again after :meth:`pause_reading`; harmless when not paused."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


async def starttls(protocol: Any, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Reply:
    """Send STARTTLS on a not-authenticated session and upgrade its transport to TLS.

    aioimaplib has no STARTTLS. This sends the command through the protocol object (``execute``,
    ``Command``, ``new_tag``), and after OK wraps ``protocol.transport`` with ``loop.start_tls()``.
    Capabilities must be read again afterwards (RFC 9051 section 6.2.1).

    Returns:
        The STARTTLS reply; the transport was upgraded only if its result is OK.

    Raises:
        ProtocolError: bytes followed the STARTTLS completion in plaintext (a response injection,
            RFC 9051 section 6.2.1).
        LibraryError: the library refused the command (wrong state).
        ssl.SSLError, OSError: the handshake failed (mapped by the caller).
    """
    reply = await _run(
        protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
    )
    if reply.result != "OK":
        return reply
    if protocol.incomplete_line:
        raise ProtocolError("plaintext data after the STARTTLS response", standard="RFC 9051 section 6.2.1")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport,
        protocol,
        context,
        server_hostname=server_hostname,
        ssl_handshake_timeout=timeout_s,
    )
    return reply


#: Continuation requests (``+`` lines) of one AUTHENTICATE held unanswered at most; more is a protocol
#: violation (a SASL exchange has one request per step, RFC 9051 section 6.2.2).
MAX_PENDING_CONTINUATIONS = 4


class _AuthenticateCommand(aioimaplib.Command):  # type: ignore[misc]
    """AUTHENTICATE whose continuation requests (``+ ...``) go to a queue instead of its response lines.

    The library routes a ``+`` line during a pending sync command to ``append_to_resp`` (with the
    ``+``); untagged lines arrive there without their ``* ``, so they never start with ``+``.
    """

    def __init__(self, tag: str, *args: str, loop: Any) -> None:
        super().__init__("AUTHENTICATE", tag, *args, loop=loop, timeout=None)
        self.continuations: asyncio.Queue[bytes] = asyncio.Queue(MAX_PENDING_CONTINUATIONS)
        self.overflow = False

    def __repr__(self) -> str:  # never the initial response (it holds the secret)
        return f"{self.tag} AUTHENTICATE"

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result == "Pending" and isinstance(line, bytes) and (line == b"+" or line.startswith(b"+ ")):
            if self.continuations.full():
                self.overflow = True  # a server flooding "+" lines: Authentication.next() fails
            else:
                self.continuations.put_nowait(bytes(line[2:]))
            return
        super().append_to_resp(line, result)


class Authentication:
    """One AUTHENTICATE command in flight (RFC 9051 section 6.2.2; SASL-IR, RFC 4959), step by step.

    The caller reads :meth:`next` (a continuation request's text, or the final :class:`Reply`) and
    answers each continuation with :meth:`send_line`; it bounds every wait itself. After an OK the
    library's state becomes authenticated, so that SELECT and the rest are accepted.

    Args:
        protocol: the session's protocol object, in the not-authenticated state.
        mechanism: the SASL mechanism name (``"XOAUTH2"``).
        initial: the base64 initial response for SASL-IR (a secret), or None.
    """

    def __init__(self, protocol: Any, mechanism: str, initial: bytes | None) -> None:
        self._protocol = protocol
        command = _AuthenticateCommand(protocol.new_tag(), mechanism, loop=protocol.loop)
        self._command = command
        line = f"{command.tag} AUTHENTICATE {mechanism}".encode("ascii")
        pipelinable = initial is not None
        if initial is not None:
            line += b" " + initial
        del initial

        async def run(line: bytes) -> Reply:
            # Not protocol.execute(): it logs and formats str(command), which would hold the secret.
            if protocol.state != aioimaplib.NONAUTH:
                raise LibraryError(f"AUTHENTICATE illegal in state {protocol.state}")
            if protocol.pending_sync_command is not None or protocol.pending_async_commands:
                raise LibraryError("AUTHENTICATE while another command is pending")
            transport = protocol.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("connection closed before AUTHENTICATE")
            protocol.pending_sync_command = command
            # Only a PLAIN initial response cannot draw a continuation request that a pipelined
            # line would then answer (RFC 4616, RFC 4959): only then do the follow-ups go along.
            if mechanism.upper() == "PLAIN" and pipelinable:
                line += aioimaplib.CRLF + protocol.follow_sign_in()
            else:
                line += aioimaplib.CRLF
                protocol.drop_follow_ups()
            transport.write(line)
            del line
            try:
                await command.wait()
            except aioimaplib.AioImapException as exc:
                raise LibraryError(f"{type(exc).__name__}: {exc}") from None
            reply = _reply(command.response)
            if reply.result == "OK":
                protocol.signed_in()
            return reply

        self._done: asyncio.Future[Reply] = asyncio.ensure_future(run(line))
        self._done.add_done_callback(_consume_outcome)
        del line

    async def next(self) -> bytes | Reply:
        """The next continuation request's text (base64, without ``+ ``) or the final reply.

        Raises:
            LibraryError: the library refused the command (wrong state).
        """
        queue = self._command.continuations
        if self._command.overflow:
            raise LibraryError(f"more than {MAX_PENDING_CONTINUATIONS} unanswered continuation requests")
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait((getter, self._done), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return self._done.result()

    def send_line(self, line: bytes) -> None:
        """Send one continuation response (``line`` plus CRLF; may hold a secret, never logged)."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed during AUTHENTICATE")
        transport.write(line + aioimaplib.CRLF)

    def cancel(self) -> None:
        """Stop waiting for the command (the connection is being discarded)."""
        self._done.cancel()


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


#: Most commands :meth:`IMAPClient.pipeline` sends in one write (their untagged responses are held
#: until the last completion, within :class:`ReadLimits`). 100 STATUS commands answer in ~10 KB.
MAX_PIPELINED_COMMANDS = 100


class _PipelineCommand(aioimaplib.Command):  # type: ignore[misc]
    """Several tagged commands in flight at once, registered as the library's pending sync command.

    Every untagged line goes to it (the library routes all of them to a pending sync command); each
    tagged completion closes the current part (:meth:`complete`), in the order the commands were
    sent. Completion is reached when the last tag has answered.
    """

    def __init__(self, tags: list[str], loop: Any) -> None:
        super().__init__("PIPELINE", tags[-1], loop=loop, timeout=None)
        self.tags = tags
        self.replies: list[Reply] = []
        self._parts: list[Part] = []

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        self._parts.append(line)

    def complete(self, tag: str, response: bytes) -> bool:
        """Record the completion of ``tag``; True once every command has completed (or on a tag out
        of order, which fails the pipeline)."""
        expected = self.tags[len(self.replies)]
        if tag != expected:
            self._exception = LibraryError(f"tagged response {tag!r} while waiting for {expected!r}")
            self._event.set()
            return True
        result, _, text = response.partition(b" ")
        self.replies.append(Reply(result.decode("ascii", "replace"), [*self._parts, text]))
        self._parts = []
        if len(self.replies) == len(self.tags):
            self._event.set()
            return True
        return False


async def _pipeline(protocol: Any, commands: list[str]) -> list[Reply]:
    """Send ``commands`` (text without tag or CRLF) in one write; return one :class:`Reply` each."""
    if not 0 < len(commands) <= MAX_PIPELINED_COMMANDS:
        raise LibraryError(f"a pipeline holds 1 to {MAX_PIPELINED_COMMANDS} commands")
    if protocol.state not in (aioimaplib.AUTH, aioimaplib.SELECTED):
        raise LibraryError(f"pipeline illegal in state {protocol.state}")
    while protocol.queued:  # commands pipelined at session opening go first
        await protocol.queued[-1]._event.wait()
    if protocol.pending_sync_command is not None:
        await protocol.pending_sync_command.wait()
    if protocol.pending_async_commands:
        await protocol.wait_async_pending_commands()
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection closed before the pipeline")
    tags = [protocol.new_tag() for _ in commands]
    command = _PipelineCommand(tags, protocol.loop)
    protocol.pending_sync_command = command
    transport.write(b"".join(f"{tag} {text}\r\n".encode() for tag, text in zip(tags, commands, strict=True)))
    try:
        await command.wait()
    except aioimaplib.AioImapException as exc:
        raise LibraryError(f"{type(exc).__name__}: {exc}") from None
    except LibraryError:
        protocol.pending_sync_command = None
        raise
    for text, reply in zip(commands, command.replies, strict=True):
        if text[:7].upper() == "SELECT ":  # the library's own select() changes its state the same way
            protocol.state = aioimaplib.SELECTED if reply.result == "OK" else aioimaplib.AUTH
        elif text.upper() == "UNSELECT" and reply.result == "OK":
            protocol.state = aioimaplib.AUTH
    return command.replies


class IdleRound:
    """One IDLE command in flight (RFC 2177), driven step by step by the caller.

    aioimaplib's ``idle_start`` hangs forever when the server closes before its ``+`` (issue #110);
    here every step is a future the caller races against its own timeout and the connection loss.

    Attributes:
        command: resolves to the IDLE command's :class:`Reply` once the server ends it (after DONE),
            or raises :class:`LibraryError`.
    """

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        protocol._idle_event.clear()
        idle = aioimaplib.IdleCommand(protocol.new_tag(), protocol.idle_queue, loop=protocol.loop)
        self.command: asyncio.Future[Reply] = asyncio.ensure_future(_run(protocol.execute(idle)))
        self.command.add_done_callback(_consume_outcome)

    def continuation(self) -> asyncio.Future[None]:
        """A future resolved when the server's ``+`` continuation arrived; cancel it when not needed."""
        waiting: Awaitable[None] = self._protocol.wait_for_idle_response()
        return asyncio.ensure_future(waiting)

    def next_push(self) -> asyncio.Future[list[Part]]:
        """A future resolved with the next batch of pushed untagged parts; cancel it when not needed."""

        async def get() -> list[Part]:
            item = await self._protocol.idle_queue.get()
            return list(item) if isinstance(item, list) else []

        future = asyncio.ensure_future(get())
        future.add_done_callback(_consume_outcome)
        return future

    def drain(self) -> list[Part]:
        """The untagged parts pushed so far and not taken yet, in arrival order."""
        lines: list[Part] = []
        queue = self._protocol.idle_queue
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, list):
                lines.extend(item)
        return lines

    def send_done(self) -> None:
        """Send DONE (RFC 2177 section 3); the server then completes :attr:`command`."""
        self._protocol.idle_done()


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


class IMAPClient:
    """One aioimaplib connection behind maild's own small API.

    Every command coroutine returns a :class:`Reply` (NO and BAD are data, checked by the caller) or
    raises :class:`LibraryError`; socket and TLS errors (``OSError``, ``ssl.SSLError``) and
    ``TimeoutError`` pass through for the caller to map. Arguments are sent as given: the caller
    quotes and encodes them. No command has a library timer: the caller bounds every wait.

    Args:
        host, port: the server.
        ssl_context: for implicit TLS, else None.
        on_connection_lost: called once when the transport closes (the library's ``conn_lost_cb``).
        timeout_s: aioimaplib's own timer for commands that take one (LOGIN, SELECT, ...), seconds.
        limits: the caps on what is read (default :class:`ReadLimits`'s).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        on_connection_lost: Callable[[Exception | None], None],
        timeout_s: float,
        limits: ReadLimits | None = None,
    ) -> None:
        self._client = _LibraryClient(
            host,
            port,
            timeout=timeout_s,
            conn_lost_cb=on_connection_lost,
            ssl_context=ssl_context,
            read_limits=limits,
        )
        self._protocol: _FastProtocol = self._client.protocol

    # ------------------------------------------------------------------ connection state

    @property
    def last_received(self) -> float:
        """Loop time (seconds) when data last arrived, or when the client was made."""
        return float(self._protocol.last_received)

    @property
    def received_octets(self) -> int:
        """Octets received on this connection so far (for the progress floor)."""
        return int(self._protocol.received_octets)

    @property
    def exceeded(self) -> str | None:
        """Which :class:`ReadLimits` cap the server broke (the connection was then dropped), or None."""
        return self._protocol.exceeded

    @property
    def greeting_refused(self) -> bytes | None:
        """The server's greeting when it was not OK/PREAUTH (the connection was then closed)."""
        return self._protocol.greeting_refused

    @property
    def last_bye(self) -> bytes | None:
        """The server's last untagged BYE line (without ``* ``), or None."""
        return self._protocol.last_bye

    @property
    def greeting_capabilities(self) -> frozenset[str] | None:
        """The capabilities of the greeting's ``[CAPABILITY ...]`` code, upper-cased, or None.

        Standard: RFC 9051 section 7.1 (a server may send them there to save the client a round trip).
        """
        return self._protocol.greeting_capabilities

    @property
    def announced_capabilities(self) -> frozenset[str]:
        """What the greeting or aioimaplib's own CAPABILITY after it announced, upper-cased."""
        return frozenset(a.upper() for a in self._protocol.capabilities) - {"CAPABILITY"}

    @property
    def wire_octets(self) -> int:
        """Octets received from the socket so far (compressed ones as received)."""
        return int(self._protocol.wire_octets)

    @property
    def compressed(self) -> bool:
        """Whether COMPRESS=DEFLATE is active on this connection (RFC 4978)."""
        return self._protocol._inflater is not None or self._protocol._switch_to_inflate

    @property
    def preauthenticated(self) -> bool:
        """Whether the greeting was PREAUTH (the session is authenticated already, RFC 9051 7.1.4)."""
        return bool(self._client.get_state() == "AUTH")

    @property
    def reading(self) -> bool:
        """Whether the transport reads from the socket now (False while paused or closed)."""
        transport = self._protocol.transport
        return bool(transport is not None and transport.is_reading())

    def extra_info(self, name: str) -> Any:
        """The transport's ``get_extra_info(name)`` (``"socket"``, ``"ssl_object"``), or None."""
        with contextlib.suppress(Exception):
            return self._protocol.transport.get_extra_info(name)
        return None

    def abort(self) -> None:
        """Close the transport at once and cancel the library's tasks. Never raises."""
        with contextlib.suppress(Exception):
            transport = self._protocol.transport
            if transport is not None:
                transport.abort()
        with contextlib.suppress(Exception):
            if not self._client._client_task.done():
                self._client._client_task.cancel()
        with contextlib.suppress(Exception):
            for task in list(self._protocol.tasks):
                task.cancel()

    # ------------------------------------------------------------------ commands

    async def wait_hello(self) -> None:
        """Wait for the connection and the server's greeting."""
        try:
            await self._client.wait_hello_from_server()
        except aioimaplib.AioImapException as exc:
            raise LibraryError(f"{type(exc).__name__}: {exc}") from None

    async def capability(self) -> Reply:
        """CAPABILITY (RFC 9051 section 6.1.1)."""
        protocol = self._protocol
        return await _run(
            protocol.execute(aioimaplib.Command("CAPABILITY", protocol.new_tag(), loop=protocol.loop))
        )

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, timeout_s: float) -> Reply:
        """STARTTLS and the TLS upgrade (see :func:`starttls`)."""
        return await starttls(self._protocol, context, server_hostname, timeout_s)

    async def login(self, user: str, password: str) -> Reply:
        """LOGIN with ``user`` as given (quoted by the caller); the password is quoted here.

        The commands queued by :meth:`follow_sign_in` go out in the same write, right behind it
        (RFC 9051 section 5.5). Never logs or formats the command line (it holds the password).
        """
        protocol = self._protocol
        if protocol.state != aioimaplib.NONAUTH:
            raise LibraryError(f"LOGIN illegal in state {protocol.state}")
        command = aioimaplib.Command("LOGIN", protocol.new_tag(), loop=protocol.loop)
        if protocol.pending_sync_command is not None or protocol.pending_async_commands:
            raise LibraryError("LOGIN while another command is pending")
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed before LOGIN")
        protocol.pending_sync_command = command
        line = f"{command.tag} LOGIN {user} {aioimaplib.quoted(password)}\r\n".encode()
        transport.write(line + protocol.follow_sign_in())
        del line, password
        try:
            await command.wait()
        except aioimaplib.AioImapException as exc:
            raise LibraryError(f"{type(exc).__name__}: {exc}") from None
        reply = _reply(command.response)
        if reply.result == "OK":
            protocol.signed_in()
        return reply

    def follow_sign_in(self, name: str, *args: str) -> asyncio.Future[Reply | None]:
        """Queue ``name args`` to be sent right behind the next sign-in command (pipelined).

        It goes out with LOGIN, or with AUTHENTICATE PLAIN carrying an initial response (SASL-IR);
        with any other sign-in, or none (PREAUTH), it is not sent and the future resolves to None.
        If the sign-in fails, the server answers it NO or BAD (not authenticated). The future
        resolves with the command's :class:`Reply` when its tagged completion arrives; a SELECT
        answered OK puts the session in the selected state.

        Standard: RFC 9051 section 5.5 (pipelining).
        """
        reply: asyncio.Future[Reply | None] = self._protocol.loop.create_future()
        self._protocol.follow_ups.append(_FollowUp(name, args, reply))
        return reply

    def drop_follow_ups(self) -> None:
        """Forget the commands queued by :meth:`follow_sign_in` (their futures resolve to None)."""
        self._protocol.drop_follow_ups()

    async def compress(self) -> Reply:
        """``COMPRESS DEFLATE`` (RFC 4978 section 3); on OK both directions are compressed from then on.

        Received data is inflated in pieces of :data:`~.compress.INFLATE_PIECE_OCTETS`, each checked against
        the :class:`ReadLimits` before the next is inflated.
        """
        protocol = self._protocol
        while protocol.queued or protocol.pending_sync_command is not None:
            pending = protocol.queued[-1] if protocol.queued else protocol.pending_sync_command
            await pending._event.wait()
        # Not execute(): aioimaplib allows COMPRESS only in the authenticated state, RFC 4978
        # section 3 in the selected state too (a pipelined SELECT may have completed).
        if protocol.state not in (aioimaplib.AUTH, aioimaplib.SELECTED):
            raise LibraryError(f"COMPRESS illegal in state {protocol.state}")
        if protocol.pending_async_commands:
            raise LibraryError("COMPRESS while another command is pending")
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed before COMPRESS")
        command = aioimaplib.Command("COMPRESS", protocol.new_tag(), "DEFLATE", loop=protocol.loop)
        protocol.pending_sync_command = command
        transport.write(f"{command.tag} COMPRESS DEFLATE".encode("ascii") + aioimaplib.CRLF)
        try:
            await command.wait()
        except aioimaplib.AioImapException as exc:
            raise LibraryError(f"{type(exc).__name__}: {exc}") from None
        return _reply(command.response)

    def authenticate(self, mechanism: str, initial: bytes | None) -> Authentication:
        """Send ``AUTHENTICATE mechanism [initial]`` now; return the exchange (:class:`Authentication`)."""
        return Authentication(self._protocol, mechanism, initial)

    async def select(self, mailbox: str) -> Reply:
        """SELECT ``mailbox`` (quoted and encoded by the caller)."""
        return await _run(self._protocol.select(mailbox))

    async def simple(self, name: str, *args: str) -> Reply:
        """A command without special handling: ``LIST``, ``NOOP``, ..."""
        return await _run(self._protocol.simple_command(name, *args))

    async def uid_fetch(self, uid_set: str, items: str) -> Reply:
        """``UID FETCH`` with every response kept until the tagged completion (short commands only)."""
        return await _run(self._protocol.fetch(uid_set, items, by_uid=True, timeout=None))

    def streaming_fetch(self, uid_set: str, items: str, sink: FetchSink) -> StreamingFetch:
        """A ``UID FETCH`` handing each response to ``sink`` (see :class:`StreamingFetch`)."""
        return StreamingFetch(self._protocol, uid_set, items, sink)

    async def uid_search(self, criterion: str) -> Reply:
        """``UID SEARCH criterion`` without CHARSET."""
        return await _run(self._protocol.search(criterion, charset=None, by_uid=True))

    async def pipeline(self, commands: list[str]) -> list[Reply]:
        """Send up to :data:`MAX_PIPELINED_COMMANDS` commands in one write and wait for all of them.

        For commands aioimaplib lacks or would serialise (STATUS, LIST with RETURN options, NOTIFY,
        SELECT followed by UID SEARCH): one round trip for all. Each reply holds the untagged lines
        that arrived after the previous command's completion and before its own (servers answer
        commands in order), then its completion text. A SELECT's outcome sets the library's state as
        its own ``select()`` would, an UNSELECT answered OK the authenticated state. Arguments are
        sent as given: the caller quotes and encodes them.

        Standard: RFC 9051 section 5.5 (multiple commands in progress).

        Raises:
            LibraryError: not authenticated, too many commands, or completions out of order.
        """
        return await _pipeline(self._protocol, commands)

    async def uid_store(self, uid_set: str, change: str, flags: str) -> Reply:
        """``UID STORE uid_set change flags``, e.g. ``+FLAGS.SILENT (\\Deleted)``."""
        return await _run(self._protocol.store(uid_set, change, flags, by_uid=True))

    async def uid_expunge(self, uid_set: str) -> Reply:
        """``UID EXPUNGE uid_set`` (RFC 4315 section 2.1)."""
        return await _run(self._protocol.expunge(uid_set, by_uid=True))

    async def expunge(self) -> Reply:
        """EXPUNGE (every ``\\Deleted`` message of the selected mailbox)."""
        return await _run(self._protocol.expunge())

    async def append(self, raw: bytes, mailbox: str, flag_list: str | None, date: str | None) -> Reply:
        """APPEND ``raw`` as a synchronising literal; ``date`` already formatted and quoted."""
        return await _run(self._protocol.append(raw, mailbox, flag_list, date, timeout=None))

    async def logout(self) -> Reply:
        """LOGOUT."""
        return await _run(self._protocol.logout())

    def start_idle(self) -> IdleRound:
        """Send IDLE now and return the round to drive (see :class:`IdleRound`)."""
        return IdleRound(self._protocol)
