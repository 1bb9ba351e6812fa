"""Per-series robust online statistics: EWMA level and EWMA absolute deviation.

Outliers are clipped before they update the level (Huber style), so one spike does not
drag the baseline; the deviation floor keeps flat series from scoring noise as anomalies.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from shared.policy import DetectPolicy
from ship_agent.records import AnomalyHit, MetricEvent

_MEAN_ABS_TO_SD = 1.2533  # E|x - mu| = sigma * sqrt(2/pi) for a normal distribution


class RobustDetector:
    name = "robust"
    state = ("series",)

    def __init__(self, policy: DetectPolicy) -> None:
        p = policy.robust
        self._policy = policy
        self._alpha = p.alpha
        self._z = p.z_threshold
        self._k = p.min_consecutive
        self._warmup = p.warmup_points
        self._floor = p.min_deviation
        self._weight = p.weight
        self._repeat = policy.repeat_s
        self._exclude = p.exclude
        self._skip: dict[str, bool] = {}
        # (device, metric) -> [n, level, mean abs deviation, consecutive, last report]
        self.series: dict[tuple[str, str], list[float]] = {}

    def _skipped(self, metric: str) -> bool:
        skip = self._skip.get(metric)
        if skip is None:
            skip = self._skip[metric] = any(fnmatchcase(metric, p) for p in self._exclude)
        return skip

    def observe(self, ev: MetricEvent) -> AnomalyHit | None:
        if self._skipped(ev.metric):
            return None
        key = (ev.device, ev.metric)
        s = self.series.get(key)
        x = ev.value
        if s is None:
            self.series[key] = [1.0, x, 0.0, 0.0, 0.0]
            return None
        n, level, dev = s[0], s[1], s[2]
        s[0] = n + 1
        if n < self._warmup:
            a = 1.0 / (n + 1)  # plain running mean while warming up
            s[1] = level + a * (x - level)
            s[2] = dev + a * (abs(x - level) - dev)
            return None
        scale = max(dev * _MEAN_ABS_TO_SD, self._floor, abs(level) * 1e-4)
        z = abs(x - level) / scale
        limit = self._z * scale
        clipped = level + max(-limit, min(limit, x - level))
        s[1] = level + self._alpha * (clipped - level)
        s[2] = dev + self._alpha * (min(abs(x - level), limit) - dev)
        if z < self._z:
            s[3] = 0.0
            return None
        s[3] += 1
        if s[3] < self._k or (s[4] and ev.ts - s[4] < self._repeat):
            return None
        s[4] = ev.ts
        strength = 1.0 - self._z / (2.0 * z)
        return AnomalyHit(
            detector="robust",
            incident_type=self._policy.type_of_metric(ev.metric).value,
            device=ev.device,
            ts=ev.ts,
            score=round(self._weight * strength, 4),
            tracking_id=ev.tracking_id,
            summary=f"{ev.metric} = {x:g}, {z:.1f} deviations from its normal {level:g}",
            evidence={"series": ev.metric, "value": x, "baseline": level, "z": round(z, 2)},
            key=ev.metric,
        )
