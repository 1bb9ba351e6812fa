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

from shared import log

FIRST_WAIT_S = 1.0
ATTEMPTS = 6  # waits of 1, 2, 4, 8, 16, 32 s: past that, the server's own retry takes over

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


def is_active(idle_s: float | None, within_s: float) -> bool:
    """A source's `active` is the time since it last heard from its origin (-1: never)."""
    return idle_s is not None and 0 <= idle_s <= within_s
