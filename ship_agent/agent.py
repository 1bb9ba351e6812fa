"""The ship agent process: ingest servers, the micro-batch loop, housekeeping, local API.

One asyncio loop. Ingest only queues; the batch loop takes up to `max_events` items (or
whatever arrived within `max_delay_ms`) and runs them through the pipeline in one go.
The queue is bounded by policy: when it is full HTTP answers 503 and syslog/NATS input
becomes an "overload" dead letter, so nothing is ever dropped without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from shared import log
from shared.http import HttpServer
from shared.policy import Policy
from shared.settings import AgentSettings
from ship_agent.ingest.nats_ingest import NatsIngest
from ship_agent.ingest.syslog_server import SyslogServer
from ship_agent.metrics import AgentMetrics
from ship_agent.pipeline import Item, OperatorCommand, Pipeline
from ship_agent.records import DeadLetter, RawInput
from ship_agent.store import Batch, Store

_log = log.get("ship_agent")


class ShipAgent:
    def __init__(self, settings: AgentSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.ship_id = settings.ship_id
        self.metrics = AgentMetrics()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.data_dir / "agent.db", self.ship_id)
        self.pipeline = Pipeline(policy, self.store, self.metrics)
        self._queue: deque[Item] = deque()
        self._limit = policy.ingest.queue_limit
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.syslog: SyslogServer | None = None
        self.nats: NatsIngest | None = None
        self._http: HttpServer | None = None
        self.http_port: int | None = None
        self.listeners: list[Any] = []  # callables(Batch) told of every committed batch

    # ---------------------------------------------------------------- intake

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, items: Iterable[Item]) -> bool:
        """Queue items for the pipeline; False (nothing queued) when the queue is full."""
        batch = list(items)
        if len(self._queue) + len(batch) > self._limit:
            return False
        self._queue.extend(batch)
        self._wake.set()
        return True

    def dead_letter(self, dl: DeadLetter) -> None:
        """Dead letters are always queued, even over the limit: they are the trace of a drop."""
        self._queue.append(dl)
        self._wake.set()

    def _on_syslog(self, raw: RawInput) -> None:
        if len(self._queue) >= self._limit:
            self.dead_letter(
                DeadLetter(
                    raw.source, "overload: ingest queue full", raw.data, raw.received, raw.peer
                )
            )
            return
        self._queue.append(raw)
        self._wake.set()

    async def command(self, cmd: OperatorCommand) -> Any:
        cmd.done = asyncio.get_running_loop().create_future()
        self._queue.append(cmd)
        self._wake.set()
        await cmd.done
        if isinstance(cmd.result, Exception):
            raise cmd.result
        return cmd.result

    async def drained(self) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        while self._queue:
            self._idle.clear()
            await self._idle.wait()

    # ---------------------------------------------------------------- life cycle

    async def start(self, serve_http: bool = True) -> None:
        t0 = time.perf_counter()
        self.pipeline.warm_start()
        warm_s = time.perf_counter() - t0
        s, ingest = self.settings, self.policy.ingest
        self.syslog = SyslogServer(
            s.host,
            s.syslog_port,
            s.syslog_port,
            ingest.max_message_bytes,
            self._on_syslog,
            self.dead_letter,
        )
        await self.syslog.start()
        if s.nats_url:
            self.nats = NatsIngest(
                s.nats_url,
                f"{ingest.nats_subject}.{self.ship_id}",
                self.ship_id,
                self.submit,
                self.dead_letter,
                ingest.max_http_body_bytes,
            )
            await self.nats.start()
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="batch-loop"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        if serve_http:
            await self._start_http()
        _log.info(
            "agent started",
            ship_id=self.ship_id,
            warm_start_s=round(warm_s, 3),
            syslog_udp=self.syslog.udp_port,
            syslog_tcp=self.syslog.tcp_port,
            http_port=self.http_port,
        )

    async def _start_http(self) -> None:
        from ship_agent.api import create_app  # the API imports the agent's types

        self._http = HttpServer(create_app(self), self.settings.host, self.settings.http_port)
        self.http_port = await self._http.start()

    async def stop(self) -> None:
        """Stop intake, commit what is queued, checkpoint models, close the store."""
        if self.syslog is not None:
            await self.syslog.stop()
        if self.nats is not None:
            await self.nats.stop()
        if self._http is not None:
            await self._http.stop()
        await self.drained()
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pipeline.checkpoint()
        self.store.close()
        _log.info("agent stopped", ship_id=self.ship_id)

    # ---------------------------------------------------------------- loops

    async def _batch_loop(self) -> None:
        mb = self.policy.ingest.micro_batch
        delay = mb.max_delay_ms / 1000.0
        queue = self._queue
        while not self._stopping:
            if not queue:
                self._idle.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    self._run([])  # the clock moves: quiet incidents resolve
                    continue
            if len(queue) < mb.max_events:
                await asyncio.sleep(delay)
            n = min(len(queue), mb.max_events)
            items = [queue.popleft() for _ in range(n)]
            self._run(items)
            self.metrics.queue_depth.set(len(queue))
            if not queue:
                self._idle.set()

    def _run(self, items: list[Item]) -> Batch | None:
        try:
            batch = self.pipeline.run_batch(items)
        except Exception:
            # The store rolled back; keep the inputs as dead letters so nothing vanishes.
            _log.exception("batch failed", items=len(items))
            for it in items:
                if isinstance(it, OperatorCommand):
                    it.result = RuntimeError("pipeline error")
                    if it.done is not None:
                        it.done.set_result(None)
                elif isinstance(it, RawInput | DeadLetter):
                    self.dead_letter(
                        DeadLetter(it.source, "pipeline error", it.data, it.received, it.peer)
                    )
                else:
                    self.dead_letter(
                        DeadLetter(it.source, "pipeline error", repr(it).encode(), it.received)
                    )
            return None
        for it in items:
            if isinstance(it, OperatorCommand) and it.done is not None:
                it.done.set_result(None)
        for listener in self.listeners:
            listener(batch)
        return batch

    async def _housekeeping(self) -> None:
        """Every second: a slice of the device models is checkpointed, so that each is saved
        once per `checkpoint_s` without ever pausing the fast path for all of them."""
        s, r = self.settings, self.policy.retention.ship
        last_checkpoint = last_retention = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            hst = self.pipeline.detect.hst
            if hst is not None and hst.devices:
                self.pipeline.checkpoint_devices(math.ceil(len(hst.devices) / s.checkpoint_s))
            if now - last_checkpoint >= s.checkpoint_s:
                self.pipeline.checkpoint_core()
                last_checkpoint = now
            if now - last_retention >= s.retention_check_s:
                removed = self.store.apply_retention(
                    time.time(),
                    r.events_days,
                    r.incidents_days,
                    r.dead_letters_days,
                    r.max_events_rows,
                )
                _log.info("retention", **removed)
                last_retention = now
            self.metrics.outbox_unsent.set(self.store.unsent_count())
