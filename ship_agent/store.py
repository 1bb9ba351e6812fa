"""The ship's SQLite store (WAL): one transaction per micro-batch.

An incident version and its outbox row are written in the same transaction as the events
and anomalies that caused them, so a crash at any moment leaves either all of a batch or
none of it; `committing` hooks write into that transaction too (the crew's notifications).
Tables are created with sqlite-utils; the hot path uses executemany on the same
connection, since building a dict per event would cost more than the insert.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from shared import wire
from shared.ids import id_floor
from shared.models import ActionResult, Incident, Insight
from shared.notify.spool import DDL as NOTIFY_DDL
from shared.taxonomy import Priority, priority_for
from ship_agent.correlate import IncidentState
from ship_agent.enrich import AnomalyRecord
from ship_agent.records import DeadLetter, LogEvent, MetricEvent
from ship_agent.templates import TemplateInfo

SCHEMA_VERSION = 3  # 3: the notification spool's tables

_DDL = """
CREATE TABLE IF NOT EXISTS events (
  tracking_id TEXT PRIMARY KEY, ts REAL NOT NULL, received REAL NOT NULL, batch_id INTEGER,
  kind TEXT NOT NULL, source TEXT NOT NULL, device TEXT NOT NULL, name TEXT NOT NULL,
  severity INTEGER, value REAL, template_id INTEGER, message TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY, n_events INTEGER, first_received REAL, stages TEXT
);
CREATE TABLE IF NOT EXISTS templates (
  id INTEGER PRIMARY KEY, template TEXT, size INTEGER, first_seen REAL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS anomalies (
  id TEXT PRIMARY KEY, tracking_id TEXT, ts REAL, device TEXT, detector TEXT,
  incident_type TEXT, score REAL, summary TEXT, evidence TEXT, context TEXT,
  incident_id TEXT, batch_id INTEGER
);
CREATE INDEX IF NOT EXISTS anomalies_tracking ON anomalies(tracking_id);
CREATE INDEX IF NOT EXISTS anomalies_incident ON anomalies(incident_id);
CREATE INDEX IF NOT EXISTS anomalies_ts ON anomalies(ts);
CREATE TABLE IF NOT EXISTS incidents (
  id TEXT PRIMARY KEY, version INTEGER, type TEXT, severity TEXT, status TEXT, device TEXT,
  first_seen REAL, last_seen REAL, updated REAL, anomaly_count INTEGER, doc TEXT
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents(status, severity);
CREATE INDEX IF NOT EXISTS incidents_device ON incidents(device, first_seen);
CREATE TABLE IF NOT EXISTS incident_timeline (
  incident_id TEXT, version INTEGER, ts REAL, event TEXT, detail TEXT, batch_id INTEGER
);
CREATE INDEX IF NOT EXISTS timeline_incident ON incident_timeline(incident_id, version);
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, version INTEGER NOT NULL,
  priority INTEGER NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL,
  sent REAL, delivered REAL, note TEXT, UNIQUE(incident_id, version)
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox(sent, priority, id);
CREATE TABLE IF NOT EXISTS downlink (
  command_id TEXT PRIMARY KEY, action TEXT, target TEXT, applied REAL, ok INTEGER, detail TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL, source TEXT, peer TEXT, reason TEXT,
  data BLOB
);
CREATE TABLE IF NOT EXISTS model_state (name TEXT PRIMARY KEY, blob BLOB, saved REAL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, actor TEXT, action TEXT, incident_id TEXT,
  detail TEXT
);
"""


@dataclass
class Batch:
    """Everything one micro-batch commits, in one transaction."""

    logs: list[LogEvent] = field(default_factory=list)
    metrics: list[MetricEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    templates: list[TemplateInfo] = field(default_factory=list)
    anomalies: list[AnomalyRecord] = field(default_factory=list)
    incidents: list[IncidentState] = field(default_factory=list)
    audit: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    applied: list[ActionResult] = field(default_factory=list)  # shore commands, exactly once
    insights: list[tuple[Insight, Priority]] = field(default_factory=list)  # with the version
    stages: dict[str, float] = field(default_factory=dict)


class Store:
    def __init__(self, path: Path | str, ship_id: str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.ship_id = ship_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_DDL + NOTIFY_DDL)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
        for column in ("delivered REAL", "note TEXT"):  # schema 1 -> 2
            if column.split()[0] not in columns:
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.conn = conn
        row = conn.execute("SELECT max(id) FROM batches").fetchone()
        self._batch_id = int(row[0] or 0)
        # called inside each batch's transaction with the incident versions it writes:
        # what they write commits, or rolls back, with the batch
        self.committing: list[Callable[[list[Incident]], None]] = []

    def close(self) -> None:
        self.conn.close()

    # ---------------------------------------------------------------- the hot path

    def commit(self, b: Batch) -> int:
        self._batch_id += 1
        bid = self._batch_id
        c = self.conn
        now = time.time()
        first = min(
            min((e.received for e in b.logs), default=now),
            min((x.received for x in b.metrics), default=now),
        )
        c.execute("BEGIN")
        try:
            if b.logs:
                c.executemany(
                    "INSERT OR IGNORE INTO events VALUES (?,?,?,?,'log',?,?,?,?,NULL,?,?)",
                    [
                        (
                            e.tracking_id,
                            e.ts,
                            e.received,
                            bid,
                            e.source,
                            e.device,
                            e.app,
                            e.severity,
                            e.template_id,
                            e.message,
                        )
                        for e in b.logs
                    ],
                )
            if b.metrics:
                c.executemany(
                    "INSERT OR IGNORE INTO events VALUES (?,?,?,?,'metric',?,?,?,NULL,?,NULL,NULL)",
                    [
                        (
                            m.tracking_id,
                            m.ts,
                            m.received,
                            bid,
                            m.source,
                            m.device,
                            m.metric,
                            m.value,
                        )
                        for m in b.metrics
                    ],
                )
            if b.dead_letters:
                c.executemany(
                    "INSERT INTO dead_letters (received, source, peer, reason, data)"
                    " VALUES (?,?,?,?,?)",
                    [(d.received, d.source, d.peer, d.reason, d.data) for d in b.dead_letters],
                )
            if b.templates:
                c.executemany(
                    "INSERT INTO templates VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                    " template=excluded.template, size=excluded.size,"
                    " last_seen=excluded.last_seen",
                    [(t.id, t.template, t.size, t.first_seen, t.last_seen) for t in b.templates],
                )
            if b.anomalies:
                c.executemany(
                    "INSERT INTO anomalies VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            a.id,
                            a.hit.tracking_id,
                            a.hit.ts,
                            a.hit.device,
                            a.hit.detector,
                            a.hit.incident_type,
                            a.hit.score,
                            a.hit.summary,
                            orjson.dumps(a.hit.evidence).decode(),
                            orjson.dumps(a.context).decode(),
                            a.incident_id,
                            bid,
                        )
                        for a in b.anomalies
                    ],
                )
            versions = [self._write_incident(inc, bid) for inc in b.incidents]
            for hook in self.committing:
                hook(versions)
            if b.audit:
                c.executemany(
                    "INSERT INTO audit (ts, actor, action, incident_id, detail) VALUES (?,?,?,?,?)",
                    b.audit,
                )
            if b.applied:
                self.write_applied(b.applied, now)
            if b.insights:  # keyed like gaps: tracking id, version 1
                c.executemany(
                    "INSERT INTO outbox (incident_id, version, priority, kind, payload, created)"
                    " VALUES (?,1,?,'insight',?,?)",
                    [(i.tracking_id, int(p), wire.encode([i]), now) for i, p in b.insights],
                )
            b.stages["commit"] = time.time()
            c.execute(
                "INSERT INTO batches VALUES (?,?,?,?)",
                (bid, len(b.logs) + len(b.metrics), first, orjson.dumps(b.stages).decode()),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return bid

    def _write_incident(self, inc: IncidentState, bid: int) -> Incident:
        model = inc.to_model(self.ship_id)
        doc = model.model_dump_json()
        now = time.time()
        self.conn.execute(
            "INSERT INTO incidents VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
            " version=excluded.version, type=excluded.type, severity=excluded.severity,"
            " status=excluded.status, device=excluded.device, last_seen=excluded.last_seen,"
            " updated=excluded.updated, anomaly_count=excluded.anomaly_count, doc=excluded.doc",
            (
                inc.id,
                inc.version,
                inc.type.value,
                inc.severity.value,
                inc.status.value,
                inc.device,
                inc.first_seen,
                inc.last_seen,
                now,
                inc.anomaly_count,
                doc,
            ),
        )
        self.conn.executemany(
            "INSERT INTO incident_timeline VALUES (?,?,?,?,?,?)",
            [
                (inc.id, t["version"], t["ts"], t["event"], t["detail"], bid)
                for t in inc.timeline
                if t["version"] == inc.version
            ],
        )
        self.conn.execute(
            "INSERT INTO outbox (incident_id, version, priority, kind, payload, created)"
            " VALUES (?,?,?,?,?,?)",
            (
                inc.id,
                inc.version,
                int(priority_for(inc.severity)),
                "incident",
                wire.encode([model]),
                now,
            ),
        )
        return model

    def write_applied(self, results: list[ActionResult], now: float) -> None:
        """A shore command's effect, its record and its result for the uplink commit
        together, so a crash can neither repeat it nor lose that it happened."""
        self.conn.executemany(
            "INSERT INTO downlink VALUES (?,?,?,?,?,?)",
            [(r.command_id, r.action, r.target, now, int(r.ok), r.detail) for r in results],
        )
        self.conn.executemany(
            "INSERT INTO outbox (incident_id, version, priority, kind, payload, created)"
            " VALUES (?,1,?,'action_result',?,?)",
            [(r.command_id, int(Priority.URGENT), wire.encode([r]), now) for r in results],
        )

    def record_applied(self, results: list[ActionResult]) -> None:
        """Shore commands that had no pipeline effect (bundles, decisions, refusals)."""
        self.conn.execute("BEGIN")
        try:
            self.write_applied(results, time.time())
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def command_applied(self, command_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM downlink WHERE command_id=?", (command_id,))
        return row.fetchone() is not None

    # ---------------------------------------------------------------- state and start-up

    def save_states(self, blobs: dict[str, bytes]) -> None:
        """Learned state, in one transaction: a crash keeps the previous checkpoint whole."""
        now = time.time()
        with self.db.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR REPLACE INTO model_state VALUES (?,?,?)",
                [(name, blob, now) for name, blob in blobs.items()],
            )

    def load_state(self, name: str) -> bytes | None:
        row = self.conn.execute("SELECT blob FROM model_state WHERE name=?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def load_states(self, prefix: str) -> dict[str, bytes]:
        rows = self.conn.execute(
            "SELECT name, blob FROM model_state WHERE substr(name, 1, ?) = ?",
            (len(prefix), prefix),
        )
        return {name: bytes(blob) for name, blob in rows}

    def incident(self, incident_id: str) -> Incident | None:
        row = self.conn.execute("SELECT doc FROM incidents WHERE id=?", (incident_id,)).fetchone()
        return Incident.model_validate_json(row[0]) if row else None

    def active_incidents(self) -> list[Incident]:
        rows = self.conn.execute(
            "SELECT doc FROM incidents WHERE status IN ('open','acknowledged','suppressed')"
        )
        return [Incident.model_validate_json(r[0]) for r in rows]

    def recent_anomalies(self, since: float) -> list[tuple[str, str, float]]:
        return list(
            self.conn.execute(
                "SELECT device, incident_type, ts FROM anomalies WHERE ts >= ? ORDER BY ts",
                (since,),
            )
        )

    def last_incidents_by_device(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT device, id, type, status, max(first_seen) FROM incidents GROUP BY device"
        )
        return {r[0]: {"id": r[1], "type": r[2], "status": r[3], "ts": r[4]} for r in rows}

    # ---------------------------------------------------------------- retention

    def apply_retention(
        self,
        now: float,
        events_days: float,
        incidents_days: float,
        dead_letters_days: float,
        max_events_rows: int,
    ) -> dict[str, int]:
        """Delete what policy says is old; events by id range (ids are time-ordered)."""
        c = self.conn
        removed: dict[str, int] = {}
        cutoff = id_floor(now - events_days * 86400)
        removed["events"] = c.execute(
            "DELETE FROM events WHERE tracking_id < ?", (cutoff,)
        ).rowcount
        count = c.execute("SELECT count(*) FROM events").fetchone()[0]
        if count > max_events_rows:
            excess = count - max_events_rows
            removed["events"] += c.execute(
                "DELETE FROM events WHERE tracking_id IN"
                " (SELECT tracking_id FROM events ORDER BY tracking_id LIMIT ?)",
                (excess,),
            ).rowcount
        old = now - incidents_days * 86400
        removed["incidents"] = c.execute(
            "DELETE FROM incidents WHERE status='resolved' AND last_seen < ?", (old,)
        ).rowcount
        c.execute(
            "DELETE FROM incident_timeline WHERE incident_id NOT IN (SELECT id FROM incidents)"
        )
        removed["anomalies"] = c.execute("DELETE FROM anomalies WHERE ts < ?", (old,)).rowcount
        removed["dead_letters"] = c.execute(
            "DELETE FROM dead_letters WHERE received < ?", (now - dead_letters_days * 86400,)
        ).rowcount
        oldest = c.execute("SELECT batch_id FROM events ORDER BY tracking_id LIMIT 1").fetchone()
        kept = c.execute("SELECT min(batch_id) FROM anomalies").fetchone()
        floor = min(x[0] for x in (oldest, kept, (self._batch_id,)) if x and x[0] is not None)
        c.execute("DELETE FROM batches WHERE id < ?", (floor,))
        return removed

    def unsent_count(self) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0]
        )
