"""The fast path's own records.

Pydantic models (shared.models) validate what arrives over HTTP and what crosses the
link; inside the pipeline every event is one of these slotted classes instead, because
building a validated model per event would cost more than the rest of the fast path.
Times are epoch seconds (UTC); `received` is when ingest first saw the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# syslog severities (RFC 5424 §6.2.1)
EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)


@dataclass(slots=True)
class LogEvent:
    tracking_id: str
    ts: float
    device: str
    app: str
    severity: int
    message: str
    received: float
    source: str  # udp | tcp | http | nats | file
    facility: int = 1
    template_id: int = 0
    template: str = ""


@dataclass(slots=True)
class MetricEvent:
    tracking_id: str
    ts: float
    device: str
    metric: str
    value: float
    received: float
    source: str


Event = LogEvent | MetricEvent


@dataclass(slots=True)
class RawInput:
    """Bytes as they arrived, before parsing; what a dead letter keeps."""

    data: bytes
    source: str
    received: float
    peer: str = ""


@dataclass(slots=True)
class DeadLetter:
    source: str
    reason: str
    data: bytes
    received: float
    peer: str = ""


@dataclass(slots=True)
class AnomalyHit:
    """What a detector says about one event: enough to build an `Anomaly` with evidence."""

    detector: str
    incident_type: str
    device: str
    ts: float
    score: float
    tracking_id: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # what makes two hits "the same signal" (metric name, template id, rule)


@dataclass(slots=True)
class Explanation:
    """An insight for an incident, from the insight worker back to the pipeline, which
    makes it a new incident version (and sends the `Insight` with its metadata along)."""

    incident_id: str
    narrative: str
    runbook_refs: list[str]
    insight: Any  # shared.models.Insight
    note: str = ""  # why the deterministic narrative was used, if it was
