"""A TCP link simulator for the ship-to-shore leaf-node connection.

Sync has to survive what satellite links do: drop out, fade silently, add hundreds of
milliseconds of round trip and squeeze down to tens of kbit/s. Rather than mock NATS, tests,
benchmarks and the demo put this proxy between a ship's nats-server leafnode remote (or any
TCP client) and the hub, and bend the real byte stream: cut it, restore it, delay it,
throttle it, flap it, and count what got through each way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

CutMode = Literal["reset", "blackhole"]

CHUNK = 16 * 1024
# Per connection and direction. Past it the proxy stops reading, so backpressure reaches the
# sender instead of the proxy hoarding a whole backlog in memory behind a slow link.
MAX_BUFFERED = 1 << 20

T = TypeVar("T")


class _Bucket:
    """Token bucket for one direction, shared by all connections: it is the link's capacity."""

    def __init__(self) -> None:
        self.rate: float | None = None  # bytes per second
        self.burst = CHUNK
        self.tokens = 0.0
        self.stamp = time.monotonic()

    def set_rate(self, bytes_per_s: float | None) -> None:
        self.rate = bytes_per_s
        # Small (a tenth of a second, at least one MTU) so the limit holds over short transfers.
        self.burst = CHUNK if bytes_per_s is None else max(1500, int(bytes_per_s / 10))
        self.tokens, self.stamp = 0.0, time.monotonic()

    async def take(self, n: int) -> None:
        """Spend n bytes of credit and sleep off any debt; concurrent senders queue behind it."""
        if self.rate is None:
            return
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate) - n
        self.stamp = now
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Conn:
    """One proxied connection: its sockets and the task pumping bytes between them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.writers = [client]
        self.pump: asyncio.Task[None] | None = None
        self.stalled = False
        self.closed = asyncio.Event()

    def stall(self) -> None:
        """Forward nothing more but keep the sockets open: peers learn only from their timeouts."""
        self.stalled = True
        if self.pump:
            self.pump.cancel()

    def close(self, *, graceful: bool = False) -> None:
        """Abort unless graceful: bytes still buffered for a peer are lost, as on a dropped link."""
        if self.closed.is_set():
            return
        self.closed.set()
        if self.pump and self.pump is not asyncio.current_task():
            self.pump.cancel()
        for writer in self.writers:
            if graceful:
                writer.close()
            else:
                writer.transport.abort()


class _Pipe:
    """One direction of one connection.

    A reader stamps each chunk with its due time and queues it; a writer delivers chunks when
    due and as the bucket allows. Delay therefore never reorders bytes, and a throttled
    direction does not hold up the other one.
    """

    def __init__(
        self,
        link: LinkSimulator,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        self.link, self.src, self.dst, self.upstream = link, src, dst, upstream
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.buffered = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.room.wait()
            chunk = await self.src.read(CHUNK)
            self.queue.put_nowait((loop.time() + self.link._one_way_s, chunk))
            if not chunk:
                return
            self.buffered += len(chunk)
            if self.buffered > MAX_BUFFERED:
                self.room.clear()

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        bucket = self.link._buckets[self.upstream]
        while True:
            due, chunk = await self.queue.get()
            await asyncio.sleep(due - loop.time())
            if not chunk:
                if self.dst.can_write_eof():
                    self.dst.write_eof()  # pass the half-close on; the other way may go on
                return
            step = bucket.burst  # split so one chunk cannot overdraw a small bucket
            for i in range(0, len(chunk), step):
                piece = chunk[i : i + step]
                await bucket.take(len(piece))
                self.dst.write(piece)
                self.link._count(piece, upstream=self.upstream)
                await self.dst.drain()
            self.buffered -= len(chunk)
            if self.buffered <= MAX_BUFFERED:
                self.room.set()


class LinkSimulator:
    """Proxy from `listen` (host, port 0 = pick a free one) to `target`.

    "Up" is client to target (ship to hub), "down" the reverse. Counters count bytes handed to
    the other side; `connections` counts every accepted connection, refused ones included.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        capture: bool = False,
        name: str = "link",
    ) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.host, self.port = host, port
        self.capture, self.name = capture, name
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.cuts = 0
        self.captured_up = bytearray()
        self.captured_down = bytearray()
        self._mode: CutMode | None = None
        self._down_since = 0.0
        self._down_total = 0.0
        self._one_way_s = 0.0
        self._buckets = {True: _Bucket(), False: _Bucket()}  # keyed by `upstream`
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for all our tasks to end."""
        server, self._server = self._server, None
        if server:
            server.close()
        for conn in list(self._conns):
            conn.close()  # cancels its pump and lets its handler return
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server:
            await server.wait_closed()

    @property
    def up(self) -> bool:
        return self._mode is None

    def cut(self, mode: CutMode = "reset") -> None:
        """Take the link down.

        reset: close every open connection now and refuse new ones (accept, then close).
        blackhole: keep sockets open but forward nothing either way, like a rain fade where
        peers find out only by their own ping timeouts; new connections are accepted and
        stalled. Cutting a link that is already down only switches the mode.
        """
        if self._mode is None:
            self.cuts += 1
            self._down_since = time.monotonic()
        self._mode = mode
        for conn in list(self._conns):
            if mode == "reset":
                conn.close()
            else:
                conn.stall()

    def restore(self) -> None:
        """Bring the link up; stalled connections are closed, their state being stale."""
        if self._mode is None:
            return
        self._mode = None
        self._down_total += time.monotonic() - self._down_since
        for conn in list(self._conns):
            if conn.stalled:
                conn.close()

    def set_delay(self, rtt_ms: float) -> None:
        """Delay each direction by half the round trip; applies to bytes read from now on."""
        if rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")
        self._one_way_s = rtt_ms / 2000

    def set_rate(self, bits_per_s: float | None) -> None:
        """Throttle each direction to bits_per_s (None = unlimited)."""
        if bits_per_s is not None and bits_per_s <= 0:
            raise ValueError("bits_per_s must be > 0 or None")
        for bucket in self._buckets.values():
            bucket.set_rate(None if bits_per_s is None else bits_per_s / 8)

    async def flap(
        self, *, down_s: float, up_s: float, times: int, mode: CutMode = "reset"
    ) -> None:
        """Cut for down_s then restore for up_s, `times` over; cancelled, it leaves the link up."""
        try:
            for _ in range(times):
                self.cut(mode)
                await asyncio.sleep(down_s)
                self.restore()
                await asyncio.sleep(up_s)
        finally:
            self.restore()

    def stats(self) -> dict[str, float | int]:
        down_s = self._down_total
        if self._mode is not None:
            down_s += time.monotonic() - self._down_since
        return {
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "connections": self.connections,
            "cuts": self.cuts,
            "down_s": down_s,
        }

    def _count(self, piece: bytes, *, upstream: bool) -> None:
        if upstream:
            self.bytes_up += len(piece)
            if self.capture:
                self.captured_up += piece
        else:
            self.bytes_down += len(piece)
            if self.capture:
                self.captured_down += piece

    def _track(self, task: asyncio.Task[None], name: str) -> None:
        task.set_name(f"{self.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hold one client's connection open for its whole life, so stop() can wait for it.

        This task must end normally, never cancelled: Python 3.11's start_server logs a
        traceback for a cancelled handler. The cancellable work is in the pump task.
        """
        self.connections += 1
        if self._server is None or self._mode == "reset":
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._track(task, f"conn-{self.connections}")
        conn = _Conn(writer)
        self._conns.add(conn)
        if self._mode == "blackhole":
            conn.stalled = True
        else:
            conn.pump = asyncio.create_task(self._pump(conn, reader, writer))
            self._track(conn.pump, f"pump-{self.connections}")
        try:
            await conn.closed.wait()
        finally:
            conn.close()
            self._conns.discard(conn)

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            conn.writers.append(up_writer)
            async with asyncio.TaskGroup() as group:
                for pipe in (
                    _Pipe(self, reader, up_writer, upstream=True),
                    _Pipe(self, up_reader, writer, upstream=False),
                ):
                    group.create_task(pipe.read())
                    group.create_task(pipe.write())
        except* OSError:  # target unreachable, or a peer reset: drop the whole connection
            conn.close()
        else:  # both sides closed their end and everything was delivered
            conn.close(graceful=True)


class ThreadedLink:
    """A LinkSimulator on its own event loop in a daemon thread.

    Benchmarks and the demo keep their main loop busy; a proxy sharing it would add their
    stalls to the link's delay and rate. Controls block until applied, so what the caller does
    next sees the new link. Read counters from `.sim`.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        capture: bool = False,
        name: str = "link",
    ) -> None:
        self.sim = LinkSimulator(
            target_host, target_port, host=host, port=port, capture=capture, name=name
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"linksim-{name}", daemon=True
        )

    @property
    def port(self) -> int:
        return self.sim.port

    def start(self) -> int:
        self._thread.start()
        return self._call(self.sim.start())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.sim.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def cut(self, mode: CutMode = "reset") -> None:
        self._apply(self.sim.cut, mode)

    def restore(self) -> None:
        self._apply(self.sim.restore)

    def set_delay(self, rtt_ms: float) -> None:
        self._apply(self.sim.set_delay, rtt_ms)

    def set_rate(self, bits_per_s: float | None) -> None:
        self._apply(self.sim.set_rate, bits_per_s)

    def flap(self, *, down_s: float, up_s: float, times: int, mode: CutMode = "reset") -> None:
        """Blocks until the last cycle is over."""
        self._call(self.sim.flap(down_s=down_s, up_s=up_s, times=times, mode=mode))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _apply(self, control: Callable[..., None], *args: Any) -> None:
        if not self._loop.is_running():  # not started or stopped: no other thread touches it
            control(*args)
            return

        async def apply() -> None:
            control(*args)

        self._call(apply())
