"""The simulator's stream as the agent's ingest hands it to the pipeline (raw syslog bytes,
metric samples), for replays that skip the sockets: tests, benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from shared.ids import new_id
from ship_agent.records import MetricEvent, RawInput
from ship_agent.simulator.events import SimEvent


class _Pipeline(Protocol):
    def run_batch(self, items: list[RawInput | MetricEvent]) -> object: ...


def agent_input(ev: SimEvent, received: float) -> RawInput | MetricEvent:
    if ev.kind == "log":
        return RawInput(ev.line, "udp", received)
    return MetricEvent(new_id(), ev.ts, ev.device, ev.metric, ev.value, received, "http")


def replay_into(pipeline: _Pipeline, events: Iterable[SimEvent], batch: int = 2000) -> int:
    """Runs the events through the pipeline in micro-batches; returns how many."""
    items: list[RawInput | MetricEvent] = []
    n = 0
    for ev in events:
        items.append(agent_input(ev, time.time()))
        if len(items) >= batch:
            pipeline.run_batch(items)
            n += len(items)
            items = []
    pipeline.run_batch(items)
    return n + len(items)
