"""The NAB corpus as the benchmark reads it: series, anomaly windows and scoring profiles.

The data is not part of the repository. It is looked up in `$SEAWATCH_NAB_DIR`, else in
`../shared/data/nab` beside the repository root (where the team keeps it); `--data-dir`
overrides both.
"""

from __future__ import annotations

import csv
import json
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.nab.scoring import Profile

ENV_DIR = "SEAWATCH_NAB_DIR"
# NAB's profile names -> the short names the scoreboard prints
PROFILES = {
    "standard": "standard",
    "reward_low_FP_rate": "low_fp",
    "reward_low_FN_rate": "low_fn",
}


@dataclass(frozen=True, slots=True)
class Series:
    """One data file: its rows and its anomaly windows as inclusive row ranges."""

    name: str  # e.g. "realKnownCause/nyc_taxi.csv"
    ts: tuple[float, ...]
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]


def default_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def series_names(root: Path) -> list[str]:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    return sorted(windows)


def load_series(root: Path, name: str) -> Series:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())[name]
    ts: list[float] = []
    values: list[float] = []
    with (root / "data" / name).open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # timestamp,value
        for row in reader:
            ts.append(_epoch(row[0]))
            values.append(float(row[1]))
    rows = []
    for start, end in windows:
        first, last = bisect_left(ts, _epoch(start)), bisect_right(ts, _epoch(end)) - 1
        if first <= last:
            rows.append((first, last))
    return Series(name, tuple(ts), tuple(values), tuple(rows))


def load_corpus(root: Path, names: list[str] | None = None) -> list[Series]:
    """Every series (or the named ones), in name order."""
    if not (root / "labels" / "combined_windows.json").exists():
        raise FileNotFoundError(
            f"no NAB corpus at {root}: pass --data-dir or set {ENV_DIR} to a NAB checkout"
        )
    return [load_series(root, name) for name in (names or series_names(root))]


def load_profiles(root: Path) -> dict[str, Profile]:
    """`config/profiles.json`, keyed by the scoreboard's short names."""
    raw = json.loads((root / "config" / "profiles.json").read_text())
    out = {}
    for nab_name, short in PROFILES.items():
        m = raw[nab_name]["CostMatrix"]
        out[short] = Profile(tp=m["tpWeight"], fp=m["fpWeight"], fn=m["fnWeight"])
    return out
