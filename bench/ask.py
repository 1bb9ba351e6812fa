"""`seawatch bench ask`: /ask over the live API of an embedded hub with the default local
model: latency p50/p95, how often the extractive fallback answered, and whether the
accepted (model) answers cite only what they were given.

N incidents from `bench.memory`'s generator (40 ships, ten kinds of problem, every third
one resolved with a fix) go through FLEET_UP as ships send them; once all are stored and
embedded, Q varied questions are asked one after another as an operator over HTTP. The
first question also opens the model and is reported apart from the percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import banner
from bench.memory import make_incidents, resolved
from shared import log, wire
from shared.policy import load_policy
from shared.settings import HubSettings
from shore_hub.auth import Role
from sync.topology import up_subject

TARGET_P95_MS = 8000.0
QUESTIONS: list[dict[str, Any]] = [
    {"question": "Why are VSAT links degrading in heavy rain, and what fixed it before?"},
    {"question": "Which ships had their antenna blocked?"},
    {"question": "What should we do when the modem loses Rx lock repeatedly?"},
    {"question": "Are any ships under an ssh brute force attack?"},
    {"question": "Which servers ran out of disk space and how was it fixed?"},
    {"question": "Is the firewall CPU overloaded anywhere?"},
    {"question": "What caused the switch port errors on MV-007?", "ship": "MV-007"},
    {"question": "Did the crew portal service keep crashing?"},
    {"question": "Which ships lost their GPS fix?"},
    {"question": "Any overheating in the server racks?"},
    {"question": "What happened on MV-012 recently?", "ship": "MV-012"},
    {"question": "How many incidents did the fleet have in October?",
     "since": "2026-10-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
    {"question": "Was the satellite link down for long on MV-003?", "ship": "MV-003"},
    {"question": "Which runbook applies to a flapping switch port?"},
    {"question": "What fixed comms outages before?"},
    {"question": "Is there a security problem on MV-021?", "ship": "MV-021"},
    {"question": "Why is the point of sale server slow?"},
    {"question": "Which incidents were resolved by a failover to LEO?"},
    {"question": "What is the most common problem this month?",
     "since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
    {"question": "Summarise the navigation data problems."},
]  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--incidents", type=int, default=300, help="incidents to seed")
    p.add_argument("--questions", type=int, default=len(QUESTIONS), help="questions to ask")
    p.add_argument("--show", action="store_true", help="print every question and answer")


def seed_frames(n: int) -> list[tuple[str, bytes]]:
    rng = random.Random(5)
    incidents = [resolved(i, rng) if k % 3 == 0 else i for k, i in enumerate(make_incidents(n))]
    return [(up_subject(i.ship_id, "incident"), wire.encode([i])) for i in incidents]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import nats

    from shore_hub.hub import Hub

    with tempfile.TemporaryDirectory(prefix="seawatch-bench-ask-") as tmp:
        settings = HubSettings(data_dir=Path(tmp), http_port=0, leaf_port=0, workers=1)
        hub = Hub(settings, load_policy())
        await hub.start()
        try:
            assert hub.nats_server is not None
            nc = await nats.connect(hub.nats_server.url, **hub.nats_auth)
            for subject, data in seed_frames(args.incidents):
                await nc.publish(subject, data)
            await nc.flush()
            await nc.close()
            t0 = time.perf_counter()
            while await asyncio.to_thread(hub.memory.count) < args.incidents:
                await asyncio.sleep(0.5)
            seeded_s = time.perf_counter() - t0
            key = {"X-API-Key": hub.keys.create("bench", Role.OPERATOR)}
            url = f"http://127.0.0.1:{hub.http_port}"
            async with httpx.AsyncClient(base_url=url, headers=key, timeout=120) as client:
                answers = [
                    await _ask(client, QUESTIONS[k % len(QUESTIONS)]) for k in range(args.questions)
                ]
            model = hub.llm.name
        finally:
            await hub.stop()
    return {"answers": answers, "seeded_s": seeded_s, "model": model}


async def _ask(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One question; the wall time seen by the client and whether each citation holds."""
    t0 = time.perf_counter()
    r = await client.post("/api/v3/ask", json=body)
    wall_ms = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    answer: dict[str, Any] = r.json()
    given = {(c["kind"], c["id"]) for c in answer["retrieved"]}
    valid = all((c["kind"], c["id"]) in given for c in answer["citations"])
    for c in answer["citations"]:
        if c["kind"] == "incident":
            valid = valid and (await client.get(c["link"])).status_code == 200
    return {**answer, "wall_ms": wall_ms, "valid": valid and bool(answer["citations"])}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def main(args: argparse.Namespace) -> int:
    log.configure("WARNING")

    r = asyncio.run(run(args))
    answers = r["answers"]
    warm = [a["wall_ms"] for a in answers[1:]] or [answers[0]["wall_ms"]]
    accepted = [a for a in answers if not a["fallback"]]
    reasons = Counter(a["reason"][:100] for a in answers if a["fallback"])
    print(
        banner(
            "ask",
            f"model {r['model']}",
            f"{args.incidents} incidents (stored and embedded in {r['seeded_s']:.0f} s)",
            f"{len(answers)} questions",
        )
    )
    rows = [
        ("first /ask (opens the model)", f"{answers[0]['wall_ms']:,.0f} ms", ""),
        ("/ask p50 (after the first)", f"{statistics.median(warm):,.0f} ms", ""),
        (
            "/ask p95 (after the first)",
            f"{_pct(warm, 0.95):,.0f} ms",
            ("meets" if _pct(warm, 0.95) <= TARGET_P95_MS else "misses")
            + f" target (<= {TARGET_P95_MS:,.0f} ms)",
        ),
        ("/ask max", f"{max(a['wall_ms'] for a in answers):,.0f} ms", ""),
        ("fallback rate", f"{len(answers) - len(accepted)}/{len(answers)}", ""),
        (
            "accepted answers citing only given items",
            f"{sum(a['valid'] for a in accepted)}/{len(accepted)}",
            "(and every cited incident found)",
        ),
    ]
    for name, value, note in rows:
        print(f"  {name:<42}{value:>12}  {note}")
    for reason, n in reasons.most_common():
        print(f"  fallback: {reason} ({n})")
    if args.show:
        for k, a in enumerate(answers):
            source = "fallback" if a["fallback"] else "model"
            print(f"\n{QUESTIONS[k % len(QUESTIONS)]['question']}\n  [{source}] {a['answer']}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
