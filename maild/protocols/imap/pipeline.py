"""Several tagged commands in one write, their replies routed back in order (RFC 9051 section 5.5).

:func:`_pipeline` sends up to :data:`MAX_PIPELINED_COMMANDS` commands at once on the patched
protocol (:mod:`.protocol`) and registers one :class:`_PipelineCommand` as the library's pending sync
command: every untagged line goes to it, each tagged completion closes the current command's reply.
Used for SELECT with UID SEARCH, STATUS of many mailboxes, LIST-STATUS and NOTIFY
(:mod:`~maild.protocols.imap.status`, through :meth:`~.client.IMAPClient.pipeline`).

The commands written right behind the sign-in command (SELECT, ENABLE, ...: one round trip less
for a fresh session) are :class:`SignInFollowUps`, mixed into the patched protocol.

May import: asyncio, collections, dataclasses, aioimaplib, :mod:`maild.protocols.imap.lex`,
:mod:`maild.protocols.imap.library`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioimaplib

from maild.protocols.imap.lex import Part, paren_depth
from maild.protocols.imap.library import LibraryError, Reply, _reply

__all__ = ["MAX_PIPELINED_COMMANDS"]


#: Most commands :meth:`~.client.IMAPClient.pipeline` sends in one write (their untagged responses
#: are held until the last completion, within :class:`~.library.ReadLimits`). 100 STATUS commands
#: answer in ~10 KB.
MAX_PIPELINED_COMMANDS = 100


class _PipelineCommand(aioimaplib.Command):  # type: ignore[misc]
    """Several tagged commands in flight at once, registered as the library's pending sync command.

    Every untagged line goes to it (the library routes all of them to a pending sync command); each
    tagged completion closes the current part (:meth:`complete`), in the order the commands were
    sent. Completion is reached when the last tag has answered. FETCH responses (pipelined UID
    checks with header literals) are framed by the lexer's parenthesis depth, as for FETCH alone.
    """

    _depth = 0

    def __init__(self, tags: list[str], loop: Any) -> None:
        super().__init__("PIPELINE", tags[-1], loop=loop, timeout=None)
        self.tags = tags
        self.replies: list[Reply] = []
        self._parts: list[Part] = []

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        self._parts.append(line)
        if isinstance(line, bytes):  # FETCH responses are framed as by _FastFetchCommand
            start = aioimaplib.FetchCommand.FETCH_MESSAGE_DATA_RE.match(line)
            if start or self._depth > 0:
                self._depth = paren_depth(line, 0 if start else self._depth)

    def wait_data(self) -> bool:
        """Whether a FETCH response's parenthesised list is still open (as :class:`_FastFetchCommand`):
        its next line (after a literal, or a spurious blank line, bpo-44408) belongs to it."""
        return self._depth > 0

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
        self._depth = 0
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


@dataclass(slots=True)
class _FollowUp:
    """A command to write right behind the sign-in command, and the future of its reply."""

    name: str
    args: tuple[str, ...]
    reply: asyncio.Future[Reply | None]


class SignInFollowUps:
    """The commands pipelined behind the sign-in command (RFC 9051 section 5.5), mixed into
    :class:`~.protocol._FastProtocol` ahead of aioimaplib's protocol (whose ``execute`` it extends);
    the protocol routes their tagged completions (``_response_done``) and provides the attributes
    below."""

    queued: collections.deque[Any]
    """Sync commands sent behind the pending one (pipelined), in sending order."""
    follow_ups: list[_FollowUp]
    """Commands waiting to be written right behind the sign-in command (see
    :meth:`~.client.IMAPClient.follow_sign_in`)."""
    loop: Any
    tasks: Any
    state: Any
    new_tag: Callable[[], str]
    """The library's next tag (aioimaplib's protocol provides it; an annotation only, so that the
    library's method is not shadowed)."""

    async def execute(self, command: Any, scrub: str | None = None) -> Any:
        """The library's ``execute``, first waiting for every pipelined command still in flight."""
        while self.queued:
            await self.queued[-1]._event.wait()
        return await super().execute(command, scrub)  # type: ignore[misc]

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
