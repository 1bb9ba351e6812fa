"""Detect: every detector over every event of a batch, in time order.

Policy rules (thresholds, log patterns) decide; statistical detectors (robust statistics,
change points, River HalfSpaceTrees, template novelty) corroborate and explain.
"""

from __future__ import annotations

import pickle
from typing import Any

from shared.policy import Policy
from ship_agent.detect.changepoint import ChangepointDetector
from ship_agent.detect.hst import HalfSpaceTreesDetector
from ship_agent.detect.logs import ErrorBurstDetector, LogPatternDetector, TemplateNoveltyDetector
from ship_agent.detect.robust import RobustDetector
from ship_agent.detect.thresholds import ThresholdDetector
from ship_agent.records import AnomalyHit, LogEvent, MetricEvent

_VERSION = "__version__"


def _version(detector: Any) -> int:
    """Layout version of a detector's state (`state_version`, 1 when it never changed)."""
    return int(getattr(detector, "state_version", 1))


class DetectStage:
    def __init__(self, policy: Policy) -> None:
        d = policy.detect
        self.metric_detectors: list[Any] = [ThresholdDetector(d)]
        if d.robust.enabled:
            self.metric_detectors.append(RobustDetector(d))
        if d.changepoint.enabled:
            self.metric_detectors.append(ChangepointDetector(d))
        self.hst: HalfSpaceTreesDetector | None = None
        if d.hst.enabled and policy.features.get("river_models", True):
            self.hst = HalfSpaceTreesDetector(d)
            self.metric_detectors.append(self.hst)
        self.log_detectors: list[Any] = [LogPatternDetector(d), ErrorBurstDetector(d)]
        if policy.features.get("log_templates", True):
            self.log_detectors.append(TemplateNoveltyDetector(d))

    def apply(self, logs: list[LogEvent], metrics: list[MetricEvent]) -> list[AnomalyHit]:
        hits: list[AnomalyHit] = []
        add = hits.append
        for detector in self.metric_detectors:
            observe = detector.observe
            for m in metrics:
                h = observe(m)
                if h is not None:
                    add(h)
        for detector in self.log_detectors:
            observe = detector.observe
            for ev in logs:
                h = observe(ev)
                if h is not None:
                    add(h)
        hits.sort(key=lambda h: h.ts)
        return hits

    def dump_state(self) -> bytes:
        return pickle.dumps(
            {
                d.name: {_VERSION: _version(d), **{a: getattr(d, a) for a in d.state}}
                for d in self._all()
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def load_state(self, blob: bytes) -> None:
        """Restore each detector whose saved state has its current layout; a detector whose
        layout changed since the checkpoint (an upgrade) starts cold instead of crashing."""
        saved = pickle.loads(blob)
        for d in self._all():
            state = dict(saved.get(d.name, {}))
            if state.pop(_VERSION, 1) != _version(d):
                continue
            for attr, value in state.items():
                setattr(d, attr, value)

    def _all(self) -> list[Any]:
        return self.metric_detectors + self.log_detectors
