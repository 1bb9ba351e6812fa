"""`seawatch bench scenarios`: incident-level detection quality on the ship simulator.

Three runs, each through a real pipeline and SQLite store with the default policy:
- faults: every fault type `--rounds` times, rotating over the devices where it can
  happen, several at once on unrelated devices (`bench.scenarios.schedule`), scored per
  type: precision, recall, time to detect, right root-cause device (`.score`);
- normal: `--normal-days` of fault-free traffic with the daily rhythm, port calls and the
  weekly maintenance window (planned work that looks like faults); the ship's policy
  declares that window, as a fleet would, so its incidents are recorded as suppressed;
  every other incident is a false one;
- templates: grouping accuracy of the agent's log templates on the fault run's syslog.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.scenarios.replay import Incident, Replay, replay
from bench.scenarios.schedule import inject, plan_end, plan_faults
from bench.scenarios.score import FAST, SLOW, FaultRunScore, score_faults
from bench.scenarios.templates import Grouping, grouping_accuracy
from shared.policy import Policy, load_policy
from ship_agent.simulator import MAINTENANCE_WINDOW, Simulator

SHIP = "MV-BENCH"
START = 1_790_035_200.0  # Tuesday 2026-09-22 00:00 UTC
FIRST_FAULT_S = 1800.0
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class NormalRun:
    days: float
    replay: Replay
    maintenance: int  # planned jobs in the run

    @property
    def false_incidents(self) -> list[Incident]:
        return [i for i in self.replay.incidents if not i.suppressed]

    @property
    def suppressed(self) -> list[Incident]:
        return [i for i in self.replay.incidents if i.suppressed]


def maintenance_policy(work_dir: Path) -> Policy:
    """The default policy plus the weekly maintenance window, declared in a fleet overlay."""
    weekday, opens, closes = MAINTENANCE_WINDOW
    windows = [w.model_dump() for w in load_policy().correlate.maintenance_windows]
    windows.append(
        {
            "name": "weekly maintenance",
            "devices": ["*"],
            "weekday": weekday,
            "start": opens,
            "end": closes,
        }
    )
    overlay = work_dir / "fleet"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "correlate.yaml").write_text(
        yaml.safe_dump({"correlate": {"maintenance_windows": windows}})
    )
    return load_policy(overlay)


def run_faults(
    policy: Policy, rounds: int, seed: int, stagger_s: float = 900.0
) -> tuple[FaultRunScore, Replay, Simulator, float]:
    sim = Simulator(SHIP, seed=seed, start_ts=START)
    plan = plan_faults(policy, START + FIRST_FAULT_S, rounds, seed, stagger_s)
    labels = inject(sim, plan)
    duration = plan_end(policy, plan) - START
    result = replay(sim, duration, policy, SHIP)
    return score_faults(labels, result.incidents), result, sim, duration


def run_normal(policy: Policy, days: float, seed: int) -> NormalRun:
    sim = Simulator(SHIP, seed=seed + 1000, start_ts=START, maintenance=True)
    result = replay(sim, days * DAY, policy, SHIP)
    return NormalRun(days, result, len(sim.maintenance_labels(days * DAY)))


def _ttd(value: float | None) -> str:
    return f"{value:7.0f}" if value is not None else "      -"


def report_faults(score: FaultRunScore, result: Replay, duration: float) -> list[str]:
    out = [
        f"fault run: {sum(s.faults for s in score.types.values())} faults of "
        f"{len(score.types)} types over {duration / 3600:.1f} h simulated, "
        f"{result.events:,} events in {result.seconds:.0f} s, {result.dead_letters} dead letters",
        f"  {'fault type':24s} {'faults':>6s} {'recall':>7s} {'precis.':>7s} {'TTD med s':>9s} "
        f"{'root ok':>7s}  TTD target",
    ]
    for name in sorted(score.types):
        s = score.types[name]
        target = "<= 60 s" if name in FAST else f"n/a: {SLOW.get(name, '')}"
        out.append(
            f"  {name:24s} {s.faults:6d} {s.recall:7.2f} {s.precision:7.2f} "
            f"{_ttd(s.median_ttd_s):>9s} {s.root_cause_right:3d}/{s.detected:<3d}  {target}"
        )
    t = score.total()
    root = t.root_cause_right / t.detected if t.detected else 0.0
    out += [
        f"  {'all':24s} {t.faults:6d} {t.recall:7.2f} {t.precision:7.2f} "
        f"{_ttd(t.median_ttd_s):>9s} {t.root_cause_right:3d}/{t.detected:<3d}",
        f"  median TTD of the faults a policy can catch within a minute: "
        f"{_ttd(score.fast_median_ttd_s()).strip()} s; right root-cause device {100 * root:.1f} %",
        f"  false incidents while no fault ran: {len(score.background)}",
    ]
    for label in score.misses:
        out.append(
            f"  missed: {label.scenario} on {label.device} at +{label.start_ts - START:.0f} s"
        )
    for inc, scenario in score.false_incidents:
        at = inc.first_seen - START
        out.append(f"  extra incident during {scenario}: {inc.type} on {inc.device} at +{at:.0f} s")
    for inc in score.background:
        out.append(
            f"  false incident: {inc.type} on {inc.device} at +{inc.first_seen - START:.0f} s"
        )
    return out


def report_normal(run: NormalRun) -> list[str]:
    false = run.false_incidents
    out = [
        f"normal traffic: {run.days:g} ship-days, {run.replay.events:,} events in "
        f"{run.replay.seconds:.0f} s, {run.maintenance} planned maintenance jobs, "
        f"{run.replay.dead_letters} dead letters",
        f"  false incidents: {len(false)} ({len(false) / run.days:.2f} per ship-day); "
        f"suppressed by the maintenance window (recorded): {len(run.suppressed)}",
    ]
    for inc in false:
        when = datetime.fromtimestamp(inc.first_seen, UTC)
        out.append(f"  false incident: {inc.type} on {inc.device} at {when:%a %H:%M}")
    return out


def report_templates(g: Grouping) -> list[str]:
    out = [
        f"log templates on the fault run's syslog: {g.lines:,} lines, {g.event_types} event types, "
        f"{g.templates} templates, grouping accuracy {g.accuracy:.4f}"
    ]
    for name, n in sorted(g.wrong.items(), key=lambda kv: -kv[1]):
        out.append(f"  grouped wrongly: {name} ({n} lines)")
    return out


def main(args: argparse.Namespace) -> int:
    print(
        f"seawatch bench scenarios: {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, seed {args.seed}"
    )
    policy = load_policy()
    score, result, sim, duration = run_faults(policy, args.rounds, args.seed)
    for line in report_faults(score, result, duration):
        print(line)
    if args.normal_days > 0:
        with tempfile.TemporaryDirectory(prefix="seawatch-bench-") as tmp:
            quiet = maintenance_policy(Path(tmp))
        for line in report_normal(run_normal(quiet, args.normal_days, args.seed)):
            print(line)
    for line in report_templates(grouping_accuracy(sim.events(duration), policy.detect.templates)):
        print(line)
    return 0
