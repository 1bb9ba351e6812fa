"""Notifications: the decision engine's rules on an injected clock, then delivery over real
parts — a real SMTP server (aiosmtpd), a real HTTP receiver that fails on demand, the
SQLite spool across restarts — and both sides end to end: a ship agent mailing its crew,
a hub calling an operations webhook."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from prometheus_client import CollectorRegistry

from shared.models import Incident, TimelineEntry
from shared.notify import Engine, Notification, Notifier, NotifyMetrics, Spool, signature
from shared.policy import NotifyPolicy, PolicyError, load_policy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from ship_agent.pipeline import Pipeline
from ship_agent.store import Store
from sync.natsserver import free_port
from sync.topology import up_subject
from tests.conftest import SHIP, T0, metric, start_agent, stop_agent, wait_for
from tests.test_agent_api import snr_batch
from tests.test_hub import frame, hub_running, hub_settings

CREW = {
    "critical": ["captain@vessel.test", "eto@vessel.test"],
    "high": ["eto@vessel.test"],
}


def mail_channel(port: int = 25, **fields: Any) -> dict[str, Any]:
    return {
        "name": "crew-mail",
        "type": "smtp",
        "side": "ship",
        "host": "127.0.0.1",
        "port": port,
        "sender": "seawatch@vessel.test",
        "recipients": CREW,
        **fields,
    }


def hook_channel(url: str, side: str = "ship", **fields: Any) -> dict[str, Any]:
    return {"name": "ops-hook", "type": "webhook", "side": side, "url": url, **fields}


def notify_doc(*channels: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The default notify segment, enabled, with no quiet hours, storms or rate limit
    unless a test asks for them."""
    doc: dict[str, Any] = load_policy().notify.model_dump(mode="json")
    doc.update(
        enabled=True,
        channels=list(channels),
        quiet_hours=None,
        storm={"threshold": 1000, "window_s": 300},
        rate_limit_per_hour=0,
        retry={"base_s": 0.05, "max_s": 0.2},
    )
    doc.update(fields)
    return doc


def notify_policy(*channels: dict[str, Any], **fields: Any) -> NotifyPolicy:
    return NotifyPolicy.model_validate(notify_doc(*channels, **fields))


def incident(
    n: int,
    version: int = 1,
    events: tuple[str, ...] = ("opened",),
    severity: Severity = Severity.HIGH,
    status: IncidentStatus = IncidentStatus.OPEN,
    ship: str = SHIP,
) -> Incident:
    ts = datetime.fromtimestamp(T0 + n, UTC)
    itype = IncidentType.LINK_DEGRADATION
    return Incident(
        tracking_id=f"trk-{n}",
        ship_id=ship,
        ts=ts,
        id=f"01NOTIFY{n:018d}",
        version=version,
        type=itype,
        severity=severity,
        status=status,
        device="vsat-modem-01",
        devices=["vsat-modem-01"],
        corr_key="path:satellite_uplink",
        suppress_key=f"{itype.value}:vsat-modem-01",
        first_seen=ts,
        last_seen=ts,
        timeline=[
            TimelineEntry(ts=ts, version=version, event=e, detail=f"{e}: SNR 8.5 dB")
            for e in events
        ],
    )


def keys(notes: list[Notification]) -> list[str]:
    return [n.key for n in notes]


# ------------------------------------------------------------------ the rules


def test_only_opened_escalated_and_resolved_notify_once() -> None:
    engine = Engine(notify_policy(hook_channel("http://x.test/", min_severity="high")), "ship")
    a = incident(1, severity=Severity.MEDIUM)

    def decide(*incs: Incident) -> list[str]:
        return keys(engine.decide(incs, T0).notifications)

    assert decide(a) == []  # medium: below the channel's floor
    assert decide(incident(1, 2, ("evidence",), Severity.MEDIUM)) == []
    raised = incident(1, 3, ("evidence", "escalated"), Severity.HIGH)
    assert decide(raised) == [f"{a.id}:3:escalated"]
    assert decide(raised, incident(1, 2, ("evidence",), Severity.MEDIUM)) == []  # replay, late
    acked = incident(1, 4, ("acknowledged",), Severity.HIGH, IncidentStatus.ACKNOWLEDGED)
    assert decide(acked, incident(1, 5, ("insight",))) == []
    resolved = incident(1, 6, ("resolved",), Severity.HIGH, IncidentStatus.RESOLVED)
    assert decide(resolved) == [f"{a.id}:6:resolved"]
    # suppressed (a maintenance window): recorded, never news; its resolution neither
    quiet = incident(2, 1, ("opened", "suppressed"), status=IncidentStatus.SUPPRESSED)
    assert decide(quiet, incident(2, 2, ("resolved",), status=IncidentStatus.RESOLVED)) == []
    # another side's channel hears nothing of this one's incidents
    hub = Engine(notify_policy(hook_channel("http://x.test/", side="hub")), "ship")
    assert hub.decide([incident(3)], T0).notifications == []


def test_recipients_per_severity() -> None:
    engine = Engine(notify_policy(mail_channel(), rate_limit_per_hour=2), "ship")
    out = engine.decide(
        [incident(1, severity=Severity.CRITICAL), incident(2), incident(3, severity="medium")],
        T0,
    ).notifications
    assert [n.recipients for n in out] == [CREW["critical"], CREW["high"]]  # medium: nobody
    assert "critical link_degradation on vsat-modem-01 opened" in out[0].subject
    # the limit reached: a high and a critical fold, and their digest goes to both lists
    engine.decide([incident(4), incident(5, severity=Severity.CRITICAL)], T0 + 1)
    (digest,) = engine.flush(T0 + 3601)
    assert digest.kind == "digest" and digest.recipients == CREW["critical"]
    assert [c.severity for c in digest.changes] == [Severity.CRITICAL, Severity.HIGH]


def test_quiet_hours_hold_what_is_below_the_floor_in_local_time() -> None:
    quiet = {"start": "22:00", "end": "06:00", "min_severity": "high"}
    tokyo = Engine(notify_policy(hook_channel("http://x.test/"), quiet_hours=quiet,
                                 timezone="Asia/Tokyo"), "ship")  # fmt: skip
    night = datetime(2026, 11, 2, 14, 0, tzinfo=UTC).timestamp()  # 23:00 in Tokyo
    out = tokyo.decide(
        [incident(1, severity=Severity.MEDIUM), incident(2, severity=Severity.CRITICAL)], night
    )
    assert [c.severity for n in out.notifications for c in n.changes] == [Severity.CRITICAL]
    assert out.folded == [("ops-hook", "quiet_hours")]
    assert tokyo.flush(night + 6 * 3600) == []  # 05:00 in Tokyo: still quiet
    (digest,) = tokyo.flush(night + 7.5 * 3600)  # 06:30: the night's digest
    assert digest.folded == {"quiet_hours": 1}
    assert [c.severity for c in digest.changes] == [Severity.MEDIUM]
    assert "1 incident changes were held" in digest.text
    # the same instant is 14:00 in UTC, no quiet hours there
    utc = Engine(notify_policy(hook_channel("http://x.test/"), quiet_hours=quiet), "ship")
    assert len(utc.decide([incident(1, severity=Severity.MEDIUM)], night).notifications) == 1


def test_a_storm_becomes_one_digest() -> None:
    storm = {"threshold": 3, "window_s": 60}
    engine = Engine(notify_policy(hook_channel("http://x.test/"), storm=storm), "ship")
    singles = []
    for i in range(12):
        singles += engine.decide([incident(i)], T0 + i).notifications
    assert len(singles) == 2  # the third change within a minute is a storm
    assert engine.flush(T0 + 12) == []  # while it lasts
    (digest,) = engine.flush(T0 + 11 + 61)  # a quiet minute: over
    assert digest.folded == {"storm": 10} and len(digest.changes) == 10
    assert "digest: 10 incident changes on MV-TEST" in digest.subject
    assert engine.flush(T0 + 200) == []  # sent once
    # a storm that goes on is reported once per window, not only at its end
    for i in range(30):
        engine.decide([incident(100 + i)], T0 + 1000 + 5 * i)
    assert engine.flush(T0 + 1000 + 5 * 29) != []


def test_rate_limit_folds_and_counts_never_drops() -> None:
    engine = Engine(notify_policy(hook_channel("http://x.test/"), rate_limit_per_hour=2), "ship")
    sent = [engine.decide([incident(i)], T0 + 60 * i).notifications for i in range(5)]
    assert [len(s) for s in sent] == [1, 1, 0, 0, 0]
    assert engine.flush(T0 + 1800) == []  # no slot within the hour
    (digest,) = engine.flush(T0 + 3601)  # the first message's slot is free again
    assert digest.folded == {"rate_limit": 3} and len(digest.changes) == 3
    # a flood past what a digest lists: all counted, the listed ones named
    flood = Engine(notify_policy(hook_channel("http://x.test/"), rate_limit_per_hour=1), "ship")
    flood.decide([incident(i) for i in range(151)], T0)
    (digest,) = flood.flush(T0 + 3601)
    assert digest.folded == {"rate_limit": 150} and len(digest.changes) == 100
    assert digest.text.endswith("... and 50 more, not listed")


def test_what_was_folded_survives_a_restart(tmp_path: Path) -> None:
    policy = notify_policy(hook_channel("http://x.test/"), rate_limit_per_hour=1)
    spool = Spool.open(tmp_path / "notify.db")
    first = Engine(policy, "ship")
    out = first.decide([incident(1), incident(2)], T0)
    spool.keep(out.notifications, first.take_states(), T0, 100)
    spool.close()
    again = Engine(policy, "ship")
    again.restore(Spool.open(tmp_path / "notify.db").states())
    (digest,) = again.flush(T0 + 3601)
    assert [c.incident_id for c in digest.changes] == [incident(2).id]


def test_policy_errors_name_the_channel(tmp_path: Path) -> None:
    def problems(doc: dict[str, Any]) -> str:
        (tmp_path / "notify.yaml").write_text(yaml.safe_dump({"notify": doc}))
        with pytest.raises(PolicyError) as err:
            load_policy(tmp_path)
        return str(err.value)

    text = problems(
        notify_doc(mail_channel(recipients={}), hook_channel("ftp://x.test/"), timezone="Mars/X")
    )
    assert "notify.channels[0].smtp: Value error, an smtp channel needs recipients" in text
    assert "notify.channels[1].webhook.url" in text
    assert "unknown time zone 'Mars/X'" in text
    text = problems(notify_doc(hook_channel("https://x.test/"), mail_channel(name="ops-hook")))
    assert "channel names must be unique: ops-hook" in text


# ------------------------------------------------------------------ real receivers


class Receiver:
    """A real HTTP server on loopback that records every POST; answers 500 to the first
    `fail_first` of them."""

    def __init__(self, port: int = 0, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server protocol)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.requests) < fail_first else 200
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, status in self.requests if status == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


class Mailbox:
    """aiosmtpd handler: keeps every message, refuses recipients at nobody@."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, bool]] = []  # (parsed message, logged in)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((msg, bool(session.authenticated)))
        return "250 Message accepted"


def _login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=(data.login, data.password) == (b"seawatch", b"relay-secret"))


@pytest.fixture
def smtp_port() -> int:
    return free_port("127.0.0.1")


def smtp_server(port: int, mailbox: Mailbox) -> Controller:
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_login,
        auth_require_tls=False,  # loopback in a test: no certificate to make
    )
    controller.start()
    return controller


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return value


def spool_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT dedup_key, attempts, sent, gave_up, last_error FROM notify_spool ORDER BY id"
        ).fetchall()


def notifier(path: Path, policy: NotifyPolicy) -> Notifier:
    return Notifier(policy, "ship", Spool.open(path), NotifyMetrics(CollectorRegistry(), "t"))


def count(n: Notifier, name: str, **labels: str) -> float | None:
    return n.metrics.registry.get_sample_value(f"t_{name}_total", labels)


# ------------------------------------------------------------------ delivery


async def test_the_notifier_stops_when_a_cancel_is_lost_injected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection, as in tests/test_sync.py: every cancel of a `wait_for` is dropped,
    as Python 3.11 sometimes does; the loop is told to stop as well, so `stop` ends."""
    real = asyncio.wait_for
    idle = asyncio.Event()

    async def losing_cancels(aw: Any, timeout: float | None) -> Any:
        idle.set()
        try:
            return await real(aw, timeout)
        except asyncio.CancelledError:
            return None

    monkeypatch.setattr(asyncio, "wait_for", losing_cancels)
    n = notifier(tmp_path / "notify.db", notify_policy(hook_channel("http://127.0.0.1:9/")))
    n.start()
    await idle.wait()  # the loop waits in a wait_for: the cancel lands there
    await real(n.stop(), 10)
    assert n._task is not None and n._task.done()  # its loop ended, not left running


async def test_webhook_is_signed_and_retried_until_accepted(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SW_TEST_HOOK_KEY", "hook-key")
    policy = notify_policy(hook_channel(receiver.url, secret_env="SW_TEST_HOOK_KEY"))
    n = notifier(tmp_path / "notify.db", policy)
    n.start()
    try:
        n.offer([incident(1, severity=Severity.CRITICAL)])
        (doc,) = await until(receiver.delivered)
        await until(lambda: spool_rows(tmp_path / "notify.db")[0][2])  # marked sent
    finally:
        await n.stop()
    assert [status for _, _, status in receiver.requests] == [500, 500, 200]
    assert doc["changes"][0]["incident_id"] == incident(1).id and doc["kind"] == "incident"
    ids = {headers["X-Seawatch-Notification"] for headers, _, _ in receiver.requests}
    assert ids == {doc["id"]}  # one notification, tried three times
    headers, body, _ = receiver.requests[-1]
    assert hmac.compare_digest(headers["X-Seawatch-Signature"], signature("hook-key", body))
    ((_, attempts, sent, gave_up, error),) = spool_rows(tmp_path / "notify.db")
    assert (attempts, sent is not None, gave_up, error) == (3, True, None, "HTTP 500: ")
    assert count(n, "notification_failures", channel="ops-hook") == 2
    assert count(n, "notifications_sent", channel="ops-hook") == 1


async def test_an_unreachable_endpoint_keeps_it_spooled_across_restarts_and_sends_once(
    tmp_path: Path,
) -> None:
    port = free_port("127.0.0.1")
    policy = notify_policy(hook_channel(f"http://127.0.0.1:{port}/hook"))
    db = tmp_path / "notify.db"
    down = notifier(db, policy)
    down.start()
    down.offer([incident(1)])
    await until(lambda: spool_rows(db)[0][1] >= 2)  # tried, and tried again
    await down.stop()
    ((_, _, sent, _, error),) = spool_rows(db)
    assert sent is None and "ConnectError" in error

    back = Receiver(port=port)
    try:
        up = notifier(db, policy)  # the process restarted
        up.start()
        await until(back.delivered)
        await until(lambda: spool_rows(db)[0][2] is not None)
        await up.stop()
        again = notifier(db, policy)  # and again, with the same version offered once more
        again.offer([incident(1)])
        assert await again.deliver_due() == 0
        await again.stop()
        assert len(back.requests) == 1
    finally:
        back.close()


async def test_a_full_spool_drops_the_oldest_lowest_severity_first_and_counts(
    tmp_path: Path,
) -> None:
    policy = notify_policy(
        hook_channel("http://127.0.0.1:9/hook"), spool={"max_pending": 3, "keep_days": 7}
    )
    n = notifier(tmp_path / "notify.db", policy)
    n.offer([incident(1, severity=Severity.LOW), incident(2, severity=Severity.CRITICAL)])
    n.offer([incident(3, severity=Severity.LOW), incident(4, severity=Severity.HIGH)])
    kept = [row[0].split(":")[0] for row in spool_rows(tmp_path / "notify.db")]
    assert kept == [incident(i).id for i in (2, 3, 4)]
    assert count(n, "notifications_dropped", channel="ops-hook", reason="spool_full") == 1
    await n.stop()


async def test_email_through_a_real_smtp_server(
    tmp_path: Path, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SW_TEST_SMTP_PASSWORD", "relay-secret")
    mailbox = Mailbox()
    controller = smtp_server(smtp_port, mailbox)
    channel = mail_channel(smtp_port, username="seawatch", password_env="SW_TEST_SMTP_PASSWORD")
    channel["recipients"] = {**CREW, "medium": ["nobody@vessel.test"]}
    db = tmp_path / "notify.db"
    n = notifier(db, notify_policy(channel))
    n.start()
    try:
        n.offer(
            [incident(1, severity=Severity.CRITICAL), incident(2), incident(3, severity="medium")]
        )
        await until(lambda: len(mailbox.messages) == 2 and spool_rows(db)[2][3])
    finally:
        await n.stop()
        controller.stop()
    (critical, authenticated), (high, _) = mailbox.messages
    assert authenticated  # logged in with the password from the environment
    assert (
        critical["To"] == "captain@vessel.test, eto@vessel.test" and high["To"] == CREW["high"][0]
    )
    assert "critical link_degradation on vsat-modem-01 opened" in critical["Subject"]
    assert critical["Message-ID"].endswith("@seawatch>")
    assert incident(1).id in critical.get_content()
    # a recipient the relay refuses for good: given up at once, counted, not retried
    (_, attempts, sent, gave_up, error) = spool_rows(db)[2]
    assert (attempts, sent, gave_up is not None) == (1, None, True) and "550" in error
    assert count(n, "notifications_dropped", channel="crew-mail", reason="rejected") == 1


# ------------------------------------------------------------------ end to end


def fleet_dir(tmp_path: Path, *channels: dict[str, Any]) -> Path:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "notify.yaml").write_text(yaml.safe_dump({"notify": notify_doc(*channels)}))
    return fleet


def test_ship_mails_its_crew_and_keeps_trying_while_the_relay_is_down(
    tmp_path: Path, smtp_port: int
) -> None:
    policy = load_policy(fleet_dir(tmp_path, mail_channel(smtp_port)), SHIP)
    running = start_agent(tmp_path, policy)
    mailbox = Mailbox()
    controller = None
    try:
        httpx.post(f"{running.url}/api/v3/ingest", json=snr_batch(T0, 9, 8.5))
        running.drain()
        waiting = "SELECT attempts, last_error FROM notify_spool WHERE sent IS NULL"
        (attempts, error), *_ = wait_for(lambda: running.sql(waiting + " AND attempts > 1"))
        assert "Connection refused" in error or "ConnectionRefused" in error
        controller = smtp_server(smtp_port, mailbox)  # the crew's relay is back
        wait_for(lambda: mailbox.messages)
        (opened, _), *_ = mailbox.messages
        assert opened["To"] == "eto@vessel.test"
        assert f"[Seawatch] {SHIP}: high link_degradation on vsat-modem-01 opened" in str(
            opened["Subject"]
        )
        inc_id = running.sql("SELECT id FROM incidents")[0][0]
        httpx.post(f"{running.url}/api/v3/incidents/{inc_id}/resolve", json={"actor": "eto"})
        wait_for(lambda: len(mailbox.messages) == 2)
        assert "resolved" in mailbox.messages[1][0]["Subject"]
        wait_for(lambda: running.sql(waiting) == [])  # both marked sent
        exposed = httpx.get(f"{running.url}/metrics").text
        assert 'seawatch_notifications_sent_total{channel="crew-mail"} 2.0' in exposed
    finally:
        stop_agent(running)
        if controller is not None:
            controller.stop()


def test_ship_notifications_commit_with_their_batch_injected_failures(tmp_path: Path) -> None:
    """Fault injection (hooks that raise: SQLite cannot be made to fail at these points on
    demand). A batch that fails after the notifier wrote takes its rows back with it; a
    notifier that fails costs only its own rows, and the batch commits."""
    policy = load_policy(fleet_dir(tmp_path, hook_channel("http://127.0.0.1:9/")), SHIP)

    def refuse(_versions: list[Incident]) -> None:
        raise RuntimeError("injected")

    store = Store(tmp_path / "alone.db", SHIP)
    spool = Spool(store.conn)
    told = Notifier(policy.notify, "ship", spool, NotifyMetrics(CollectorRegistry(), "t"))
    store.committing += [told.offer, refuse]  # the agent's hook, then a failure
    pipeline = Pipeline(policy, store)
    fade = [metric("vsat-modem-01", "vsat.snr_db", 8.5, T0 + 20 * i) for i in range(9)]
    with pytest.raises(RuntimeError, match="injected"):
        pipeline.run_batch(fade)
    assert store.conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
    assert store.conn.execute("SELECT count(*) FROM notify_spool").fetchone() == (0,)
    store.close()

    running = start_agent(tmp_path, policy)
    try:
        running.agent.notifier.offer = refuse  # the notifier itself fails
        httpx.post(f"{running.url}/api/v3/ingest", json=snr_batch(T0, 9, 8.5))
        running.drain()
        assert running.sql("SELECT count(*) FROM incidents") == [(1,)]
        assert running.sql("SELECT count(*) FROM notify_spool") == [(0,)]
    finally:
        stop_agent(running)


def test_hub_calls_the_operations_webhook_once_per_change(
    tmp_path: Path, chdb_path: Path, receiver: Receiver
) -> None:
    fleet = fleet_dir(tmp_path, hook_channel(receiver.url, side="hub", min_severity="high"))
    settings = hub_settings(
        tmp_path / "hub", chdb_path, "notify_test", memory=False, policy_dir=fleet
    )
    opened = incident(7, ship="MV-NOTIFY", severity=Severity.CRITICAL)
    evidence = incident(7, 2, ("evidence",), Severity.CRITICAL, ship="MV-NOTIFY")
    minor = incident(8, ship="MV-NOTIFY", severity=Severity.MEDIUM)
    subject = up_subject("MV-NOTIFY", "incident")
    with hub_running(settings) as hub:
        hub.publish([(subject, frame(opened)), (subject, frame(minor))])
        hub.publish([(subject, frame(opened, evidence))])  # a replay, and news of nothing
        wait_for(receiver.delivered)

        def stored_version() -> int:
            doc = hub.call(hub.hub.read(hub.hub.store.incident, evidence.id))
            return int(doc["incident"]["version"]) if doc else 0

        wait_for(lambda: stored_version() == 2)  # the replay has been through the notifier
        wait_for(lambda: all(row[2] for row in spool_rows(tmp_path / "hub" / "notify.db")))
        exposed = httpx.get(f"{hub.url}/metrics").text
    (doc,) = receiver.delivered()
    assert doc["changes"][0]["key"] == f"{opened.id}:1:opened"
    assert (
        doc["subject"] == "[Seawatch] MV-NOTIFY: critical link_degradation on vsat-modem-01 opened"
    )
    assert 'seawatch_hub_notifications_sent_total{channel="ops-hook"} 1.0' in exposed


def test_hub_spools_before_it_acknowledges_injected_crash_at_the_ack(
    tmp_path: Path, chdb_path: Path, receiver: Receiver
) -> None:
    """Fault injection: the ingest worker ends after a batch is stored and confirmed to its
    ship and before any of it is acknowledged, as a hub process killed there would (the
    real worker cannot be stopped at that point on demand). Its notification is already
    in the spool, so it goes out; the batch itself comes again after the ack wait."""
    fleet = fleet_dir(tmp_path, hook_channel(receiver.url, side="hub", min_severity="high"))
    settings = hub_settings(
        tmp_path / "hub", chdb_path, "notify_crash", memory=False, policy_dir=fleet
    )
    opened = incident(9, ship="MV-NOTIFY", severity=Severity.CRITICAL)
    with hub_running(settings) as hub:
        worker = hub.hub.workers[0]
        confirm = worker._before_ack
        assert confirm is not None

        async def crash_after(decoded: Any) -> None:
            await confirm(decoded)
            raise asyncio.CancelledError  # ends the worker's task before its acks

        worker._before_ack = crash_after
        hub.publish([(up_subject("MV-NOTIFY", "incident"), frame(opened))])
        wait_for(receiver.delivered)
        assert worker.stored == 0  # nothing was acknowledged
    (doc,) = receiver.delivered()
    assert doc["changes"][0]["key"] == f"{opened.id}:1:opened"
