"""`seawatch bench hub`: ingest rate and query latency of the hub's fleet store.

Ingest: N incidents from S ships spread over 180 days, as Incident JSON documents built
directly (no pydantic per row), through `FleetStore.insert_incident_docs` in batches, so
the figure covers row building, serialisation and the engine writing every incident table.
Every incident (by default) gets a second version, acknowledged and resolved 30 min to 4 h
later, as a ship sends them; those due after the end stay open. The ingest runs in a child
process pinned to one core before the engine starts, so inserts and background merges
share that core: a one-core rate.
Queries: p50/p99 over R runs each of incident lists with filters (varied every run),
stats over 30 days and the fleet overview, on every core, once the background merges that
the ingest left behind are done (a hub's steady state; the wait is printed). The machine's
load average is printed too: figures from a shared machine are only as quiet as it was.

Entry point: `main(args)` with the options of `add_arguments`; `python -m bench.hubstore`.
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import banner, scratch_dir
from shared.ids import id_floor
from shared.models import Heartbeat
from shared.taxonomy import IncidentType, Severity
from shared.timeutil import iso
from shore_hub.fleetstore import FleetStore

DAY = 86_400.0
SPAN_DAYS = 180
DEVICES = ("vsat-modem-1", "core-router", "fw-main", "sw-deck3", "ap-guest-12", "pos-srv")
DETECTORS = ("threshold", "robust_z", "hst", "log_pattern", "error_burst")
SEVERITY = {
    IncidentType.SAFETY: Severity.CRITICAL,
    IncidentType.COMMS_OUTAGE: Severity.CRITICAL,
    IncidentType.LINK_DEGRADATION: Severity.HIGH,
    IncidentType.SECURITY_ALERT: Severity.HIGH,
    IncidentType.RESOURCE_PRESSURE: Severity.MEDIUM,
    IncidentType.NETWORK_ISSUE: Severity.MEDIUM,
    IncidentType.APP_DEGRADATION: Severity.MEDIUM,
    IncidentType.HARDWARE_ENVIRONMENT: Severity.MEDIUM,
    IncidentType.NAVIGATION_DATA: Severity.LOW,
    IncidentType.AUTH_FAILURE: Severity.LOW,
}
TYPES = list(SEVERITY)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--incidents", type=int, default=1_000_000, help="incidents to store")
    p.add_argument("--ships", type=int, default=50)
    p.add_argument("--runs", type=int, default=50, help="runs of each query")
    p.add_argument("--batch", type=int, default=5000, help="incident versions per insert")
    p.add_argument(
        "--resolved", type=float, default=1.0, help="share of incidents that get resolved"
    )
    p.add_argument(
        "--as-ingested", action="store_true", help="query before the old weeks are merged"
    )
    p.add_argument("--url", default=None, help="ClickHouse server (default: chdb in process)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")


class Fleet:
    """Incident documents in the shape `Incident.model_dump(mode="json")` gives."""

    def __init__(self, ships: int, end: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.ships = [f"MV-BENCH-{i:03d}" for i in range(ships)]
        self.end = end
        self.start = end - SPAN_DAYS * DAY

    def versions(self, n: int, resolved_share: float, batch: int) -> Iterator[list[dict[str, Any]]]:
        """Batches in arrival order: each v1 when opened, its v2 when resolved (30 min to
        4 h later), so a batch mixes new incidents with the resolution of recent ones."""
        step = (self.end - self.start) / n
        due: list[tuple[float, int, dict[str, Any]]] = []
        out: list[dict[str, Any]] = []
        for i in range(n):
            first = self.start + i * step
            while due and due[0][0] <= first:
                out.append(heapq.heappop(due)[2])
            doc = self.first_version(i, first)
            out.append(doc)
            if self.rng.random() < resolved_share:
                resolved = first + self.rng.uniform(1800, 4 * 3600)
                heapq.heappush(due, (resolved, i, self.resolved(doc, first, resolved)))
            if len(out) >= batch:
                yield out
                out = []
        out.extend(d for t, _, d in sorted(due) if t <= self.end)  # the rest is still open
        for k in range(0, len(out), batch):
            yield out[k : k + batch]

    def first_version(self, i: int, first: float) -> dict[str, Any]:
        rng = self.rng
        ship = self.ships[i % len(self.ships)]
        itype = TYPES[int(rng.random() ** 2 * len(TYPES))]
        device = rng.choice(DEVICES)
        iid = id_floor(first)[:10] + f"{i:016d}"
        n_ev = rng.randint(1, 3)
        last = first + rng.uniform(0, 900)
        scores = [round(rng.uniform(0.6, 1.0), 3) for _ in range(n_ev)]
        evidence: list[dict[str, Any]] = [
            {
                "anomaly_id": f"{iid[:10]}A{i:011d}{k:04d}",
                "tracking_id": f"trk-{i:x}-{k}",
                "ts": iso(first + k * (last - first) / n_ev),
                "detector": rng.choice(DETECTORS),
                "device": device,
                "score": scores[k],
                "summary": f"{itype.value} signal {k} on {device}: value beyond its band",
            }
            for k in range(n_ev)
        ]
        timeline = [{"ts": iso(first), "version": 1, "event": "opened", "detail": ""}] + [
            {"ts": e["ts"], "version": 1, "event": "evidence", "detail": e["summary"]}
            for e in evidence
        ]
        return {
            "schema_version": 1,
            "tracking_id": f"trk-{i:x}",
            "ship_id": ship,
            "ts": iso(last),
            "kind": "incident",
            "id": iid,
            "version": 1,
            "type": itype.value,
            "severity": SEVERITY[itype].value,
            "status": "open",
            "device": device,
            "devices": [device],
            "service": None,
            "path": None,
            "corr_key": f"{itype.value}:{device}",
            "suppress_key": f"{itype.value}:{device}",
            "suppressed_reason": None,
            "first_seen": iso(first),
            "last_seen": iso(last),
            "anomaly_count": n_ev + rng.randint(0, 5),
            "evidence": evidence,
            "runbook_refs": [],
            "narrative": f"{itype.value.replace('_', ' ')} on {device} ({n_ev} signals)",
            "confidence": max(scores),
            "timeline": timeline,
            "resolved_at": None,
        }

    def resolved(self, doc: dict[str, Any], first: float, resolved_at: float) -> dict[str, Any]:
        acked = iso(first + self.rng.uniform(30, min(1800, resolved_at - first)))
        resolved = iso(resolved_at)
        return {
            **doc,
            "version": 2,
            "ts": resolved,
            "status": "resolved",
            "resolved_at": resolved,
            "timeline": [
                *doc["timeline"],
                {"ts": acked, "version": 2, "event": "acknowledged", "detail": "operator"},
                {"ts": resolved, "version": 2, "event": "resolved", "detail": "operator"},
            ],
        }


def ingest(url: str | None, data_dir: Path, db: str, end: float, args: argparse.Namespace) -> Any:
    """Run in a child process pinned to one CPU before the engine starts, so that every
    engine thread (inserts and background merges alike) shares that one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    store = FleetStore.open(url, data_dir, database=db)
    try:
        store.migrate()
        fleet = Fleet(args.ships, end)
        versions, busy = 0, 0.0
        for batch in fleet.versions(args.incidents, args.resolved, args.batch):
            t0 = time.perf_counter()
            versions += store.insert_incident_docs(batch, received_at=time.time())
            busy += time.perf_counter() - t0
        _heartbeats(store, fleet)
    finally:
        store.close()
    return {"versions": versions, "seconds": busy, "rate": versions / busy}


def _in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh process (spawned: no engine state is inherited)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def settle(store: FleetStore, limit_s: float) -> tuple[float, int]:
    """Bring the tables to a hub's steady state: every week but the newest merged into one
    part, as the store does by itself after 5 quiet minutes (cut to 1 s here, and waited
    for). Returns the wait and the active parts of the two tables."""
    tables = ("incidents", "incident_docs")
    for table in tables:
        store.backend.command(
            f"ALTER TABLE {store.db}.{table} MODIFY SETTING min_age_to_force_merge_seconds = 1"
        )
    t0 = time.monotonic()
    while True:
        parts = store.backend.query(
            "SELECT partition, count() AS n FROM system.parts WHERE database = {db:String}"
            " AND table IN {tables:Array(String)} AND active GROUP BY table, partition",
            {"db": store.db, "tables": list(tables)},
        )
        newest = max(p["partition"] for p in parts)
        if all(p["n"] == 1 or p["partition"] == newest for p in parts):
            break
        if time.monotonic() - t0 > limit_s:
            break
        time.sleep(1)
    return time.monotonic() - t0, sum(p["n"] for p in parts)


def timed(fn: Callable[[int], Any], runs: int) -> dict[str, float]:
    fn(-1)  # warm-up: first touch of the data and the query's code paths
    samples = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
        "max": samples[-1],
    }


def queries(store: FleetStore, fleet: Fleet, runs: int) -> dict[str, dict[str, float]]:
    ships, end = fleet.ships, fleet.end
    sev = [["critical"], ["high", "critical"], ["medium"]]
    scope = ships[: max(1, len(ships) // 5)]
    page = store.list_incidents(limit=50)
    cursor = page["next_cursor"]
    return {
        "list: newest 50, whole fleet": timed(lambda i: store.list_incidents(limit=50), runs),
        "list: next page (cursor)": timed(
            lambda i: store.list_incidents(cursor=cursor, limit=50), runs
        ),
        "list: severity + status, 7 days": timed(
            lambda i: store.list_incidents(
                severity=sev[i % 3], status="open", since=end - 7 * DAY, limit=50
            ),
            runs,
        ),
        "list: one ship + type": timed(
            lambda i: store.list_incidents(
                ship=ships[i % len(ships)], type=TYPES[i % len(TYPES)].value, limit=50
            ),
            runs,
        ),
        "list: scoped caller (1/5 of ships)": timed(
            lambda i: store.list_incidents(scope, severity=sev[i % 3], limit=50), runs
        ),
        "list: text search, 30 days": timed(
            lambda i: store.list_incidents(
                text=DEVICES[i % len(DEVICES)].upper(), since=end - 30 * DAY, limit=50
            ),
            runs,
        ),
        "incident detail": timed(lambda i: store.incident(page["items"][i % 50]["id"]), runs),
        "stats, 30 days": timed(lambda i: store.stats(since=end - 30 * DAY - i, until=end), runs),
        "fleet overview": timed(lambda i: store.fleet(), runs),
    }


def _heartbeats(store: FleetStore, fleet: Fleet) -> None:
    store.insert_heartbeats(
        [
            Heartbeat(
                ship_id=s,
                ts=datetime.fromtimestamp(fleet.end - k * 60, UTC),
                tracking_id=f"hb-{s}-{k}",
                agent_version="0.1.0",
                policy_version="bench",
                link_state="up",
                queue_depths={"urgent": 0, "normal": k % 7, "bulk": k % 50},
                oldest_unsent_s=float(k % 300),
            )
            for s in fleet.ships
            for k in range(60)
        ]
    )


def _row(name: str, value: float, unit: str, fmt: str = ",.1f") -> None:
    print(f"  {name:<38}{value:>12{fmt}}  {unit}")


def main(args: argparse.Namespace) -> int:
    engine = "ClickHouse server" if args.url else "chdb (in process)"
    print(banner("hubstore", engine))
    db = f"bench_{os.getpid()}"
    end = time.time()
    with scratch_dir(args.data_dir, "hub") as data_dir:
        done = _in_child(ingest, args.url, data_dir, db, end, args)
        where = "client" if args.url else "client and engine"
        print(
            f"\ningest, one core ({where}), {args.incidents:,} incidents from {args.ships} ships "
            f"over {SPAN_DAYS} days, {done['versions']:,} versions, batches of {args.batch:,}"
        )
        _row("incident versions", done["rate"], "versions/s", ",.0f")
        _row("time in inserts", done["seconds"], "s")
        store = FleetStore.open(args.url, data_dir, database=db)
        try:
            if args.as_ingested:
                state = "as ingested, merges still pending"
            else:
                waited, parts = settle(store, 600)
                state = f"steady state, after {waited:.0f} s of merges ({parts} parts)"
            print(f"\nqueries, {args.runs} runs each, all cores, {state}")
            print(f"  {'':<38}{'p50':>12}  {'p99':>8}  {'max':>8}")
            for name, r in queries(store, Fleet(args.ships, end), args.runs).items():
                print(f"  {name:<38}{r['p50']:>12.1f}  {r['p99']:>8.1f}  {r['max']:>8.1f}  ms")
            print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
            store.backend.command(f"DROP DATABASE {db}")
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
