"""Alert rules and dashboards that cannot drift from the code: every metric they name is one
a running agent or hub exports, every SLO threshold is the one in policies/slo.yaml, and
every SQL panel runs on a real fleet store (deploy/observability/)."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.capacity import Capacity, measure
from bench.hubstore import Fleet
from shared.policy import Policy, SloPolicy, load_policy
from shore_hub.fleetstore import FleetStore
from tests.conftest import start_agent, stop_agent
from tests.test_hub import hub_running, hub_settings

ROOT = Path(__file__).resolve().parent.parent
OBS = ROOT / "deploy" / "observability"
GRAFANA = OBS / "grafana"

# SLO keys whose figure nothing exports yet, so no rule can watch them (alerts.yml says so).
NOT_EXPORTED = {"agent_rss_mb", "restart_warm_s"}
# Rules compare the metric's own unit: seconds where the policy says milliseconds.
SLO_SCALE = {"fast_path_p99_ms": 0.001}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((OBS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / name).read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _targets(dashboard: dict[str, Any], key: str) -> list[str]:
    """Every query of the dashboard: panel targets and query variables."""
    out = [t[key] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["query"]["query" if key == "expr" else "rawSql"])
    return out


# ------------------------------------------------------------------ PromQL metric names

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_BRACES = re.compile(r"\{[^{}]*\}")  # label matchers
_BRACKETS = re.compile(r"\[[^\]]*\]")  # ranges and subqueries
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_LABEL_VALUES = re.compile(r"label_values\(([^,()]*),[^()]*\)")  # Grafana: the label is no metric
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")  # not a function call
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (no parser needed for what the rules use)."""
    for pattern, repl in (
        (_STRINGS, '""'),
        (_LABEL_VALUES, r"\1"),
        (_BRACES, ""),
        (_BRACKETS, ""),
        (_GROUPING, ""),
    ):
        expr = pattern.sub(repl, expr)
    return {m for m in _IDENT.findall(expr) if m.lower() not in _KEYWORDS}


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{lane="bulk"}[5m])))'
        " > 1e-3 and on (ship) b_total offset 5m == bool 1 unless label_values(c, instance)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


def _exposed_types(text: str) -> dict[str, str]:
    """name -> type from the `# TYPE` lines, which prometheus_client writes for every
    registered metric, also for a labelled one that has no sample yet."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def _is_exported(name: str, types: dict[str, str]) -> bool:
    if name in types:
        return True
    base, _, suffix = name.rpartition("_")
    return suffix in ("bucket", "sum", "count") and types.get(base) == "histogram"


@pytest.fixture(scope="module")
def exposed(
    tmp_path_factory: pytest.TempPathFactory, policy: Policy, chdb_path: Path
) -> dict[str, str]:
    """What a real agent and a real hub serve on /metrics right after start."""
    agent = start_agent(tmp_path_factory.mktemp("obs-agent"), policy)
    try:
        text = httpx.get(f"{agent.url}/metrics").text
    finally:
        stop_agent(agent)
    settings = hub_settings(
        tmp_path_factory.mktemp("obs-hub"), chdb_path, "observability_test", memory=False
    )
    with hub_running(settings) as hub:
        response = httpx.get(f"{hub.url}/metrics")  # no key: /metrics is public
        assert response.status_code == 200
        text += response.text
    return _exposed_types(text)


def test_labelled_metrics_without_samples_are_typed(exposed: dict[str, str]) -> None:
    """The premise of the check below: a labelled metric nobody has set yet is typed."""
    assert exposed["seawatch_uplink_bytes_total"] == "counter"  # lane: no link, no sample
    assert exposed["seawatch_hub_source_lag_messages"] == "gauge"  # ship: none registered


def test_every_metric_in_rules_and_dashboards_is_exported(exposed: dict[str, str]) -> None:
    used = {
        "alerts.yml": {m for rule in _rules() for m in metric_names(rule["expr"])},
        "seawatch-self.json": {
            m for e in _targets(_dashboard("seawatch-self.json"), "expr") for m in metric_names(e)
        },
    }
    assert "seawatch_fastpath_latency_seconds_bucket" in used["alerts.yml"]
    assert "seawatch_hub_source_lag_messages" in used["seawatch-self.json"]
    for source, names in used.items():
        missing = sorted(n for n in names if not _is_exported(n, exposed))
        assert not missing, f"{source} uses metrics nobody exports: {missing}"


# ------------------------------------------------------------------ rules


def test_rules_are_complete_and_point_at_existing_docs() -> None:
    rules = _rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        doc = notes["runbook_url"].split("#")[0]
        assert (ROOT / doc).is_file(), f"{rule['alert']}: runbook {doc} does not exist"
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


_COMPARISON = re.compile(r"(?:[<>]=?|[!=]=)\s*(?:bool\s+)?(-?[\d.]+(?:e-?\d+)?)")


def test_slo_thresholds_are_the_policy_values() -> None:
    slo = load_policy().slo
    watched = set()
    for rule in _rules():
        key = rule["labels"].get("slo")
        if key is None:
            continue
        watched.add(key)
        want = getattr(slo, key) * SLO_SCALE.get(key, 1)
        found = [float(v) for v in _COMPARISON.findall(rule["expr"])]
        assert any(math.isclose(v, want) for v in found), (
            f"{rule['alert']}: slo.{key} is {want} in policies/slo.yaml, the rule compares "
            f"with {found}"
        )
    assert watched | NOT_EXPORTED == set(SloPolicy.model_fields)
    assert not watched & NOT_EXPORTED


# ------------------------------------------------------------------ dashboards


@pytest.mark.parametrize("name", ["seawatch-self.json", "fleet-incidents.json"])
def test_dashboards_are_provisionable(name: str) -> None:
    d = _dashboard(name)
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"]
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids))
    kind = "prometheus" if name == "seawatch-self.json" else "grafana-clickhouse-datasource"
    for panel in _panels(d):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": kind, "uid": "${datasource}"}
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yml").read_text())
    assert kind in {ds["type"] for ds in provisioned["datasources"]}


def grafana_to_sql(sql: str, db: str, ship: str, since: float, until: float) -> str:
    """What the ClickHouse plugin sends for one selected ship, the macros expanded as its
    documentation gives them."""
    sql = re.sub(r"\$__conditionalAll\((.*?), \$ship\)", r"\1", sql)  # the condition itself
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        rf"\1 >= toDateTime({since:.0f}) AND \1 <= toDateTime({until:.0f})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\((\w+)\)",
        r"toStartOfInterval(toDateTime(\1), INTERVAL 3600 second)",
        sql,
    )
    sql = sql.replace("${ship:singlequote}", f"'{ship}'").replace("${db}", db)
    assert "$" not in sql, sql
    return sql


@pytest.fixture
def filled_store(chdb_path: Path) -> Iterator[tuple[FleetStore, Capacity, float]]:
    """A fleet store filled by `seawatch bench capacity` at a small scale."""
    db = f"obs_{uuid.uuid4().hex[:12]}"
    store = FleetStore.open(None, chdb_path, database=db)
    try:
        store.migrate()
        end = time.time()
        capacity = measure(store, 400, 4, 200, 0.05, end)
        # the bench resolves all but the newest incidents: one that is open for sure
        store.insert_incident_docs([Fleet(4, end).first_version(1, end - 60)], end)
        yield store, capacity, end
    finally:
        store.backend.command(f"DROP DATABASE IF EXISTS {db}")
        store.close()


def test_fleet_dashboard_sql_runs_on_a_real_store(
    filled_store: tuple[FleetStore, Capacity, float],
) -> None:
    store, capacity, end = filled_store
    queries = _targets(_dashboard("fleet-incidents.json"), "rawSql")
    assert len(queries) > 10
    empty = []
    for sql in queries:
        now = time.time() + 1  # Grafana's "now" is when the panel asks, after the inserts
        rows = store.backend.query(
            grafana_to_sql(sql, store.db, "MV-BENCH-001", end - 90 * 86_400, now)
        )
        if not rows:
            empty.append(sql.split("FROM ")[1].split()[0])
    # the bench writes no gaps and no dead letters; every other panel has rows to show
    assert sorted(empty) == ["${db}.dead_letters", "${db}.gaps"]
    # and the bench's own figures: every incident and heartbeat kept, bytes on disk counted
    assert capacity.tables["incidents"].rows == 400
    assert capacity.tables["heartbeats"].rows == capacity.heartbeats == 4 * 72
    assert capacity.per_incident() > 0 and capacity.heartbeat_frame > 0
