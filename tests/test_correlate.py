"""Correlation through the real pipeline and SQLite: windows, dedup, paths and root cause,
severity and escalation, versions with outbox rows, maintenance windows, suppression,
auto-resolve."""

from __future__ import annotations

from pathlib import Path

import orjson

from shared import wire
from shared.models import Incident
from shared.policy import Policy, load_policy
from ship_agent.pipeline import OperatorCommand, Pipeline
from ship_agent.store import Store
from tests.conftest import SHIP, T0, logline, metric


def snr(ts: float, value: float, device: str = "vsat-modem-01"):  # type: ignore[no-untyped-def]
    return metric(device, "vsat.snr_db", value, ts)


def rows(store: Store, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    return list(store.conn.execute(sql))


def fade(pipeline: Pipeline, start: float, minutes: int, value: float = 9.0) -> None:
    pipeline.run_batch([snr(start + i * 20, value) for i in range(minutes * 3)])


def test_persisting_threshold_opens_one_incident_and_repeats_only_count(
    pipeline: Pipeline, store: Store
) -> None:
    fade(pipeline, T0, 10)
    incidents = rows(
        store, "SELECT type, severity, status, device, version, anomaly_count FROM incidents"
    )
    assert len(incidents) == 1
    itype, severity, status, device, version, count = incidents[0]
    assert (itype, severity, status, device) == (
        "link_degradation",
        "high",
        "open",
        "vsat-modem-01",
    )
    assert version == 1  # one batch -> one version, however many anomalies it saw
    assert count >= 9  # the threshold re-reported each minute: dedup counted them
    doc = Incident.model_validate_json(rows(store, "SELECT doc FROM incidents")[0][0])
    assert len(doc.evidence) == 1  # repeats within the dedup TTL add no evidence


def test_the_first_metric_evidence_carries_the_series_up_to_the_anomaly(
    pipeline: Pipeline, store: Store
) -> None:
    """What the console draws ashore: the readings before the anomaly, the anomalous last."""
    readings = [14.0, 13.5, 13.1, 12.6] + [9.4] * 6
    pipeline.run_batch([snr(T0 + i * 20, v) for i, v in enumerate(readings)])
    doc = Incident.model_validate_json(rows(store, "SELECT doc FROM incidents")[0][0])
    values = doc.evidence[0].values
    assert values is not None and 2 <= len(values) <= 12
    assert values[-1] == 9.4 and values[0] > values[-1]
    assert all(e.values is None for e in doc.evidence[1:])  # one series per incident


def test_every_version_has_its_outbox_row_in_the_same_transaction(
    pipeline: Pipeline, store: Store
) -> None:
    fade(pipeline, T0, 3)
    pipeline.run_batch(
        [logline("vsat-modem-01", "modem", "Rx lock lost", T0 + 200 + i) for i in range(3)]
    )
    versions = rows(store, "SELECT id, version FROM incidents")
    outbox = rows(store, "SELECT incident_id, version, priority, payload FROM outbox ORDER BY id")
    assert [(o[0], o[1]) for o in outbox] == [(versions[0][0], 1), (versions[0][0], 2)]
    decoded = wire.decode(outbox[-1][3])
    assert isinstance(decoded[0], Incident) and decoded[0].version == 2
    assert decoded[0].ship_id == SHIP
    # the lock-loss pattern (comms_outage) joined the uplink path incident and raised its type
    assert decoded[0].type.value == "comms_outage" and decoded[0].severity.value == "critical"
    assert outbox[-1][2] == 0  # critical -> urgent lane


def test_path_grouping_picks_the_upstream_root_cause(pipeline: Pipeline, store: Store) -> None:
    # the router's errors start first, the antenna is blocked 40 s later: the antenna is
    # upstream of the router on the satellite path, so it is the root-cause candidate
    batch = [metric("core-rtr-01", "net.if_errors_per_s", 400.0, T0 + i * 10) for i in range(30)]
    batch += [metric("acu-01", "acu.blocked", 1.0, T0 + 40 + i * 20) for i in range(10)]
    pipeline.run_batch(batch)
    (doc,) = [Incident.model_validate_json(r[0]) for r in rows(store, "SELECT doc FROM incidents")]
    assert doc.path == "satellite_uplink"
    assert set(doc.devices) == {"core-rtr-01", "acu-01"}
    assert doc.device == "acu-01"
    assert doc.type.value == "link_degradation"  # precedence over network_issue


def test_unrelated_devices_get_separate_incidents(pipeline: Pipeline, store: Store) -> None:
    batch = [metric("pos-srv-01", "host.disk_pct", 97.0, T0 + i * 30) for i in range(5)]
    batch += [metric("fw-01", "net.cpu_pct", 97.0, T0 + i * 45) for i in range(6)]
    pipeline.run_batch(batch)
    got = sorted(rows(store, "SELECT device, type FROM incidents"))
    assert got == [("fw-01", "resource_pressure"), ("pos-srv-01", "resource_pressure")]


def test_auth_failures_then_brute_force_are_one_security_incident(
    pipeline: Pipeline, store: Store
) -> None:
    line = "Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2"
    pipeline.run_batch([logline("crew-srv-01", "sshd", line, T0 + i * 30) for i in range(8)])
    assert rows(store, "SELECT type, severity FROM incidents") == [("auth_failure", "low")]
    pipeline.run_batch([logline("crew-srv-01", "sshd", line, T0 + 300 + i) for i in range(25)])
    assert rows(store, "SELECT type, severity, version FROM incidents") == [
        ("security_alert", "high", 2)
    ]


def test_window_expiry_resolves_and_a_later_fault_opens_a_new_incident(
    pipeline: Pipeline, store: Store
) -> None:
    fade(pipeline, T0, 3)
    pipeline.run_batch([snr(T0 + 3000, 15.0)])  # link_degradation window is 600 s
    assert rows(store, "SELECT status FROM incidents") == [("resolved",)]
    timeline = rows(store, "SELECT event, detail FROM incident_timeline WHERE event='resolved'")
    assert timeline == [("resolved", "quiet for its window")]
    fade(pipeline, T0 + 4000, 3)
    assert sorted(r[0] for r in rows(store, "SELECT status FROM incidents")) == ["open", "resolved"]


def test_escalation_after_a_long_open_incident(pipeline: Pipeline, store: Store) -> None:
    fade(pipeline, T0, 40)  # 40 min > escalation.after_s (30 min)
    (sev,) = rows(store, "SELECT severity FROM incidents")[0]
    assert sev == "critical"
    events = [r[0] for r in rows(store, "SELECT event FROM incident_timeline")]
    assert "escalated" in events


def test_maintenance_window_records_a_suppressed_incident(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "correlate.yaml").write_text(
        "correlate:\n  maintenance_windows:\n"
        f"    - {{name: drydock, devices: ['vsat-*'], start_ts: {T0 - 10}, end_ts: {T0 + 3600}}}\n"
    )
    policy = load_policy(fleet, SHIP)
    store = Store(tmp_path / "a.db", SHIP)
    p = Pipeline(policy, store)
    fade(p, T0, 5)
    p.run_batch([metric("pos-srv-01", "host.disk_pct", 97.0, T0 + i * 30) for i in range(5)])
    got = dict(rows(store, "SELECT device, status FROM incidents"))
    assert got == {"vsat-modem-01": "suppressed", "pos-srv-01": "open"}
    doc = Incident.model_validate_json(
        rows(store, "SELECT doc FROM incidents WHERE device='vsat-modem-01'")[0][0]
    )
    assert doc.suppressed_reason == "maintenance window 'drydock'"
    assert rows(store, "SELECT count(*) FROM outbox")[0][0] == 2  # recorded and forwarded


def test_weekly_maintenance_window(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    # T0 is a Monday 14:13 UTC
    (fleet / "correlate.yaml").write_text(
        "correlate:\n  maintenance_windows:\n"
        "    - {name: weekly, devices: ['*'], weekday: monday, start: '14:00', end: '15:00'}\n"
    )
    store = Store(tmp_path / "a.db", SHIP)
    p = Pipeline(load_policy(fleet, SHIP), store)
    fade(p, T0, 3)
    fade(p, T0 + 86_400, 3)  # Tuesday: outside the window
    suppressed = rows(
        store, "SELECT DISTINCT incident_id FROM incident_timeline WHERE event = 'suppressed'"
    )
    first, second = rows(store, "SELECT id FROM incidents ORDER BY id")
    assert suppressed == [first]


def test_operator_suppression_holds_for_its_ttl(
    pipeline: Pipeline, store: Store, policy: Policy
) -> None:
    fade(pipeline, T0, 3)
    inc_id = rows(store, "SELECT id FROM incidents")[0][0]
    cmd = OperatorCommand("suppress", inc_id, "officer", "known: rain squall")
    pipeline.run_batch([cmd])
    assert cmd.result == "suppressed"
    pipeline.run_batch([OperatorCommand("resolve", inc_id, "officer")])
    # the same problem again within the suppression TTL opens already suppressed
    pipeline.run_batch([snr(T0 + 400 + i * 20, 9.0) for i in range(9)])
    statuses = rows(store, "SELECT status FROM incidents ORDER BY id")
    assert statuses == [("resolved",), ("suppressed",)]
    audit = rows(store, "SELECT actor, action, detail FROM audit ORDER BY id")
    assert audit[0] == ("officer", "suppress", "known: rain squall")


def test_ack_and_resolve_make_versions_and_unknown_ids_fail(
    pipeline: Pipeline, store: Store
) -> None:
    fade(pipeline, T0, 3)
    inc_id = rows(store, "SELECT id FROM incidents")[0][0]
    ack = OperatorCommand("ack", inc_id, "officer")
    pipeline.run_batch([ack])
    assert ack.result == "acknowledged"
    assert rows(store, "SELECT version, status FROM incidents") == [(2, "acknowledged")]
    resolve = OperatorCommand("resolve", inc_id, "officer", "fixed cable")
    pipeline.run_batch([resolve])
    assert rows(store, "SELECT version, status FROM incidents") == [(3, "resolved")]
    again = OperatorCommand("ack", inc_id, "officer")
    pipeline.run_batch([again])
    assert isinstance(again.result, LookupError)
    assert [r[0] for r in rows(store, "SELECT version FROM outbox ORDER BY id")] == [1, 2, 3]


def test_evidence_is_capped_but_counts_keep_going(
    pipeline: Pipeline, store: Store, policy: Policy
) -> None:
    # many distinct crash-looping services on one host: distinct fingerprints
    batch = []
    for unit in range(80):
        for i in range(3):
            batch.append(
                logline(
                    "res-srv-01",
                    "systemd",
                    f"svc{unit}.service: Main process exited, code=exited, status=1/FAILURE",
                    T0 + unit * 2 + i * 0.1,
                )
            )
    # same device, distinct keys needed: the pattern is one key, so vary the pattern source
    pipeline.run_batch(batch)
    doc = Incident.model_validate_json(rows(store, "SELECT doc FROM incidents")[0][0])
    assert len(doc.evidence) <= policy.correlate.max_evidence
    assert doc.anomaly_count >= len(doc.evidence)


def test_restart_restores_active_incidents(policy: Policy, store: Store) -> None:
    p1 = Pipeline(policy, store)
    fade(p1, T0, 3)
    p1.checkpoint()
    p2 = Pipeline(policy, store)
    p2.warm_start()
    fade(p2, T0 + 180, 3)
    assert rows(store, "SELECT count(*), max(version) FROM incidents") == [(1, 2)]
    ctx = orjson.loads(rows(store, "SELECT context FROM anomalies ORDER BY ts DESC LIMIT 1")[0][0])
    assert ctx["similar_24h"] >= 1 and ctx["last_incident"]["type"] == "link_degradation"
