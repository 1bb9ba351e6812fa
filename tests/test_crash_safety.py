"""kill -9 at random moments while the fast path commits: every version that was reported
committed is still there with its outbox row and, where it is news, its crew notification
spooled; nothing is half-written, and the agent restarts warm from what it had."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared import wire
from shared.notify.engine import change_of
from tests.conftest import wait_for

# The writer: a real pipeline on a real SQLite file, committing batches that open, grow and
# resolve incidents, printing what each commit made durable.
WRITER = r"""
import sys, time
from prometheus_client import CollectorRegistry
from shared.notify import Notifier, NotifyMetrics, Spool
from shared.policy import NotifyPolicy, load_policy
from ship_agent.pipeline import Pipeline
from ship_agent.store import Store
from tests.conftest import metric, logline
store = Store(sys.argv[1], "MV-CRASH")
policy = load_policy(ship_id="MV-CRASH")
notify = NotifyPolicy.model_validate(
    {**policy.notify.model_dump(mode="json"), "enabled": True, "quiet_hours": None,
     "rate_limit_per_hour": 0, "storm": {"threshold": 100000, "window_s": 300},
     "channels": [{"name": "crew-hook", "type": "webhook", "side": "ship",
                   "url": "http://127.0.0.1:9/", "min_severity": "info"}]})
notifier = Notifier(notify, "ship", Spool(store.conn), NotifyMetrics(CollectorRegistry(), "t"))
store.committing.append(notifier.offer)  # as the agent does: in the batch's transaction
p = Pipeline(policy, store)
p.warm_start()
print("READY", flush=True)
t = float(store.conn.execute("SELECT coalesce(max(ts), 1790000000) FROM events").fetchone()[0])
i = 0
while True:
    i += 1
    t += 20
    value = 8.0 if (i // 40) % 2 else 15.0
    items = [metric("vsat-modem-01", "vsat.snr_db", value, t)]
    items += [logline(f"srv-{k:02d}", "sshd", "Failed password for root from 192.0.2.1", t + k)
              for k in range(20)]
    items += [metric(f"sw-{k:03d}", "net.cpu_pct", 30.0 + (i % 7), t) for k in range(50)]
    b = p.run_batch(items)
    for inc in b.incidents:
        print(f"V {inc.id} {inc.version}", flush=True)
    print(f"E {len(b.logs) + len(b.metrics)}", flush=True)
    if i % 25 == 0:
        p.checkpoint()
"""


def _check(db: Path, committed: dict[str, int], events: int) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outbox = set(conn.execute("SELECT incident_id, version FROM outbox"))
    for inc_id, version in committed.items():
        assert (inc_id, version) in outbox, f"committed {inc_id} v{version} lost"
    # atomic: the incident row, its outbox row and its timeline always agree
    for inc_id, version in conn.execute("SELECT id, version FROM incidents"):
        assert (inc_id, version) in outbox
        assert (
            conn.execute(
                "SELECT count(*) FROM incident_timeline WHERE incident_id=? AND version=?",
                (inc_id, version),
            ).fetchone()[0]
            >= 1
        )
    for inc_id, version in outbox:
        row = conn.execute("SELECT version FROM incidents WHERE id=?", (inc_id,)).fetchone()
        assert row is not None and row[0] >= version
    # every committed version that is news has its notification, and none that is not
    news = set()
    for (frame,) in conn.execute("SELECT payload FROM outbox WHERE kind='incident'"):
        news |= {c.key for c in map(change_of, wire.decode(frame)) if c is not None}
    spooled = {key for (key,) in conn.execute("SELECT dedup_key FROM notify_spool")}
    assert news and spooled == news
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] >= events
    conn.close()


def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    rng = random.Random(11)
    committed: dict[str, int] = {}
    events = 0
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    for _round in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
            env=env,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("V "):
                _, inc_id, version = line.split()
                committed[inc_id] = max(committed.get(inc_id, 0), int(version))
            elif line.startswith("E "):
                events += int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        _check(db, committed, events)
    assert len(committed) >= 2 and events > 1000


def test_agent_restarts_warm_after_kill_9(tmp_path: Path) -> None:
    """The real `seawatch ship` process: kill -9, restart, incidents and models are back."""
    import httpx

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "SEAWATCH_CHECKPOINT_S": "0.5"}
    data = tmp_path / "ship"

    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seawatch",
                "ship",
                "--ship-id",
                "MV-K9",
                "--data-dir",
                str(data),
                "--http-port",
                "0",
                "--syslog-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=root,
            env=env,
        )
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "API http://" in banner, banner
        return proc, banner.split("API ")[1].split()[0]

    def fade(first_minute: int, samples: int) -> dict[str, Any]:
        """SNR 8 dB every 20 s from 14:<first_minute> on."""
        return {
            "metrics": [
                {
                    "ts": f"2026-09-21T14:{first_minute + i // 3:02d}:{(i % 3) * 20:02d}Z",
                    "device": "vsat-modem-01",
                    "metric": "vsat.snr_db",
                    "value": 8.0,
                }
                for i in range(samples)
            ]
        }

    proc, url = start()
    try:
        batch = fade(0, 30)
        assert httpx.post(f"{url}/api/v3/ingest", json=batch).status_code == 202
        first = wait_for(lambda: httpx.get(f"{url}/api/v3/incidents").json()["items"])
        saved = {"templates", "detectors", "hst/vsat-modem-01"}
        db = data / "agent.db"
        wait_for(
            lambda: (
                {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM model_state")} == saved
            )
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the crash under test (or cleanup on failure)
        proc.wait()
    proc, url = start()
    try:
        again = httpx.get(f"{url}/api/v3/incidents").json()["items"]
        assert [i["id"] for i in again] == [i["id"] for i in first]
        # the same fault continuing joins the restored incident instead of opening another
        more = fade(10, 9)
        assert httpx.post(f"{url}/api/v3/ingest", json=more).status_code == 202
        wait_for(lambda: httpx.get(f"{url}/api/v3/stats").json()["events"].get("metric") == 39)
        items = httpx.get(f"{url}/api/v3/incidents").json()["items"]
        assert len(items) == 1 and items[0]["anomaly_count"] > first[0]["anomaly_count"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
