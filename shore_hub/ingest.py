"""Hub ingest: a durable pull consumer on FLEET_UP -> decode -> validate -> batch write.

Messages are acknowledged only after the batch that holds them is durable in the fleet
store; a message that cannot be decoded or does not belong to the ship it came from is
written to the dead-letter table (with the reason) and acknowledged, so one poison message
never wedges the consumer. Several workers may pull from the same durable consumer and
share the work. The store keeps the highest version of each incident, so a replay of the
whole stream changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig

from shared import log, wire
from shared.models import ActionRequest, ActionResult, Gap, Heartbeat, Incident, Insight
from sync.topology import FLEET_UP

DURABLE = "hub-ingest"
FETCH = 500
CONFIRMING = 2  # stored batches per worker awaiting their receipts and acks
MAX_REDELIVERIES = 3  # a batch that keeps failing to store is dead-lettered message by message
# Messages handed out and not yet acknowledged, across all workers of the durable: each
# holds up to (CONFIRMING + 1) * FETCH. NATS's default (1,000) would let one worker starve
# the others, and hold back even a lone worker's pipeline.
MAX_ACK_PENDING = 64 * (CONFIRMING + 1) * FETCH

_log = log.get("shore_hub.ingest")


@dataclass
class Decoded:
    incidents: list[Incident] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    insights: list[Insight] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return (
            len(self.incidents)
            + len(self.heartbeats)
            + len(self.insights)
            + len(self.actions)
            + len(self.requests)
            + len(self.gaps)
        )


def decode_messages(msgs: list[Any], received: float) -> Decoded:
    """Sort every message into what it carries, or into dead letters with the reason."""
    out = Decoded()
    for msg in msgs:
        parts = msg.subject.split(".")
        ship = parts[2] if len(parts) > 3 else ""
        try:
            items = wire.decode(msg.data)
        except wire.WireError as exc:
            out.dead.append(_dead(msg, received, str(exc)))
            continue
        foreign = [m for m in items if getattr(m, "ship_id", ship) != ship]
        if foreign:
            reason = f"message for ship {foreign[0].ship_id!r} arrived on {msg.subject}"
            out.dead.append(_dead(msg, received, reason))
            continue
        for item in items:
            if isinstance(item, Incident):
                out.incidents.append(item)
            elif isinstance(item, Heartbeat):
                out.heartbeats.append(item)
            elif isinstance(item, Insight):
                out.insights.append(item)
            elif isinstance(item, ActionResult):
                out.actions.append(item)
            elif isinstance(item, ActionRequest):
                out.requests.append(item)
            elif isinstance(item, Gap):
                out.gaps.append(item)
            else:
                out.dead.append(_dead(msg, received, f"unexpected {item.kind} on the uplink"))
    return out


def _dead(msg: Any, received: float, reason: str) -> dict[str, Any]:
    return {
        "ts": received,
        "source": "fleet_up",
        "subject": msg.subject,
        "reason": reason,
        "data": bytes(msg.data[:4096]).hex(),
    }


class IngestWorker:
    """One consumer loop; run several (tasks or processes) on the same durable to scale."""

    def __init__(
        self,
        js: Any,
        store: Any,
        on_stored: Callable[[Decoded], None],
        name: str = "ingest-0",
        before_ack: Callable[[Decoded], Awaitable[None]] | None = None,
    ) -> None:
        self._js = js
        self._store = store
        self._on_stored = on_stored
        self._before_ack = before_ack
        self.name = name
        self.stored = 0
        self.dead_letters = 0
        self._stopping = False
        self._confirming: deque[asyncio.Task[None]] = deque()
        self._running: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        """Until stopped, whatever NATS does meanwhile: a server restarting, or a cluster
        member lost and the stream's and consumer's leaders elected again elsewhere, make
        fetches time out or fail for a while; the worker retries, and what it had fetched
        but not acknowledged comes again after the consumer's ack wait."""
        sub = None
        self._running = asyncio.current_task()
        try:
            while not self._stopping:
                while self._confirming and self._confirming[0].done():
                    await self._settled(self._confirming.popleft())
                try:
                    if sub is None:  # until JetStream answers: it may be electing leaders
                        sub = await self._js.pull_subscribe(
                            "fleet.up.>",
                            durable=DURABLE,
                            stream=FLEET_UP,
                            config=ConsumerConfig(max_ack_pending=MAX_ACK_PENDING),
                        )
                    msgs = await sub.fetch(FETCH, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue  # nothing arrived within the second
                except Exception as exc:  # the server restarting, a lost connection: go on
                    _log.warning("fetch failed; retrying", worker=self.name, error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                try:
                    await self._handle(msgs)
                except Exception as exc:  # e.g. a nak refused on a lost connection
                    _log.warning(
                        "batch failed; what was not acknowledged comes again", error=str(exc)
                    )
            while self._confirming:  # stopped: the stored batches are acknowledged first
                await self._settled(self._confirming.popleft())
        finally:  # cancelled: what is not acknowledged comes again, and is stored again
            for task in self._confirming:
                task.cancel()

    def stop(self) -> None:
        self._stopping = True

    async def _handle(self, msgs: list[Any]) -> None:
        """Stores the batch, then leaves its receipts and acks to a task of their own: the
        receipts may linger (up to RECEIPT_LINGER_S) to gather one receipt per ship, and
        meanwhile the worker fetches and stores the next batches. At most CONFIRMING
        batches wait so; a confirmation that was cancelled (a crash) ends the worker."""
        decoded = decode_messages(msgs, time.time())
        try:
            await asyncio.to_thread(self._write, decoded)
        except Exception as exc:  # the store is down or refused the batch: retry later
            _log.warning(
                "store write failed; batch will be redelivered", error=str(exc), messages=len(msgs)
            )
            await self._retry_or_dead_letter(msgs, str(exc))
            return
        while len(self._confirming) >= CONFIRMING:
            await self._settled(self._confirming.popleft())
        previous = self._confirming[-1] if self._confirming else None
        self._confirming.append(asyncio.create_task(self._confirm(msgs, decoded, previous)))

    async def _confirm(
        self, msgs: list[Any], decoded: Decoded, previous: asyncio.Task[None] | None
    ) -> None:
        """Receipts, then acks and the stored hooks, in the order the batches were stored
        (after `previous`, the batch before): the live feed and the counts follow the
        stream. Cancelled (the worker crashed between storing and acknowledging), it ends
        the worker at once, and with it every batch not acknowledged yet: as a process
        that dies, nothing is acknowledged after the crash."""
        try:
            await self._confirmed(msgs, decoded, previous)
        except asyncio.CancelledError:
            if self._running is not None:
                self._running.cancel()
            raise

    async def _confirmed(
        self, msgs: list[Any], decoded: Decoded, previous: asyncio.Task[None] | None
    ) -> None:
        if self._before_ack is not None:
            try:  # receipts to the ships: sent before the ack, so no crash can lose them
                await self._before_ack(decoded)
            except Exception as exc:  # stored but not confirmed: store again (idempotent)
                _log.warning("receipts failed; batch will be redelivered", error=str(exc))
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1.0)
                return
        if previous is not None:
            with contextlib.suppress(Exception):  # logged by _settled; a cancellation is not
                await previous
        try:
            for msg in msgs:
                await msg.ack()
        except Exception as exc:  # the server restarting: the rest come again, stored again
            _log.warning("ack failed; the batch's rest will be redelivered", error=str(exc))
        self.stored += decoded.count
        self.dead_letters += len(decoded.dead)
        self._on_stored(decoded)

    @staticmethod
    async def _settled(confirmation: asyncio.Task[None]) -> None:
        """Waits for one batch's confirmation. A cancelled one (the worker crashed before
        acknowledging it) cancels the caller too: that batch and those after it come again."""
        try:
            await confirmation
        except Exception as exc:  # e.g. a stored hook failed: the batch is stored and acked
            _log.warning("confirming a stored batch failed", error=str(exc))

    def _write(self, d: Decoded) -> None:
        now = time.time()
        if d.incidents:
            self._store.insert_incidents(d.incidents, now)
        if d.heartbeats:
            self._store.insert_heartbeats(d.heartbeats)
        if d.insights:
            self._store.insert_insights(d.insights)
        if d.actions:
            self._store.insert_action_results(d.actions)
        if d.requests:
            self._store.insert_action_requests(d.requests)
        if d.gaps:
            self._store.insert_gaps(d.gaps)
        if d.dead:
            self._store.insert_dead_letters(d.dead)

    async def _retry_or_dead_letter(self, msgs: list[Any], error: str) -> None:
        for msg in msgs:
            if msg.metadata.num_delivered < MAX_REDELIVERIES:
                await msg.nak(delay=1.0)
                continue
            alone = decode_messages([msg], time.time())
            try:  # alone, so one message the store refuses cannot hold back the others
                await asyncio.to_thread(self._write, alone)
            except Exception as exc:
                dead = [_dead(msg, time.time(), f"store refused it: {exc}")]
                try:
                    await asyncio.to_thread(self._store.insert_dead_letters, dead)
                except Exception:
                    await msg.nak(delay=5.0)  # the store itself is down: keep it in the stream
                    continue
            else:
                try:
                    if self._before_ack is not None:
                        await self._before_ack(alone)
                except Exception:
                    await msg.nak(delay=5.0)  # stored, not yet confirmed: store again later
                    continue
            await msg.ack()
