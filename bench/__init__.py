"""Reproducible benchmarks that print comparable figures."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


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


@contextlib.contextmanager
def scratch_dir(given: Path | None, name: str) -> Iterator[Path]:
    """The data directory asked for, or a temporary one that is removed afterwards."""
    if given is not None:
        yield given
        return
    tmp = tempfile.mkdtemp(prefix=f"seawatch-bench-{name}-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
