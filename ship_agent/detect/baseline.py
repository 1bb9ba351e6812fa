"""What "normal" is for one series, learned online: the shared core of the statistical detectors.

An EWMA level and EWMA mean absolute deviation, plus a daily profile: the usual offset from
the level in each slice of the UTC day. Ship traffic follows the day (guests online in the
evening, crew at midday), and so do most metrics; residuals from the profile are what is
left to judge. The level's memory is in samples; the profile's is in days, whatever the
poll interval, so a slice learns from several days and not from the last few minutes.
Slices without `profile_min_days` of samples predict the plain level. State is a few
numbers and two small arrays per series, so it pickles compactly with the detectors.
"""

from __future__ import annotations

from array import array

from shared.policy import BaselinePolicy

DAY_S = 86_400.0
MEAN_ABS_TO_SD = 1.2533  # E|x - mu| = sigma * sqrt(2/pi) for a normal distribution
_RELATIVE_FLOOR = 1e-6  # a deviation below this share of the level is rounding noise


class Baseline:
    """One series' learned normal; `score` judges a sample, then learns from it."""

    __slots__ = ("n", "first_ts", "level", "dev", "offsets", "counts", "z", "expected", "last_hit")

    def __init__(self, bins: int) -> None:
        self.n = 0
        self.first_ts = 0.0
        self.level = 0.0
        self.dev = 0.0
        # float32: a profile needs no more, and hundreds of devices' series add up
        self.offsets = array("f", bytes(4 * bins))
        self.counts = array("f", bytes(4 * bins))
        self.z = 0.0  # standardised residual of the latest sample
        self.expected = 0.0  # what the latest sample was expected to be
        self.last_hit = -(1 << 62)  # sample number of the last reported anomaly

    def score(self, ts: float, x: float, p: BaselinePolicy) -> None:
        """Set `z` and `expected` for sample x at ts, then learn x."""
        n = self.n = self.n + 1
        if n == 1:
            self.first_ts = ts
            self.level = self.expected = x
            self.z = 0.0
            return
        level, dev = self.level, self.dev
        expected = level
        bins = len(self.offsets)
        b = 0
        per_day = 1.0  # samples a slice gets per day
        if bins:
            b = int(ts % DAY_S * bins / DAY_S)
            interval = (ts - self.first_ts) / (n - 1)
            per_day = max(1.0, DAY_S / bins / interval) if interval > 0 else 1.0
            if self.counts[b] >= p.profile_min_days * per_day:
                expected += self.offsets[b]
        residual = x - expected
        scale = max(dev * MEAN_ABS_TO_SD, p.min_deviation, abs(level) * _RELATIVE_FLOOR)
        self.z = residual / scale
        self.expected = expected
        a = max(p.alpha, 1.0 / n)  # a plain running mean until 1/n falls below alpha
        self.level = level + a * (x - level)
        self.dev = dev + a * (abs(residual) - dev)
        if bins:
            count = self.counts[b] + 1.0
            self.counts[b] = count
            rate = max(1.0 / (p.profile_days * per_day), 1.0 / count)
            self.offsets[b] += rate * (x - level - self.offsets[b])

    def hold(self, p: BaselinePolicy) -> bool:
        """True while a new report would repeat the last one (within `holdoff_points`)."""
        return self.n - self.last_hit <= p.holdoff_points
