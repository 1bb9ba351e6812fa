"""Resume a stream source across a leaf link that has just come back.

NATS resumes sourcing on its own after a reconnect, but only after a back-off that grows
with the outage. Re-adding the source resumes it at once, provided the link already
carries requests: on a slow link (600 ms RTT) the leaf connection is listed a few round
trips before that, and a restart then does nothing. So: restart, look whether the source
is active again, and if not, restart again after twice the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from shared import log

FIRST_WAIT_S = 1.0
ATTEMPTS = 6  # waits of 1, 2, 4, 8, 16, 32 s: past that, the server's own retry takes over

ACTIVE_WITHIN_S = 5.0  # a flowing source hears from its origin (heartbeats) every second
_log = log.get("sync.sourcing")


async def resume(
    name: str,
    restart: Callable[[], Awaitable[None]],
    active: Callable[[], Awaitable[bool]],
) -> bool:
    """True once the source is active again; False if it never was within the attempts."""
    wait = FIRST_WAIT_S
    for _ in range(ATTEMPTS):
        try:
            await restart()
            await asyncio.sleep(wait)
            if await active():
                return True
        except Exception as exc:  # the server restarting, the link gone again
            _log.warning("source restart failed", source=name, error=str(exc))
            await asyncio.sleep(wait)
        wait *= 2
    return False


async def sources(nc: Any, domain: str, stream: str) -> list[dict[str, Any]]:
    """A stream's source states, raw: the client library's StreamSourceInfo drops
    `external`, which names the ship a source comes from."""
    reply = await nc.request(f"$JS.{domain}.API.STREAM.INFO.{stream}", b"")
    return list(orjson.loads(reply.data).get("sources") or [])


def idle_s(source: dict[str, Any]) -> float | None:
    """Seconds since the source last heard from its origin; None if it never did (-1)."""
    active = source.get("active")
    return active / 1e9 if active is not None and active >= 0 else None


def is_active(source: dict[str, Any]) -> bool:
    idle = idle_s(source)
    return idle is not None and idle <= ACTIVE_WITHIN_S
