"""`seawatch status`: the running fleet in one screen of text, from the hub's API.

The hub to ask comes from the flags, else from a running demo's state file, else the
default local address; the key from `--api-key`, `SEAWATCH_API_KEY` or that state file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

STATE_FILE = "demo.json"  # written by a running `seawatch demo` into its data directory
DEFAULT_HUB = "http://127.0.0.1:8480"
SILENT_AFTER_S = 180.0  # three missed heartbeats (sync.heartbeat_s is 60)
SEVERITIES = ("critical", "high", "medium", "low")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"


def render(
    ships: list[dict[str, Any]],
    issues: list[dict[str, Any]],
    approvals: list[dict[str, Any]],
    hub: str,
) -> str:
    """The table: one row per ship, most open incidents first, then the fleet issues and
    the remediations waiting for approvers."""
    rows = sorted(ships, key=lambda s: (-s["open_total"], s["ship_id"]))
    total = {sev: sum(s["open_incidents"].get(sev, 0) for s in ships) for sev in SEVERITIES}
    lines = [
        f"fleet at {hub}: {len(ships)} ships, {sum(total.values())} open incidents "
        f"({', '.join(f'{n} {sev}' for sev, n in total.items() if n) or 'none'})",
        "",
        f"{'SHIP':<12} {'LINK':<9} {'HEARTBEAT':>10} {'BACKLOG':>8} {'OLDEST UNSENT':>14} "
        f"{'OPEN C/H/M/L':>13}  {'AGENT':<8} POLICY",
    ]
    for s in rows:
        age = s["heartbeat_age_s"]
        link = "silent" if age is None or age > SILENT_AFTER_S else s["link_state"]
        opens = "/".join(str(s["open_incidents"].get(sev, 0)) for sev in SEVERITIES)
        lines.append(
            f"{s['ship_id']:<12} {link:<9} {_age(age) + ' ago' if age is not None else '-':>10} "
            f"{s['backlog']:>8} {_age(s['oldest_unsent_s']):>14} {opens:>13}  "
            f"{s['agent_version'] or '-':<8} {s['policy_version'] or '-'}"
        )
    if issues:
        lines += ["", "fleet issues (the same problem on several ships):"]
        lines += [f"  {i['severity']:<8} {i['title']} ({i['count']} incidents)" for i in issues]
    if approvals:
        lines += ["", "remediations waiting for approvers:"]
        lines += [
            f"  {a['ship_id']:<12} {a['action']} on {a['target']} ({a['risk']} risk, "
            f"{len(a['decisions'])} of {a['approvals_needed']} approvals)"
            for a in approvals
        ]
    return "\n".join(lines)


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    state_path: Path = args.data_dir / STATE_FILE
    state = orjson.loads(state_path.read_bytes()) if state_path.exists() else {}
    hub = args.hub or state.get("hub") or DEFAULT_HUB
    key = args.api_key or os.environ.get("SEAWATCH_API_KEY") or state.get("api_key")
    return hub.rstrip("/"), key


def run_status(args: argparse.Namespace) -> int:
    hub, key = _target(args)
    if not key:
        print("seawatch status: no API key (--api-key or SEAWATCH_API_KEY)", file=sys.stderr)
        return 2
    headers = {"X-API-Key": key}
    try:
        with httpx.Client(base_url=hub, headers=headers, timeout=10) as client:
            fleet = client.get("/api/v3/fleet")
            fleet.raise_for_status()
            issues = client.get("/api/v3/fleet/issues")
            issues.raise_for_status()
            approvals = client.get("/api/v3/approvals")
            approvals.raise_for_status()
    except httpx.HTTPStatusError as exc:
        print(f"seawatch status: {hub} answered {exc.response.status_code}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"seawatch status: cannot reach the hub at {hub}: {exc}", file=sys.stderr)
        return 1
    print(render(fleet.json(), issues.json()["issues"], approvals.json(), hub))
    return 0
