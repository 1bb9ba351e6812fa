"""Reproducible benchmarks that print comparable figures."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def banner(name: str, *details: str) -> str:
    """Every benchmark's first line: what ran, when, and on what machine, how busy."""
    parts = [
        f"{os.cpu_count()} cores",
        platform.processor() or platform.machine(),
        f"Python {platform.python_version()}",
        f"load average {os.getloadavg()[0]:.1f}",
        *details,
    ]
    return f"seawatch bench {name} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, " + ", ".join(parts)
