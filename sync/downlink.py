"""The ship's downlink: commands, policy bundles, approval decisions and hub receipts, read
in stream order from the local DOWNLINK stream (which sources this ship's share of the
hub's FLEET_DOWN, so it keeps arriving across outages and is read even with the link down).

Exactly once: a command is applied only if its id is not yet recorded, and the record is
committed with the effect (ship_agent.store: downlink table); the stream message is acked
after that, so a crash in between redelivers it and the record makes the redelivery a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from nats.errors import TimeoutError as NatsTimeout

from shared import log, wire
from shared.models import Command, Receipt
from ship_agent.records import DeadLetter
from sync.topology import DOWNLINK

DURABLE = "agent"
RETRY_S = 2.0
MAX_ATTEMPTS = 5
_log = log.get("sync.downlink")


class Ship(Protocol):
    """What the downlink needs of the agent it serves."""

    def command_applied(self, command_id: str) -> bool: ...
    async def apply_command(self, cmd: Command) -> None: ...
    def dead_letter(self, dl: DeadLetter) -> None: ...


class Downlink:
    def __init__(
        self, js: Any, ship_id: str, ship: Ship, on_receipts: Callable[[list[str]], None]
    ) -> None:
        self.js = js
        self.ship_id = ship_id
        self.ship = ship
        self.on_receipts = on_receipts
        self.applied = 0
        self.duplicates = 0
        self.stopping = False  # besides cancelling: a fetch's timeout can swallow a cancel

    async def run(self) -> None:
        sub = None
        while not self.stopping:
            try:
                if sub is None:
                    sub = await self.js.pull_subscribe(
                        f"fleet.down.{self.ship_id}.>", durable=DURABLE, stream=DOWNLINK
                    )
                msgs = await sub.fetch(64, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as exc:  # the local server restarting
                _log.warning("downlink fetch failed; retrying", error=str(exc))
                sub = None
                await asyncio.sleep(1.0)
                continue
            for i, msg in enumerate(msgs):
                if not await self._process(msg):
                    for later in msgs[i:]:  # keep the order: everything after it waits too
                        with contextlib.suppress(Exception):
                            await later.nak(delay=RETRY_S)
                    await asyncio.sleep(RETRY_S)
                    break

    async def _process(self, msg: Any) -> bool:
        """Apply and ack one message; False if it must be retried later. A message that
        keeps failing is dead-lettered with the error rather than holding the line."""
        try:
            await self._handle(msg.subject, msg.data)
        except Exception as exc:
            if msg.metadata.num_delivered < MAX_ATTEMPTS:
                _log.warning("downlink message failed; will retry", error=str(exc))
                return False
            self._reject(msg.subject, msg.data, f"failed {MAX_ATTEMPTS} times: {exc}")
        try:
            await msg.ack()
        except Exception as exc:  # the local server restarting: it will be redelivered
            _log.warning("downlink ack failed", error=str(exc))
            return False
        return True

    async def _handle(self, subject: str, data: bytes) -> None:
        try:
            items = wire.decode(data)
        except wire.WireError as exc:
            self._reject(subject, data, str(exc))
            return
        for item in items:
            if isinstance(item, Receipt):
                self.on_receipts(item.stored)
            elif isinstance(item, Command) and item.ship_id == self.ship_id:
                await self._apply(item)
            else:
                self._reject(subject, data, f"unexpected {item.kind} for {self.ship_id}")

    async def _apply(self, cmd: Command) -> None:
        if self.ship.command_applied(cmd.id):
            self.duplicates += 1
            return
        await self.ship.apply_command(cmd)
        self.applied += 1

    def _reject(self, subject: str, data: bytes, reason: str) -> None:
        _log.warning("downlink message rejected", subject=subject, reason=reason)
        self.ship.dead_letter(DeadLetter("downlink", reason, bytes(data[:4096]), time.time()))
