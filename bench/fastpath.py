"""`seawatch bench fastpath`: throughput, latency, memory and warm restart of the fast path.

Throughput: one mixed stream from the ship simulator (about 70 % syslog lines, 30 % metric
samples) through the whole pipeline to SQLite commit on one core, beside each stage alone
on the same events, so the cost of gluing the stages together shows as a ratio.
Latency: a real agent on real sockets, fed at a fixed rate by a separate sender process;
per event, the time from the bytes arriving to its batch being committed.
Memory and restart: a fresh process warms the models of N devices, checkpoints, and is
measured; a second process times the warm start from that checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import banner
from shared import log
from shared.ids import new_id
from shared.policy import Policy, load_policy
from ship_agent.detect import DetectStage
from ship_agent.parse import parse_syslog
from ship_agent.pipeline import Pipeline
from ship_agent.records import LogEvent, MetricEvent, RawInput
from ship_agent.simulator import Simulator
from ship_agent.simulator.feed import agent_input
from ship_agent.store import Batch, Store
from ship_agent.templates import TemplateStage

SHIP = "MV-BENCH"
BATCH = 2000


def make_stream(n_events: int, devices: int, seed: int = 1) -> list[RawInput | MetricEvent]:
    """n_events from the simulator as the agent receives them (raw syslog bytes, metric samples)."""
    base = len(Simulator(SHIP, seed=seed).devices)
    sim = Simulator(SHIP, seed=seed, start_ts=1_790_000_000.0, extra_devices=max(0, devices - base))
    out: list[RawInput | MetricEvent] = []
    now = time.time()
    duration = 3600.0
    while len(out) < n_events:
        for ev in sim.events(duration):
            out.append(agent_input(ev, now))
            if len(out) >= n_events:
                break
    return out


def scoring_policy() -> Policy:
    """The default policy with HalfSpaceTrees scoring from its 5th vector instead of its
    500th, so that a run of minutes measures scoring, not only learning, on every device."""
    policy = load_policy(ship_id=SHIP)
    hst = policy.detect.hst.model_copy(update={"warmup_vectors": 5})
    return policy.model_copy(update={"detect": policy.detect.model_copy(update={"hst": hst})})


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _each(fn: Callable[[Any], Any], batches: list[Any]) -> None:
    for batch in batches:
        fn(batch)


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput(n_events: int, devices: int) -> dict[str, Any]:
    """Sustained rates: every stateful part first sees a warm-up stream (models built and
    past their warm-up), then the measured stream, which continues where it left off."""
    policy = scoring_policy()
    stream = make_stream(2 * n_events, devices)
    warm, stream = stream[:n_events], stream[n_events:]
    warm_raws = [e for e in warm if isinstance(e, RawInput)]
    raws = [e for e in stream if isinstance(e, RawInput)]
    metrics = [e for e in stream if isinstance(e, MetricEvent)]
    results: dict[str, Any] = {"events": len(stream), "log_share": len(raws) / len(stream)}

    parsed: list[LogEvent] = []
    results["parse"] = _rate(
        len(raws), _timed(lambda: parsed.extend(parse_syslog(r, new_id()) for r in raws))
    )
    templates = TemplateStage(policy.detect.templates)
    warm_logs = [parse_syslog(r, new_id()) for r in warm_raws]
    templates.apply(warm_logs)
    results["templates"] = _rate(
        len(parsed),
        _timed(
            lambda: _each(
                templates.apply, [parsed[i : i + BATCH] for i in range(0, len(parsed), BATCH)]
            )
        ),
    )
    detect = DetectStage(policy)
    detect.apply(warm_logs, [e for e in warm if isinstance(e, MetricEvent)])
    step_logs = -(-len(parsed) // (len(stream) // BATCH or 1))
    step_metrics = -(-len(metrics) // (len(stream) // BATCH or 1))
    pairs = [
        (
            parsed[k * step_logs : (k + 1) * step_logs],
            metrics[k * step_metrics : (k + 1) * step_metrics],
        )
        for k in range(len(stream) // BATCH or 1)
    ]
    results["detect"] = _rate(len(stream), _timed(lambda: [detect.apply(a, b) for a, b in pairs]))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "insert.db", SHIP)
        batches = [Batch(logs=a, metrics=b) for a, b in pairs]
        n = sum(len(b.logs) + len(b.metrics) for b in batches)
        results["sqlite_insert"] = _rate(n, _timed(lambda: [store.commit(b) for b in batches]))
        store.close()
        store = Store(Path(tmp) / "pipeline.db", SHIP)
        pipeline = Pipeline(policy, store)
        for i in range(0, len(warm), BATCH):
            pipeline.run_batch(list(warm[i : i + BATCH]))
        chunks = [list(stream[i : i + BATCH]) for i in range(0, len(stream), BATCH)]
        results["pipeline"] = _rate(
            len(stream), _timed(lambda: [pipeline.run_batch(c) for c in chunks])
        )
        store.close()
    parts = ("parse", "templates", "detect", "sqlite_insert")
    # Cost per event of the parts run back to back (parse and templates only see log lines).
    share = {
        "parse": results["log_share"],
        "templates": results["log_share"],
        "detect": 1.0,
        "sqlite_insert": 1.0,
    }
    results["parts_combined"] = 1.0 / sum(share[p] / results[p] for p in parts)
    return results


SENDER = r"""
import socket, sys, time, json, httpx
from datetime import datetime, UTC
port, http, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lines = [l.encode() for l in json.loads(sys.stdin.readline())]
metrics = json.loads(sys.stdin.readline())
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client = httpx.Client(base_url=http)
tick = 0.01
per_tick_logs, per_tick_metrics = rate * 0.7 * tick, rate * 0.3 * tick
t0 = time.perf_counter(); i = j = 0; owed_l = owed_m = 0.0
while time.perf_counter() - t0 < seconds:
    owed_l += per_tick_logs; owed_m += per_tick_metrics
    while owed_l >= 1:
        udp.sendto(lines[i % len(lines)], ("127.0.0.1", port)); i += 1; owed_l -= 1
    batch = []
    while owed_m >= 1:
        batch.append(metrics[j % len(metrics)]); j += 1; owed_m -= 1
    if batch:
        client.post("/api/v3/ingest", json={"metrics": batch})
    nxt = t0 + (i + j) / rate
    time.sleep(max(0.0, nxt - time.perf_counter()))
print(i + j)
"""


async def latency_run(
    rate: float,
    seconds: float,
    devices: int,
    during: Callable[[Any], Coroutine[Any, Any, None]] | None = None,
) -> dict[str, Any]:
    """A real agent fed at `rate` by a sender process; `during(agent)` runs meanwhile."""
    from shared.settings import AgentSettings
    from ship_agent.agent import ShipAgent

    stream = make_stream(20_000, devices)
    lines = [e.data.decode() for e in stream if isinstance(e, RawInput)]
    metrics = [
        {
            "ts": datetime.fromtimestamp(e.ts, UTC).isoformat(),
            "device": e.device,
            "metric": e.metric,
            "value": e.value,
        }
        for e in stream
        if isinstance(e, MetricEvent)
    ]
    latencies: list[float] = []

    def record(b: Batch) -> None:
        done = b.stages["commit"]
        latencies.extend(done - e.received for e in b.logs)
        latencies.extend(done - e.received for e in b.metrics)

    with tempfile.TemporaryDirectory() as tmp:
        settings = AgentSettings(
            ship_id=SHIP, data_dir=Path(tmp), http_port=0, syslog_port=0, insight=False
        )
        agent = ShipAgent(settings, load_policy(ship_id=SHIP))
        await agent.start()
        agent.listeners.append(record)
        assert agent.syslog is not None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SENDER,
            str(agent.syslog.udp_port),
            f"http://127.0.0.1:{agent.http_port}",
            str(rate),
            str(seconds),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        payload = (json.dumps(lines) + "\n" + json.dumps(metrics) + "\n").encode()
        beside = asyncio.create_task(during(agent)) if during else None  # e.g. the insight path
        out, _ = await proc.communicate(payload)
        if beside is not None:
            await beside
        sent = int(out.decode().strip() or 0)
        await asyncio.sleep(0.5)
        await agent.drained()
        await agent.stop()
    latencies.sort()
    q = statistics.quantiles(latencies, n=1000) if len(latencies) > 10 else [0.0] * 999
    return {
        "rate": rate,
        "sent": sent,
        "committed": len(latencies),
        "p50_ms": q[499] * 1000,
        "p99_ms": q[989] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


RSS_CHILD = r"""
import json, sys, time
from pathlib import Path
from shared import log
from shared.ids import new_id
from ship_agent.pipeline import Pipeline
from ship_agent.records import MetricEvent
from ship_agent.store import Store
from bench.fastpath import make_stream, scoring_policy, SHIP
db, devices, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
store = Store(db, SHIP)
p = Pipeline(scoring_policy(), store)
p.warm_start()
ready = time.perf_counter() - t0
hst = p.detect.hst
out = {"ready_s": ready, "saved_models": len(hst.saved)}
if mode == "fill":
    stream = make_stream(devices * 80, devices)
    for i in range(0, len(stream), 2000):
        p.run_batch(stream[i:i + 2000])
    p.checkpoint()
else:
    # one sample from every device brings every model back into memory
    t1 = time.perf_counter()
    p.run_batch([MetricEvent(new_id(), 2e9, d, "net.cpu_pct", 1.0, 2e9, "bench")
                 for d in list(hst.saved)])
    out["all_models_s"] = ready + time.perf_counter() - t1
out["models"] = len(hst.devices)
out["rss_mb"] = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
print(json.dumps(out))
"""


def memory_and_restart(devices: int) -> dict[str, Any]:
    """A fresh process warms N devices' models and checkpoints; a second one restarts."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "agent.db")
        for mode in ("fill", "restart"):
            done = subprocess.run(
                [sys.executable, "-c", RSS_CHILD, db, str(devices), mode],
                capture_output=True,
                text=True,
                env=env,
                check=True,
                cwd=root,
            )
            runs.append(json.loads(done.stdout))
    fill, restart = runs
    return {
        "rss_mb": fill["rss_mb"],
        "models": fill["models"],
        "ready_s": restart["ready_s"],
        "saved_models": restart["saved_models"],
        "all_models_s": restart["all_models_s"],
        "rss_after_restart_mb": restart["rss_mb"],
    }


def _row(name: str, value: float, unit: str, fmt: str = ",.0f") -> None:
    print(f"  {name:<34}{value:>14{fmt}}  {unit}")


def main(args: argparse.Namespace) -> int:
    log.configure("WARNING")
    print(banner("fastpath"))
    t = throughput(args.events, args.devices)
    print(
        f"\nthroughput, one core, {t['events']:,} events ({t['log_share']:.0%} syslog), "
        f"{args.devices} devices, batches of {BATCH}, after as many warm-up events"
    )
    _row("parse (syslog lines)", t["parse"], "lines/s")
    _row("templates (drain3)", t["templates"], "lines/s")
    _row("detectors (all)", t["detect"], "events/s")
    _row("SQLite batch insert", t["sqlite_insert"], "events/s")
    _row("parts back to back (expected)", t["parts_combined"], "events/s")
    _row("whole fast path -> commit", t["pipeline"], "events/s")
    _row("ratio whole / parts back to back", t["pipeline"] / t["parts_combined"], "", ".2f")

    lat = asyncio.run(latency_run(args.rate, args.latency_seconds, min(args.devices, 50)))
    print(
        f"\nlatency ingest -> committed, real agent, UDP syslog + HTTP metrics at "
        f"{lat['rate']:,.0f} events/s for {args.latency_seconds:.0f} s "
        f"({lat['committed']:,} of {lat['sent']:,} sent committed)"
    )
    for key in ("p50_ms", "p99_ms", "max_ms"):
        _row(key[:-3], lat[key], "ms", ".2f")

    mem = memory_and_restart(args.devices)
    print(f"\nmemory and restart, {mem['models']} devices with HalfSpaceTrees models")
    _row("agent RSS, models warm", mem["rss_mb"], "MB")
    _row("restart: ready for events", mem["ready_s"], "s", ".2f")
    _row("restart: all models back", mem["all_models_s"], "s", ".2f")
    _row("agent RSS after restart", mem["rss_after_restart_mb"], "MB")
    return 0
