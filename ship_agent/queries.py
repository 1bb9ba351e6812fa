"""Read side of the ship store, for the local API: filters, paging, detail, stats, trace."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from shared.timeutil import iso


def list_incidents(
    conn: sqlite3.Connection,
    status: str | None = None,
    severity: str | None = None,
    type_: str | None = None,
    device: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first; `cursor` is the last id of the previous page (ids are time-ordered)."""
    where, args = [], []
    for column, value in (
        ("status", status),
        ("severity", severity),
        ("type", type_),
        ("device", device),
    ):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if cursor:
        where.append("id < ?")
        args.append(cursor)
    sql = "SELECT doc FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = conn.execute(sql, (*args, limit + 1)).fetchall()
    items = [orjson.loads(r[0]) for r in rows[:limit]]
    for item in items:
        item.pop("timeline", None)
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


def incident_detail(conn: sqlite3.Connection, incident_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = orjson.loads(row[0])
    doc["evidence_detail"] = [
        {
            "id": a[0],
            "tracking_id": a[1],
            "ts": iso(a[2]),
            "device": a[3],
            "detector": a[4],
            "incident_type": a[5],
            "score": a[6],
            "summary": a[7],
            "evidence": orjson.loads(a[8]),
            "context": orjson.loads(a[9]),
        }
        for a in conn.execute(
            "SELECT id, tracking_id, ts, device, detector, incident_type, score, summary,"
            " evidence, context FROM anomalies WHERE incident_id = ? ORDER BY ts LIMIT 200",
            (incident_id,),
        )
    ]
    return doc


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    def grouped(sql: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in conn.execute(sql)}

    return {
        "events": grouped("SELECT kind, count(*) FROM events GROUP BY kind"),
        "incidents_by_status": grouped("SELECT status, count(*) FROM incidents GROUP BY status"),
        "open_by_severity": grouped(
            "SELECT severity, count(*) FROM incidents WHERE status != 'resolved' GROUP BY severity"
        ),
        "incidents_by_type": grouped("SELECT type, count(*) FROM incidents GROUP BY type"),
        "anomalies_by_detector": grouped(
            "SELECT detector, count(*) FROM anomalies GROUP BY detector"
        ),
        "dead_letters_by_source": grouped(
            "SELECT source, count(*) FROM dead_letters GROUP BY source"
        ),
        "outbox_unsent": conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[
            0
        ],
        "templates": conn.execute("SELECT count(*) FROM templates").fetchone()[0],
    }


def dead_letters(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "received": iso(r[1]),
            "source": r[2],
            "peer": r[3],
            "reason": r[4],
            "data": bytes(r[5][:512]).decode("utf-8", "replace"),
        }
        for r in conn.execute(
            "SELECT id, received, source, peer, reason, data FROM dead_letters"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
    ]


def trace(conn: sqlite3.Connection, tracking_id: str) -> dict[str, Any] | None:
    """Every stage one record went through, with timestamps, and what it caused."""
    ev = conn.execute(
        "SELECT ts, received, batch_id, kind, source, device, name, severity, value,"
        " template_id, message FROM events WHERE tracking_id = ?",
        (tracking_id,),
    ).fetchone()
    anomalies = conn.execute(
        "SELECT id, ts, detector, incident_type, score, summary, incident_id, batch_id"
        " FROM anomalies WHERE tracking_id = ?",
        (tracking_id,),
    ).fetchall()
    if ev is None and not anomalies:
        return None
    batch_id = ev[2] if ev else anomalies[0][7]
    stages: list[dict[str, Any]] = []
    if ev is not None:
        stages.append({"stage": "ingest", "at": iso(ev[1]), "source": ev[4]})
    row = conn.execute("SELECT stages FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is not None:
        for name, ts in orjson.loads(row[0]).items():
            if name != "start":
                stages.append({"stage": name, "at": iso(ts), "batch_id": batch_id})
    out: dict[str, Any] = {"tracking_id": tracking_id, "stages": stages}
    if ev is not None:
        out["event"] = {
            "ts": iso(ev[0]),
            "kind": ev[3],
            "device": ev[5],
            "name": ev[6],
            "severity": ev[7],
            "value": ev[8],
            "template_id": ev[9],
            "message": ev[10],
        }
    out["anomalies"] = [
        {
            "id": a[0],
            "ts": iso(a[1]),
            "detector": a[2],
            "incident_type": a[3],
            "score": a[4],
            "summary": a[5],
            "incident_id": a[6],
        }
        for a in anomalies
    ]
    # The incident version committed in the same batch (none if the anomaly was a repeat
    # that only counted) and its outbox row: what will cross the link.
    out["incidents"] = []
    for incident_id in sorted({a[6] for a in anomalies if a[6]}):
        entry: dict[str, Any] = {"incident_id": incident_id, "version": None}
        row = conn.execute(
            "SELECT o.version, o.id, o.priority, o.created, o.sent FROM incident_timeline t"
            " JOIN outbox o ON o.incident_id = t.incident_id AND o.version = t.version"
            " WHERE t.incident_id = ? AND t.batch_id = ? LIMIT 1",
            (incident_id, batch_id),
        ).fetchone()
        if row is not None:
            entry.update(
                version=row[0],
                outbox_id=row[1],
                priority=row[2],
                queued=iso(row[3]),
                sent=iso(row[4]) if row[4] else None,
            )
        out["incidents"].append(entry)
    return out
