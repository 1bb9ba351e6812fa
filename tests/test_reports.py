"""The fleet report over a real hub (nats-server, chdb): a day of heartbeats with a
degraded spell and silent gaps, incidents on three ships (one on the day before, one on
the day after), remediation requests and a policy upgrade, all published to FLEET_UP as
ships send them; then the report as JSON, CSV and HTML, scoped, and in the console.

The seeded day is two days ago, so that the hub's retention keeps it and every link
interval lies in the past: the figures are exact, whatever the time the test runs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.models import ActionRequest, Heartbeat
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.auth import Role
from sync.topology import up_subject
from tests.conftest import wait_for
from tests.test_console import CHROMIUM, LAUNCH_ARGS, incident, publish, shoot, sign_in
from tests.test_hub import RunningHub, frame, hub_running, hub_settings

DAY = datetime.now(UTC).date() - timedelta(days=2)
D0 = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
EVIL = '=HYPERLINK("x")<script>alert(1)</script>'
LINK = IncidentType.LINK_DEGRADATION
BEAT_S = 120  # within three of the policy's 60 s intervals: never silent on its own


def at(hours: float) -> datetime:
    return D0 + timedelta(hours=hours)


def beats(ship: str, start_s: int, end_s: int, link: str, **versions: str) -> list[Heartbeat]:
    """Every BEAT_S seconds from D0 + start_s up to D0 + end_s, both included."""
    return [
        Heartbeat(
            tracking_id=f"hb-{ship}-{t}",
            ship_id=ship,
            ts=D0 + timedelta(seconds=t),
            agent_version=versions.get("agent", "0.1.0"),
            policy_version=versions.get("policy", "2026.11.0"),
            link_state=link,  # type: ignore[arg-type]
        )
        for t in range(start_s, end_s + 1, BEAT_S)
    ]


HEARTBEATS = [
    # up, degraded from noon to 18:00, silent until 20:00, then up on the new policy
    *beats("MV-ALDER", -60, -60, "up"),
    *beats("MV-ALDER", 0, 43_080, "up"),
    *beats("MV-ALDER", 43_200, 64_680, "degraded"),
    *beats("MV-ALDER", 72_000, 86_400, "up", policy="2026.11.1"),
    # first heard of at 01:00, agent upgraded at noon
    *beats("MV-BIRCH", 3_600, 43_080, "up"),
    *beats("MV-BIRCH", 43_200, 86_400, "up", agent="0.2.0"),
    # silent from 22:00 on
    *beats("MV-CEDAR", 0, 79_200, "up"),
]
INCIDENTS = [
    incident("MV-ALDER", at(12 + 5 / 60), LINK, Severity.HIGH, "vsat-modem-01", "SNR low"),
    incident("MV-ALDER", at(18 + 10 / 60), LINK, Severity.HIGH, "vsat-modem-01", "SNR low",
             status=IncidentStatus.RESOLVED, resolution="rain passed"),
    incident("MV-ALDER", at(3), IncidentType.RESOURCE_PRESSURE, Severity.MEDIUM, "pos-srv-02",
             "disk_pct 96 > 90 on /var"),
    incident("MV-BIRCH", at(8), IncidentType.SECURITY_ALERT, Severity.CRITICAL, EVIL,
             "sshd brute force"),
    incident("MV-BIRCH", at(9), LINK, Severity.HIGH, "vsat-modem-01", "SNR low"),
    incident("MV-CEDAR", at(2), IncidentType.NETWORK_ISSUE, Severity.LOW, "sw-02",
             "Gi1/0/7 flapping", status=IncidentStatus.RESOLVED, resolution="cable"),
    # the day before: one resolved 15 minutes into the day, one still open
    incident("MV-ALDER", at(-0.25), LINK, Severity.HIGH, "vsat-modem-01", "SNR low",
             status=IncidentStatus.RESOLVED, resolution="rain passed"),
    incident("MV-BIRCH", at(-19), IncidentType.NETWORK_ISSUE, Severity.LOW, "sw-01", "flap"),
    # the day after
    incident("MV-CEDAR", at(25), LINK, Severity.HIGH, "vsat-modem-03", "SNR low"),
]  # fmt: skip


def request(
    ship: str, rid: str, hours: float, action: str, status: str, version: int = 1
) -> ActionRequest:
    return ActionRequest(
        tracking_id=f"trk-{rid}",
        ship_id=ship,
        ts=at(hours),
        id=rid,
        version=version,
        incident_id=INCIDENTS[0].id,
        action=action,
        target="vsat-modem-01" if action != "restart_service" else "pos-srv-02",
        risk="low" if action == "restart_service" else "high",
        approval="auto" if action == "restart_service" else "two_person",
        approvals_needed=0 if action == "restart_service" else 2,
        requested_by="policy:remediate",
        status=status,  # type: ignore[arg-type]
    )


REQUESTS = [
    *(
        request("MV-ALDER", "req-alder-restart", 3 + k / 60, "restart_service", s, k + 1)
        for k, s in enumerate(("pending", "running", "succeeded"))
    ),
    request("MV-ALDER", "req-alder-failover", 12.2, "failover_path", "pending"),
    request("MV-BIRCH", "req-birch-reboot", -3, "reboot_device", "pending"),
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[RunningHub]:
    settings = hub_settings(
        tmp_path_factory.mktemp("hub-reports"), chdb_path, "hub_reports", memory=False
    )
    with hub_running(settings) as running:
        frames = [  # a ship publishes only its own, in batches
            (up_subject(ship, "heartbeat"), frame(*mine[i : i + 200]))
            for ship in ("MV-ALDER", "MV-BIRCH", "MV-CEDAR")
            for mine in [[b for b in HEARTBEATS if b.ship_id == ship]]
            for i in range(0, len(mine), 200)
        ]
        frames += [(up_subject(i.ship_id, "incident"), frame(i)) for i in INCIDENTS]
        frames += [(up_subject(r.ship_id, "action_request"), frame(r)) for r in REQUESTS]
        publish(running, frames)
        store = running.hub.store
        wait_for(lambda: store.stats(at(-48).timestamp(), at(48).timestamp())["total"] == 9, 60)
        wait_for(lambda: len(store.action_requests(status=["pending", "succeeded"])) == 3, 60)
        wait_for(lambda: sum(s["seconds"] for s in store.link_availability(
            D0.timestamp(), at(24).timestamp(), 180)) == 3 * 86_400 - 3_600, 60)  # fmt: skip
        yield running


def report(running: RunningHub, fmt: str = "json", key: dict[str, str] | None = None,
           **params: str) -> httpx.Response:  # fmt: skip
    res = httpx.get(
        f"{running.url}/api/v3/reports/fleet",
        params={"period": "day", "date": DAY.isoformat(), "format": fmt, **params},
        headers=key or running.key(Role.VIEWER),
        timeout=30,
    )
    assert res.status_code == 200, res.text
    return res


ALDER_LINK = {
    "ship_id": "MV-ALDER",
    "up_s": 57_600.0,  # 00:00-12:00 and 20:00-24:00
    "degraded_s": 21_480.0,  # 12:00 to the last degraded heartbeat at 17:58
    "down_s": 7_320.0,  # silent from 17:58 to 20:00
    "unknown_s": 0.0,
    "silent_s": 7_320.0,
    "observed_s": 86_400.0,
    "share": {"up": 0.6667, "degraded": 0.2486, "down": 0.0847, "unknown": 0.0},
    "availability": 0.9153,
}


def test_report_figures(running: RunningHub) -> None:
    body = report(running).json()
    assert (body["period"], body["date"], body["scope"]) == ("day", DAY.isoformat(), None)
    assert body["since"] == f"{DAY.isoformat()}T00:00:00.000Z"
    assert body["previous_since"] == f"{(DAY - timedelta(days=1)).isoformat()}T00:00:00.000Z"
    inc = body["incidents"]
    assert (inc["total"], inc["resolved"], inc["mttr_s"]) == (6, 2, 1800.0)
    assert inc["by_severity"] == {"critical": 1, "high": 3, "medium": 1, "low": 1}
    assert inc["by_ship_type"] == [
        {"ship_id": "MV-ALDER", "type": "link_degradation", "count": 2},
        {"ship_id": "MV-ALDER", "type": "resource_pressure", "count": 1},
        {"ship_id": "MV-BIRCH", "type": "link_degradation", "count": 1},
        {"ship_id": "MV-BIRCH", "type": "security_alert", "count": 1},
        {"ship_id": "MV-CEDAR", "type": "network_issue", "count": 1},
    ]
    assert body["worst_devices"] == [
        {"ship_id": "MV-ALDER", "device": "vsat-modem-01", "count": 2},
        {"ship_id": "MV-ALDER", "device": "pos-srv-02", "count": 1},
        {"ship_id": "MV-BIRCH", "device": EVIL, "count": 1},
        {"ship_id": "MV-BIRCH", "device": "vsat-modem-01", "count": 1},
        {"ship_id": "MV-CEDAR", "device": "sw-02", "count": 1},
    ]
    link = body["link"]
    assert (link["heartbeat_s"], link["silent_after_s"]) == (60, 180)
    assert "longer than 3 heartbeat intervals (180 s) counts as down" in link["rule"]
    alder, birch, cedar = link["ships"]
    assert alder == ALDER_LINK
    assert (birch["up_s"], birch["observed_s"], birch["availability"]) == (82_800, 82_800, 1.0)
    assert (cedar["up_s"], cedar["silent_s"], cedar["availability"]) == (79_200, 7_200, 0.9167)
    assert [(a["id"], a["approvers"], a["approvals_needed"]) for a in body["open_approvals"]] == [
        ("req-birch-reboot", [], 2),
        ("req-alder-failover", [], 2),
    ]
    changes = body["changes"]
    assert {k: v for k, v in changes["incidents"].items() if k != "by_ship"} == {
        "opened": 6, "resolved": 3, "opened_before": 2, "resolved_before": 0,
    }  # fmt: skip
    assert changes["incidents"]["by_ship"][0] == {
        "ship_id": "MV-ALDER", "opened": 3, "resolved": 2, "opened_before": 1,
        "resolved_before": 0,
    }  # fmt: skip
    versions = {v["ship_id"]: v for v in changes["versions"]}
    alder_policy = [(p["version"], p["before"]) for p in versions["MV-ALDER"]["policy"]]
    assert alder_policy == [("2026.11.0", True), ("2026.11.1", False)]
    assert versions["MV-ALDER"]["policy"][1]["first"] == f"{DAY.isoformat()}T20:00:00.000Z"
    assert [a["version"] for a in versions["MV-BIRCH"]["agent"]] == ["0.1.0", "0.2.0"]
    assert [v["changed"] for v in changes["versions"]] == [True, True, False]
    assert changes["remediations"] == [
        {"ship_id": "MV-ALDER", "action": "failover_path", "status": "pending", "count": 1},
        {"ship_id": "MV-ALDER", "action": "restart_service", "status": "succeeded", "count": 1},
    ]
    week = report(running, period="week").json()
    assert (week["incidents"]["total"], week["changes"]["incidents"]["opened_before"]) == (8, 0)
    assert week["since"] == f"{(DAY - timedelta(days=6)).isoformat()}T00:00:00.000Z"


def test_csv_has_the_same_figures(running: RunningHub) -> None:
    res = report(running, "csv")
    assert res.headers["content-type"].startswith("text/csv")
    name = f"seawatch-fleet-day-{DAY.isoformat()}.csv"
    assert res.headers["content-disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert list(rows[0]) == ["section", "ship_id", "item", "metric", "value"]
    cell = {(r["section"], r["ship_id"], r["item"], r["metric"]): r["value"] for r in rows}
    body = report(running).json()
    for r in body["incidents"]["by_ship_type"]:
        assert cell["incidents", r["ship_id"], r["type"], "count"] == str(r["count"])
    assert sum(r["section"] == "incidents" and r["metric"] == "count" for r in rows) == 5
    for key, value in ALDER_LINK.items():
        if key.endswith("_s") or key == "availability":
            assert float(cell["link", "MV-ALDER", "", key]) == value, key
    # a device name a spreadsheet would run as a formula stays text
    assert cell["worst_devices", "MV-BIRCH", "'" + EVIL, "incidents"] == "1"
    assert cell["versions", "MV-ALDER", "policy", "new"] == "2026.11.1"
    assert cell["remediations", "MV-ALDER", "restart_service", "succeeded"] == "1"
    assert cell["open_approvals", "MV-ALDER", "req-alder-failover", "approvals_needed"] == "2"
    assert cell["changes", "", "incidents", "resolved"] == "3"
    assert "counts as down" in cell["report", "", "", "link_rule"]


class Tables(HTMLParser):
    """Each table's caption and its rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.scripts = 0
        self._caption: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        if tag in ("caption", "td", "th"):
            self._text = []
        elif tag == "tr" and self._caption is not None:
            self.tables[self._caption].append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption" and self._text is not None:
            self._caption = "".join(self._text)
            self.tables[self._caption] = []
        elif tag in ("td", "th") and self._text is not None and self._caption is not None:
            self.tables[self._caption][-1].append("".join(self._text))
        if tag in ("caption", "td", "th"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def test_html_is_printable_escaped_and_has_the_figures(running: RunningHub) -> None:
    res = report(running, "html")
    assert res.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in res.headers["content-security-policy"]
    page = res.text
    assert "@media print" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = Tables()
    parsed.feed(page)
    assert parsed.scripts == 0  # the device name stayed text
    cross = parsed.tables["Incidents by ship and type"]
    assert cross[0] == ["Ship", "link_degradation", "network_issue", "resource_pressure",
                        "security_alert", "Total"]  # fmt: skip
    assert cross[1:] == [
        ["MV-ALDER", "2", "0", "1", "0", "3"],
        ["MV-BIRCH", "1", "0", "0", "1", "2"],
        ["MV-CEDAR", "0", "1", "0", "0", "1"],
    ]
    assert ["MV-BIRCH", EVIL, "1"] in parsed.tables["Worst devices"]
    (link,) = [v for k, v in parsed.tables.items() if k.startswith("Link availability")]
    assert link[1] == ["MV-ALDER", "91.5 %", "66.7 %", "24.9 %", "8.5 %", "2.03 h", "0.0 %",
                       "24.00 h"]  # fmt: skip
    approvals = parsed.tables["Open approvals (now)"]
    assert [r[1] for r in approvals[1:]] == ["req-birch-reboot", "req-alder-failover"]
    (flow,) = [v for k, v in parsed.tables.items() if k.startswith("Incidents opened and")]
    assert flow[-1] == ["Fleet", "6", "2", "3", "0"]
    versions = parsed.tables["Versions reported (the earlier one first)"]
    assert ["MV-ALDER", "policy", "2026.11.0 → 2026.11.1", "yes"] in versions


def test_a_scoped_key_sees_its_ships_alone(running: RunningHub) -> None:
    key = running.key(Role.VIEWER, ["MV-ALDER"])
    body = report(running, key=key).json()
    assert body["scope"] == ["MV-ALDER"]
    assert {r["ship_id"] for r in body["incidents"]["by_ship_type"]} == {"MV-ALDER"}
    assert body["incidents"]["total"] == 3
    assert {d["ship_id"] for d in body["worst_devices"]} == {"MV-ALDER"}
    assert body["link"]["ships"] == [ALDER_LINK]
    assert [a["id"] for a in body["open_approvals"]] == ["req-alder-failover"]
    assert [v["ship_id"] for v in body["changes"]["versions"]] == ["MV-ALDER"]
    assert [s["ship_id"] for s in body["ships"]] == ["MV-ALDER"]
    assert "MV-BIRCH" not in report(running, "csv", key=key).text
    assert "MV-BIRCH" not in report(running, "html", key=key).text


def test_parameters_are_checked(running: RunningHub) -> None:
    url = f"{running.url}/api/v3/reports/fleet"
    assert httpx.get(url).status_code == 401
    viewer = running.key(Role.VIEWER)
    for params in ({"date": "1999-12-31"}, {"date": "2026-02-30"}, {"period": "month"},
                   {"format": "pdf"}):  # fmt: skip
        assert httpx.get(url, params=params, headers=viewer).status_code == 400, params
    assert date.fromisoformat(httpx.get(url, headers=viewer).json()["date"]) >= DAY


def test_console_shows_prints_and_downloads_the_report(running: RunningHub) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            _console(browser, running)
        finally:
            browser.close()


def _console(browser: Any, running: RunningHub) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, running, Role.VIEWER)
    page.get_by_role("link", name="Reports", exact=True).click()
    page.get_by_role("heading", name="Fleet report", exact=True).wait_for()
    page.get_by_label("Date (UTC)").fill(DAY.isoformat())
    shown = page.frame_locator("iframe.report")
    shown.get_by_role("heading", name=f"Seawatch fleet report: day ending {DAY}").wait_for()
    cross = shown.locator("table", has=shown.locator("caption", has_text="by ship and type"))
    assert "MV-ALDER" in cross.inner_text() and EVIL in shown.locator("body").inner_text()
    assert f"date={DAY}" in page.url
    assert page.get_by_role("button", name="Print").is_enabled()
    shoot(page, "reports.png")
    with page.expect_download() as fetched:
        page.get_by_role("button", name="Download CSV").click()
    download = fetched.value
    assert download.suggested_filename == f"seawatch-fleet-day-{DAY}.csv"
    got = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    want = list(csv.reader(io.StringIO(report(running, "csv").text)))
    made = ["report", "", "", "generated_at"]
    assert [r for r in got if r[:4] != made] == [r for r in want if r[:4] != made]
    assert len(got) > 40
    context.close()
    assert errors == [], errors
