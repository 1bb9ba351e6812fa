"""`seawatch bench hubingest`: incident versions per second from FLEET_UP into the fleet
store, end to end (JetStream -> pull consumer -> decode -> ClickHouse -> ack), on the hub's
embedded defaults with the incident memory off (it follows the store asynchronously).
Two runs, each on a fresh hub: live (this process publishes while the hub ingests) and a
backlog (everything is in FLEET_UP before the workers start, as after an outage; only the
hub's work is timed).

`--one-core` pins this process to one CPU before anything starts, so the nats-server it
starts, chdb's threads and the ingest share that core: the target's "one core". The hub
process's CPU time over the run is printed either way (the nats-server's is not in it)."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import log, wire
from shared.ids import new_id
from shared.models import Incident
from shared.policy import load_policy
from shared.settings import HubSettings
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from sync.topology import up_subject


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--versions", type=int, default=100_000, help="incident versions to send")
    p.add_argument("--per-frame", type=int, default=50, help="versions per wire frame")
    p.add_argument("--ships", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="ingest workers in the hub")
    p.add_argument("--one-core", action="store_true", help="pin everything to one CPU")


def frames(n: int, per_frame: int, ships: int) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    out = []
    for start in range(0, n, per_frame):
        ship = f"MV-{start // per_frame % ships:03d}"
        batch = []
        for k in range(start, min(n, start + per_frame)):
            first = now - timedelta(seconds=k)
            batch.append(
                Incident(
                    tracking_id=new_id(),
                    ship_id=ship,
                    ts=first,
                    id=new_id(),
                    version=1,
                    type=IncidentType.LINK_DEGRADATION,
                    severity=Severity.HIGH,
                    status=IncidentStatus.OPEN,
                    device="vsat-modem-01",
                    devices=["vsat-modem-01"],
                    corr_key="path:satellite_uplink",
                    suppress_key="link_degradation:vsat-modem-01",
                    first_seen=first,
                    last_seen=first,
                    anomaly_count=3,
                    narrative="SNR below 12 dB for 60 s during heavy rain",
                )
            )
        out.append((up_subject(ship, "incident"), wire.encode(batch)))
    return out


async def run(args: argparse.Namespace, backlog: bool) -> dict[str, float]:
    """Live: the hub ingests while this process publishes (on the same core, when pinned).
    Backlog: every version is in FLEET_UP before the ingest workers start, as after an
    outage; the clock starts with them, so only the hub's work is timed."""
    import nats

    from shore_hub.hub import Hub, tune_gc

    with tempfile.TemporaryDirectory() as tmp:
        settings = HubSettings(data_dir=Path(tmp), workers=args.workers, memory=False, leaf_port=0)
        hub = Hub(settings, load_policy())
        await hub.start(serve_http=False, ingest=not backlog)
        tune_gc()  # as `seawatch hub` does once started
        assert hub.nats_server is not None
        payload = frames(args.versions, args.per_frame, args.ships)
        nc = await nats.connect(hub.nats_server.url, **hub.nats_auth)
        js = nc.jetstream(domain="hub")
        t0, cpu0 = time.perf_counter(), time.process_time()
        for subject, data in payload:
            await js.publish(subject, data)
        published = time.perf_counter() - t0
        if backlog:
            t0, cpu0 = time.perf_counter(), time.process_time()
            hub.start_ingest()
        while sum(w.stored for w in hub.workers) < args.versions:
            await asyncio.sleep(0.05)
        stored, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await nc.close()
        await hub.stop()
    return {"published_s": published, "stored_s": stored, "cpu_s": cpu}


def main(args: argparse.Namespace) -> int:
    log.configure("WARNING")
    if args.one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    live = asyncio.run(run(args, backlog=False))
    backlog = asyncio.run(run(args, backlog=True))
    print(
        f"seawatch bench hubingest — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores{' (pinned to one)' if args.one_core else ''}, load average "
        f"{os.getloadavg()[0]:.1f}; {args.versions:,} incident versions from {args.ships} "
        f"ships, {args.per_frame} per frame, {args.workers} ingest worker(s), chdb"
    )
    print(
        f"  {'published to FLEET_UP (JetStream acks)':<48}"
        f"{args.versions / live['published_s']:>12,.0f}  versions/s"
    )
    for name, r in (("live: stored, from first publish", live),
                    ("backlog in FLEET_UP: stored, from worker start", backlog)):  # fmt: skip
        print(f"  {name:<48}{args.versions / r['stored_s']:>12,.0f}  versions/s")
        print(
            f"  {'  hub process CPU over that time':<48}{r['cpu_s'] / r['stored_s']:>12.2f}  "
            f"cores ({r['cpu_s']:.2f} s in {r['stored_s']:.2f} s)"
        )
    return 0
