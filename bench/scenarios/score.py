"""Incident-level scoring of a fault run against its labels.

A labelled fault is detected when an incident of its type that involves its device was
first seen between the fault's start and its end (+ `GRACE_S`); the first such incident
is the true positive, its first-seen time gives the time to detect, and its root-cause
candidate is right when it is the fault's device. Every other incident is a false one:
a duplicate or a side effect of the fault running at the time (charged to that fault's
type), or background noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.scenarios.replay import Incident
from ship_agent.simulator import Label

GRACE_S = 120.0
# Faults whose signal and policy rule allow detection within a minute of onset (the TTD
# target); the others are gradual by nature or held to a longer rule on purpose.
FAST: dict[str, str] = {
    "antenna_blockage": "antenna_blocked holds 20 s",
    "link_flap": "vsat_link_down holds 40 s",
    "vsat_outage": "vsat_link_down holds 40 s",
    "gps_fix_loss": "one 'GPS fix lost' line",
    "sshd_bruteforce": "20 failures in 60 s, at 2-3 a second",
    "payment_gateway_errors": "50 error lines in 60 s, at about 1.3 a second",
    "service_crash_loop": "3 exits in 300 s, one every 20-40 s",
}
SLOW: dict[str, str] = {
    "rain_fade": "SNR fades over 5 min, then the 60 s rule",
    "disk_filling": "the disk fills over 15 min",
    "overheating": "the switch heats up over 10 min",
    "memory_leak": "memory climbs over 15 min before the OOM killer",
    "cpu_runaway": "host_cpu_high holds 300 s",
    "firewall_cpu": "net_cpu_high holds 180 s after a 90 s ramp",
    "switch_port_errors": "4 port downs (45-70 s apart) or errors held 120 s",
    "crew_login_failures": "5 failures in 300 s, an attempt a minute",
}


@dataclass
class TypeScore:
    scenario: str
    faults: int = 0
    detected: int = 0
    false_incidents: int = 0
    root_cause_right: int = 0
    ttd_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else 1.0

    @property
    def precision(self) -> float:
        found = self.detected + self.false_incidents
        return self.detected / found if found else 1.0

    @property
    def median_ttd_s(self) -> float | None:
        return statistics.median(self.ttd_s) if self.ttd_s else None


@dataclass
class FaultRunScore:
    types: dict[str, TypeScore]
    background: list[Incident]  # false incidents while no fault ran
    misses: list[Label]
    false_incidents: list[tuple[Incident, str]]  # and the fault type charged

    def total(self) -> TypeScore:
        t = TypeScore("all")
        for s in self.types.values():
            t.faults += s.faults
            t.detected += s.detected
            t.false_incidents += s.false_incidents
            t.root_cause_right += s.root_cause_right
            t.ttd_s += s.ttd_s
        t.false_incidents += len(self.background)
        return t

    def fast_median_ttd_s(self) -> float | None:
        ttd = [x for name, s in self.types.items() if name in FAST for x in s.ttd_s]
        return statistics.median(ttd) if ttd else None


def _involves(inc: Incident, device: str) -> bool:
    return inc.device == device or device in inc.devices


def score_faults(labels: Sequence[Label], incidents: Sequence[Incident]) -> FaultRunScore:
    live = [i for i in incidents if not i.suppressed]
    types = {label.scenario: TypeScore(label.scenario) for label in labels}
    matched: set[str] = set()
    misses = []
    for label in sorted(labels, key=lambda lb: lb.start_ts):
        s = types[label.scenario]
        s.faults += 1
        hit = next(
            (
                i
                for i in live
                if i.id not in matched
                and i.type == label.incident_type
                and _involves(i, label.device)
                and label.start_ts <= i.first_seen <= label.end_ts + GRACE_S
            ),
            None,
        )
        if hit is None:
            misses.append(label)
            continue
        matched.add(hit.id)
        s.detected += 1
        s.ttd_s.append(hit.first_seen - label.start_ts)
        s.root_cause_right += hit.device == label.device
    background = []
    charged = []
    for inc in live:
        if inc.id in matched:
            continue
        running = [lb for lb in labels if lb.start_ts <= inc.first_seen <= lb.end_ts + GRACE_S]
        if not running:
            background.append(inc)
            continue
        culprit = next((lb for lb in running if _involves(inc, lb.device)), running[0])
        types[culprit.scenario].false_incidents += 1
        charged.append((inc, culprit.scenario))
    return FaultRunScore(types, background, misses, charged)
