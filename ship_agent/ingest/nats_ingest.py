"""The local NATS subject for other on-board producers: same JSON batches as HTTP.

A message that is not a valid batch becomes a dead letter with the reason; the
subscription keeps going.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nats
from pydantic import ValidationError

from shared.models import IngestBatch
from ship_agent.ingest.batch import WrongShip, events_from_batch
from ship_agent.records import DeadLetter, LogEvent, MetricEvent


class NatsIngest:
    def __init__(
        self,
        url: str,
        subject: str,
        ship_id: str,
        submit: Callable[[list[LogEvent | MetricEvent]], bool],
        dead_letter: Callable[[DeadLetter], None],
        max_bytes: int,
    ) -> None:
        self.url, self.subject, self.ship_id = url, subject, ship_id
        self._submit = submit
        self._dead_letter = dead_letter
        self._max = max_bytes
        self._nc: Any = None

    async def start(self) -> None:
        self._nc = await nats.connect(self.url, name=f"seawatch-agent-{self.ship_id}")
        await self._nc.subscribe(self.subject, cb=self._on_message)

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def _on_message(self, msg: Any) -> None:
        received = time.time()
        data: bytes = msg.data
        reason = None
        try:
            if len(data) > self._max:
                raise ValueError(f"oversize: {len(data)} bytes > limit {self._max}")
            batch = IngestBatch.model_validate_json(data)
            if not self._submit(events_from_batch(batch, self.ship_id, "nats", received)):
                reason = "overload: ingest queue full"
        except ValidationError as exc:
            reason = _first_error(exc)
        except (WrongShip, ValueError) as exc:
            reason = str(exc)
        if reason is not None:
            self._dead_letter(DeadLetter("nats", reason, data[:4096], received, msg.subject))


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) or "body"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid batch: {where}: {errors[0]['msg']}{more}"
