"""Where simulated events go: the agent's syslog and HTTP ingest, or a JSONL file.

Every sink takes batches (`send`) and is closed once (`aclose`). `run_simulation` feeds
them, either as fast as they accept (benchmarks, tests) or paced against the wall clock.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import orjson

from shared.timeutil import iso

from .engine import Simulator
from .events import SimEvent
from .syslog import split_line

BATCH_MAX = 500
BATCH_WAIT_S = 0.2


class Sink(Protocol):
    async def send(self, batch: Sequence[SimEvent]) -> None: ...

    async def aclose(self) -> None: ...


class UdpSyslogSink:
    """One datagram per log line (RFC 5426); metrics do not travel over syslog."""

    def __init__(self, host: str, port: int) -> None:
        family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self._addr = addr
        # unconnected on purpose: a connected UDP socket raises on the next send after an
        # ICMP port-unreachable, and a syslog sender must not care whether anyone listens
        self._sock = socket.socket(family, kind, proto)

    async def send(self, batch: Sequence[SimEvent]) -> None:
        sendto, addr = self._sock.sendto, self._addr
        for event in batch:
            if event.kind == "log":
                sendto(event.line, addr)

    async def aclose(self) -> None:
        self._sock.close()


class TcpSyslogSink:
    """RFC 6587 octet counting ("<len> <msg>"), so lines need no newline framing."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, batch: Sequence[SimEvent]) -> None:
        frames = [b"%d %s" % (len(e.line), e.line) for e in batch if e.kind == "log"]
        if not frames:
            return
        if self._writer is None:
            _reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._writer.write(b"".join(frames))
        await self._writer.drain()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


class HttpIngestSink:
    """JSON batches to the agent's `/api/v3/ingest`; a refused batch stops the run loudly.

    `kinds` limits what it carries (e.g. only metrics, when syslog goes over UDP)."""

    def __init__(
        self,
        base_url: str,
        ship_id: str,
        client: httpx.AsyncClient | None = None,
        kinds: tuple[str, ...] = ("log", "metric"),
    ):
        self._url = base_url.rstrip("/") + "/api/v3/ingest"
        self._ship_id = ship_id
        self._kinds = kinds
        self._client = client or httpx.AsyncClient(timeout=10.0)
        self._own_client = client is None

    async def send(self, batch: Sequence[SimEvent]) -> None:
        logs: list[dict[str, Any]] = []
        metrics: list[dict[str, Any]] = []
        for e in batch:
            if e.kind not in self._kinds:
                continue
            if e.kind == "log":
                severity, app, message = split_line(e.line)
                logs.append(
                    {
                        "ts": iso(e.ts),
                        "device": e.device,
                        "app": app,
                        "severity": severity,
                        "message": message,
                    }
                )
            else:
                metrics.append(
                    {"ts": iso(e.ts), "device": e.device, "metric": e.metric, "value": e.value}
                )
        if not logs and not metrics:
            return
        body = {"schema_version": 1, "ship_id": self._ship_id, "logs": logs, "metrics": metrics}
        response = await self._client.post(
            self._url, content=orjson.dumps(body), headers={"content-type": "application/json"}
        )
        response.raise_for_status()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class JsonlFileSink:
    """One JSON object per line; `read_jsonl` gives the same events back (replay, fixtures)."""

    def __init__(self, path: str | Path) -> None:
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in aclose

    async def send(self, batch: Sequence[SimEvent]) -> None:
        self._file.write(b"".join(orjson.dumps(_as_json(e)) + b"\n" for e in batch))

    async def aclose(self) -> None:
        self._file.close()


def _as_json(e: SimEvent) -> dict[str, Any]:
    if e.kind == "log":
        return {"kind": "log", "ts": e.ts, "device": e.device, "line": e.line.decode()}
    return {"kind": "metric", "ts": e.ts, "device": e.device, "metric": e.metric, "value": e.value}


def read_jsonl(path: str | Path) -> Iterator[SimEvent]:
    with open(path, "rb") as f:
        for raw in f:
            o = orjson.loads(raw)
            if o["kind"] == "log":
                yield SimEvent(o["ts"], "log", o["device"], o["line"].encode())
            else:
                yield SimEvent(o["ts"], "metric", o["device"], b"", o["metric"], o["value"])


async def run_simulation(
    sim: Simulator, duration_s: float, sinks: Sequence[Sink], speed: float | None = None
) -> int:
    """Feed `duration_s` of simulated time to every sink; returns the number of events.

    `speed` None sends as fast as the sinks accept; otherwise `speed` simulated seconds
    pass per wall second (60: a minute a second), with events sent in batches of at most
    `BATCH_MAX` and at most about `BATCH_WAIT_S` late. Sinks are closed at the end.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    loop = asyncio.get_running_loop()
    events = sim.events(duration_s)
    wall0, sim0 = loop.time(), sim.start_ts
    pending = next(events, None)
    sent = 0
    try:
        while pending is not None:
            horizon = float("inf") if speed is None else sim0 + (loop.time() - wall0) * speed
            batch: list[SimEvent] = []
            while pending is not None and pending.ts <= horizon and len(batch) < BATCH_MAX:
                batch.append(pending)
                pending = next(events, None)
            if batch:
                for sink in sinks:
                    await sink.send(batch)
                sent += len(batch)
            if speed is not None and pending is not None and len(batch) < BATCH_MAX:
                # caught up: wake when the next event is due, plus the batching window, so
                # whatever falls due meanwhile travels in the same batch
                due = wall0 + (pending.ts - sim0) / speed
                await asyncio.sleep(max(0.0, due - loop.time()) + BATCH_WAIT_S)
            else:
                await asyncio.sleep(0)  # let the rest of the loop breathe between batches
    finally:
        for sink in sinks:
            await sink.aclose()
    return sent
