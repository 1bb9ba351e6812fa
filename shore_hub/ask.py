"""Answers to operators' questions about the fleet (`POST /api/v3/ask`), grounded in
evidence the hub retrieved itself.

Detectors decide, the model explains. Retrieval picks the incidents nearest to the
question (Qdrant, within the caller's ships and the asked ship and period), the runbooks
nearest to it, and counts for the period from ClickHouse. The model gets them as labelled
items (`[I1]`.. for incidents, runbook ids such as `[RB-01]`) and must cite what it uses.
`judge` rejects (and counts) an answer that cites an item it was not given, or nothing,
or that states ids, dates or numbers its cited items do not hold, or that copies the
worked examples; the extractive answer built from the same items is given instead,
marked as the fallback. So every citation of every answer is evidence the hub retrieved.

The default model is a small base model: it completes a few-shot prompt, one line long,
and is given only the nearest incident and runbook (see `ask`); measured with
`seawatch bench ask`, most of its answers are still rejected, and those accepted mostly
restate that incident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.grounding import cited, copied, example_shingles, identifiers
from shared.llm import (
    FewShot,
    Generation,
    GenerationError,
    GenerationTimeout,
    Generator,
    open_generator,
)
from shared.policy import LlmPolicy
from shared.timeutil import iso
from shore_hub.fleetstore import FleetStore
from shore_hub.metrics import HubMetrics

if TYPE_CHECKING:
    from shore_hub.hub import Hub

MAX_TOKENS = 120  # one or two sentences; the policy's limit applies when lower
MAX_TIMEOUT_S = 20.0  # an operator waits this long at most, whatever the policy allows
RUNBOOKS = 2
PERIOD_S = 30 * 86_400.0  # counts cover this much before `until` when no `since` is given
RETRY_S = 60.0  # a model that failed to open is tried again after this
MAX_QUESTION = 500  # characters of the question that reach the prompt
_SUMMARY = 140

INSTRUCTION = (
    "Answer the operator's question in one sentence, using only the numbered items. "
    "Start with the label of the item that answers it, like [I1]; cite runbooks like [RB-01]."
)
# Retrieval puts the nearest item first, so the worked examples answer from [I1]; they
# restate it closely, which is what a small model can do without mixing items up.
EXAMPLES = [
    (
        "Facts: 14 incidents from 2026-10-01 to 2026-10-31; by type: link_degradation 9, "
        "security_alert 5; by ship: MV-ORCA 8, MV-TERN 6.\n"
        "[I1] MV-ORCA link_degradation high resolved on vsat-modem-02: "
        "SNR below 12 dB in heavy rain; fixed by: rain-fade QoS profile until the squall passed\n"
        "[I2] MV-TERN security_alert high open on crew-srv-02: "
        "400 failed ssh logins from one address\n"
        "[RB-01] runbook: VSAT rain fade\n"
        "Question: What fixed the VSAT problem on MV-ORCA?",
        "[I1] MV-ORCA link_degradation resolved on vsat-modem-02: SNR below 12 dB in heavy "
        "rain; fixed by: rain-fade QoS profile until the squall passed. Runbook [RB-01].",
    ),
    (
        "Facts: 3 incidents from 2026-11-01 to 2026-11-08; by type: resource_pressure 2, "
        "network_issue 1; by ship: MV-KITE 2, MV-WREN 1.\n"
        "[I1] MV-KITE resource_pressure medium open on pos-srv-02: "
        "disk_pct 96 > 90 on /var\n"
        "[I2] MV-WREN network_issue medium resolved on sw-02: "
        "Gi1/0/7 changed state to down 6 times in 5 min; fixed by: patch lead replaced\n"
        "[RB-07] runbook: Disk full\n"
        "Question: Which ships had disk problems this week?",
        "[I1] MV-KITE resource_pressure open on pos-srv-02: disk_pct 96 > 90 on /var. "
        "Runbook [RB-07].",
    ),
    (
        "Facts: 5 incidents from 2026-09-01 to 2026-09-30; by type: comms_outage 3, "
        "network_issue 2; by ship: MV-TERN 5.\n"
        "[I1] MV-TERN comms_outage critical resolved on vsat-modem-03: Rx lock lost 4 times in "
        "10 min; fixed by: modem power-cycled\n"
        "[RB-03] runbook: Modem lock lost\n"
        "Question: how many incidents did MV-TERN have, and why did it go offline?",
        "[I1] MV-TERN had 5 incidents; comms_outage resolved on vsat-modem-03: Rx lock lost "
        "4 times in 10 min; fixed by: modem power-cycled. Runbook [RB-03].",
    ),
]
EXAMPLE_SHINGLES = example_shingles(EXAMPLES)


@dataclass(frozen=True)
class Citation:
    """One retrieved item: the label the model saw and where the operator finds it."""

    ref: str
    kind: Literal["incident", "runbook"]
    id: str
    title: str
    ship: str | None
    link: str


@dataclass
class Answer:
    answer: str
    citations: list[Citation]
    fallback: bool
    reason: str  # why the fallback was used; empty for a model answer
    model: str
    latency_ms: float
    retrieved: list[Citation]  # every item retrieval found, nearest first
    conversation_id: str = ""


@dataclass
class Context:
    """What retrieval found: items and their prompt lines by label, the period's counts."""

    items: dict[str, Citation] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)
    facts: str = ""
    ships: frozenset[str] = frozenset()  # every ship named in the items or the counts

    def given(self, n: int) -> list[str]:
        """The labels a model gets: the nearest `n` incidents and runbooks."""
        found = [r for r, c in self.items.items() if c.kind == "incident"][:n]
        return found + [r for r, c in self.items.items() if c.kind == "runbook"][:n]


# ------------------------------------------------------------------ retrieval


def gather(
    store: FleetStore,
    memory: Any,
    question: str,
    ships: Sequence[str] | None,
    since: float | None,
    until: float | None,
    top_k: int,
) -> Context:
    """Incidents, runbooks and counts for a question, limited to `ships` (None: the fleet;
    empty: nothing). Blocking: run it in a thread."""
    ctx = Context()
    if memory is not None:
        hits = memory.search(question, None, None, None, since, until, ships, top_k)
    else:  # no vectors: the newest incidents in scope stand in for the nearest
        page = store.list_incidents(ships, since=since, until=until, limit=top_k)
        hits = [{"id": d["id"], "resolution": ""} for d in page["items"]]
    docs = {d["id"]: d for d in store.incidents_by_ids([h["id"] for h in hits], ships)}
    for hit in hits:
        doc = docs.get(hit["id"])
        if doc is not None:
            _add_incident(ctx, doc, hit.get("resolution", ""))
    if memory is not None:
        for book in memory.search_runbooks(question, RUNBOOKS):
            ref = book["id"]
            ctx.items[ref] = Citation(ref, "runbook", ref, book["title"], None, book["path"])
            ctx.lines[ref] = f"[{ref}] runbook: {book['title']}"
    end = until if until is not None else time.time()
    start = since if since is not None else end - PERIOD_S
    stats = store.stats(start, end, ships)
    ctx.facts = facts(stats, start, end)
    ctx.ships = frozenset(stats["by_ship"]).union(c.ship for c in ctx.items.values() if c.ship)
    return ctx


def _add_incident(ctx: Context, doc: dict[str, Any], resolution: str) -> None:
    ref = f"I{sum(c.kind == 'incident' for c in ctx.items.values()) + 1}"
    evidence = [e["summary"] for e in doc["evidence"] if e["summary"]]
    summary = _cut(doc["narrative"] or (evidence[0] if evidence else doc["type"]), _SUMMARY)
    when = doc["first_seen"][:10]
    title = f"{doc['ship_id']} {when} {doc['type']} on {doc['device']}: {summary}"
    ctx.items[ref] = Citation(
        ref, "incident", doc["id"], title, doc["ship_id"], f"/api/v3/incidents/{doc['id']}"
    )
    line = (
        f"[{ref}] {doc['ship_id']} {doc['type']} {doc['severity']}"
        f" {doc['status']} on {doc['device']}: {summary}"
    )
    ctx.lines[ref] = line + (f"; fixed by: {_cut(resolution, _SUMMARY)}" if resolution else "")


def facts(stats: dict[str, Any], start: float, end: float) -> str:
    """The period's counts in one line, the largest first."""

    def top(counts: dict[str, int]) -> str:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
        return ", ".join(f"{k} {v}" for k, v in ranked) or "none"

    line = f"{stats['total']} incidents from {iso(start)[:10]} to {iso(end)[:10]}"
    if stats["total"]:
        line += f"; by type: {top(stats['by_type'])}; by ship: {top(stats['by_ship'])}"
    return line + "."


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------ prompt and validation


def prompt(question: str, ctx: Context, given: list[str]) -> FewShot:
    lines = [f"Facts: {ctx.facts}", *(ctx.lines[r] for r in given)]
    query = "\n".join([*lines, f"Question: {_cut(question, MAX_QUESTION)}"])
    return FewShot(INSTRUCTION, EXAMPLES, query, stop=["\n", "Input:", "<end_of_turn>"])


def judge(text: str, ctx: Context, given: list[str]) -> tuple[list[str], str, str]:
    """(cited labels, rejection kind, reason). An answer must cite at least one item and
    only items it was given; every id, type, date or number in it must appear in the
    items it cites or the counts, a ship only in the items it cites; and no run of words
    may come from the worked examples with a word its evidence does not have: a small
    model mixes items up and borrows from its examples."""
    refs = cited(text)
    unknown = [r for r in refs if r not in given]
    if unknown:
        return refs, "unknown_citation", f"the model cited {', '.join(unknown)}, not given"
    if not refs:
        return refs, "no_citation", "the model cited none of the items"
    evidence = "\n".join([ctx.facts, *(ctx.lines[r] for r in refs)])
    cited_ships = {ctx.items[r].ship for r in refs}
    stray = sorted(identifiers(text) - (identifiers(evidence) - (ctx.ships - cited_ships)))
    if stray:
        return refs, "ungrounded", f"{', '.join(stray)} not in the cited items"
    runs = copied(text, evidence, EXAMPLE_SHINGLES)
    if runs:
        return refs, "copied_example", f"copies the worked examples ({' '.join(runs[0])!r})"
    return refs, "", ""


def finish(
    ctx: Context,
    given: list[str],
    text: str,
    model: str,
    problem: str,
    latency_s: float,
    metrics: HubMetrics,
) -> Answer:
    """The model's answer if `judge` accepts it, else the extractive answer with the reason;
    `problem` is why there is no model text at all."""
    refs: list[str] = []
    if not problem:
        refs, kind, problem = judge(text, ctx, given)
        if kind:
            metrics.ask_rejected.labels(kind).inc()
            problem = f"model answer rejected: {problem}"
    if problem:
        text, refs = extractive(ctx)
    metrics.ask_answers.labels("fallback" if problem else "model").inc()
    return Answer(
        answer=text,
        citations=[ctx.items[r] for r in refs],
        fallback=bool(problem),
        reason=problem,
        model=model,
        latency_ms=round(latency_s * 1000, 1),
        retrieved=list(ctx.items.values()),
    )


def extractive(ctx: Context) -> tuple[str, list[str]]:
    """An answer made of the retrieved items themselves: the counts, the closest incidents
    and the closest runbook, each cited."""
    incidents = [c for c in ctx.items.values() if c.kind == "incident"][:3]
    books = [c for c in ctx.items.values() if c.kind == "runbook"][:1]
    parts = [f"In the period: {ctx.facts}"]
    if incidents:
        parts.append("Closest incidents: " + "; ".join(f"{c.title} [{c.ref}]" for c in incidents))
    else:
        parts.append("No incident in scope matches the question.")
    parts += [f"Runbook: {b.title} [{b.ref}]." for b in books]
    return " ".join(parts), [c.ref for c in (*incidents, *books)]


# ------------------------------------------------------------------ the model and the flow


class LanguageModel:
    """The hub's generator: opened on the first question in a worker thread (the API keeps
    serving meanwhile), then kept warm; one generation at a time. One that cannot be opened
    is tried again after RETRY_S; meanwhile /ask answers extractively and says why."""

    def __init__(self, policy: LlmPolicy, url: str | None = None, model: str = "") -> None:
        self.policy, self.url, self.model = policy, url, model
        self.max_tokens = min(policy.max_new_tokens, MAX_TOKENS)
        self.timeout_s = min(policy.timeout_s, MAX_TIMEOUT_S)
        self._generator: Generator | None = None
        self._error = ""
        self._failed_at = float("-inf")
        self._opening = asyncio.Lock()
        self._busy = asyncio.Lock()

    @property
    def name(self) -> str:
        if self._generator is not None:
            return self._generator.name
        return self.model if self.url else self.policy.model

    async def open(self) -> Generator:
        """The warm generator, opened now if need be; raises GenerationError with why not."""
        async with self._opening:
            if self._generator is not None:
                return self._generator
            if time.monotonic() - self._failed_at < RETRY_S:
                raise GenerationError(self._error)
            try:
                self._generator = await asyncio.to_thread(
                    open_generator,
                    self.policy.model_path,
                    n_threads=self.policy.n_threads,
                    url=self.url,
                    model=self.model,
                )
            except Exception as exc:  # whatever stops the model, /ask still answers
                self._error, self._failed_at = f"model unavailable: {exc}", time.monotonic()
                raise GenerationError(self._error) from exc
            return self._generator

    async def generate(self, task: FewShot) -> Generation:
        """Raises GenerationError (with the reason) when no answer can be had in time."""
        generator = await self.open()
        try:
            await asyncio.wait_for(self._busy.acquire(), self.timeout_s)
        except TimeoutError:
            raise GenerationTimeout("the model is busy with other questions") from None
        try:
            return await asyncio.to_thread(
                generator.generate,
                task,
                max_tokens=self.max_tokens,
                temperature=self.policy.temperature,
                timeout_s=self.timeout_s,
            )
        finally:
            self._busy.release()

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()


async def ask(
    hub: Hub,
    question: str,
    ships: Sequence[str] | None,
    since: float | None = None,
    until: float | None = None,
) -> Answer:
    """Retrieve, generate (only when some incident was found), validate."""
    t0 = time.perf_counter()
    top_k = int(hub.policy.llm.rag.get("top_k", 5))
    ctx = await hub.read(gather, hub.store, hub.memory, question, ships, since, until, top_k)
    text, model, problem, given = "", hub.llm.name, "", ctx.given(top_k)
    if not any(c.kind == "incident" for c in ctx.items.values()):
        problem = "no incident in scope matches the question, so the model was not asked"
    else:
        try:
            generator = await hub.llm.open()
            # a base model given several items mixes their details up (measured with the
            # 270M default), so it explains the nearest incident and runbook; chat models
            # get them all
            given = ctx.given(top_k if getattr(generator, "chat", True) else 1)
            generation = await hub.llm.generate(prompt(question, ctx, given))
            text, model = generation.text, generation.model
        except GenerationError as exc:
            problem = str(exc) or type(exc).__name__
    answer = finish(ctx, given, text, model, problem, time.perf_counter() - t0, hub.metrics)
    hub.metrics.ask_seconds.observe(time.perf_counter() - t0)
    return answer
