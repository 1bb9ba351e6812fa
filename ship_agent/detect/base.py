"""The one protocol every detector speaks.

A detector sees events one at a time in time order, learns from each, and may return an
`AnomalyHit` carrying its evidence. Its state is plain picklable data, so the agent
resumes warm after a restart. A condition that persists is reported again every
`detect.repeat_s` seconds, which keeps its incident open without a new version per sample.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from ship_agent.records import AnomalyHit, LogEvent, MetricEvent

E = TypeVar("E", LogEvent, MetricEvent, contravariant=True)


class Detector(Protocol, Generic[E]):
    name: str
    state: tuple[str, ...]  # attributes that hold learned state (pickled at checkpoints)

    def observe(self, ev: E) -> AnomalyHit | None: ...
