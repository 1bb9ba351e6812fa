"""Level shifts per series: a two-sided CUSUM (Page's test) of the standardised residual.

A shift of one or two deviations is invisible sample by sample but adds up: each side of
the CUSUM accumulates residuals beyond `drift` and reports when the sum passes `threshold`,
then starts again. It sees the slow drifts and steps that point tests miss (a temperature
creeping up after a fan fails, a latency plateau), and it learns the same baseline, daily
profile included, so a busy evening is not a shift.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from shared.policy import DetectPolicy
from ship_agent.detect.baseline import Baseline
from ship_agent.records import AnomalyHit, MetricEvent

_Z_CAP = 50.0


class _Series(Baseline):
    __slots__ = ("up", "down")

    def __init__(self, bins: int) -> None:
        super().__init__(bins)
        self.up = 0.0
        self.down = 0.0


class ChangepointDetector:
    name = "changepoint"
    state = ("series",)

    def __init__(self, policy: DetectPolicy) -> None:
        self._policy = policy
        self._p = policy.changepoint
        self._skip: dict[str, bool] = {}
        self.series: dict[tuple[str, str], _Series] = {}

    def observe(self, ev: MetricEvent) -> AnomalyHit | None:
        p = self._p
        skip = self._skip.get(ev.metric)
        if skip is None:
            skip = self._skip[ev.metric] = any(fnmatchcase(ev.metric, x) for x in p.exclude)
        if skip:
            return None
        key = (ev.device, ev.metric)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(p.daily_bins)
        s.score(ev.ts, ev.value, p)
        if s.n <= p.warmup_points:
            return None
        z = max(-_Z_CAP, min(_Z_CAP, s.z))
        s.up = max(0.0, s.up + z - p.drift)
        s.down = max(0.0, s.down - z - p.drift)
        total = max(s.up, s.down)
        if total <= p.threshold:
            return None
        direction = "up" if s.up >= s.down else "down"
        s.up = s.down = 0.0
        if s.hold(p):
            return None
        s.last_hit = s.n
        return AnomalyHit(
            detector="changepoint",
            incident_type=self._policy.type_of_metric(ev.metric).value,
            device=ev.device,
            ts=ev.ts,
            score=round(p.weight * total / (total + p.threshold), 4),
            tracking_id=ev.tracking_id,
            summary=(
                f"{ev.metric} shifted {direction}: now {ev.value:g}, expected about {s.expected:g}"
            ),
            evidence={
                "series": ev.metric,
                "value": ev.value,
                "baseline": s.expected,
                "direction": direction,
                "cusum": round(total, 1),
            },
            key=ev.metric,
        )
