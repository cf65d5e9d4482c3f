"""A scripted IMAP server on loopback, for what Dovecot will not do on request.

:class:`ScriptedIMAP` runs on the test's own event loop (``async with ScriptedIMAP(...) as server``)
and serves a small, correct subset of IMAP4rev1 (RFC 3501) over plaintext, implicit TLS or STARTTLS:
CAPABILITY, STARTTLS, LOGIN, SELECT, UID SEARCH ALL/DELETED, UID FETCH (UID, FLAGS, INTERNALDATE,
RFC822.SIZE, BODY[]/BODY.PEEK[], BODY.PEEK[HEADER], BODY.PEEK[HEADER.FIELDS (...)]), UID STORE (+/-FLAGS
\\Deleted), UID EXPUNGE, EXPUNGE, LIST, IDLE (RFC 2177; :meth:`ScriptedIMAP.push` writes to every
session in IDLE), NOOP, LOGOUT. Mailboxes are keyed by their wire name (modified UTF-7, unquoted);
each message's UID is its position + ``first_uid``; :attr:`ScriptedMailbox.attributes` go into LIST.

To misbehave, put a handler into :attr:`ScriptedIMAP.script` under the command name (``"LOGIN"``,
``"SELECT"``, ``"UID FETCH"``, ...): ``async def handler(session, tag, args) -> None`` writes what it
likes (or nothing, and waits: a hang), and may call the default with ``session.default(tag, name, args)``.
:attr:`ScriptedIMAP.fetch_writer` replaces how one message's FETCH response is written, and
:attr:`ScriptedIMAP.greeting` the greeting. :attr:`ScriptedIMAP.commands` records every command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: Without ``AUTH=PLAIN``: the fault tests drive LOGIN, maild's fallback for password accounts (add
#: ``AUTH=PLAIN`` to :attr:`ScriptedIMAP.capabilities` to drive AUTHENTICATE; Dovecot tests it for real).
DEFAULT_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE"
POST_LOGIN_CAPABILITIES = "IMAP4rev1 LITERAL+ UIDPLUS IDLE MOVE"
INTERNALDATE = "17-Jul-1996 02:44:25 -0700"


@dataclass
class ScriptedMessage:
    """One message: its octets, UID, flags (``\\Seen`` ...) and INTERNALDATE text."""

    raw: bytes
    uid: int
    flags: set[str] = field(default_factory=set)
    internaldate: str = INTERNALDATE


@dataclass
class ScriptedMailbox:
    """A mailbox: UIDVALIDITY, messages in sequence order, LIST attributes (``\\Trash`` ...)."""

    uidvalidity: int
    messages: list[ScriptedMessage]
    attributes: str = "\\HasNoChildren"


Handler = Callable[["Session", str, str], Awaitable[None]]
FetchWriter = Callable[[int, ScriptedMessage, str], bytes]


def uid_set_members(text: str, highest: int) -> set[int]:
    """Expand a sequence-set such as ``1:5,7,9:*`` (``*`` is ``highest``)."""
    members: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        first = highest if low == "*" else int(low)
        last = first if not high else highest if high == "*" else int(high)
        members.update(range(min(first, last), max(first, last) + 1))
    return members


def header_fields(raw: bytes, names: list[str]) -> bytes:
    """The lines (with continuation lines) of the header fields of ``raw`` named ``names`` (any case)."""
    header = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    wanted = {n.lower().encode() for n in names}
    out, keep = b"", False
    for line in header.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):
            keep = line.split(b":", 1)[0].strip().lower() in wanted
        if keep:
            out += line
    return out


def default_fetch_writer(seq: int, message: ScriptedMessage, items: str) -> bytes:
    """Write one message's FETCH response with the items asked for, UID first, the body last."""
    upper = items.upper()
    parts = [b"UID %d" % message.uid]
    if "FLAGS" in upper:
        parts.append(b"FLAGS (" + " ".join(sorted(message.flags)).encode() + b")")
    if "INTERNALDATE" in upper:
        parts.append(b'INTERNALDATE "' + message.internaldate.encode() + b'"')
    if "RFC822.SIZE" in upper:
        parts.append(b"RFC822.SIZE %d" % len(message.raw))
    if (names := re.search(r"HEADER\.FIELDS \(([^)]*)\)", upper)) is not None:
        fields = header_fields(message.raw, names.group(1).split()) + b"\r\n"
        parts.append(b"BODY[HEADER.FIELDS (%s)] {%d}\r\n" % (names.group(1).encode(), len(fields)) + fields)
    elif "BODY.PEEK[HEADER]" in upper:
        end = message.raw.find(b"\r\n\r\n")
        header = message.raw[: end + 4] if end >= 0 else message.raw
        parts.append(b"BODY[HEADER] {%d}\r\n" % len(header) + header)
    elif "BODY" in upper:
        parts.append(b"BODY[] {%d}\r\n" % len(message.raw) + message.raw)
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


class Session:
    """One client connection. Handlers use :meth:`send`, :meth:`default`, :meth:`drop`."""

    def __init__(
        self, server: ScriptedIMAP, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.selected: ScriptedMailbox | None = None
        self.authenticated = False
        self.idling = False

    async def send(self, data: bytes) -> None:
        """Write ``data`` and drain."""
        self.writer.write(data)
        await self.writer.drain()

    async def hang(self) -> None:
        """Answer nothing more until the client hangs up (whatever it sends is read and ignored)."""
        while await self.reader.read(65536):
            pass

    def drop(self) -> None:
        """Close the connection at once (RST), as a crashed server or broken network would."""
        self.writer.transport.abort()

    async def default(self, tag: str, name: str, args: str) -> None:
        """Answer ``name`` as a correct server would."""
        server = self.server
        ok = f"{tag} OK {name} completed\r\n".encode()
        if name == "CAPABILITY":
            caps = server.post_login_capabilities if self.authenticated else server.capabilities
            await self.send(f"* CAPABILITY {caps}\r\n".encode() + ok)
        elif name == "NOOP":
            await self.send(ok)
        elif name == "STARTTLS":
            assert server.tls_context is not None
            await self.send(f"{tag} OK Begin TLS negotiation now\r\n".encode())
            await self.writer.start_tls(server.tls_context)
        elif name == "AUTHENTICATE":
            if len(args.split()) == 1:  # no initial response: ask for it (RFC 9051 section 6.2.2)
                await self.send(b"+ \r\n")
                server.continuations.append((await self.reader.readline()).rstrip(b"\r\n").decode())
            self.authenticated = True
            await self.send(f"{tag} OK [CAPABILITY {server.post_login_capabilities}] Logged in\r\n".encode())
        elif name == "LOGIN":
            self.authenticated = True
            await self.send(f"{tag} OK [CAPABILITY {server.post_login_capabilities}] Logged in\r\n".encode())
        elif name == "SELECT":
            await self._select(tag, args)
        elif name == "UID SEARCH" and self.selected is None:  # after a failed SELECT (pipelined)
            await self.send(f"{tag} BAD No mailbox selected\r\n".encode())
        elif name == "UID SEARCH":
            assert self.selected is not None
            deleted_only = "DELETED" in args.upper()
            uids = " ".join(
                str(m.uid) for m in self.selected.messages if not deleted_only or "\\Deleted" in m.flags
            )
            await self.send(f"* SEARCH {uids}\r\n".encode().replace(b"SEARCH \r\n", b"SEARCH\r\n") + ok)
        elif name == "UID FETCH":
            assert self.selected is not None
            uid_text, _, items = args.partition(" ")
            messages = self.selected.messages
            wanted = uid_set_members(uid_text, messages[-1].uid if messages else 0)
            data = b"".join(
                server.fetch_writer(seq, m, items) for seq, m in enumerate(messages, 1) if m.uid in wanted
            )
            await self.send(data + ok)
        elif name == "UID STORE":
            assert self.selected is not None
            uid_text, _, change = args.partition(" ")
            wanted = uid_set_members(uid_text, 2**32 - 1)
            for message in self.selected.messages:
                if message.uid in wanted and "\\Deleted" in change:
                    if change.startswith("-"):
                        message.flags.discard("\\Deleted")
                    else:
                        message.flags.add("\\Deleted")
            await self.send(ok)
        elif name == "UID EXPUNGE":
            assert self.selected is not None
            wanted = uid_set_members(args, 2**32 - 1)
            messages = self.selected.messages
            lines = b""
            for seq in range(len(messages), 0, -1):
                message = messages[seq - 1]
                if message.uid in wanted and "\\Deleted" in message.flags:
                    del messages[seq - 1]
                    server.expunged.append(message.uid)
                    lines += b"* %d EXPUNGE\r\n" % seq
            await self.send(lines + ok)
        elif name == "EXPUNGE":
            assert self.selected is not None
            messages = self.selected.messages
            lines = b""
            for seq in range(len(messages), 0, -1):
                if "\\Deleted" in messages[seq - 1].flags:
                    server.expunged.append(messages.pop(seq - 1).uid)
                    lines += b"* %d EXPUNGE\r\n" % seq
            await self.send(lines + ok)
        elif name == "LIST":
            lines = b"".join(
                b'* LIST (%s) "/" "%s"\r\n' % (box.attributes.encode(), wire_name.encode())
                for wire_name, box in server.mailboxes.items()
            )
            await self.send(lines + ok)
        elif name == "IDLE":
            await self.idle(tag)
        elif name == "LOGOUT":
            await self.send(f"* BYE Logging out\r\n{tag} OK Logout completed\r\n".encode())
            self.writer.close()
        else:
            await self.send(f"{tag} BAD unknown command {name}\r\n".encode())

    async def idle(self, tag: str, *, continuation: bytes = b"+ idling\r\n") -> None:
        """Answer IDLE: send ``continuation``, then wait for DONE and complete (RFC 2177)."""
        await self.send(continuation)
        self.idling = True
        try:
            line = await self.reader.readline()
        finally:
            self.idling = False
        if line.rstrip(b"\r\n").upper() == b"DONE":
            self.server.dones += 1
            await self.send(f"{tag} OK Idle completed\r\n".encode())

    async def _select(self, tag: str, args: str) -> None:
        name = unquote(args)
        mailbox = self.server.mailboxes.get(name)
        if mailbox is None:
            self.selected = None
            await self.send(f"{tag} NO [NONEXISTENT] Mailbox doesn't exist: {name}\r\n".encode())
            return
        self.selected = mailbox
        next_uid = mailbox.messages[-1].uid + 1 if mailbox.messages else 1
        await self.send(
            (
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
                f"* {len(mailbox.messages)} EXISTS\r\n"
                "* 0 RECENT\r\n"
                f"* OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid\r\n"
                f"* OK [UIDNEXT {next_uid}] Predicted next UID\r\n"
                f"{tag} OK [READ-WRITE] Select completed\r\n"
            ).encode()
        )


def unquote(text: str) -> str:
    """Undo IMAP quoting of one astring (or return an atom unchanged)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


class ScriptedIMAP:
    """An IMAP server with scripted faults; see the module docstring.

    Args:
        mailboxes: wire name -> messages (bytes); UIDs count from ``first_uid``.
        uidvalidity: UIDVALIDITY of every mailbox.
        first_uid: UID of each mailbox's first message.
        tls_context: server-side TLS context for STARTTLS (and for implicit TLS with ``implicit_tls``).
        implicit_tls: speak TLS from the first octet.
    """

    def __init__(
        self,
        mailboxes: dict[str, list[bytes]] | None = None,
        *,
        uidvalidity: int = 1234,
        first_uid: int = 1,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.mailboxes = {
            name: ScriptedMailbox(
                uidvalidity, [ScriptedMessage(raw, first_uid + i) for i, raw in enumerate(raws)]
            )
            for name, raws in (mailboxes or {"INBOX": []}).items()
        }
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.capabilities = DEFAULT_CAPABILITIES + (" STARTTLS" if tls_context else "")
        self.post_login_capabilities = POST_LOGIN_CAPABILITIES
        self.greeting = b"* OK scripted IMAP ready\r\n"
        self.script: dict[str, Handler] = {}
        self.fetch_writer: FetchWriter = default_fetch_writer
        self.commands: list[str] = []
        self.continuations: list[str] = []  # lines answering a "+" of AUTHENTICATE
        self.expunged: list[int] = []
        self.dones = 0
        self.sessions: list[Session] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ScriptedIMAP:
        self._server = await asyncio.start_server(
            self._serve, self.host, 0, ssl=self.tls_context if self.implicit_tls else None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in self.sessions:
            session.drop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
        await self._server.wait_closed()

    async def push(self, data: bytes) -> int:
        """Write ``data`` (untagged lines, CRLF-terminated) to every session in IDLE; return how many."""
        idling = [s for s in self.sessions if s.idling and not s.writer.is_closing()]
        for session in idling:
            await session.send(data)
        return len(idling)

    def commands_named(self, prefix: str) -> list[str]:
        """The command lines (tag removed) that start with ``prefix``."""
        return [
            c.split(" ", 1)[1] for c in self.commands if c.split(" ", 1)[1].upper().startswith(prefix.upper())
        ]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        session = Session(self, reader, writer)
        self.sessions.append(session)
        with contextlib.suppress(
            ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError
        ):
            await session.send(self.greeting)
            while True:
                line = await reader.readline()
                if not line:
                    break
                text = line.rstrip(b"\r\n").decode(
                    "utf-8", "surrogateescape"
                )  # any octets, e.g. a TLS ClientHello
                self.commands.append(text)
                tag, _, rest = text.partition(" ")
                name, _, args = rest.partition(" ")
                name = name.upper()
                if name == "UID":
                    sub, _, args = args.partition(" ")
                    name = f"UID {sub.upper()}"
                handler = self.script.get(name)
                if handler is not None:
                    await handler(session, tag, args)
                else:
                    await session.default(tag, name, args)
                if writer.is_closing():
                    break
        with contextlib.suppress(Exception):
            writer.close()
