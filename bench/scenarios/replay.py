"""Run simulated traffic through a real pipeline and read back the incidents it committed.

The stream goes in as the agent receives it (raw syslog bytes, metric samples) in the
agent's own micro-batch size, into a real SQLite store, one pass, in time order.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from shared.policy import Policy
from ship_agent.pipeline import Pipeline
from ship_agent.simulator import Simulator
from ship_agent.simulator.feed import replay_into
from ship_agent.store import Store

BATCH = 2000


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    type: str
    device: str  # the root-cause candidate
    devices: tuple[str, ...]
    status: str
    first_seen: float
    last_seen: float
    suppressed_reason: str | None

    @property
    def suppressed(self) -> bool:
        """Opened inside a maintenance window or an operator suppression (then recorded)."""
        return self.suppressed_reason is not None


@dataclass(frozen=True, slots=True)
class Replay:
    incidents: list[Incident]
    events: int
    seconds: float
    dead_letters: int


def replay(sim: Simulator, duration_s: float, policy: Policy, ship_id: str) -> Replay:
    with tempfile.TemporaryDirectory(prefix="seawatch-bench-") as tmp:
        store = Store(Path(tmp) / "agent.db", ship_id)
        pipeline = Pipeline(policy, store)
        started = time.perf_counter()
        n = replay_into(pipeline, sim.events(duration_s), BATCH)
        seconds = time.perf_counter() - started
        incidents = [_incident(doc) for (doc,) in store.conn.execute("SELECT doc FROM incidents")]
        dead = store.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        store.close()
    incidents.sort(key=lambda i: i.first_seen)
    return Replay(incidents, n, seconds, int(dead))


def _incident(doc: str) -> Incident:
    d = orjson.loads(doc)
    return Incident(
        id=d["id"],
        type=d["type"],
        device=d["device"],
        devices=tuple(d.get("devices") or (d["device"],)),
        status=d["status"],
        first_seen=epoch(d["first_seen"]),
        last_seen=epoch(d["last_seen"]),
        suppressed_reason=d.get("suppressed_reason"),
    )


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
