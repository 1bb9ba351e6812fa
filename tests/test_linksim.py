"""The link simulator, against a real TCP echo server and a real nats-server."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from sync.linksim import LinkSimulator, ThreadedLink
from sync.natsserver import NatsServer, free_port

Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[int], Awaitable[Client]]


class EchoServer:
    """Echoes every byte; ends its handlers on stop so no task outlives the test."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.writers.discard(writer)
            self.tasks.discard(task)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.gather(*self.tasks)
        await self.server.wait_closed()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    echo = EchoServer()
    port = await echo.start()
    yield port
    await echo.stop()


@pytest.fixture
async def link(echo_port: int) -> AsyncIterator[LinkSimulator]:
    sim = LinkSimulator("127.0.0.1", echo_port)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open client connections to a port; all are closed at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def open_client(port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        return reader, writer

    yield open_client
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0)


async def roundtrip(client: Client, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = client
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def closed_by_peer(client: Client, timeout: float = 5.0) -> bool:
    try:
        return await asyncio.wait_for(client[0].read(1), timeout) == b""
    except ConnectionResetError:
        return True


async def silent(client: Client, seconds: float = 0.3) -> bool:
    """True when nothing, not even a close, arrives within `seconds`."""
    try:
        await asyncio.wait_for(client[0].read(1), seconds)
    except TimeoutError:
        return True
    return False


async def test_bytes_pass_both_ways_and_counters_match(
    link: LinkSimulator, connect: Connect
) -> None:
    big, small = os.urandom(200_000), b"PING\r\n"
    first, second = await connect(link.port), await connect(link.port)
    assert await roundtrip(first, big) == big
    assert await roundtrip(second, small) == small

    # A half-close passes through: the rest still comes back, then the end.
    second[1].write(b"last words")
    second[1].write_eof()
    assert await asyncio.wait_for(second[0].read(), 5) == b"last words"

    total = len(big) + len(small) + len(b"last words")
    assert (link.bytes_up, link.bytes_down, link.connections) == (total, total, 2)
    assert link.stats() == {
        "bytes_up": total,
        "bytes_down": total,
        "connections": 2,
        "cuts": 0,
        "down_s": 0.0,
    }
    assert link.captured_up == link.captured_down == b""  # capture is off by default


async def test_capture_records_forwarded_bytes(echo_port: int, connect: Connect) -> None:
    sim = LinkSimulator("127.0.0.1", echo_port, capture=True)
    await sim.start()
    try:
        pii = b"PUB crew.medical 31\r\nJane Doe, cabin 4021, diabetic\r\n"
        assert await roundtrip(await connect(sim.port), pii) == pii
        assert bytes(sim.captured_up) == bytes(sim.captured_down) == pii
        assert b"Jane Doe" in sim.captured_up
    finally:
        await sim.stop()


async def test_reset_cut_closes_open_connections_and_refuses_new_ones(
    link: LinkSimulator, connect: Connect
) -> None:
    before = await connect(link.port)
    assert await roundtrip(before, b"hello") == b"hello"

    link.cut()
    assert not link.up and link.cuts == 1
    assert await closed_by_peer(before)
    during = await connect(link.port)  # accepted by the kernel, then closed at once
    assert await closed_by_peer(during)
    await asyncio.sleep(0.05)

    link.restore()
    assert link.up
    assert await roundtrip(await connect(link.port), b"again") == b"again"
    assert link.connections == 3
    assert link.stats()["down_s"] >= 0.05


async def test_blackhole_forwards_nothing_and_restore_closes_stalled_connections(
    link: LinkSimulator, connect: Connect
) -> None:
    before = await connect(link.port)
    assert await roundtrip(before, b"hello") == b"hello"
    counted = (link.bytes_up, link.bytes_down)

    link.cut("blackhole")
    before[1].write(b"into the void")
    during = await connect(link.port)
    during[1].write(b"anyone there?")
    assert await silent(before) and await silent(during)
    assert (link.bytes_up, link.bytes_down) == counted
    assert link.connections == 2

    link.restore()
    assert await closed_by_peer(before)
    assert await closed_by_peer(during)
    assert await roundtrip(await connect(link.port), b"back") == b"back"
    assert link.cuts == 1


async def test_delay_adds_the_round_trip_and_keeps_byte_order(
    link: LinkSimulator, connect: Connect
) -> None:
    client = await connect(link.port)
    link.set_delay(200)
    started = time.monotonic()
    assert await roundtrip(client, b"x") == b"x"
    assert 0.19 <= time.monotonic() - started < 5

    # Bytes sent under a long delay are not overtaken by bytes sent after it shrinks.
    reader, writer = client
    writer.write(b"slow-" * 100)
    await writer.drain()
    await asyncio.sleep(0.02)  # let the proxy read them under the long delay
    link.set_delay(0)
    writer.write(b"fast")
    expected = b"slow-" * 100 + b"fast"
    assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected


async def test_throttle_holds_the_rate(link: LinkSimulator, connect: Connect) -> None:
    client = await connect(link.port)
    rate = 80_000
    link.set_rate(rate)
    await asyncio.sleep(0.3)  # idle: the bucket fills, but only to a tenth of a second's worth
    payload = os.urandom(20_000)
    started = time.monotonic()
    assert await roundtrip(client, payload, timeout=10) == payload
    elapsed = time.monotonic() - started
    assert elapsed >= 1.8
    assert len(payload) * 8 / elapsed <= rate * 1.1

    link.set_rate(None)
    assert await roundtrip(client, payload) == payload
    assert link.bytes_up == link.bytes_down == 2 * len(payload)


async def test_abrupt_peers_and_stop_leave_no_tracebacks_or_tasks(
    echo_port: int, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    nowhere = LinkSimulator("127.0.0.1", free_port())
    await nowhere.start()
    sim = LinkSimulator("127.0.0.1", echo_port, name="abrupt")
    await sim.start()
    try:
        # The target refuses: the client just sees its connection close.
        assert await closed_by_peer(await connect(nowhere.port))

        # A client vanishes while its bytes wait in the delay queue.
        sim.set_delay(300)
        reader, writer = await connect(sim.port)
        writer.write(os.urandom(50_000))
        await asyncio.sleep(0.05)
        writer.transport.abort()
        await asyncio.sleep(0.4)

        # Stop with one connection mid-transfer on a slow link and one stalled in a blackhole.
        sim.set_rate(8_000)
        busy = await connect(sim.port)
        busy[1].write(os.urandom(30_000))
        await asyncio.sleep(0.4)
        sim.cut("blackhole")
        await connect(sim.port)
        await asyncio.sleep(0.05)
    finally:
        await sim.stop()
        await nowhere.stop()

    assert await closed_by_peer(busy)
    gc.collect()
    await asyncio.sleep(0.05)
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith(("abrupt-", "link-"))]
    assert leftover == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_threaded_link_controls_and_flaps(echo_port: int, connect: Connect) -> None:
    link = ThreadedLink("127.0.0.1", echo_port, name="threaded")
    link.set_delay(100)  # before start: applied directly
    port = link.start()
    try:
        assert port == link.port
        started = time.monotonic()
        client = await connect(port)
        assert await roundtrip(client, b"ahoy") == b"ahoy"
        assert time.monotonic() - started >= 0.09

        link.set_delay(0)
        link.cut()
        assert await closed_by_peer(client)
        link.restore()
        assert await roundtrip(await connect(port), b"ahoy") == b"ahoy"

        await asyncio.to_thread(link.flap, down_s=0.1, up_s=0.05, times=3)
        assert link.sim.up
        assert link.sim.cuts == 4
        assert link.sim.stats()["down_s"] >= 0.3
        link.set_rate(64_000)
        assert await roundtrip(await connect(port), b"slow") == b"slow"
    finally:
        await asyncio.to_thread(link.stop)


@pytest.fixture
def hub_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer("hub", tmp_path / "nats", domain="hub")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["reset", "blackhole"])
async def test_nats_client_survives_a_cut_through_the_proxy(
    hub_nats: NatsServer, mode: str
) -> None:
    sim = LinkSimulator(hub_nats.host, hub_nats.port)
    await sim.start()
    service = await nats.connect(hub_nats.url)  # on the hub's side of the link

    async def pong(msg: Msg) -> None:
        await msg.respond(b"pong " + msg.data)

    await service.subscribe("svc.ping", cb=pong)
    await service.flush()

    disconnected, reconnected = asyncio.Event(), asyncio.Event()
    errors: list[Exception] = []

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)  # refused and timed-out reconnects, expected while the link is down

    ship = await nats.connect(
        f"nats://127.0.0.1:{sim.port}",
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
        connect_timeout=1,
        ping_interval=0.2,  # a blackhole is found only by missed pongs
        max_outstanding_pings=2,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    try:
        reply = await ship.request("svc.ping", b"1", timeout=2)
        assert reply.data == b"pong 1"
        assert sim.bytes_up > 0 and sim.bytes_down > 0

        sim.cut("reset" if mode == "reset" else "blackhole")
        await asyncio.wait_for(disconnected.wait(), 5)
        assert not ship.is_connected
        await asyncio.sleep(0.3)  # reconnect attempts meet the dead link
        sim.restore()

        await asyncio.wait_for(reconnected.wait(), 5)
        reply = await ship.request("svc.ping", b"2", timeout=2)
        assert reply.data == b"pong 2"
        assert sim.connections >= 2
    finally:
        await ship.close()
        await service.close()
        await sim.stop()
