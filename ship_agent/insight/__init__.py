"""The insight path on the ship: incidents explained off the fast path.

knowledge.py (runbooks in SQLite FTS5, the ship's own incident history) -> analyzer.py
(rules: cause, path, runbooks, the deterministic narrative) -> narrator.py (few-shot prompt
for the local model, citation check) -> worker.py (queue, deadline, retries, circuit
breaker, cache) -> back to the pipeline as a new incident version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policies import runbooks_dir
from shared.llm import Generator, open_generator
from shared.policy import Policy
from shared.settings import AgentSettings
from shared.taxonomy import IncidentStatus
from ship_agent.correlate import IncidentState
from ship_agent.insight.knowledge import Knowledge
from ship_agent.insight.worker import InsightWorker
from ship_agent.metrics import AgentMetrics
from ship_agent.records import Explanation
from sync import bundles
from sync.privacy import Redactor

# Versions that change what an incident is deserve a (new) explanation; the rest do not.
_EXPLAIN_ON = frozenset({"opened", "type", "severity", "escalated"})
UNEXPLAINED = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)  # statuses worth explaining


def needs_insight(inc: IncidentState) -> bool:
    return inc.status in UNEXPLAINED and any(
        t["version"] == inc.version and t["event"] in _EXPLAIN_ON for t in inc.timeline
    )


def ship_runbooks(data_dir: Path) -> Path:
    """The runbooks of the policy bundle shore sent, if it sent any, else the built-in set."""
    active = bundles.active_dir(data_dir)
    if active is not None and any((active / "runbooks").glob("*.md")):
        return active / "runbooks"
    return runbooks_dir()


def start_worker(
    settings: AgentSettings,
    policy: Policy,
    metrics: AgentMetrics,
    deliver: Callable[[Explanation], None],
) -> InsightWorker:
    llm = policy.llm

    def open_model() -> Generator:
        return open_generator(
            llm.model_path,
            n_threads=llm.n_threads,
            url=settings.llm_url,
            model=settings.llm_model or llm.model,
        )

    worker = InsightWorker(
        llm,
        settings.ship_id,
        Knowledge(settings.data_dir / "agent.db", ship_runbooks(settings.data_dir)),
        policy.ingest.role_of,
        Redactor.from_policy(policy.privacy).redact_text,
        open_model,
        deliver,
        metrics,
    )
    worker.start()
    return worker


def reconfigure(worker: InsightWorker, policy: Policy, data_dir: Path) -> None:
    """A new policy bundle: its limits, runbooks and redaction rules; the model stays loaded."""
    worker.reconfigure(
        policy.llm,
        Knowledge(data_dir / "agent.db", ship_runbooks(data_dir)),
        policy.ingest.role_of,
        Redactor.from_policy(policy.privacy).redact_text,
    )


__all__ = [
    "UNEXPLAINED",
    "InsightWorker",
    "Knowledge",
    "needs_insight",
    "reconfigure",
    "ship_runbooks",
    "start_worker",
]
