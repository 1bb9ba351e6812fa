"""`./run demo` runs `seawatch demo`: a hub and simulated ships over cut links, on embedded
defaults. It must start, report, cut and restore links, and stop cleanly on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_fleet_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "seawatch",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--http-port",
            "0",
            "--no-memory",
            "--no-llm",
            "--cut-every",
            "4",
            "--cut-for",
            "3",
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hub: API http://127.0.0.1:" in out.stdout
    assert "--- link of MV-DEMO-" in out.stdout and "restored" in out.stdout
    assert "=== MV-DEMO-1: link" in out.stdout and "=== MV-DEMO-2: link" in out.stdout
    pid_files = list(tmp_path.rglob("nats-server.pid"))
    assert len(pid_files) == 3  # the hub's and one per ship
    for pid_file in pid_files:  # every server stopped with the demo
        pid = int(pid_file.read_text())
        assert not os.path.exists(f"/proc/{pid}"), f"nats-server {pid} left running"
