"""The insight worker: explains incidents off the fast path, within the LLM policy.

Incidents wait in a bounded queue, most severe first. A full queue gives up a request by
policy (`drop_on_overflow`), and the request given up still gets the deterministic
explanation at once, so no incident is left unexplained and none is dropped silently.
Worker threads (`max_concurrent_requests`, at the lowest CPU priority, the model on
`n_threads` cores) load the model once and keep it warm; each
generation has a deadline (`timeout_s`) and `retries`; after `failures` failures within
`window_s` a circuit breaker stops calling the model for `window_s`. Explanations are
cached by incident signature for `cache_ttl_s`. Results go back through `deliver`, which
puts them on the agent's queue: the pipeline stays the only writer of incidents.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import log
from shared.ids import new_id
from shared.llm import GenerationError, Generator
from shared.models import Incident, Insight
from shared.policy import LlmPolicy
from ship_agent.insight.analyzer import Analysis, analyze
from ship_agent.insight.knowledge import Knowledge
from ship_agent.insight.narrator import check, task
from ship_agent.metrics import AgentMetrics
from ship_agent.records import Explanation

_log = log.get("ship_agent.insight")
DETERMINISTIC = "deterministic"
NICE = 19


@dataclass
class _Request:
    incident: Incident
    queued: float  # monotonic
    seq: int

    @property
    def key(self) -> tuple[int, int]:
        """Smaller is served first: higher severity, then earlier."""
        return (-self.incident.severity.rank, self.seq)


@dataclass(frozen=True)
class _Cached:
    text: str
    citations: list[str]
    model: str
    until: float


def _yield_cpu() -> None:
    """The model's thread runs at the lowest CPU priority (Linux sets nice per thread), so on
    a 2-core box the fast path always wins the core when both want it."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class CircuitBreaker:
    def __init__(self, failures: int, window_s: float) -> None:
        self.failures, self.window_s = max(1, failures), window_s
        self._recent: deque[float] = deque()
        self.open_until = 0.0

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def failed(self, now: float) -> None:
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self.open_until = now + self.window_s
            self._recent.clear()

    def succeeded(self) -> None:
        self._recent.clear()


class InsightWorker:
    def __init__(
        self,
        policy: LlmPolicy,
        ship_id: str,
        knowledge: Knowledge,
        role_of: Callable[[str], str],
        redact: Callable[[str], str],
        open_model: Callable[[], Generator],
        deliver: Callable[[Explanation], None],
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.policy = policy
        self.ship_id = ship_id
        self.knowledge = knowledge
        self._role_of, self._redact = role_of, redact
        self._open_model, self._deliver = open_model, deliver
        self.metrics = metrics or AgentMetrics()
        cb = policy.circuit_breaker
        self.breaker = CircuitBreaker(int(cb.get("failures", 5)), float(cb.get("window_s", 60)))
        self._queue: dict[str, _Request] = {}  # incident id -> request (a newer version wins)
        self._cache: dict[str, _Cached] = {}
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._model: Generator | None = None
        self._model_error = ""
        self._model_ready = threading.Event()

    def reconfigure(
        self,
        policy: LlmPolicy,
        knowledge: Knowledge,
        role_of: Callable[[str], str],
        redact: Callable[[str], str],
    ) -> None:
        """Between requests: a request in progress finishes on the old parts."""
        with self._cv:
            self.policy, self.knowledge = policy, knowledge
            self._role_of, self._redact = role_of, redact
            cb = policy.circuit_breaker
            self.breaker = CircuitBreaker(int(cb.get("failures", 5)), float(cb.get("window_s", 60)))
            self._cache.clear()  # new runbooks or rules: old explanations may not hold

    # ---------------------------------------------------------------- intake

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, incident: Incident) -> bool:
        """Queue an incident for explanation; False if the policy gave this one up (it is
        then explained deterministically at once)."""
        with self._cv:
            req = _Request(incident, time.monotonic(), next(self._seq))
            queued = self._queue.get(incident.id)
            if queued is not None:  # keep its place in line, explain the newer version
                queued.incident = incident
                return True
            give_up: _Request | None = None
            if len(self._queue) >= self.policy.queue_size:
                give_up = self._overflow(req)
            if give_up is not req:
                self._queue[incident.id] = req
                self._cv.notify()
            self.metrics.insight_queue.set(len(self._queue))
        if give_up is not None:
            self.metrics.insight_dropped.inc()
            self._finish(give_up, analyze_now=True, why="queue full")
        return give_up is not req

    def _overflow(self, new: _Request) -> _Request:
        rule = self.policy.drop_on_overflow
        if rule == "newest":
            return new
        if rule == "oldest":
            victim = min(self._queue.values(), key=lambda r: r.seq)
        else:  # lowest_severity: the last in line, unless the newcomer ranks lower still
            victim = max(self._queue.values(), key=lambda r: r.key)
            if new.key > victim.key:
                return new
        del self._queue[victim.incident.id]
        return victim

    # ---------------------------------------------------------------- threads

    def start(self) -> None:
        for i in range(self.policy.max_concurrent_requests):
            t = threading.Thread(target=self._run, name=f"insight-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0, keep_model: bool = False) -> None:
        """Waits for the request in progress (bounded by its deadline); queued ones stay
        unexplained, as after a crash: their incidents are committed, only the words are
        missing."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)
        busy = any(t.is_alive() for t in self._threads)  # a generation starved of CPU
        if self._model is not None and not keep_model and not busy:
            self._model.close()  # never under a running generation: that would crash it

    def wait_ready(self, timeout: float) -> bool:
        """True once the model is loaded (or failed to load: see `model_error`)."""
        return self._model_ready.wait(timeout)

    @property
    def model_error(self) -> str:
        return self._model_error

    def _load(self) -> None:
        with self._cv:  # the first thread loads; the others wait for it
            if not self._model_ready.is_set():
                try:
                    self._model = self._open_model()
                    self._warm(self._model)
                    _log.info("insight model loaded", model=self._model.name)
                except Exception as exc:  # any load failure leaves the rules to explain
                    self._model_error = f"model not loaded: {exc}"
                    _log.error("insight model failed to load", error=str(exc))
                self._model_ready.set()

    def _warm(self, model: Generator) -> None:
        """Evaluate the prompt's fixed prefix (instruction and examples) once at load, so
        the first incident does not pay for it: llama.cpp keeps it for the next prompt."""
        with contextlib.suppress(GenerationError):
            model.generate(task(""), max_tokens=1, temperature=0.0, timeout_s=self.policy.timeout_s)

    def _run(self) -> None:
        _yield_cpu()
        self._load()
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                req = min(self._queue.values(), key=lambda r: r.key)
                del self._queue[req.incident.id]
                self.metrics.insight_queue.set(len(self._queue))
            try:
                self._finish(req)
            except Exception:  # a bug here must not kill the worker thread
                _log.exception("insight failed", incident_id=req.incident.id)

    # ---------------------------------------------------------------- one incident

    def _finish(self, req: _Request, analyze_now: bool = False, why: str = "") -> None:
        inc = req.incident
        role = self._role_of(inc.device)
        analysis = analyze(inc, role, self.knowledge, self._redact)
        if analyze_now:
            self._send(req, analysis, analysis.narrative(), DETERMINISTIC, 0.0, False, True, why)
            return
        now = time.monotonic()
        cached = self._cache.get(analysis.signature)
        if cached is not None and cached.until > now:
            self._send(req, analysis, cached.text, cached.model, 0.0, True, False, "")
            return
        text, model, latency, why = self._generate(analysis)
        if text is None:
            self._send(req, analysis, analysis.narrative(), model, latency, False, True, why)
            return
        ttl = self.policy.cache_ttl_s
        verdict = check(text, analysis.citable, analysis.facts())
        if not verdict.ok:
            self.metrics.insight_rejected.inc()
            why = f"model narrative rejected: {verdict.reason}"
            _log.info("insight rejected", incident_id=inc.id, reason=verdict.reason)
            self._send(req, analysis, analysis.narrative(), model, latency, False, True, why)
            return
        text = f"{verdict.text} {analysis.first_action()}".strip()
        if ttl > 0:
            self._cache[analysis.signature] = _Cached(text, verdict.citations, model, now + ttl)
        self._send(req, analysis, text, model, latency, False, False, "")

    def _generate(self, analysis: Analysis) -> tuple[str | None, str, float, str]:
        """(text, model, seconds, why not): text is None when the model gave nothing usable."""
        model = self._model
        if model is None:
            return None, DETERMINISTIC, 0.0, self._model_error or "model not loaded"
        if self.breaker.is_open(time.monotonic()):
            return None, model.name, 0.0, "circuit breaker open"
        p = self.policy
        error = ""
        spent = 0.0
        for _attempt in range(1 + p.retries):
            t0 = time.perf_counter()
            try:
                out = model.generate(
                    task(analysis.facts()),
                    max_tokens=p.max_new_tokens,
                    temperature=p.temperature,
                    timeout_s=p.timeout_s,
                )
            except GenerationError as exc:
                spent += time.perf_counter() - t0
                error = str(exc)
                self.metrics.insight_failures.inc()
                self.breaker.failed(time.monotonic())
                if self.breaker.is_open(time.monotonic()):
                    break
                continue
            self.breaker.succeeded()
            return out.text, out.model, spent + out.latency_s, ""
        return None, model.name, spent, f"model failed: {error}"

    def _send(
        self,
        req: _Request,
        analysis: Analysis,
        text: str,
        model: str,
        latency_s: float,
        cache_hit: bool,
        fallback: bool,
        why: str,
    ) -> None:
        inc = analysis.incident
        cited = [c for c in analysis.citable if f"[{c}]" in text]
        insight = Insight(
            tracking_id=new_id(),
            ship_id=self.ship_id,
            ts=datetime.now(UTC),
            incident_id=inc.id,
            narrative=text,
            citations=sorted(cited),
            model=model,
            latency_ms=round(latency_s * 1000, 1),
            cache_hit=cache_hit,
            fallback=fallback,
        )
        outcome = "cache" if cache_hit else "fallback" if fallback else "model"
        self.metrics.insights.labels(outcome).inc()
        self.metrics.insight_seconds.observe(time.monotonic() - req.queued)
        refs = [h.book.id for h in analysis.runbooks]
        self._deliver(Explanation(inc.id, text, refs, insight, why))
