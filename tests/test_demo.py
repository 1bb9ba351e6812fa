"""`./run demo` runs `seawatch demo`: a hub and simulated ships playing a scripted story on
embedded defaults. A short, time-compressed run with two ships must bring the story's
incidents to the hub, those raised while a ship's link was cut included, answer
`seawatch status`, and stop cleanly on Ctrl-C with no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from ship_agent.simulator.scenarios import SCENARIOS
from tests.conftest import wait_for


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _at_hub(state: dict[str, Any], ship: str, itype: str, since: float, until: float) -> bool:
    r = httpx.get(
        f"{state['hub']}/api/v3/incidents",
        params={"ship": ship, "type": itype, "since": _iso(since), "until": _iso(until)},
        headers={"X-API-Key": state["api_key"]},
        timeout=10,
    )
    r.raise_for_status()
    return bool(r.json()["items"])


def test_the_demo_story_reaches_the_hub_and_the_demo_stops_cleanly(tmp_path: Path) -> None:
    printed = tmp_path / "demo.out"
    demo = subprocess.Popen(
        [sys.executable, "-m", "seawatch", "demo", "--data-dir", str(tmp_path),
         "--ships", "2", "--speed", "120", "--http-port", "0", "--no-memory", "--no-llm",
         "--report-every", "5", "--duration", "240"],
        stdout=printed.open("w"), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        state_file = tmp_path / "demo.json"
        wait_for(lambda: state_file.exists() or demo.poll() is not None, timeout=120)
        assert demo.poll() is None, "the demo exited while starting"
        state = orjson.loads(state_file.read_bytes())
        assert sorted(state["ships"]) == ["MV-AURORA", "MV-BOREAS"]
        t0, beats = state["start_ts"], state["beats"]
        faults = [b for b in beats if b["what"] in SCENARIOS]
        assert {b["what"] for b in faults} >= {"rain_fade", "disk_filling", "sshd_bruteforce"}
        assert {b["ship"] for b in faults if b["what"] == "rain_fade"} == set(state["ships"])
        (cut,) = [b for b in beats if b["what"] == "cut"]
        (restore,) = [b for b in beats if b["what"] == "restore" and b["ship"] == cut["ship"]]

        def arrived(b: dict[str, Any]) -> bool:
            start = t0 + b["at_s"]
            itype = SCENARIOS[b["what"]].incident_type
            return _at_hub(state, b["ship"], itype, start - 60, start + 1800)

        # every beat of the story arrives, the outage's backlog after the link is back
        wait_for(lambda: all(arrived(b) for b in faults), timeout=180)
        # something the cut ship raised while cut (by its own clock) reached the hub
        raised_while_cut = _at_hub(
            state, cut["ship"], "resource_pressure", t0 + cut["at_s"], t0 + restore["at_s"]
        )
        assert raised_while_cut
        # and the demo's own account agrees: every version committed while cut is ashore
        wait_for(lambda: "all caught up" in printed.read_text(), timeout=60)

        status = subprocess.run(
            [sys.executable, "-m", "seawatch", "status", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "fleet at http://127.0.0.1:" in status.stdout
        assert "MV-AURORA" in status.stdout and "MV-BOREAS" in status.stdout
        # the rain fades' remediation (QoS shaping on the modem) waits for a person ashore
        assert "remediations waiting for approvers:" in status.stdout
        assert "qos_shaping on vsat-modem-01" in status.stdout
        console = httpx.get(f"{state['hub']}/console/", timeout=10)
        assert console.status_code == 200 and "<title>" in console.text
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err[-2000:]
    out = printed.read_text()
    assert "console  http://127.0.0.1:" in out and "API key  sw_" in out
    assert f">>> story +00:15  {cut['ship']}: satellite link lost" in out
    assert "the story so far, as the hub holds it:" in out
    assert not state_file.exists()  # the admin key does not outlive the demo
    pid_files = list(tmp_path.rglob("nats-server.pid"))
    assert len(pid_files) == 3  # the hub's and one per ship
    for pid_file in pid_files:  # every server stopped with the demo
        pid = int(pid_file.read_text())
        assert not os.path.exists(f"/proc/{pid}"), f"nats-server {pid} left running"
