"""Serving an ASGI app inside a process's own asyncio loop (ship agent and hub alike)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn


class _EmbeddedServer(uvicorn.Server):
    """The process, not uvicorn, owns SIGINT/SIGTERM and decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> int:
        """Starts serving; returns the bound port (useful with port 0)."""
        self._task = asyncio.create_task(self._server.serve(), name="http")
        while not self._server.started:
            await asyncio.sleep(0.01)
            if self._task.done():
                self._task.result()  # raises the bind error
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
