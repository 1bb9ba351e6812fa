"""The notification spool: SQLite, so nothing decided is lost to a restart or an outage.

On the ship the tables live in the agent's own database (the store creates them with its
schema); at the hub in a small file of their own under the data directory. A row is
written once per (channel, dedup key), so a replayed incident version never spools a
second message; it is marked sent after its channel accepted it, and kept `keep_days`
after that. The engine's state is written in the same transaction as the rows it
produced: what was folded into a coming digest survives with them.

Bounded: past `max_pending` waiting rows the oldest of the lowest severity are dropped,
and the caller counts and logs each.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from shared.notify.engine import Notification

DDL = """
CREATE TABLE IF NOT EXISTS notify_spool (
  id TEXT PRIMARY KEY, channel TEXT NOT NULL, dedup_key TEXT NOT NULL, rank INTEGER NOT NULL,
  payload TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt REAL NOT NULL, sent REAL, gave_up REAL, last_error TEXT,
  UNIQUE(channel, dedup_key)
);
CREATE INDEX IF NOT EXISTS notify_spool_waiting ON notify_spool(next_attempt)
  WHERE sent IS NULL AND gave_up IS NULL;
CREATE TABLE IF NOT EXISTS notify_state (channel TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""
_WAITING = "sent IS NULL AND gave_up IS NULL"


@dataclass(frozen=True)
class Spooled:
    id: str
    channel: str
    attempts: int
    note: Notification


class Spool:
    def __init__(self, conn: sqlite3.Connection, owned: bool = False) -> None:
        """On a connection whose database has the tables (`DDL`) and autocommits."""
        self.conn = conn
        self._owned = owned

    @classmethod
    def open(cls, path: Path) -> Spool:
        """A spool in a file of its own."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(DDL)
        return cls(conn, owned=True)

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def keep(
        self, notes: list[Notification], states: dict[str, str], now: float, max_pending: int
    ) -> list[tuple[str, str]]:
        """Spool new notifications and the engine's state at once; returns (channel, key)
        of every waiting row the bound dropped to make room. A savepoint: its own
        transaction when called alone (the hub), part of the caller's when one is open
        (the ship's batch commit, so the rows commit or roll back with the batch)."""
        c = self.conn
        c.execute("SAVEPOINT notify")
        try:
            c.executemany(
                "INSERT OR IGNORE INTO notify_spool"
                " (id, channel, dedup_key, rank, payload, created, next_attempt)"
                " VALUES (?,?,?,?,?,?,?)",
                [
                    (n.id, n.channel, n.key, n.severity.rank, n.model_dump_json(), now, now)
                    for n in notes
                ],
            )
            c.executemany("INSERT OR REPLACE INTO notify_state VALUES (?,?)", list(states.items()))
            excess = self.waiting() - max_pending
            dropped: list[tuple[str, str]] = []
            if excess > 0:
                rows = c.execute(
                    f"SELECT id, channel, dedup_key FROM notify_spool WHERE {_WAITING}"
                    " ORDER BY rank, created, id LIMIT ?",
                    (excess,),
                ).fetchall()
                c.executemany("DELETE FROM notify_spool WHERE id=?", [(r[0],) for r in rows])
                dropped = [(r[1], r[2]) for r in rows]
            c.execute("RELEASE notify")
        except BaseException:
            c.execute("ROLLBACK TO notify")
            c.execute("RELEASE notify")
            raise
        return dropped

    def states(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT channel, doc FROM notify_state"))

    def due(self, now: float, channels: list[str], limit: int = 100) -> list[Spooled]:
        """Waiting rows whose time has come, most severe first, then oldest."""
        marks = ",".join("?" * len(channels))
        rows = self.conn.execute(
            f"SELECT id, channel, attempts, payload FROM notify_spool WHERE {_WAITING}"
            f" AND next_attempt <= ? AND channel IN ({marks})"
            " ORDER BY rank DESC, created, id LIMIT ?",
            (now, *channels, limit),
        )
        return [Spooled(r[0], r[1], r[2], Notification.model_validate_json(r[3])) for r in rows]

    def next_attempt(self, channels: list[str]) -> float | None:
        marks = ",".join("?" * len(channels))
        row = self.conn.execute(
            f"SELECT min(next_attempt) FROM notify_spool WHERE {_WAITING} AND channel IN ({marks})",
            channels,
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def mark_sent(self, row_id: str, now: float) -> None:
        self.conn.execute(
            "UPDATE notify_spool SET sent=?, attempts=attempts+1 WHERE id=?", (now, row_id)
        )

    def retry_at(self, row: Spooled, error: str, at: float) -> None:
        """The attempt failed: this row, and the rest of its channel with it, wait until
        `at` (one probe per back-off, not one per waiting row)."""
        c = self.conn
        c.execute("BEGIN")
        try:
            c.execute(
                "UPDATE notify_spool SET attempts=attempts+1, last_error=? WHERE id=?",
                (error, row.id),
            )
            c.execute(
                f"UPDATE notify_spool SET next_attempt=max(next_attempt, ?)"
                f" WHERE channel=? AND {_WAITING}",
                (at, row.channel),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def give_up(self, row_id: str, error: str, now: float) -> None:
        self.conn.execute(
            "UPDATE notify_spool SET gave_up=?, attempts=attempts+1, last_error=? WHERE id=?",
            (now, error, row_id),
        )

    def waiting(self) -> int:
        return int(
            self.conn.execute(f"SELECT count(*) FROM notify_spool WHERE {_WAITING}").fetchone()[0]
        )

    def purge(self, before: float) -> int:
        """Forget delivered and given-up rows older than `before`."""
        return self.conn.execute(
            "DELETE FROM notify_spool WHERE sent < ? OR gave_up < ?", (before, before)
        ).rowcount
