"""The hub's fleet store on the real ClickHouse engine: chdb always, and the same tests on a
ClickHouse server when SEAWATCH_CLICKHOUSE_URL names one. Each test has its own database."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from shared.ids import new_id
from shared.models import ActionResult, EvidenceRef, Heartbeat, Incident, Insight, TimelineEntry
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shared.timeutil import iso
from shore_hub.fleetstore import BackendError, BackendUnavailable, FleetStore
from shore_hub.fleetstore.backends import ChdbBackend, ClickHouseServerBackend, param_text
from shore_hub.fleetstore.schema import rank_of

URL_ENV = "SEAWATCH_CLICKHOUSE_URL"
NOW = float(int(time.time()))  # recent, so no TTL ever applies to test rows
H = 3600.0
LinkState = Literal["up", "degraded", "down", "unknown"]


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[FleetStore]:
    url = None
    if request.param == "server":
        url = os.environ.get(URL_ENV)
        if not url:
            pytest.skip(f"{URL_ENV} is not set: the server run needs a ClickHouse server URL")
    db = f"fleetstore_{uuid.uuid4().hex[:12]}"
    s = FleetStore.open(url, chdb_path, database=db)
    assert s.migrate() == [1, 2, 3, 4]
    yield s
    s.backend.command(f"DROP DATABASE IF EXISTS {db}")
    s.close()


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def make(
    ship: str,
    iid: str,
    version: int,
    *,
    first: float = NOW - 10 * H,
    status: str = "open",
    severity: str = "medium",
    type: str = "network_issue",  # noqa: A002 - the contract's field name
    device: str = "core-router",
    narrative: str = "",
    evidence: list[tuple[str, str]] | None = None,
    anomaly_count: int | None = None,
    acked: float | None = None,
    acked_in: int | None = None,
    resolved: float | None = None,
    suppressed_reason: str | None = None,
    tracking_id: str | None = None,
) -> Incident:
    """One version of an incident, with a cumulative timeline as the ship sends it: each
    step keeps the version that added it (`acked_in`: the version that saw the ack)."""
    refs = [
        EvidenceRef(
            anomaly_id=f"{iid}-a{k}",
            tracking_id=f"{iid}-t{k}",
            ts=dt(first + k),
            detector="threshold",
            device=dev,
            score=0.9,
            summary=summary,
        )
        for k, (dev, summary) in enumerate(evidence or [(device, "value beyond its band")])
    ]
    steps = [TimelineEntry(ts=dt(first), version=1, event="opened")]
    steps += [
        TimelineEntry(ts=dt(first + v), version=v, event="evidence") for v in range(2, 1 + version)
    ]
    if acked is not None:
        steps.append(TimelineEntry(ts=dt(acked), version=acked_in or version, event="acknowledged"))
    if resolved is not None:
        steps.append(TimelineEntry(ts=dt(resolved), version=version, event="resolved"))
    last = max([first + version, acked or 0.0, resolved or 0.0])
    return Incident(
        tracking_id=tracking_id or f"trk-{iid}",
        ship_id=ship,
        ts=dt(last),
        id=iid,
        version=version,
        type=IncidentType(type),
        severity=Severity(severity),
        status=IncidentStatus(status),
        device=device,
        devices=sorted({device, *(r.device for r in refs)}),
        corr_key=f"{type}:{device}",
        suppress_key=f"{type}:{device}",
        suppressed_reason=suppressed_reason,
        first_seen=dt(first),
        last_seen=dt(last),
        anomaly_count=len(refs) if anomaly_count is None else anomaly_count,
        evidence=refs,
        narrative=narrative,
        confidence=0.9,
        timeline=steps,
        resolved_at=dt(resolved) if resolved is not None else None,
    )


def heartbeat(ship: str, ts: float, link: LinkState = "up", **kw: Any) -> Heartbeat:
    return Heartbeat(
        tracking_id=new_id(),
        ship_id=ship,
        ts=dt(ts),
        agent_version=kw.pop("agent_version", "0.1.0"),
        policy_version=kw.pop("policy_version", "p1"),
        link_state=link,
        **kw,
    )


def ids_of(page: dict[str, Any]) -> list[str]:
    return [i["id"] for i in page["items"]]


# ------------------------------------------------------------------ schema


def test_migrations_rerun_and_repair_a_half_applied_schema(store: FleetStore) -> None:
    store.insert_incidents([make("MV-A", new_id(), 1)], received_at=NOW)
    assert store.migrate() == []
    # as if a worker died after the DDL but before recording it: everything runs again
    store.backend.command(f"TRUNCATE TABLE {store.db}.schema_migrations")
    assert store.migrate() == [1, 2, 3, 4]
    assert store.migrate() == []
    assert len(store.list_incidents()["items"]) == 1


def test_ttl_follows_the_retention_policy(store: FleetStore) -> None:
    def ttl(table: str) -> str:
        rows = store.backend.query(
            "SELECT engine_full FROM system.tables WHERE database = {db:String}"
            " AND name = {t:String}",
            {"db": store.db, "t": table},
        )
        return str(rows[0]["engine_full"])

    assert f"toIntervalSecond({730 * 86400})" in ttl("incidents")
    assert f"toIntervalSecond({30 * 86400})" in ttl("dead_letters")
    store.retention["incidents_days"] = 1.0
    store.migrate()
    assert f"toIntervalSecond({86400})" in ttl("incidents")
    store.insert_incidents([make("MV-A", new_id(), 1, first=NOW - 3 * 86400)], NOW)
    store.backend.command(f"OPTIMIZE TABLE {store.db}.incidents FINAL")
    assert store.list_incidents()["items"] == []


# ------------------------------------------------------------------ versions and replays


def test_latest_version_wins_whatever_the_arrival_order(store: FleetStore) -> None:
    iid = new_id()
    v1 = make("MV-A", iid, 1)
    v2 = make("MV-A", iid, 2, severity="high")
    v3 = make("MV-A", iid, 3, severity="high", status="resolved", resolved=NOW - 5 * H)
    for k, inc in enumerate((v1, v3, v2)):
        store.insert_incidents([inc], received_at=NOW + k)
    detail = store.incident(iid)
    assert detail is not None
    assert detail["incident"]["version"] == 3 and detail["incident"]["status"] == "resolved"
    assert ids_of(store.list_incidents(status="resolved")) == [iid]
    assert store.list_incidents(status="open")["items"] == []
    assert store.incidents_by_ids([iid])[0]["version"] == 3
    assert store.stats()["by_status"] == {"resolved": 1}
    assert [v["version"] for v in store.trace(v1.tracking_id)["versions"]] == [1, 2, 3]  # type: ignore[index]
    # every timeline step of every version, once
    assert [(t["version"], t["event"]) for t in detail["timeline"]] == [
        (1, "opened"),
        (2, "evidence"),
        (3, "evidence"),
        (3, "resolved"),
    ]


def _snapshot(store: FleetStore, iid: str, tracking_id: str) -> dict[str, Any]:
    fleet = store.fleet()
    for ship in fleet:
        ship.pop("heartbeat_age_s")  # depends on the clock, not on the data
    return {
        "list": store.list_incidents(limit=1000),
        "stats": store.stats(),
        "fleet": fleet,
        "detail": store.incident(iid),
        "trace": store.trace(tracking_id),
        "actions": store.actions(),
        "counts": store.backend.query(
            f"SELECT (SELECT count() FROM {store.db}.incidents FINAL) AS incidents,"
            f" (SELECT count() FROM {store.db}.incident_docs FINAL) AS docs,"
            f" (SELECT count() FROM {store.db}.incident_timeline FINAL) AS steps,"
            f" (SELECT count() FROM {store.db}.anomaly_summaries FINAL) AS anomalies,"
            f" (SELECT count() FROM {store.db}.incident_versions FINAL) AS versions,"
            f" (SELECT count() FROM {store.db}.heartbeats FINAL) AS beats"
        ),
    }


def test_replaying_everything_changes_no_result(store: FleetStore) -> None:
    iid = new_id()
    ev = [("fw-1", "deny burst"), ("sw-2", "port flap")]
    versions = [
        make("MV-A", iid, 1, evidence=ev),
        make("MV-A", iid, 2, evidence=ev, acked=NOW - 9 * H, status="acknowledged"),
        make("MV-A", iid, 3, evidence=ev, acked=NOW - 9 * H, acked_in=2, resolved=NOW - 8 * H,
             status="resolved"),
    ]  # fmt: skip
    others = [make(f"MV-{s}", new_id(), 1, severity="critical") for s in "BCD"]
    beats = [heartbeat("MV-A", NOW - 60, queue_depths={"urgent": 2}), heartbeat("MV-B", NOW - 30)]
    result = ActionResult(
        tracking_id="t",
        ship_id="MV-A",
        ts=dt(NOW),
        command_id="c1",
        action="ack",
        target=iid,
        ok=True,
    )
    store.insert_incidents(versions + others, received_at=NOW)
    store.insert_heartbeats(beats)
    store.insert_action_results([result])
    before = _snapshot(store, iid, versions[0].tracking_id)
    assert before["counts"] == [
        {"incidents": 4, "docs": 4, "steps": 8, "anomalies": 5, "versions": 6, "beats": 2}
    ]

    store.insert_incidents(versions[::-1] + others, received_at=NOW + 120)  # later, out of order
    store.insert_incidents(versions[1:2], received_at=NOW + 240)
    store.insert_heartbeats(beats)
    store.insert_action_results([result])
    assert _snapshot(store, iid, versions[0].tracking_id) == before
    for table in ("incidents", "incident_docs", "incident_timeline", "incident_versions"):
        store.backend.command(f"OPTIMIZE TABLE {store.db}.{table} FINAL")
    assert _snapshot(store, iid, versions[0].tracking_id) == before
    # the first receipt of a version is kept, not the replay's
    assert before["detail"]["received_at"] == iso(NOW)


def test_rank_orders_versions_first_then_the_earliest_receipt() -> None:
    assert rank_of(2, NOW + 1000) > rank_of(1, NOW)
    assert rank_of(1, NOW) > rank_of(1, NOW + 0.01)
    with pytest.raises(ValueError):
        rank_of(0, NOW)


# ------------------------------------------------------------------ lists


def _fleet_of_incidents(store: FleetStore) -> dict[str, Incident]:
    """Nine incidents on three ships, created in id order (oldest first)."""
    specs: list[dict[str, Any]] = [
        dict(ship="MV-A", severity="critical", type="comms_outage", device="vsat-modem-1"),
        dict(ship="MV-A", severity="high", type="link_degradation", device="vsat-modem-1"),
        dict(ship="MV-A", severity="medium", type="resource_pressure", device="pos-srv"),
        dict(ship="MV-B", severity="high", type="security_alert", device="fw-main",
             narrative="Repeated SSH failures from crew VLAN"),
        dict(ship="MV-B", severity="low", type="auth_failure", device="fw-main"),
        dict(ship="MV-B", severity="medium", type="network_issue", device="sw-deck3",
             evidence=[("sw-deck3", "Interface Gi0/7 flapping")]),
        dict(ship="MV-C", severity="critical", type="safety", device="ups-bridge"),
        dict(ship="MV-C", severity="medium", type="hardware_environment", device="rack-temp"),
        dict(ship="MV-C", severity="low", type="auth_failure", device="ap-guest-12"),
    ]  # fmt: skip
    out = {}
    for k, spec in enumerate(specs):
        iid = new_id()
        out[iid] = make(spec.pop("ship"), iid, 1, first=NOW - (20 - k) * H, **spec)
    store.insert_incidents(list(out.values()), received_at=NOW)
    return out


def test_list_filters_newest_first(store: FleetStore) -> None:
    incs = _fleet_of_incidents(store)
    newest_first = sorted(incs, reverse=True)
    assert ids_of(store.list_incidents()) == newest_first
    assert store.list_incidents()["items"][0] == incs[newest_first[0]].model_dump(mode="json")

    def ids(**filters: Any) -> set[str]:
        return set(ids_of(store.list_incidents(**filters)))

    def where(pred: Any) -> set[str]:
        return {i for i, inc in incs.items() if pred(inc)}

    assert ids(ship="MV-B") == where(lambda i: i.ship_id == "MV-B")
    assert ids(ship=["MV-A", "MV-C"]) == where(lambda i: i.ship_id != "MV-B")
    assert ids(severity="critical") == where(lambda i: i.severity == "critical")
    assert ids(type="auth_failure") == where(lambda i: i.type == "auth_failure")
    assert ids(type="auth_failure", ship="MV-C") == where(
        lambda i: i.type == "auth_failure" and i.ship_id == "MV-C"
    )
    assert ids(since=NOW - 15 * H) == where(lambda i: i.first_seen.timestamp() >= NOW - 15 * H)
    assert ids(since=NOW - 18 * H, until=NOW - 15 * H) == where(
        lambda i: NOW - 18 * H <= i.first_seen.timestamp() < NOW - 15 * H
    )
    assert ids(status="open") == set(incs) and ids(status="resolved") == set()


def test_text_search_is_case_insensitive_over_narrative_evidence_and_devices(
    store: FleetStore,
) -> None:
    incs = _fleet_of_incidents(store)

    def having(pred: Any) -> list[str]:
        return [i for i, inc in sorted(incs.items(), reverse=True) if pred(inc)]

    assert ids_of(store.list_incidents(text="ssh FAILURES")) == having(
        lambda i: "SSH failures" in i.narrative
    )
    assert ids_of(store.list_incidents(text="gi0/7 FLAPPING")) == having(
        lambda i: any("Gi0/7" in e.summary for e in i.evidence)
    )
    assert ids_of(store.list_incidents(text="UPS-BRIDGE")) == having(
        lambda i: i.device == "ups-bridge"
    )
    assert len(ids_of(store.list_incidents(text="FW-MAIN"))) == 2
    assert ids_of(store.list_incidents(text="no such words")) == []


def test_cursor_pages_through_everything_once(store: FleetStore) -> None:
    incs = _fleet_of_incidents(store)
    pages: list[list[str]] = []
    cursor = None
    for _ in range(10):  # bounded: a cursor that does not advance fails, not hangs
        page = store.list_incidents(cursor=cursor, limit=4)
        pages.append(ids_of(page))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [i for p in pages for i in p] == sorted(incs, reverse=True)
    two = store.list_incidents(ship="MV-A", limit=2)
    rest = store.list_incidents(ship="MV-A", cursor=two["next_cursor"], limit=2)
    assert len(two["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    with pytest.raises(ValueError, match="invalid cursor"):
        store.list_incidents(cursor="not-a-cursor")


def test_filters_see_only_latest_versions_even_behind_many_stale_matches(
    store: FleetStore,
) -> None:
    """Pages are found among rows of any version, then checked against the latest one:
    forty newer incidents whose first version still matches `open` (resolved since, not
    yet merged) must not hide the two older ones that are really open."""
    store.backend.command(f"SYSTEM STOP MERGES {store.db}.incidents")  # keep the stale rows
    really_open = [new_id(), new_id()]
    store.insert_incidents([make("MV-A", i, 1) for i in really_open], received_at=NOW)
    stale = [new_id() for _ in range(40)]
    store.insert_incidents([make("MV-B", i, 1) for i in stale], received_at=NOW)
    store.insert_incidents(
        [make("MV-B", i, 2, status="resolved", resolved=NOW - H) for i in stale], NOW
    )
    assert ids_of(store.list_incidents(status="open", limit=5)) == really_open[::-1]
    first = store.list_incidents(status="open", limit=1)
    assert ids_of(first) == [really_open[1]]
    rest = store.list_incidents(status="open", limit=1, cursor=first["next_cursor"])
    assert ids_of(rest) == [really_open[0]] and rest["next_cursor"] is None
    assert ids_of(store.list_incidents(status="resolved", limit=50)) == stale[::-1]
    store.backend.command(f"SYSTEM START MERGES {store.db}.incidents")


# ------------------------------------------------------------------ scope


def test_a_scoped_caller_never_sees_other_ships(store: FleetStore) -> None:
    incs = _fleet_of_incidents(store)
    store.insert_heartbeats([heartbeat(s, NOW - 60) for s in ("MV-A", "MV-B", "MV-C")])
    store.insert_action_results(
        [
            ActionResult(tracking_id="t", ship_id=s, ts=dt(NOW), command_id=f"c-{s}",
                         action="ack", target="x", ok=True)
            for s in ("MV-A", "MV-B")
        ]
    )  # fmt: skip
    store.insert_approvals(
        [
            {"approval_id": f"ap-{s}", "ship_id": s, "action": "failover_path",
             "actor": "alice", "decision": "requested"}
            for s in ("MV-A", "MV-B")
        ]
    )  # fmt: skip
    scope = ["MV-B"]
    mine = {i for i, inc in incs.items() if inc.ship_id == "MV-B"}
    other = next(i for i, inc in incs.items() if inc.ship_id != "MV-B")
    assert set(ids_of(store.list_incidents(scope, limit=100))) == mine
    assert store.list_incidents(scope, ship="MV-A")["items"] == []
    assert store.incident(other, scope) is None and store.incident(other) is not None
    assert {d["id"] for d in store.incidents_by_ids(list(incs), scope)} == mine
    assert store.stats(ships=scope)["by_ship"] == {"MV-B": 3}
    assert [s["ship_id"] for s in store.fleet(scope)] == ["MV-B"]
    assert store.trace(incs[other].tracking_id, scope) is None
    assert [a["ship_id"] for a in store.actions(scope)] == ["MV-B"]
    assert [a["ship_id"] for a in store.approvals(scope)] == ["MV-B"]
    assert store.list_incidents([])["items"] == [] and store.fleet([]) == []


# ------------------------------------------------------------------ fleet views


def test_stats_counts_mtta_mttr_devices_dedup_and_suppression(store: FleetStore) -> None:
    t = NOW - 30 * H
    a, b, c, d, old = (new_id() for _ in range(5))
    store.insert_incidents(
        [
            make("MV-A", a, 2, first=t, status="resolved", severity="high", device="vsat",
                 acked=t + 60, resolved=t + 600, anomaly_count=5),
            make("MV-A", b, 2, first=t + H, status="resolved", device="vsat",
                 acked=t + H + 180, resolved=t + H + 1800),
            make("MV-B", c, 1, first=t + 2 * H, status="acknowledged", device="fw",
                 acked=t + 2 * H + 120, anomaly_count=3),
            make("MV-B", d, 1, first=t + 3 * H, status="suppressed", device="vsat",
                 suppressed_reason="maintenance window"),
            make("MV-C", old, 1, first=t - 100 * H),
        ],
        received_at=NOW,
    )  # fmt: skip
    s = store.stats(since=t, until=NOW)
    assert s["total"] == 4
    assert s["by_severity"] == {"high": 1, "medium": 3}
    assert s["by_status"] == {"resolved": 2, "acknowledged": 1, "suppressed": 1}
    assert s["by_ship"] == {"MV-A": 2, "MV-B": 2}
    assert s["by_type"] == {"network_issue": 4}
    assert s["acked"] == 3 and s["mtta_s"] == pytest.approx((60 + 180 + 120) / 3)
    assert s["resolved"] == 2 and s["mttr_s"] == pytest.approx((600 + 1800) / 2)
    assert s["anomalies"] == 5 + 1 + 3 + 1 and s["dedup"] == (5 - 1) + (3 - 1)
    assert s["suppressed"] == 1
    assert s["top_devices"][0] == {"ship_id": "MV-A", "device": "vsat", "count": 2}
    over = s["over_time"]  # 30 hours: hourly steps, every one of them, empty ones too
    assert over["step_s"] == H and over["buckets"][0] == iso(t // H * H)
    assert len(over["buckets"]) == (NOW - 0.001) // H - t // H + 1
    for dim in ("by_severity", "by_type", "by_ship"):
        assert {k: sum(v) for k, v in over[dim].items()} == s[dim]
        assert all(len(v) == len(over["buckets"]) for v in over[dim].values())
    assert over["by_ship"]["MV-B"][2:4] == [1, 1] and over["by_ship"]["MV-B"][0] == 0
    # sync lag: each version's ship commit (its last step) to the hub's receipt, per ship
    lag = {r["ship_id"]: r for r in s["sync_lag"]}
    assert set(lag) == {"MV-A", "MV-B"}  # MV-C's version is from before the range
    assert lag["MV-A"]["versions"] == 2 and lag["MV-A"]["max_s"] == 30 * H - 600
    assert lag["MV-A"]["p50_s"] in (29 * H - 1800, 30 * H - 600)
    assert lag["MV-B"]["max_s"] == 28 * H - 120 and lag["MV-B"]["p95_s"] <= 28 * H - 120
    assert store.stats()["total"] == 5
    empty = store.stats(since=NOW + H)
    assert empty["total"] == 0 and empty["mtta_s"] is None and empty["by_ship"] == {}


def test_fleet_overview_from_heartbeats_and_incidents(store: FleetStore) -> None:
    store.insert_heartbeats(
        [
            heartbeat("MV-A", NOW - 60, "degraded", queue_depths={"urgent": 1, "bulk": 40},
                      oldest_unsent_s=95.5, agent_version="0.2.0"),
            heartbeat("MV-A", NOW - 600, "up", agent_version="0.1.0"),  # older, arrives later
            heartbeat("MV-A", NOW - 120, "degraded"),
            heartbeat("MV-A", NOW - 900, "degraded"),  # an earlier run of the same state
            heartbeat("MV-B", NOW - 30, "up"),
            heartbeat("MV-B", NOW - 90, "up"),
        ]
    )  # fmt: skip
    store.insert_incidents(
        [
            make("MV-A", new_id(), 1, severity="critical", first=NOW - 2 * H),
            make("MV-A", new_id(), 2, severity="high", status="acknowledged", acked=NOW - H),
            make("MV-A", new_id(), 2, severity="high", status="resolved", resolved=NOW - H),
            make("MV-C", new_id(), 1, severity="low", first=NOW - 3 * H),
        ],
        received_at=NOW,
    )
    fleet = {s["ship_id"]: s for s in store.fleet()}
    assert list(fleet) == ["MV-A", "MV-B", "MV-C"]
    a = fleet["MV-A"]
    assert a["last_heartbeat"] == iso(NOW - 60) and a["link_state"] == "degraded"
    assert a["link_since"] == iso(NOW - 120)  # the current run, not the one before "up"
    assert fleet["MV-B"]["link_since"] == iso(NOW - 90)  # never changed: the first heard
    assert a["agent_version"] == "0.2.0" and a["policy_version"] == "p1"
    assert a["queue_depths"] == {"urgent": 1, "bulk": 40} and a["backlog"] == 41
    assert a["oldest_unsent_s"] == 95.5 and a["heartbeat_age_s"] >= 60
    assert a["open_incidents"] == {"critical": 1, "high": 1} and a["open_total"] == 2
    assert a["last_incident"] == iso(NOW - H)
    assert fleet["MV-B"]["open_total"] == 0 and fleet["MV-B"]["last_incident"] is None
    c = fleet["MV-C"]  # incidents but no heartbeat yet
    assert c["link_state"] == "unknown" and c["last_heartbeat"] is None
    assert c["link_since"] is None
    assert c["open_incidents"] == {"low": 1} and c["last_incident"] == iso(NOW - 3 * H + 1)


def test_trace_shows_every_version_with_hub_times(store: FleetStore) -> None:
    iid = new_id()
    v1 = make("MV-A", iid, 1, tracking_id="trk-xyz")
    v2 = make("MV-A", iid, 2, tracking_id="trk-xyz", status="resolved", resolved=NOW - 9 * H)
    store.insert_incidents([v1], received_at=NOW - 10)
    store.insert_incidents([v2], received_at=NOW - 5)
    trace = store.trace("trk-xyz")
    assert trace is not None and trace["tracking_id"] == "trk-xyz"
    one, two = trace["versions"]
    assert (one["version"], one["status"], two["version"], two["status"]) == (
        1, "open", 2, "resolved"
    )  # fmt: skip
    assert one["ts"] == iso(v1.ts.timestamp()) and one["received_at"] == iso(NOW - 10)
    assert two["received_at"] == iso(NOW - 5)
    assert one["latency_s"] == pytest.approx(NOW - 10 - v1.ts.timestamp())
    assert one["stored_at"] >= one["received_at"]
    assert store.trace("trk-none") is None


def test_incident_detail_has_timeline_evidence_and_the_latest_insight(store: FleetStore) -> None:
    iid = new_id()
    inc = make("MV-A", iid, 1, evidence=[("fw-1", "deny burst"), ("sw-2", "port flap")])
    store.insert_incidents([inc], received_at=NOW)
    assert store.incident(iid)["insight"] is None  # type: ignore[index]

    def insight(ts: float, text: str) -> Insight:
        return Insight(tracking_id="t", ship_id="MV-A", ts=dt(ts), incident_id=iid,
                       narrative=text, model="gemma", latency_ms=900.0)  # fmt: skip

    store.insert_insights([insight(NOW - 10, "newer"), insight(NOW - 100, "older")])
    store.insert_insights([insight(NOW - 100, "older")])
    detail = store.incident(iid)
    assert detail is not None and detail["insight"]["narrative"] == "newer"
    assert detail["incident"] == inc.model_dump(mode="json")
    assert [(e["device"], e["summary"]) for e in detail["evidence"]] == [
        ("fw-1", "deny burst"),
        ("sw-2", "port flap"),
    ]
    assert detail["evidence"][0]["ts"] == iso(inc.first_seen.timestamp())
    assert [t["event"] for t in detail["timeline"]] == ["opened"]
    assert store.incident("no-such-id") is None


# ------------------------------------------------------------------ records


def test_dead_letters_keep_the_reason_and_the_data(store: FleetStore) -> None:
    store.insert_dead_letters(
        [
            {"ts": NOW - 2, "source": "fleet_up", "subject": "fleet.up.MV-A", "reason": "bad json",
             "data": b"\xff\xfe{"},
            {"ts": NOW - 1, "source": "fleet_up", "subject": "s", "reason": "too big",
             "data": "x" * 70_000},
            {"source": "api", "reason": "wrong types", "data": {"version": "two"}},
        ]
    )  # fmt: skip
    rows = store.dead_letters()
    assert [r["reason"] for r in rows] == ["wrong types", "too big", "bad json"]
    assert rows[0]["data"] == '{"version":"two"}' and rows[0]["source"] == "api"
    assert rows[1]["data"].startswith("x" * 65536) and "not kept" in rows[1]["data"]
    assert rows[2]["data"] == "\\xff\\xfe{" and rows[2]["ts"] == iso(NOW - 2)
    assert len(store.dead_letters(limit=1)) == 1


def test_audit_log_newest_first(store: FleetStore) -> None:
    store.insert_audit(
        [
            {"ts": NOW - 5, "who": "alice", "role": "approver", "action": "approve",
             "target": "ap-1", "allowed": True, "detail": "two-person: 1 of 2"},
            {"ts": NOW - 1, "who": "bob", "role": "viewer", "action": "policy.update",
             "target": "fleet", "allowed": False},
        ]
    )  # fmt: skip
    log = store.audit_log()
    assert [(r["who"], r["allowed"]) for r in log] == [("bob", False), ("alice", True)]
    assert log[1] == {
        "ts": iso(NOW - 5), "who": "alice", "role": "approver", "action": "approve",
        "target": "ap-1", "allowed": True, "detail": "two-person: 1 of 2",
    }  # fmt: skip
    assert len(store.audit_log(limit=1)) == 1


def test_actions_and_approval_steps(store: FleetStore) -> None:
    store.insert_action_results(
        [
            ActionResult(tracking_id="t1", ship_id="MV-A", ts=dt(NOW - 9), command_id="c1",
                         action="restart_service", target="pos", ok=True, detail="done"),
            ActionResult(tracking_id="t2", ship_id="MV-A", ts=dt(NOW - 1), command_id="c2",
                         action="failover_path", target="vsat", ok=False, detail="pre-check"),
        ]
    )  # fmt: skip
    acts = store.actions()
    assert [(a["command_id"], a["ok"]) for a in acts] == [("c2", False), ("c1", True)]
    assert acts[0]["ts"] == iso(NOW - 1) and acts[0]["detail"] == "pre-check"
    steps = [
        {"ts": NOW - 3, "decision": "requested", "actor": "ship"},
        {"ts": NOW - 2, "decision": "approved", "actor": "alice", "role": "approver"},
        {"ts": NOW - 1, "decision": "approved", "actor": "bob", "role": "approver"},
    ]
    base = {"approval_id": "ap-1", "ship_id": "MV-A", "incident_id": "i1",
            "action": "failover_path", "target": "vsat"}  # fmt: skip
    store.insert_approvals([{**base, **s} for s in steps])
    store.insert_approvals([{**base, **steps[0]}])  # a repeat collapses
    got = store.approvals(approval_id="ap-1")
    assert [(g["actor"], g["decision"]) for g in got] == [
        ("bob", "approved"),
        ("alice", "approved"),
        ("ship", "requested"),
    ]
    assert store.approvals(approval_id="ap-2") == []


# ------------------------------------------------------------------ safety and errors


INJECTIONS = [
    "x' OR 1=1 --",
    "'); DROP TABLE incidents; --",
    "\\' OR '1'='1",
    "{text:String}",
    "a\tb\nc\\n",
    "ünïcödé ' \" ` \\",
]


def test_parameters_cannot_inject_sql(store: FleetStore) -> None:
    tricky = new_id()
    store.insert_incidents(
        [make("MV-A", tricky, 1, narrative=" | ".join(INJECTIONS)), make("MV-B", new_id(), 1)],
        received_at=NOW,
    )
    for value in INJECTIONS:
        assert ids_of(store.list_incidents(text=value)) == [tricky], value
        assert store.list_incidents(ship=value)["items"] == []
        assert store.list_incidents([value])["items"] == []
        assert store.incident(value) is None and store.trace(value) is None
        assert store.approvals(approval_id=value) == []
    assert len(store.list_incidents()["items"]) == 2
    assert param_text(["a'b", "c\\d", None]) == "['a\\'b','c\\\\d',NULL]"
    assert param_text("tab\there") == "tab\\there"


def test_bad_input_raises_backend_error_with_the_reason(store: FleetStore) -> None:
    with pytest.raises(BackendError, match="(?i)no_such_table") as info:
        store.backend.query(f"SELECT * FROM {store.db}.no_such_table")
    assert type(info.value) is BackendError and "[statement: SELECT" in str(info.value)
    with pytest.raises(BackendError, match="(?i)no_such_table"):
        store.backend.insert(f"{store.db}.no_such_table", [{"a": 1}])
    with pytest.raises(BackendError, match="(?i)unknown|not found|no such"):
        store.backend.insert(f"{store.db}.audit", [{"who": "x", "nonexistent_column": 1}])
    with pytest.raises(ValueError, match="identifier"):
        store.backend.insert("db.audit; DROP TABLE x", [{"a": 1}])
    with pytest.raises(ValueError, match="identifier"):
        FleetStore.open(None, Path("unused"), database="bad-name; DROP")
    with pytest.raises(ValueError, match="unsupported ClickHouse url"):
        FleetStore.open("tcp://localhost:9000", Path("unused"))


def test_unreachable_server_is_backend_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    with pytest.raises(BackendUnavailable, match="cannot reach ClickHouse"):
        ClickHouseServerBackend(f"http://user:secret@127.0.0.1:{port}", timeout_s=2)


def test_chdb_opens_one_data_path_per_process(chdb_path: Path, tmp_path: Path) -> None:
    first = ChdbBackend(chdb_path)
    try:
        with pytest.raises(BackendUnavailable, match="one data path per process"):
            ChdbBackend(tmp_path / "other")
        second = ChdbBackend(chdb_path)  # the same path is shared
        assert second.query("SELECT 1 AS one") == [{"one": 1}]
        second.close()
        assert first.query("SELECT 2 AS two") == [{"two": 2}]
    finally:
        first.close()


def test_threads_share_one_store(store: FleetStore) -> None:
    errors: list[BaseException] = []

    def work(ship: str) -> None:
        try:
            for _ in range(5):
                store.insert_incidents([make(ship, new_id(), 1)], received_at=NOW)
                store.list_incidents(ship=ship)
                store.fleet()
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"MV-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.stats()["total"] == 20
