"""Contracts: time-ordered ids, UTC-only times, the taxonomy, the wire codec, logging."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import structlog
from pydantic import ValidationError

from shared import log, wire
from shared.ids import id_floor, id_time_ms, new_id
from shared.models import Heartbeat, Incident, IngestBatch, MetricSample
from shared.taxonomy import IncidentType, Priority, Severity, priority_for


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert abs(id_time_ms(ids[0]) / 1000 - time.time()) < 5
    assert id_floor(time.time() - 60) < ids[0] < id_floor(time.time() + 60)


def test_naive_timestamps_are_refused_and_offsets_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        MetricSample(ts=datetime(2026, 1, 1), device="d", metric="m", value=1.0)  # noqa: DTZ001
    s = MetricSample(
        ts=datetime(2026, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))),
        device="d",
        metric="m",
        value=1.0,
    )
    assert s.ts == datetime(2026, 1, 1, tzinfo=UTC) and s.ts.tzinfo is UTC


def test_non_finite_metric_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        IngestBatch.model_validate_json(
            b'{"metrics": [{"ts": "2026-01-01T00:00:00Z", "device": "d", "metric": "m",'
            b' "value": "NaN"}]}'
        )


def test_taxonomy_is_the_domain_list_and_severity_orders() -> None:
    assert [t.value for t in IncidentType] == [
        "link_degradation",
        "comms_outage",
        "resource_pressure",
        "network_issue",
        "app_degradation",
        "auth_failure",
        "security_alert",
        "hardware_environment",
        "navigation_data",
        "safety",
    ]
    assert Severity.HIGH.escalated() is Severity.CRITICAL
    assert Severity.CRITICAL.escalated() is Severity.CRITICAL
    assert priority_for(Severity.CRITICAL) is Priority.URGENT
    assert priority_for(Severity.LOW) is Priority.BULK


def _incident(version: int, narrative: str = "") -> Incident:
    now = datetime.now(UTC)
    return Incident(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=now,
        id="01ABC",
        version=version,
        type=IncidentType.LINK_DEGRADATION,
        severity=Severity.HIGH,
        status="open",
        device="vsat-modem-01",
        devices=["vsat-modem-01"],
        corr_key="path:x",
        suppress_key="k",
        first_seen=now,
        last_seen=now,
        narrative=narrative,
    )


def test_wire_round_trip_small_raw_and_large_compressed() -> None:
    hb = Heartbeat(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=datetime.now(UTC),
        agent_version="0.1.0",
        policy_version="p1",
    )
    small = wire.encode([hb])
    assert small[:4] == b"SW\x01\x00"
    assert wire.decode(small) == [hb]
    many = [_incident(v, "rain fade over the Bay of Biscay " * 5) for v in range(1, 40)]
    frame = wire.encode(many)
    assert frame[3] == wire.ZSTD
    assert len(frame) < len(json.dumps([m.model_dump(mode="json") for m in many])) / 5
    assert wire.decode(frame) == many


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"XX\x01\x00[]", "bad magic"),
        (b"SW\x09\x00[]", "newer than this reader"),
        (b"SW\x01\x07[]", "unknown codec"),
        (b"SW\x01\x01not zstd", "zstd"),
        (b'SW\x01\x00[{"kind": "incident"}]', "invalid message"),
    ],
)
def test_wire_rejects_bad_frames_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(frame)


def test_logging_binds_tracking_ship_and_incident_from_context() -> None:
    buf = io.StringIO()
    log.configure("INFO")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    with log.bound(tracking_id="T1", ship_id="MV-A", incident_id="I1"):
        log.get("test").info("incident opened", severity="high")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert (line["tracking_id"], line["ship_id"], line["incident_id"]) == ("T1", "MV-A", "I1")
    assert line["event"] == "incident opened" and line["level"] == "info"
    assert line["timestamp"].endswith("Z")
