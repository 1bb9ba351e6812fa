"""Correlate: anomalies -> incidents.

Anomalies that tell one story join one incident: the same type (or type group) on one
device, or anomalies of path types on devices of one network path, within the type's
window. Repeats of one signal within the dedup TTL only count; maintenance windows and
operator suppressions are recorded as suppressed incidents, never dropped. Each incident
that changed in a batch gets exactly one new version, which the store commits together
with its outbox row.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from shared.ids import new_id
from shared.models import EvidenceRef, Incident, TimelineEntry
from shared.policy import CorrelatePolicy, MaintenanceWindow
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from ship_agent.enrich import AnomalyRecord

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ACTIVE = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.SUPPRESSED)


@dataclass
class IncidentState:
    id: str
    tracking_id: str
    type: IncidentType
    severity: Severity
    status: IncidentStatus
    device: str
    path: str | None
    corr_key: str
    first_seen: float
    last_seen: float
    version: int = 0
    devices: list[str] = field(default_factory=list)
    suppressed_reason: str | None = None
    anomaly_count: int = 0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    root_rank: tuple[int, float] = (1 << 30, 0.0)
    escalated: bool = False
    resolved_at: float | None = None
    fingerprints: dict[str, float] = field(default_factory=dict)
    narrative: str = ""
    runbook_refs: list[str] = field(default_factory=list)

    @property
    def suppress_key(self) -> str:
        return f"{self.type.value}:{self.device}"

    def to_model(self, ship_id: str) -> Incident:
        return Incident(
            tracking_id=self.tracking_id,
            ship_id=ship_id,
            ts=datetime.fromtimestamp(self.last_seen, UTC),
            id=self.id,
            version=self.version,
            type=self.type,
            severity=self.severity,
            status=self.status,
            device=self.device,
            devices=self.devices,
            path=self.path,
            corr_key=self.corr_key,
            suppress_key=self.suppress_key,
            suppressed_reason=self.suppressed_reason,
            first_seen=datetime.fromtimestamp(self.first_seen, UTC),
            last_seen=datetime.fromtimestamp(self.last_seen, UTC),
            anomaly_count=self.anomaly_count,
            evidence=[EvidenceRef.model_validate(e) for e in self.evidence],
            runbook_refs=self.runbook_refs,
            narrative=self.narrative,
            confidence=max((e["score"] for e in self.evidence), default=0.0),
            timeline=[TimelineEntry.model_validate(t) for t in self.timeline],
            resolved_at=(
                datetime.fromtimestamp(self.resolved_at, UTC) if self.resolved_at else None
            ),
        )

    @classmethod
    def from_model(cls, m: Incident) -> IncidentState:
        state = cls(
            id=m.id,
            tracking_id=m.tracking_id,
            type=m.type,
            severity=m.severity,
            status=m.status,
            device=m.device,
            path=m.path,
            corr_key=m.corr_key,
            first_seen=m.first_seen.timestamp(),
            last_seen=m.last_seen.timestamp(),
            version=m.version,
            devices=list(m.devices),
            suppressed_reason=m.suppressed_reason,
            anomaly_count=m.anomaly_count,
            evidence=[e.model_dump(mode="json") for e in m.evidence],
            timeline=[t.model_dump(mode="json") for t in m.timeline],
            narrative=m.narrative,
            runbook_refs=list(m.runbook_refs),
        )
        state.escalated = any(t.event == "escalated" for t in m.timeline)
        return state


class CorrelateStage:
    def __init__(self, policy: CorrelatePolicy) -> None:
        self._p = policy
        self._rank = {t: i for i, t in enumerate(policy.type_precedence)}
        self._group = {t: g for g, types in policy.type_groups.items() for t in types}
        self.active: dict[str, IncidentState] = {}  # corr_key -> incident
        self.by_id: dict[str, IncidentState] = {}
        self.suppressions: dict[str, float] = {}  # suppress_key -> until
        self._dirty: dict[str, list[tuple[str, str, float]]] = {}

    # ---------------------------------------------------------------- anomalies

    def apply(self, records: list[AnomalyRecord]) -> None:
        for rec in records:
            hit = rec.hit
            itype = IncidentType(hit.incident_type)
            key = self._corr_key(itype, hit.device, rec.path)
            inc = self.active.get(key)
            if inc is not None and hit.ts - inc.last_seen > self._p.windows_s[inc.type]:
                self._resolve(inc, hit.ts, "quiet for its window")
                inc = None
            if inc is None:
                if hit.score < self._p.open_min_score:
                    self._corroborate(rec)
                    continue
                inc = self._open(rec, itype, key)
            self._add(inc, rec, itype)

    def _corr_key(self, itype: IncidentType, device: str, path: str | None) -> str:
        if path is not None and itype in self._p.path_types:
            return f"path:{path}"
        return f"dev:{device}:{self._group.get(itype, itype.value)}"

    def _corroborate(self, rec: AnomalyRecord) -> None:
        """A weak anomaly joins an active incident on its device, if there is one."""
        device = rec.hit.device
        for inc in self.active.values():
            if device in inc.devices and rec.hit.ts - inc.last_seen <= self._p.windows_s[inc.type]:
                self._add(inc, rec, None)
                return

    def _open(self, rec: AnomalyRecord, itype: IncidentType, key: str) -> IncidentState:
        hit = rec.hit
        inc = IncidentState(
            id=new_id(),
            tracking_id=hit.tracking_id,
            type=itype,
            severity=self._p.severity[itype],
            status=IncidentStatus.OPEN,
            device=hit.device,
            path=rec.path if key.startswith("path:") else None,
            corr_key=key,
            first_seen=hit.ts,
            last_seen=hit.ts,
        )
        self.active[key] = inc
        self.by_id[inc.id] = inc
        self._note(inc, "opened", f"{itype.value} on {hit.device}: {hit.summary}", hit.ts)
        window = self._maintenance(hit.device, hit.ts)
        if window is not None:
            inc.status = IncidentStatus.SUPPRESSED
            inc.suppressed_reason = f"maintenance window '{window.name}'"
            self._note(inc, "suppressed", inc.suppressed_reason, hit.ts)
        elif hit.ts < self.suppressions.get(inc.suppress_key, float("-inf")):
            inc.status = IncidentStatus.SUPPRESSED
            inc.suppressed_reason = f"suppressed by operator ({inc.suppress_key})"
            self._note(inc, "suppressed", inc.suppressed_reason, hit.ts)
        return inc

    def _add(self, inc: IncidentState, rec: AnomalyRecord, itype: IncidentType | None) -> None:
        hit = rec.hit
        rec.incident_id = inc.id
        inc.anomaly_count += 1
        inc.last_seen = max(inc.last_seen, hit.ts)
        fp = f"{hit.device}|{hit.detector}|{hit.key}"
        seen = inc.fingerprints.get(fp)
        inc.fingerprints[fp] = hit.ts
        if seen is not None and hit.ts - seen < self._p.dedup_ttl_s:
            return  # a repeat: counted, no new evidence, no new version
        if len(inc.evidence) < self._p.max_evidence:
            # one series' recent values per incident (its first metric evidence), for the
            # sparkline ashore: every version carries them over the satellite link
            sparked = any(e.get("values") for e in inc.evidence)
            inc.evidence.append(
                {
                    "anomaly_id": rec.id,
                    "tracking_id": hit.tracking_id,
                    "ts": hit.ts,
                    "detector": hit.detector,
                    "device": hit.device,
                    "score": hit.score,
                    "summary": hit.summary,
                    "values": None if sparked else rec.context.get("recent"),
                }
            )
        if hit.device not in inc.devices:
            inc.devices.append(hit.device)
        rank = (rec.path_pos if inc.path else 0, hit.ts)
        if itype is not None and rank < inc.root_rank:
            inc.root_rank = rank
            inc.device = hit.device
        self._note(inc, "evidence", f"{hit.detector} on {hit.device}: {hit.summary}", hit.ts)
        if itype is not None and self._rank.get(itype, 99) < self._rank.get(inc.type, 99):
            self._note(inc, "type", f"{inc.type.value} -> {itype.value}", hit.ts)
            inc.type = itype
            self._set_severity(inc, self._p.severity[itype], hit.ts)
        if not inc.escalated and inc.anomaly_count >= self._p.escalation.anomaly_count:
            self._escalate(inc, f"{inc.anomaly_count} anomalies", hit.ts)

    # ---------------------------------------------------------------- time and commands

    def tick(self, now: float) -> None:
        """Escalate long-running incidents, resolve quiet ones, forget expired suppressions."""
        if self.suppressions:
            self.suppressions = {k: until for k, until in self.suppressions.items() if until > now}
        for inc in list(self.active.values()):
            if now - inc.last_seen > self._p.windows_s[inc.type]:
                self._resolve(inc, now, "quiet for its window")
            elif not inc.escalated and now - inc.first_seen >= self._p.escalation.after_s:
                self._escalate(inc, f"open for {now - inc.first_seen:.0f} s", now)

    def command(self, action: str, incident_id: str, actor: str, reason: str, now: float) -> str:
        """Apply an operator action; returns the new status or raises ValueError."""
        inc = self.by_id.get(incident_id)
        if inc is None:
            raise LookupError(f"incident {incident_id} is not active on this ship")
        who = f"{actor}: {reason}" if reason else actor
        if action == "ack":
            if inc.status is IncidentStatus.OPEN:
                inc.status = IncidentStatus.ACKNOWLEDGED
                self._note(inc, "acknowledged", who, now)
        elif action == "resolve":
            self._resolve(inc, now, f"resolved by {who}")
        elif action == "suppress":
            self.suppressions[inc.suppress_key] = now + self._p.suppression_ttl_s
            inc.status = IncidentStatus.SUPPRESSED
            inc.suppressed_reason = f"suppressed by {who}"
            self._note(inc, "suppressed", inc.suppressed_reason, now)
        else:
            raise ValueError(f"unknown action {action!r}")
        return inc.status.value

    def explain(
        self,
        incident_id: str,
        load: Callable[[str], Incident | None],
        narrative: str,
        refs: list[str],
        detail: str,
        now: float,
    ) -> bool:
        """Attach an insight as the incident's next version. A resolved incident is no
        longer held here; its stored version (`load`) is taken up again for this."""
        inc = self.by_id.get(incident_id)
        if inc is None:
            stored = load(incident_id)
            if stored is None:
                return False
            inc = self.by_id[incident_id] = IncidentState.from_model(stored)
        inc.narrative, inc.runbook_refs = narrative, refs
        self._note(inc, "insight", detail, now)
        return True

    def take_versions(self) -> list[IncidentState]:
        """Incidents changed since the last call, each with its version bumped once."""
        out = []
        for inc_id, notes in self._dirty.items():
            inc = self.by_id[inc_id]
            inc.version += 1
            for event, detail, ts in notes:
                inc.timeline.append(
                    {"ts": ts, "version": inc.version, "event": event, "detail": detail}
                )
            out.append(inc)
            if inc.status is IncidentStatus.RESOLVED:
                del self.by_id[inc_id]
        self._dirty = {}
        return out

    def restore(self, incidents: list[Incident]) -> None:
        for m in incidents:
            if m.status in _ACTIVE:
                inc = IncidentState.from_model(m)
                self.active[inc.corr_key] = inc
                self.by_id[inc.id] = inc

    # ---------------------------------------------------------------- helpers

    def _note(self, inc: IncidentState, event: str, detail: str, ts: float) -> None:
        self._dirty.setdefault(inc.id, []).append((event, detail, ts))

    def _resolve(self, inc: IncidentState, now: float, why: str) -> None:
        inc.status = IncidentStatus.RESOLVED
        inc.resolved_at = now
        if self.active.get(inc.corr_key) is inc:
            del self.active[inc.corr_key]
        self._note(inc, "resolved", why, now)

    def _escalate(self, inc: IncidentState, why: str, ts: float) -> None:
        inc.escalated = True
        self._set_severity(inc, inc.severity.escalated(), ts, f"escalated: {why}")

    def _set_severity(self, inc: IncidentState, sev: Severity, ts: float, why: str = "") -> None:
        if inc.escalated and not why:
            sev = sev.escalated()
        if sev.rank > inc.severity.rank:
            self._note(inc, "escalated" if why else "severity", why or f"-> {sev.value}", ts)
            inc.severity = sev

    def _maintenance(self, device: str, ts: float) -> MaintenanceWindow | None:
        for w in self._p.maintenance_windows:
            if not any(fnmatchcase(device, d) for d in w.devices):
                continue
            if w.start_ts is not None and w.end_ts is not None:
                if w.start_ts <= ts < w.end_ts:
                    return w
            elif w.weekday and w.start and w.end:
                t = time.gmtime(ts)
                if _WEEKDAYS[t.tm_wday] != w.weekday:
                    continue
                midnight = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
                start = midnight + _hhmm(w.start)
                end = midnight + _hhmm(w.end)
                if start <= ts < end:
                    return w
        return None


def _hhmm(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60
