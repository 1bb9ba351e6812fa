"""The fleet store's DDL for a ClickHouse cluster, derived from the single-node migrations
(schema.py) so that the two cannot drift apart.

Two databases. `<db>_local` holds what each node stores: the migrations' tables with every
`*MergeTree` engine made its `Replicated*` twin (one replica set per shard, coordinated by
ClickHouse Keeper; the `{shard}` and `{replica}` macros come from each node's config), and
the materialized views, which fan the intake out on the node the rows land on. `<db>` holds
a `Distributed` table in front of each local table, under the same name: the hub reads and
writes those, with the same SQL as on one node. Rows are sharded by `cityHash64(ship_id)`,
so every version of an incident lands on one shard, which FINAL needs; the few tables
without a ship (audit, dead letters, /ask turns) are spread at random.

`<db>.schema_migrations` is one table replicated to every node (its Keeper path has no
shard) and records the migrations as applied, so the hub's own `migrate` finds nothing to
do; TTLs live on the local tables and are set here. Every statement is idempotent: run the
output again after an upgrade (new migrations) or a retention change (new TTLs). A
migration statement of a kind not handled here (only CREATE ... IF NOT EXISTS is) raises,
so a new kind cannot slip through unreplicated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shore_hub.fleetstore.backends import identifier, param_text
from shore_hub.fleetstore.schema import TTL_COLUMNS, migrations, migrations_table, ttl_expression

_CREATE = re.compile(r"^\s*CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)\.(\w+)")
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)\b(?:\(([^)]*)\))?")


def local_database(db: str) -> str:
    return f"{identifier(db)}_local"


def _on_cluster(statement: str, cluster: str) -> tuple[str, str, str]:
    """The statement with ON CLUSTER after the object's name; its kind and table name."""
    found = _CREATE.match(statement)
    if found is None:
        raise ValueError(f"not a CREATE ... IF NOT EXISTS db.name statement: {statement[:80]}")
    kind, table = found.group(1), found.group(3)
    return f"{found.group(0)} ON CLUSTER {cluster}{statement[found.end() :]}", kind, table


def _replicated(statement: str, keeper_path: str) -> str:
    """`XMergeTree(args)` made `ReplicatedXMergeTree('<path>', '{replica}', args)`."""

    def swap(m: re.Match[str]) -> str:
        args = ", ".join(a for a in (f"'{keeper_path}'", "'{replica}'", m.group(2)) if a)
        return f"ENGINE = Replicated{m.group(1)}({args})"

    return _ENGINE.sub(swap, statement, count=1)


def _shard_key(statement: str) -> str:
    columns = statement.split("ENGINE =", 1)[0]
    return "cityHash64(ship_id)" if re.search(r"\bship_id\b", columns) else "rand()"


def cluster_ddl(cluster: str, db: str, retention: Mapping[str, float]) -> list[str]:
    """The statements, in order, that create the fleet store on `cluster`."""
    cluster, db, local = identifier(cluster), identifier(db), local_database(db)
    out = [f"CREATE DATABASE IF NOT EXISTS {name} ON CLUSTER {cluster}" for name in (db, local)]
    front = []
    for migration in migrations(local):
        for statement in migration.statements:
            statement, kind, table = _on_cluster(statement, cluster)
            if kind == "TABLE":
                statement = _replicated(statement, f"/clickhouse/tables/{{shard}}/{local}/{table}")
                front.append(
                    f"CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster}"
                    f" AS {local}.{table} ENGINE = Distributed('{cluster}', '{local}',"
                    f" '{table}', {_shard_key(statement)})"
                )
            out.append(statement)
    out.extend(
        f"ALTER TABLE {local}.{table} ON CLUSTER {cluster}"
        f" MODIFY TTL {ttl_expression(column, retention[key])}"
        for table, (column, key) in TTL_COLUMNS.items()
    )
    out.extend(front)
    tracking, _, _ = _on_cluster(migrations_table(db), cluster)
    out.append(_replicated(tracking, f"/clickhouse/tables/all/{db}/schema_migrations"))
    done = ", ".join(
        f"({m.version}, {param_text(m.name, top=False)}, now64(3))" for m in migrations(db)
    )
    out.append(f"INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES {done}")
    return out
