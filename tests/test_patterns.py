"""Fleet issues: incidents grouped across ships by type, place and shared evidence, by the
pure grouping function and over a real hub (nats-server, chdb, real HTTP; no memory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.ids import new_id
from shared.models import EvidenceRef, Incident, TimelineEntry
from shared.policy import load_policy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.auth import Role
from shore_hub.patterns import find_issues
from sync.topology import up_subject
from tests.conftest import wait_for
from tests.test_hub import RunningHub, frame, hub_running, hub_settings

NOW = datetime.now(UTC).replace(microsecond=0)
RAIN = "vsat.snr_db < 12 for 60 s (now 8.4)"


def fleet_incident(
    ship: str,
    first: datetime,
    *,
    itype: IncidentType = IncidentType.LINK_DEGRADATION,
    device: str = "vsat-modem-01",
    path: str | None = "satellite_uplink",
    detector: str | None = "threshold:vsat_snr_low",
    summary: str = RAIN,
    narrative: str = "SNR and Es/No falling together in heavy rain on the VSAT modem",
    resolution: str = "",
) -> Incident:
    """One incident as a ship sends it; resolved (30 min later) when `resolution` is given."""
    iid = new_id()
    resolved = first + timedelta(minutes=30) if resolution else None
    return Incident(
        tracking_id=new_id(),
        ship_id=ship,
        ts=resolved or first,
        id=iid,
        version=2 if resolution else 1,
        type=itype,
        severity=Severity.HIGH,
        status=IncidentStatus.RESOLVED if resolution else IncidentStatus.OPEN,
        device=device,
        devices=[device],
        path=path,
        corr_key=f"path:{path}" if path else f"{itype.value}:{device}",
        suppress_key=f"{itype.value}:{device}",
        first_seen=first,
        last_seen=resolved or first,
        anomaly_count=1 if detector else 0,
        evidence=[
            EvidenceRef(
                anomaly_id=new_id(),
                tracking_id=new_id(),
                ts=first,
                detector=detector,
                device=device,
                score=0.95,
                summary=summary,
            )
        ]
        if detector
        else [],
        narrative=narrative,
        resolved_at=resolved,
        timeline=[TimelineEntry(ts=resolved, version=2, event="resolved", detail=resolution)]
        if resolved
        else [],
    )


def rain_and_others() -> tuple[list[Incident], list[Incident]]:
    """A rain fade on three ships within 40 min, and incidents that must not join it."""
    rain = [
        fleet_incident(ship, NOW - timedelta(hours=3) + timedelta(minutes=20 * k))
        for k, ship in enumerate(("MV-PA", "MV-PB", "MV-PC"))
    ]
    others = [
        fleet_incident(  # same ship, other kind of problem
            "MV-PA",
            NOW - timedelta(hours=3),
            itype=IncidentType.SECURITY_ALERT,
            device="crew-srv-01",
            path=None,
            detector="pattern:ssh_bruteforce",
            summary="25 lines matching /Failed password/ in 60 s",
            narrative="sshd brute force on the crew server",
        ),
        fleet_incident(  # same type and path at the same time, other evidence
            "MV-PD",
            NOW - timedelta(hours=3),
            device="acu-01",
            detector="threshold:antenna_blocked",
            summary="acu.blocked >= 1 for 20 s (now 1)",
            narrative="antenna blocked by the funnel",
        ),
        fleet_incident("MV-PE", NOW - timedelta(minutes=10)),  # a rain fade hours later
    ]
    return rain, others


def docs(incidents: list[Incident]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in incidents]


def test_rain_fade_on_three_ships_is_one_issue_and_unrelated_stay_apart() -> None:
    rain, others = rain_and_others()
    role_of = load_policy().ingest.role_of
    issues = find_issues(docs(rain + others), role_of)
    assert len(issues) == 1
    view = issues[0].view(lambda ship: True)
    assert view is not None
    assert view["ships"] == ["MV-PA", "MV-PB", "MV-PC"]
    assert view["incident_ids"] == [i.id for i in rain] and view["count"] == 3
    assert view["type"] == "link_degradation" and view["where"] == "path satellite_uplink"
    assert "threshold:vsat_snr_low" in view["why"] and "3 ships" in view["why"]
    # the same issue keeps its id as it grows; a scoped caller sees its own part only
    later = fleet_incident("MV-PF", NOW - timedelta(hours=2, minutes=30))
    grown = find_issues(docs(rain + others + [later]), role_of)
    assert [i.id for i in grown] == [issues[0].id] and len(grown[0].members) == 4
    mine = grown[0].view(lambda ship: ship == "MV-PB")
    assert mine is not None and mine["ships"] == ["MV-PB"] and mine["count"] == 1
    assert mine["signals"] == ["threshold:vsat_snr_low"]  # why it is one issue, fleet-wide


def test_grouping_by_device_role_and_without_evidence() -> None:
    """Off any network path, the device's role places an incident; incidents with no
    evidence group by type and place alone."""
    role_of = load_policy().ingest.role_of
    disk = [
        fleet_incident(
            ship,
            NOW - timedelta(minutes=30 + k),
            itype=IncidentType.RESOURCE_PRESSURE,
            device=device,
            path=None,
            detector=None,
            narrative="disk full on /var",
        )
        for k, (ship, device) in enumerate((("MV-RA", "pos-srv-01"), ("MV-RB", "srv-backup")))
    ]
    (issue,) = find_issues(docs(disk), role_of)
    view = issue.view(lambda ship: True)
    assert view is not None and view["where"] == "host devices"
    assert view["ships"] == ["MV-RA", "MV-RB"] and "no evidence attached" in view["why"]
    assert find_issues(docs(disk[:1]), role_of) == []  # one ship is not a fleet issue


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[RunningHub]:
    settings = hub_settings(
        tmp_path_factory.mktemp("hub-patterns"), chdb_path, "hub_patterns_test", memory=False
    )
    with hub_running(settings) as running:
        yield running


def test_fleet_issues_endpoint(running: RunningHub) -> None:
    rain, others = rain_and_others()
    running.publish([(up_subject(i.ship_id, "incident"), frame(i)) for i in rain + others])
    admin = running.key(Role.ADMIN)
    wait_for(
        lambda: (
            len(
                httpx.get(
                    f"{running.url}/api/v3/incidents", headers=admin, params={"limit": 100}
                ).json()["items"]
            )
            == len(rain + others)
        ),
        timeout=30,
    )
    viewer = running.key(Role.VIEWER)
    refused = httpx.post(f"{running.url}/api/v3/fleet/issues/refresh", headers=viewer)
    assert refused.status_code == 403
    refreshed = httpx.post(
        f"{running.url}/api/v3/fleet/issues/refresh", headers=running.key(Role.OPERATOR)
    )
    assert refreshed.status_code == 200, refreshed.text
    body = httpx.get(f"{running.url}/api/v3/fleet/issues", headers=viewer).json()
    assert body["computed_at"] and not body["truncated"]
    (issue,) = body["issues"]
    assert issue["ships"] == ["MV-PA", "MV-PB", "MV-PC"]
    assert sorted(issue["incident_ids"]) == sorted(i.id for i in rain)
    assert issue["id"].startswith("FI-") and issue["why"]
    scoped = running.key(Role.VIEWER, ["MV-PD"])
    assert httpx.get(f"{running.url}/api/v3/fleet/issues", headers=scoped).json()["issues"] == []
    metrics = httpx.get(f"{running.url}/metrics").text
    assert "seawatch_hub_fleet_issues 1.0" in metrics
