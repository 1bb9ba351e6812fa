"""Hub tables: versioned migrations of idempotent DDL, and TTLs that follow the policy.

Every statement is `IF NOT EXISTS`, so a migration that stopped half way, or that two hub
workers run at once, simply runs again; `schema_migrations` remembers what is done.
Migrations are append-only: change a table by adding a migration, never by editing one.

Intake: the store writes each batch of incident versions with one INSERT into
`incidents_in` (engine Null: it keeps nothing); materialized views fan it out inside the
engine to `incidents` (the filter columns), `incident_docs` (the full JSON documents),
`incident_versions` (every version, for traces), `incident_timeline` and
`anomaly_summaries` (both parsed from the document by the engine) and
`ship_last_incident` (a per-ship max, so the fleet view reads 1 row per ship, not all).

Dedup: `incidents` and `incident_docs` are `ReplacingMergeTree(rank)`, rank = version in
the high bits and the inverted hub receive time in the low bits (`rank_of`): the highest
version wins and, among copies of one version (replays, redeliveries), the first received
wins, so replaying changes no stored value, not even the receive time. Reads use FINAL.
The other incident tables are keyed by facts that never change, so replays collapse.

Layout: incident tables are ordered by (id, ship_id). Ids are time-ordered, so a
newest-first page reads the end of the key range, and a new part overlaps only the newest
keys, so FINAL merges little; ship_id in the key keeps one ship from replacing another
ship's incident. `incidents` and `incident_docs` are partitioned by week of `first_seen`
and a quiet week is merged into one part, so FINAL costs little outside the current week.
The documents live apart, in small granules (32 rows), so a page of documents reads a few
kilobytes per incident wherever the incidents lie, while scans of the filter columns stay
narrow. Every table keeps all rows of one key in one partition (`first_seen` never
changes between versions of an incident; the other partition keys are key facts), which
lets FINAL skip merging across partitions (`do_not_merge_across_partitions_select_final`).

On a cluster the same migrations apply, rewritten by `fleetstore.cluster` (`seawatch hub
schema --cluster NAME` prints them): `Replicated*` engines and `ON CLUSTER` in a local
database, a `Distributed` table in front of each table under the hub's database, sharded
by ship_id, which keeps every version of an incident on one shard, as FINAL needs. The
intake table and its views exist on every node, so a worker may insert on any node.
Nothing here assumes one node.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from shore_hub.fleetstore.backends import Backend, identifier

_RANK_TIME_BITS = 40  # milliseconds since 2020: enough until 2054
_RANK_EPOCH_MS = 1_577_836_800_000
_RANK_TIME_MAX = (1 << _RANK_TIME_BITS) - 1
MAX_VERSION = (1 << (64 - _RANK_TIME_BITS)) - 1


def rank_of(version: int, received_at: float) -> int:
    """Replacing order: a higher version wins; for one version the earliest receipt wins."""
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"incident version {version} outside 1..{MAX_VERSION}")
    ms = min(max(int(received_at * 1000) - _RANK_EPOCH_MS, 0), _RANK_TIME_MAX)
    return (version << _RANK_TIME_BITS) | (_RANK_TIME_MAX - ms)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_TS = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"
# A week that has had no insert for 5 minutes is merged into one part, so that FINAL over
# it reads without merging: only the current week pays for FINAL.
_SETTLE = "min_age_to_force_merge_seconds = 300, min_age_to_force_merge_on_partition_only = 1"
_INCIDENT = f"""
    ship_id {_LC}, id String, version UInt32, rank UInt64, tracking_id String,
    ts {_TS}, type {_LC}, severity {_LC}, status {_LC},
    device {_LC}, devices Array({_LC}), service {_LC}, path {_LC},
    corr_key String, suppress_key String, suppressed_reason String,
    first_seen {_TS}, last_seen {_TS}, acked_at Nullable({_TS}), resolved_at Nullable({_TS}),
    anomaly_count UInt32, evidence_count UInt32, confidence Float32,
    search_text String CODEC(ZSTD(1)), received_at {_TS}, stored_at {_TS}
"""
_HEARTBEAT = f"""
    ship_id {_LC}, ts {_TS}, tracking_id String,
    agent_version {_LC}, policy_version {_LC}, link_state {_LC},
    queue_depths Map({_LC}, Int64), oldest_unsent_s Nullable(Float64),
    open_incidents Map({_LC}, Int64)
"""


def migrations(db: str) -> list[Migration]:
    db = identifier(db)
    return [
        Migration(
            1,
            "fleet store: incidents, timeline, anomalies, heartbeats, actions, audit",
            (
                f"""CREATE TABLE IF NOT EXISTS {db}.incidents_in ({_INCIDENT},
                    doc String
                ) ENGINE = Null""",
                f"""CREATE TABLE IF NOT EXISTS {db}.incidents ({_INCIDENT})
                ENGINE = ReplacingMergeTree(rank)
                PARTITION BY toMonday(first_seen)
                ORDER BY (id, ship_id)
                SETTINGS {_SETTLE}""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.incidents_mv
                TO {db}.incidents AS SELECT * EXCEPT (doc) FROM {db}.incidents_in""",
                f"""CREATE TABLE IF NOT EXISTS {db}.incident_docs (
                    ship_id {_LC}, id String, rank UInt64, first_seen {_TS}, last_seen {_TS},
                    doc String CODEC(ZSTD(1))
                ) ENGINE = ReplacingMergeTree(rank)
                PARTITION BY toMonday(first_seen)
                ORDER BY (id, ship_id)
                SETTINGS index_granularity = 32, {_SETTLE}""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.incident_docs_mv
                TO {db}.incident_docs AS
                SELECT ship_id, id, rank, first_seen, last_seen, doc FROM {db}.incidents_in""",
                f"""CREATE TABLE IF NOT EXISTS {db}.ship_last_incident (
                    ship_id {_LC}, last_seen SimpleAggregateFunction(max, {_TS})
                ) ENGINE = AggregatingMergeTree
                ORDER BY ship_id""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ship_last_incident_mv
                TO {db}.ship_last_incident AS
                SELECT ship_id, max(last_seen) AS last_seen FROM {db}.incidents_in
                GROUP BY ship_id""",
                f"""CREATE TABLE IF NOT EXISTS {db}.incident_versions (
                    tracking_id String, ship_id {_LC}, id String, version UInt32, rank UInt64,
                    ts {_TS}, status {_LC}, severity {_LC},
                    received_at {_TS}, stored_at {_TS}
                ) ENGINE = ReplacingMergeTree(rank)
                PARTITION BY toYYYYMM(ts)
                ORDER BY (tracking_id, ship_id, id, version)""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.incident_versions_mv
                TO {db}.incident_versions AS
                SELECT tracking_id, ship_id, id, version, rank, ts, status, severity,
                       received_at, stored_at
                FROM {db}.incidents_in""",
                f"""CREATE TABLE IF NOT EXISTS {db}.incident_timeline (
                    ship_id {_LC}, incident_id String, version UInt32, seq UInt16,
                    ts {_TS}, event {_LC}, detail String
                ) ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (incident_id, ship_id, version, seq)""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.incident_timeline_mv
                TO {db}.incident_timeline AS
                SELECT ship_id, id AS incident_id, step.version AS version, n - 1 AS seq,
                       parseDateTime64BestEffort(step.ts, 3, 'UTC') AS ts,
                       step.event AS event, step.detail AS detail
                FROM (
                    SELECT ship_id, id, JSONExtract(doc, 'timeline',
                        'Array(Tuple(ts String, version UInt32, event String, detail String))'
                    ) AS steps
                    FROM {db}.incidents_in
                )
                ARRAY JOIN steps AS step,
                    arrayEnumerateUniq(arrayMap(x -> x.version, steps)) AS n""",
                f"""CREATE TABLE IF NOT EXISTS {db}.anomaly_summaries (
                    ship_id {_LC}, incident_id String, anomaly_id String, tracking_id String,
                    ts {_TS}, detector {_LC}, device {_LC}, score Float32, summary String
                ) ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (incident_id, ship_id, anomaly_id)""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.anomaly_summaries_mv
                TO {db}.anomaly_summaries AS
                SELECT ship_id, id AS incident_id, e.anomaly_id AS anomaly_id,
                       e.tracking_id AS tracking_id,
                       parseDateTime64BestEffort(e.ts, 3, 'UTC') AS ts, e.detector AS detector,
                       e.device AS device, e.score AS score, e.summary AS summary
                FROM {db}.incidents_in
                ARRAY JOIN JSONExtract(doc, 'evidence', 'Array(Tuple(anomaly_id String,
                    tracking_id String, ts String, detector String, device String,
                    score Float32, summary String))') AS e""",
                f"""CREATE TABLE IF NOT EXISTS {db}.heartbeats ({_HEARTBEAT})
                ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (ship_id, ts)""",
                f"""CREATE TABLE IF NOT EXISTS {db}.ship_status ({_HEARTBEAT})
                ENGINE = ReplacingMergeTree(ts)
                ORDER BY ship_id""",
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ship_status_mv
                TO {db}.ship_status AS SELECT * FROM {db}.heartbeats""",
                f"""CREATE TABLE IF NOT EXISTS {db}.insights (
                    ship_id {_LC}, incident_id String, ts {_TS}, tracking_id String,
                    model {_LC}, latency_ms Float64, cache_hit Bool, fallback Bool,
                    doc String CODEC(ZSTD(1))
                ) ENGINE = ReplacingMergeTree(ts)
                ORDER BY (ship_id, incident_id)""",
                f"""CREATE TABLE IF NOT EXISTS {db}.actions (
                    ship_id {_LC}, command_id String, tracking_id String, ts {_TS},
                    action {_LC}, target String, ok Bool, detail String
                ) ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (ship_id, command_id, ts, action)""",
                f"""CREATE TABLE IF NOT EXISTS {db}.approvals (
                    ts {_TS}, approval_id String, ship_id {_LC}, incident_id String,
                    action {_LC}, target String, actor String, role {_LC},
                    decision {_LC}, reason String
                ) ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (ship_id, approval_id, ts, actor, decision)""",
                f"""CREATE TABLE IF NOT EXISTS {db}.audit (
                    ts {_TS}, who String, role {_LC}, action {_LC}, target String,
                    allowed Bool, detail String
                ) ENGINE = MergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY ts""",
                f"""CREATE TABLE IF NOT EXISTS {db}.dead_letters (
                    ts {_TS}, source {_LC}, subject String, reason String,
                    data String CODEC(ZSTD(1))
                ) ENGINE = MergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY ts""",
            ),
        ),
        Migration(
            2,
            "gaps: incident versions a ship evicted unsent",
            (
                # one row per evicted key; a replayed gap message repeats (ship, tracking
                # id, key) and its ts, so it collapses like the other immutable facts
                f"""CREATE TABLE IF NOT EXISTS {db}.gaps (
                    ship_id {_LC}, ts {_TS}, tracking_id String, key String, reason String
                ) ENGINE = ReplacingMergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (ship_id, tracking_id, key)""",
            ),
        ),
        Migration(
            3,
            "ask_turns: questions to /ask with their answers and citations, per user",
            (
                # one row per turn, written once and never updated
                f"""CREATE TABLE IF NOT EXISTS {db}.ask_turns (
                    user String, conversation_id String, ts {_TS}, turn_id String,
                    question String, answer String, citations String, fallback Bool,
                    reason String, model {_LC}, latency_ms Float64
                ) ENGINE = MergeTree
                PARTITION BY toYYYYMM(ts)
                ORDER BY (user, conversation_id, ts)""",
            ),
        ),
        Migration(
            4,
            "action_requests: remediations ships propose, latest version of each",
            (
                f"""CREATE TABLE IF NOT EXISTS {db}.action_requests (
                    ship_id {_LC}, id String, version UInt32, ts {_TS},
                    incident_id String, action {_LC}, target String, risk {_LC},
                    approval {_LC}, approvals_needed UInt8, requested_by String,
                    status {_LC}, approvers Array(String), doc String CODEC(ZSTD(1))
                ) ENGINE = ReplacingMergeTree(version)
                PARTITION BY toYYYYMM(ts)
                ORDER BY (ship_id, id)""",
            ),
        ),
    ]


# Which hub retention key bounds each table, and on which column. Audit, actions and
# approvals are records of decisions: they live as long as the incidents they are about.
TTL_COLUMNS: dict[str, tuple[str, str]] = {
    "incidents": ("last_seen", "incidents_days"),
    "incident_docs": ("last_seen", "incidents_days"),
    "incident_versions": ("ts", "timeline_days"),
    "incident_timeline": ("ts", "timeline_days"),
    "anomaly_summaries": ("ts", "timeline_days"),
    "heartbeats": ("ts", "heartbeats_days"),
    "insights": ("ts", "incidents_days"),
    "actions": ("ts", "incidents_days"),
    "approvals": ("ts", "incidents_days"),
    "action_requests": ("ts", "incidents_days"),
    "audit": ("ts", "incidents_days"),
    "dead_letters": ("ts", "dead_letters_days"),
    "gaps": ("ts", "incidents_days"),
    "ask_turns": ("ts", "incidents_days"),
}


def ttl_expression(column: str, days: float) -> str:
    """In the form ClickHouse prints it back, so an unchanged TTL is recognised."""
    return f"toDateTime({column}) + toIntervalSecond({round(days * 86400)})"


def migrations_table(db: str) -> str:
    """What `migrate` remembers applied migrations in."""
    return f"""CREATE TABLE IF NOT EXISTS {identifier(db)}.schema_migrations (
        version UInt32, name String, applied_at {_TS}
    ) ENGINE = ReplacingMergeTree ORDER BY version"""


def migrate(backend: Backend, db: str, retention: Mapping[str, float]) -> list[int]:
    """Apply what is missing and bring TTLs in line with `retention`; returns versions applied."""
    db = identifier(db)
    backend.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    backend.command(migrations_table(db))
    done = {r["version"] for r in backend.query(f"SELECT version FROM {db}.schema_migrations")}
    applied = []
    for m in migrations(db):
        if m.version in done:
            continue
        for statement in m.statements:
            backend.command(statement)
        backend.insert(
            f"{db}.schema_migrations",
            [{"version": m.version, "name": m.name, "applied_at": time.time()}],
        )
        applied.append(m.version)
    _sync_ttl(backend, db, retention)
    return applied


def _sync_ttl(backend: Backend, db: str, retention: Mapping[str, float]) -> None:
    """MODIFY TTL only where it differs, so restarts of many workers cost nothing. Only
    the tables that store rows carry a TTL: on a cluster the hub's tables are `Distributed`
    and their local tables get theirs from the cluster DDL (fleetstore.cluster)."""
    engines = {
        r["name"]: r["engine_full"]
        for r in backend.query(
            "SELECT name, engine_full FROM system.tables"
            " WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            {"db": db},
        )
    }
    for table, (column, key) in TTL_COLUMNS.items():
        ttl = ttl_expression(column, retention[key])
        if table in engines and f"TTL {ttl}" not in engines[table]:
            backend.command(f"ALTER TABLE {db}.{table} MODIFY TTL {ttl}")
