"""The aioimaplib internals maild relies on, pinned: these tests fail when the library changes.

``maild.protocols.imap.client`` subclasses aioimaplib 2.0.3's protocol (hot-spot fixes, FETCH framing by the
lexer's rules), sends STARTTLS through it, and relies on it quoting the LOGIN password but not the user name.
There is no fallback to the stock protocol: these pins are the guard. Here:

* the installed version and the source of every method the adapter copies or relies on are checked;
* what LOGIN and STARTTLS put on the wire is captured from a fake transport;
* the patched protocol is fed the same server byte streams as the stock one, split at every byte
  boundary and at random chunk sizes, and must produce identical responses; the FETCH responses must
  parse (``imap_fetch.parse_fetch``) into the same messages whatever the split;
* the streaming FETCH hands its sink the same responses whatever the split, and they assemble
  (``imap_fetch.FetchAssembler``) into exactly what ``parse_fetch`` makes of the stock response.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import itertools
import random
from collections.abc import Callable, Coroutine
from typing import Any

import aioimaplib
import pytest

from maild.protocols.imap import client as imap_module
from maild.protocols.imap import fetch as imap_fetch
from maild.protocols.imap import library, wire
from maild.protocols.imap import listing as imap_list

# sha256 (first 16 hex digits) of inspect.getsource() in aioimaplib 2.0.3.
PINNED_SOURCES = {
    "IMAP4ClientProtocol.data_received": "f4e4f02478babbeb",
    "IMAP4ClientProtocol._handle_responses": "b85f6640b4ca5fe6",
    "IMAP4ClientProtocol._handle_line": "3e3c734ed4244c4f",
    "IMAP4ClientProtocol.fetch": "9e9d4d32f2081859",
    "IMAP4ClientProtocol.welcome": "84f3266a6516457b",
    "IMAP4ClientProtocol.login": "38ac2846dd27842c",
    "IMAP4ClientProtocol.execute": "aa73299f4fb0f852",
    "IMAP4ClientProtocol.connection_lost": "4876e95ec7f3e664",
    "FetchCommand.wait_data": "17ec7328fd9b7bba",
    "Command.append_literal_data": "0a8587d8f8219e9c",
    "Command.begin_literal_data": "c03a82f40c57392d",
    "Command.append_to_resp": "43f8b5a526fa16b0",
    "IMAP4.create_client": "4c6284d94662f228",
    # streaming FETCH: lines reach the command via _untagged_response / _handle_line, the completion
    # via _response_done -> Command.close -> append_to_resp(line, result); completed reads _event
    "Command.close": "768d47d8c7fc7786",
    "Command.wait": "05767d06fff6ee80",
    "Command.__init__": "ccb7fdf53ea34751",
    "FetchCommand.__init__": "282d23f5bf7ac0c9",
    "IMAP4ClientProtocol._untagged_response": "293b7da830751ce5",
    "IMAP4ClientProtocol._response_done": "69c9091728111730",
    # AUTHENTICATE (client.Authentication): a "+" line during a pending sync command other than
    # APPEND/IDLE reaches Command.append_to_resp through _continuation
    "IMAP4ClientProtocol._continuation": "e43f5b7ad7314a53",
    # pipelines (client.IMAPClient.pipeline): registered as the pending sync command, so that
    # _untagged_response routes every untagged line to it; our _response_done override takes each
    # tagged completion; the wait for pending commands before sending
    "IMAP4ClientProtocol.wait_async_pending_commands": "40d63b0031f44980",
}


def test_installed_aioimaplib_is_the_patched_version() -> None:
    """The client is written for exactly 2.0.3 (no fallback); on any other version re-verify it, then update."""
    assert importlib.metadata.version("aioimaplib") == imap_module.PATCHED_AIOIMAPLIB == "2.0.3"
    assert library.installed_aioimaplib() == library.AIOIMAPLIB_VERSION == imap_module.PATCHED_AIOIMAPLIB


@pytest.mark.parametrize(("name", "digest"), sorted(PINNED_SOURCES.items()))
def test_library_source_is_unchanged(name: str, digest: str) -> None:
    """Every library method the adapter copies, overrides or depends on still has the pinned source."""
    owner, attribute = name.split(".")
    source = inspect.getsource(getattr(getattr(aioimaplib, owner), attribute))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, f"aioimaplib changed {name}: re-verify"


def test_library_constants_and_command_table() -> None:
    """The literal pattern, CRLF and the STARTTLS entry the adapter uses are as pinned."""
    assert aioimaplib.literal_data_re.pattern == rb".*\{(?P<size>\d+)\}$"
    assert aioimaplib.CRLF == b"\r\n"
    assert aioimaplib.Commands["STARTTLS"].valid_states == ("NONAUTH",)
    assert aioimaplib.Commands["STARTTLS"].exec == aioimaplib.Exec.is_sync


class FakeTransport:
    """Records what the protocol writes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


Start = Callable[[Any], Coroutine[Any, Any, Any]]


async def run_command(
    protocol_class: type[Any], start: Start, server: bytes, cuts: list[int], state: str = "SELECTED"
) -> tuple[Any, bytes]:
    """Start a command on a fresh protocol, feed ``server`` (``TAG`` replaced) cut at ``cuts``.

    Returns:
        The library's Response and what the protocol wrote.
    """
    loop = asyncio.get_running_loop()
    protocol = protocol_class(loop, None)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.state = state
    task = asyncio.ensure_future(start(protocol))
    for _ in range(3):
        await asyncio.sleep(0)
    tag = bytes(transport.written.split(b" ", 1)[0])
    data = server.replace(b"TAG", tag)
    edges = [0, *cuts, len(data)]
    for low, high in itertools.pairwise(edges):
        feed(protocol, data[low:high])
    response = await asyncio.wait_for(task, 2)
    return response, bytes(transport.written)


def feed(protocol: Any, data: bytes) -> None:
    """Hand ``data`` to ``protocol`` as asyncio's transports do: a buffered protocol (the patched one)
    through ``get_buffer``/``buffer_updated``, as many reads as its buffers need; else ``data_received``."""
    if not isinstance(protocol, asyncio.BufferedProtocol):
        protocol.data_received(data)
        return
    rest = memoryview(data)
    while rest:
        buffer = protocol.get_buffer(-1)
        octets = min(len(buffer), len(rest))
        buffer[:octets] = rest[:octets]
        protocol.buffer_updated(octets)
        rest = rest[octets:]


def shape(response: Any) -> tuple[str, list[tuple[str, bytes]]]:
    """A comparable form of a Response: result and (type, octets) of each line."""
    return response.result, [(type(line).__name__, bytes(line)) for line in response.lines]


async def test_login_quotes_only_the_password() -> None:
    """aioimaplib quotes the password itself and sends the user name raw: the adapter quotes the user only."""
    user = wire.quote_astring('an na"x')
    response, written = await run_command(
        imap_module._FastProtocol,
        lambda p: p.login(user, 'p w"\\d'),
        b"TAG OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n",
        [],
        state="NONAUTH",
    )
    assert written.split(b" ", 1)[1] == b'LOGIN "an na\\"x" "p w\\"\\\\d"\r\n'
    assert response.result == "OK"


async def test_starttls_command_goes_through_the_protocol() -> None:
    """starttls sends STARTTLS via execute() and returns a NO without touching the transport."""
    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.state = "NONAUTH"
    task = asyncio.ensure_future(imap_module.starttls(protocol, None, "localhost", 1.0))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    tag, command = bytes(transport.written).split(b" ", 1)
    assert command == b"STARTTLS\r\n"
    protocol.data_received(tag + b" NO [UNAVAILABLE] later\r\n")
    response = await asyncio.wait_for(task, 1)
    assert response.result == "NO"
    assert protocol.transport is transport
    assert protocol.incomplete_line == b""


BODY_A = b'Subject: Re: :)\r\nX: "unbalanced (\r\n\r\nbody ) text {7}\r\n'
BODY_B = b"Short\r\n"
FETCH_STREAM = (
    b"* 1 FETCH (UID 11 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(BODY_A)
    + BODY_A
    + b")\r\n* 4 EXISTS\r\n"
    + b"* 2 FETCH (BODY[] {%d}\r\n" % len(BODY_B)
    + BODY_B
    + b' FLAGS () INTERNALDATE " 7-Jul-2026 10:00:00 +0200" UID 12)\r\n'
    + b"* 3 FETCH (UID 13 BODY[] {0}\r\n)\r\n"
    + b"* 3 FETCH (FLAGS (\\Answered))\r\n"
    + b"TAG OK Fetch completed (0.001 + 0.000 secs).\r\n"
)
EXPECTED_BODIES = {11: BODY_A, 12: BODY_B, 13: b""}


def fetch(protocol: Any) -> Coroutine[Any, Any, Any]:
    """UID FETCH as the adapter sends it (no library timer)."""
    coroutine: Coroutine[Any, Any, Any] = protocol.fetch(
        "11:13", "(UID FLAGS INTERNALDATE BODY.PEEK[])", by_uid=True, timeout=None
    )
    return coroutine


STREAMS: dict[str, tuple[Start, bytes]] = {
    "fetch": (fetch, FETCH_STREAM),
    "select": (
        lambda p: p.select('"Entw&APw-rfe 2026"'),
        b"* FLAGS (\\Answered \\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
        b"* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 4] next\r\nTAG OK [READ-WRITE] Select completed\r\n",
    ),
    "search": (
        lambda p: p.search("ALL", charset=None, by_uid=True),
        b"* SEARCH 1 2 3 17 4294967295\r\nTAG OK Search completed\r\n",
    ),
    "list": (
        lambda p: p.simple_command("LIST", '""', '"*"'),
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n* LIST (\\HasNoChildren \\Drafts) "/" {17}\r\nEntw&APw-rfe 2026\r\n'
        b'* LIST (\\Sent) "/" "Sent \\"x\\""\r\nTAG OK List completed\r\n',
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_fast_protocol_equals_stock_at_every_split(name: str) -> None:
    """Cut anywhere once, the patched protocol hands back exactly what the stock one does."""
    start, stream = STREAMS[name]
    whole, _ = await run_command(aioimaplib.IMAP4ClientProtocol, start, stream, [])
    for cut in range(1, len(stream.replace(b"TAG", b"XXXX0"))):
        stock, _ = await run_command(aioimaplib.IMAP4ClientProtocol, start, stream, [cut])
        fast, _ = await run_command(imap_module._FastProtocol, start, stream, [cut])
        assert shape(fast) == shape(stock), f"cut at {cut}"
    assert shape(whole)[0] == "OK"


async def test_fast_protocol_equals_stock_at_random_chunkings() -> None:
    """Many random chunkings (1 to 40 octets per read) of the FETCH stream give identical responses."""
    rnd = random.Random(20260101)
    length = len(FETCH_STREAM.replace(b"TAG", b"XXXX0"))
    for _ in range(200):
        cuts = sorted(rnd.sample(range(1, length), rnd.randint(2, 40)))
        stock, _ = await run_command(aioimaplib.IMAP4ClientProtocol, fetch, FETCH_STREAM, cuts)
        fast, _ = await run_command(imap_module._FastProtocol, fetch, FETCH_STREAM, cuts)
        assert shape(fast) == shape(stock), f"cuts {cuts}"


@pytest.mark.parametrize("protocol_class", [aioimaplib.IMAP4ClientProtocol, imap_module._FastProtocol])
async def test_fetch_parses_the_same_at_every_split(protocol_class: type[Any]) -> None:
    """Whatever line shapes aioimaplib makes of a split stream, parse_fetch finds the same messages."""
    length = len(FETCH_STREAM.replace(b"TAG", b"XXXX0"))
    for cut in [None, *range(1, length)]:
        response, _ = await run_command(protocol_class, fetch, FETCH_STREAM, [] if cut is None else [cut])
        status = wire.parse_completion(response.result, response.lines[-1])
        result = imap_fetch.parse_fetch(
            response.lines[:-1], requested=[11, 12, 13], require=("BODY[]", "FLAGS")
        )
        assert status.ok
        assert {uid: m.body for uid, m in result.messages.items()} == EXPECTED_BODIES, f"cut at {cut}"
        assert result.messages[13].flags == frozenset({"\\Answered"}), f"cut at {cut}"
        assert result.messages[12].internaldate is not None
        assert result.failures == {}
        assert result.malformed == ()


async def test_parsers_read_library_shapes_of_select_search_and_list() -> None:
    """SELECT, SEARCH and LIST responses as the library frames them parse into the expected values."""
    select, _ = await run_command(imap_module._FastProtocol, *STREAMS["select"], [])
    info = wire.parse_select(select.lines[:-1], wire.parse_completion(select.result, select.lines[-1]))
    assert (info.exists, info.uidvalidity, info.uidnext, info.read_only) == (3, 42, 4, False)
    search, _ = await run_command(imap_module._FastProtocol, *STREAMS["search"], [])
    assert wire.parse_search(search.lines[:-1]) == [1, 2, 3, 17, 4294967295]
    listed, _ = await run_command(imap_module._FastProtocol, *STREAMS["list"], [])
    names = [(m.name, sorted(m.attributes)) for m in imap_list.parse_list(listed.lines[:-1])]
    assert names == [
        ("INBOX", ["\\HasNoChildren"]),
        ("Entwürfe 2026", ["\\Drafts", "\\HasNoChildren"]),
        ('Sent "x"', ["\\Sent"]),
    ]


async def test_fast_protocol_handles_a_long_single_read_without_recursion() -> None:
    """5,000 response lines in one read: the stock protocol's recursion would exceed Python's limit."""
    lines = b"".join(b"* %d FETCH (UID %d FLAGS ())\r\n" % (n, n) for n in range(1, 5001))
    response, _ = await run_command(
        imap_module._FastProtocol,
        lambda p: p.fetch("1:5000", "(FLAGS)", by_uid=True, timeout=None),
        lines + b"TAG OK done\r\n",
        [],
    )
    result = imap_fetch.parse_fetch(response.lines[:-1], require=("FLAGS",))
    assert len(result.messages) == 5000


async def run_streaming(
    cuts: list[int], stream: bytes = FETCH_STREAM
) -> tuple[Any, list[list[tuple[str, bytes]]]]:
    """Run a StreamingFetch of UIDs 11:13 on the patched protocol fed ``stream`` cut at ``cuts``.

    Returns:
        The library's Response and the sink's calls, each as (type, octets) per part.
    """
    handed: list[list[tuple[str, bytes]]] = []

    def sink(parts: list[Any]) -> None:
        handed.append([(type(part).__name__, bytes(part)) for part in parts])

    def start(protocol: Any) -> Coroutine[Any, Any, Any]:
        fetch_ = imap_module.StreamingFetch(protocol, "11:13", "(UID FLAGS INTERNALDATE BODY.PEEK[])", sink)
        coroutine: Coroutine[Any, Any, Any] = fetch_.run()
        return coroutine

    response, written = await run_command(imap_module._FastProtocol, start, stream, cuts)
    assert written.split(b" ", 1)[1] == b"UID FETCH 11:13 (UID FLAGS INTERNALDATE BODY.PEEK[])\r\n"
    return response, handed


def assembled(handed: list[list[tuple[str, bytes]]]) -> dict[int, imap_fetch.Outcome]:
    """What FetchAssembler makes of the sink's calls, by UID."""
    assembler = imap_fetch.FetchAssembler([11, 12, 13], ("BODY[]", "FLAGS"))
    outcomes: dict[int, imap_fetch.Outcome] = {}
    for call in handed:
        parts = [bytearray(octets) if kind == "bytearray" else octets for kind, octets in call]
        assembler.feed(parts)
        while (outcome := assembler.next_outcome()) is not None:
            outcomes[outcome[0]] = outcome[1]
    assembler.finish()
    while (outcome := assembler.next_outcome()) is not None:
        outcomes[outcome[0]] = outcome[1]
    return outcomes


async def test_streaming_fetch_hands_over_each_response_the_same_at_every_split() -> None:
    """Cut anywhere once, the streaming FETCH hands its sink the same responses, one FETCH each, keeps
    only the completion, and they assemble into what parse_fetch makes of the stock response."""
    stock, _ = await run_command(aioimaplib.IMAP4ClientProtocol, fetch, FETCH_STREAM, [])
    expected = imap_fetch.parse_fetch(stock.lines[:-1], requested=[11, 12, 13], require=("BODY[]", "FLAGS"))
    whole_response, whole = await run_streaming([])
    assert shape(whole_response) == ("OK", [("bytes", b"Fetch completed (0.001 + 0.000 secs).")])
    assert [call[0][1].split(b" (")[0] for call in whole] == [b"1 FETCH", b"2 FETCH", b"3 FETCH", b"3 FETCH"]
    assert assembled(whole) == expected.messages
    for cut in range(1, len(FETCH_STREAM.replace(b"TAG", b"XXXX0"))):
        response, handed = await run_streaming([cut])
        assert shape(response) == shape(whole_response), f"cut at {cut}"
        assert handed == whole, f"cut at {cut}"


async def test_streaming_fetch_is_split_independent_at_random_chunkings() -> None:
    """Many random chunkings (1 to 40 octets per read) give the same sink calls as one read."""
    rnd = random.Random(20261130)
    length = len(FETCH_STREAM.replace(b"TAG", b"XXXX0"))
    _, whole = await run_streaming([])
    for _ in range(200):
        cuts = sorted(rnd.sample(range(1, length), rnd.randint(2, 40)))
        _, handed = await run_streaming(cuts)
        assert handed == whole, f"cuts {cuts}"


async def test_streaming_fetch_hands_over_a_response_before_the_completion() -> None:
    """A complete response reaches the sink as soon as its closing parenthesis is read."""
    loop = asyncio.get_running_loop()
    protocol = imap_module._FastProtocol(loop, None)
    protocol.connection_made(FakeTransport())
    protocol.state = "SELECTED"
    handed: list[list[Any]] = []
    streaming = imap_module.StreamingFetch(protocol, "11:13", "(UID BODY.PEEK[])", handed.append)
    task = asyncio.ensure_future(streaming.run())
    for _ in range(3):
        await asyncio.sleep(0)
    protocol.data_received(b"* 1 FETCH (UID 11 BODY[] {5}\r\nHallo")
    assert handed == []
    protocol.data_received(b")\r\n")
    assert [bytes(part) for part in handed[0]] == [b"1 FETCH (UID 11 BODY[] {5}", b"Hallo", b")"]
    assert not streaming.completed
    tag = protocol.tagpre + "0"
    protocol.data_received(tag.encode() + b" OK done\r\n")
    assert streaming.completed
    response = await asyncio.wait_for(task, 1)
    assert response.result == "OK"
    assert len(handed) == 1


def test_streaming_fetch_refuses_the_stock_protocol() -> None:
    """StreamingFetch needs the patched protocol."""
    loop = asyncio.new_event_loop()
    try:
        stock = aioimaplib.IMAP4ClientProtocol(loop, None)
        with pytest.raises(TypeError):
            imap_module.StreamingFetch(stock, "1", "(UID)", lambda parts: None)
    finally:
        loop.close()


QUOTED_PAREN_STREAM = (
    b'* 1 FETCH (UID 11 X-SUBJECT "Re: :)" BODY[] {5}\r\nHallo)\r\n'
    b"* 2 FETCH (UID 12 BODY[] {2}\r\nhi)\r\n"
    b"TAG OK done\r\n"
)


async def test_streaming_fetch_frames_quoted_parentheses_by_the_lexer_rules() -> None:
    """A ``)`` inside a quoted string does not end a response early: at every split the sink gets the
    two responses whole, as the lexer (and so the assembler) reads them."""
    expected = [
        [
            ("bytes", b'1 FETCH (UID 11 X-SUBJECT "Re: :)" BODY[] {5}'),
            ("bytearray", b"Hallo"),
            ("bytes", b")"),
        ],
        [("bytes", b"2 FETCH (UID 12 BODY[] {2}"), ("bytearray", b"hi"), ("bytes", b")")],
    ]
    for cut in [None, *range(1, len(QUOTED_PAREN_STREAM.replace(b"TAG", b"XXXX0")))]:
        response, handed = await run_streaming([] if cut is None else [cut], QUOTED_PAREN_STREAM)
        assert response.result == "OK", f"cut at {cut}"
        assert handed == expected, f"cut at {cut}"
