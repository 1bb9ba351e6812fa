"""Which action, if any, to propose for an incident: the runbook's allowed actions,
filtered by the remediation policy (allow-list, forbidden targets, cooldowns), with the
approval the policy asks for (a person always decides on a critical path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from shared.ids import new_id
from shared.models import ActionRequest, Incident
from shared.policy import RemediatePolicy
from shared.runbooks import Runbook

APPROVALS_NEEDED = {"auto": 0, "single": 1, "two_person": 2}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def plan(
    incident: Incident,
    role: str,
    runbook: Runbook | None,
    policy: RemediatePolicy,
    last_run: Callable[[str, str], float | None],
    now: float,
) -> tuple[ActionRequest | None, str]:
    """The request to propose, or None with the reason there is none."""
    if runbook is None:
        return None, "no runbook for this incident"
    zone = policy.zone_of(role)
    if role in policy.forbidden_targets or zone in policy.forbidden_targets:
        return None, f"{incident.device} is in {zone}: never remediated from here"
    if role not in runbook.roles:  # nobody wrote these steps for this kind of device
        return None, f"{runbook.id} is not written for {role} devices"
    skipped = []
    for action in runbook.allowed_actions:
        rule = policy.actions.get(action)
        if rule is None:
            continue
        last = last_run(action, incident.device)
        if last is not None and now - last < rule.cooldown_s:
            skipped.append(f"{action} cooling down ({now - last:.0f} of {rule.cooldown_s:g} s)")
            continue
        approval = rule.approval
        if approval == "auto" and zone in policy.never_auto:
            approval = "single"
        request = ActionRequest(
            tracking_id=new_id(),
            ship_id=incident.ship_id,
            ts=datetime.fromtimestamp(now, UTC),
            incident_id=incident.id,
            action=action,
            target=incident.device,
            runbook=runbook.id,
            risk=rule.risk,
            approval=approval,
            approvals_needed=APPROVALS_NEEDED[approval],
            requested_by=f"ship:{runbook.id}",
            blast_radius=sorted(set(incident.devices) | {incident.device}),
            pre_check=rule.pre_check,
            post_check=rule.post_check,
        )
        return request, ""
    return None, "; ".join(skipped) or f"{runbook.id} allows no action of the allow-list"


def in_window(window: dict[str, str], ts: float | None = None) -> bool:
    """Inside the weekly maintenance window (UTC): where high-risk actions may run."""
    t = time.gmtime(time.time() if ts is None else ts)
    if _WEEKDAYS[t.tm_wday] != window.get("weekday"):
        return False
    hhmm = f"{t.tm_hour:02d}:{t.tm_min:02d}"
    return window.get("start", "") <= hhmm < window.get("end", "")
