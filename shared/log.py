"""Structured JSON logging with tracking_id / ship_id / incident_id bound from context."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
bound = structlog.contextvars.bound_contextvars


def configure(level: str = "INFO", json: bool = True) -> None:
    """Call once at process start; every logger then renders JSON lines to stderr."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # libraries that log every request through the standard library stay quiet below WARNING
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "uvicorn", "drain3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str) -> Any:
    return structlog.get_logger(name)
