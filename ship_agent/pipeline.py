"""The fast path, one micro-batch at a time:

    parse -> templates -> detect -> enrich -> correlate -> commit (one SQLite transaction)

Pure and synchronous: the asyncio runner (ship_agent.agent) feeds it; tests and benchmarks
call `run_batch` directly. Each stage stamps the batch, which is what `/trace` shows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.ids import new_id
from shared.models import ActionResult
from shared.policy import Policy
from shared.taxonomy import priority_for
from ship_agent.correlate import CorrelateStage
from ship_agent.detect import DetectStage
from ship_agent.enrich import EnrichStage
from ship_agent.metrics import STAGES, AgentMetrics
from ship_agent.parse import ParseError, parse_syslog
from ship_agent.records import DeadLetter, Explanation, LogEvent, MetricEvent, RawInput
from ship_agent.store import Batch, Store
from ship_agent.templates import TemplateStage

_STATE_TEMPLATES = "templates"
_STATE_DETECTORS = "detectors"
_STATE_DEVICE = "hst/"  # + device id: one HalfSpaceTrees model per row


@dataclass(slots=True)
class OperatorCommand:
    """ack / resolve / suppress, applied in order with the batch it arrives in."""

    action: str
    incident_id: str
    actor: str
    reason: str = ""
    command_id: str | None = None  # set when it came from shore: recorded with its effect
    result: Any = None  # set after commit: new status, or the exception
    done: Any = field(default=None)  # an asyncio.Future when submitted from the API


Item = RawInput | LogEvent | MetricEvent | DeadLetter | OperatorCommand | Explanation


class Pipeline:
    def __init__(self, policy: Policy, store: Store, metrics: AgentMetrics | None = None) -> None:
        self.policy = policy
        self.store = store
        self.metrics = metrics or AgentMetrics()
        self.templates = TemplateStage(policy.detect.templates)
        self.detect = DetectStage(policy)
        self.enrich = EnrichStage(policy)
        self.correlate = CorrelateStage(policy.correlate)
        self.clock = 0.0  # stream time: the newest event time seen, advanced by the wall clock
        self._clock_wall = time.time()
        self._device_cursor = 0

    # ---------------------------------------------------------------- life cycle

    def warm_start(self) -> None:
        """Restore learned state and active incidents from the store."""
        blob = self.store.load_state(_STATE_TEMPLATES)
        if blob:
            self.templates.load_state(blob)
        blob = self.store.load_state(_STATE_DETECTORS)
        if blob:
            self.detect.load_state(blob)
        if self.detect.hst is not None:
            self.detect.hst.saved = {
                name[len(_STATE_DEVICE) :]: model
                for name, model in self.store.load_states(_STATE_DEVICE).items()
            }
        self.correlate.restore(self.store.active_incidents())
        for device, itype, ts in self.store.recent_anomalies(time.time() - 86_400):
            self.enrich.remember(device, itype, ts)
        self.enrich.last_incident.update(self.store.last_incidents_by_device())
        self.metrics.active_incidents.set(len(self.correlate.active))

    def checkpoint(self) -> None:
        """All learned state at once (shutdown)."""
        self.checkpoint_core()
        self.checkpoint_devices(None)

    def checkpoint_core(self) -> None:
        """Templates and the light detectors: small, saved whole."""
        self.store.save_states(
            {
                _STATE_TEMPLATES: self.templates.dump_state(),
                _STATE_DETECTORS: self.detect.dump_state(),
            }
        )

    def checkpoint_devices(self, count: int | None) -> int:
        """The next `count` device models in turn (all when None); returns how many."""
        hst = self.detect.hst
        if hst is None or not hst.devices:
            return 0
        names = list(hst.devices)
        if count is not None and count < len(names):
            start = self._device_cursor % len(names)
            names = (names[start:] + names[:start])[:count]
            self._device_cursor = start + count
        self.store.save_states({_STATE_DEVICE + d: hst.dump_device(d) for d in names})
        return len(names)

    # ---------------------------------------------------------------- one batch

    def run_batch(self, items: Sequence[Item]) -> Batch:
        t0 = time.time()
        b = Batch(stages={"start": t0})
        logs, metrics, dead = b.logs, b.metrics, b.dead_letters
        commands: list[OperatorCommand] = []
        explanations: list[Explanation] = []
        for it in items:
            if isinstance(it, RawInput):
                try:
                    logs.append(parse_syslog(it, new_id()))
                except ParseError as exc:
                    dead.append(DeadLetter(it.source, str(exc), it.data, it.received, it.peer))
            elif isinstance(it, MetricEvent):
                metrics.append(it)
            elif isinstance(it, LogEvent):
                logs.append(it)
            elif isinstance(it, DeadLetter):
                dead.append(it)
            elif isinstance(it, Explanation):
                explanations.append(it)
            else:
                commands.append(it)
        t1 = b.stages["parse"] = time.time()

        self.templates.apply(logs)
        b.templates, _ = self.templates.take_changes()
        t2 = b.stages["template"] = time.time()

        hits = self.detect.apply(logs, metrics)
        t3 = b.stages["detect"] = time.time()

        self.enrich.observe_metrics(metrics)
        b.anomalies = self.enrich.apply(hits)
        t4 = b.stages["enrich"] = time.time()

        newest = max(
            max((e.ts for e in logs), default=0.0), max((x.ts for x in metrics), default=0.0)
        )
        if newest > self.clock:
            self.clock, self._clock_wall = newest, t4
        else:
            self.clock += t4 - self._clock_wall
            self._clock_wall = t4
        c = self.correlate
        c.apply(b.anomalies)
        c.tick(self.clock)
        for cmd in commands:
            try:
                cmd.result = c.command(cmd.action, cmd.incident_id, cmd.actor, cmd.reason, t4)
                b.audit.append((t4, cmd.actor, cmd.action, cmd.incident_id, cmd.reason))
            except (LookupError, ValueError) as exc:
                cmd.result = exc
            if cmd.command_id is not None:
                b.applied.append(self._result_of(cmd, t4))
        for e in explanations:
            how = f"{e.insight.model}: {e.note}" if e.note else e.insight.model
            if c.explain(e.incident_id, self.store.incident, e.narrative, e.runbook_refs, how, t4):
                b.insights.append((e.insight, priority_for(c.by_id[e.incident_id].severity)))
        b.incidents = c.take_versions()
        for inc in b.incidents:
            self.enrich.last_incident[inc.device] = {
                "id": inc.id,
                "type": inc.type.value,
                "status": inc.status.value,
                "ts": inc.first_seen,
            }
        t5 = b.stages["correlate"] = time.time()

        self.store.commit(b)
        t6 = time.time()

        self._observe(b, len(items), [t0, t1, t2, t3, t4, t5, t6])
        return b

    def _result_of(self, cmd: OperatorCommand, ts: float) -> ActionResult:
        failed = isinstance(cmd.result, Exception)
        return ActionResult(
            tracking_id=new_id(),
            ship_id=self.store.ship_id,
            ts=datetime.fromtimestamp(ts, UTC),
            command_id=cmd.command_id or "",
            action=cmd.action,
            target=cmd.incident_id,
            ok=not failed,
            detail=str(cmd.result) if failed else f"status {cmd.result}",
        )

    def _observe(self, b: Batch, n_items: int, marks: list[float]) -> None:
        m = self.metrics
        for stage, start, end in zip(STAGES, marks, marks[1:], strict=False):
            m.stage_seconds.labels(stage).observe(end - start)
        done = marks[-1]
        latency = m.e2e_seconds.observe
        for ev in b.logs:
            latency(done - ev.received)
        for sample in b.metrics:
            latency(done - sample.received)
        m.batch_size.observe(n_items)
        counts = Counter(("log", ev.source) for ev in b.logs)
        counts.update(("metric", sample.source) for sample in b.metrics)
        for (kind, source), n in counts.items():
            m.events.labels(kind, source).inc(n)
        for d in b.dead_letters:
            m.dead_letters.labels(d.source).inc()
        for a in b.anomalies:
            m.anomalies.labels(a.hit.detector.split(":")[0]).inc()
        for inc in b.incidents:
            m.incident_versions.labels(inc.type.value).inc()
        m.active_incidents.set(len(self.correlate.active))
