"""Log signals: policy patterns counted in a window, error-level bursts, new and rare templates."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from shared.policy import DetectPolicy
from ship_agent.records import ERR, AnomalyHit, LogEvent

_REGEX_SYNTAX = set("\\.^$*+?{}[]()")


def _matcher(pattern: str) -> Callable[[str], bool]:
    words = pattern.split("|")
    if any(ch in _REGEX_SYNTAX for ch in pattern) or not all(words):
        rx = re.compile(pattern)
        return lambda text: rx.search(text) is not None
    return lambda text: any(w in text for w in words)


class _Window:
    """Timestamps of matches within a sliding window, plus when it last reported."""

    __slots__ = ("times", "reported")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.reported = 0.0

    def add(self, ts: float, span: float) -> int:
        times = self.times
        times.append(ts)
        cutoff = ts - span
        while times[0] < cutoff:
            times.popleft()
        return len(times)


class LogPatternDetector:
    """Policy patterns over every line; plain-word alternations ("a|b c") use substring
    search, which is many times cheaper per line than a regular expression."""

    name = "pattern"
    state = ("windows",)

    def __init__(self, policy: DetectPolicy) -> None:
        self._patterns = policy.log_patterns
        self._repeat = policy.repeat_s
        self._matchers = [_matcher(p.pattern) for p in self._patterns]
        self.windows: dict[tuple[str, int], _Window] = {}

    def observe(self, ev: LogEvent) -> AnomalyHit | None:
        hit = None
        message = ev.message
        # A line may match several patterns (e.g. a failed login counts for both the
        # auth-failure and the brute-force rule); report the strongest that fires.
        for i, matches in enumerate(self._matchers):
            if not matches(message):
                continue
            p = self._patterns[i]
            w = self.windows.get((ev.device, i))
            if w is None:
                w = self.windows[(ev.device, i)] = _Window()
            count = w.add(ev.ts, p.window_s)
            if count < p.count or (w.reported and ev.ts - w.reported < self._repeat):
                continue
            w.reported = ev.ts
            if hit is None or p.score > hit.score:
                hit = AnomalyHit(
                    detector=f"pattern:{p.name}",
                    incident_type=p.type.value,
                    device=ev.device,
                    ts=ev.ts,
                    score=p.score,
                    tracking_id=ev.tracking_id,
                    summary=f"{count} lines matching /{p.pattern}/ in {p.window_s:g} s",
                    evidence={
                        "template_id": ev.template_id,
                        "template": ev.template,
                        "sample": ev.message,
                        "app": ev.app,
                        "count": count,
                    },
                    key=p.name,
                )
        return hit


class ErrorBurstDetector:
    name = "error_burst"
    state = ("windows",)

    def __init__(self, policy: DetectPolicy) -> None:
        self._p = policy.error_burst
        self._repeat = policy.repeat_s
        self.windows: dict[str, _Window] = {}

    def observe(self, ev: LogEvent) -> AnomalyHit | None:
        p = self._p
        if ev.severity > p.max_severity:
            return None
        w = self.windows.get(ev.device)
        if w is None:
            w = self.windows[ev.device] = _Window()
        count = w.add(ev.ts, p.window_s)
        if count < p.count or (w.reported and ev.ts - w.reported < self._repeat):
            return None
        w.reported = ev.ts
        return AnomalyHit(
            detector="error_burst",
            incident_type=p.type.value,
            device=ev.device,
            ts=ev.ts,
            score=p.score,
            tracking_id=ev.tracking_id,
            summary=f"{count} error-level lines in {p.window_s:g} s",
            evidence={"template_id": ev.template_id, "sample": ev.message, "app": ev.app},
            key="errors",
        )


class TemplateNoveltyDetector:
    """A template never seen before (after the start-up grace period), or still rare."""

    name = "template"
    state = ("started", "counts")

    def __init__(self, policy: DetectPolicy) -> None:
        self._p = policy.templates
        self._type = policy.error_burst.type.value
        self.started: float | None = None
        self.counts: dict[int, int] = {}

    def observe(self, ev: LogEvent) -> AnomalyHit | None:
        if self.started is None:
            self.started = ev.ts
        n = self.counts.get(ev.template_id, 0) + 1
        self.counts[ev.template_id] = n
        if n > self._p.rare_max_count or ev.ts - self.started < self._p.new_template_grace_s:
            return None
        novelty = "new" if n == 1 else "rare"
        score = self._p.new_template_score * (1.0 if n == 1 else 0.8)
        # error-level lines are worth more than chatter
        if ev.severity <= ERR:
            score = min(1.0, score + 0.2)
        return AnomalyHit(
            detector=f"template:{novelty}",
            incident_type=self._type,
            device=ev.device,
            ts=ev.ts,
            score=round(score, 4),
            tracking_id=ev.tracking_id,
            summary=f"{novelty} log template #{ev.template_id} ({n} seen): {ev.template[:120]}",
            evidence={"template_id": ev.template_id, "template": ev.template, "sample": ev.message},
            key=f"template:{ev.template_id}",
        )


__all__ = ["ErrorBurstDetector", "LogPatternDetector", "TemplateNoveltyDetector"]
