"""`seawatch bench nab`: every NAB series through Seawatch's own metric detectors, scored.

Each series is one metric of one device, fed to a fresh `DetectStage` one sample at a time,
in time order, exactly as the agent's pipeline calls it: no look-ahead, no per-series
settings, the default policy. A row is a detection when the stage returns any anomaly for
it (NAB's series match no policy threshold, so these are the statistical detectors). The
agent's combination is the default policy; each detector alone is the same policy with the
other statistical detectors switched off. Published rows are NAB v1.1's scoreboard.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.nab.corpus import Series, default_dir, load_corpus, load_profiles
from bench.nab.scoring import Labelled, Profile, best_threshold, score_detections
from shared.policy import Policy, load_policy
from ship_agent.detect import DetectStage
from ship_agent.records import MetricEvent

# NAB v1.1 scoreboard (standard, reward low FP, reward low FN), from NAB's README
PUBLISHED: tuple[tuple[str, float, float, float], ...] = (
    ("ARTime", 74.9, 65.1, 80.4),
    ("Numenta HTM", 70.5, 62.6, 75.2),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Relative Entropy", 54.6, 47.6, 58.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("Twitter ADVec", 47.1, 33.6, 53.5),
    ("Windowed Gaussian", 39.6, 20.9, 47.4),
    ("Random", 11.0, 1.2, 19.5),
)
PROFILE_ORDER = ("standard", "low_fp", "low_fn")
DEVICE, METRIC = "nab", "nab.value"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    scores: dict[str, float]
    us_per_point: float | None = None


def variants(policy: Policy) -> dict[str, Policy]:
    """The agent's combination, and each statistical detector alone."""
    d = policy.detect
    off = {
        "robust": d.robust.model_copy(update={"enabled": False}),
        "changepoint": d.changepoint.model_copy(update={"enabled": False}),
        "hst": d.hst.model_copy(update={"enabled": False}),
    }

    def only(name: str, **update: object) -> Policy:
        parts = {k: v for k, v in off.items() if k != name}
        own = getattr(d, name).model_copy(update={"enabled": True, **update})
        detect = d.model_copy(update={**parts, name: own})
        return policy.model_copy(update={"detect": detect})

    return {
        "Seawatch (agent's combination)": policy,
        "Seawatch robust": only("robust"),
        "Seawatch changepoint": only("changepoint"),
        # the agent runs HalfSpaceTrees on multi-KPI devices only; alone it is shown on
        # the one-feature vector NAB gives it
        "Seawatch hst (1 feature)": only("hst", min_features=1),
    }


def detect_series(policy: Policy, s: Series) -> tuple[list[int], float]:
    """Row indices where the stage reported an anomaly, and the seconds it took."""
    stage = DetectStage(policy)
    apply = stage.apply
    found = []
    started = time.perf_counter()
    for i, (ts, value) in enumerate(zip(s.ts, s.values, strict=True)):
        if apply([], [MetricEvent("nab", ts, DEVICE, METRIC, value, ts, "nab")]):
            found.append(i)
    return found, time.perf_counter() - started


def run_policy(
    name: str, policy: Policy, corpus: list[Series], profiles: dict[str, Profile]
) -> Row:
    files = labelled(corpus)
    detections: dict[str, list[int]] = {}
    seconds = 0.0
    for s in corpus:
        detections[s.name], took = detect_series(policy, s)
        seconds += took
    points = sum(len(s.ts) for s in corpus)
    scores = {p: score_detections(files, detections, profiles[p]) for p in PROFILE_ORDER}
    return Row(name, scores, 1e6 * seconds / points)


def labelled(corpus: list[Series]) -> dict[str, Labelled]:
    return {s.name: Labelled(len(s.ts), s.windows) for s in corpus}


def reference_rows(corpus: list[Series], profiles: dict[str, Profile], seeds: int) -> list[Row]:
    """The scorer's own checks: null 0, perfect 100, random near NAB's Random row.

    The random detector scores every row uniformly in [0, 1) and, as in NAB, gets the
    threshold that suits it best per profile; with so few detections that best score
    varies a lot from seed to seed, so the row is the mean over `seeds` seeds (1, 2, ...).
    """
    files = labelled(corpus)
    perfect = {s.name: [a for a, _b in s.windows] for s in corpus}
    rows = [
        Row(
            "null (never detects)",
            {p: score_detections(files, {}, profiles[p]) for p in PROFILE_ORDER},
        ),
        Row("perfect", {p: score_detections(files, perfect, profiles[p]) for p in PROFILE_ORDER}),
    ]
    if seeds > 0:
        rows.append(
            Row(
                f"random (mean of {seeds} seeds)",
                random_scores(corpus, profiles, range(1, seeds + 1)),
            )
        )
    return rows


def random_scores(
    corpus: list[Series], profiles: dict[str, Profile], seeds: Iterable[int]
) -> dict[str, float]:
    """Mean best score of uniformly random per-row scores, per profile, over the seeds."""
    files = labelled(corpus)
    totals = dict.fromkeys(profiles, 0.0)
    n = 0
    for seed in seeds:
        rng = random.Random(seed)
        noise = {s.name: [rng.random() for _ in s.ts] for s in corpus}
        for name, profile in profiles.items():
            totals[name] += best_threshold(files, noise, profile)[1]
        n += 1
    return {name: total / n for name, total in totals.items()}


def ablations(policy: Policy) -> dict[str, Policy]:
    """The agent's combination with one lever taken away at a time: what each one buys."""
    d = policy.detect

    def change(**parts: dict[str, object]) -> Policy:
        detect = d.model_copy(
            update={name: getattr(d, name).model_copy(update=u) for name, u in parts.items()}
        )
        return policy.model_copy(update={"detect": detect})

    return {
        "combination without daily profile": change(
            robust={"daily_bins": 0}, changepoint={"daily_bins": 0}
        ),
        "combination without likelihood test": change(robust={"likelihood_eps": 1e-300}),
        "combination without range test": change(robust={"range_margin": 0.0}),
        "combination without hold-off": change(
            robust={"holdoff_points": 0}, changepoint={"holdoff_points": 0}
        ),
        "combination plus hst on the 1-feature vector": change(hst={"min_features": 1}),
    }


def format_rows(title: str, rows: list[Row]) -> list[str]:
    out = [
        title,
        f"  {'detector':46s} {'standard':>9s} {'low FP':>8s} {'low FN':>8s} {'us/point':>9s}",
    ]
    for r in rows:
        cost = f"{r.us_per_point:9.1f}" if r.us_per_point is not None else ""
        s = r.scores
        out.append(
            f"  {r.name:46s} {s['standard']:9.1f} {s['low_fp']:8.1f} {s['low_fn']:8.1f} {cost}"
        )
    return out


def main(args: argparse.Namespace) -> int:
    root = Path(args.data_dir) if args.data_dir else default_dir()
    try:
        corpus = load_corpus(root)
    except FileNotFoundError as exc:
        print(f"seawatch bench nab: {exc}", file=sys.stderr)
        return 2
    if args.series:
        corpus = [s for s in corpus if any(part in s.name for part in args.series)]
    profiles = load_profiles(root)
    policy = load_policy(args.policy_dir)
    points = sum(len(s.ts) for s in corpus)
    print(
        f"NAB: {len(corpus)} series, {points:,} points, {sum(len(s.windows) for s in corpus)} "
        f"windows; {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    ours = [run_policy(name, p, corpus, profiles) for name, p in variants(policy).items()]
    published = [
        Row(f"NAB: {n}", {"standard": a, "low_fp": b, "low_fn": c}) for n, a, b, c in PUBLISHED
    ]
    board = sorted(ours + published, key=lambda r: -r.scores["standard"])
    for line in format_rows("scoreboard (normalised NAB score, higher is better)", board):
        print(line)
    if args.ablations:
        rows = [run_policy(name, p, corpus, profiles) for name, p in ablations(policy).items()]
        for line in format_rows("ablations", rows):
            print(line)
    for line in format_rows("scorer checks", reference_rows(corpus, profiles, args.seeds)):
        print(line)
    return 0
