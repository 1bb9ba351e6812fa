"""`seawatch bench insight`: the insight path beside the fast path, and retrieval quality.

1. Latency: a real agent takes UDP syslog + HTTP metrics at a fixed rate twice, once alone
   and once while an insight worker (the real local model, `llm.n_threads` cores) explains
   simulator incidents in the same process. Printed side by side: fast-path p50/p99 and
   insight latency (queued -> ready), fallback and rejection rates, and the citation
   validity of accepted narratives (re-checked here, not taken from the worker).
2. Retrieval, on a labelled set: fault plans replayed on several simulated ships; each
   incident is labelled with the fault that caused it (same scenario = same type and
   cause). Right runbook in the top 3 of the ship's rules; recall@5 of the shore's
   similar-incident search (the hub's incident memory, real embeddings, Qdrant Edge).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import banner
from bench.fastpath import latency_run
from bench.scenarios.run import FIRST_FAULT_S, START
from bench.scenarios.schedule import inject, plan_end, plan_faults
from policies import runbooks_dir
from shared import log
from shared.models import Incident
from shared.policy import Policy, load_policy
from shared.settings import AgentSettings
from ship_agent.agent import ShipAgent
from ship_agent.insight import Knowledge, start_worker
from ship_agent.insight.analyzer import analyze
from ship_agent.insight.narrator import check
from ship_agent.pipeline import Pipeline
from ship_agent.records import Explanation
from ship_agent.simulator import Label, Simulator
from ship_agent.simulator.feed import replay_into
from ship_agent.store import Store
from sync.privacy import Redactor

SHIP = "MV-BENCH"
GRACE_S = 900.0

# The runbook a crew member would open first for each simulated fault.
RUNBOOK_OF = {
    "rain_fade": "RB-01",
    "antenna_blockage": "RB-02",
    "vsat_outage": "RB-03",
    "link_flap": "RB-03",
    "switch_port_errors": "RB-05",
    "firewall_cpu": "RB-06",
    "disk_filling": "RB-07",
    "service_crash_loop": "RB-08",
    "sshd_bruteforce": "RB-09",
    "crew_login_failures": "RB-09",
    "gps_fix_loss": "RB-10",
    "overheating": "RB-11",
    "cpu_runaway": "RB-16",
    "memory_leak": "RB-17",
    "payment_gateway_errors": "RB-18",
}


@dataclass(frozen=True)
class Labelled:
    scenario: str
    incident: Incident


def labelled_incidents(policy: Policy, ship: str, seed: int, rounds: int) -> list[Labelled]:
    """A fault plan replayed through the real pipeline; every incident that a fault caused
    (its device involved, its type, opened while the fault ran), with that fault's name."""
    sim = Simulator(ship, seed=seed, start_ts=START)
    plan = plan_faults(policy, START + FIRST_FAULT_S, rounds, seed)
    labels = inject(sim, plan)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "agent.db", ship)
        replay_into(Pipeline(policy, store), sim.events(plan_end(policy, plan) - START))
        docs = [orjson.loads(d) for (d,) in store.conn.execute("SELECT doc FROM incidents")]
        store.close()
    out = []
    for doc in docs:
        inc = Incident.model_validate(doc)
        label = _cause(inc, labels)
        if label is not None and not inc.suppressed_reason:
            out.append(Labelled(label.scenario, inc))
    return out


def _cause(inc: Incident, labels: list[Label]) -> Label | None:
    first = inc.first_seen.timestamp()
    for label in labels:
        if (
            inc.type.value == label.incident_type
            and (label.device == inc.device or label.device in inc.devices)
            and label.start_ts <= first <= label.end_ts + GRACE_S
        ):
            return label
    return None


def fleet_set(policy: Policy, ships: int, rounds: int) -> list[Labelled]:
    out: list[Labelled] = []
    for i in range(ships):
        out += labelled_incidents(policy, f"MV-EVAL-{i + 1:02d}", seed=100 + i, rounds=rounds)
    return out


# ---------------------------------------------------------------- latency, side by side


async def _with_insight(
    policy: Policy, incidents: list[Incident], rate: float, seconds: float
) -> dict[str, Any]:
    submitted: dict[str, float] = {}
    done: dict[str, tuple[float, Explanation]] = {}

    def delivered(e: Explanation) -> None:
        done[e.incident_id] = (time.monotonic(), e)

    with tempfile.TemporaryDirectory() as tmp:
        settings = AgentSettings(ship_id=SHIP, data_dir=Path(tmp), insight=True)
        worker = start_worker(settings, policy, ShipAgent(settings, policy).metrics, delivered)
        if not await asyncio.to_thread(worker.wait_ready, 120) or worker.model_error:
            raise SystemExit(f"insight model: {worker.model_error or 'not ready in 120 s'}")

        async def feed(_agent: Any) -> None:
            gap = seconds / max(1, len(incidents))  # a busy ship: an incident every few s
            for inc in incidents:
                submitted[inc.id] = time.monotonic()
                worker.submit(inc)
                await asyncio.sleep(gap)

        fast = await latency_run(rate, seconds, 50, during=feed)
        deadline = time.monotonic() + 120
        while len(done) < len(submitted) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.to_thread(worker.stop)
        worker.knowledge.close()
    return {"fast": fast, "submitted": submitted, "done": done}


def _insight_rows(run: dict[str, Any], knowledge: Knowledge, policy: Policy) -> dict[str, Any]:
    done: dict[str, tuple[float, Explanation]] = run["done"]
    waits = sorted(t - run["submitted"][i] for i, (t, _) in done.items())
    explanations = [e for _, e in done.values()]
    accepted = [e for e in explanations if not e.insight.fallback]
    redact = Redactor.from_policy(policy.privacy).redact_text
    incidents = {i.id: i for i in run["incidents"]}
    valid = 0
    for e in accepted:  # re-checked here against what the rules gave the model
        inc = incidents[e.incident_id]
        analysis = analyze(inc, policy.ingest.role_of(inc.device), knowledge, redact)
        written = e.narrative.removesuffix(analysis.first_action()).strip()  # the model's part
        valid += check(written, analysis.citable, analysis.facts()).ok
    q = statistics.quantiles(waits, n=20) if len(waits) > 2 else [waits[-1]] * 19
    gen = sorted(e.insight.latency_ms for e in accepted) or [0.0]
    return {
        "explained": len(done),
        "submitted": len(run["submitted"]),
        "p50_s": statistics.median(waits),
        "p95_s": q[18],
        "gen_median_ms": statistics.median(gen),
        "accepted": len(accepted),
        "valid": valid,
        "fallback": Counter(e.note.split(":")[0] for e in explanations if e.insight.fallback),
    }


# ---------------------------------------------------------------- retrieval


def runbook_top3(data: list[Labelled], policy: Policy, knowledge: Knowledge) -> tuple[int, int]:
    redact = Redactor.from_policy(policy.privacy).redact_text
    hits = 0
    for item in data:
        role = policy.ingest.role_of(item.incident.device)
        books = analyze(item.incident, role, knowledge, redact).runbooks
        hits += RUNBOOK_OF[item.scenario] in [h.book.id for h in books[:3]]
    return hits, len(data)


def similar_recall(data: list[Labelled], k: int = 5) -> tuple[float, float, int]:
    """Mean recall@k and hit@k of the hub's similar-incident search over the whole set."""
    from shore_hub.memory import IncidentMemory, default_embedder

    with tempfile.TemporaryDirectory() as tmp:
        memory = IncidentMemory(default_embedder(), path=Path(tmp) / "qdrant")
        try:
            memory.ensure_collections()
            memory.upsert_incidents([d.incident for d in data])
            scenario = {d.incident.id: d.scenario for d in data}
            total = Counter(d.scenario for d in data)
            recalls, hits = [], 0
            for d in data:
                relevant = total[d.scenario] - 1
                if relevant == 0:
                    continue
                found = memory.similar(d.incident.id, limit=k)
                same = sum(scenario.get(h["id"]) == d.scenario for h in found)
                recalls.append(same / min(k, relevant))
                hits += same > 0
        finally:
            memory.close()
    return statistics.mean(recalls), hits / len(recalls), len(recalls)


# ---------------------------------------------------------------- report


def _row(name: str, value: str) -> None:
    print(f"  {name:<46}{value:>16}")


def main(args: argparse.Namespace) -> int:
    log.configure("WARNING")
    policy = load_policy(ship_id=SHIP)
    if args.no_cache:
        policy = policy.model_copy(update={"llm": policy.llm.model_copy(update={"cache_ttl_s": 0})})
    cache = "off" if args.no_cache else "on"
    print(banner("insight", f"model n_threads={policy.llm.n_threads}", f"cache {cache}"))
    knowledge = Knowledge(None, runbooks_dir())
    incidents = [d.incident for d in labelled_incidents(policy, SHIP, seed=1, rounds=args.rounds)]
    alone = asyncio.run(latency_run(args.rate, args.seconds, 50))
    run = asyncio.run(_with_insight(policy, incidents, args.rate, args.seconds))
    run["incidents"] = incidents
    ins = _insight_rows(run, knowledge, policy)
    both = run["fast"]
    print(
        f"\nfast path at {args.rate:,.0f} events/s for {args.seconds:.0f} s, alone and with the "
        f"insight worker explaining {ins['submitted']} incidents in the same process"
    )
    _row("fast path p50 ms (alone | with insight)", f"{alone['p50_ms']:.2f} | {both['p50_ms']:.2f}")
    _row("fast path p99 ms (alone | with insight)", f"{alone['p99_ms']:.2f} | {both['p99_ms']:.2f}")
    _row("ratio p99 with / alone", f"{both['p99_ms'] / max(alone['p99_ms'], 1e-9):.2f}")
    _row(
        "events committed (alone | with insight)", f"{alone['committed']:,} | {both['committed']:,}"
    )
    _row("insights ready", f"{ins['explained']} of {ins['submitted']}")
    _row("insight latency p50 s (queued -> ready)", f"{ins['p50_s']:.2f}")
    _row("insight latency p95 s (queued -> ready)", f"{ins['p95_s']:.2f}")
    _row("model generation median ms (accepted)", f"{ins['gen_median_ms']:,.0f}")
    _row("accepted model narratives", f"{ins['accepted']} of {ins['explained']}")
    _row("citation validity of accepted", f"{ins['valid']} of {ins['accepted']}")
    _row("fallback rate", f"{1 - ins['accepted'] / max(1, ins['explained']):.0%}")
    for why, n in sorted(ins["fallback"].items()):
        _row(f"  fallback: {why}", str(n))

    data = fleet_set(policy, args.ships, args.eval_rounds)
    print(
        f"\nretrieval, labelled set: {len(data)} incidents from {args.ships} ships, "
        f"{len({d.scenario for d in data})} fault types"
    )
    hits, n = runbook_top3(data, policy, knowledge)
    _row("right runbook in top 3 (ship rules, FTS5)", f"{hits / n:.3f} ({hits}/{n})")
    recall, hit, queries = similar_recall(data)
    _row("similar incidents recall@5 (shore memory)", f"{recall:.3f}")
    _row("similar incidents hit@5", f"{hit:.3f} ({queries} queries)")
    knowledge.close()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=2000.0, help="fast-path events/s")
    parser.add_argument("--seconds", type=float, default=150.0, help="length of each latency run")
    parser.add_argument("--rounds", type=int, default=1, help="fault rounds to explain")
    parser.add_argument("--no-cache", action="store_true", help="every insight from the model")
    parser.add_argument("--ships", type=int, default=10, help="ships in the labelled set")
    parser.add_argument("--eval-rounds", type=int, default=2, help="fault rounds per ship")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench.insight", description=__doc__)
    add_arguments(cli)
    raise SystemExit(main(cli.parse_args()))
