"""The deterministic half of an insight: what the incident is, its probable cause, the path
it touches, and the runbooks (with their allowed actions) that apply. Rules over the
evidence decide all of it; the model only gets to phrase it (narrator.py), and when the
model is unavailable or cites something it was not given, `Analysis.narrative()` is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.grounding import insight_evidence
from shared.models import Incident
from ship_agent.insight.knowledge import Knowledge, PastIncident, RunbookHit

FACTS_EVIDENCE = 3


@dataclass(frozen=True)
class Evidence:
    id: str  # E1, E2, ... as the narrative cites it
    detector: str
    device: str
    summary: str  # redacted


@dataclass(frozen=True)
class Analysis:
    incident: Incident
    role: str
    evidence: list[Evidence]
    runbooks: list[RunbookHit]
    history: list[PastIncident]

    @property
    def kind(self) -> str:
        return self.incident.type.value.replace("_", " ")

    @property
    def probable_cause(self) -> str:
        if self.runbooks:
            return self.runbooks[0].book.title
        return f"unclassified {self.kind} on {self.incident.device}"

    @property
    def affected_path(self) -> str:
        devices = " -> ".join(self.incident.devices or [self.incident.device])
        return f"{self.incident.path}: {devices}" if self.incident.path else devices

    @property
    def allowed_actions(self) -> list[str]:
        return list(self.runbooks[0].book.allowed_actions) if self.runbooks else []

    @property
    def citable(self) -> frozenset[str]:
        """The rules chose the runbook: the model may cite that one and the evidence."""
        return frozenset([e.id for e in self.evidence] + [h.book.id for h in self.runbooks[:1]])

    @property
    def signature(self) -> str:
        """Same signature, same explanation: the cache key. Evidence ids are positional, so
        the detectors are part of it in their order."""
        detectors = ",".join(e.detector for e in self.evidence)
        books = ",".join(h.book.id for h in self.runbooks)
        inc = self.incident
        return f"{inc.type.value}|{inc.severity.value}|{inc.device}|{detectors}|{books}"

    def facts(self) -> str:
        """The input the model sees: ids, redacted evidence and the cause the rules chose."""
        inc = self.incident
        lines = [f"Incident: {self.kind}, {inc.severity.value}, on {inc.device} ({self.role})"]
        lines += [f"[{e.id}] {e.summary}" for e in self.evidence[:FACTS_EVIDENCE]]
        if self.runbooks:
            lines.append(f"[{self.runbooks[0].book.id}] cause: {self.probable_cause}")
        return "\n".join(lines)

    def first_action(self) -> str:
        """The chosen runbook's first step, cited: what the crew does first."""
        if not self.runbooks or not self.runbooks[0].first_step:
            return ""
        top = self.runbooks[0]
        step = top.first_step if top.first_step.endswith(".") else f"{top.first_step}."
        return f"First action: {step[:-1]} [{top.book.id}]."

    def narrative(self) -> str:
        """The explanation built by rules alone, citing the same ids the model may cite."""
        inc = self.incident
        said = "; ".join(f"{e.summary} [{e.id}]" for e in self.evidence[:2])
        where = f" on the {inc.path} path" if inc.path else ""
        text = f"{inc.severity.value.capitalize()} {self.kind} on {inc.device}{where}: {said}."
        if self.runbooks:
            top = self.runbooks[0]
            text += f" Likely cause: {top.book.title} [{top.book.id}]."
            if self.first_action():
                text += f" {self.first_action()}"
        if self.history:
            last = self.history[0]
            text += f" Seen on this device {len(self.history)} time(s) before"
            text += f"; last resolved: {last.resolution}." if last.resolution else "."
        return text


def analyze(
    incident: Incident,
    role: str,
    knowledge: Knowledge,
    redact: Callable[[str], str],
) -> Analysis:
    """Strongest evidence first, one line per detector; runbooks by type, role and words."""
    evidence = [
        Evidence(f"E{i}", ref.detector, ref.device, redact(ref.summary))
        for i, ref in enumerate(insight_evidence(incident.evidence), 1)
    ]
    words = " ".join(f"{e.detector} {e.summary}" for e in evidence)
    books = knowledge.runbooks_for(incident.type, role, words)
    past = knowledge.history(incident.id, incident.type, incident.device)
    return Analysis(incident, role, evidence, books, past)
