"""The fault-injecting proxy forwards faithfully and injects each fault exactly as documented."""

from __future__ import annotations

import asyncio
import contextlib
import poplib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.proxy import FaultProxy
from tests.support.rawsocket import SILENCE_S, TIMEOUT_S, leaked_threads, pop3_client, recv_to_eof, recv_until
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, dot_stuff, sample_message

GREETING = b"+OK scripted POP3 server ready\r\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a proxy or server thread running."""
    yield
    assert not leaked_threads("FaultProxy", "ScriptedPOP3")


@pytest.fixture
def server() -> Iterator[ScriptedPOP3]:
    """A scripted POP3 server with two small messages."""
    with ScriptedPOP3([sample_message(1), sample_message(2)]) as pop3:
        yield pop3


@pytest.fixture
def proxy(server: ScriptedPOP3) -> Iterator[FaultProxy]:
    """A proxy in front of ``server``."""
    with FaultProxy(*server.address) as fault_proxy:
        yield fault_proxy


@contextlib.contextmanager
def connect(proxy: FaultProxy) -> Iterator[socket.socket]:
    """A plain socket connected through the proxy."""
    with socket.create_connection(proxy.address, timeout=TIMEOUT_S) as sock:
        yield sock


def test_forwards_a_session_and_counts_octets(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """A session through the proxy sees the server's exact bytes and the counters match both directions."""
    sent = b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n"
    with connect(proxy) as sock:
        sock.sendall(sent)
        received = recv_to_eof(sock)
    raw = server.maildrop[0].raw
    retr = b"+OK %d octets\r\n" % len(raw) + dot_stuff(raw) + b".\r\n"
    assert received == GREETING + b"+OK\r\n+OK maildrop locked, 2 messages\r\n" + retr + b"+OK bye\r\n"
    proxy.wait_until(lambda: proxy.active_connections == 0)
    assert (proxy.connections, proxy.octets_up, proxy.octets_down) == (1, len(sent), len(received))
    assert proxy.cuts == 0


def test_poplib_retrieves_through_proxy(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """poplib retrieves and deletes through the proxy exactly as it would directly."""
    with pop3_client(proxy.address) as client:
        assert client.retr(2)[1] == server.maildrop[1].raw.split(b"\r\n")[:-1]
        client.dele(1)
        client.quit()
    assert len(server.deleted) == 1


def test_cut_after_down_delivers_exactly_n_octets_then_eof(proxy: FaultProxy) -> None:
    """cut_after(n) lets exactly n octets reach the client, then closes the connection."""
    proxy.cut_after(10)
    with connect(proxy) as sock:
        assert recv_to_eof(sock) == GREETING[:10]
    proxy.wait_until(lambda: proxy.active_connections == 0)
    assert (proxy.cuts, proxy.octets_down) == (1, 10)


def test_cut_after_counts_from_when_it_is_set_on_a_live_connection(proxy: FaultProxy) -> None:
    """On a live connection, cut_after counts octets from the moment it is set."""
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING
        proxy.cut_after(3)
        sock.sendall(b"USER alice\r\n")
        assert recv_to_eof(sock) == b"+OK"


def test_cut_after_zero_cuts_at_next_data(proxy: FaultProxy) -> None:
    """cut_after(0) forwards nothing more: the next chunk in that direction cuts the connection."""
    proxy.cut_after(0)
    with connect(proxy) as sock:
        assert recv_to_eof(sock) == b""


def test_cut_after_up_lets_n_octets_reach_server(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """cut_after(n, "up") forwards exactly n octets of the client's data to the server, then cuts."""
    proxy.cut_after(len(b"USER alice\r\n"), "up")
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING
        sock.sendall(b"USER alice\r\nPASS secret\r\n")
        assert recv_to_eof(sock) == b""  # cut as soon as the 12th octet went up, before any reply
    server.wait_until(lambda: server.active_sessions == 0)
    assert server.commands == ["USER alice"]


def test_cut_after_stays_armed_unless_once(proxy: FaultProxy) -> None:
    """Without once every new connection is cut; with once only the first one is."""
    proxy.cut_after(5)
    for _ in range(2):
        with connect(proxy) as sock:
            assert recv_to_eof(sock) == GREETING[:5]
    proxy.cut_after(5, once=True)
    with connect(proxy) as sock:
        assert recv_to_eof(sock) == GREETING[:5]
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING
    assert proxy.cuts == 3


def test_cut_with_abort_resets_the_client(proxy: FaultProxy) -> None:
    """abort=True closes with RST, which the client sees as ConnectionResetError."""
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING
        proxy.cut_after(0, "up", abort=True)
        sock.sendall(b"NOOP\r\n")
        with pytest.raises(ConnectionResetError):
            recv_to_eof(sock)


def test_cut_when_before_forwarding_keeps_quit_from_server(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """cut_when(b"QUIT\\r\\n") cuts before forwarding QUIT: the server never sees it and deletes nothing."""
    with pop3_client(proxy.address) as client:
        client.dele(1)
        proxy.cut_when(b"QUIT\r\n")
        with pytest.raises(poplib.error_proto, match="EOF"):
            client.quit()
    server.wait_until(lambda: server.active_sessions == 0)
    assert server.commands[-1] == "DELE 1"
    assert server.deleted == []


def test_cut_when_after_forwarding_applies_quit_but_loses_reply(
    server: ScriptedPOP3, proxy: FaultProxy
) -> None:
    """cut_when(..., after=True) forwards QUIT and cuts before the reply: deleted, yet the client saw EOF."""
    with pop3_client(proxy.address) as client:
        client.dele(1)
        proxy.cut_when(b"QUIT\r\n", after=True)
        with pytest.raises(poplib.error_proto, match="EOF"):
            client.quit()
    server.wait_until(lambda: server.active_sessions == 0)
    assert server.commands[-1] == "QUIT"
    assert len(server.deleted) == 1


def test_cut_when_finds_pattern_split_across_reads(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """A pattern arriving in two reads is still found; its first part has already been forwarded."""
    proxy.cut_when(b"QUIT\r\n")
    with connect(proxy) as sock:
        recv_until(sock, GREETING)
        sock.sendall(b"USER alice\r\nQU")
        assert recv_until(sock, b"\r\n") == b"+OK\r\n"  # USER answered: "QU" has reached the proxy
        sock.sendall(b"IT\r\n")
        assert recv_to_eof(sock) == b""
    server.wait_until(lambda: server.active_sessions == 0)
    assert server.commands == ["USER alice"]


def test_cut_when_watches_server_replies(proxy: FaultProxy) -> None:
    """cut_when on "down" cuts before the pattern: the client gets the message but not the terminator."""
    proxy.cut_when(b"\r\n.\r\n", "down")
    with connect(proxy) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        data = recv_to_eof(sock)
    assert data.endswith(b"Body of message 1.")


def test_stall_holds_data_both_ways_until_unstall(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """While stalled nothing is forwarded but the connection stays open; unstall delivers what was held."""
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING
        proxy.stall()
        sock.sendall(b"USER alice\r\n")
        sock.settimeout(SILENCE_S)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert server.commands == []
        assert proxy.active_connections == 1
        sock.settimeout(TIMEOUT_S)
        proxy.unstall()
        assert recv_until(sock, b"\r\n") == b"+OK\r\n"
    assert server.commands == ["USER alice"]


def test_stall_applies_to_new_connections(proxy: FaultProxy) -> None:
    """A connection accepted while stalled gets no greeting until unstall."""
    proxy.stall()
    with connect(proxy) as sock:
        sock.settimeout(SILENCE_S)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(TIMEOUT_S)
        proxy.unstall()
        assert recv_until(sock, b"\r\n") == GREETING


def test_trickle_limits_throughput(proxy: FaultProxy) -> None:
    """trickle(r) makes n octets take at least (n - one piece) / r seconds."""
    rate = 4000.0
    piece = int(rate * 0.05)
    with connect(proxy) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\n")
        recv_until(sock, b"messages\r\n")
        proxy.trickle(rate)
        started = time.monotonic()
        sock.sendall(b"LIST\r\nRETR 1\r\nRETR 2\r\nUIDL\r\nQUIT\r\n")
        octets = len(recv_to_eof(sock))
        elapsed_s = time.monotonic() - started
    assert octets > 2 * piece
    assert elapsed_s >= (octets - piece) / rate


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    """latency(s) delays the greeting by at least s and a round trip by at least 2 s."""
    delay_s = 0.1
    proxy.latency(delay_s)
    started = time.monotonic()
    with connect(proxy) as sock:
        recv_until(sock, b"\r\n")
        assert time.monotonic() - started >= delay_s
        started = time.monotonic()
        sock.sendall(b"NOOP\r\n")
        recv_until(sock, b"\r\n")
        assert time.monotonic() - started >= 2 * delay_s


def test_latency_keeps_order_of_separately_sent_commands(server: ScriptedPOP3, proxy: FaultProxy) -> None:
    """Under latency, commands sent in separate writes arrive in order and replies come back in order."""
    proxy.latency(0.05)
    commands = [b"USER alice", b"PASS secret", b"STAT", b"NOOP", b"LIST 2", b"UIDL 1", b"QUIT"]
    with connect(proxy) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for command in commands:
            sock.sendall(command + b"\r\n")
        replies = recv_to_eof(sock).split(b"\r\n")
    assert server.commands == [c.decode() for c in commands]
    assert [r.split(b" ")[0] for r in replies[1:-1]] == [b"+OK"] * len(commands)
    assert replies[-2:] == [b"+OK bye", b""]
    assert replies[5].startswith(b"+OK 2 ")
    assert replies[6] == b"+OK 1 uidl-1"


def test_reset_clears_every_fault(proxy: FaultProxy) -> None:
    """After reset() a connection is forwarded normally despite earlier cuts, stall, trickle and latency."""
    proxy.cut_after(1)
    proxy.cut_when(b"USER")
    proxy.trickle(1)
    proxy.latency(60)
    proxy.stall()
    proxy.reset()
    with connect(proxy) as sock:
        sock.sendall(b"USER alice\r\nQUIT\r\n")
        assert recv_to_eof(sock) == GREETING + b"+OK\r\n+OK bye\r\n"
    assert proxy.cuts == 0


def test_close_all_drops_every_live_connection(proxy: FaultProxy) -> None:
    """close_all() closes every live connection, reports how many, and new connections still work."""
    with connect(proxy) as first, connect(proxy) as second:
        for sock in (first, second):
            recv_until(sock, GREETING)
        proxy.wait_until(lambda: proxy.active_connections == 2)
        assert proxy.close_all() == 2
        assert recv_to_eof(first) == b""
        assert recv_to_eof(second) == b""
    proxy.wait_until(lambda: proxy.active_connections == 0)
    with connect(proxy) as sock:
        assert recv_until(sock, b"\r\n") == GREETING


def test_refused_upstream_closes_the_client() -> None:
    """When the upstream refuses the connection the client's connection is closed at once."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]  # bound, never listening: connections are refused
        with FaultProxy("127.0.0.1", closed_port) as proxy, connect(proxy) as sock:
            assert recv_to_eof(sock) == b""
            assert proxy.connections == 1


def test_control_methods_reject_bad_arguments_and_stopped_proxy(proxy: FaultProxy) -> None:
    """Invalid fault arguments raise ValueError; a proxy not running refuses control with RuntimeError."""
    calls: list[Callable[[], object]] = [
        lambda: proxy.cut_after(-1),
        lambda: proxy.cut_after(1, "sideways"),  # type: ignore[arg-type]
        lambda: proxy.cut_when(b""),
        lambda: proxy.trickle(0),
        lambda: proxy.latency(-0.1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="must"):
            call()
    idle = FaultProxy(*proxy.upstream)
    with pytest.raises(RuntimeError, match="not running"):
        idle.stall()


async def test_proxy_serves_async_client_while_test_loop_runs(proxy: FaultProxy) -> None:
    """The proxy's own loop forwards for an asyncio client and is controlled from inside a coroutine."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        assert await asyncio.wait_for(reader.readline(), TIMEOUT_S) == GREETING
        proxy.latency(0.05)
        started = asyncio.get_running_loop().time()
        writer.write(b"QUIT\r\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT_S) == b"+OK bye\r\n"
        assert asyncio.get_running_loop().time() - started >= 0.1
        await asyncio.to_thread(proxy.wait_until, lambda: proxy.octets_up == len(b"QUIT\r\n"))
    finally:
        writer.close()
        await writer.wait_closed()


def test_command_line_proxy_adds_latency_until_sigterm(server: ScriptedPOP3) -> None:
    """`python -m tests.support.proxy` prints its address, adds the latency asked for and stops on SIGTERM."""
    command = [sys.executable, "-m", "tests.support.proxy", "--listen", "127.0.0.1:0"]
    command += ["--upstream", f"{server.host}:{server.port}", "--latency-ms", "25"]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            line = process.stdout.readline() if process.stdout else ""
            assert line.startswith("LISTENING 127.0.0.1:"), line
            port = int(line.rsplit(":", 1)[1])
            client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
            try:
                started = time.monotonic()
                client.user("alice")
                assert time.monotonic() - started >= 0.05
                assert client.quit() == b"+OK bye"
            finally:
                client.close()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr
    assert "1 connections" in stderr


def test_custom_message_through_proxy_with_tiny_writes() -> None:
    """Tiny server writes pass through the proxy unchanged and in order."""
    message = ScriptedMessage(sample_message(1, [b".a", b"b"]), retr_write_octets=7, retr_tail_octets=6)
    with ScriptedPOP3([message], write_pause_s=0.001) as pop3, FaultProxy(*pop3.address) as proxy:
        proxy.latency(0.01)
        with pop3_client(proxy.address) as client:
            assert client.retr(1)[1] == message.raw.split(b"\r\n")[:-1]
            client.quit()
