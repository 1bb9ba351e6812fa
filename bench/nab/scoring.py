"""NAB scoring, written from its published description (Lavin & Ahmad 2015, NAB README).

- Each labelled anomaly sits in a window of rows. Inside a window only the *first*
  detection counts, as a true positive worth `tp * sigma(y)`, where y is its position
  relative to the window's end in window lengths (-1 at its first row, 0 at its last) and
  sigma(y) = 2 / (1 + e^(5y)) - 1 is the scaled sigmoid: early detection earns almost the
  full reward, detection at the very end almost none. Later detections in a window are free.
- A window without any detection costs `fn`.
- A detection outside every window is a false positive costing `fp * -sigma(y)`, where y
  is measured from the end of the preceding window the same way, so a late detection just
  after a window costs little and one far from any window costs the full `fp` (as does any
  false positive before the first window).
- The first 15 % of each file (at most 750 rows) is a probationary period in which
  detectors learn; detections there are not scored.
- Raw scores are summed over the corpus, then normalised per profile so that the null
  detector (never detects) scores 0 and the perfect one (detects at the first row of every
  window, nothing else) scores 100.
- A detector that outputs a score per row is thresholded with the single threshold that
  maximises its corpus score, chosen per profile; one that outputs yes/no has no choice.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750


@dataclass(frozen=True, slots=True)
class Profile:
    """Weights of one application profile (NAB's cost matrix)."""

    tp: float
    fp: float
    fn: float


@dataclass(frozen=True, slots=True)
class FileScore:
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int


def scaled_sigmoid(y: float) -> float:
    """+1 well before a window's end, 0 at its end, -1 well after it."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n_rows: int) -> int:
    return min(int(PROBATION_SHARE * n_rows), PROBATION_MAX_ROWS)


def score_file(
    n_rows: int,
    windows: Sequence[tuple[int, int]],
    detections: Sequence[int],
    profile: Profile,
) -> FileScore:
    """Score sorted row indices of detections against inclusive, sorted, disjoint windows."""
    starts = [a for a, _b in windows]
    first_hit: dict[int, int] = {}
    raw = 0.0
    fp = 0
    skip = probation_rows(n_rows)
    for i in detections:
        if i < skip:
            continue
        w = bisect_right(starts, i) - 1
        if w >= 0 and i <= windows[w][1]:
            first_hit.setdefault(w, i)
            continue
        fp += 1
        if w < 0:
            raw -= profile.fp
        else:
            a, b = windows[w]
            raw += profile.fp * scaled_sigmoid((i - b) / (b - a + 1))
    for w, i in first_hit.items():
        a, b = windows[w]
        raw += profile.tp * scaled_sigmoid((i - b) / (b - a + 1))
    missed = len(windows) - len(first_hit)
    raw -= profile.fn * missed
    null = -profile.fn * len(windows)
    perfect = sum(profile.tp * scaled_sigmoid((a - b) / (b - a + 1)) for a, b in windows)
    return FileScore(raw, null, perfect, len(first_hit), fp, missed)


def normalised(scores: Sequence[FileScore]) -> float:
    """100 * (raw - null) / (perfect - null), with each term summed over the corpus."""
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class Labelled:
    """What the scorer needs of a series: its length and its windows."""

    n_rows: int
    windows: tuple[tuple[int, int], ...]


def score_detections(
    files: Mapping[str, Labelled], detections: Mapping[str, Sequence[int]], profile: Profile
) -> float:
    """Normalised score of yes/no detections (sorted row indices per file)."""
    return normalised(
        [
            score_file(f.n_rows, f.windows, detections.get(name, ()), profile)
            for name, f in files.items()
        ]
    )


def best_threshold(
    files: Mapping[str, Labelled], scores: Mapping[str, Sequence[float]], profile: Profile
) -> tuple[float, float]:
    """(threshold, normalised score) maximising the corpus score of per-row scores.

    A coarse scan of thresholds 1 - 2^-k/4 (dense where sparse detectors live), then a
    fine scan between the best one's neighbours; the score is piecewise constant in the
    threshold, so this finds the optimum to well within the noise of any detector.
    """
    ranked = {}
    for name, s in scores.items():
        order = sorted(range(len(s)), key=s.__getitem__, reverse=True)
        ranked[name] = (order, [-s[i] for i in order])

    def evaluate(threshold: float) -> float:
        found = {
            name: sorted(order[: bisect_right(negated, -threshold)])
            for name, (order, negated) in ranked.items()
        }
        return score_detections(files, found, profile)

    coarse = [1.0 - 2.0 ** (-k / 4) for k in range(0, 81)] + [1.0]
    results = [(evaluate(t), t) for t in coarse]
    best_i = max(range(len(results)), key=lambda i: results[i][0])
    lo = coarse[max(0, best_i - 1)]
    hi = coarse[min(len(coarse) - 1, best_i + 1)]
    fine = [lo + (hi - lo) * j / 40 for j in range(41)]
    best_score, best_t = max([results[best_i], *((evaluate(t), t) for t in fine)])
    return best_t, best_score
