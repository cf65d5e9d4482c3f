"""POP3 adapter against a scripted server, for what Dovecot will not do on request.

Covers refused RETR/DELE/QUIT, response codes at login, duplicate and missing UIDLs, stalls (timeouts and
cancellation), hang-ups, oversized replies and the order of RSET/QUIT on abort.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import socket
import threading
import time
import traceback
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import pytest
import structlog

from maild.errors import (
    AuthError,
    ConnectError,
    NetworkTimeout,
    ProtocolError,
    ThrottledError,
    TransientError,
)
from maild.model import IMAPKey, MessageKey, POP3Key, RetrievalFailure, RetrievedMessage, ServerSettings
from maild.protocols.pop3 import buffers as pop3_buffers
from maild.protocols.pop3 import retrieval as pop3_retrieval
from maild.protocols.pop3 import session as pop3_session
from maild.protocols.pop3.maildrop import POP3Maildrop
from maild.protocols.pop3.session import POP3Session
from maild.secret import Secret

PASSWORD = "s3cret-Pw!"
ACCOUNT = "anna-pop"


def stuff(raw: bytes) -> bytes:
    """Byte-stuff a CRLF message and append the terminator (RFC 1939 section 3)."""
    if raw.startswith(b"."):
        raw = b"." + raw
    return raw.replace(b"\r\n.", b"\r\n..") + b".\r\n"


@dataclass
class FakePOP3:
    """A scripted POP3 server on loopback, one connection at a time, in a thread.

    ``replies`` overrides the answer to a command line (``"RETR 2"``) or verb (``"PASS"``) with raw bytes;
    ``stall`` makes the server go silent after receiving such a command; ``hangup`` closes the
    connection after sending the override (if any).
    """

    messages: list[bytes]
    uidls: list[str] | None = None
    caps: tuple[str, ...] | None = ("USER", "UIDL", "PIPELINING", "RESP-CODES", "TOP")
    greeting: bytes = b"+OK scripted POP3 ready\r\n"
    replies: dict[str, bytes] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)
    hangup: set[str] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)  # complete command lines per received chunk
    applied: list[list[int]] = field(default_factory=list)  # deletions applied by each +OK QUIT
    stalled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.uidls is None:
            self.uidls = [f"uid-{i:04d}" for i in range(1, len(self.messages) + 1)]
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for sock in [self._listener, *self._conns]:  # shutdown() wakes a thread blocked in accept/recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        assert not self._thread.is_alive()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            with conn, contextlib.suppress(OSError):
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        assert self.uidls is not None
        marked: set[int] = set()
        conn.sendall(self.greeting)
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            self.batches.append(buf.count(b"\r\n"))  # commands that arrived together
            while b"\r\n" in buf:
                raw, buf = buf.split(b"\r\n", 1)
                line = raw.decode("latin-1")  # a TLS ClientHello may arrive here: any octets
                self.commands.append(line)
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                override = self.replies.get(line, self.replies.get(verb))
                if line in self.stall or verb in self.stall:
                    self.stalled.set()
                    while conn.recv(65536):  # silent until the client goes away
                        pass
                    return
                reply = override if override is not None else self._answer(verb, arg, marked)
                quit_ok = verb == "QUIT" and reply.startswith(b"+OK")
                if quit_ok:  # recorded before the client can see the reply
                    self.applied.append(sorted(marked))
                conn.sendall(reply)
                if quit_ok or line in self.hangup or verb in self.hangup:
                    return

    def _answer(self, verb: str, arg: str, marked: set[int]) -> bytes:
        assert self.uidls is not None
        live = [n for n in range(1, len(self.messages) + 1) if n not in marked]
        if verb in ("USER", "NOOP", "RSET") or (verb == "PASS" and arg == PASSWORD):
            if verb == "RSET":
                marked.clear()
            return b"+OK\r\n"
        if verb == "PASS":
            return b"-ERR [AUTH] Authentication failed.\r\n"
        if verb == "CAPA" and self.caps is not None:
            return b"+OK\r\n" + b"".join(c.encode() + b"\r\n" for c in self.caps) + b".\r\n"
        if verb == "UIDL" and (self.caps is None or "UIDL" in self.caps) and not arg:
            return b"+OK\r\n" + b"".join(f"{n} {self.uidls[n - 1]}\r\n".encode() for n in live) + b".\r\n"
        if verb == "LIST" and not arg:
            sizes = b"".join(f"{n} {len(self.messages[n - 1])}\r\n".encode() for n in live)
            return b"+OK\r\n" + sizes + b".\r\n"
        if verb in ("RETR", "DELE") and arg.isdigit() and int(arg) in live:
            if verb == "DELE":
                marked.add(int(arg))
                return b"+OK marked\r\n"
            return b"+OK\r\n" + stuff(self.messages[int(arg) - 1])
        if verb == "QUIT":
            return b"+OK bye\r\n"
        return b"-ERR no\r\n"


@pytest.fixture
def executor_workers() -> int:
    """A one-thread pool, so a thread still blocked would show as a stuck follow-up job."""
    return 1


MESSAGES = [
    b"Subject: one\r\n\r\nhello\r\n",
    b"Subject: two\r\n\r\n.dot line\r\n..\r\n",
    b"Subject: three\r\n\r\n" + b"y" * 10_000 + b"\r\n",
    b"Subject: four\r\n\r\nbye\r\n",
]


@pytest.fixture
def make_server() -> Iterator[type[FakePOP3]]:
    """Create scripted servers that are stopped after the test."""
    servers: list[FakePOP3] = []

    class Tracked(FakePOP3):
        def __post_init__(self) -> None:
            super().__post_init__()
            servers.append(self)

    yield Tracked
    for server in servers:
        server.stop()


class MakeMaildrop(Protocol):
    def __call__(
        self, server: FakePOP3, *, timeout_s: float = 5.0, tls: str = "none", pw: str = PASSWORD, **kw: int
    ) -> POP3Maildrop: ...


@pytest.fixture
async def make_maildrop(executor: concurrent.futures.ThreadPoolExecutor) -> AsyncIterator[MakeMaildrop]:
    """Create maildrops on scripted servers; each is aborted after the test, so none leaks a socket."""
    made: list[POP3Maildrop] = []

    def make(
        server: FakePOP3, *, timeout_s: float = 5.0, tls: str = "none", pw: str = PASSWORD, **kw: int
    ) -> POP3Maildrop:
        settings = settings_for(server, timeout_s=timeout_s, tls=tls, pw=pw)
        maildrop = POP3Maildrop(settings, executor, **kw)
        made.append(maildrop)
        return maildrop

    yield make
    for maildrop in made:
        await maildrop.abort()


def settings_for(
    server: FakePOP3, *, timeout_s: float = 5.0, tls: str = "none", pw: str = PASSWORD
) -> ServerSettings:
    """ServerSettings for the scripted server."""
    return ServerSettings(
        account=ACCOUNT,
        host="127.0.0.1",
        port=server.port,
        tls=tls,  # type: ignore[arg-type]
        ca_file=None,
        username="anna",
        password=Secret(pw),
        timeout_s=timeout_s,
    )


@pytest.fixture
async def session(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> AsyncIterator[tuple[POP3Maildrop, FakePOP3]]:
    """An open maildrop on a scripted server with MESSAGES; aborted afterwards."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server)
    await maildrop.open()
    yield maildrop, server
    await maildrop.abort()


async def collect(
    maildrop: POP3Maildrop, keys: Sequence[MessageKey]
) -> list[RetrievedMessage | RetrievalFailure]:
    """Run retrieve() to the end."""
    return [item async for item in maildrop.retrieve(keys)]


# -- happy paths ---------------------------------------------------------------------------------------


async def test_inventory_retrieve_delete_close(session: tuple[POP3Maildrop, FakePOP3]) -> None:
    """Inventory lists UIDLs and sizes in order, RETRs are pipelined, and +OK to QUIT applies DELEs.

    Steps: open; inventory; retrieve all (one window); delete two; close; the server applied both.
    """
    maildrop, server = session
    entries = await maildrop.inventory()
    assert [(e.key, e.size_octets) for e in entries] == [
        (POP3Key(f"uid-{i:04d}"), len(m)) for i, m in enumerate(MESSAGES, 1)
    ]
    got = await collect(maildrop, [e.key for e in entries])
    assert got == [RetrievedMessage(e.key, m) for e, m in zip(entries, MESSAGES, strict=True)]
    assert max(server.batches) == 4  # all four RETRs arrived together
    await maildrop.delete([entries[0].key, entries[2].key, entries[0].key])
    await maildrop.close()
    assert server.applied == [[1, 3]]
    assert server.commands.count("DELE 1") == 1


@pytest.mark.parametrize(
    ("caps", "window", "batches"),
    [
        (("USER", "UIDL", "PIPELINING", "TOP"), 3, [3, 1]),
        (("USER", "UIDL", "PIPELINING", "TOP"), 4, [4]),
        (("USER", "UIDL", "PIPELINING", "TOP"), 5, [4]),
        (("USER", "UIDL", "TOP"), 200, [1, 1, 1, 1]),
    ],
    ids=["window-3", "window-4", "window-5", "no-pipelining"],
)
async def test_header_fields_pipeline_top_in_windows_when_the_server_allows_it(
    make_server: type[FakePOP3],
    make_maildrop: MakeMaildrop,
    caps: tuple[str, ...],
    window: int,
    batches: list[int],
) -> None:
    """TOP n 0 of four messages: one round trip per window of up to ``window`` commands (4 at the
    window -1, +0, +1) with PIPELINING (RFC 2449 section 6.6), one per message without it; the
    header sections come back in order. Before the review of session 14 each TOP was a round trip,
    which the check of every POP3 deletion candidate made a cost per deleted message."""
    sections = [m.split(b"\r\n\r\n")[0] + b"\r\n\r\n" for m in MESSAGES]
    tops = {f"TOP {n} 0": b"+OK\r\n" + section + b".\r\n" for n, section in enumerate(sections, 1)}
    server = make_server(list(MESSAGES), caps=caps, replies=tops)
    maildrop = make_maildrop(server, window=window)
    await maildrop.open()
    entries = await maildrop.inventory()
    mark = len(server.batches)
    headers = await maildrop.header_fields([e.key for e in entries], max_octets=2**20)
    sent = server.batches[mark:]
    await maildrop.close()

    assert [headers[e.key] for e in entries] == sections
    assert sent == batches


async def test_without_pipelining_one_command_per_round_trip(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """A server without PIPELINING in CAPA gets one command per round trip."""
    server = make_server(list(MESSAGES), caps=("USER", "UIDL"))
    maildrop = make_maildrop(server)
    await maildrop.open()
    entries = await maildrop.inventory()
    got = await collect(maildrop, [e.key for e in entries])
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == MESSAGES
    await maildrop.close()
    assert set(server.batches) == {1}


async def test_without_capa(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A plain RFC 1939 server without CAPA still works: UIDL is tried, no pipelining."""
    server = make_server(list(MESSAGES), caps=None)
    maildrop = make_maildrop(server)
    await maildrop.open()
    assert maildrop.capabilities == {}
    assert len(await maildrop.inventory()) == 4
    await maildrop.close()


def record_sends(maildrop: POP3Maildrop, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the command lists the maildrop's session sends, one list per send."""
    sends: list[list[str]] = []
    session = maildrop._session  # the windows are what is under test
    original = session.send_ahead

    def recording(commands: Sequence[str], *, multiline: bool) -> None:
        sends.append(list(commands))
        original(commands, multiline=multiline)

    monkeypatch.setattr(session, "send_ahead", recording)
    return sends


async def test_windows_by_count_and_octets(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows hold at most `window` RETRs and about `window_octets` of LIST sizes, at least one each."""
    server = make_server([b"x" * 100 + b"\r\n"] * 7)
    maildrop = make_maildrop(server, window=3, window_octets=250)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    sends = record_sends(maildrop, monkeypatch)
    assert len(await collect(maildrop, keys)) == 7
    assert [len(s) for s in sends] == [2, 2, 2, 1]  # 102 octets each: two per window by octets
    await maildrop.close()


async def test_a_window_is_handed_over_in_parts(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RETR window is read in parts of about HAND_OFF_OCTETS: the first messages are yielded
    while the rest of the window's replies are still unread on the connection, not held."""
    monkeypatch.setattr(pop3_retrieval, "HAND_OFF_OCTETS", 150)
    server = make_server([b"x" * 100 + b"\r\n"] * 5)
    maildrop = make_maildrop(server, window=10, window_octets=10_000)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    sends = record_sends(maildrop, monkeypatch)
    owed_at_yield = [maildrop._session.owed async for _ in maildrop.retrieve(keys)]
    assert [len(s) for s in sends] == [5]  # one window, sent at once
    assert owed_at_yield == [3, 3, 1, 1, 0]  # parts of two messages (102 octets each), then one
    await maildrop.close()


async def test_window_octets_callable_is_asked_per_window(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retrieve(window_octets=f) sizes each window by f() at the time it is planned."""
    server = make_server([b"x" * 100 + b"\r\n"] * 6)
    maildrop = make_maildrop(server, window=10, min_window_octets=0)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    sends = record_sends(maildrop, monkeypatch)
    budgets = iter([1000, 250, 1])
    got = [item async for item in maildrop.retrieve(keys, window_octets=lambda: next(budgets, 1))]
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == [b"x" * 100 + b"\r\n"] * 6
    assert [len(s) for s in sends] == [6]  # 1000 octets hold all six
    await maildrop.close()  # the scripted server takes one connection at a time
    maildrop2 = make_maildrop(server, window=10, min_window_octets=0)
    await maildrop2.open()
    keys = [e.key for e in await maildrop2.inventory()]
    sends = record_sends(maildrop2, monkeypatch)
    budgets = iter([250, 1])
    assert len([item async for item in maildrop2.retrieve(keys, window_octets=lambda: next(budgets, 1))]) == 6
    assert [len(s) for s in sends] == [2, 1, 1, 1, 1]
    await maildrop2.close()


async def test_a_small_window_budget_does_not_shrink_a_window_below_its_floor(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer asking for 1-octet windows still gets windows of min_window_octets (the window
    waits on the connection, not in memory), so the RETRs go out in one send, not six."""
    server = make_server([b"x" * 100 + b"\r\n"] * 6)
    maildrop = make_maildrop(server, window=10, min_window_octets=1000)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    sends = record_sends(maildrop, monkeypatch)
    got = [item async for item in maildrop.retrieve(keys, window_octets=lambda: 1)]
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == [b"x" * 100 + b"\r\n"] * 6
    assert [len(s) for s in sends] == [6]
    await maildrop.close()


async def test_next_window_is_sent_before_the_consumer_takes_the_first(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """Sliding window (RFC 2449 section 6.6): while the consumer holds window 1, window 2 is already
    requested (the link never waits for the consumer), and window 3 is not (two windows at most)."""
    server = make_server([b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(1, 7)])
    maildrop = make_maildrop(server, window=2)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    results = maildrop.retrieve(keys)
    first = await anext(results)
    assert isinstance(first, RetrievedMessage)
    deadline = time.monotonic() + 5
    while "RETR 4" not in server.commands and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # time for a (wrong) third window to arrive
    retrs = [c for c in server.commands if c.startswith("RETR")]
    assert retrs == ["RETR 1", "RETR 2", "RETR 3", "RETR 4"]
    rest = [item async for item in results]
    assert [g.key for g in rest] == keys[1:]
    await maildrop.close()


async def test_generator_closed_with_a_window_owed_then_delete_and_quit(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """Stopping retrieve() early leaves replies owed for the window sent ahead; the next command reads
    and drops them first, so DELE and QUIT still pair with their own replies."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server, window=1)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    results = maildrop.retrieve(keys)
    assert await anext(results) == RetrievedMessage(keys[0], MESSAGES[0])
    await results.aclose()
    await maildrop.delete([keys[0]])
    await maildrop.close()
    assert server.applied == [[1]]


async def test_abort_with_a_window_owed_hangs_up_without_quit(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """abort() with RETR replies still owed does not send RSET/QUIT (their replies would pair with the
    RETRs): it hangs up, and without QUIT nothing marked is deleted (RFC 1939 section 6)."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server, window=1)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    await maildrop.delete([keys[3]])
    results = maildrop.retrieve(keys[:3])
    assert isinstance(await anext(results), RetrievedMessage)
    await results.aclose()
    await maildrop.abort()
    assert "QUIT" not in server.commands
    assert "RSET" not in server.commands
    assert server.applied == []


# -- individual refusals -------------------------------------------------------------------------------


async def test_retr_refused_yields_failure(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """-ERR to one RETR yields a RetrievalFailure with the server's line; the others arrive."""
    server = make_server(list(MESSAGES), replies={"RETR 2": b"-ERR [SYS/TEMP] message locked\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    got = await collect(maildrop, keys)
    assert got[1] == RetrievalFailure(keys[1], "-ERR [SYS/TEMP] message locked")
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == [MESSAGES[0], *MESSAGES[2:]]
    await maildrop.close()


async def test_unknown_key_fails_without_command(session: tuple[POP3Maildrop, FakePOP3]) -> None:
    """A key not in the inventory yields RetrievalFailure in its place and sends nothing for it."""
    maildrop, server = session
    keys = [e.key for e in await maildrop.inventory()]
    got = await collect(maildrop, [keys[0], POP3Key("nope"), keys[1]])
    assert got[1] == RetrievalFailure(POP3Key("nope"), "not in this session's inventory")
    assert isinstance(got[0], RetrievedMessage)
    assert isinstance(got[2], RetrievedMessage)
    assert sum(c.startswith("RETR") for c in server.commands) == 2
    with pytest.raises(ValueError, match="not addressable"):
        await maildrop.delete([POP3Key("nope")])


async def test_wrong_key_type_and_order_of_calls(session: tuple[POP3Maildrop, FakePOP3]) -> None:
    """retrieve() before inventory() and IMAP keys are programming errors."""
    maildrop, _ = session
    with pytest.raises(RuntimeError, match="inventory"):
        await collect(maildrop, [POP3Key("uid-0001")])
    await maildrop.inventory()
    with pytest.raises(TypeError):
        await collect(maildrop, [IMAPKey("INBOX", 1, 1)])


async def test_duplicate_uidls_left_out(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """Messages sharing a UIDL are left out of the inventory with a warning and are never deleted."""
    server = make_server(list(MESSAGES), uidls=["a", "dup", "c", "dup"])
    maildrop = make_maildrop(server)
    await maildrop.open()
    with structlog.testing.capture_logs() as logs:
        entries = await maildrop.inventory()
    assert [e.key for e in entries] == [POP3Key("a"), POP3Key("c")]
    assert maildrop.duplicate_uidls == {"dup"}
    assert logs == [
        {
            "event": "pop3.uidl.duplicate",
            "log_level": "warning",
            "account": ACCOUNT,
            "uidl": "dup",
            "message_count": 2,
        }
    ]
    assert await collect(maildrop, [POP3Key("dup")]) == [
        RetrievalFailure(POP3Key("dup"), "UIDL is not unique in the maildrop")
    ]
    with pytest.raises(ValueError, match="not addressable"):
        await maildrop.delete([POP3Key("dup")])
    await maildrop.close()
    assert server.applied == [[]]


async def test_no_uidl(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A server without UIDL or TOP gets full-content identities (SHA-256 via RETR) and a status warning."""
    server = make_server(list(MESSAGES), caps=("USER", "PIPELINING"))
    maildrop = make_maildrop(server)
    await maildrop.open()
    entries = await maildrop.inventory()
    assert [e.key for e in entries] == [POP3Key("sha256:" + hashlib.sha256(m).hexdigest()) for m in MESSAGES]
    assert maildrop.identity == "content-digest"
    assert "does not offer UIDL" in maildrop.identity_warnings[0]
    assert not any(c.startswith("TOP") for c in server.commands)
    got = await collect(maildrop, [e.key for e in entries])
    assert [g.raw for g in got if isinstance(g, RetrievedMessage)] == MESSAGES
    await maildrop.close()


async def test_no_uidl_message_not_matching_its_header_identity_is_not_handed_out(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """Octets from RETR whose header section differs from what TOP showed yield RetrievalFailure, not a message."""
    header = b"Received: from a by b; Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n"
    server = make_server(
        list(MESSAGES[:2]),
        caps=("USER", "PIPELINING", "TOP"),
        replies={"TOP 1 0": b"+OK\r\n" + header + b".\r\n", "TOP 2 0": b"-ERR no\r\n"},
    )
    maildrop = make_maildrop(server)
    await maildrop.open()
    with structlog.testing.capture_logs() as logs:
        entries = await maildrop.inventory()
        got = await collect(maildrop, [e.key for e in entries])
    assert [e.key.uidl[:4] for e in entries if isinstance(e.key, POP3Key)] == ["hdr:", "sha2"]
    assert got[0] == RetrievalFailure(entries[0].key, "content differs from its digest identity; not stored")
    assert got[1] == RetrievedMessage(entries[1].key, MESSAGES[1])
    assert [e["event"] for e in logs] == ["pop3.identity.content-digest", "pop3.identity.mismatch"]
    await maildrop.close()


async def test_uidl_deferred_is_throttling(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """UIDL refused with [SYS/TEMP] raises ThrottledError instead of switching to digest identities."""
    server = make_server(list(MESSAGES), replies={"UIDL": b"-ERR [SYS/TEMP] index busy\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    with pytest.raises(ThrottledError, match="UIDL deferred") as info:
        await maildrop.inventory()
    assert info.value.account == ACCOUNT
    assert not any(c.startswith("RETR") for c in server.commands)
    await maildrop.abort()


async def test_uidl_and_list_disagree(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """UIDL and LIST naming different message-numbers is a ProtocolError."""
    server = make_server(list(MESSAGES), replies={"LIST": b"+OK\r\n1 10\r\n.\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    with pytest.raises(ProtocolError, match="different message-numbers"):
        await maildrop.inventory()
    await maildrop.abort()


async def test_dele_refused(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """-ERR to DELE raises ProtocolError; the session stays in step and abort un-marks everything.

    Steps: DELE 1 (+OK), DELE 2 (-ERR) in one window; ProtocolError; abort sends RSET then QUIT; nothing
    is deleted.
    """
    server = make_server(list(MESSAGES), replies={"DELE 2": b"-ERR [SYS/PERM] read-only\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    with pytest.raises(ProtocolError, match="DELE refused") as info:
        await maildrop.delete(keys[:3])
    assert info.value.line == "-ERR [SYS/PERM] read-only"
    await maildrop.abort()
    assert server.commands[-2:] == ["RSET", "QUIT"]
    assert server.applied == [[]]


async def test_quit_refused(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """-ERR to QUIT raises ProtocolError: deletions may not have been applied."""
    server = make_server(list(MESSAGES), replies={"QUIT": b"-ERR [SYS/TEMP] could not update\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    await maildrop.delete(keys[:1])
    with pytest.raises(ProtocolError, match="QUIT refused"):
        await maildrop.close()
    await maildrop.abort()  # no-op after close
    assert server.applied == []


async def test_delete_then_abort_deletes_nothing(session: tuple[POP3Maildrop, FakePOP3]) -> None:
    """abort() after DELE sends RSET, then QUIT, so no deletion is applied."""
    maildrop, server = session
    keys = [e.key for e in await maildrop.inventory()]
    await maildrop.delete(keys)
    await maildrop.abort()
    assert server.commands[-2:] == ["RSET", "QUIT"]
    assert server.applied == [[]]


async def test_abort_without_quit_when_rset_refused(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """When RSET is refused, abort() never sends QUIT (which would apply the deletions)."""
    server = make_server(list(MESSAGES), replies={"RSET": b"-ERR\r\n"})
    maildrop = make_maildrop(server)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    await maildrop.delete(keys)
    await maildrop.abort()
    assert server.commands[-1] == "RSET"
    assert server.applied == []


async def test_abort_is_idempotent_and_safe_before_open(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """abort() before open, twice, and after close does nothing and raises nothing."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server)
    await maildrop.abort()
    await maildrop.abort()
    other = make_maildrop(server)
    await other.open()
    await other.close()
    await other.abort()
    assert server.applied == [[]]


# -- login ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"-ERR [AUTH] Authentication failed.\r\n", AuthError),
        (b"-ERR bad login\r\n", AuthError),
        (b"-ERR [UNKNOWN-CODE] what\r\n", AuthError),
        (b"-ERR [IN-USE] Mailbox locked by another session\r\n", ThrottledError),
        (b"-ERR [LOGIN-DELAY] Wait 300 s\r\n", ThrottledError),
        (b"-ERR [SYS/TEMP] Try again later\r\n", ThrottledError),
        (b"-ERR [SYS/PERM] Mailbox corrupt\r\n", ProtocolError),
    ],
)
async def test_pass_refusals(
    make_server: type[FakePOP3],
    make_maildrop: MakeMaildrop,
    reply: bytes,
    error: type[Exception],
) -> None:
    """-ERR to PASS maps by response code (RFC 2449, RFC 3206); the password never shows."""
    server = make_server(
        list(MESSAGES), replies={"PASS": reply.replace(b"\r\n", f" {PASSWORD}\r\n".encode())}
    )
    maildrop = make_maildrop(server)
    with pytest.raises(error) as info:
        await maildrop.open()
    assert type(info.value) is error
    assert ACCOUNT in str(info.value)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value.__dict__)
    assert PASSWORD not in rendered_with_locals(info.value)
    await maildrop.abort()


async def test_hangup_at_pass(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A server closing the connection at PASS gives ConnectError, and no traceback shows the password."""
    server = make_server(list(MESSAGES), replies={"PASS": b""}, hangup={"PASS"})
    maildrop = make_maildrop(server)
    with pytest.raises(ConnectError, match="closed the connection") as info:
        await maildrop.open()
    assert PASSWORD not in rendered_with_locals(info.value)


def rendered_with_locals(exc: BaseException) -> str:
    """The exception's traceback below the test's own frame (whose locals hold the scripted server's
    command log), with every frame's locals and the chain, as stdlib and structlog would render it."""
    assert exc.__traceback__ is not None
    below_test = exc.__traceback__.tb_next
    stdlib = "".join(traceback.TracebackException(type(exc), exc, below_test, capture_locals=True).format())
    trace = structlog.tracebacks.extract(type(exc), exc, below_test, show_locals=True)
    return stdlib + repr(trace)


async def test_user_refused(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """-ERR to USER is an AuthError and PASS is not sent."""
    server = make_server(
        list(MESSAGES), replies={"USER": b"-ERR [AUTH] Plaintext authentication disallowed\r\n"}
    )
    maildrop = make_maildrop(server)
    with pytest.raises(AuthError):
        await maildrop.open()
    assert not any(c.startswith("PASS") for c in server.commands)


async def test_line_break_in_password_not_sent(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """A password with CR or LF is refused locally: it would inject a command."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server, pw="x\r\nDELE 1")
    with pytest.raises(AuthError, match="line break") as info:
        await maildrop.open()
    assert "DELE" not in str(info.value)
    assert server.commands == []


@pytest.mark.parametrize(
    ("greeting", "error"),
    [
        (b"-ERR [SYS/TEMP] too many connections\r\n", ThrottledError),
        (b"-ERR [IN-USE] busy\r\n", ThrottledError),
        (b"-ERR go away\r\n", TransientError),
        (b"* OK IMAP4rev1 ready\r\n", ProtocolError),
    ],
)
async def test_greeting_refusals(
    make_server: type[FakePOP3],
    make_maildrop: MakeMaildrop,
    greeting: bytes,
    error: type[Exception],
) -> None:
    """A refusing or foreign greeting maps to throttling, a transient error or a ProtocolError."""
    server = make_server(list(MESSAGES), greeting=greeting)
    maildrop = make_maildrop(server)
    with pytest.raises(error) as info:
        await maildrop.open()
    assert type(info.value) is error
    assert ACCOUNT in str(info.value)


async def test_starttls_not_offered_refuses_plaintext_login(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """With tls='starttls' and no STLS offered, open() fails before USER/PASS are sent."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server, tls="starttls")
    with pytest.raises(ProtocolError, match="refusing to log in without TLS"):
        await maildrop.open()
    assert server.commands == ["CAPA"]


async def test_starttls_refused_refuses_plaintext_login(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """With STLS offered but answered -ERR, open() fails before USER/PASS are sent."""
    server = make_server(list(MESSAGES), caps=("USER", "UIDL", "STLS"))
    maildrop = make_maildrop(server, tls="starttls")
    with pytest.raises(ProtocolError, match="refusing to log in without TLS"):
        await maildrop.open()
    assert server.commands == ["CAPA", "STLS"]


async def test_implicit_tls_against_plaintext_server(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """A TLS handshake with a server that does not speak TLS is a ConnectError (or a timeout)."""
    server = make_server(list(MESSAGES))
    maildrop = make_maildrop(server, tls="implicit", timeout_s=2)
    with pytest.raises((ConnectError, NetworkTimeout)):
        await maildrop.open()


async def test_closed_port(executor: concurrent.futures.ThreadPoolExecutor) -> None:
    """A port nobody listens on gives ConnectError naming the account."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServerSettings(ACCOUNT, "127.0.0.1", port, "none", None, "anna", Secret(PASSWORD), 5.0)
    maildrop = POP3Maildrop(settings, executor)
    with pytest.raises(ConnectError, match=ACCOUNT):
        await maildrop.open()
    await maildrop.abort()


# -- broken sessions -----------------------------------------------------------------------------------


async def test_timeout_mid_retr(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A server silent after RETR causes NetworkTimeout; abort then only closes, nothing is deleted."""
    server = make_server(list(MESSAGES), stall={"RETR 2"})
    maildrop = make_maildrop(server, timeout_s=0.5, window=1)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    await maildrop.delete(keys[3:])
    results = maildrop.retrieve(keys[:3])
    assert isinstance(await anext(results), RetrievedMessage)
    with pytest.raises(NetworkTimeout, match=ACCOUNT):
        await anext(results)
    await maildrop.abort()
    assert "QUIT" not in server.commands
    assert server.applied == []
    with pytest.raises(RuntimeError, match="closed"):
        await maildrop.inventory()


@pytest.mark.parametrize("stalled_command", ["RETR 3", "DELE 1"])
async def test_cancel_frees_the_thread_promptly(
    make_server: type[FakePOP3],
    make_maildrop: MakeMaildrop,
    executor: concurrent.futures.ThreadPoolExecutor,
    stalled_command: str,
) -> None:
    """Cancelling a task blocked mid-RETR or mid-DELE returns at once and frees the worker thread.

    Steps: the server goes silent after the command; the task is cancelled; the one-thread pool runs a
    new job within a second (the blocked read returned); abort closes without QUIT: nothing deleted.
    """
    server = make_server(list(MESSAGES), stall={stalled_command})
    maildrop = make_maildrop(server, timeout_s=30)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]

    async def work() -> None:
        if stalled_command.startswith("DELE"):
            await maildrop.delete(keys)
        else:
            await collect(maildrop, keys)

    task = asyncio.create_task(work())
    assert await asyncio.to_thread(server.stalled.wait, 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(executor, lambda: None), 1.0)
    await maildrop.abort()
    assert time.monotonic() - started < 2.0
    assert "QUIT" not in server.commands
    assert server.applied == []


async def test_hangup_mid_reply(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A server that closes the connection in the middle of a message gives ConnectError.

    (With the next window's RETR already sent, the server's close may arrive as a reset.)"""
    server = make_server(list(MESSAGES), replies={"RETR 1": b"+OK\r\nSubject: one\r\n"}, hangup={"RETR 1"})
    maildrop = make_maildrop(server, window=1)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    with pytest.raises(ConnectError, match=r"closed the connection|connection lost while retrieving"):
        await collect(maildrop, keys)
    await maildrop.abort()


async def test_reply_over_cap(make_server: type[FakePOP3], make_maildrop: MakeMaildrop) -> None:
    """A message larger than max_reply_octets fails the session with ProtocolError naming the account."""
    server = make_server([b"z" * 5000 + b"\r\n"])
    maildrop = make_maildrop(server, max_reply_octets=4096)
    await maildrop.open()
    keys = [e.key for e in await maildrop.inventory()]
    with pytest.raises(ProtocolError, match="cap") as info:
        await collect(maildrop, keys)
    assert info.value.account == ACCOUNT
    await maildrop.abort()


async def test_unsolicited_data_is_out_of_step(
    make_server: type[FakePOP3], make_maildrop: MakeMaildrop
) -> None:
    """Data after the last expected reply means the stream is out of step: ProtocolError."""
    server = make_server(list(MESSAGES), replies={"NOOP": b"+OK\r\n"}, caps=("USER", "UIDL"))
    server.replies["LIST"] = b"+OK\r\n1 1\r\n2 2\r\n3 3\r\n4 4\r\n.\r\n+OK surprise\r\n"
    maildrop = make_maildrop(server)
    await maildrop.open()
    with pytest.raises(ProtocolError, match="unexpected data"):
        await maildrop.inventory()
    await maildrop.abort()


@pytest.mark.parametrize("buffered", [b"+OK extra\r\n", b""])
def test_taking_over_from_poplib_keeps_its_buffered_octets_and_does_not_wait(buffered: bytes) -> None:
    """Once logged in, the session reads the socket itself: octets poplib's file had buffered past its
    last line come first, an empty file is taken over without waiting on the socket (timeout None:
    a wait would hang the test), the timeout is restored, and later replies arrive through recv_into."""
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.settimeout(None)
        file = client_side.makefile("rb")
        server_side.sendall(b"+OK logged in\r\n" + buffered)
        assert file.readline() == b"+OK logged in\r\n"  # poplib's read; the rest stays in its buffer
        settings = ServerSettings(ACCOUNT, "127.0.0.1", 1, "none", None, "anna", Secret(PASSWORD), 5.0)
        session = POP3Session(settings, max_reply_octets=1000)
        pop = SimpleNamespace(sock=client_side, file=file)
        session.pop = pop  # type: ignore[assignment]
        session._take_over(pop)  # type: ignore[arg-type]
        assert client_side.gettimeout() is None
        assert session.decoder.buffered_octets == len(buffered)
        if buffered:
            session._ahead.append(False)
            assert session.receive(1, multiline=False)[0].status.text == "extra"
        server_side.sendall(b"+OK more\r\n")
        session._ahead.append(False)
        assert session.receive(1, multiline=False)[0].status.text == "more"
        file.close()


def _taken_over_session(sock: socket.socket, file: Any) -> POP3Session:
    """A logged-in-looking POP3Session reading ``sock`` (one end of a socket pair) after its take-over."""
    settings = ServerSettings(ACCOUNT, "127.0.0.1", 1, "none", None, "anna", Secret(PASSWORD), 5.0)
    session = POP3Session(settings, max_reply_octets=2**20)
    pop = SimpleNamespace(sock=sock, file=file)
    session.pop = pop  # type: ignore[assignment]
    session._take_over(pop)  # type: ignore[arg-type]
    return session

def test_a_short_reply_is_read_into_a_small_buffer_and_a_long_one_into_a_large_one() -> None:
    """After the take-over a short listing is read with a 16 KiB buffer (50 sessions listing at once
    hold 16 KiB each, not 256 KiB); a reply that fills it is read on with READ_CHUNK_OCTETS reads and
    arrives octet-exact."""
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.settimeout(5.0)
        file = client_side.makefile("rb")
        session = _taken_over_session(client_side, file)
        server_side.sendall(b"+OK\r\n1 100\r\n2 200\r\n.\r\n")
        session._ahead.append(True)
        tracemalloc.start()
        try:
            listing = session.receive(1, multiline=True)[0]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert listing.body == b"1 100\r\n2 200\r\n"
        assert peak < 64 * 1024
        body = b"y" * 998 + b"\r\n"
        sender = threading.Thread(target=server_side.sendall, args=(b"+OK\r\n" + body * 600 + b".\r\n",))
        sender.start()
        session._ahead.append(True)
        assert session.receive(1, multiline=True)[0].body == body * 600
        sender.join()
        file.close()


def test_a_receive_borrows_the_pools_buffer_and_gives_it_back_keeping_the_next_replys_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each receive reads into a buffer borrowed from the pool (dirty with another session's
    octets: terminators included) and gives it back at its end; the start of a pipelined reply that
    arrived with the first stays with the session, and both messages arrive octet-exact."""
    pool = pop3_buffers.BufferPool(1, 2**21)
    dirt = bytearray((b"\r\n.\r\n+OK old\r\n..x\r\n" * 20_000)[: 300 * 1024])
    pool.give(dirt)
    monkeypatch.setattr(pop3_session, "RECEIVE_BUFFERS", pool)
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.settimeout(5.0)
        file = client_side.makefile("rb")
        session = _taken_over_session(client_side, file)
        first, second = b"first\r\n..dotted\r\n" * 10, b"second\r\n" * 10
        wire_first = b"+OK\r\n" + first.replace(b"\r\n.", b"\r\n..") + b".\r\n"
        server_side.sendall(wire_first + b"+OK\r\nsec")
        session._ahead.extend([True, True])
        assert session.receive(1, multiline=True)[0].body == first
        assert pool.take() is dirt  # given back
        pool.give(dirt)
        assert session.decoder.buffered_octets == len(b"+OK\r\nsec")
        assert session.decoder.buffer_octets == len(b"+OK\r\nsec")  # not the pool's buffer
        server_side.sendall(b"ond\r\n" + second[len(b"second\r\n") :] + b".\r\n")
        assert session.receive(1, multiline=True)[0].body == second
        assert pool.take() is dirt
        file.close()
