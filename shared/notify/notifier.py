"""The notifier of one side: decide (engine), keep (spool), deliver (senders), on a loop.

`offer` is called with every committed (ship) or stored (hub) batch of incident versions,
on the event loop, and returns at once: deciding is in-memory and spooling is one small
SQLite transaction. The sender loop delivers what is due, most severe first, backs a
channel off as a whole when it fails, and sends the digests the engine releases as time
passes. A notification is marked sent only after its channel accepted it, so a crash in
between means one more delivery with the same id, never a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared import log
from shared.models import Incident
from shared.notify.channels import DeliveryError, Sender, sender_for
from shared.notify.engine import Engine, Notification, Side
from shared.notify.spool import Spool, Spooled
from shared.policy import NotifyPolicy

_log = log.get("notify")
TICK_S = 1.0  # how often held digests are reconsidered while any waits
IDLE_S = 60.0  # the longest the loop sleeps (spool housekeeping)
PURGE_EVERY_S = 3600.0


class NotifyMetrics:
    """The notification counters, in the agent's or the hub's registry (`prefix`)."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        r = self.registry = registry
        self.sent = Counter(
            f"{prefix}_notifications_sent_total", "Notifications delivered", ["channel"], registry=r
        )
        self.failed = Counter(
            f"{prefix}_notification_failures_total",
            "Delivery attempts that failed (tried again later unless refused for good)",
            ["channel"],
            registry=r,
        )
        self.folded = Counter(
            f"{prefix}_notifications_folded_total",
            "Incident changes held and folded into a digest, by why",
            ["channel", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            f"{prefix}_notifications_dropped_total",
            "Notifications given up: the spool full (spool_full) or refused for good (rejected)",
            ["channel", "reason"],
            registry=r,
        )
        self.waiting = Gauge(
            f"{prefix}_notifications_waiting",
            "Notifications spooled, not yet delivered",
            registry=r,
        )


class Notifier:
    def __init__(
        self,
        policy: NotifyPolicy,
        side: Side,
        spool: Spool,
        metrics: NotifyMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.side = side
        self.spool = spool
        self.metrics = metrics
        self._clock = clock
        self.engine = Engine(policy, side)
        self.engine.restore(spool.states())
        self._senders: dict[str, Sender] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.use_policy(policy)

    @property
    def policy(self) -> NotifyPolicy:
        return self.engine.policy

    def use_policy(self, policy: NotifyPolicy) -> None:
        self.engine.use_policy(policy)
        old, self._senders = self._senders, {c.name: sender_for(c) for c in self.engine.channels}
        for sender in old.values():  # an open HTTP client is closed on the loop
            with contextlib.suppress(RuntimeError):  # no loop running: nothing to close
                asyncio.get_running_loop().create_task(sender.close())
        self._wake.set()

    # ---------------------------------------------------------------- intake

    def offer(self, incidents: Iterable[Incident]) -> None:
        """Incident versions just made durable; `incidents` is only read when enabled."""
        if not self.policy.enabled:
            return
        now = self._clock()
        outcome = self.engine.decide(incidents, now)
        for channel, reason in outcome.folded:
            self.metrics.folded.labels(channel, reason).inc()
        self._keep(outcome.notifications, now)

    def _keep(self, notes: list[Notification], now: float) -> None:
        states = self.engine.take_states()
        if not notes and not states:
            return
        dropped = self.spool.keep(notes, states, now, self.policy.spool.max_pending)
        for channel, key in dropped:
            self.metrics.dropped.labels(channel, "spool_full").inc()
            _log.warning("notification dropped: spool full", channel=channel, key=key)
        if notes:
            self._wake.set()

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notify")

    async def stop(self) -> None:
        self._stopping = True  # besides cancelling: Python 3.11's wait_for can lose a cancel
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sender in self._senders.values():
            await sender.close()
        self.spool.close()

    # ---------------------------------------------------------------- delivery

    async def _run(self) -> None:
        last_purge = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                now = self._clock()
                self._keep(self.engine.flush(now), now)
                await self.deliver_due()
                if now - last_purge >= PURGE_EVERY_S:
                    self.spool.purge(now - self.policy.spool.keep_days * 86_400)
                    last_purge = now
                self.metrics.waiting.set(self.spool.waiting())
                timeout = self._idle_for(self._clock())
            except Exception:  # a database or engine error: logged, tried again next round
                _log.exception("notification round failed")
                timeout = IDLE_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _idle_for(self, now: float) -> float:
        waits = [IDLE_S]
        if self.engine.holding():
            waits.append(TICK_S)
        due = self.spool.next_attempt(list(self._senders))
        if due is not None:
            waits.append(max(0.0, due - now))
        return min(waits)

    async def deliver_due(self) -> int:
        """Deliver every notification due now; returns how many went out."""
        delivered = 0
        failing: set[str] = set()
        for row in self.spool.due(self._clock(), list(self._senders)):
            if row.channel in failing or row.channel not in self._senders:
                continue  # backed off in this round, or dropped by a new policy meanwhile
            try:
                await self._senders[row.channel].send(row.note)
            except Exception as exc:
                self._failed(row, exc)
                failing.add(row.channel)
                continue
            self.spool.mark_sent(row.id, self._clock())
            self.metrics.sent.labels(row.channel).inc()
            delivered += 1
        return delivered

    def _failed(self, row: Spooled, exc: Exception) -> None:
        error = str(exc) or type(exc).__name__
        now = self._clock()
        self.metrics.failed.labels(row.channel).inc()
        if isinstance(exc, DeliveryError) and exc.permanent:
            self.spool.give_up(row.id, error, now)
            self.metrics.dropped.labels(row.channel, "rejected").inc()
            _log.error("notification refused; given up", channel=row.channel, error=error)
            return
        retry = self.policy.retry
        delay = min(retry.max_s, retry.base_s * 2 ** min(row.attempts, 30))
        self.spool.retry_at(row, error, now + delay)
        _log.warning(
            "notification not delivered; will retry",
            channel=row.channel,
            attempts=row.attempts + 1,
            retry_in_s=delay,
            error=error,
        )
