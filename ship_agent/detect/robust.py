"""Point anomalies per series: how unlikely the recent residuals are, and never-seen values.

A fixed z threshold is wrong for most series: some are calm, some are always jumpy. Instead
the mean |z| over the last few samples is compared with its own running distribution, and
a sample is anomalous when that mean is further in the tail than `likelihood_eps` (the
anomaly-likelihood idea: judge a score against the series' own history of scores). A value
beyond everything the series has shown, and far from what was expected, is anomalous at
once. After a report the series stays quiet for `holdoff_points` samples: one alarm per
episode is what a corroborating detector owes, and a run of repeats is only noise.
"""

from __future__ import annotations

import math
from array import array
from fnmatch import fnmatchcase

from shared.policy import DetectPolicy
from ship_agent.detect.baseline import Baseline
from ship_agent.records import AnomalyHit, MetricEvent

_Z_CAP = 50.0  # one wild sample must not dominate the short-term mean for long
_SQRT2 = math.sqrt(2.0)


class _Series(Baseline):
    __slots__ = ("recent", "pos", "total", "mean", "var", "low", "high")

    def __init__(self, bins: int, short: int) -> None:
        super().__init__(bins)
        self.recent = array("f", bytes(4 * short))  # ring of the last |z| values
        self.pos = 0
        self.total = 0.0
        self.mean = 0.0  # running distribution of the short-term mean |z|
        self.var = 0.0
        self.low = math.inf
        self.high = -math.inf


class RobustDetector:
    name = "robust"
    state = ("series",)
    state_version = 2  # per-series Baseline objects (1: lists of floats)

    def __init__(self, policy: DetectPolicy) -> None:
        self._policy = policy
        self._p = policy.robust
        self._skip: dict[str, bool] = {}
        self.series: dict[tuple[str, str], _Series] = {}

    def _skipped(self, metric: str) -> bool:
        skip = self._skip.get(metric)
        if skip is None:
            skip = self._skip[metric] = any(fnmatchcase(metric, p) for p in self._p.exclude)
        return skip

    def observe(self, ev: MetricEvent) -> AnomalyHit | None:
        if self._skipped(ev.metric):
            return None
        p = self._p
        key = (ev.device, ev.metric)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(p.daily_bins, p.short_points)
        x = ev.value
        s.score(ev.ts, x, p)
        recent, pos = s.recent, s.pos
        oldest = recent[pos]
        recent[pos] = min(abs(s.z), _Z_CAP)
        az = recent[pos]  # as stored (float32), so the running total never drifts
        s.total += az - oldest
        s.pos = (pos + 1) % len(recent)
        short = s.total / min(s.n, len(s.recent))
        low, high = s.low, s.high
        s.low, s.high = min(low, x), max(high, x)
        learned = s.n - p.warmup_points
        if learned <= 0:
            return None
        # tail probability of the short-term mean under its own running normal fit, once
        # that fit has seen as many points as the baseline did
        tail = 1.0
        if learned > p.warmup_points and s.var > 0.0:
            tail = 0.5 * math.erfc((short - s.mean) / math.sqrt(s.var) / _SQRT2)
        d = short - s.mean
        a = max(p.likelihood_alpha, 1.0 / learned)
        s.mean += a * d
        s.var = (1.0 - a) * (s.var + a * d * d)
        margin = p.range_margin * (high - low)
        outside = p.range_margin > 0 and (x > high + margin or x < low - margin)
        if tail >= p.likelihood_eps and not (outside and az >= p.range_min_z):
            return None
        if s.hold(p):
            return None
        s.last_hit = s.n
        why = "beyond its whole observed range" if tail >= p.likelihood_eps else "unlikely run"
        return AnomalyHit(
            detector="robust",
            incident_type=self._policy.type_of_metric(ev.metric).value,
            device=ev.device,
            ts=ev.ts,
            score=round(p.weight * az / (az + 2.0), 4),
            tracking_id=ev.tracking_id,
            summary=(
                f"{ev.metric} = {x:g}, expected about {s.expected:g} ({s.z:+.1f} deviations): {why}"
            ),
            evidence={
                "series": ev.metric,
                "value": x,
                "baseline": s.expected,
                "z": round(s.z, 2),
                "short_mean_z": round(short, 2),
                "tail_probability": float(f"{tail:.3g}"),
                "range": [low, high],
            },
            key=ev.metric,
        )
