"""The control socket's client slots under abuse (QA of session 15): many connections, clients that
stay connected after a reply, clients dropped to make room, and what the event loop logs meanwhile.

The server and the raw client are those of ``tests/unit/test_control.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from maild.service import control
from maild.service.control import ControlServer
from tests.unit.test_control import Client, Handler, sock_dir, status_from_new_client

__all__ = ["sock_dir"]  # the fixture, shared with test_control


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler (asyncio logs each at error level, with a
    traceback: in the journal, ``<3>`` lines an admin is paged for)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


@pytest.fixture
async def served(sock_dir: Path) -> AsyncIterator[ControlServer]:
    """A started control server with the echoing :class:`Handler`."""
    srv = ControlServer(sock_dir / "control.sock", Handler())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def settle() -> None:
    """Let the callbacks of tasks that just ended run (done callbacks are scheduled, not called)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_dropping_silent_clients_to_make_room_logs_nothing_at_error_level(
    served: ControlServer, loop_errors: list[dict[str, Any]]
) -> None:
    """Silent connections dropped to make room for a real client end quietly: before, each one's
    cancelled task reached the loop's exception handler ("Exception in callback ... CancelledError",
    an error-level traceback per dropped connection)."""
    silent = [await Client.connect(served.path) for _ in range(control.MAX_CLIENTS + 3)]
    try:
        assert (await status_from_new_client(served))["ok"] is True
        assert await silent[0].read_until_closed() == b""
        await settle()
        assert loop_errors == []
    finally:
        for c in silent:
            await c.close()


async def test_closing_the_server_with_clients_connected_logs_nothing_at_error_level(
    sock_dir: Path, loop_errors: list[dict[str, Any]]
) -> None:
    """A daemon's stop drops its connected clients without error-level tracebacks."""
    srv = ControlServer(sock_dir / "control.sock", Handler())
    await srv.start()
    clients = [await Client.connect(srv.path) for _ in range(3)]
    await clients[0].ask(b'{"command": "status"}\n')
    await settle()
    await srv.close()
    for c in clients:
        assert await c.read_until_closed() == b""
        await c.close()
    await settle()
    assert loop_errors == []


async def test_clients_idle_after_a_reply_never_lock_out_a_new_one(served: ControlServer) -> None:
    """Every slot held by a client that got its reply and stays connected (or trickles its next request
    one octet at a time): a new client is still served, and the one idle longest is dropped. Before,
    such clients held their slots for IDLE_TIMEOUT_S each and a new client got "busy"."""
    idle = [await Client.connect(served.path) for _ in range(control.MAX_CLIENTS)]
    try:
        for c in idle:
            assert (await c.ask(b'{"command": "status"}\n'))["ok"] is True
        await idle[-1].send(b'{"comm')  # the next request, trickled
        reply = await status_from_new_client(served)
        assert reply["ok"] is True, reply
        assert await idle[0].read_until_closed() == b""
    finally:
        for c in idle:
            await c.close()


async def test_long_requests_leave_the_slots_kept_for_status(sock_dir: Path) -> None:
    """64 clients each waiting on a long request (``fetch-now`` of a slow server): 60 are handled
    and never dropped, the 4 beyond get one ``busy`` line each, a new ``status`` is still answered and
    a new ``fetch-now`` is ``busy``; released, the 60 get their replies. Before session 15's fix
    every slot was held and a new ``maild status`` got ``busy`` (QA of session 15, left item)."""
    release = asyncio.Event()
    handling: list[str] = []
    enough = asyncio.Event()
    long_slots = control.MAX_CLIENTS - control.QUICK_SLOTS

    async def slow(req: dict[str, Any]) -> dict[str, Any]:
        if req["command"] in control.QUICK_COMMANDS:
            return {"quick": req["command"]}
        handling.append(req["command"])
        if len(handling) >= long_slots:
            enough.set()
        await release.wait()
        return {}

    srv = ControlServer(sock_dir / "control.sock", slow)
    await srv.start()
    waiting = [await Client.connect(srv.path) for _ in range(control.MAX_CLIENTS)]
    try:
        for c in waiting:
            await c.send(b'{"command": "fetch-now"}\n')
        first_lines = {asyncio.ensure_future(c.reader.readline()): c for c in waiting}
        answered: set[asyncio.Future[bytes]] = set()
        async with asyncio.timeout(10):
            await enough.wait()
            while len(answered) < control.QUICK_SLOTS:
                done, _ = await asyncio.wait(set(first_lines) - answered, return_when=asyncio.FIRST_COMPLETED)
                answered |= done
        assert len(handling) == long_slots
        for line in answered:
            assert b'"busy"' in line.result() and b"status still answers" in line.result()
        for command in control.QUICK_COMMANDS:
            fresh = await Client.connect(srv.path)
            reply = await fresh.ask(b'{"command": "%s"}\n' % command.encode())
            await fresh.close()
            assert reply == {"ok": True, "quick": command}
        fresh = await Client.connect(srv.path)
        reply = await fresh.ask(b'{"command": "fetch-now"}\n')
        await fresh.close()
        assert reply["ok"] is False and reply["error"]["code"] == "busy"
        release.set()
        async with asyncio.timeout(5):
            for line in set(first_lines) - answered:
                assert (await line).startswith(b'{"ok":true')
        assert len(handling) == long_slots
    finally:
        release.set()
        for c in waiting:
            await c.close()
        await srv.close()
