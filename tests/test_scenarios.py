"""The scenario benchmark in small: the fault plan, incident-level scoring on a short run with
generous floors, a quiet maintenance night, port calls, and the template ground truth."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.scenarios.replay import Incident, replay
from bench.scenarios.run import START, maintenance_policy, run_faults
from bench.scenarios.schedule import occupies, plan_faults
from bench.scenarios.score import FAST, SLOW, score_faults
from bench.scenarios.templates import grouping_accuracy
from shared.policy import Policy
from ship_agent.simulator import SCENARIOS, Label, Simulator
from ship_agent.simulator.devices import Context
from ship_agent.simulator.ship import GUEST_RATE, Voyage, local_minute
from ship_agent.simulator.syslog import Syslog, split_line
from ship_agent.simulator.templates import EVENT_TYPES, matching_types

SUNDAY_0130 = 1_790_472_600.0  # Sunday 2026-09-27 01:30 UTC
SUNDAY_0200 = SUNDAY_0130 + 1800  # the weekly maintenance window opens


def test_every_fault_type_is_classed_for_the_time_to_detect_target() -> None:
    assert set(FAST) | set(SLOW) == set(SCENARIOS) and not set(FAST) & set(SLOW)


def test_the_plan_never_overlaps_faults_that_would_be_one_story(policy: Policy) -> None:
    plan = plan_faults(policy, START, rounds=2, seed=3)
    assert len(plan) == 2 * len(SCENARIOS)
    assert {(p.scenario, p.device) for p in plan} >= {
        ("disk_filling", "pos-srv-01"),
        ("disk_filling", "res-srv-01"),
        ("overheating", "sw-core-01"),
    }
    concurrent = 0
    for a, b in itertools.combinations(plan, 2):
        a_end = a.start_ts + SCENARIOS[a.scenario].duration_s
        overlap = a.start_ts <= b.start_ts < a_end
        concurrent += overlap
        if occupies(policy, a.scenario, a.device) & occupies(policy, b.scenario, b.device):
            assert b.start_ts >= a_end + 600 or a.start_ts >= b.start_ts + 600
    assert concurrent >= len(plan) // 3  # faults do run at the same time


def test_scoring_counts_misses_duplicates_and_root_causes() -> None:
    labels = [
        Label("rain_fade", "link_degradation", "vsat-modem-01", 1000.0, 2500.0),
        Label("disk_filling", "resource_pressure", "pos-srv-01", 1500.0, 3300.0),
        Label("gps_fix_loss", "navigation_data", "gps-01", 5000.0, 5600.0),
    ]

    def inc(i: str, t: str, dev: str, first: float, devices: tuple[str, ...] = ()) -> Incident:
        return Incident(i, t, dev, devices or (dev,), "resolved", first, first + 60, None)

    incidents = [
        inc("a", "link_degradation", "acu-01", 1200, ("acu-01", "vsat-modem-01")),  # wrong root
        inc("b", "resource_pressure", "pos-srv-01", 2300),
        inc("c", "resource_pressure", "pos-srv-01", 2900),  # a duplicate
        inc("d", "app_degradation", "res-srv-01", 9000),  # nothing running
    ]
    s = score_faults(labels, incidents)
    assert s.types["rain_fade"].detected == 1 and s.types["rain_fade"].root_cause_right == 0
    assert s.types["rain_fade"].ttd_s == [200.0]
    assert s.types["disk_filling"].precision == 0.5
    assert s.types["gps_fix_loss"].recall == 0.0 and [m.scenario for m in s.misses] == [
        "gps_fix_loss"
    ]
    assert [i.id for i in s.background] == ["d"]
    total = s.total()
    assert (total.faults, total.detected, total.false_incidents) == (3, 2, 2)


def test_short_fault_run_meets_generous_floors(policy: Policy) -> None:
    """One fault of each type; the full run (bench) holds the real targets."""
    score, result, _sim, _duration = run_faults(policy, rounds=1, seed=2, stagger_s=300)
    total = score.total()
    assert result.dead_letters == 0 and total.faults == len(SCENARIOS)
    assert total.recall >= 0.9 and total.precision >= 0.9, score.misses
    assert total.root_cause_right >= 0.85 * total.detected
    fast = score.fast_median_ttd_s()
    assert fast is not None and fast <= 90.0


def test_a_maintenance_night_opens_only_suppressed_incidents(
    policy: Policy, tmp_path: Path
) -> None:
    quiet = maintenance_policy(tmp_path)
    assert quiet.correlate.maintenance_windows[-1].weekday == "sunday"
    sim = Simulator("MV-BENCH", seed=4, start_ts=SUNDAY_0200, maintenance=True)
    labels = sim.maintenance_labels(3600)
    assert [lb.scenario for lb in labels] == [
        "maintenance_switch_reload",
        "maintenance_host_patching",
    ]
    result = replay(sim, 3600, quiet, "MV-BENCH")
    # the planned work trips real rules, and the window records them as suppressed
    assert {i.device for i in result.incidents} == {"sw-guest-01", "crew-srv-01"}
    assert all(i.suppressed for i in result.incidents)
    # without the window, the same night would have paged someone
    loud = replay(sim, 3600, policy, "MV-BENCH")
    assert loud.incidents and not any(i.suppressed for i in loud.incidents)


def test_maintenance_happens_only_when_asked_and_only_in_the_window() -> None:
    plain = Simulator("MV-X", seed=1, start_ts=SUNDAY_0130)
    assert plain.maintenance_labels(8 * 86_400) == []
    busy = Simulator("MV-X", seed=1, start_ts=SUNDAY_0130 - 86_400, maintenance=True)
    labels = busy.maintenance_labels(9 * 86_400)
    assert len(labels) == 4  # two Sundays, two jobs each
    for label in labels:
        into = label.start_ts % 86_400
        assert into >= 2 * 3600 and label.end_ts % 86_400 <= 4 * 3600
    reload_ = labels[2]  # the second Sunday's switch reload
    window = Simulator("MV-X", seed=1, start_ts=reload_.start_ts - 600, maintenance=True)
    switch = [e.ts for e in window.events(1800) if e.device == "sw-guest-01" and e.kind == "metric"]
    gaps = [(a, b) for a, b in itertools.pairwise(switch) if b - a > 240]
    assert len(gaps) == 1 and reload_.start_ts <= gaps[0][0] < reload_.end_ts  # silent, reloading


def test_port_calls_send_guests_ashore_and_bring_them_back_in_a_burst() -> None:
    voyage = Voyage(17.0, 0.0)
    ctx = Context(voyage, Syslog())
    boarding = day = None
    for t in range(0, 4 * 86_400, 300):
        left = voyage.alongside(t)
        minute = local_minute(t, voyage.at(t)[1])
        if 0 <= left <= 3000 and boarding is None:
            boarding = (t, minute)
        elif left > 7200 and 10 * 60 <= minute < 16 * 60 and day is None:
            day = (t, minute)
    assert boarding is not None and day is not None
    ctx.update(boarding[0])
    assert ctx.guest_rate == pytest.approx(2.5 * GUEST_RATE[boarding[1]])
    ctx.update(day[0])
    assert ctx.guest_rate == pytest.approx(0.5 * GUEST_RATE[day[1]])


@pytest.fixture(scope="module")
def mixed_logs() -> list[bytes]:
    """A few hours with every fault on every device it can hit, and a maintenance night."""
    start = SUNDAY_0130 - 2 * 3600  # midnight jobs, then the maintenance window
    sim = Simulator("MV-T", seed=6, start_ts=start, maintenance=True, extra_devices=3)
    at = start + 600
    for name, cls in sorted(SCENARIOS.items()):
        for device in cls.devices_for():
            sim.inject(name, at, device=device)
            at += 420
    return [e.line for e in sim.events(max(at - start + 1800, 8 * 3600)) if e.kind == "log"]


def test_every_simulated_line_has_exactly_one_event_type(mixed_logs: list[bytes]) -> None:
    used = set()
    for line in mixed_logs:
        found = matching_types(split_line(line)[2])
        assert len(found) == 1, (line, found)
        used.add(found[0])
    assert used == set(EVENT_TYPES)


def test_template_grouping_accuracy_has_a_floor(policy: Policy) -> None:
    sim = Simulator("MV-T", seed=7, start_ts=START)
    g = grouping_accuracy(sim.events(5400), policy.detect.templates)
    assert g.lines > 20_000 and g.event_types > 40
    # measured 2026-11-22: 0.9986 on the fault run (docs/detection.md); the target is 0.98
    assert g.accuracy >= 0.98, g.wrong
