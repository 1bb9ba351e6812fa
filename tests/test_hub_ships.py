"""Ship registration, commands onto FLEET_DOWN and gap reports, over a real hub: nats-server
with JetStream, chdb and real HTTP (incident memory off: nothing here searches)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from shared import wire
from shared.ids import new_id
from shared.models import Command, Gap
from shore_hub.api.ships import NEEDS
from shore_hub.auth import Role
from sync.topology import FLEET_DOWN, down_subject, up_subject
from tests.conftest import wait_for
from tests.test_hub import RunningHub, hub_running, hub_settings

GOOD_BUNDLE = {"version": "2026.12.0", "files": {"policy.yaml": 'version: "2026.12.0"\n'}}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[RunningHub]:
    settings = hub_settings(
        tmp_path_factory.mktemp("hub-ships"), chdb_path, "hub_ships_test", memory=False
    )
    with hub_running(settings) as running:
        yield running


def register(running: RunningHub, ship: str) -> str:
    r = httpx.post(
        f"{running.url}/api/v3/ships", json={"ship_id": ship}, headers=running.key(Role.ADMIN)
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    return secret


def command(running: RunningHub, ship: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(f"{running.url}/api/v3/ships/{ship}/commands", json=body, headers=headers)


def denials(running: RunningHub) -> list[dict[str, Any]]:
    rows = httpx.get(f"{running.url}/api/v3/audit", headers=running.key(Role.ADMIN)).json()
    return [r for r in rows if not r["allowed"]]


def test_every_command_action_but_decisions_has_a_role() -> None:
    actions = set(get_args(Command.model_fields["action"].annotation))
    assert set(NEEDS) == actions - {"approval_decision"}  # those go through /approvals


def test_register_list_and_remove_ships(running: RunningHub) -> None:
    url = f"{running.url}/api/v3/ships"
    admin = running.key(Role.ADMIN)
    first = register(running, "MV-KILO")
    again = register(running, "MV-KILO")  # re-keyed: the old secret is gone
    assert first and again and first != again
    assert "MV-KILO" in httpx.get(url, headers=running.key(Role.VIEWER)).json()
    assert running.hub.fleet.registry.ships().count("MV-KILO") == 1
    register(running, "MV-LIMA")
    scoped = running.key(Role.VIEWER, ["MV-LIMA", "MV-NOWHERE"])
    assert httpx.get(url, headers=scoped).json() == ["MV-LIMA"]
    for role in (Role.VIEWER, Role.OPERATOR, Role.APPROVER):
        denied = httpx.post(url, json={"ship_id": "MV-MIKE"}, headers=running.key(role))
        assert denied.status_code == 403
    assert "MV-MIKE" not in running.hub.fleet.registry.ships()
    for bad in ("bad ship!", "hub", "x" * 65, ""):
        r = httpx.post(url, json={"ship_id": bad}, headers=admin)
        assert r.status_code == 400 and "invalid ship id" in r.json()["detail"], bad
    assert httpx.delete(f"{url}/MV-LIMA", headers=running.key(Role.OPERATOR)).status_code == 403
    assert httpx.delete(f"{url}/MV-LIMA", headers=admin).status_code == 204
    assert httpx.delete(f"{url}/MV-LIMA", headers=admin).status_code == 404
    assert "MV-LIMA" not in httpx.get(url, headers=admin).json()

    def audited() -> list[dict[str, Any]] | None:
        rows = httpx.get(f"{running.url}/api/v3/audit", headers=admin).json()
        done = {r["action"] for r in rows} >= {"register_ship", "remove_ship"}
        return rows if done else None

    rows = wait_for(audited)
    assert not any(s in str(r) for r in rows for s in (first, again))  # secrets never kept


def test_command_roles_and_scope(running: RunningHub) -> None:
    register(running, "MV-NOVEMBER")
    register(running, "MV-OSCAR")
    operator = running.key(Role.OPERATOR)
    approver = running.key(Role.APPROVER)
    ack = {"action": "ack", "incident_id": "01INC", "reason": "on it"}
    assert command(running, "MV-NOVEMBER", running.key(Role.VIEWER), **ack).status_code == 403
    assert command(running, "MV-NOVEMBER", operator, **ack).status_code == 202
    bundle = command(running, "MV-NOVEMBER", operator, action="policy_bundle", payload=GOOD_BUNDLE)
    assert bundle.status_code == 403 and "admin" in bundle.json()["detail"]
    # decisions go through /approvals (quorum, two-person rule), never as a bare command
    decision = {"action": "approval_decision", "payload": {"approval_id": "A1", "decision": "ok"}}
    assert command(running, "MV-NOVEMBER", approver, **decision).status_code == 400
    scoped = running.key(Role.OPERATOR, ["MV-NOVEMBER"])
    assert command(running, "MV-NOVEMBER", scoped, **ack).status_code == 202
    assert command(running, "MV-OSCAR", scoped, **ack).status_code == 403
    assert command(running, "MV-UNKNOWN", operator, **ack).status_code == 404
    no_incident = command(running, "MV-NOVEMBER", operator, action="resolve")
    assert no_incident.status_code == 400 and "incident_id" in no_incident.json()["detail"]
    assert command(running, "MV-NOVEMBER", operator, action="reboot").status_code == 400

    def audited() -> list[dict[str, Any]] | None:
        rows = denials(running)
        return rows if any("outside this key's scope" in r["detail"] for r in rows) else None

    details = {r["detail"] for r in wait_for(audited)}
    assert "policy_bundle: needs admin, has operator" in details


def test_policy_bundles_are_checked_before_sending(running: RunningHub) -> None:
    register(running, "MV-PAPA")
    admin = running.key(Role.ADMIN)
    for payload in (
        {"version": "1"},
        {"version": 1, "files": {}},
        {"version": "1", "files": {"policy.yaml": 3}},
        {**GOOD_BUNDLE, "extra": True},
    ):
        r = command(running, "MV-PAPA", admin, action="policy_bundle", payload=payload)
        assert r.status_code == 400 and "policy_bundle payload" in r.json()["detail"], payload
    escape = {"version": "1", "files": {"../policy.yaml": "{}", "policy.yaml": "{}"}}
    r = command(running, "MV-PAPA", admin, action="policy_bundle", payload=escape)
    assert r.status_code == 400 and "only relative" in r.json()["detail"]
    broken = {"version": "2", "files": {"policy.yaml": "detect: {hst: {n_trees: -3}}\n"}}
    r = command(running, "MV-PAPA", admin, action="policy_bundle", payload=broken)
    detail = r.json()["detail"]
    assert r.status_code == 400 and detail.startswith("policy check failed: 1 problem(s)")
    assert "policy.yaml: detect.hst.n_trees: Input should be greater than or equal to 1" in detail
    assert "bundles" not in detail  # the hub's temporary directory is not shown
    ok = command(running, "MV-PAPA", admin, action="policy_bundle", payload=GOOD_BUNDLE)
    assert ok.status_code == 202


def test_accepted_command_is_queued_on_fleet_down(running: RunningHub) -> None:
    register(running, "MV-QUEBEC")
    headers = {"X-API-Key": running.hub.keys.create("duty-officer", Role.OPERATOR, None)}
    r = command(
        running,
        "MV-QUEBEC",
        headers,
        action="suppress",
        incident_id="01INCIDENT",
        reason="known rain fade",
        payload={"minutes": 30},
    )
    assert r.status_code == 202
    msg = running.call(
        running.hub.js.get_last_msg(FLEET_DOWN, down_subject("MV-QUEBEC", "command"))
    )
    (cmd,) = wire.decode(msg.data)
    assert isinstance(cmd, Command) and cmd.id == r.json()["command_id"]
    assert (cmd.ship_id, cmd.action, cmd.incident_id) == ("MV-QUEBEC", "suppress", "01INCIDENT")
    assert (cmd.actor, cmd.reason, cmd.payload) == (
        "duty-officer",
        "known rain fade",
        {"minutes": 30},
    )
    assert cmd.tracking_id and cmd.ts.tzinfo is not None


def test_gaps_are_stored_once_and_counted_per_ship(running: RunningHub) -> None:
    hub = running.hub
    gap = Gap(
        tracking_id=new_id(),
        ship_id="MV-ROMEO",
        ts=datetime.now(UTC),
        evicted=["01AAA:1", "01AAA:2", "01BBB:1"],
        reason="outbox full",
    )
    data = wire.encode([gap])

    def publish_and_wait() -> None:
        before = sum(w.stored for w in hub.workers)
        running.call(hub.js.publish(up_subject("MV-ROMEO", "gap"), data))
        wait_for(lambda: sum(w.stored for w in hub.workers) > before)

    publish_and_wait()
    publish_and_wait()  # a replay of the same message
    rows = hub.store.gaps(["MV-ROMEO"])
    assert sorted(r["key"] for r in rows) == sorted(gap.evicted)
    assert {(r["tracking_id"], r["reason"]) for r in rows} == {(gap.tracking_id, "outbox full")}
    scoped = running.key(Role.VIEWER, ["MV-ROMEO"])
    api = httpx.get(f"{running.url}/api/v3/gaps", headers=scoped).json()
    assert len(api) == 3 and {r["ship_id"] for r in api} == {"MV-ROMEO"}
    other = running.key(Role.VIEWER, ["MV-SIERRA"])
    assert httpx.get(f"{running.url}/api/v3/gaps", headers=other).json() == []
    fleet = httpx.get(f"{running.url}/api/v3/fleet", headers=scoped).json()
    assert [(s["ship_id"], s["evicted"]) for s in fleet] == [("MV-ROMEO", 3)]
