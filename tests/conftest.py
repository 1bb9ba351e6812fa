"""Shared fixtures: the default policy, a fresh store, a pipeline on it, event builders."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.ids import new_id
from shared.policy import Policy, load_policy
from ship_agent.pipeline import Pipeline
from ship_agent.records import LogEvent, MetricEvent
from ship_agent.store import Store

SHIP = "MV-TEST"
T0 = 1_790_000_000.0  # a Monday, 2026-09-21 14:13 UTC


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(ship_id=SHIP)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "agent.db", SHIP)
    yield s
    s.close()


@pytest.fixture
def pipeline(policy: Policy, store: Store) -> Pipeline:
    p = Pipeline(policy, store)
    p.warm_start()
    return p


def metric(device: str, name: str, value: float, ts: float) -> MetricEvent:
    return MetricEvent(new_id(), ts, device, name, value, time.time(), "test")


def logline(device: str, app: str, message: str, ts: float, severity: int = 6) -> LogEvent:
    return LogEvent(new_id(), ts, device, app, severity, message, time.time(), "test")


class RunningAgent:
    """A real agent (real sockets, real SQLite) on its own event loop in a thread."""

    def __init__(self, agent: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.agent = agent
        self.loop = loop
        self.url = f"http://127.0.0.1:{agent.http_port}"
        self.syslog_port: int = agent.syslog.udp_port

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drain(self) -> None:
        self.call(self.agent.drained())

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        async def q() -> list[tuple[Any, ...]]:
            return list(self.agent.store.conn.execute(query, args))

        return self.call(q())  # type: ignore[no-any-return]


def start_agent(
    tmp_path: Path,
    policy: Policy,
    nats_url: str | None = None,
    ship_id: str = SHIP,
    **overrides: Any,
) -> RunningAgent:
    from shared.settings import AgentSettings
    from ship_agent.agent import ShipAgent

    settings = AgentSettings(
        ship_id=ship_id,
        data_dir=tmp_path / "ship",
        http_port=0,
        syslog_port=0,
        nats_url=nats_url,
        **{"insight": False, **overrides},  # the model-loading tests ask for it
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> Any:
        agent = ShipAgent(settings, policy)
        await agent.start()
        return agent

    agent = asyncio.run_coroutine_threadsafe(make(), loop).result(30)
    return RunningAgent(agent, loop)


def stop_agent(running: RunningAgent) -> None:
    try:
        running.call(running.agent.stop())
    finally:
        link = running.agent.link
        if link is not None:
            link.server.stop()  # a stop that failed or timed out must not leave the server up
        running.loop.call_soon_threadsafe(running.loop.stop)


@pytest.fixture
def agent(tmp_path: Path, policy: Policy) -> Iterator[RunningAgent]:
    running = start_agent(tmp_path, policy)
    yield running
    stop_agent(running)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy; returns its value or fails with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chdb data path per test process (chdb opens only one); tests isolate by database."""
    return tmp_path_factory.mktemp("chdb")
