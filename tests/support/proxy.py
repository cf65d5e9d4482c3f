"""A fault-injecting TCP proxy on loopback, for what a real server will not do on request.

:class:`FaultProxy` forwards one listening port to an upstream server (Dovecot, the scripted POP3
server, anything TCP) and can, at run time, cut connections after a number of octets or on a byte
pattern, stall them, slow them to a trickle, add latency, or drop them all::

    with FaultProxy("127.0.0.1", upstream_port) as proxy:
        proxy.cut_when(b"QUIT\\r\\n", after=True)       # the server sees QUIT, the client never sees +OK
        client = poplib.POP3("127.0.0.1", proxy.port, timeout=5)

The proxy runs its own asyncio loop in its own thread (:class:`LoopThread`), so it keeps forwarding
while a test's event loop runs or while a blocking ``poplib`` call waits in the test's thread. Every
control method is thread-safe and returns once the change is in effect on the proxy's loop; none may
be awaited, and none blocks for longer than that hand-over. :meth:`FaultProxy.wait_until` blocks the
calling thread: from a coroutine call it as ``await asyncio.to_thread(proxy.wait_until, ...)``.

Faults are proxy-wide settings; each connection keeps its own counters. A setting applies to the
connections that are live when it is made (counting octets from that moment) and to every later one,
until :meth:`FaultProxy.reset` (or, with ``once=True``, until it has cut one connection).

Directions: ``"up"`` is client to server, ``"down"`` is server to client. A cut closes both sides
with FIN (after the octets allowed through have been flushed) or, with ``abort=True``, with RST, in
which case octets still in flight may be lost, as on a real network.

Command line, for benchmarks in another process (prints ``LISTENING host:port`` once ready, stops on
SIGINT or SIGTERM)::

    python -m tests.support.proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:1110 --latency-ms 25
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from tests.support.lifecycle import StartStop

Direction = Literal["up", "down"]
"""``"up"``: client to server; ``"down"``: server to client."""

DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
HOST = "127.0.0.1"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
"""How long a closing side may take to flush before it is aborted."""

CHUNK_OCTETS = 64 * 1024
"""Largest read from one side."""

QUEUE_HIGH_WATER_OCTETS = 8 * 1024 * 1024
"""Octets one direction may hold (in flight under latency) before the proxy stops reading that side.

Large enough for the bandwidth-delay product of loopback at the latencies benchmarks use, so latency
does not throttle throughput; small enough to keep backpressure on a sender that outruns a trickle.
"""

TRICKLE_TICK_S = 0.05
"""Under :meth:`FaultProxy.trickle` data is written in pieces of this many seconds' worth (min. 1 octet)."""

_T = TypeVar("_T")


class LoopThread(StartStop):
    """A private asyncio event loop in a daemon thread, serving until stopped.

    Base of :class:`FaultProxy` and :class:`tests.support.scripted_pop3.ScriptedPOP3`. Subclasses
    implement :meth:`_startup` (bind and listen; an exception there is raised by :meth:`start`) and
    :meth:`_shutdown` (close everything; must leave no open transport behind). State shared with other
    threads is guarded by, and changes announced through, the condition ``self._changed``.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._changed = threading.Condition(threading.RLock())

    async def _startup(self) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the thread and return once the server listens.

        Raises:
            OSError: the listening socket could not be bound (the thread has ended).
            TimeoutError: startup took longer than ``START_TIMEOUT_S``.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self._name} was already started")
        self._thread = threading.Thread(target=self._thread_main, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.stop()
            raise TimeoutError(f"{self._name} did not start within {START_TIMEOUT_S} s")
        if self._startup_error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise self._startup_error

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread; idempotent.

        Raises:
            RuntimeError: the thread did not end within ``STOP_TIMEOUT_S``.
        """
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"{self._name} did not stop within {STOP_TIMEOUT_S} s")

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Block the calling thread until ``predicate()`` is true, re-checking on every state change.

        Args:
            predicate: called with the state lock held, in the calling thread; must not block.
            timeout_s: seconds to wait at most.

        Raises:
            TimeoutError: the predicate was still false after ``timeout_s`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(predicate, timeout_s):
                raise TimeoutError(f"{self._name}: condition not met within {timeout_s} s")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the loop thread and return its result once it has run."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or not self._ready.is_set():
            raise RuntimeError(f"{self._name} is not running")
        if threading.get_ident() == thread.ident:
            return fn(*args)
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the calling thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(CONTROL_TIMEOUT_S)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
            raise
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self._startup()
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown()


@dataclasses.dataclass(frozen=True, eq=False)
class _CutAfter:
    octets: int
    once: bool
    abort: bool


@dataclasses.dataclass(frozen=True, eq=False)
class _CutWhen:
    pattern: bytes
    after: bool
    once: bool
    abort: bool


_Rule = _CutAfter | _CutWhen


class _Pipe:
    """One direction's queue of (delivery time on the loop clock, chunk or ``None`` for EOF)."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._octets = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, deliver_at: float, chunk: bytes | None) -> None:
        while self._octets >= QUEUE_HIGH_WATER_OCTETS:
            self._room.clear()
            await self._room.wait()
        self._items.append((deliver_at, chunk))
        self._octets += len(chunk or b"")
        self._ready.set()

    async def get(self) -> tuple[float, bytes | None]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        deliver_at, chunk = self._items.popleft()
        self._octets -= len(chunk or b"")
        if self._octets < QUEUE_HIGH_WATER_OCTETS:
            self._room.set()
        return deliver_at, chunk


def _set_rst_on_close(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Connection:
    """One proxied connection: per direction a reader task (stamps chunks with their delivery time)
    and a writer task (waits for that time, honours stall and trickle, applies cuts)."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self._proxy = proxy
        self._readers = {"up": client[0], "down": upstream[0]}
        self._writers = {"up": upstream[1], "down": client[1]}
        self._pipes = {d: _Pipe() for d in DIRECTIONS}
        self._last_deliver_at = dict.fromkeys(DIRECTIONS, 0.0)
        self._next_send_at = dict.fromkeys(DIRECTIONS, 0.0)
        self.cut_after: dict[Direction, _CutAfter | None] = {}
        self.remaining: dict[Direction, int] = {}
        self.tail: dict[Direction, bytes] = dict.fromkeys(DIRECTIONS, b"")
        for d in DIRECTIONS:
            self.arm_cut_after(d, proxy._cut_after[d])
        self._tasks: list[asyncio.Task[None]] = []
        self._terminated = False
        self._last_read: Direction | None = None

    def arm_cut_after(self, direction: Direction, rule: _CutAfter | None) -> None:
        self.cut_after[direction] = rule
        self.remaining[direction] = rule.octets if rule is not None else 0

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(self._read_loop(d)) for d in DIRECTIONS]
        self._tasks += [asyncio.create_task(self._write_loop(d)) for d in DIRECTIONS]
        try:
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    self._proxy.errors.append(result)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.gather(*(_close(w) for w in self._writers.values()))

    def terminate(self, *, abort: bool = False) -> None:
        """Close both sides now (FIN after flushing, or RST) and stop forwarding; idempotent."""
        if self._terminated:
            return
        self._terminated = True
        for writer in self._writers.values():
            if abort:
                _set_rst_on_close(writer)
                writer.transport.abort()
            else:
                writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def _read_loop(self, direction: Direction) -> None:
        loop = asyncio.get_running_loop()
        reader, pipe = self._readers[direction], self._pipes[direction]
        while True:
            try:
                chunk = await reader.read(CHUNK_OCTETS)
            except OSError:
                self.terminate(abort=True)
                return
            if chunk and self._last_read != direction:
                self._last_read = direction
                if direction == "up":
                    self._proxy._turn()
            # Delivery times never go backwards, so order holds even when latency is lowered.
            deliver_at = max(loop.time() + self._proxy._latency_s, self._last_deliver_at[direction])
            self._last_deliver_at[direction] = deliver_at
            await pipe.put(deliver_at, chunk or None)
            if not chunk:
                return

    async def _write_loop(self, direction: Direction) -> None:
        loop = asyncio.get_running_loop()
        proxy, pipe, writer = self._proxy, self._pipes[direction], self._writers[direction]
        try:
            while True:
                deliver_at, chunk = await pipe.get()
                delay_s = deliver_at - loop.time()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                if chunk is None:
                    await proxy._flowing.wait()
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                pos = 0
                while pos < len(chunk):
                    piece = chunk[pos : pos + self._piece_octets()]
                    await self._pace(direction, len(piece))
                    await proxy._flowing.wait()
                    forward, rule = proxy._apply_cuts(self, direction, piece)
                    if forward:
                        proxy._count(direction, forward)  # first, so a receiver never sees uncounted octets
                        writer.write(piece[:forward])
                    if rule is not None:
                        self.terminate(abort=rule.abort)
                        return
                    await writer.drain()
                    pos += len(piece)
        except OSError:
            self.terminate(abort=True)

    def _piece_octets(self) -> int:
        rate = self._proxy._trickle_octets_per_s
        return CHUNK_OCTETS if rate is None else max(1, int(rate * TRICKLE_TICK_S))

    async def _pace(self, direction: Direction, octets: int) -> None:
        rate = self._proxy._trickle_octets_per_s
        if rate is None:
            return
        now = asyncio.get_running_loop().time()
        send_at = max(now, self._next_send_at[direction])
        self._next_send_at[direction] = send_at + octets / rate
        if send_at > now:
            await asyncio.sleep(send_at - now)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close one side: FIN after flushing, RST if that takes longer than ``CLOSE_TIMEOUT_S``."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


class FaultProxy(LoopThread):
    """Forward ``host:port`` (a free loopback port by default) to an upstream server, with faults.

    Counters only grow and are readable from any thread: ``connections`` (accepted, including
    those whose upstream refused), ``octets_up`` and ``octets_down`` (octets forwarded, i.e. written
    to the other side, not octets read; a client that has received data has been counted), ``cuts``
    (connections cut by :meth:`cut_after`/:meth:`cut_when`, not by :meth:`close_all`). ``errors``
    collects unexpected exceptions from forwarding tasks; leaving the ``with`` block without an
    exception raises the first of them. An upstream that refuses or times out (``CONNECT_TIMEOUT_S``)
    makes the proxy close the client's connection without a byte.

    Args:
        upstream_host: where to connect for each accepted connection.
        upstream_port: the upstream server's port.
        host: address to listen on.
        port: port to listen on; 0 asks the kernel for a free one (see :attr:`port`).
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = HOST, port: int = 0) -> None:
        super().__init__(f"FaultProxy->{upstream_host}:{upstream_port}")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.connections = 0
        self.octets_up = 0
        self.octets_down = 0
        self.client_turns = 0
        """Times a client sent data after having received some since its last send (or first
        sent at all): the request/response round trips of its connections, a pipelined burst
        counting once. Connection set-up is not counted (the proxy accepts on loopback)."""
        self.cuts = 0
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._live: set[_Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._flowing: asyncio.Event  # created on the proxy's loop by _startup
        self._latency_s = 0.0
        self._trickle_octets_per_s: float | None = None
        self._cut_after: dict[Direction, _CutAfter | None] = dict.fromkeys(DIRECTIONS)
        self._cut_when: dict[Direction, _CutWhen | None] = dict.fromkeys(DIRECTIONS)

    # -- state readable from any thread ------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on."""
        return self.host, self.port

    @property
    def active_connections(self) -> int:
        """Connections currently proxied (both sides open or closing)."""
        return len(self._live)

    # -- faults ------------------------------------------------------------------------------------

    def cut_after(
        self, octets: int, direction: Direction = "down", *, once: bool = False, abort: bool = False
    ) -> None:
        """Cut each connection once ``octets`` more octets have been forwarded in ``direction``.

        The chunk that reaches the limit is forwarded only up to it, so the receiving side gets exactly
        ``octets`` octets (counted per connection from this call, or from accept for later connections),
        then EOF (or RST with ``abort``). With ``octets=0`` the next data in that direction triggers the cut.

        Args:
            octets: octets let through per connection before the cut.
            direction: which way octets are counted.
            once: disarm after the first connection has been cut.
            abort: close with RST instead of FIN.
        """
        if octets < 0:
            raise ValueError("octets must be >= 0")
        _check_direction(direction)
        self._call(self._arm_cut_after, direction, _CutAfter(octets, once, abort))

    def cut_when(
        self,
        pattern: bytes,
        direction: Direction = "up",
        *,
        after: bool = False,
        once: bool = False,
        abort: bool = False,
    ) -> None:
        """Cut a connection when ``pattern`` passes through it in ``direction``.

        By default the octets before the pattern are forwarded and the pattern (and the rest of that
        chunk) is not: with ``b"QUIT\\r\\n"`` the server never sees QUIT. With ``after=True`` everything
        up to the end of the pattern is forwarded and the connection is cut at once, before any reply
        can come back: the server sees QUIT, the client never sees its reply. A pattern split across two
        reads is still found, but the octets of it in the earlier read have already been forwarded.

        Args:
            pattern: non-empty byte string to look for.
            direction: which way to look.
            after: forward the pattern itself before cutting.
            once: disarm after the first cut.
            abort: close with RST instead of FIN.
        """
        if not pattern:
            raise ValueError("pattern must not be empty")
        _check_direction(direction)
        self._call(self._arm_cut_when, direction, _CutWhen(bytes(pattern), after, once, abort))

    def stall(self) -> None:
        """Stop forwarding in both directions (EOF included) on all connections; sockets stay open.

        When this returns no further octet will be written by the proxy until :meth:`unstall` or
        :meth:`reset`; octets already handed to the kernel may still arrive. New connections are still
        accepted and connected upstream, but stall too.
        """
        self._call(lambda: self._flowing.clear())

    def unstall(self) -> None:
        """Resume forwarding after :meth:`stall`; held octets are then delivered in order."""
        self._call(lambda: self._flowing.set())

    def trickle(self, octets_per_s: float | None) -> None:
        """Limit each direction of each connection to ``octets_per_s``; ``None`` lifts the limit.

        Written in pieces of ``TRICKLE_TICK_S`` seconds' worth (at least one octet). Applies from the
        next piece written.
        """
        if octets_per_s is not None and octets_per_s <= 0:
            raise ValueError("octets_per_s must be > 0")
        self._call(setattr, self, "_trickle_octets_per_s", octets_per_s)

    def latency(self, seconds: float) -> None:
        """Delay every chunk, both directions, by ``seconds`` after the proxy reads it (0 to stop).

        A round trip through the proxy then takes at least ``2 * seconds`` more. Chunks are scheduled
        for delivery at their arrival time plus the delay, so throughput is not serialised: many
        chunks can be in flight at once (up to ``QUEUE_HIGH_WATER_OCTETS`` per direction). Order is
        kept. Applies to chunks read after this call.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._call(setattr, self, "_latency_s", float(seconds))

    def reset(self) -> None:
        """Clear every fault (cuts, stall, trickle, latency); live connections stay open."""
        self._call(self._reset)

    def close_all(self, *, abort: bool = False) -> int:
        """Drop every live connection (both sides; FIN, or RST with ``abort``) and return how many."""
        return self._call(self._close_all, abort)

    # -- loop-thread side --------------------------------------------------------------------------

    async def _startup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        self._close_all(abort=False)
        if self._handlers:
            _, pending = await asyncio.wait(self._handlers, timeout=CLOSE_TIMEOUT_S * 2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        with self._changed:
            self.connections += 1
            self._changed.notify_all()
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                return  # the client sees the connection closed, as with a refused upstream
            upstream_writer = upstream[1]
            connection = _Connection(self, (client_reader, client_writer), upstream)
            with self._changed:
                self._live.add(connection)
                self._changed.notify_all()
            try:
                await connection.run()
            finally:
                self._live.discard(connection)
        except Exception as exc:
            self.errors.append(exc)
        finally:
            await _close(client_writer)
            if upstream_writer is not None:
                await _close(upstream_writer)
            self._handlers.discard(task)
            self._notify()

    def _arm_cut_after(self, direction: Direction, rule: _CutAfter | None) -> None:
        self._cut_after[direction] = rule
        for connection in self._live:
            connection.arm_cut_after(direction, rule)

    def _arm_cut_when(self, direction: Direction, rule: _CutWhen) -> None:
        self._cut_when[direction] = rule
        for connection in self._live:
            connection.tail[direction] = b""

    def _reset(self) -> None:
        self._latency_s = 0.0
        self._trickle_octets_per_s = None
        self._flowing.set()
        for d in DIRECTIONS:
            self._cut_when[d] = None
            self._arm_cut_after(d, None)

    def _close_all(self, abort: bool) -> int:
        live = list(self._live)
        for connection in live:
            connection.terminate(abort=abort)
        return len(live)

    def _turn(self) -> None:
        with self._changed:
            self.client_turns += 1
            self._changed.notify_all()

    def _count(self, direction: Direction, octets: int) -> None:
        with self._changed:
            if direction == "up":
                self.octets_up += octets
            else:
                self.octets_down += octets
            self._changed.notify_all()

    def _apply_cuts(
        self, connection: _Connection, direction: Direction, piece: bytes
    ) -> tuple[int, _Rule | None]:
        """Decide how much of ``piece`` to forward and whether to cut after it."""
        forward = len(piece)
        fired_rule: _Rule | None = None
        after_rule = connection.cut_after[direction]
        if after_rule is not None and connection.remaining[direction] <= forward:
            forward, fired_rule = connection.remaining[direction], after_rule
        when_rule = self._cut_when[direction]
        if when_rule is not None:
            tail = connection.tail[direction]
            found = (tail + piece).find(when_rule.pattern)
            if found >= 0:
                end = found + len(when_rule.pattern) if when_rule.after else found
                end = max(0, end - len(tail))
                if end <= forward:
                    forward, fired_rule = end, when_rule
            keep = len(when_rule.pattern) - 1
            connection.tail[direction] = (tail + piece[:forward])[-keep:] if keep else b""
        if after_rule is not None:
            connection.remaining[direction] -= forward
        if fired_rule is not None:
            self._fired(direction, fired_rule)
        return forward, fired_rule

    def _fired(self, direction: Direction, rule: _Rule) -> None:
        with self._changed:
            self.cuts += 1
            self._changed.notify_all()
        if not rule.once:
            return
        if isinstance(rule, _CutWhen):
            if self._cut_when[direction] is rule:
                self._cut_when[direction] = None
            return
        if self._cut_after[direction] is rule:
            self._cut_after[direction] = None
        for connection in self._live:
            if connection.cut_after[direction] is rule:
                connection.arm_cut_after(direction, None)

    def check(self) -> None:
        """Raise the first error a connection handler hit (a test must not pass over a broken proxy)."""
        if self.errors:
            raise self.errors[0]


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a proxy until SIGINT or SIGTERM; print ``LISTENING host:port`` on stdout once ready."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=_address, default=(HOST, 0), help="HOST:PORT (port 0: any free)")
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="one-way delay per chunk")
    parser.add_argument("--trickle-octets-per-s", type=float, default=None, help="per direction")
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the proxy thread starts, so it inherits the mask and sigwait() gets them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with FaultProxy(*args.upstream, host=args.listen[0], port=args.listen[1]) as proxy:
        if args.latency_ms:
            proxy.latency(args.latency_ms / 1000)
        if args.trickle_octets_per_s:
            proxy.trickle(args.trickle_octets_per_s)
        print(f"LISTENING {proxy.host}:{proxy.port}", flush=True)
        started = time.monotonic()
        signal.sigwait(stop_signals)
        print(
            f"STOPPED after {time.monotonic() - started:.1f} s: {proxy.connections} connections, "
            f"{proxy.octets_up} octets up, {proxy.octets_down} octets down",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
