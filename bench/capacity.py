"""`seawatch bench capacity`: the hub's disk per incident and per heartbeat, and a
heartbeat's bytes on the link, the measured inputs of docs/capacity.md.

Incidents are `bench.hubstore`'s synthetic fleet (a v1 when an incident opens and a v2
when it is resolved, as ships send them) through `FleetStore.insert_incident_docs`, so
every table the engine derives from an incident fills as in production. Their ids get
random tails as the ships' ULIDs have (hubstore numbers them, which compresses far better
than real ids). Heartbeats are built as the agent builds them (lanes and open incidents
filled in), one every `sync.heartbeat_s` per ship for `--heartbeat-days`. Bytes are read
from `system.parts` (active parts, compressed, every file, as on disk) after OPTIMIZE
FINAL: what a quiet week's partition becomes by itself (schema.py: forced merges), where
the replacing tables keep one row per incident instead of one per version. Before that,
the figure depends on which background merges happened to run.

The frame of a heartbeat is `shared.wire.encode` of one heartbeat, as the uplink sends it;
NATS framing on the leaf link comes on top (measured by `seawatch bench sync`).

Entry point: `main(args)` with the options of `add_arguments`; `python -m bench.capacity`.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import banner, scratch_dir
from bench.hubstore import Fleet
from shared import wire
from shared.models import Heartbeat
from shared.policy import load_policy
from shore_hub.fleetstore import FleetStore

# Tables that grow with incidents and with heartbeats; the rest (audit, actions, gaps,
# dead letters, insights, ask turns) grow with what operators and models do.
INCIDENT_TABLES = (
    "incidents",
    "incident_docs",
    "incident_versions",
    "incident_timeline",
    "anomaly_summaries",
    "ship_last_incident",
)
HEARTBEAT_TABLES = ("heartbeats", "ship_status")
SEVERITIES = ("critical", "high", "medium", "low")


@dataclass
class TableBytes:
    rows: int
    bytes: int  # compressed, on disk, every file of the active parts


@dataclass
class Capacity:
    incidents: int
    versions: int
    doc_bytes: float  # mean JSON document of a version, as the hub stores it
    heartbeats: int
    heartbeat_frame: float  # mean bytes of a one-heartbeat wire frame
    tables: dict[str, TableBytes]

    def per_incident(self) -> float:
        """Incident tables per incident: its latest version and its version history."""
        return sum(self.tables[t].bytes for t in INCIDENT_TABLES) / self.incidents

    def per_heartbeat(self) -> float:
        """Heartbeat history; ship_status is one row per ship whatever the count."""
        return self.tables["heartbeats"].bytes / self.heartbeats


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--incidents", type=int, default=100_000, help="incidents to store")
    p.add_argument("--ships", type=int, default=50)
    p.add_argument("--batch", type=int, default=5000, help="incident versions per insert")
    p.add_argument("--heartbeat-days", type=float, default=1.0, help="days of heartbeats per ship")
    p.add_argument("--url", default=None, help="ClickHouse server (default: chdb in process)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")


class _Ulids:
    """Keeps each id's 10 time characters and gives it a random 16-character tail (80
    bits, as a ULID has), the same tail every time the same id comes back."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        out = self.seen.get(value)
        if out is None:
            tail = base64.b32encode(self.rng.randbytes(10)).decode()
            out = self.seen[value] = value[:10] + tail
        return out


def _with_ulids(docs: Iterable[dict[str, Any]], ulid: _Ulids) -> list[dict[str, Any]]:
    return [
        {
            **d,
            "id": ulid(d["id"]),
            "tracking_id": ulid(d["id"][:10] + d["tracking_id"] + f":{d['version']}"),
            "evidence": [
                {
                    **e,
                    "anomaly_id": ulid(e["anomaly_id"]),
                    "tracking_id": ulid(e["anomaly_id"][:10] + e["tracking_id"]),
                }
                for e in d["evidence"]
            ],
        }
        for d in docs
    ]


def heartbeats(ships: list[str], end: float, days: float, every_s: float) -> list[Heartbeat]:
    """What each ship's agent sends every `every_s` while its link is up, over `days`."""
    rng = random.Random(5)
    n = round(days * 86_400 / every_s)
    return [
        Heartbeat(
            ship_id=ship,
            ts=datetime.fromtimestamp(end - k * every_s, UTC),
            tracking_id=base64.b32encode(rng.randbytes(16)).decode()[:26],
            agent_version="0.1.0",
            policy_version="2026.11",
            link_state="up",
            queue_depths={
                "urgent": rng.randint(0, 1),
                "normal": rng.randint(0, 10),
                "bulk": rng.randint(0, 60),
                "ingest": rng.randint(0, 400),
            },
            oldest_unsent_s=rng.choice((None, rng.uniform(0, 900))),
            open_incidents={s: c for s in SEVERITIES if (c := rng.randint(0, 3))},
        )
        for ship in ships
        for k in range(n)
    ]


def table_bytes(store: FleetStore) -> dict[str, TableBytes]:
    rows = store.backend.query(
        "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts"
        " WHERE database = {db:String} AND active GROUP BY table",
        {"db": store.db},
    )
    found = {r["table"]: TableBytes(int(r["rows"]), int(r["bytes"])) for r in rows}
    return {t: found.get(t, TableBytes(0, 0)) for t in (*INCIDENT_TABLES, *HEARTBEAT_TABLES)}


def measure(
    store: FleetStore, incidents: int, ships: int, batch: int, heartbeat_days: float, end: float
) -> Capacity:
    """Fill a migrated, empty store, settle it and read what it takes on disk."""
    fleet, ulid = Fleet(ships, end), _Ulids()
    versions, doc_bytes = 0, 0
    for docs in fleet.versions(incidents, 1.0, batch):
        docs = _with_ulids(docs, ulid)
        doc_bytes += sum(len(orjson.dumps(d)) for d in docs)
        versions += store.insert_incident_docs(docs, received_at=time.time())
    beats = heartbeats(fleet.ships, end, heartbeat_days, load_policy().sync.heartbeat_s)
    for k in range(0, len(beats), batch):
        store.insert_heartbeats(beats[k : k + batch])
    for table in (*INCIDENT_TABLES, *HEARTBEAT_TABLES):
        store.backend.command(f"OPTIMIZE TABLE {store.db}.{table} FINAL")
    return Capacity(
        incidents=incidents,
        versions=versions,
        doc_bytes=doc_bytes / versions,
        heartbeats=len(beats),
        heartbeat_frame=statistics.fmean(len(wire.encode([hb])) for hb in beats),
        tables=table_bytes(store),
    )


def report(c: Capacity) -> list[str]:
    lines = [f"{'table':<22}{'rows':>12}{'bytes on disk':>16}{'B/row':>8}"]
    for t in (*INCIDENT_TABLES, *HEARTBEAT_TABLES):
        r = c.tables[t]
        lines.append(f"{t:<22}{r.rows:>12,}{r.bytes:>16,}{r.bytes / max(r.rows, 1):>8.0f}")
    return [
        *lines,
        "",
        f"{'incident tables per incident':<40}{c.per_incident():>10,.0f}  B",
        f"{'heartbeat history per heartbeat':<40}{c.per_heartbeat():>10,.1f}  B",
        f"{'mean incident version document (JSON)':<40}{c.doc_bytes:>10,.0f}  B",
        f"{'heartbeat wire frame (mean)':<40}{c.heartbeat_frame:>10,.0f}  B",
    ]


def main(args: argparse.Namespace) -> int:
    engine = "ClickHouse server" if args.url else "chdb (in process)"
    print(banner("capacity", engine))
    db = f"capacity_{os.getpid()}"
    with scratch_dir(args.data_dir, "capacity") as data_dir:
        store = FleetStore.open(args.url, data_dir, database=db)
        try:
            store.migrate()
            c = measure(
                store, args.incidents, args.ships, args.batch, args.heartbeat_days, time.time()
            )
            store.backend.command(f"DROP DATABASE {db}")
        finally:
            store.close()
    print(
        f"\n{c.incidents:,} incidents from {args.ships} ships ({c.versions:,} versions: "
        f"opened, resolved), {c.heartbeats:,} heartbeats ({args.heartbeat_days:g} days a ship);"
        " settled (OPTIMIZE FINAL)"
    )
    for line in report(c):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
