"""Policy thresholds with durations: e.g. SNR < 7 dB held for 60 s."""

from __future__ import annotations

import operator
from collections.abc import Callable

from shared.policy import DetectPolicy, ThresholdRule
from ship_agent.records import AnomalyHit, MetricEvent

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ThresholdDetector:
    name = "threshold"
    state = ("breaches",)

    def __init__(self, policy: DetectPolicy) -> None:
        self._repeat = policy.repeat_s
        self._rules: dict[str, list[tuple[ThresholdRule, Callable[[float, float], bool]]]] = {}
        for rule in policy.thresholds:
            self._rules.setdefault(rule.metric, []).append((rule, _OPS[rule.op]))
        # (device, rule name) -> [breach start, last report or 0.0, first value]
        self.breaches: dict[tuple[str, str], list[float]] = {}

    def observe(self, ev: MetricEvent) -> AnomalyHit | None:
        rules = self._rules.get(ev.metric)
        if rules is None:
            return None
        hit = None
        for rule, op in rules:
            key = (ev.device, rule.name)
            if not op(ev.value, rule.value):
                self.breaches.pop(key, None)
                continue
            state = self.breaches.get(key)
            if state is None:
                state = self.breaches[key] = [ev.ts, 0.0, ev.value]
            held = ev.ts - state[0]
            if held < rule.for_s or (state[1] and ev.ts - state[1] < self._repeat):
                continue
            state[1] = ev.ts
            candidate = AnomalyHit(
                detector=f"threshold:{rule.name}",
                incident_type=rule.type.value,
                device=ev.device,
                ts=ev.ts,
                score=rule.score,
                tracking_id=ev.tracking_id,
                summary=f"{ev.metric} {rule.op} {rule.value:g} for {held:.0f} s (now {ev.value:g})",
                evidence={
                    "series": ev.metric,
                    "value": ev.value,
                    "first_value": state[2],
                    "threshold": rule.value,
                    "op": rule.op,
                    "held_s": round(held, 1),
                    "since": state[0],
                },
                key=rule.name,
            )
            if hit is None or candidate.score > hit.score:
                hit = candidate
        return hit
