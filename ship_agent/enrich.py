"""Enrich: give each anomaly the local context an operator asks for first.

Device role, network path and inventory data; how often the same kind of anomaly was seen
on this device in the last hour and day; the last incident on the device; the series'
recent p50/p95. All from memory that is rebuilt from SQLite at start-up, so enrichment
costs nothing per ordinary event beyond keeping a short window of each series.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from shared.ids import new_id
from shared.policy import Policy
from ship_agent.records import AnomalyHit, MetricEvent

_SERIES_KEEP = 120
SPARK_POINTS = 12
_DAY = 86_400.0


@dataclass(slots=True)
class AnomalyRecord:
    id: str
    hit: AnomalyHit
    role: str
    path: str | None
    path_pos: int
    context: dict[str, Any] = field(default_factory=dict)
    incident_id: str | None = None


def _quantile(sorted_values: list[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class EnrichStage:
    def __init__(self, policy: Policy) -> None:
        self._ingest = policy.ingest
        self._paths = policy.correlate.paths
        self._roles: dict[str, tuple[str, str | None, int]] = {}
        self._series: dict[tuple[str, str], deque[float]] = {}
        self._history: dict[tuple[str, str], deque[float]] = {}
        self.last_incident: dict[str, dict[str, Any]] = {}

    def placement(self, device: str) -> tuple[str, str | None, int]:
        """(role, path name or None, position on the path: 0 = most upstream)."""
        placed = self._roles.get(device)
        if placed is None:
            role = self._ingest.role_of(device)
            info = self._ingest.inventory.get(device)
            path, pos = (info.path if info else None), 0
            for name, roles in self._paths.items():
                if (path is None or path == name) and role in roles:
                    path, pos = name, roles.index(role)
                    break
            placed = self._roles[device] = (role, path, pos)
        return placed

    def observe_metrics(self, metrics: list[MetricEvent]) -> None:
        series = self._series
        for m in metrics:
            key = (m.device, m.metric)
            window = series.get(key)
            if window is None:
                window = series[key] = deque(maxlen=_SERIES_KEEP)
            window.append(m.value)

    def remember(self, device: str, incident_type: str, ts: float) -> None:
        """Feed one past anomaly into the 1 h / 24 h counters (used at start-up)."""
        times = self._history.setdefault((device, incident_type), deque())
        times.append(ts)

    def apply(self, hits: list[AnomalyHit]) -> list[AnomalyRecord]:
        out = []
        for hit in hits:
            role, path, pos = self.placement(hit.device)
            times = self._history.setdefault((hit.device, hit.incident_type), deque())
            while times and times[0] < hit.ts - _DAY:
                times.popleft()
            last_hour = sum(1 for t in times if t >= hit.ts - 3600.0)
            context: dict[str, Any] = {
                "role": role,
                "path": path,
                "similar_1h": last_hour,
                "similar_24h": len(times),
            }
            info = self._ingest.inventory.get(hit.device)
            if info is not None and info.location:
                context["location"] = info.location
            last = self.last_incident.get(hit.device)
            if last is not None:
                context["last_incident"] = last
            series = hit.evidence.get("series")
            window = self._series.get((hit.device, series)) if isinstance(series, str) else None
            if window:
                ordered = sorted(window)
                context["p50"] = _quantile(ordered, 0.5)
                context["p95"] = _quantile(ordered, 0.95)
                # the shape of the series up to the anomaly, for a sparkline ashore: few
                # points, two digits, since it rides in every version on the uplink
                recent = islice(window, max(len(window) - SPARK_POINTS, 0), None)
                context["recent"] = [float(f"{v:.2g}") for v in recent]
            times.append(hit.ts)
            out.append(AnomalyRecord(new_id(), hit, role, path, pos, context))
        return out
