"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real
hub (nats-server, chdb, Qdrant Edge with the ONNX embedder, the default GGUF model for
/ask) seeded with heartbeats, incidents and an insight published as ships send them.

Chromium is a system package (CI installs it in .ci/run); without it this module fails
rather than skipping. Screenshots for the docs: SEAWATCH_CONSOLE_SHOTS=docs/img.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import wire
from shared.ids import new_id
from shared.models import Command, EvidenceRef, Heartbeat, Incident, Insight, TimelineEntry
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.auth import Role
from sync.topology import FLEET_DOWN, down_subject, up_subject
from tests.conftest import wait_for
from tests.test_hub import RunningHub, frame, hub_running, hub_settings, indexed

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}
NOW = datetime.now(UTC).replace(microsecond=0)
RAIN = "vsat.snr_db < 12 for 60 s (now {snr})"
FIX = "failed over to LEO until the rain passed"
LATE = "seen on vsat-modem-01 after the first minutes"
SNR_SERIES = [12.1, 12.0, 11.8, 11.2, 10.1, 9.0, 8.1, 7.2]  # as the ship sends it


def evidence(first: datetime, device: str, detector: str, scores: list[float]) -> list[EvidenceRef]:
    return [
        EvidenceRef(
            anomaly_id=new_id(),
            tracking_id=new_id(),
            ts=first + timedelta(minutes=2 * k),
            detector=detector,
            device=device,
            score=score,
            summary=RAIN.format(snr=round(11 - 4 * score, 1)) if "snr" in detector else LATE,
            values=SNR_SERIES if "snr" in detector and k == 0 else None,
        )
        for k, score in enumerate(scores)
    ]


def incident(
    ship: str,
    first: datetime,
    itype: IncidentType,
    severity: Severity,
    device: str,
    narrative: str,
    *,
    status: IncidentStatus = IncidentStatus.OPEN,
    refs: list[EvidenceRef] | None = None,
    resolution: str = "",
) -> Incident:
    last = first + timedelta(minutes=30)
    steps = [TimelineEntry(ts=first, version=1, event="opened", detail=narrative)]
    if status is IncidentStatus.ACKNOWLEDGED:
        steps.append(TimelineEntry(ts=last, version=2, event="acknowledged", detail="duty"))
    if resolution:
        steps.append(TimelineEntry(ts=last, version=2, event="resolved", detail=resolution))
    return Incident(
        tracking_id=new_id(),
        ship_id=ship,
        ts=last,
        id=new_id(),
        version=len(steps),
        type=itype,
        severity=severity,
        status=status,
        device=device,
        devices=[device],
        path="satellite_uplink" if itype is IncidentType.LINK_DEGRADATION else None,
        corr_key=f"{itype.value}:{device}",
        suppress_key=f"{itype.value}:{device}",
        first_seen=first,
        last_seen=last,
        anomaly_count=len(refs or []),
        evidence=refs or [],
        narrative=narrative,
        timeline=steps,
        resolved_at=last if resolution else None,
    )


FADE = "SNR and Es/No falling together in heavy rain on the VSAT modem"
RAIN_FADE = incident(
    "MV-ALDER",
    NOW - timedelta(hours=2),
    IncidentType.LINK_DEGRADATION,
    Severity.HIGH,
    "vsat-modem-01",
    FADE,
    refs=evidence(NOW - timedelta(hours=2), "vsat-modem-01", "threshold:vsat_snr_low",
                  [0.7, 0.8, 0.95, 0.9, 0.85])
    + evidence(NOW - timedelta(hours=2), "vsat-modem-01", "robust", [0.5, 0.6]),
)  # fmt: skip
SEEDED = [
    RAIN_FADE,
    incident(
        "MV-ALDER",
        NOW - timedelta(hours=5),
        IncidentType.RESOURCE_PRESSURE,
        Severity.MEDIUM,
        "pos-srv-02",
        "disk_pct 96 > 90 on /var",
    ),
    incident(
        "MV-BIRCH",
        NOW - timedelta(hours=1),
        IncidentType.SECURITY_ALERT,
        Severity.CRITICAL,
        "crew-srv-01",
        "sshd brute force: 400 failed logins from one public address",
    ),
    incident(
        "MV-BIRCH",
        NOW - timedelta(days=3),
        IncidentType.LINK_DEGRADATION,
        Severity.HIGH,
        "vsat-modem-01",
        FADE,
        status=IncidentStatus.RESOLVED,
        resolution=FIX,
    ),
    incident(
        "MV-CEDAR",
        NOW - timedelta(hours=9),
        IncidentType.NETWORK_ISSUE,
        Severity.LOW,
        "sw-02",
        "Gi1/0/7 changed state to down 6 times in 5 min",
        status=IncidentStatus.ACKNOWLEDGED,
    ),
]
# What the ship's insight worker sends: the narrative cites the strongest evidence item of
# the first detector as E1 and the runbook the rules chose.
INSIGHT = Insight(
    tracking_id=new_id(),
    ship_id="MV-ALDER",
    ts=NOW - timedelta(hours=1, minutes=50),
    incident_id=RAIN_FADE.id,
    narrative="High link degradation on vsat-modem-01: the SNR fell below 12 dB in heavy rain "
    "[E1], with a second detector agreeing [E2]. Likely cause: VSAT rain fade [RB-01].",
    citations=["E1", "E2", "RB-01"],
    model="gemma-3-270m",
    latency_ms=900.0,
)
LINKS = {"MV-ALDER": "up", "MV-BIRCH": "degraded", "MV-CEDAR": "down"}


def heartbeat(ship: str, age_s: float, link: str) -> Heartbeat:
    """`age_s` before now, not before the module was imported: the hub calls a link down
    after three silent heartbeat intervals."""
    return Heartbeat(
        tracking_id=new_id(),
        ship_id=ship,
        ts=datetime.now(UTC) - timedelta(seconds=age_s),
        agent_version="0.1.0",
        policy_version="2026.11.0",
        link_state=link,  # type: ignore[arg-type]
        queue_depths={"urgent": 0, "bulk": 12 if link == "degraded" else 0},
        oldest_unsent_s=340.0 if link == "degraded" else None,
    )


def publish(running: RunningHub, frames: list[tuple[str, bytes]]) -> None:
    """As ships' frames reach FLEET_UP, through the hub's own connection on its loop:
    Playwright's sync API keeps an event loop running in the test's thread."""

    async def go() -> None:
        for subject, data in frames:
            await running.hub.nc.publish(subject, data)
        await running.hub.nc.flush()

    running.call(go())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[RunningHub]:
    settings = hub_settings(tmp_path_factory.mktemp("hub-console"), chdb_path, "hub_console")
    with hub_running(settings) as running:
        for ship in LINKS:  # registered: commands to them are accepted
            running.call(running.hub.fleet.add_ship(ship))
        beats = [
            heartbeat("MV-ALDER", 5, "up"),
            heartbeat("MV-BIRCH", 600, "up"),
            heartbeat("MV-BIRCH", 10, "degraded"),
            heartbeat("MV-CEDAR", 900, "up"),  # silent since: the hub calls its link down
        ]
        publish(
            running,
            [(up_subject(b.ship_id, "heartbeat"), frame(b)) for b in beats]
            + [(up_subject(i.ship_id, "incident"), frame(i)) for i in SEEDED]
            + [(up_subject("MV-ALDER", "insight"), frame(INSIGHT))],
        )
        store = running.hub.store
        wait_for(lambda: all(indexed(running, i.id) for i in SEEDED), timeout=90)
        wait_for(lambda: (store.incident(RAIN_FADE.id) or {}).get("insight"), timeout=30)
        wait_for(
            lambda: [s["ship_id"] for s in store.fleet() if s["last_heartbeat"]] == list(LINKS)
        )
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab at 1366x768; whatever the console logs as an error fails the test."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert errors == [], errors


def sign_in(page: Any, running: RunningHub, role: Role) -> None:
    page.goto(running.url)  # the hub's root leads to the console
    page.get_by_label("API key").fill(running.key(role)["X-API-Key"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Fleet", exact=True).wait_for()
    assert page.locator("#who .role").text_content() == role.name.lower()


def shoot(page: Any, name: str) -> None:
    """Viewport-sized screenshots for the docs, written only when asked for."""
    target = os.environ.get("SEAWATCH_CONSOLE_SHOTS")
    if target:
        page.screenshot(path=str(Path(target) / name))


def no_horizontal_scroll(page: Any) -> bool:
    root = "document.documentElement"
    return bool(page.evaluate(f"{root}.scrollWidth <= {root}.clientWidth"))


def test_the_api_the_console_reads(running: RunningHub) -> None:
    """Its files are public and carry no data; what it shows needs a role."""
    page = httpx.get(f"{running.url}/", follow_redirects=True)
    assert page.status_code == 200 and 'src="/console/app.js"' in page.text
    viewer, operator = running.key(Role.VIEWER), running.key(Role.OPERATOR)
    me = httpx.get(f"{running.url}/api/v3/me", headers=viewer).json()
    assert (me["role"], me["ships"], me["may"]) == ("viewer", None, [])
    me = httpx.get(f"{running.url}/api/v3/me", headers=operator).json()
    assert me["may"] == ["ack", "ask", "resolve", "suppress"]
    book = httpx.get(f"{running.url}/api/v3/runbooks/RB-01", headers=viewer)
    assert book.json()["title"] == "VSAT rain fade" and "Steps" in book.json()["sections"]
    assert httpx.get(f"{running.url}/api/v3/runbooks/RB-99", headers=viewer).status_code == 404
    assert httpx.get(f"{running.url}/api/v3/runbooks/RB-01").status_code == 401


def test_a_viewer_is_offered_nothing_it_may_not_do(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.VIEWER)
    assert page.get_by_role("link", name="Fleet", exact=True).is_visible()
    assert not page.get_by_role("link", name="Ask", exact=True).is_visible()
    page.goto(f"{running.url}/console/#/incidents/{RAIN_FADE.id}")
    page.get_by_role("heading", name="Evidence", exact=True).wait_for()
    assert page.locator("[data-action]").count() == 0
    assert page.get_by_role("button", name="Acknowledge").count() == 0
    page.goto(f"{running.url}/console/#/ask")  # not offered, and not reachable either
    page.get_by_role("heading", name="Fleet", exact=True).wait_for()
    ack = {"action": "ack", "incident_id": RAIN_FADE.id, "reason": "no"}
    refused = httpx.post(
        f"{running.url}/api/v3/ships/MV-ALDER/commands", json=ack, headers=running.key(Role.VIEWER)
    )
    assert refused.status_code == 403  # and the API refuses it anyway


def test_fleet_overview_shows_every_ship_with_its_link(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    rows = page.locator("table.fleet tbody tr")
    for ship, link in LINKS.items():
        row = page.locator(f"tr[data-ship='{ship}']")
        assert row.locator(".link .badge").inner_text() == link
        assert "0.1.0 / 2026.11.0" in row.inner_text()
    birch = page.locator("tr[data-ship='MV-BIRCH']")
    assert "for " in birch.locator(".link").inner_text()  # degraded since the 10 s beat
    assert "1 critical" in birch.inner_text() and "12" in birch.inner_text()
    assert rows.first.get_attribute("data-ship") == "MV-CEDAR"  # worst link first
    page.get_by_role("button", name="Ship").click()
    assert [rows.nth(i).get_attribute("data-ship") for i in range(3)] == list(LINKS)
    page.get_by_label("Filter ships").fill("bir")
    assert rows.count() == 1 and rows.first.get_attribute("data-ship") == "MV-BIRCH"
    page.get_by_label("Filter ships").fill("")
    shoot(page, "fleet.png")


def test_incidents_filter_and_keyboard_navigation(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    page.get_by_role("link", name="Incidents", exact=True).click()
    rows = page.locator("table.incidents tbody tr")
    wait_for(lambda: rows.count() >= len(SEEDED))
    shoot(page, "incidents.png")
    page.get_by_label("Ship", exact=True).select_option("MV-BIRCH")
    page.get_by_label("Severity", exact=True).select_option("critical")
    wait_for(lambda: rows.count() == 1 and "security alert" in rows.first.inner_text())
    assert page.locator(".summary").inner_text().startswith("1 incident 1 critical")
    assert "ship=MV-BIRCH" in page.url and "severity=critical" in page.url
    page.get_by_label("Severity", exact=True).select_option("")
    wait_for(lambda: rows.count() == 2)
    assert {rows.nth(i).get_attribute("data-id") for i in range(2)} == {
        i.id for i in SEEDED if i.ship_id == "MV-BIRCH"
    }
    page.locator("h1").click()  # keys act on the list, not on a focused filter
    page.keyboard.press("j")
    second = rows.nth(1).get_attribute("data-id")
    assert rows.nth(1).get_attribute("aria-current") == "true"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/#/incidents/{second}")
    page.get_by_role("heading", name="Timeline", exact=True).wait_for()


def test_incident_detail_with_evidence_insight_and_similar(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    page.goto(f"{running.url}/console/#/incidents/{RAIN_FADE.id}")
    page.get_by_role("heading", name="Evidence", exact=True).wait_for()
    shoot(page, "incident.png")
    assert page.locator(".timeline li").first.inner_text().endswith(FADE)
    sparks = page.locator("svg.spark:not(.series)")
    assert sparks.count() == 2  # anomaly scores: one per device and detector
    assert sparks.first.locator("circle").count() == 5 and sparks.first.locator("polyline").count()
    # the metric itself up to the anomaly, from the values the ship sent with the evidence
    series = page.locator("svg.spark.series")
    assert series.count() == 1 and "Last 8 values" in str(series.get_attribute("aria-label"))
    assert series.locator("text").all_text_contents() == ["12.1", "7.2"]
    narrative = page.locator(".narrative")
    assert "Likely cause: VSAT rain fade" in narrative.inner_text()
    # [E1] is the strongest item of the strongest detector, as the ship labelled it
    narrative.get_by_role("link", name="E1").click()
    focused = page.locator("#ev-E1")
    assert focused.evaluate("el => el === document.activeElement")
    assert "(now 7.2)" in focused.inner_text()  # score 0.95: 11 - 4 * 0.95
    assert "robust" in page.locator("#ev-E2").locator("xpath=../..").inner_text()
    similar = page.locator(".similar li")
    wait_for(lambda: similar.count() >= 1)
    seen = similar.filter(has_text="MV-BIRCH").filter(has_text="link degradation")
    assert FIX in seen.inner_text()
    narrative.get_by_role("link", name="RB-01").click()
    page.get_by_role("heading", name="RB-01 VSAT rain fade", exact=True).wait_for()
    assert page.get_by_role("heading", name="Steps", exact=True).is_visible()


def test_a_new_incident_arrives_live_and_is_acknowledged(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    page.get_by_role("link", name="Incidents", exact=True).click()
    page.locator("#live[data-state='live']").wait_for()
    outage = incident(
        "MV-CEDAR",
        NOW - timedelta(minutes=3),
        IncidentType.COMMS_OUTAGE,
        Severity.CRITICAL,
        "vsat-modem-03",
        "Rx lock lost 4 times in 10 min",
    )
    publish(running, [(up_subject("MV-CEDAR", "incident"), frame(outage))])
    row = page.locator(f"tr[data-id='{outage.id}']")
    row.wait_for()  # no reload: the page follows the live feed
    assert "fresh" in (row.get_attribute("class") or "")
    row.locator("a").click()
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_label("Reason").fill("modem power-cycle under way")
    page.get_by_role("button", name="Acknowledge: send to MV-CEDAR").click()
    note = page.locator(".actions .ok")
    note.wait_for()
    msg = running.call(running.hub.js.get_last_msg(FLEET_DOWN, down_subject("MV-CEDAR", "command")))
    (cmd,) = wire.decode(msg.data)
    assert isinstance(cmd, Command) and cmd.id in note.inner_text()
    assert (cmd.action, cmd.incident_id, cmd.reason) == (
        "ack",
        outage.id,
        "modem power-cycle under way",
    )
    assert cmd.actor == "test-OPERATOR"


def test_ask_answers_with_linked_citations(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    page.get_by_role("link", name="Ask", exact=True).click()
    page.get_by_label("Question").fill("Why did the VSAT link degrade and what fixed it?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator(".turn .answer")
    answer.wait_for(timeout=120_000)  # the model opens on the first question
    links = answer.locator("a.cite")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert hrefs and all(
        running.hub.store.incident(h.removeprefix("#/incidents/"))
        if h.startswith("#/incidents/")
        else h.startswith("#/runbooks/RB-")
        for h in hrefs
    ), hrefs
    shoot(page, "ask.png")
    links.first.click()
    page.wait_for_url(f"**/{hrefs[0]}")
    page.get_by_role("heading", name="Timeline" if "incidents" in hrefs[0] else "Steps").wait_for()


def test_stats_charts_and_times(page: Any, running: RunningHub) -> None:
    sign_in(page, running, Role.OPERATOR)
    page.get_by_role("link", name="Stats", exact=True).click()
    chart = page.get_by_role("img", name="Incidents per")
    chart.wait_for()
    assert chart.locator("rect").count() >= 3
    assert "critical" in (chart.get_attribute("aria-label") or "")
    tiles = page.locator(".tiles").inner_text()
    assert "MTTA" in tiles and "MTTR" in tiles and "30 min" in tiles  # resolved after 30 min
    page.get_by_label("Over time by", exact=True).select_option("ship")
    wait_for(lambda: "MV-BIRCH" in (page.locator(".legend").inner_text()))
    devices = page.locator("section", has=page.get_by_role("heading", name="Top devices"))
    assert "vsat-modem-01" in devices.inner_text()
    lag = page.locator("section", has=page.get_by_role("heading", name="Sync lag per ship"))
    assert "MV-ALDER" in lag.inner_text() and lag.locator("tbody tr").count() >= 2
    shoot(page, "stats.png")


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1366x768", "tablet"])
def test_pages_fit_the_screen(page: Any, running: RunningHub, viewport: dict[str, int]) -> None:
    page.set_viewport_size(viewport)
    sign_in(page, running, Role.ADMIN)  # who sees every page
    for route, heading in (
        ("#/fleet", "Fleet"),
        ("#/incidents", "Incidents"),
        (f"#/incidents/{RAIN_FADE.id}", "Evidence"),
        ("#/ask", "Ask the fleet"),
        ("#/stats", "Incidents over time by severity"),
        ("#/runbooks/RB-01", "RB-01 VSAT rain fade"),
        ("#/approvals", "Approvals"),
        ("#/actions", "Actions"),
        ("#/reports", "Fleet report"),
        ("#/policies", "Policies"),
    ):
        page.goto(f"{running.url}/console/{route}")
        page.get_by_role("heading", name=heading, exact=True).wait_for()
        assert no_horizontal_scroll(page), route
