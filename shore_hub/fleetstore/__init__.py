"""The hub's fleet store: incidents and everything around them, in ClickHouse.

One class, two engines with the same SQL: chdb in process (url None) or a ClickHouse
server/cluster (http(s) url). Writes are idempotent: every table keeps the latest version
or collapses duplicates on immutable keys, so the ingest worker can ack after `insert_*`
returns and simply replay on any doubt. Reads apply FINAL, so the latest version wins
even before background merges, and take `ships`, the caller's allowed ships (None = all).

Times in results are ISO 8601 strings (UTC, millisecond precision, "Z"); durations are
seconds. `since`/`until` are epoch seconds and select incidents by `first_seen`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from shared.ids import id_time_ms
from shared.models import ActionRequest, ActionResult, Gap, Heartbeat, Incident, Insight
from shared.timeutil import iso
from shore_hub.fleetstore.backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChdbBackend,
    ClickHouseServerBackend,
    Params,
    identifier,
)
from shore_hub.fleetstore.schema import migrate, rank_of

__all__ = ["BackendError", "BackendUnavailable", "FleetStore", "default_retention"]

MAX_LIMIT = 1000
MAX_DEAD_LETTER_CHARS = 64 * 1024
_ACTIVE = ("open", "acknowledged")
_FROM_MS = "fromUnixTimestamp64Milli"

Filter = str | Sequence[str] | None
_INCIDENTS: TypeAdapter[list[Incident]] = TypeAdapter(list[Incident])


def default_retention() -> dict[str, float]:
    """The hub section of the packaged retention policy."""
    from shared.policy import load_policy

    return dict(load_policy().retention.hub)


def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso(ms / 1000)


def _epoch_ms(ts: float) -> int:
    return round(ts * 1000)


def _as_list(value: Filter) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _cursor_encode(id_: str, ship_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([id_, ship_id])).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        id_, ship_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("invalid cursor") from None
    if not isinstance(id_, str) or not isinstance(ship_id, str):
        raise ValueError("invalid cursor")
    return id_, ship_id


TIME_STEPS_S = (3600, 6 * 3600, 86_400, 7 * 86_400)
MAX_TIME_STEPS = 90


def time_step(since: float | None, until: float | None) -> int:
    """The shortest step in TIME_STEPS_S that cuts [since, until) into at most
    MAX_TIME_STEPS buckets (a week when the range is open, so years fit a chart)."""
    if since is None or until is None:
        return TIME_STEPS_S[-1]
    span = max(until - since, 0.0)
    return next((s for s in TIME_STEPS_S if span / s <= MAX_TIME_STEPS), TIME_STEPS_S[-1])


def _over_time(
    steps: list[tuple[str, str, int, int]], step: int, since: float | None, until: float | None
) -> dict[str, Any]:
    """Counts per step as aligned series: `buckets` are the steps' start times (UTC,
    multiples of `step_s` since the epoch, every step of the range, empty ones too), and
    `by_severity`/`by_type`/`by_ship` map each value to one count per bucket."""
    seen = [b for _, _, b, _ in steps]
    first = int(since // step) if since is not None else min(seen, default=0)
    last = int((until - 0.001) // step) if until is not None else max(seen, default=-1)
    n = max(last - first + 1, 0)
    out: dict[str, Any] = {
        "step_s": step,
        "buckets": [iso((first + i) * step) for i in range(n)],
        "by_severity": {},
        "by_type": {},
        "by_ship": {},
    }
    for dim, value, bucket, count in steps:
        if 0 <= bucket - first < n:
            out[dim].setdefault(value, [0] * n)[bucket - first] = count
    return out


class _Where:
    """WHERE clauses with their `{name:Type}` parameters, built side by side."""

    def __init__(self, ships: Sequence[str] | None) -> None:
        self.clauses: list[str] = []
        self.params: Params = {}
        if ships is not None:
            self.add("ship_id IN {scope:Array(String)}", scope=list(ships))

    def add(self, clause: str, **params: Any) -> None:
        self.clauses.append(clause)
        self.params.update(params)

    def also(self, clause: str, **params: Any) -> _Where:
        """A copy with one more clause."""
        out = _Where(None)
        out.clauses, out.params = [*self.clauses, clause], {**self.params, **params}
        return out

    def any_of(self, column: str, values: list[str] | None) -> None:
        if values is not None:
            self.add(f"{column} IN {{{column}:Array(String)}}", **{column: values})

    def first_seen(self, since: float | None, until: float | None) -> None:
        if since is not None:
            self.add(f"first_seen >= {_FROM_MS}({{since:Int64}})", since=_epoch_ms(since))
        if until is not None:
            self.add(f"first_seen < {_FROM_MS}({{until:Int64}})", until=_epoch_ms(until))

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def _periods(
    ships: Sequence[str] | None, since: float, until: float
) -> tuple[_Where, _Where, _Where]:
    """The caller's scope with `ts` in [since, until), before it, and at or after its end
    (one set of parameters for the three)."""
    where = _Where(ships)
    where.params.update(since=_epoch_ms(since), until=_epoch_ms(until))
    return (
        where.also(f"ts >= {_FROM_MS}({{since:Int64}}) AND ts < {_FROM_MS}({{until:Int64}})"),
        where.also(f"ts < {_FROM_MS}({{since:Int64}})"),
        where.also(f"ts >= {_FROM_MS}({{until:Int64}})"),
    )


# ------------------------------------------------------------------ row builders


def incident_row(doc: Mapping[str, Any], received_at: float, stored_at: float) -> dict[str, Any]:
    """The intake row of one version; `doc` is an Incident in its JSON form
    (`model_dump(mode="json")`), already validated. The engine derives the other tables."""
    evidence = doc["evidence"]
    acked_at = next((t["ts"] for t in doc["timeline"] if t["event"] == "acknowledged"), None)
    text = [doc["narrative"], doc["device"], *doc["devices"], *(e["summary"] for e in evidence)]
    return {
        "ship_id": doc["ship_id"],
        "id": doc["id"],
        "version": doc["version"],
        "rank": rank_of(doc["version"], received_at),
        "tracking_id": doc["tracking_id"],
        "ts": doc["ts"],
        "type": doc["type"],
        "severity": doc["severity"],
        "status": doc["status"],
        "device": doc["device"],
        "devices": doc["devices"],
        "service": doc["service"] or "",
        "path": doc["path"] or "",
        "corr_key": doc["corr_key"],
        "suppress_key": doc["suppress_key"],
        "suppressed_reason": doc["suppressed_reason"] or "",
        "first_seen": doc["first_seen"],
        "last_seen": doc["last_seen"],
        "acked_at": acked_at,
        "resolved_at": doc["resolved_at"],
        "anomaly_count": doc["anomaly_count"],
        "evidence_count": len(evidence),
        "confidence": doc["confidence"],
        "search_text": "\n".join(text),
        "doc": doc,  # written as its JSON text (input_format_json_read_objects_as_strings)
        "received_at": received_at,
        "stored_at": stored_at,
    }


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return orjson.dumps(value, default=str).decode()


def _capped(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[:limit] + f"... [{len(value) - limit} more characters not kept]"


# ------------------------------------------------------------------ the store


class FleetStore:
    """Fleet-wide incidents, heartbeats, insights, actions, audit and dead letters."""

    def __init__(self, backend: Backend, database: str, retention: Mapping[str, float]) -> None:
        self.backend = backend
        self.db = identifier(database)
        self.retention = dict(retention)

    @classmethod
    def open(
        cls,
        url: str | None,
        data_dir: Path,
        database: str = "seawatch",
        retention: Mapping[str, float] | None = None,
    ) -> FleetStore:
        """chdb with its data in `data_dir` when `url` is None, else the server at `url`.

        `retention` is the hub section of the retention policy; missing keys take the
        packaged defaults.
        """
        identifier(database)
        merged = default_retention()
        merged.update(retention or {})
        backend: Backend
        if url is None:
            backend = ChdbBackend(Path(data_dir))
        elif url.startswith(("http://", "https://")):
            backend = ClickHouseServerBackend(url)
        else:
            raise ValueError(f"unsupported ClickHouse url {url!r}: use http(s)://host:port")
        return cls(backend, database, merged)

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; returns the migration versions applied now."""
        return migrate(self.backend, self.db, self.retention)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _t(self, table: str) -> str:
        return f"{self.db}.{table}"

    # -------------------------------------------------------------- writes

    def insert_incidents(self, incidents: list[Incident], received_at: float) -> None:
        """Store incident versions with their timeline and anomaly summaries (idempotent)."""
        # one call for the batch: a fifth faster than model_dump per incident (measured)
        self.insert_incident_docs(_INCIDENTS.dump_python(incidents, mode="json"), received_at)

    def insert_incident_docs(self, docs: Iterable[Mapping[str, Any]], received_at: float) -> int:
        """As `insert_incidents`, from Incident JSON documents already validated; returns
        how many. One INSERT: the timeline, anomaly and trace rows follow in the engine."""
        stored_at = time.time()
        rows = [incident_row(doc, received_at, stored_at) for doc in docs]
        self.backend.insert(self._t("incidents_in"), rows)
        return len(rows)

    def insert_heartbeats(self, heartbeats: list[Heartbeat]) -> None:
        self.backend.insert(
            self._t("heartbeats"),
            [
                {
                    "ship_id": h.ship_id,
                    "ts": h.ts.timestamp(),
                    "tracking_id": h.tracking_id,
                    "agent_version": h.agent_version,
                    "policy_version": h.policy_version,
                    "link_state": h.link_state,
                    "queue_depths": h.queue_depths,
                    "oldest_unsent_s": h.oldest_unsent_s,
                    "open_incidents": h.open_incidents,
                }
                for h in heartbeats
            ],
        )

    def insert_insights(self, insights: list[Insight]) -> None:
        """The newest insight (by `ts`) of each incident is the one kept."""
        self.backend.insert(
            self._t("insights"),
            [
                {
                    "ship_id": i.ship_id,
                    "incident_id": i.incident_id,
                    "ts": i.ts.timestamp(),
                    "tracking_id": i.tracking_id,
                    "model": i.model,
                    "latency_ms": i.latency_ms,
                    "cache_hit": i.cache_hit,
                    "fallback": i.fallback,
                    "doc": i.model_dump(mode="json"),
                }
                for i in insights
            ],
        )

    def insert_action_results(self, results: list[ActionResult]) -> None:
        self.backend.insert(
            self._t("actions"),
            [
                {
                    "ship_id": r.ship_id,
                    "command_id": r.command_id,
                    "tracking_id": r.tracking_id,
                    "ts": r.ts.timestamp(),
                    "action": r.action,
                    "target": r.target,
                    "ok": r.ok,
                    "detail": r.detail,
                }
                for r in results
            ],
        )

    def insert_gaps(self, gaps: list[Gap]) -> None:
        """One row per evicted "incident_id:version" key, so the hub can tell which
        versions it will never receive (replays collapse)."""
        self.backend.insert(
            self._t("gaps"),
            [
                {
                    "ship_id": g.ship_id,
                    "ts": g.ts.timestamp(),
                    "tracking_id": g.tracking_id,
                    "key": key,
                    "reason": g.reason,
                }
                for g in gaps
                for key in g.evicted
            ],
        )

    def insert_action_requests(self, requests: list[ActionRequest]) -> None:
        """Every version; the table keeps the highest of each request (replays are harmless).
        `ts` is the first version's time, so a request stays in the partition it began in."""
        self.backend.insert(
            self._t("action_requests"),
            [
                {
                    "ship_id": r.ship_id,
                    "id": r.id,
                    "version": r.version,
                    "ts": _started(r),
                    "incident_id": r.incident_id,
                    "action": r.action,
                    "target": r.target,
                    "risk": r.risk,
                    "approval": r.approval,
                    "approvals_needed": r.approvals_needed,
                    "requested_by": r.requested_by,
                    "status": r.status,
                    "approvers": r.approvers,
                    "doc": r.model_dump_json(),
                }
                for r in requests
            ],
        )

    def action_requests(
        self,
        ships: Sequence[str] | None = None,
        *,
        status: Filter = None,
        request_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Latest version of each remediation request, newest first; `status` one or a list."""
        where = _Where(ships)
        where.any_of("status", _as_list(status))
        if request_id is not None:
            where.add("id = {rid:String}", rid=request_id)
        rows = self.backend.query(
            f"SELECT doc FROM {self._t('action_requests')} FINAL{where.sql()}"
            " ORDER BY id DESC LIMIT {limit:UInt32}",
            {**where.params, "limit": _limit(limit)},
        )
        return [orjson.loads(r["doc"]) for r in rows]

    def insert_approvals(self, rows: list[Mapping[str, Any]]) -> None:
        """Approval requests and decisions, one row per step: approval_id, ship_id,
        incident_id, action, target, actor, role, decision (requested|approved|rejected),
        reason, ts (epoch seconds, default now)."""
        now = time.time()
        self.backend.insert(
            self._t("approvals"),
            [
                {
                    "ts": r.get("ts", now),
                    "approval_id": str(r["approval_id"]),
                    "ship_id": str(r["ship_id"]),
                    "incident_id": str(r.get("incident_id") or ""),
                    "action": str(r["action"]),
                    "target": str(r.get("target") or ""),
                    "actor": str(r["actor"]),
                    "role": str(r.get("role") or ""),
                    "decision": str(r["decision"]),
                    "reason": str(r.get("reason") or ""),
                }
                for r in rows
            ],
        )

    def insert_dead_letters(self, rows: list[Mapping[str, Any]]) -> None:
        """Rejected input with the reason: ts (epoch s, default now), source, subject,
        reason, data (str, bytes or JSON-able; kept up to 64 KiB, the cut is marked)."""
        now = time.time()
        self.backend.insert(
            self._t("dead_letters"),
            [
                {
                    "ts": r.get("ts", now),
                    "source": str(r.get("source") or ""),
                    "subject": str(r.get("subject") or ""),
                    "reason": str(r["reason"]),
                    "data": _capped(_text(r.get("data", "")), MAX_DEAD_LETTER_CHARS),
                }
                for r in rows
            ],
        )

    def insert_audit(self, rows: list[Mapping[str, Any]]) -> None:
        """Who (with which role) tried what on which target, allowed or not, and why."""
        now = time.time()
        self.backend.insert(
            self._t("audit"),
            [
                {
                    "ts": r.get("ts", now),
                    "who": str(r["who"]),
                    "role": str(r.get("role") or ""),
                    "action": str(r["action"]),
                    "target": str(r.get("target") or ""),
                    "allowed": bool(r["allowed"]),
                    "detail": _text(r.get("detail", "")),
                }
                for r in rows
            ],
        )

    # -------------------------------------------------------------- incidents

    def list_incidents(
        self,
        ships: Sequence[str] | None = None,
        *,
        ship: Filter = None,
        type: Filter = None,
        severity: Filter = None,
        status: Filter = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """Latest versions, newest first by id; filters take one value or a list.

        Returns {"items": [Incident JSON...], "next_cursor": str | None}. Only the keys of
        the page are sorted; the documents are then read by key, so a page costs the same
        whatever the size of the documents.
        """
        limit = _limit(limit)
        where = _Where(ships)
        where.any_of("ship_id", _as_list(ship))
        where.any_of("type", _as_list(type))
        where.any_of("severity", _as_list(severity))
        where.any_of("status", _as_list(status))
        where.first_seen(since, until)
        if text:
            where.add("positionCaseInsensitiveUTF8(search_text, {text:String}) > 0", text=text)
        if cursor:
            cid, cship = _cursor_decode(cursor)
            where.add(
                "id <= {cid:String} AND (id, ship_id) < ({cid:String}, {cship:String})",
                cid=cid,
                cship=cship,
            )
        keys = self._page_keys(where, limit + 1)
        more = len(keys) > limit
        keys = keys[:limit]
        docs = self._docs([(k["ship_id"], k["id"]) for k in keys])
        items = [docs[(k["ship_id"], k["id"])] for k in keys if (k["ship_id"], k["id"]) in docs]
        last = keys[-1] if more else None
        return {
            "items": items,
            "next_cursor": _cursor_encode(last["id"], last["ship_id"]) if last else None,
        }

    def _page_keys(self, where: _Where, n: int) -> list[dict[str, Any]]:
        """The first n keys, newest first, whose latest version matches `where`.

        FINAL over every incident would read the ids of all of them. Instead, candidates
        are taken without FINAL (filters first, then ids of the matches only, in key
        order, stopping at k): any incident whose latest version matches has that version
        among them. FINAL then runs on the candidates' keys alone and drops those whose
        latest version no longer matches; if too few are left, the next candidates follow.
        """
        table = self._t("incidents")
        found: list[dict[str, Any]] = []
        k = 2 * n + 16
        while True:
            cands = self.backend.query(
                f"SELECT ship_id, id FROM {table}{where.sql()}"
                " ORDER BY id DESC, ship_id DESC LIMIT {k:UInt32}",
                {**where.params, "k": k},
            )
            if cands:
                keys = {(c["ship_id"], c["id"]) for c in cands}
                latest = where.also("id IN {cand:Array(String)}", cand=[c["id"] for c in cands])
                found += [
                    r
                    for r in self.backend.query(
                        f"SELECT ship_id, id FROM {table} FINAL{latest.sql()}"
                        " ORDER BY id DESC, ship_id DESC",
                        latest.params,
                    )
                    if (r["ship_id"], r["id"]) in keys
                ]
            if len(found) >= n or len(cands) < k:
                return found[:n]
            last = cands[-1]
            where = where.also(
                "(id, ship_id) < ({lid:String}, {lship:String})",
                lid=last["id"],
                lship=last["ship_id"],
            )
            k *= 4

    def _docs(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        if not keys:
            return {}
        rows = self.backend.query(
            f"SELECT ship_id, id, doc FROM {self._t('incident_docs')} FINAL"
            " WHERE id IN {ids:Array(String)} AND ship_id IN {ships:Array(String)}",
            {"ships": sorted({s for s, _ in keys}), "ids": [i for _, i in keys]},
        )
        return {(r["ship_id"], r["id"]): orjson.loads(r["doc"]) for r in rows}

    def incidents_by_ids(
        self, ids: Sequence[str], ships: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Latest documents of these incidents that are in scope, in the order asked."""
        if not ids:
            return []
        where = _Where(ships)
        where.add("id IN {ids:Array(String)}", ids=list(ids))
        rows = self.backend.query(
            f"SELECT id, doc FROM {self._t('incident_docs')} FINAL{where.sql()}", where.params
        )
        found = {r["id"]: orjson.loads(r["doc"]) for r in rows}
        return [found[i] for i in ids if i in found]

    def incident(self, id: str, ships: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The latest document with hub times, every timeline step, the anomaly
        summaries and the latest insight; None if absent or out of scope."""
        where = _Where(ships)
        where.add("id = {id:String}", id=id)
        rows = self.backend.query(
            f"SELECT ship_id, {_ms('received_at')} AS received_ms, {_ms('stored_at')} AS stored_ms"
            f" FROM {self._t('incidents')} FINAL{where.sql()} ORDER BY ship_id LIMIT 1",
            where.params,
        )
        doc = self._docs([(rows[0]["ship_id"], id)]) if rows else {}
        if not doc:
            return None
        row = rows[0]
        key = {"ship": row["ship_id"], "id": id}
        by_incident = "WHERE ship_id = {ship:String} AND incident_id = {id:String}"
        timeline = self.backend.query(
            f"SELECT version, {_ms('ts')} AS ts_ms, event, detail"
            f" FROM {self._t('incident_timeline')} FINAL {by_incident}"
            " ORDER BY ts_ms, version, seq",
            key,
        )
        evidence = self.backend.query(
            f"SELECT anomaly_id, tracking_id, {_ms('ts')} AS ts_ms, detector, device, score,"
            f" summary FROM {self._t('anomaly_summaries')} FINAL {by_incident}"
            " ORDER BY ts_ms, anomaly_id",
            key,
        )
        insight = self.backend.query(
            f"SELECT doc FROM {self._t('insights')} FINAL {by_incident}", key
        )
        for r in (*timeline, *evidence):
            r["ts"] = _iso_ms(r.pop("ts_ms"))
        return {
            "incident": doc[(row["ship_id"], id)],
            "received_at": _iso_ms(row["received_ms"]),
            "stored_at": _iso_ms(row["stored_ms"]),
            "timeline": timeline,
            "evidence": evidence,
            "insight": orjson.loads(insight[0]["doc"]) if insight else None,
        }

    def trace(self, tracking_id: str, ships: Sequence[str] | None = None) -> dict[str, Any] | None:
        """Every version stored under a tracking id: ship time, hub receive and store
        times, and the ship-to-hub latency (receive time minus the version's `ts`)."""
        where = _Where(ships)
        where.add("tracking_id = {tid:String}", tid=tracking_id)
        rows = self.backend.query(
            f"SELECT ship_id, id, version, status, severity, {_ms('ts')} AS ts_ms,"
            f" {_ms('received_at')} AS received_ms, {_ms('stored_at')} AS stored_ms"
            f" FROM {self._t('incident_versions')} FINAL{where.sql()}"
            " ORDER BY id, version",
            where.params,
        )
        if not rows:
            return None
        versions = [
            {
                "ship_id": r["ship_id"],
                "incident_id": r["id"],
                "version": r["version"],
                "status": r["status"],
                "severity": r["severity"],
                "ts": _iso_ms(r["ts_ms"]),
                "received_at": _iso_ms(r["received_ms"]),
                "stored_at": _iso_ms(r["stored_ms"]),
                "latency_s": (r["received_ms"] - r["ts_ms"]) / 1000,
            }
            for r in rows
        ]
        return {"tracking_id": tracking_id, "versions": versions}

    # -------------------------------------------------------------- fleet views

    def stats(
        self,
        since: float | None = None,
        until: float | None = None,
        ships: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Counts by severity, type, status and ship; MTTA (first ack - first_seen) and
        MTTR (resolved_at - first_seen) in seconds; top devices; anomalies deduplicated
        (counted but not kept as evidence) and suppressed incidents; `over_time`, counts
        by severity, type and ship per time step (see `_over_time`), in one scan; and the
        sync lag per ship (`_sync_lag`)."""
        where = _Where(ships)
        where.first_seen(since, until)
        step = time_step(since, until)
        dims = ("severity", "type", "status", "ship_id", "device", "bucket")
        rows = self.backend.query(
            f"""SELECT {", ".join(dims[:-1])},
                intDiv({_ms("first_seen")}, {step * 1000}) AS bucket,
                grouping({", ".join(dims)}) AS g, count() AS n,
                avg({_ms("acked_at")} - {_ms("first_seen")}) / 1000 AS mtta_s,
                count(acked_at) AS acked,
                avg({_ms("resolved_at")} - {_ms("first_seen")}) / 1000 AS mttr_s,
                count(resolved_at) AS resolved,
                sum(anomaly_count) AS anomalies,
                sum(anomaly_count - least(anomaly_count, evidence_count)) AS dedup,
                countIf(status = 'suppressed' OR suppressed_reason != '') AS suppressed
            FROM {self._t("incidents")} FINAL{where.sql()}
            GROUP BY GROUPING SETS ((), (severity), (type), (status), (ship_id),
                                    (ship_id, device), (severity, bucket), (type, bucket),
                                    (ship_id, bucket))""",
            where.params,
        )
        out: dict[str, Any] = {
            "since": None if since is None else iso(since),
            "until": None if until is None else iso(until),
            "total": 0,
            "acked": 0,
            "resolved": 0,
            "mtta_s": None,
            "mttr_s": None,
            "anomalies": 0,
            "dedup": 0,
            "suppressed": 0,
            "by_severity": {},
            "by_type": {},
            "by_status": {},
            "by_ship": {},
            "top_devices": [],
        }
        full = (1 << len(dims)) - 1
        bit = {d: 1 << (len(dims) - 1 - i) for i, d in enumerate(dims)}  # 1 = not grouped
        devices = []
        steps: list[tuple[str, str, int, int]] = []  # (dimension, value, bucket, count)
        for r in rows:
            grouped = [d for d in dims if not r["g"] & bit[d]]
            if r["g"] == full:
                out.update({k: r[k] for k in ("acked", "resolved", "anomalies", "dedup")})
                out.update(total=r["n"], suppressed=r["suppressed"])
                out.update(mtta_s=r["mtta_s"], mttr_s=r["mttr_s"])
            elif grouped == ["ship_id", "device"]:
                devices.append({"ship_id": r["ship_id"], "device": r["device"], "count": r["n"]})
            elif "bucket" in grouped:
                dim = grouped[0]
                steps.append((f"by_{dim.removesuffix('_id')}", r[dim], r["bucket"], r["n"]))
            else:
                out[f"by_{grouped[0].removesuffix('_id')}"][r[grouped[0]]] = r["n"]
        devices.sort(key=lambda d: (-d["count"], d["ship_id"], d["device"]))
        out["top_devices"] = devices[:10]
        out["over_time"] = _over_time(steps, step, since, until)
        out["sync_lag"] = self._sync_lag(since, until, ships)
        return out

    def _sync_lag(
        self, since: float | None, until: float | None, ships: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        """Per ship, how long its incident versions took from the ship's commit (`ts`) to
        the hub (`received_at`), outages included: median, p95 and the longest, seconds."""
        where = _Where(ships)
        if since is not None:
            where.add(f"ts >= {_FROM_MS}({{since:Int64}})", since=_epoch_ms(since))
        if until is not None:
            where.add(f"ts < {_FROM_MS}({{until:Int64}})", until=_epoch_ms(until))
        lag = f"greatest({_ms('received_at')} - {_ms('ts')}, 0) / 1000"
        return self.backend.query(
            f"SELECT ship_id, count() AS versions, quantileExact(0.5)({lag}) AS p50_s,"
            f" quantileExact(0.95)({lag}) AS p95_s, max({lag}) AS max_s"
            f" FROM {self._t('incident_versions')} FINAL{where.sql()}"
            " GROUP BY ship_id ORDER BY ship_id",
            where.params,
        )

    def fleet(self, ships: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per ship: the latest heartbeat, since when its link has been in the state that
        heartbeat reports (`link_since`: the first heartbeat of the current run), the hub's
        view of its incidents and `evicted`, how many incident versions its outbox dropped
        unsent (distinct keys: no FINAL)."""
        where = _Where(ships)
        beats = self.backend.query(
            f"SELECT ship_id, {_ms('ts')} AS ts_ms, link_state, queue_depths, oldest_unsent_s,"
            f" agent_version, policy_version, open_incidents AS ship_open_incidents"
            f" FROM {self._t('ship_status')} FINAL{where.sql()}",
            where.params,
        )
        history = f"(SELECT ship_id, ts, link_state FROM {self._t('heartbeats')}{where.sql()})"
        latest = f"(SELECT ship_id, link_state FROM {self._t('ship_status')} FINAL{where.sql()})"
        runs = self.backend.query(
            f"SELECT h.ship_id AS ship_id, {_ms('min(h.ts)')} AS since_ms FROM {history} AS h"
            f" INNER JOIN (SELECT b.ship_id AS ship_id,"
            f" maxIf(b.ts, b.link_state != s.link_state) AS changed FROM {history} AS b"
            f" INNER JOIN {latest} AS s ON b.ship_id = s.ship_id GROUP BY b.ship_id) AS c"
            " ON h.ship_id = c.ship_id WHERE h.ts > c.changed GROUP BY h.ship_id",
            where.params,
        )
        active = _Where(ships)
        active.add("status IN {active:Array(String)}", active=list(_ACTIVE))
        counts = self.backend.query(
            f"SELECT ship_id, severity, count() AS open FROM {self._t('incidents')} FINAL"
            f"{active.sql()} GROUP BY ship_id, severity",
            active.params,
        )
        last = self.backend.query(
            f"SELECT ship_id, max({_ms('last_seen')}) AS last_ms"
            f" FROM {self._t('ship_last_incident')}{where.sql()} GROUP BY ship_id",
            where.params,
        )
        evicted = self.backend.query(
            f"SELECT ship_id, uniqExact(key) AS evicted FROM {self._t('gaps')}{where.sql()}"
            " GROUP BY ship_id",
            where.params,
        )
        now = time.time()
        out: dict[str, dict[str, Any]] = {}

        def ship_entry(ship_id: str) -> dict[str, Any]:
            return out.setdefault(
                ship_id,
                {
                    "ship_id": ship_id,
                    "last_heartbeat": None,
                    "heartbeat_age_s": None,
                    "link_state": "unknown",
                    "link_since": None,
                    "queue_depths": {},
                    "backlog": 0,
                    "oldest_unsent_s": None,
                    "agent_version": None,
                    "policy_version": None,
                    "ship_open_incidents": {},
                    "open_incidents": {},
                    "open_total": 0,
                    "last_incident": None,
                    "evicted": 0,
                },
            )

        for b in beats:
            entry = ship_entry(b["ship_id"])
            entry.update(b)
            entry.pop("ts_ms")
            entry["last_heartbeat"] = _iso_ms(b["ts_ms"])
            entry["heartbeat_age_s"] = round(now - b["ts_ms"] / 1000, 3)
            entry["backlog"] = sum(b["queue_depths"].values())
        for r in runs:
            ship_entry(r["ship_id"])["link_since"] = _iso_ms(r["since_ms"])
        for c in counts:
            entry = ship_entry(c["ship_id"])
            entry["open_incidents"][c["severity"]] = c["open"]
            entry["open_total"] += c["open"]
        for r in last:
            ship_entry(r["ship_id"])["last_incident"] = _iso_ms(r["last_ms"])
        for r in evicted:
            ship_entry(r["ship_id"])["evicted"] = r["evicted"]
        return [out[s] for s in sorted(out)]

    # -------------------------------------------------------------- periods (reports)

    def incident_flow(
        self, since: float, until: float, ships: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Per ship and type: incidents `opened` (first seen) and `resolved` in
        [since, until), and the same two counts for the period of equal length just before
        (`opened_before`, `resolved_before`). One scan; an incident resolved in the period
        may have opened long before it, so only the period's end bounds `first_seen`."""
        start = since - (until - since)
        edges = {"p0": _epoch_ms(start), "p1": _epoch_ms(since), "p2": _epoch_ms(until)}
        where = _Where(ships)
        where.add(
            f"first_seen < {_FROM_MS}({{p2:Int64}}) AND (first_seen >= {_FROM_MS}({{p0:Int64}})"
            f" OR resolved_at >= {_FROM_MS}({{p0:Int64}}))",
            **edges,
        )

        def within(column: str, lo: str, hi: str) -> str:
            return f"{_ms(column)} >= {{{lo}:Int64}} AND {_ms(column)} < {{{hi}:Int64}}"

        return self.backend.query(
            f"SELECT ship_id, type,"
            f" countIf({within('first_seen', 'p1', 'p2')}) AS opened,"
            f" countIf({within('resolved_at', 'p1', 'p2')}) AS resolved,"
            f" countIf({within('first_seen', 'p0', 'p1')}) AS opened_before,"
            f" countIf({within('resolved_at', 'p0', 'p1')}) AS resolved_before"
            f" FROM {self._t('incidents')} FINAL{where.sql()}"
            " GROUP BY ship_id, type ORDER BY ship_id, type",
            where.params,
        )

    def link_availability(
        self,
        since: float,
        until: float,
        silent_s: float,
        ships: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Per ship: seconds of [since, until) in each link state, by its heartbeats.

        Each heartbeat's state holds until the ship's next heartbeat; an interval longer
        than `silent_s` (no heartbeat came) counts as `silent`, since a ship sends none while
        its link is down. The last heartbeat before `since` gives the state at the start
        and the first one at or after `until` closes the last interval; with none, the
        last interval runs to `until` (pass now as `until` for a period still going on).
        Time before a ship's first heartbeat is not counted. No FINAL: a duplicate
        heartbeat only adds an empty interval. Returns ship_id, state
        (up|degraded|down|unknown|silent) and seconds."""
        during, before, after = _periods(ships, since, until)
        table = self._t("heartbeats")
        beats = (
            f"SELECT ship_id, {_ms('ts')} AS t, link_state FROM {table}{during.sql()}"
            f" UNION ALL SELECT ship_id, {_ms('max(ts)')}, argMax(link_state, ts)"
            f" FROM {table}{before.sql()} GROUP BY ship_id"
            f" UNION ALL SELECT ship_id, {_ms('min(ts)')}, argMin(link_state, ts)"
            f" FROM {table}{after.sql()} GROUP BY ship_id"
        )
        rows = self.backend.query(
            f"""SELECT ship_id, if(next - t > {{silent:Int64}}, 'silent', link_state) AS state,
                sum(greatest(least(next, {{until:Int64}}) - greatest(t, {{since:Int64}}), 0))
                    / 1000 AS seconds
            FROM (SELECT ship_id, t, link_state, leadInFrame(t, 1, {{until:Int64}}) OVER
                    (PARTITION BY ship_id ORDER BY t ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
                    AS next
                  FROM ({beats}))
            WHERE t < {{until:Int64}} GROUP BY ship_id, state ORDER BY ship_id, state""",
            {**during.params, "silent": _epoch_ms(silent_s)},
        )
        return [r for r in rows if r["seconds"] > 0]

    def versions_seen(
        self, since: float, until: float, ships: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Agent and policy versions ships reported in [since, until), and what they ran
        before it (their last earlier heartbeat): ship_id, kind (agent|policy), version,
        first and last (ISO times) and `before` (true for the earlier heartbeat's), in the
        order first seen."""
        during, before, _ = _periods(ships, since, until)
        table = self._t("heartbeats")
        rows = self.backend.query(
            f"""SELECT ship_id, v.1 AS kind, v.2 AS version,
                minIfOrNull(t, t >= {{since:Int64}}) AS first_ms,
                maxIfOrNull(t, t >= {{since:Int64}}) AS last_ms,
                countIf(t < {{since:Int64}}) > 0 AS before
            FROM (
                SELECT ship_id, {_ms("ts")} AS t, agent_version, policy_version
                FROM {table}{during.sql()}
                UNION ALL
                SELECT ship_id, {_ms("max(ts)")}, argMax(agent_version, ts),
                    argMax(policy_version, ts) FROM {table}{before.sql()} GROUP BY ship_id
            ) ARRAY JOIN [('agent', agent_version), ('policy', policy_version)] AS v
            GROUP BY ship_id, kind, version
            ORDER BY ship_id, kind, before DESC, first_ms, version""",
            during.params,
        )
        for r in rows:
            r["first"] = _iso_ms(r.pop("first_ms"))
            r["last"] = _iso_ms(r.pop("last_ms"))
            r["before"] = bool(r["before"])
        return rows

    def remediations(
        self, since: float, until: float, ships: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Remediation requests made in [since, until), counted by ship, action and the
        status of their latest version: ship_id, action, status, count."""
        during, _, _ = _periods(ships, since, until)
        return self.backend.query(
            f"SELECT ship_id, action, status, count() AS count"
            f" FROM {self._t('action_requests')} FINAL{during.sql()}"
            " GROUP BY ship_id, action, status ORDER BY ship_id, action, status",
            during.params,
        )

    # -------------------------------------------------------------- records

    def actions(
        self,
        ships: Sequence[str] | None = None,
        limit: int = 100,
        command_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Results of commands executed on ships, newest first (those of `command_ids`)."""
        where = _Where(ships)
        where.any_of("command_id", command_ids)
        rows = self.backend.query(
            f"SELECT ship_id, command_id, tracking_id, {_ms('ts')} AS ts_ms, action, target,"
            f" ok, detail FROM {self._t('actions')} FINAL{where.sql()}"
            " ORDER BY ts_ms DESC, command_id LIMIT {limit:UInt32}",
            {**where.params, "limit": _limit(limit)},
        )
        return [_with_ts(r) for r in rows]

    def gaps(self, ships: Sequence[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Incident versions ships evicted before sending them, newest first."""
        where = _Where(ships)
        rows = self.backend.query(
            f"SELECT ship_id, {_ms('ts')} AS ts_ms, tracking_id, key, reason"
            f" FROM {self._t('gaps')} FINAL{where.sql()}"
            " ORDER BY ts_ms DESC, ship_id, key LIMIT {limit:UInt32}",
            {**where.params, "limit": _limit(limit)},
        )
        return [_with_ts(r) for r in rows]

    def approvals(
        self,
        ships: Sequence[str] | None = None,
        approval_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Approval steps, newest first; one approval's steps with `approval_id`."""
        where = _Where(ships)
        if approval_id is not None:
            where.add("approval_id = {aid:String}", aid=approval_id)
        rows = self.backend.query(
            f"SELECT {_ms('ts')} AS ts_ms, approval_id, ship_id, incident_id, action, target,"
            f" actor, role, decision, reason FROM {self._t('approvals')} FINAL{where.sql()}"
            " ORDER BY ts_ms DESC, approval_id, actor LIMIT {limit:UInt32}",
            {**where.params, "limit": _limit(limit)},
        )
        return [_with_ts(r) for r in rows]

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.backend.query(
            f"SELECT {_ms('ts')} AS ts_ms, who, role, action, target, allowed, detail"
            f" FROM {self._t('audit')} ORDER BY ts DESC LIMIT {{limit:UInt32}}",
            {"limit": _limit(limit)},
        )
        return [_with_ts(r) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.backend.query(
            f"SELECT {_ms('ts')} AS ts_ms, source, subject, reason, data"
            f" FROM {self._t('dead_letters')} ORDER BY ts DESC LIMIT {{limit:UInt32}}",
            {"limit": _limit(limit)},
        )
        return [_with_ts(r) for r in rows]

    # -------------------------------------------------------------- conversations (/ask)

    def insert_turns(self, rows: list[Mapping[str, Any]]) -> None:
        """Turns of /ask: user, conversation_id, turn_id, ts (epoch s, default now),
        question, answer, citations (JSON-able list), fallback, reason, model, latency_ms."""
        now = time.time()
        self.backend.insert(
            self._t("ask_turns"),
            [
                {
                    "user": str(r["user"]),
                    "conversation_id": str(r["conversation_id"]),
                    "ts": r.get("ts", now),
                    "turn_id": str(r["turn_id"]),
                    "question": str(r["question"]),
                    "answer": str(r["answer"]),
                    "citations": orjson.dumps(r.get("citations", [])).decode(),
                    "fallback": bool(r.get("fallback", False)),
                    "reason": str(r.get("reason") or ""),
                    "model": str(r.get("model") or ""),
                    "latency_ms": float(r.get("latency_ms", 0.0)),
                }
                for r in rows
            ],
        )

    def conversations(self, user: str, limit: int = 50) -> list[dict[str, Any]]:
        """A user's conversations, most recently active first: id, title (the first
        question), turns, started, updated."""
        rows = self.backend.query(
            f"SELECT conversation_id AS id, argMin(question, ts) AS title, count() AS turns,"
            f" min({_ms('ts')}) AS started_ms, max({_ms('ts')}) AS updated_ms"
            f" FROM {self._t('ask_turns')} WHERE user = {{user:String}}"
            " GROUP BY conversation_id ORDER BY updated_ms DESC, id DESC LIMIT {limit:UInt32}",
            {"user": user, "limit": _limit(limit)},
        )
        for r in rows:
            r["started"] = _iso_ms(r.pop("started_ms"))
            r["updated"] = _iso_ms(r.pop("updated_ms"))
        return rows

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """One conversation with its owner and every turn in order; None if unknown."""
        rows = self.backend.query(
            f"SELECT user, turn_id, {_ms('ts')} AS ts_ms, question, answer, citations,"
            f" fallback, reason, model, latency_ms FROM {self._t('ask_turns')}"
            " WHERE conversation_id = {cid:String} ORDER BY ts_ms, turn_id",
            {"cid": conversation_id},
        )
        if not rows:
            return None
        owner = rows[0]["user"]
        for r in rows:
            del r["user"]
            r["citations"] = orjson.loads(r["citations"])
        return {"id": conversation_id, "user": owner, "turns": [_with_ts(r) for r in rows]}


def _with_ts(row: dict[str, Any]) -> dict[str, Any]:
    row["ts"] = _iso_ms(row.pop("ts_ms"))
    return row


def _started(r: ActionRequest) -> float:
    """When the request was made (its id's time): every version lands in one partition,
    where ReplacingMergeTree can collapse them. An id that is not ours: its message time."""
    try:
        if len(r.id) == 26:
            return id_time_ms(r.id) / 1000
    except ValueError:
        pass
    return r.ts.timestamp()
