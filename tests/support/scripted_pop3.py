"""A scripted POP3 server (RFC 1939) on loopback, for what Dovecot will not do on request.

:class:`ScriptedPOP3` serves one maildrop of :class:`ScriptedMessage` objects on a free loopback port
from its own thread and asyncio loop (see :class:`tests.support.proxy.LoopThread`), so blocking
``poplib`` calls and async clients can both talk to it::

    with ScriptedPOP3([sample_message(1), ScriptedMessage(raw, retr_error="-ERR [SYS/TEMP] busy")]) as server:
        client = poplib.POP3(server.host, server.port, timeout=5)
        ...
        assert server.deleted == [...]

What it does right (RFC 1939 unless stated): states AUTHORIZATION, TRANSACTION and UPDATE; USER/PASS,
CAPA (RFC 2449), STAT, LIST, UIDL, RETR and TOP with dot-stuffing and the ``.`` terminator, DELE, RSET,
NOOP, QUIT. Deletions are applied only by a successful QUIT in TRANSACTION (section 6); a session that
ends any other way deletes nothing. Pipelined commands (RFC 2449 section 6.6) are read and answered
one by one, in order, whether or not PIPELINING is advertised. One session at a time holds the
maildrop; a second PASS meanwhile gets ``-ERR [IN-USE]`` (RFC 2449 section 8.1.2). Message sizes
(STAT, LIST, the RETR ``+OK``) are ``len(raw)``. Replies are written as soon as each command has been
read (asyncio sets TCP_NODELAY), so separate writes usually reach the client as separate segments.

What it can do wrong, per server (keyword arguments, also settable as attributes between sessions):
``uidl=False`` (UIDL answers ``-ERR``), ``capa`` (what CAPA lists, or ``False`` for ``-ERR``),
``pass_error`` (e.g. ``"-ERR [IN-USE] locked"``, ``[LOGIN-DELAY]``, ``[AUTH]``), ``quit_error`` (QUIT in
TRANSACTION answers it and deletes nothing), ``quit_reply_lost`` (QUIT deletes, then the connection
ends before ``+OK``), ``stall_on`` (never answer a command, nor anything after
it); and per message (fields of :class:`ScriptedMessage`): ``uidl`` (any string, duplicates allowed),
``retr_error``, ``retr_drop_after_octets``, ``retr_write_octets`` and ``retr_tail_octets`` (tiny
writes). Long lines are simply part of ``raw`` (see :func:`sample_message`).

Records: :attr:`~ScriptedPOP3.commands` (every command line received, in order, all sessions),
:attr:`~ScriptedPOP3.deleted` (messages removed by a successful QUIT), :attr:`~ScriptedPOP3.maildrop`
(what is left). Each instance starts fresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Literal

from tests.support.proxy import CLOSE_TIMEOUT_S, HOST, LoopThread

CRLF = b"\r\n"
TERMINATOR = b".\r\n"
"""Ends a multi-line reply (RFC 1939 section 3)."""

DEFAULT_CAPA_WITHOUT_OPTIONAL = ("TOP", "USER", "RESP-CODES", "AUTH-RESP-CODE")
"""CAPA lines always listed by default; UIDL and PIPELINING are added per the server's flags."""

_LINE_START_DOT = re.compile(rb"^\.", re.MULTILINE)


def dot_stuff(raw: bytes) -> bytes:
    """Return ``raw`` as the body of a multi-line reply, without the terminator.

    Lines starting with ``.`` get one more ``.``, and a final CRLF is added when missing so the
    terminator stands on a line of its own.

    Standard: RFC 1939 section 3.
    """
    if not raw.endswith(CRLF):
        raw += CRLF
    return _LINE_START_DOT.sub(b"..", raw)


def sample_message(n: int, body_lines: Sequence[bytes] = (), *, long_line_octets: int = 0) -> bytes:
    """Build a small RFC 5322 message, CRLF line endings, distinct for each ``n``.

    Args:
        n: number used in Subject, Message-ID and the default body.
        body_lines: body lines without line endings (lines starting with ``.`` test dot-stuffing);
            default one line naming ``n``.
        long_line_octets: when > 0, append a body line of this many octets (``x`` repeated, without
            the CRLF); poplib refuses lines over 2,048 octets.

    Returns:
        raw message bytes, CRLF line endings, ending with CRLF.
    """
    lines = [
        b"From: Sender <sender@example.org>",
        b"To: Office <office@example.com>",
        b"Subject: Message %d" % n,
        b"Message-ID: <scripted-%d@example.org>" % n,
        b"Date: Mon, 01 Jan 2024 12:00:00 +0000",
        b"",
        *(body_lines or [b"Body of message %d." % n]),
    ]
    if long_line_octets > 0:
        lines.append(b"x" * long_line_octets)
    return CRLF.join(lines) + CRLF


@dataclasses.dataclass(eq=False)
class ScriptedMessage:
    """One message in the maildrop, with how the server misbehaves when serving it.

    Fields may be changed between sessions (for example a drop on the first RETR only), not while a
    session is using the message. Equality is identity, so duplicates are distinct messages.

    Attributes:
        raw: raw message bytes, CRLF line endings; served dot-stuffed.
        uidl: unique-id listing string (RFC 1939 section 7); any characters, sent UTF-8 encoded;
            ``None`` gets ``uidl-<position>`` when the server is created.
        retr_error: full reply line (without CRLF) to send instead of the message on RETR and TOP,
            e.g. ``"-ERR [SYS/TEMP] try later"``.
        retr_drop_after_octets: on RETR, write only this many octets of the reply (counting from the
            ``+`` of ``+OK``), then close the connection (FIN); no QUIT, so no deletions.
        retr_write_octets: write the RETR reply in pieces of this many octets with the server's
            ``write_pause_s`` between them.
        retr_tail_octets: write the last this many octets of the RETR reply (the terminator region)
            one octet at a time, with ``write_pause_s`` before each.
        top: how TOP is answered: ``"as-retr"`` (default: ``retr_error`` applies to it too),
            ``"serve"`` (the header section even when RETR fails), ``"drop"`` (close the connection),
            ``"endless"`` (an endless header section, 4 KiB per write, until the client hangs up),
            ``"eoh"`` (as ``"as-retr"``, but a message without an empty line gets one after its header
            section, as RFC 1939 section 7 words TOP and Dovecot's ``oe-ns-eoh`` workaround does),
            ``"short"`` (the header section and all body lines but the last: a server capping TOP;
            served even when RETR fails), ``"huge:N"`` (a generated header section of ``X-Filler``
            lines making the whole reply, ``+OK`` line and ``.`` terminator included, exactly ``N``
            octets, streamed 4 KiB lines at a time and never held whole; ``N`` is 10 or at least
            22; it stops when the client hangs up), or
            a reply line to send instead (e.g. ``"-ERR no"``).
        list_size: the size STAT and LIST report instead of ``len(raw)`` (a server whose sizes are
            off); RETR's ``+OK`` line still says ``len(raw)``.
        dele_error: full reply line to send instead of ``+OK`` to DELE (the message stays unmarked),
            e.g. ``"-ERR cannot delete"``.
    """

    raw: bytes
    uidl: str | None = None
    retr_error: str | None = None
    retr_drop_after_octets: int | None = None
    retr_write_octets: int | None = None
    retr_tail_octets: int = 0
    top: str = "as-retr"
    list_size: int | None = None
    dele_error: str | None = None

    @property
    def size_octets(self) -> int:
        """Size reported by STAT and LIST: ``list_size``, else ``len(raw)``."""
        return len(self.raw) if self.list_size is None else self.list_size


class _Session:
    """Per-connection state: RFC 1939 state, the maildrop as seen at login, deletion marks."""

    def __init__(self) -> None:
        self.state: Literal["AUTHORIZATION", "TRANSACTION"] = "AUTHORIZATION"
        self.user: str | None = None
        self.messages: list[ScriptedMessage] = []
        self.marked: set[int] = set()
        #: Messages served by RETR or TOP (``delete_on_download="at-quit"`` removes them at UPDATE).
        self.downloaded: list[ScriptedMessage] = []


class _EndSession(Exception):
    """Raised by a command handler to end the session (after QUIT, a drop or a stall)."""


class ScriptedPOP3(LoopThread):
    """A POP3 server with one maildrop, on a free port of ``host``; use as a context manager.

    Args:
        messages: the maildrop; raw bytes become :class:`ScriptedMessage` with default fields.
        user: the one accepted user name.
        password: its password; a wrong one gets ``-ERR [AUTH] ...``.
        uidl: whether the UIDL command works (``False``: it answers ``-ERR`` and CAPA omits it).
        pipelining: whether CAPA lists PIPELINING (pipelined commands are always answered in order).
        capa: exact CAPA lines (``None``: the default list; ``False``: CAPA answers ``-ERR``).
        greeting: the greeting line, without CRLF.
        pass_error: reply line (without CRLF) to every PASS, e.g. ``"-ERR [LOGIN-DELAY] wait"``.
        quit_error: reply line to QUIT in TRANSACTION; deletions are then not applied.
        quit_reply_lost: QUIT in TRANSACTION applies the deletions (UPDATE state), then the connection
            is closed without the ``+OK`` (a reply lost in the network).
        delete_on_download: a message served by RETR or TOP (any line count) is removed from the
            maildrop at once, QUIT or not (a provider's "delete after POP download" setting, at its
            harshest): later sessions no longer list it; it is in :attr:`deleted`. ``"at-quit"``:
            removed in the UPDATE state that QUIT starts (RSET before it does not undo that), not
            when the connection ends without QUIT (RFC 1939 section 6).
        trickle_greeting: write the greeting one octet per ``write_pause_s``.
        dele_reply_padding: when not 0, the ``+OK`` to DELE carries this many more octets of text and
            is written one octet per ``write_pause_s`` (a server trickling a one-line reply).
        stall_on: command verbs (``"RETR"``) or exact command lines (``"RETR 2"``), case-insensitive,
            that the server never answers; it then reads and ignores input until the client closes.
        write_pause_s: pause between the tiny writes of ``retr_write_octets``/``retr_tail_octets``.
        host: loopback address to listen on.
    """

    def __init__(
        self,
        messages: Iterable[bytes | ScriptedMessage] = (),
        *,
        user: str = "alice",
        password: str = "secret",
        uidl: bool = True,
        pipelining: bool = True,
        capa: Sequence[str] | Literal[False] | None = None,
        greeting: str = "+OK scripted POP3 server ready",
        pass_error: str | None = None,
        quit_error: str | None = None,
        quit_reply_lost: bool = False,
        delete_on_download: bool | Literal["at-quit"] = False,
        dele_reply_padding: int = 0,
        trickle_greeting: bool = False,
        stall_on: Collection[str] = (),
        write_pause_s: float = 0.002,
        host: str = HOST,
    ) -> None:
        super().__init__("ScriptedPOP3")
        self._maildrop = [
            m if isinstance(m, ScriptedMessage) else ScriptedMessage(bytes(m)) for m in messages
        ]
        for position, message in enumerate(self._maildrop, start=1):
            if message.uidl is None:
                message.uidl = f"uidl-{position}"
        self.user = user
        self.password = password
        self.uidl = uidl
        self.pipelining = pipelining
        self.capa = capa
        self.greeting = greeting
        self.pass_error = pass_error
        self.quit_error = quit_error
        self.quit_reply_lost = quit_reply_lost
        self.delete_on_download = delete_on_download
        self.dele_reply_padding = dele_reply_padding
        self.trickle_greeting = trickle_greeting
        self.stall_on = stall_on
        self.write_pause_s = write_pause_s
        self.host = host
        self.port = 0
        self.connections = 0
        self._commands: list[str] = []
        self._deleted: list[ScriptedMessage] = []
        self._active = 0
        self._lock_holder: _Session | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # -- records, readable from any thread ---------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        return self.host, self.port

    @property
    def commands(self) -> list[str]:
        """Every command line received, all sessions, in order, without CRLF (PASS included)."""
        with self._changed:
            return list(self._commands)

    @property
    def deleted(self) -> list[ScriptedMessage]:
        """Messages removed from the maildrop by successful QUITs, in removal order."""
        with self._changed:
            return list(self._deleted)

    @property
    def maildrop(self) -> list[ScriptedMessage]:
        """Messages in the maildrop now, in order (msgnum 1 first for the next session)."""
        with self._changed:
            return list(self._maildrop)

    @property
    def active_sessions(self) -> int:
        """Connections the server has not yet finished with."""
        with self._changed:
            return self._active

    def add(self, message: bytes | ScriptedMessage) -> ScriptedMessage:
        """Append a message to the maildrop (seen by sessions that log in later) and return it."""
        if not isinstance(message, ScriptedMessage):
            message = ScriptedMessage(bytes(message))
        with self._changed:
            self._maildrop.append(message)
            if message.uidl is None:
                message.uidl = f"uidl-{len(self._maildrop) + len(self._deleted)}"
            self._changed.notify_all()
        return message

    # -- loop-thread side --------------------------------------------------------------------------

    async def _startup(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = _Session()
        with self._changed:
            self.connections += 1
            self._active += 1
            self._changed.notify_all()
        try:
            if self.trickle_greeting:  # one octet per pause: never silent for a whole timeout
                for octet in (self.greeting + "\r\n").encode("utf-8"):
                    await asyncio.sleep(self.write_pause_s)
                    writer.write(bytes([octet]))
                    await writer.drain()
            else:
                await self._send(writer, self.greeting)
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line beyond the stream limit (64 KiB): give up like a server would
                    break
                if not line.endswith(b"\n"):
                    break  # EOF, possibly mid-line: the session ends without UPDATE
                text = line.rstrip(b"\r\n").decode("latin-1")
                with self._changed:
                    self._commands.append(text)
                    self._changed.notify_all()
                if self._stalls(text):
                    while await reader.read(4096):
                        pass
                    break
                await self._dispatch(session, text, writer)
        except (_EndSession, OSError):
            pass
        finally:
            with self._changed:
                if self._lock_holder is session:
                    self._lock_holder = None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
            except (OSError, TimeoutError, asyncio.CancelledError):
                writer.transport.abort()
            with self._changed:
                self._active -= 1
                self._changed.notify_all()
            self._handlers.discard(task)

    def _stalls(self, text: str) -> bool:
        wanted = {entry.upper() for entry in self.stall_on}
        return text.upper() in wanted or text.partition(" ")[0].upper() in wanted

    async def _send(self, writer: asyncio.StreamWriter, line: str | bytes, body: bytes | None = None) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        data += CRLF
        if body is not None:
            data += dot_stuff(body) + TERMINATOR
        writer.write(data)
        await writer.drain()

    async def _dispatch(self, s: _Session, text: str, writer: asyncio.StreamWriter) -> None:
        verb, _, rest = text.partition(" ")
        verb, args = verb.upper(), rest.split()
        if verb == "CAPA":
            await self._capa(writer)
        elif verb == "QUIT":
            await self._quit(s, writer)
        elif s.state == "AUTHORIZATION":
            if verb == "USER" and len(args) == 1:
                s.user = args[0]
                await self._send(writer, "+OK")
            elif verb == "PASS" and rest:
                await self._pass(s, rest, writer)
            else:
                await self._send(writer, "-ERR command not valid in AUTHORIZATION state")
        elif verb in ("STAT", "NOOP", "RSET") and not args:
            if verb == "STAT":
                live = self._live(s)
                await self._send(writer, f"+OK {len(live)} {sum(m.size_octets for _, m in live)}")
            else:
                if verb == "RSET":
                    s.marked.clear()
                await self._send(writer, "+OK")
        elif verb in ("LIST", "UIDL") and len(args) <= 1:
            await self._listing(s, verb, args, writer)
        elif (verb in ("RETR", "DELE") and len(args) == 1) or (verb == "TOP" and len(args) == 2):
            found = self._message(s, args[0])
            if found is None:
                await self._send(writer, "-ERR no such message")
            elif verb == "DELE" and found[1].dele_error is not None:
                await self._send(writer, found[1].dele_error)
            elif verb == "DELE":
                s.marked.add(found[0])
                reply = f"+OK message {args[0]} deleted{self.dele_reply_padding * 'x'}"
                if self.dele_reply_padding:  # a server trickling the line, one octet per pause
                    for octet in (reply + "\r\n").encode("ascii"):
                        await asyncio.sleep(self.write_pause_s)
                        writer.write(bytes([octet]))
                        await writer.drain()
                else:
                    await self._send(writer, reply)
            elif verb == "TOP" and found[1].top not in ("as-retr", "serve", "eoh", "short"):
                await self._odd_top(found[1].top, writer)
            elif found[1].retr_error is not None and not (verb == "TOP" and found[1].top in ("serve", "short")):
                await self._send(writer, found[1].retr_error)
            elif verb == "TOP":
                if not args[1].isdigit():
                    await self._send(writer, "-ERR invalid line count")
                else:
                    asked = int(args[1])
                    if found[1].top == "short":  # a server capping TOP: the last body line is missing
                        asked = min(asked, found[1].raw.partition(CRLF + CRLF)[2].count(CRLF) - 1)
                    await self._send(writer, "+OK", _top(found[1].raw, asked, eoh=found[1].top == "eoh"))
                    self._downloaded(s, found[1])
            else:
                await self._retr(found[1], writer)
                self._downloaded(s, found[1])
        else:
            await self._send(writer, "-ERR unknown command or bad arguments")

    async def _odd_top(self, top: str, writer: asyncio.StreamWriter) -> None:
        """Answer TOP as :attr:`ScriptedMessage.top` says: drop, endless header, or a given line."""
        if top == "drop":
            raise _EndSession
        if top == "endless":
            writer.write(b"+OK\r\n")
            while not writer.is_closing():
                writer.write(b"X-Filler: " + b"x" * 4080 + b"\r\n")
                await writer.drain()
            raise _EndSession
        if top.startswith("huge:"):
            await _huge_top(int(top.removeprefix("huge:")), writer)
            return
        await self._send(writer, top)

    async def _capa(self, writer: asyncio.StreamWriter) -> None:
        if self.capa is False:
            await self._send(writer, "-ERR unknown command")
            return
        if self.capa is None:
            lines = list(DEFAULT_CAPA_WITHOUT_OPTIONAL)
            lines += ["UIDL"] if self.uidl else []
            lines += ["PIPELINING"] if self.pipelining else []
        else:
            lines = list(self.capa)
        await self._send(writer, "+OK capability list follows", "".join(f"{c}\r\n" for c in lines).encode())

    async def _pass(self, s: _Session, password: str, writer: asyncio.StreamWriter) -> None:
        if self.pass_error is not None:
            await self._send(writer, self.pass_error)
            return
        if s.user != self.user or password != self.password:
            await self._send(writer, "-ERR [AUTH] invalid user name or password")
            return
        with self._changed:
            if self._lock_holder is not None:
                reply = "-ERR [IN-USE] maildrop already locked"
            else:
                self._lock_holder = s
                s.state = "TRANSACTION"
                s.messages = list(self._maildrop)
                reply = f"+OK maildrop locked, {len(s.messages)} messages"
        await self._send(writer, reply)

    async def _quit(self, s: _Session, writer: asyncio.StreamWriter) -> None:
        if s.state == "TRANSACTION":
            if self.quit_error is not None:
                await self._send(writer, self.quit_error)
                raise _EndSession
            with self._changed:  # UPDATE state: deletions happen here and only here
                gone = [s.messages[i] for i in sorted(s.marked)]
                gone += [m for m in s.downloaded if all(m is not g for g in gone)]
                self._maildrop = [m for m in self._maildrop if all(m is not g for g in gone)]
                self._deleted += gone
                self._changed.notify_all()
            if self.quit_reply_lost:
                raise _EndSession
        await self._send(writer, "+OK bye")
        raise _EndSession

    def _downloaded(self, s: _Session, message: ScriptedMessage) -> None:
        """With ``delete_on_download``: remove ``message`` from the maildrop now (or, ``"at-quit"``,
        note it for the UPDATE state of session ``s``)."""
        if not self.delete_on_download:
            return
        if self.delete_on_download == "at-quit":
            s.downloaded.append(message)
            return
        with self._changed:
            if any(m is message for m in self._maildrop):
                self._maildrop = [m for m in self._maildrop if m is not message]
                self._deleted.append(message)
            self._changed.notify_all()

    def _live(self, s: _Session) -> list[tuple[int, ScriptedMessage]]:
        """``(msgnum, message)`` of messages not marked deleted."""
        return [(i + 1, m) for i, m in enumerate(s.messages) if i not in s.marked]

    def _message(self, s: _Session, arg: str) -> tuple[int, ScriptedMessage] | None:
        """``(index, message)`` for a msgnum argument, or ``None`` if invalid or marked deleted."""
        if not arg.isdigit() or not 1 <= int(arg) <= len(s.messages) or int(arg) - 1 in s.marked:
            return None
        return int(arg) - 1, s.messages[int(arg) - 1]

    async def _listing(self, s: _Session, verb: str, args: list[str], writer: asyncio.StreamWriter) -> None:
        if verb == "UIDL" and not self.uidl:
            await self._send(writer, "-ERR command not supported")
            return

        def entry(msgnum: int, message: ScriptedMessage) -> str:
            return f"{msgnum} {message.size_octets if verb == 'LIST' else message.uidl}"

        if args:
            found = self._message(s, args[0])
            reply = "-ERR no such message" if found is None else f"+OK {entry(found[0] + 1, found[1])}"
            await self._send(writer, reply)
        else:
            body = "".join(f"{entry(n, m)}\r\n" for n, m in self._live(s)).encode("utf-8")
            await self._send(writer, "+OK", body)

    async def _retr(self, message: ScriptedMessage, writer: asyncio.StreamWriter) -> None:
        data = b"+OK %d octets\r\n" % len(message.raw) + dot_stuff(message.raw) + TERMINATOR
        if message.retr_drop_after_octets is not None:
            writer.write(data[: message.retr_drop_after_octets])
            await writer.drain()
            raise _EndSession
        tail_at = len(data) - min(message.retr_tail_octets, len(data))
        step = message.retr_write_octets or tail_at or 1
        for start in range(0, tail_at, step):
            if start:
                await asyncio.sleep(self.write_pause_s)
            writer.write(data[start : min(start + step, tail_at)])
            await writer.drain()
        for index in range(tail_at, len(data)):
            await asyncio.sleep(self.write_pause_s)
            writer.write(data[index : index + 1])
            await writer.drain()


def on_server(server: ScriptedPOP3) -> list[bytes]:
    """The octets of the messages ``server`` still holds, in maildrop order."""
    return [m.raw for m in server.maildrop]


def _top(raw: bytes, body_lines: int, *, eoh: bool = False) -> bytes:
    """Header section, the empty line, then the first ``body_lines`` lines of the body (RFC 1939 section 7).

    A message without an empty line is sent as it is, or with ``eoh`` followed by one (its end of
    header)."""
    header, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return raw + CRLF if eoh and raw.endswith(CRLF) else raw
    lines = body.split(CRLF)
    if lines and lines[-1] == b"":
        lines.pop()
    kept = b"".join(line + CRLF for line in lines[:body_lines])
    return header + CRLF + CRLF + kept


HUGE_LINE_OCTETS = 4096
"""Octets of each generated ``X-Filler`` line (CRLF included) of a ``"huge:N"`` TOP reply."""


def huge_top_lines(octets: int) -> Iterator[bytes]:
    """The header lines (CRLF-terminated, ``X-Filler: xxx``) of a ``"huge:N"`` reply totalling
    ``octets`` octets, each at most :data:`HUGE_LINE_OCTETS` and at least 12 octets."""
    if 0 < octets < 12:
        raise ValueError("a filler line takes at least 12 octets")
    while octets:
        line = min(octets, HUGE_LINE_OCTETS)
        if 0 < octets - line < 12:
            line = octets - 12
        yield b"X-Filler: " + b"x" * (line - 12) + b"\r\n"
        octets -= line


async def _huge_top(octets: int, writer: asyncio.StreamWriter) -> None:
    """Write a ``+OK`` TOP reply of exactly ``octets`` octets (see :attr:`ScriptedMessage.top`)."""
    writer.write(b"+OK\r\n")
    for line in huge_top_lines(octets - len(b"+OK\r\n\r\n.\r\n")):
        if writer.is_closing():
            raise _EndSession
        writer.write(line)
        if writer.transport.get_write_buffer_size() > 64 * HUGE_LINE_OCTETS:
            await writer.drain()
    writer.write(b"\r\n.\r\n")
    await writer.drain()
