"""Wire and API contracts (pydantic v2).

Every message carries `schema_version`, `tracking_id`, `ship_id` and a timezone-aware UTC
`ts`. An incident changes by emitting a new `version`; receivers keep the highest version,
so replays and duplicates are harmless.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.ids import new_id
from shared.taxonomy import IncidentStatus, IncidentType, Severity

SCHEMA_VERSION = 1
MAX_TEXT = 8192


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]
DeviceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
ShipId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Contract(BaseModel):
    """Strict by default: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


# ---------------------------------------------------------------- ingest (HTTP / NATS)


class LogRecord(Contract):
    ts: UtcDatetime
    device: DeviceId
    app: str = Field(default="-", max_length=128)
    severity: int = Field(default=6, ge=0, le=7)
    message: str = Field(max_length=MAX_TEXT)


class MetricSample(Contract):
    ts: UtcDatetime
    device: DeviceId
    metric: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v


class IngestBatch(Contract):
    """Body of `POST /api/v3/ingest` and of messages on the local ingest subject."""

    schema_version: Literal[1] = 1
    ship_id: ShipId | None = None
    logs: list[LogRecord] = Field(default_factory=list)
    metrics: list[MetricSample] = Field(default_factory=list)


# ---------------------------------------------------------------- detection and incidents


class Envelope(Contract):
    schema_version: int = SCHEMA_VERSION
    tracking_id: str
    ship_id: ShipId
    ts: UtcDatetime


class Anomaly(Envelope):
    kind: Literal["anomaly"] = "anomaly"
    id: str = Field(default_factory=new_id)
    detector: str
    incident_type: IncidentType
    device: DeviceId
    score: float = Field(ge=0.0, le=1.0)
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class EvidenceRef(Contract):
    anomaly_id: str
    tracking_id: str
    ts: UtcDatetime
    detector: str
    device: str
    score: float
    summary: str
    # a metric's latest values up to the anomaly, oldest first (none for log evidence)
    values: list[float] | None = Field(default=None, max_length=64)


class TimelineEntry(Contract):
    ts: UtcDatetime
    version: int
    event: str  # opened | evidence | severity | status | suppressed | resolved ...
    detail: str = ""


class Incident(Envelope):
    kind: Literal["incident"] = "incident"
    id: str
    version: int = Field(ge=1)
    type: IncidentType
    severity: Severity
    status: IncidentStatus
    device: str  # root-cause candidate
    devices: list[str]
    service: str | None = None
    path: str | None = None
    corr_key: str
    suppress_key: str
    suppressed_reason: str | None = None
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    anomaly_count: int = 0
    evidence: list[EvidenceRef] = Field(default_factory=list)
    runbook_refs: list[str] = Field(default_factory=list)
    narrative: str = ""
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    resolved_at: UtcDatetime | None = None


class Insight(Envelope):
    kind: Literal["insight"] = "insight"
    incident_id: str
    narrative: str
    citations: list[str] = Field(default_factory=list)
    model: str
    latency_ms: float
    cache_hit: bool = False
    fallback: bool = False


class Heartbeat(Envelope):
    kind: Literal["heartbeat"] = "heartbeat"
    agent_version: str
    policy_version: str
    link_state: Literal["up", "degraded", "down", "unknown"] = "unknown"
    queue_depths: dict[str, int] = Field(default_factory=dict)
    oldest_unsent_s: float | None = None
    open_incidents: dict[str, int] = Field(default_factory=dict)


class Command(Envelope):
    """Downlink: shore → one ship."""

    kind: Literal["command"] = "command"
    id: str = Field(default_factory=new_id)
    action: Literal["ack", "resolve", "suppress", "policy_bundle", "approval_decision"]
    incident_id: str | None = None
    actor: str
    reason: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)


class ActionResult(Envelope):
    kind: Literal["action_result"] = "action_result"
    command_id: str
    action: str
    target: str
    ok: bool
    detail: str = ""


ActionStatus = Literal[
    "pending",  # waiting for approval
    "approved",  # approved, waiting to run (a high-risk action waits for its window)
    "running",
    "succeeded",
    "failed",  # a step failed; rolled back where the action has a rollback
    "rejected",
    "interrupted",  # the agent stopped while it ran: never run again on its own
]
FINISHED_ACTIONS = ("succeeded", "failed", "rejected", "interrupted")


class ActionRequest(Envelope):
    """Uplink: a remediation the ship proposes for an incident, and where it stands. Each
    change is a new `version`, like incidents, so the hub keeps the latest."""

    kind: Literal["action_request"] = "action_request"
    id: str = Field(default_factory=new_id)
    version: int = Field(default=1, ge=1)
    incident_id: str
    action: str
    target: str
    runbook: str | None = None
    risk: Literal["low", "medium", "high"]
    approval: Literal["auto", "single", "two_person"]
    approvals_needed: int = Field(ge=0, le=5)
    requested_by: str
    blast_radius: list[str] = Field(default_factory=list)  # devices the action touches
    pre_check: bool = False
    post_check: bool = False
    status: ActionStatus = "pending"
    approvers: list[str] = Field(default_factory=list)
    detail: str = ""


class Receipt(Envelope):
    """Downlink: what the hub has durably stored, as "incident_id:version" keys."""

    kind: Literal["receipt"] = "receipt"
    stored: list[str]


class Gap(Envelope):
    """Uplink: incident versions a ship's bounded outbox evicted before they were sent,
    so the hub knows exactly what it will never receive."""

    kind: Literal["gap"] = "gap"
    evicted: list[str]  # "incident_id:version"
    reason: str


WireMessage = Annotated[
    Anomaly
    | Incident
    | Insight
    | Heartbeat
    | Command
    | ActionResult
    | ActionRequest
    | Receipt
    | Gap,
    Field(discriminator="kind"),
]
