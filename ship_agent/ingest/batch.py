"""Validated JSON batches (HTTP and the local NATS subject) -> fast-path events."""

from __future__ import annotations

from shared.ids import new_id
from shared.models import IngestBatch
from ship_agent.records import LogEvent, MetricEvent


class WrongShip(ValueError):
    pass


def events_from_batch(
    batch: IngestBatch, ship_id: str, source: str, received: float
) -> list[LogEvent | MetricEvent]:
    if batch.ship_id is not None and batch.ship_id != ship_id:
        raise WrongShip(f"batch is for ship {batch.ship_id!r}, this is {ship_id!r}")
    out: list[LogEvent | MetricEvent] = [
        LogEvent(
            new_id(), r.ts.timestamp(), r.device, r.app, r.severity, r.message, received, source
        )
        for r in batch.logs
    ]
    out.extend(
        MetricEvent(new_id(), s.ts.timestamp(), s.device, s.metric, s.value, received, source)
        for s in batch.metrics
    )
    return out
