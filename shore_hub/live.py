"""Live feed of incident changes for SSE clients, with a bounded buffer per client.

A client that cannot keep up is disconnected (its subscription closes) rather than being
allowed to grow the hub's memory; it reconnects and reloads the list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shared.models import Incident
from shared.taxonomy import Severity

HEARTBEAT_S = 15.0


@dataclass(eq=False)
class Subscription:
    ships: tuple[str, ...] | None  # None: every ship
    min_severity: Severity
    queue: asyncio.Queue[dict[str, Any]]
    overflowed: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, inc: Incident) -> bool:
        return (self.ships is None or inc.ship_id in self.ships) and (
            inc.severity.rank >= self.min_severity.rank
        )


class LiveFeed:
    def __init__(self, buffer: int = 256) -> None:
        self.buffer = buffer
        self.subscribers: set[Subscription] = set()
        self.disconnected_slow = 0

    def subscribe(self, ships: tuple[str, ...] | None, min_severity: Severity) -> Subscription:
        sub = Subscription(ships, min_severity, asyncio.Queue(self.buffer))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)
        sub.closed.set()

    def publish(self, incidents: list[Incident]) -> None:
        for sub in list(self.subscribers):
            for inc in incidents:
                if not sub.wants(inc):
                    continue
                try:
                    sub.queue.put_nowait(_summary(inc))
                except asyncio.QueueFull:
                    sub.overflowed = True
                    self.disconnected_slow += 1
                    self.unsubscribe(sub)
                    break

    async def events(self, sub: Subscription) -> AsyncIterator[dict[str, Any] | None]:
        """Incident changes; None every HEARTBEAT_S of silence (sent as an SSE comment)."""
        try:
            while not sub.closed.is_set() or not sub.queue.empty():
                if sub.overflowed:
                    return
                try:
                    yield await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield None
        finally:
            self.unsubscribe(sub)


def _summary(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "ship_id": inc.ship_id,
        "version": inc.version,
        "type": inc.type.value,
        "severity": inc.severity.value,
        "status": inc.status.value,
        "device": inc.device,
        "last_seen": inc.last_seen.isoformat(),
    }
