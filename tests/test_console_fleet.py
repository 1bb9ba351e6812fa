"""The console's remediation and policy pages in a real browser, against a real fleet: a hub
and two ship agents over real nats-server leaf links (tests/fleet.py), so what the pages
show comes back from ships that really ran the action or applied the policy.

The hub's policy directory holds the fleet's files: a short heartbeat in policy.yaml, and
per-ship overrides (ships/<id>.yaml): MV-CONSOLE-A puts log rotation under the two-person
rule, MV-CONSOLE-B runs fewer trees. Screenshots for the docs: SEAWATCH_CONSOLE_SHOTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError

from shared.policy import load_policy
from shore_hub.auth import Role
from sync.topology import FLEET_DOWN, down_subject
from tests.conftest import wait_for
from tests.fleet import Fleet

# browser, page: the fixtures (one Chromium per module, a tab failing on console errors)
from tests.test_console import browser, no_horizontal_scroll, page, shoot  # noqa: F401
from tests.test_remediation import disk_full, on_ship

A, B = "MV-CONSOLE-A", "MV-CONSOLE-B"
SLOW = 90.0
FLEET_FILES = {
    "policy.yaml": 'version: "fleet-1"\nsync:\n  heartbeat_s: 2\n',
    f"ships/{A}.yaml": "remediate:\n  actions:\n    rotate_logs:\n      approval: two_person\n",
    f"ships/{B}.yaml": "detect:\n  hst:\n    n_trees: 5\n",
}
PEOPLE = {
    "ops-anna": Role.APPROVER,
    "ops-ben": Role.APPROVER,
    "watch": Role.VIEWER,
    "admin-kim": Role.ADMIN,
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("console-fleet")
    policy_dir = root / "fleet-policy"
    for name, text in FLEET_FILES.items():
        (policy_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (policy_dir / name).write_text(text, encoding="utf-8")
    f = Fleet(root, chdb_path, "console_fleet", load_policy(policy_dir), [])
    f.settings = f.hub.settings = f.settings.model_copy(update={"policy_dir": policy_dir})
    try:
        f.start()
        for ship in (A, B):
            f.add_ship(ship, policy=load_policy(policy_dir, ship))
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def keys(fleet: Fleet) -> dict[str, str]:
    return {name: fleet.hub.keys.create(name, role, None) for name, role in PEOPLE.items()}


class Hub:
    """The hub's URL and the test's keys, for the API's side of what the pages do."""

    def __init__(self, fleet: Fleet, keys: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{fleet.hub.http_port}"
        self.api = f"{self.url}/api/v3"
        self.keys = keys

    def auth(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}


@pytest.fixture(scope="module")
def hub(fleet: Fleet, keys: dict[str, str]) -> Hub:
    return Hub(fleet, keys)


def sign_in(tab: Any, hub: Hub, who: str) -> None:
    tab.goto(hub.url)
    tab.get_by_label("API key").fill(hub.keys[who])
    tab.get_by_role("button", name="Sign in").click()
    tab.get_by_role("heading", name="Fleet", exact=True).wait_for()
    assert tab.locator("#who").inner_text().startswith(who)


def proposed(fleet: Fleet, hub: Hub, device: str) -> str:
    """A full disk on MV-CONSOLE-A's `device`: the two-person request it raises, once the
    hub has it."""
    incident = disk_full(fleet, A, device)
    request = wait_for(lambda: on_ship(fleet, A, incident), SLOW)
    assert request.approvals_needed == 2
    at_hub = f"{hub.api}/approvals/{request.id}"
    wait_for(lambda: httpx.get(at_hub, headers=hub.auth("watch")).status_code == 200, SLOW)
    return str(request.id)


def test_a_viewer_sees_requests_but_no_way_to_decide(
    page: Any,  # noqa: F811
    fleet: Fleet,
    hub: Hub,
) -> None:
    request_id = proposed(fleet, hub, "res-srv-01")
    sign_in(page, hub, "watch")
    assert not page.get_by_role("link", name="Policies").is_visible()
    page.get_by_role("link", name="Approvals", exact=True).click()
    card = page.locator(f"article.request[data-id='{request_id}']")
    card.wait_for()
    assert "0 of 2" in card.inner_text() and "Two-person rule" in card.inner_text()
    assert page.get_by_role("button", name="Approve").count() == 0
    assert "needs the approver role" in page.locator("main").inner_text()
    decision = {"decision": "approve", "reason": "no"}
    refused = httpx.post(f"{hub.api}/approvals/{request_id}/decision", json=decision,
                         headers=hub.auth("watch"), timeout=30)  # fmt: skip
    assert refused.status_code == 403  # and the API refuses it anyway
    assert (
        httpx.get(f"{hub.api}/policies/effective", headers=hub.auth("ops-anna")).status_code == 403
    )


def test_two_approvers_decide_and_the_ship_reports_the_run(
    page: Any,  # noqa: F811
    fleet: Fleet,
    hub: Hub,
) -> None:
    request_id = proposed(fleet, hub, "pos-srv-01")
    sign_in(page, hub, "ops-anna")
    page.get_by_role("link", name="Approvals", exact=True).click()
    card = page.locator(f"article.request[data-id='{request_id}']")
    card.get_by_label("Reason").fill("disk at 97 %, checked with the chief engineer")
    card.get_by_role("button", name="Approve").click()
    page.locator(".ok", has_text="Waiting for another approver").wait_for()
    assert "(1 of 2)" in page.locator(".ok").inner_text()
    # the same person cannot approve twice: the page, read again, no longer offers it
    card.get_by_text("You approved this request").wait_for()
    assert card.get_by_role("button", name="Approve").is_disabled()
    assert "1 of 2: ops-anna" in card.inner_text()
    mine = page.locator(f"table.mine tr[data-id='{request_id}']")
    assert (
        "approved" in mine.inner_text() and "checked with the chief engineer" in mine.inner_text()
    )
    assert no_horizontal_scroll(page)
    shoot(page, "approvals.png")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, hub, "ops-ben")
    page.get_by_role("link", name="Approvals", exact=True).click()
    card.get_by_label("Reason").fill("agreed")
    card.get_by_role("button", name="Approve").click()
    page.locator(".ok", has_text=f"sent to {A}").wait_for()
    assert "(2 of 2)" in page.locator(".ok").inner_text()

    page.get_by_role("link", name="Actions", exact=True).click()
    row = page.locator(f"tr[data-id='{request_id}']")
    row.locator(".badge.status-succeeded").wait_for(timeout=SLOW * 1000)  # the ship ran it
    assert row.locator("td[data-label='Approved by']").inner_text() == "ops-anna, ops-ben"
    run = row.locator("li[data-step='run']")
    assert "would run rotate_logs on pos-srv-01" in run.inner_text() and "ok" in run.inner_text()
    assert "dry-run executor" in row.inner_text()
    done = on_ship(fleet, A, _incident_of(fleet, request_id))
    assert (
        done is not None
        and done.status == "succeeded"
        and done.approvers
        == [
            "ops-anna",
            "ops-ben",
        ]
    )
    assert no_horizontal_scroll(page)
    shoot(page, "actions.png")


def _incident_of(fleet: Fleet, request_id: str) -> str:
    rows = fleet.agents[A].sql("SELECT incident_id FROM action_requests WHERE id=?", request_id)
    return str(rows[0][0])


def test_a_policy_is_checked_then_rolled_out_and_applied(
    page: Any,  # noqa: F811
    fleet: Fleet,
    hub: Hub,
) -> None:
    sign_in(page, hub, "admin-kim")
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_label("Ship", exact=True).select_option(A)
    diff = page.locator("pre.diff")
    wait_for(lambda: "approval: two_person" in diff.inner_text())
    assert diff.locator(".add", has_text="approval: two_person").count() == 1
    assert "reports policy fleet-1" in page.locator("main").inner_text()

    policy = page.locator("textarea[name='policy.yaml']")
    text = policy.input_value()
    page.get_by_label("Version").fill("fleet-2")
    policy.fill(text.replace("fleet-1", "fleet-2").replace("heartbeat_s: 2", "heartbeat_s: -1"))
    page.get_by_label(B, exact=True).check()
    page.get_by_role("button", name="Validate and roll out").click()
    error = page.locator(".rollout .error")
    error.wait_for()
    assert "policy.yaml: sync.heartbeat_s" in error.inner_text()
    # refused before anything was sent: no rollout, no command on the downlink
    gone = httpx.get(f"{hub.api}/policies/rollouts/fleet-2", headers=hub.auth("admin-kim"))
    assert gone.status_code == 404
    with pytest.raises(NotFoundError):
        fleet.call(fleet.hub.js.get_last_msg(FLEET_DOWN, down_subject(B, "command")))

    policy.fill(text.replace("fleet-1", "fleet-2"))
    page.locator("summary", has_text=f"ships/{B}.yaml").click()
    own = page.locator(f"textarea[name='ships/{B}.yaml']")
    own.fill(own.input_value().replace("n_trees: 5", "n_trees: 7"))
    page.get_by_role("button", name="Validate and roll out").click()
    row = page.locator(f".rollout-progress tr[data-ship='{B}']")
    row.locator(".badge.status-applied").wait_for(timeout=SLOW * 1000)
    assert row.locator("td[data-label='Running']").inner_text() == "fleet-2"
    assert "rollout=fleet-2" in page.url
    shipped = fleet.agents[B].agent.policy
    assert (shipped.version, shipped.detect.hst.n_trees) == ("fleet-2", 7)
    assert fleet.agents[A].agent.policy.version == "fleet-1"  # not among the targets
    assert error.count() == 0
    assert no_horizontal_scroll(page)
    page.evaluate("window.scrollTo(0, 0)")  # the progress, then the diff
    shoot(page, "policies.png")
    # a version names one set of files: it is never sent twice
    again = {"version": "fleet-2", "files": {"policy.yaml": 'version: "fleet-2"\n'}, "ships": "all"}
    found = httpx.post(f"{hub.api}/policies/check", json=again, headers=hub.auth("admin-kim"))
    assert "fleet-2 was rolled out already" in found.json()["problem"]


def test_a_rollout_is_refused_for_what_does_not_match(fleet: Fleet, hub: Hub) -> None:
    """The API's own checks: /check answers them, /rollout refuses, neither sends."""
    files = {**FLEET_FILES, "policy.yaml": FLEET_FILES["policy.yaml"].replace("1", "3")}
    body = {"version": "fleet-9", "files": files, "ships": "all"}
    admin = hub.auth("admin-kim")
    found = httpx.post(f"{hub.api}/policies/check", json=body, headers=admin).json()
    assert "policy.yaml: version: is 'fleet-3', the rollout is 'fleet-9'" in found["problem"]
    refused = httpx.post(f"{hub.api}/policies/rollout", json=body, headers=admin)
    assert refused.status_code == 400 and refused.json()["detail"] == found["problem"]
    fine = {**body, "version": "fleet-3"}
    assert httpx.post(f"{hub.api}/policies/check", json=fine, headers=admin).json() == {
        "problem": None
    }
    elsewhere = {**fine, "ships": ["MV-NOWHERE"]}
    assert (
        httpx.post(f"{hub.api}/policies/rollout", json=elsewhere, headers=admin).status_code == 404
    )
    approver = hub.auth("ops-anna")
    assert httpx.post(f"{hub.api}/policies/rollout", json=fine, headers=approver).status_code == 403
    gone = httpx.get(f"{hub.api}/policies/rollouts/fleet-3", headers=admin)
    assert gone.status_code == 404
