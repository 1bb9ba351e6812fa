"""The remediation loop: a ship proposes an action from the runbook, policy or people
approve it (ashore, or the crew with the link down), it runs once on the ship, and every
step is visible at both ends.

Unit tests cover the planner's rules and the executor's steps (real subprocesses). The rest
runs on a real fleet: a hub and two ship agents over real nats-server leaf links, one ship
with the default policy (log rotation is auto-approved), one whose policy puts it under
the two-person rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies import runbooks_dir
from shared import wire
from shared.ids import new_id
from shared.models import ActionRequest, Command, Incident
from shared.policy import ExecutorPolicy, Policy, load_policy
from shared.runbooks import load_runbooks
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from ship_agent.insight import Knowledge
from ship_agent.remediate import Remediator
from ship_agent.remediate.executor import ShellExecutor
from ship_agent.remediate.planner import in_window, plan
from ship_agent.store import Store
from shore_hub.auth import Role
from sync.topology import down_subject
from tests.conftest import metric, start_agent, stop_agent, wait_for
from tests.fleet import Fleet

AUTO, TWO = "MV-REMEDY-A", "MV-REMEDY-B"
SLOW = 60.0


# ---------------------------------------------------------------- the rules


def incident(device: str, itype: IncidentType = IncidentType.RESOURCE_PRESSURE) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        tracking_id=new_id(), ship_id=AUTO, ts=now, id=new_id(), version=1, type=itype,
        severity=Severity.MEDIUM, status=IncidentStatus.OPEN, device=device, devices=[device],
        corr_key=f"dev:{device}", suppress_key=f"x:{device}", first_seen=now, last_seen=now,
    )  # fmt: skip


BOOKS = {b.id: b for b in load_runbooks(runbooks_dir())}


def test_the_planner_follows_the_runbook_and_the_policy() -> None:
    p = load_policy().remediate
    never = lambda action, target: None  # noqa: E731 - nothing ran before
    req, _ = plan(incident("pos-srv-01"), "host", BOOKS["RB-07"], p, never, time.time())
    assert req is not None and (req.action, req.approval, req.approvals_needed) == (
        "rotate_logs", "auto", 0
    )  # fmt: skip
    # a critical path: the policy's "auto" becomes a person's decision
    req, _ = plan(incident("vsat-modem-01"), "vsat_modem", BOOKS["RB-03"], p, never, 0)
    assert req is not None and req.approval == "single" and req.action == "reset_connection"
    # steps written for hosts are not run on a device of another (or unknown) kind
    req, why = plan(incident("dev-01"), "unknown", BOOKS["RB-07"], p, never, 0)
    assert req is None and "not written for unknown devices" in why
    # navigation is never touched from here
    gps = incident("gps-01", IncidentType.NAVIGATION_DATA)
    req, why = plan(gps, "gps", BOOKS["RB-10"], p, never, 0)
    assert req is None and "navigation" in why
    # the first action is cooling down: the next one the runbook allows is proposed
    now = time.time()
    recent = lambda action, target: now - 60 if action == "rotate_logs" else None  # noqa: E731
    req, _ = plan(incident("pos-srv-01"), "host", BOOKS["RB-07"], p, recent, now)
    assert req is not None and req.action == "clear_cache" and req.approvals_needed == 1
    # the maintenance window, Sunday 02:00-04:00 UTC
    sunday_3am = datetime(2026, 11, 22, 3, 0, tzinfo=UTC).timestamp()
    assert in_window(p.maintenance_window, sunday_3am)
    assert not in_window(p.maintenance_window, sunday_3am + 3600)


def test_the_shell_executor_checks_runs_and_rolls_back(tmp_path: Path) -> None:
    marker = tmp_path / "rolled-back"
    ex = ShellExecutor(
        ExecutorPolicy(
            kind="shell",
            timeout_s=2,
            commands={
                "restart_service": {"run": "true", "post_check": "false",
                                    "rollback": f"touch {marker}"},
                "rotate_logs": {"run": "sh -c 'echo rotated {target}'"},
                "clear_cache": {"run": "sleep 5"},
            },
        )
    )  # fmt: skip
    out = ex.step("rotate_logs", "pos-srv-01", "run")
    assert out is not None and out.ok and "rotated pos-srv-01" in out.output
    assert ex.step("rotate_logs", "pos-srv-01", "pre_check") is None  # none defined: skipped
    slow = ex.step("clear_cache", "x", "run")
    assert slow is not None and not slow.ok and "timed out" in slow.output
    missing = ex.step("reboot_device", "x", "run")
    assert missing is not None and not missing.ok

    store = Store(tmp_path / "agent.db", AUTO)
    try:
        policy = load_policy().remediate.model_copy(update={"executor": ex_policy(marker)})
        r = Remediator(store, policy, Knowledge(None, runbooks_dir()), lambda d: "host")
        request = pending(r, "restart_service", post_check=True)
        ok, detail = r.execute(request)
        assert not ok and "post_check FAILED" in detail and "rollback ok" in detail
        assert marker.exists()  # the rollback really ran
    finally:
        store.close()


def ex_policy(marker: Path) -> ExecutorPolicy:
    return ExecutorPolicy(
        kind="shell",
        commands={"restart_service": {"run": "true", "post_check": "false",
                                      "rollback": f"touch {marker}"}},
    )  # fmt: skip


def pending(r: Remediator, action: str, **changes: Any) -> ActionRequest:
    inc = incident("pos-srv-01")
    request = ActionRequest(
        tracking_id=new_id(), ship_id=AUTO, ts=inc.ts, incident_id=inc.id, action=action,
        target=inc.device, risk="low", approval="single", approvals_needed=1,
        requested_by="ship:RB-07", **changes,
    )  # fmt: skip
    r._save(request)
    return request


def test_a_request_running_when_the_agent_stopped_is_never_run_again(tmp_path: Path) -> None:
    policy = load_policy().remediate
    store = Store(tmp_path / "agent.db", AUTO)
    try:
        r = Remediator(store, policy, Knowledge(None, runbooks_dir()), lambda d: "host")
        request = pending(r, "rotate_logs")
        cmd = decision(request.id, "approved", ["ops-1"])
        assert r.decide_ashore(cmd).ok
        assert r.claim(request.id) is not None  # running ... and the agent dies here
        assert r.claim(request.id) is None  # nobody else may claim it meanwhile
    finally:
        store.close()
    store = Store(tmp_path / "agent.db", AUTO)
    try:
        again = Remediator(store, policy, Knowledge(None, runbooks_dir()), lambda d: "host")
        got = again.get(request.id)
        assert got is not None and got.status == "interrupted"
        assert again.due() == [] and again.claim(request.id) is None
    finally:
        store.close()


def decision(request_id: str, verdict: str, approvers: list[str], ship: str = AUTO) -> Command:
    return Command(
        tracking_id=new_id(), ship_id=ship, ts=datetime.now(UTC), action="approval_decision",
        actor=approvers[0], payload={"approval_id": request_id, "decision": verdict,
                                     "approvers": approvers},
    )  # fmt: skip


# ---------------------------------------------------------------- the loop, ship <-> hub


def two_person_policy() -> Policy:
    base = load_policy(ship_id=TWO)
    actions = dict(base.remediate.actions)
    actions["rotate_logs"] = actions["rotate_logs"].model_copy(update={"approval": "two_person"})
    remediate = base.remediate.model_copy(update={"actions": actions})
    return base.model_copy(update={"remediate": remediate})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("remedy"), chdb_path, "remedy", load_policy(), [AUTO])
    try:
        f.start()
        f.add_ship(TWO, policy=two_person_policy())
        yield f
    finally:
        f.stop()


class Api:
    def __init__(self, fleet: Fleet) -> None:
        self.url = f"http://127.0.0.1:{fleet.hub.http_port}/api/v3"
        self.keys = {
            name: fleet.hub.keys.create(name, role, None)
            for name, role in (("ops-anna", Role.APPROVER), ("ops-ben", Role.APPROVER),
                               ("watch", Role.OPERATOR))
        }  # fmt: skip

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, headers=self.auth("ops-anna"), timeout=30)
        r.raise_for_status()
        return r.json()

    def decide(self, who: str, request_id: str, verdict: str = "approve") -> httpx.Response:
        return httpx.post(
            f"{self.url}/approvals/{request_id}/decision",
            json={"decision": verdict, "reason": "checked with the chief engineer"},
            headers=self.auth(who),
            timeout=30,
        )

    def auth(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Api:
    return Api(fleet)


def disk_full(fleet: Fleet, ship: str, device: str) -> str:
    """A full disk on `device`: the incident it opens, whose id is returned."""
    t = time.time()
    agent = fleet.agents[ship]
    assert agent.call(_submit(agent.agent, [metric(device, "host.disk_pct", 97.0, t + k * 31)
                                            for k in range(4)]))  # fmt: skip
    agent.drain()
    rows = wait_for(lambda: agent.sql("SELECT id FROM incidents WHERE device=?", device), SLOW)
    return str(rows[0][0])


async def _submit(agent: Any, items: list[Any]) -> bool:
    return bool(agent.submit(items))


def on_ship(fleet: Fleet, ship: str, incident_id: str) -> ActionRequest | None:
    rows = fleet.agents[ship].sql(
        "SELECT doc FROM action_requests WHERE incident_id=?", incident_id
    )
    return ActionRequest.model_validate_json(rows[0][0]) if rows else None


def at_hub(api: Api, request_id: str) -> dict[str, Any] | None:
    r = httpx.get(f"{api.url}/approvals/{request_id}", headers=api.auth("ops-anna"), timeout=30)
    return r.json() if r.status_code == 200 else None


def hub_status(api: Api, request_id: str, status: str) -> dict[str, Any] | None:
    found = at_hub(api, request_id)
    return found if found is not None and found["status"] == status else None


def runs(fleet: Fleet, ship: str, request_id: str) -> int:
    """Times the ship's executor ran this request (its audit keeps one row per run)."""
    inc = fleet.agents[ship].sql("SELECT incident_id FROM action_requests WHERE id=?", request_id)
    return int(fleet.agents[ship].sql(
        "SELECT count(*) FROM audit WHERE actor='dry-run' AND incident_id=?", inc[0][0]
    )[0][0])  # fmt: skip


def test_a_low_risk_action_runs_on_board_at_once_and_shore_sees_it(fleet: Fleet, api: Api) -> None:
    inc = disk_full(fleet, AUTO, "pos-srv-01")
    done = wait_for(lambda: (r := on_ship(fleet, AUTO, inc)) and r.status == "succeeded" and r,
                    SLOW)  # fmt: skip
    assert (done.action, done.runbook, done.approvers) == ("rotate_logs", "RB-07", ["policy:auto"])
    assert done.detail.startswith("[dry-run]") and "would run rotate_logs" in done.detail
    assert wait_for(lambda: hub_status(api, done.id, "succeeded"), SLOW)
    history = [a for a in api.get("/actions") if a["id"] == done.id]
    assert history[0]["detail"] == done.detail and history[0]["approvers"] == ["policy:auto"]
    assert runs(fleet, AUTO, done.id) == 1
    # an action that ran at once goes ashore once, with its outcome: neither the seconds-old
    # approval nor "running" takes the link
    sent = fleet.agents[AUTO].sql("SELECT version FROM outbox WHERE incident_id=?", done.id)
    assert sent == [(done.version,)]


def test_two_people_approve_ashore_and_it_runs_once(fleet: Fleet, api: Api) -> None:
    inc = disk_full(fleet, TWO, "pos-srv-01")
    request = wait_for(lambda: on_ship(fleet, TWO, inc), SLOW)
    assert request.status == "pending" and request.approvals_needed == 2
    pending = wait_for(lambda: [r for r in api.get("/approvals") if r["id"] == request.id], SLOW)
    assert pending[0]["approval"] == "two_person" and pending[0]["decisions"] == []

    assert api.decide("watch", request.id).status_code == 403  # an operator may not approve
    first = api.decide("ops-anna", request.id)
    assert first.status_code == 200 and not first.json()["sent"]
    assert api.decide("ops-anna", request.id).status_code == 409  # not twice by one person
    time.sleep(1.0)  # nothing went down: the ship still waits
    assert on_ship(fleet, TWO, inc).status == "pending"  # type: ignore[union-attr]
    second = api.decide("ops-ben", request.id)
    assert second.status_code == 200 and second.json()["sent"]
    assert second.json()["approvers"] == ["ops-anna", "ops-ben"]

    done = wait_for(lambda: hub_status(api, request.id, "succeeded"), SLOW)
    assert done["approvers"] == ["ops-anna", "ops-ben"]
    assert {d["actor"] for d in done["decisions"]} == {"ops-anna", "ops-ben"}
    assert runs(fleet, TWO, request.id) == 1
    assert api.decide("ops-anna", request.id).status_code == 409  # decided and done


def test_a_repeated_or_second_decision_never_runs_it_again(fleet: Fleet, api: Api) -> None:
    inc = disk_full(fleet, TWO, "res-srv-01")
    request = wait_for(lambda: on_ship(fleet, TWO, inc), SLOW)
    wait_for(lambda: at_hub(api, request.id), SLOW)
    assert api.decide("ops-anna", request.id).status_code == 200
    assert api.decide("ops-ben", request.id).status_code == 200
    wait_for(lambda: (r := on_ship(fleet, TWO, inc)) and r.status == "succeeded", SLOW)
    # the same decision delivered again (a new stream message), and another one
    agent = fleet.agents[TWO]
    (cmd_id,) = agent.sql(
        "SELECT command_id FROM downlink WHERE action='approval_decision' AND target=?", request.id
    )[0]
    again = decision(request.id, "approved", ["ops-anna", "ops-ben"], ship=TWO)
    again_same = again.model_copy(update={"id": cmd_id})
    for cmd, msg_id in ((again_same, f"again:{cmd_id}"), (again, again.id)):
        fleet.call(fleet.hub.js.publish(
            down_subject(TWO, "command"), wire.encode([cmd]), headers={"Nats-Msg-Id": msg_id}
        ))  # fmt: skip
    result = wait_for(lambda: agent.sql("SELECT ok, detail FROM downlink WHERE command_id=?",
                                        again.id), SLOW)  # fmt: skip
    assert result[0][0] == 0 and "already succeeded" in result[0][1]
    assert runs(fleet, TWO, request.id) == 1
    assert on_ship(fleet, TWO, inc).status == "succeeded"  # type: ignore[union-attr]


def test_approved_while_the_link_is_down_it_runs_when_the_link_is_back(
    fleet: Fleet, api: Api
) -> None:
    inc = disk_full(fleet, TWO, "ent-srv-01")
    request = wait_for(lambda: on_ship(fleet, TWO, inc), SLOW)
    wait_for(lambda: at_hub(api, request.id), SLOW)
    fleet.links[TWO].cut()
    try:
        assert api.decide("ops-ben", request.id).json()["sent"] is False
        assert api.decide("ops-anna", request.id).json()["sent"] is True
        time.sleep(2.0)  # the decision waits ashore for the link
        assert on_ship(fleet, TWO, inc).status == "pending"  # type: ignore[union-attr]
    finally:
        fleet.links[TWO].restore()
    wait_for(lambda: hub_status(api, request.id, "succeeded"), SLOW)
    assert runs(fleet, TWO, request.id) == 1


def test_the_crew_decides_on_board_only_while_the_link_is_down(fleet: Fleet, api: Api) -> None:
    inc = disk_full(fleet, TWO, "crew-srv-01")
    request = wait_for(lambda: on_ship(fleet, TWO, inc), SLOW)
    wait_for(lambda: at_hub(api, request.id), SLOW)
    ship_api = f"{fleet.agents[TWO].url}/api/v3/actions/{request.id}/approve"
    body = {"actor": "eto-lee", "reason": "disk at 97 %, POS failing"}
    link = fleet.agents[TWO].agent.link.uplink.link
    wait_for(lambda: link.leaf_up, SLOW)  # back from the previous test's cut
    refused = httpx.post(ship_api, json=body, timeout=30)
    assert refused.status_code == 409 and "decisions are made ashore" in refused.json()["detail"]
    page = httpx.get(f"{fleet.agents[TWO].url}/crew", timeout=30).text
    assert "Decided ashore while the shore link is up" in page and "<form" not in page

    fleet.links[TWO].cut()
    try:
        wait_for(lambda: not link.leaf_up, SLOW)
        first = httpx.post(ship_api, json=body, timeout=30)
        assert first.status_code == 200 and first.json()["status"] == "pending"
        assert httpx.post(ship_api, json=body, timeout=30).status_code == 409  # same person
        second = httpx.post(ship_api, json={**body, "actor": "master-ito"}, timeout=30)
        assert second.status_code == 200 and second.json()["status"] == "approved"
        done = wait_for(lambda: (r := on_ship(fleet, TWO, inc)) and r.status == "succeeded" and r,
                        SLOW)  # fmt: skip
        assert done.approvers == ["crew:eto-lee", "crew:master-ito"]
    finally:
        fleet.links[TWO].restore()
    assert wait_for(lambda: hub_status(api, request.id, "succeeded"), SLOW)
    assert api.decide("ops-anna", request.id).status_code == 409  # nothing left to decide
    assert runs(fleet, TWO, request.id) == 1


def test_the_crew_page_shows_the_ship_and_decides_without_a_shore(tmp_path: Path) -> None:
    """A ship with no hub at all: the crew is the only one who can decide, on its page."""
    running = start_agent(tmp_path, two_person_policy(), ship_id=TWO)
    try:
        t = time.time()
        running.call(_submit(running.agent, [metric("pos-srv-01", "host.disk_pct", 97.0,
                                                    t + k * 31) for k in range(4)]))  # fmt: skip
        running.drain()
        request = wait_for(lambda: running.agent.remediator.requests("pending"), SLOW)[0]
        page = httpx.get(f"{running.url}/crew", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "<script" not in html  # nothing to load from anywhere
        assert "shore link: not configured" in html and "Open incidents (1)" in html
        assert "resource pressure" in html and "pos-srv-01" in html
        assert f'action="/crew/actions/{request.id}"' in html and "0 of 2: none yet" in html

        form = f"{running.url}/crew/actions/{request.id}"
        first = httpx.post(form, data={"actor": "eto-lee", "decision": "approved"}, timeout=30)
        assert first.status_code == 303 and "pending" in first.headers["location"]
        again = httpx.post(form, data={"actor": "eto-lee", "decision": "approved"}, timeout=30)
        assert "not+decided" in again.headers["location"]  # one person, once
        httpx.post(form, data={"actor": "master-ito", "decision": "approved"}, timeout=30)
        done = wait_for(
            lambda: (r := running.agent.remediator.get(request.id)) and r.status == "succeeded",
            SLOW,
        )
        assert done
        after = httpx.get(f"{running.url}/crew", timeout=30).text
        assert "Nothing waits for a decision" in after
        assert "crew:eto-lee, crew:master-ito" in after and "[dry-run]" in after
    finally:
        stop_agent(running)
