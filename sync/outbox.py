"""The ship's SQLite outbox as the uplink sees it: what to send next, what was sent, what
the hub confirmed, and what a full outbox had to give up.

Rows are written by the fast path (one per incident version, in the batch transaction).
Only the newest unsent version of an incident (or an action request) is worth the link:
older unsent versions are marked superseded, never sent, so versions reach the hub in order
and only once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import wire
from shared.ids import new_id
from shared.models import Gap
from shared.taxonomy import Priority

LANES = {int(p): p.name.lower() for p in Priority}


@dataclass(slots=True)
class Row:
    id: int
    key: str  # "incident_id:version": the Nats-Msg-Id, and what receipts name
    priority: int
    kind: str
    payload: bytes
    created: float


class Outbox:
    def __init__(self, conn: sqlite3.Connection, ship_id: str) -> None:
        self.conn = conn
        self.ship_id = ship_id

    def next_rows(self, limit: int) -> list[Row]:
        """Unsent rows, most urgent first, oldest first within a lane."""
        c = self.conn
        c.execute(
            "UPDATE outbox SET sent=?, note='superseded' WHERE sent IS NULL"
            " AND kind IN ('incident', 'action_request')"
            " AND EXISTS (SELECT 1 FROM outbox n WHERE n.incident_id=outbox.incident_id"
            " AND n.version > outbox.version)",
            (time.time(),),
        )
        rows = c.execute(
            "SELECT id, incident_id || ':' || version, priority, kind, payload, created"
            " FROM outbox WHERE sent IS NULL ORDER BY priority, id LIMIT ?",
            (limit,),
        )
        return [Row(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def mark_sent(self, ids: list[int], ts: float) -> None:
        self.conn.executemany(
            "UPDATE outbox SET sent=? WHERE id=? AND sent IS NULL", [(ts, i) for i in ids]
        )

    def mark_delivered(self, keys: list[str], ts: float) -> int:
        """Hub receipts; returns how many rows they confirmed for the first time."""
        rows = []
        for key in keys:
            iid, _, version = key.rpartition(":")
            with contextlib.suppress(ValueError):  # a malformed key confirms nothing
                rows.append((ts, ts, iid, int(version)))
        cur = self.conn.executemany(
            "UPDATE outbox SET delivered=?, sent=coalesce(sent, ?)"  # stored ashore: it was sent
            " WHERE incident_id=? AND version=? AND delivered IS NULL",
            rows,
        )
        return cur.rowcount

    def in_flight(self, since: float) -> list[tuple[str, int, float]]:
        """Sent since `since` and not yet confirmed: (key, bytes, sent)."""
        rows = self.conn.execute(
            "SELECT incident_id || ':' || version, length(payload), sent FROM outbox"
            " WHERE sent >= ? AND delivered IS NULL AND note IS NULL",
            (since,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def depths(self) -> dict[str, int]:
        counts = dict.fromkeys(LANES.values(), 0)
        for prio, n in self.conn.execute(
            "SELECT priority, count(*) FROM outbox WHERE sent IS NULL GROUP BY priority"
        ):
            counts[LANES.get(prio, str(prio))] = n
        return counts

    def oldest_unsent(self) -> float | None:
        row = self.conn.execute("SELECT min(created) FROM outbox WHERE sent IS NULL").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def delivery(self, incident_id: str) -> dict[str, float | int | None] | None:
        """Where the newest version of an incident is on its way to shore."""
        row = self.conn.execute(
            "SELECT version, sent, delivered FROM outbox WHERE incident_id=? AND note IS NULL"
            " AND sent IS NOT NULL ORDER BY version DESC LIMIT 1",
            (incident_id,),
        ).fetchone()
        pending = self.conn.execute(
            "SELECT max(version) FROM outbox WHERE incident_id=? AND sent IS NULL", (incident_id,)
        ).fetchone()[0]
        if row is None and pending is None:
            return None
        return {
            "sent_version": row[0] if row else None,
            "sent_at": row[1] if row else None,
            "delivered_at": row[2] if row else None,
            "pending_version": pending,
        }

    def evict(
        self, max_bytes: int, max_age_s: float, now: float, stream_max_age_s: float | None = None
    ) -> list[str]:
        """Bound the unsent backlog: drop the oldest rows of the lowest lane first (urgent
        rows only past their age), and queue an urgent gap record naming each one. Rows
        sent but never confirmed for longer than the stream keeps messages
        (`stream_max_age_s`) may have expired unsourced: they are reported the same way."""
        c = self.conn
        evicted: list[str] = []
        c.execute("BEGIN")
        try:
            old = c.execute(
                "SELECT id, incident_id || ':' || version FROM outbox WHERE sent IS NULL"
                " AND kind != 'gap' AND created < ?",
                (now - max_age_s,),
            ).fetchall()
            if stream_max_age_s is not None:
                old += c.execute(
                    "SELECT id, incident_id || ':' || version FROM outbox WHERE sent < ?"
                    " AND delivered IS NULL AND note IS NULL AND kind != 'gap'",
                    (now - stream_max_age_s,),
                ).fetchall()
            total = c.execute(
                "SELECT coalesce(sum(length(payload)), 0) FROM outbox WHERE sent IS NULL"
            ).fetchone()[0]
            over: list[tuple[int, str]] = []
            if total > max_bytes:
                for rid, key, size in c.execute(
                    "SELECT id, incident_id || ':' || version, length(payload) FROM outbox"
                    " WHERE sent IS NULL AND kind != 'gap' AND priority > ?"
                    " ORDER BY priority DESC, id",
                    (int(Priority.URGENT),),
                ):
                    over.append((rid, key))
                    total -= size
                    if total <= max_bytes:
                        break
            chosen = dict(old + over)
            if chosen:
                c.executemany(
                    "UPDATE outbox SET sent=?, note='evicted' WHERE id=?",
                    [(now, rid) for rid in chosen],
                )
                evicted = list(chosen.values())
                gap = Gap(
                    tracking_id=new_id(),
                    ship_id=self.ship_id,
                    ts=datetime.fromtimestamp(now, UTC),
                    evicted=evicted,
                    reason=f"outbox over its bound ({max_bytes} bytes, {max_age_s:.0f} s)",
                )
                c.execute(
                    "INSERT INTO outbox (incident_id, version, priority, kind, payload, created)"
                    " VALUES (?,1,?,'gap',?,?)",
                    (gap.tracking_id, int(Priority.URGENT), wire.encode([gap]), now),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return evicted

    def purge(self, settled_before: float, sent_before: float) -> int:
        """Forget rows the hub confirmed (or that were superseded/evicted) before
        `settled_before`, and any row sent before `sent_before` (past the streams' max age,
        a missing receipt will never come)."""
        return self.conn.execute(
            "DELETE FROM outbox WHERE (sent < ? AND (delivered IS NOT NULL OR note IS NOT NULL))"
            " OR sent < ?",
            (settled_before, sent_before),
        ).rowcount
