"""Property tests (Hypothesis) of the control socket with the daemon's real command table (QA of
session 15): whatever one line a client sends, it gets exactly one reply line, a JSON object with a
boolean ``ok``; an error has one of the documented codes (never ``internal``: no handler raises on a
request of the wrong shape); and the server goes on serving.

The daemon behind the table is the fake of ``tests/unit/test_commands.py`` (its scheduler and archive).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from maild.service.commands import COMMANDS, dispatch
from maild.service.control import ControlServer
from tests.unit.test_commands import Daemon

#: The error codes a request of the wrong shape may get (docs/control-socket.md).
CLIENT_ERRORS = frozenset(
    {"bad-json", "bad-request", "bad-version", "unknown-command", "unknown-account", "too-large"}
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
requests = st.fixed_dictionaries(
    {"command": st.sampled_from([*COMMANDS, "nope", ""])},
    optional={
        "account": st.sampled_from(["anna-pop", "all", "nosuch", ""]) | json_values,
        "wait": json_values,
        "retry_failed": json_values,
        "version": st.sampled_from([1, 2, True]) | json_values,
        "extra": json_values,
    },
)


def exchange(lines: list[bytes]) -> list[bytes]:
    """Send each of ``lines`` on one connection to a server with the real command table, then a status
    request on a new connection; return every reply line, the status one last."""
    directory = Path(tempfile.mkdtemp(prefix="mdf", dir="/tmp"))
    daemon = Daemon()

    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("command") == "stop":
            return {}  # the fake's stop only records; keep the server up for the status below
        return await dispatch(daemon.context(), req)

    async def run() -> list[bytes]:
        server = ControlServer(directory / "c.sock", handler)
        await server.start()
        try:
            replies = []
            reader, writer = await asyncio.open_unix_connection(str(directory / "c.sock"), limit=1 << 22)
            for line in lines:
                writer.write(line)
                async with asyncio.timeout(10):
                    replies.append(await reader.readline())
            writer.close()
            reader, writer = await asyncio.open_unix_connection(str(directory / "c.sock"), limit=1 << 22)
            writer.write(b'{"command": "status"}\n')
            async with asyncio.timeout(10):
                replies.append(await reader.readline())
            writer.close()
            return replies
        finally:
            await server.close()

    try:
        return asyncio.run(run())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def assert_one_reply_each(replies: list[bytes], sent: int) -> None:
    """One JSON object line per request with a boolean ``ok``; errors with a client error code; the
    final status served."""
    assert len(replies) == sent + 1
    for line in replies:
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        reply = json.loads(line)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
        if not reply["ok"]:
            assert reply["error"]["code"] in CLIENT_ERRORS, reply
            assert isinstance(reply["error"]["message"], str)
    assert json.loads(replies[-1])["ok"] is True


@given(st.lists(requests, min_size=1, max_size=4))
@example([{"command": "fetch-now", "account": ["anna-pop"]}])
@example([{"command": "status", "account": {"a": 1}}])
@example([{"command": "fetch-now", "wait": [], "retry_failed": 0}])
def test_any_request_object_gets_one_reply_with_a_client_error_code(reqs: list[dict[str, Any]]) -> None:
    """Requests of every command with fields of any JSON type: one reply each, never ``internal``."""
    lines = [json.dumps(r).encode() + b"\n" for r in reqs]
    assert_one_reply_each(exchange(lines), len(lines))


@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n"), min_size=1, max_size=4))
@example([b"\xff\xfe{\x00}\n"])
@example([b'{"command":"\\ud800"}\n'])
def test_any_line_of_octets_gets_one_reply(lines: list[bytes]) -> None:
    """Arbitrary octets (no line feed inside) as requests: one reply line each, the server unaffected."""
    assert_one_reply_each(exchange(lines), len(lines))
