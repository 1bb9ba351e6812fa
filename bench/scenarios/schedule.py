"""The fault plan: every fault type, on each device where it can happen, overlapping in time.

Faults start every `stagger_s` seconds, so several run at once on unrelated devices. Two
faults that the agent would rightly tell as one story are never overlapped: the same
device, or the same network path for path-type incidents, stays reserved from a fault's
start until its incident has had time to resolve (end + the type's correlation window
+ a margin). Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.policy import Policy
from shared.taxonomy import IncidentType
from ship_agent.simulator import SCENARIOS, Label, Simulator

MARGIN_S = 300.0


@dataclass(frozen=True, slots=True)
class Planned:
    scenario: str
    device: str
    start_ts: float


def occupies(policy: Policy, scenario: str, device: str) -> set[str]:
    """What the fault occupies: its devices, and its path if its type correlates by path."""
    cls = SCENARIOS[scenario]
    touched = {device} | {s.device for s in cls.shapes if s.device}
    keys = {f"dev:{d}" for d in touched}
    roles = {policy.ingest.role_of(d) for d in touched}
    if cls.incident_type in {t.value for t in policy.correlate.path_types}:
        for path, members in policy.correlate.paths.items():
            if roles & set(members):
                keys.add(f"path:{path}")
    return keys


def plan_faults(
    policy: Policy, start_ts: float, rounds: int, seed: int, stagger_s: float = 900.0
) -> list[Planned]:
    """`rounds` injections of every fault type, rotating through its devices."""
    jobs = [
        (name, cls.devices_for()[r % len(cls.devices_for())])
        for r in range(rounds)
        for name, cls in sorted(SCENARIOS.items())
    ]
    random.Random(seed).shuffle(jobs)
    busy: dict[str, float] = {}
    plan: list[Planned] = []
    cursor = start_ts
    for name, device in jobs:
        cls = SCENARIOS[name]
        keys = occupies(policy, name, device)
        at = max([cursor, *(busy.get(k, 0.0) for k in keys)])
        window = policy.correlate.windows_s[IncidentType(cls.incident_type)]
        until = at + cls.duration_s + window + MARGIN_S
        for k in keys:
            busy[k] = until
        plan.append(Planned(name, device, at))
        cursor += stagger_s
    plan.sort(key=lambda p: p.start_ts)
    return plan


def inject(sim: Simulator, plan: list[Planned]) -> list[Label]:
    return [sim.inject(p.scenario, p.start_ts, device=p.device) for p in plan]


def plan_end(policy: Policy, plan: list[Planned]) -> float:
    """When the last fault's incident has had time to open, change and resolve."""
    return max(
        p.start_ts
        + SCENARIOS[p.scenario].duration_s
        + policy.correlate.windows_s[IncidentType(SCENARIOS[p.scenario].incident_type)]
        + MARGIN_S
        for p in plan
    )
