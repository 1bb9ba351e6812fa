"""The outbox forwarder: SQLite outbox -> privacy redaction -> the ship's OUTBOX stream.

Order of release: urgent rows (critical/high incidents, approvals, gaps, command results)
always and at once, even with the link down, so they wait first in line in the stream;
everything else only while the link is up, within the byte budget of the policy, and
only while what is released but not yet confirmed by the hub stays under `in_flight_s`
of budget. So the stream in front of a new critical incident is never long, and the link
is never asked to carry more than it was given.

A row is marked sent only after the stream acknowledged it; after a crash it is sent
again with the same Nats-Msg-Id ("incident_id:version"), which the stream drops as a
duplicate, and the hub's upsert is idempotent anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from shared import log, wire
from shared.models import Heartbeat
from shared.policy import SyncPolicy
from shared.taxonomy import Priority
from sync.outbox import LANES, Outbox, Row
from sync.topology import OUTBOX, up_subject

# NATS framing a message costs on the leaf link (HMSG line, delivery subject, reply, headers),
# measured with the link simulator: bench/sync.py "framing" column.
FRAMING_BYTES = 220
_log = log.get("sync.uplink")

Redact = Callable[[Sequence[BaseModel]], Sequence[BaseModel]]


class Budget:
    """Token bucket in bytes; urgent traffic may overdraw it (and bulk then waits longer)."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self._t = time.monotonic()

    def refill(self, bytes_per_s: float, burst: float) -> None:
        now = time.monotonic()
        self.tokens = min(self.tokens + (now - self._t) * bytes_per_s, burst)
        self._t = now

    def take(self, n: int) -> bool:
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def spend(self, n: int) -> None:
        self.tokens -= n


@dataclass
class LinkView:
    """What the ship can see of its link: the leaf connection, and the hub's receipts."""

    leaf_up: bool = False
    since: float = field(default_factory=time.time)
    # key -> (bytes, sent, stream sequence or 0 when not known, e.g. sent before a restart)
    in_flight: dict[str, tuple[int, float, int]] = field(default_factory=dict)

    def state(self, receipt_timeout_s: float, now: float) -> str:
        """down: no leaf connection; degraded: connected, but the hub has not confirmed
        what was sent a receipt timeout ago (a receipt still missing after three timeouts
        is taken as lost, so the state recovers)."""
        if not self.leaf_up:
            return "down"
        limit = 3 * receipt_timeout_s
        for key in [k for k, (_, sent, _) in self.in_flight.items() if now - sent > limit]:
            del self.in_flight[key]
        overdue = any(now - sent > receipt_timeout_s for _, sent, _ in self.in_flight.values())
        return "degraded" if overdue else "up"

    def in_flight_bytes(self, receipt_timeout_s: float, now: float) -> int:
        """Unconfirmed bytes of the last receipt_timeout_s (older ones count as lost
        receipts, not as load on the link)."""
        return sum(n for n, sent, _ in self.in_flight.values() if now - sent <= receipt_timeout_s)

    def confirmed(self, keys: list[str]) -> None:
        for k in keys:
            self.in_flight.pop(k, None)


class Uplink:
    def __init__(
        self,
        outbox: Outbox,
        js: Any,
        ship_id: str,
        sync_policy: Callable[[], SyncPolicy],
        redact: Redact,
        heartbeat: Callable[[str], Heartbeat],
        metrics: Any,
    ) -> None:
        self.outbox = outbox
        self.js = js
        self.ship_id = ship_id
        self._policy = sync_policy
        self._redact = redact
        self._heartbeat = heartbeat
        self.metrics = metrics
        self.link = LinkView()
        self.budget = Budget()
        self.wake = asyncio.Event()
        self.stopping = False  # besides cancelling: Python 3.11's wait_for can swallow a cancel
        self.sent_messages = 0
        self.sent_bytes = 0
        self._last_heartbeat = 0.0
        self._last_seq = 0
        self._trimmed_to = 0
        self._restored_at: float | None = None
        p = sync_policy()
        for key, size, sent in outbox.in_flight(time.time() - p.receipt_timeout_s):
            self.link.in_flight[key] = (size, sent, 0)

    # ---------------------------------------------------------------- events from outside

    def link_changed(self, up: bool) -> None:
        if up != self.link.leaf_up:
            self.link.leaf_up, self.link.since = up, time.time()
            self.metrics.link_up.set(1 if up else 0)
            if up:
                self._restored_at = time.monotonic()
                self._last_heartbeat = 0.0  # tell the hub at once that the ship is back
            self.wake.set()

    def receipts(self, keys: list[str]) -> None:
        self.outbox.mark_delivered(keys, time.time())
        self.link.confirmed(keys)
        self.wake.set()

    async def trim_stream(self) -> None:
        """Drop from OUTBOX what the hub has stored: everything below the oldest message
        still unconfirmed. The stream then holds only what may still be needed, and its
        bound (DiscardPolicy.NEW) refuses new messages rather than dropping old ones."""
        seqs = [seq for _, _, seq in self.link.in_flight.values()]
        if 0 in seqs:
            return  # sent before a restart, position unknown: wait for its receipt
        upto = min(seqs) if seqs else self._last_seq + 1
        if upto > self._trimmed_to and self._last_seq:
            await self.js.purge_stream(OUTBOX, seq=upto)
            self._trimmed_to = upto

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        while not self.stopping:
            try:
                released = await self.round()
            except Exception as exc:  # the local server restarting: rows stay unsent
                _log.warning("uplink round failed; retrying", error=str(exc))
                released = 0
                await asyncio.sleep(1.0)
            if not released:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=0.25)

    async def round(self) -> int:
        """Release what may go now; returns how many rows were released."""
        p = self._policy()
        now = time.time()
        rate = p.uplink_budget_bps / 8
        self.budget.refill(rate, rate * p.burst_s)
        state = self.link.state(p.receipt_timeout_s, now)
        window = rate * p.in_flight_s - self.link.in_flight_bytes(p.receipt_timeout_s, now)
        await self.trim_stream()  # first: a full stream refuses everything after it
        if state != "down" and now - self._last_heartbeat >= p.heartbeat_s:
            await self._send_heartbeat(state)
        released: list[Row] = []
        failure: Exception | None = None
        for row in self.outbox.next_rows(p.batch):
            frame = self._frame(row)
            size = len(frame) + FRAMING_BYTES
            if row.priority == Priority.URGENT:
                self.budget.spend(size)
            elif state == "down" or size > window or not self.budget.take(size):
                break  # lanes are in order: nothing after this may go either
            try:
                ack = await self.js.publish(
                    up_subject(self.ship_id, row.kind), frame, headers={"Nats-Msg-Id": row.key}
                )
            except Exception as exc:  # stream full, server restarting: the row stays unsent
                failure = exc
                break
            window -= size
            self.link.in_flight[row.key] = (size, now, ack.seq)
            self._last_seq = max(self._last_seq, ack.seq)
            self.metrics.uplink_bytes.labels(LANES.get(row.priority, "bulk")).inc(size)
            self.sent_bytes += size
            released.append(row)
        if released:
            self.outbox.mark_sent([r.id for r in released], now)
            self.sent_messages += len(released)
        self._observe()
        if failure is not None:
            raise failure
        return len(released)

    def _frame(self, row: Row) -> bytes:
        """Redacted and re-encoded with the shipped dictionary: the bytes that leave."""
        return wire.encode(self._redact(wire.decode(row.payload)))

    async def _send_heartbeat(self, state: str) -> None:
        hb = self._heartbeat(state)
        frame = wire.encode(self._redact([hb]))
        await self.js.publish(
            up_subject(self.ship_id, "heartbeat"),
            frame,
            headers={"Nats-Msg-Id": f"hb:{hb.tracking_id}"},
        )
        self.budget.spend(len(frame) + FRAMING_BYTES)
        self._last_heartbeat = time.time()

    def _observe(self) -> None:
        depths = self.outbox.depths()
        for lane, n in depths.items():
            self.metrics.outbox_depth.labels(lane).set(n)
        oldest = self.outbox.oldest_unsent()
        self.metrics.oldest_unsent.set(time.time() - oldest if oldest else 0)
        if self._restored_at is not None and not any(depths.values()) and self.link.leaf_up:
            self.metrics.catchup_seconds.set(time.monotonic() - self._restored_at)
            self._restored_at = None
