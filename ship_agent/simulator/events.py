"""What the simulator produces: events in time order and the labels that grade the agent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["log", "metric"]


@dataclass(slots=True)
class SimEvent:
    """One log line or one metric sample, as a device on the ship would send it.

    Logs carry the complete syslog message in `line` (no trailing newline); metrics carry
    `metric` and `value`. Slotted and positional so that creating one stays cheap.
    """

    ts: float
    kind: Kind
    device: str
    line: bytes = b""
    metric: str = ""
    value: float = 0.0


@dataclass(slots=True)
class Label:
    """Ground truth for one injected fault: the incident the agent is expected to open."""

    scenario: str
    incident_type: str
    device: str
    start_ts: float
    end_ts: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
