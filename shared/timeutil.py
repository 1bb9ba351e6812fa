"""Time: timezone-aware UTC everywhere; epoch seconds (float) on the fast path."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_s() -> float:
    return time.time()


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def to_epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: Seawatch times must be timezone-aware UTC")
    return dt.timestamp()


def iso(ts: float) -> str:
    """ISO 8601 with a Z, millisecond precision."""
    return from_epoch(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")
