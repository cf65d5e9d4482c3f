"""aioimaplib 2.0.3's client protocol with its hot spots removed and maild's read limits enforced.

:class:`_FastProtocol` records when data last arrived (for the inactivity limit), turns a refused
greeting into a prompt connection loss, takes the greeting's ``[CAPABILITY ...]`` (RFC 9051 section
7.1), routes the responses of commands pipelined behind the sign-in (RFC 9051 section 5.5; writing
them is :class:`~.pipeline.SignInFollowUps`, mixed in), switches to COMPRESS=DEFLATE (RFC 4978) and
holds every :class:`~.library.ReadLimits` cap; FETCH responses are framed with the lexer's rules
(:func:`~.lex.paren_depth`, RFC 9051 section 7.5.2) by :class:`_FastFetchCommand`, and during a
streaming FETCH the usual body response (:data:`~.fetch_line.PLAIN_BODY_RESPONSE`) by a fast path
that takes it whole from the read buffer (``_handle_responses``, :meth:`_fast_fetch`); the replies
of several tagged commands in flight at once are routed to :class:`~.pipeline._PipelineCommand`
(RFC 9051 section 5.5). :class:`_LibraryClient` is ``aioimaplib.IMAP4`` building that protocol.

Where each socket read goes (the shared read buffer, or a long literal's own buffer) is
:class:`~.reading.DirectReads`, mixed in; this module frames what arrives through the shared buffer
into lines and literals (``_receive``, ``_handle_responses``).

``tests/faults/test_imap_library.py`` compares the protocol with the stock one on the same byte
streams split at every boundary, and pins the source of every library method relied on here.

May import: asyncio, collections, contextlib, re, ssl, aioimaplib, :mod:`maild.errors`,
:mod:`maild.protocols.imap.compress`, :mod:`maild.protocols.imap.fetch_line`, :mod:`maild.protocols.imap.lex`,
:mod:`maild.protocols.imap.library`, :mod:`maild.protocols.imap.pipeline`,
:mod:`maild.protocols.imap.reading`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib

from maild.errors import SHOWN_REPLY_OCTETS, ProtocolError
from maild.protocols.imap.compress import DeflatingTransport, Inflater
from maild.protocols.imap.fetch_line import PLAIN_BODY_RESPONSE
from maild.protocols.imap.lex import paren_depth
from maild.protocols.imap.library import ReadLimits, tagged_status
from maild.protocols.imap.pipeline import SignInFollowUps, _PipelineCommand
from maild.protocols.imap.reading import DirectReads
from maild.secret import shown

__all__ = ["MAX_BYE_OCTETS"]

_MAX_LITERAL_DIGITS = 12

#: A line ending in a literal's announcement (RFC 9051 section 4.3): aioimaplib's ``literal_data_re``
#: plus the ``+`` of a non-synchronising literal (RFC 7888), which a server must not send but which
#: the lexer (:data:`~.lex.LITERAL_AT_END`) reads as a literal; framed otherwise, the literal's octets
#: would be read as response lines (a message body's text taken for another message's FETCH response).
_LITERAL_AT_END = re.compile(rb".*\{(?P<size>\d+)\+?\}$")

#: ``[CAPABILITY ...]`` in an OK or PREAUTH greeting (RFC 9051 section 7.1, 7.1.1 and 7.1.4).
_GREETING_CAPABILITY = re.compile(rb"\* (OK|PREAUTH) \[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


class _Exceeded(Exception):
    """Raised inside ``data_received`` to stop reading a connection that broke a :class:`ReadLimits` cap."""


class _Switched(Exception):
    """Raised inside ``data_received`` when COMPRESS completed: ``rest`` of the chunk is compressed."""

    def __init__(self, rest: bytes) -> None:
        super().__init__("COMPRESS active")
        self.rest = rest


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


#: Most characters of a BYE line shown in an error message (masked first: :func:`maild.secret.shown`).
MAX_BYE_OCTETS = 200


class _FastProtocol(DirectReads, SignInFollowUps, aioimaplib.IMAP4ClientProtocol, asyncio.BufferedProtocol):  # type: ignore[misc]
    """aioimaplib 2.0.3's protocol with its hot spots removed, behaviour otherwise identical.

    * reading is buffered (:class:`asyncio.BufferedProtocol`): the socket is read into one reused
      buffer per thread (:data:`READ_BUFFER_OCTETS`) instead of a new ``bytes`` object per read, and
      a long literal straight into a buffer of its announced size (:data:`DIRECT_LITERAL_OCTETS`);
      every received octet still goes through the same steps as a ``data_received`` call
      (:meth:`_receive`), which stays for callers that hand over ``bytes``;
    * ``last_received``: the loop time of the last received chunk (for the inactivity limit);
    * a BYE (or other non-OK) greeting closes the transport (``greeting_refused`` keeps it);
    * ``data_received`` no longer formats every received chunk into a debug string;
    * ``_handle_responses`` loops over the lines of a chunk instead of recursing once per line and
      walks it by offset instead of copying the rest after every line;
    * FETCH uses :class:`_FastFetchCommand`; during a streaming FETCH a response in the usual body
      shape is matched in the read buffer by one pattern and handed over whole, read already
      (:meth:`_fast_fetch`; every other line goes the library's way, every cap holds the same);
    * a partial line is extended in place (each octet is copied once, not once per received chunk)
      and the :class:`ReadLimits` caps hold: a server breaking one loses the connection at once,
      ``exceeded`` saying which cap (see :meth:`_exceed`); so does a line that is no IMAP response
      at all (neither untagged, continuation nor tagged; the library would drop it and leave the
      command waiting).
    * a whitespace-only line while a FETCH response's parenthesised list is still open (an extra
      CRLF after a literal, as some servers send: CPython bpo-44408, IMAPClient #162) is skipped
      instead of ending the response and losing the rest of it (the stock protocol drops the rest
      as "unknown data"). Literal octets are never affected: they are read by count, not by line;
    * a literal announced as ``{n+}`` (RFC 7888, which servers must not send) is read as a literal,
      as the lexer reads it (the library would read its octets as response lines).

    A test compares it with the stock protocol on the same byte streams split at every boundary.
    """

    incomplete_line: bytes | bytearray
    current_command: Any
    transport: Any
    pending_sync_command: Any
    greeting_refused: bytes | None = None
    exceeded: str | None = None
    last_bye: bytes | None = None
    """The last untagged BYE's text (RFC 9051 section 7.1.5), at most
    :data:`~maild.errors.SHOWN_REPLY_OCTETS` of it, so that a lost connection can be reported with the
    server's words (e.g. an APPEND it refused this way). Kept longer than what is shown
    (:data:`MAX_BYE_OCTETS`): it is masked before it is cut, so a password the server echoed across the
    cut is not shown in part."""

    def _untagged_response(self, line: bytes) -> Any:
        if line[:6].upper() == b"* BYE ":
            self.last_bye = bytes(line[2 : 2 + SHOWN_REPLY_OCTETS])
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
        self.queued = collections.deque()  # pipelined sync commands (SignInFollowUps, _pipeline)
        self.follow_ups = []  # written behind the sign-in command (SignInFollowUps)
        self._inflater: Inflater | None = None
        self._switch_to_inflate = False
        self._direct = None

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

    # ------------------------------------------------------------------ receiving

    def data_received(self, d: bytes) -> None:
        if self.exceeded is not None:
            return
        self.last_received = self.loop.time()
        self.wire_octets += len(d)
        self._received(d, len(d))

    def _received(self, data: bytes | bytearray, size: int) -> None:
        """Handle the first ``size`` received octets of ``data`` (compressed or not)."""
        if self._inflater is None:
            try:
                self._receive(data, size)
            except _Switched as switched:
                self.received_octets -= len(switched.rest)  # counted as plain; inflated below
                self._inflate(switched.rest)
            return
        self._inflate(bytes(memoryview(data)[:size]))

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

    def _receive(self, d: bytes | bytearray, size: int | None = None) -> None:
        """Handle received plain octets (inflated already on a compressed connection): the first
        ``size`` octets of ``d`` (all of it when None). Nothing keeps a reference to ``d``: what is
        kept of it is copied, so ``d`` may be a reused read buffer."""
        if self.exceeded is not None:
            return
        if size is None:
            size = len(d)
        self.received_octets += size
        partial = self.incomplete_line
        if partial:
            if d.find(b"\r\n", 0, size) < 0 and not (partial[-1:] == b"\r" and d[:1] == b"\n"):
                # still no line end: extend in place instead of joining again on every chunk
                if not isinstance(partial, bytearray):
                    partial = self.incomplete_line = bytearray(partial)
                partial += memoryview(d)[:size]
                if len(partial) > self.limits.line_octets:
                    with contextlib.suppress(_Exceeded):
                        self._exceed(f"server sent a line longer than {self.limits.line_octets} octets")
                return
            d = bytes(partial) + memoryview(d)[:size]
            size = len(d)
        try:
            self._handle_responses(d, self._handle_line, self.current_command, size)
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

    def _handle_responses(
        self, data: bytes | bytearray, line_handler: Any, current_cmd: Any = None, size: int | None = None
    ) -> None:
        """Handle the responses in the first ``size`` octets of ``data`` (all of it when None); raise
        :class:`aioimaplib.IncompleteRead` with a copy of an unfinished line, or when a literal or
        a FETCH response goes on in the next read."""
        view = memoryview(data)
        pos = 0
        if size is None:
            size = len(data)
        fast = self._fast_fetch()
        while True:
            if pos >= size:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                end = min(pos + current_cmd._expected_size - len(current_cmd._resp_literal_data), size)
                current_cmd.append_literal_data(view[pos:end])
                pos = end
                if current_cmd.wait_literal_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
            limits = self.limits
            if (
                fast is not None
                and current_cmd is fast
                and data.startswith(b")\r\n", pos, size)
                and fast.plain_open
            ):  # the fast path: the end of a response whose first line it took (below)
                self._count_untagged()
                pos += 3
                fast.plain_tail()
                fast.held_octets = 1  # as _hold(fast, 1) after the hand-over: the ")" line
                current_cmd = None
                continue
            end = data.find(aioimaplib.CRLF, pos, size)
            if end < 0:
                raise aioimaplib.IncompleteRead(current_cmd, bytes(view[pos:size]))
            if end - pos > limits.line_octets:
                self._exceed(f"server sent a line longer than {limits.line_octets} octets")
            if fast is not None and current_cmd is None:
                plain = PLAIN_BODY_RESPONSE.match(data, pos, end)
                if plain is not None:  # the fast path: the usual body response's first line
                    self._count_untagged()
                    fields = plain.groups()
                    # in the generic path's order: the response begins (what the previous one
                    # held is the sink's now), then its first line and its literal are counted
                    fast.plain_head(bytes(view[pos + 2 : end]), fields)
                    self._hold(fast, end - pos)
                    pos = end + 2
                    literal_octets = int(fields[4])  # at most 12 digits (the pattern)
                    if literal_octets > limits.literal_octets:
                        self._exceed(
                            f"server announced a literal of {fields[4].decode()} octets"
                            f" (the limit is {limits.literal_octets})"
                        )
                    self._hold(fast, literal_octets)
                    fast.begin_literal_data(literal_octets)
                    current_cmd = fast
                    continue
            line = data[pos:end]
            if type(line) is not bytes:  # a reused read buffer: the line is kept, so copied
                line = bytes(line)
            pos = end + 2
            if current_cmd is not None and not line.strip(b" \t") and current_cmd.wait_data():
                continue  # a spurious blank line inside an open FETCH list (bpo-44408): skipped
            if tagged_status(line):
                self._untagged = 0
            elif line:
                self._count_untagged()
            if (
                current_cmd is None
                and line
                and self.state != aioimaplib.CONNECTED
                and not line.startswith((b"*", b"+"))
                and not tagged_status(line)
            ):  # aioimaplib would log and drop it, and the command would wait for its timeout
                # masked before the cut: a LOGIN echo cut in two is not recognised later
                text = shown(bytes(line[:SHOWN_REPLY_OCTETS]).decode("utf-8", "backslashreplace"), 60)
                self._exceed(f"server sent a line that is not an IMAP response: {text!r}")
            cmd = line_handler(line, current_cmd)
            fast = self._fast_fetch()  # a tagged completion may have ended the FETCH
            if self._switch_to_inflate:  # COMPRESS completed: the rest of the chunk is compressed
                self._switch_to_inflate = False
                self._inflater = Inflater()
                raise _Switched(bytes(view[pos:size]))
            if cmd is not None:
                self._hold(cmd, len(line))
            begin_literal = _LITERAL_AT_END.match(line)
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

    def _count_untagged(self) -> None:
        """Count one more untagged line of the command in progress (the
        :attr:`ReadLimits.untagged_per_command` cap)."""
        self._untagged += 1
        if self._untagged > self.limits.untagged_per_command:
            self._exceed(
                f"server sent more than {self.limits.untagged_per_command} untagged lines for one command"
            )

    def _fast_fetch(self) -> Any:
        """The FETCH command whose usual body responses the fast path of :meth:`_handle_responses`
        frames itself, or None.

        That is a pending streaming FETCH (a command with ``plain_head``, :mod:`.commands`) while no
        sync command is pending (the library would route untagged lines to that one). The fast path
        takes a response whose first line is :data:`~.fetch_line.PLAIN_BODY_RESPONSE` when no
        response is open, and its ``)`` line right after its literal; it keeps every read limit and
        leaves the command in the state the library's line handling would. Every other line,
        including a response cut between ``)`` and its CRLF, goes the library's way.
        """
        if self.pending_sync_command is not None:
            return None
        command = self.pending_async_commands.get("FETCH")
        return command if hasattr(command, "plain_head") else None

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
