"""Metrics read with Prometheus' own text parser (prometheus_client): 0/1 state and mode series that
never vanish, failures by class, fetch lag; and the ``metrics_listen`` HTTP endpoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maild.config.loader import listen_address
from maild.errors import ConfigError, ControlError
from maild.service.account_runtime import AccountRuntime
from maild.service.metrics import FAILURE_CLASSES, MODES, STATES, render
from maild.service.metrics_http import MAX_CONNECTIONS, MAX_REQUEST_OCTETS, MetricsServer
from tests.support.accounts import pop3_account

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family name to (labels, value) of each sample, parsed by prometheus_client."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def office() -> list[AccountRuntime]:
    """A healthy account, one locked out after auth failures, one failing on the network, one new."""
    ok = AccountRuntime(pop3_account("ok"))
    ok.last_success = NOW - timedelta(minutes=5)
    ok.cycles = {"ok": 7}
    locked = AccountRuntime(pop3_account("locked"))
    locked.state = "auth_failed"
    locked.cycles = {"ok": 1, "auth": 3}
    locked.last_success = NOW - timedelta(hours=2)
    down = AccountRuntime(pop3_account("down"))
    down.state = "backoff"
    down.cycles = {"transient": 2, "throttled": 1, "store": 1}
    new = AccountRuntime(pop3_account("new"))
    return [ok, locked, down, new]


def test_every_state_and_mode_is_a_0_or_1_series() -> None:
    """Each account has one sample per state and per mode; exactly one of each is 1."""
    parsed = samples(render(office(), 0, 0, now=NOW, started_at=NOW - timedelta(days=1)))

    for family, values, label in (
        ("maild_account_state", STATES, "state"),
        ("maild_account_mode", MODES, "mode"),
    ):
        by_account: dict[str, dict[str, float]] = {}
        for labels, value in parsed[family]:
            by_account.setdefault(labels["account"], {})[labels[label]] = value
        assert set(by_account) == {"ok", "locked", "down", "new"}
        for account, series in by_account.items():
            assert set(series) == set(values), account
            assert sorted(series.values()) == [0.0] * (len(values) - 1) + [1.0], account
    state = {(labels["account"], labels["state"]): v for labels, v in parsed["maild_account_state"]}
    assert state[("ok", "waiting")] == state[("locked", "auth_failed")] == state[("down", "backoff")] == 1


def test_failures_are_counted_by_class() -> None:
    """Auth, network, throttled, protocol, storage and other failures each have a series, zero included."""
    parsed = samples(render(office(), 0, 0, now=NOW))
    failures = {(labels["account"], labels["class"]): v for labels, v in parsed["maild_fetch_failures_total"]}

    assert {cls for _acc, cls in failures} == set(FAILURE_CLASSES)
    assert failures[("locked", "auth")] == 3
    assert (
        failures[("down", "network")],
        failures[("down", "throttled")],
        failures[("down", "storage")],
    ) == (2, 1, 1)
    assert failures[("ok", "auth")] == 0


def test_fetch_lag_counts_from_the_last_success_or_the_start() -> None:
    """The lag is seconds since the last success; an account that never succeeded counts from the start."""
    parsed = samples(render(office(), 0, 0, now=NOW, started_at=NOW - timedelta(days=1)))
    lag = {labels["account"]: v for labels, v in parsed["maild_fetch_lag_seconds"]}

    assert lag == {"ok": 300, "locked": 7200, "down": 86400, "new": 86400}


async def http(port: int, request: bytes) -> bytes:
    """Send ``request`` to the loopback ``port`` and return the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


async def test_metrics_endpoint_serves_parseable_text_and_refuses_the_rest() -> None:
    """GET /metrics answers 200 with the exposition; other paths 404, other methods 405; an oversized
    head 431; HEAD sends no body."""

    async def text() -> str:
        return render(office(), 4096, 3, now=NOW)

    server = MetricsServer("127.0.0.1", 0, text)
    await server.start()
    try:
        port = server.bound_port
        ok = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/plain; version=0.0.4" in head
        assert samples(body.decode())["maild_store_bytes"] == [({}, 4096.0)]
        assert (await http(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        assert (await http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_OCTETS + b"\r\n\r\n"
        assert (await http(port, big)).startswith(b"HTTP/1.1 431 ")
        assert (await http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
    finally:
        await server.close()


async def test_an_address_in_use_is_one_clear_error() -> None:
    """Listening on a port already taken raises ControlError naming daemon.metrics_listen."""

    async def text() -> str:
        return ""

    first = MetricsServer("127.0.0.1", 0, text)
    await first.start()
    try:
        with pytest.raises(ControlError, match=r"daemon.metrics_listen: cannot listen on 127.0.0.1:\d+"):
            await MetricsServer("127.0.0.1", first.bound_port, text).start()
    finally:
        await first.close()


@pytest.mark.parametrize(
    ("text", "address"), [("127.0.0.1:9817", ("127.0.0.1", 9817)), ("[::1]:9817", ("::1", 9817))]
)
def test_listen_address_parses_host_and_port(text: str, address: tuple[str, int]) -> None:
    """HOST:PORT and [IPv6]:PORT are accepted."""
    assert listen_address(text, "daemon.metrics_listen") == address


@pytest.mark.parametrize("text", ["9817", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9817", "x:y"])
def test_bad_listen_addresses_name_the_key(text: str) -> None:
    """A missing or out-of-range port, or no host, is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"daemon\.metrics_listen: expected"):
        listen_address(text, "daemon.metrics_listen")


async def test_clients_beyond_the_slots_are_refused_at_once_not_held() -> None:
    """With every slot held by a client that never finishes its request, further connections get 503
    and are closed by the server (before session 10 they waited, each holding a descriptor: thousands
    of them used up the daemon's); once the slow clients go, a scrape is answered again.

    Steps: MAX_CONNECTIONS clients send half a request line and stay; 50 more connect: each reads a 503
    and the server's close; the slow clients close; a GET /metrics is answered 200.
    """
    async def text() -> str:
        return "maild_up 1\n"

    server = MetricsServer("127.0.0.1", 0, text)
    await server.start()
    slow: list[asyncio.StreamWriter] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(b"GET /metr")
            await writer.drain()
            slow.append(writer)
        while not server.busy:  # the server has taken them all
            await asyncio.sleep(0.01)
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            # bounded only so that a regression fails instead of hanging: the refusal is immediate
            async with asyncio.timeout(REFUSAL_WAIT_S):
                answer = await reader.read()  # until the server closes
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            writer.close()
        for writer in slow:
            writer.close()
        slow.clear()
        while server.busy:  # the server has seen them go
            await asyncio.sleep(0.01)
        assert (await http(server.bound_port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 200 OK"
        )
    finally:
        for writer in slow:
            writer.close()
        await server.close()


#: How long the test waits for a refusal before calling the server hung, in seconds.
REFUSAL_WAIT_S = 8.0
