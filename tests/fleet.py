"""A real fleet for sync tests: one hub (own nats-server, chdb), ship agents each with its
leaf nats-server, and a link simulator between every ship and the hub's leafnode port."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from shared.policy import Policy
from shared.settings import HubSettings
from shore_hub.hub import Hub
from sync.linksim import ThreadedLink
from tests.conftest import RunningAgent, logline, metric, start_agent, stop_agent


class Fleet:
    def __init__(
        self,
        root: Path,
        chdb_path: Path,
        database: str,
        policy: Policy,
        ships: list[str],
        capture: bool = False,
    ) -> None:
        self.root, self.policy, self.ship_ids, self.capture = root, policy, list(ships), capture
        self.settings = HubSettings(
            data_dir=root / "hub",
            http_port=0,
            leaf_port=0,
            memory=False,
            clickhouse_path=chdb_path,
            clickhouse_database=database,
        )
        self.database = database
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.hub = Hub(self.settings, policy)
        self.secrets: dict[str, str] = {}
        self.links: dict[str, ThreadedLink] = {}
        self.agents: dict[str, RunningAgent] = {}

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---------------------------------------------------------------- life cycle

    def start(self) -> Fleet:
        self.call(self.hub.start(serve_http=True), 120)
        for ship in self.ship_ids:
            self._register(ship)
            self.start_agent(ship)
        return self

    def add_ship(
        self, ship: str, *, policy: Policy | None = None, **overrides: Any
    ) -> RunningAgent:
        """One more ship while the fleet runs: registered with the hub, its own link, its
        agent (stopped with the fleet)."""
        self.ship_ids.append(ship)
        self._register(ship)
        return self.start_agent(ship, policy=policy, **overrides)

    def _register(self, ship: str) -> None:
        self.secrets[ship] = self.call(self.hub.fleet.add_ship(ship))
        link = ThreadedLink("127.0.0.1", self.hub.fleet.leaf_port, capture=self.capture)
        link.start()
        self.links[ship] = link

    def start_agent(
        self, ship: str, *, policy: Policy | None = None, **overrides: Any
    ) -> RunningAgent:
        """(Re)start a ship's agent; `policy` replaces the fleet's for this ship only,
        `overrides` are AgentSettings fields."""
        self.agents[ship] = start_agent(
            self.root / ship,
            policy or self.policy,
            ship_id=ship,
            hub_leaf_url=f"nats-leaf://127.0.0.1:{self.links[ship].port}",
            ship_secret=self.secrets[ship],
            **overrides,
        )
        return self.agents[ship]

    def stop_agent(self, ship: str) -> None:
        stop_agent(self.agents.pop(ship))

    def stop(self) -> None:
        """Stop everything, whatever fails on the way (a test that broke an agent or a
        server): no nats-server may outlive the fleet. Raises the first failure."""
        failures: list[Exception] = []
        for ship in list(self.agents):
            running = self.agents[ship]
            try:
                self.stop_agent(ship)
            except Exception as exc:
                failures.append(exc)
                if running.agent.link is not None:
                    running.agent.link.server.stop()
                running.loop.call_soon_threadsafe(running.loop.stop)
        for link in self.links.values():
            try:
                link.stop()
            except Exception as exc:
                failures.append(exc)
        try:
            self.call(self.hub.stop())
        except Exception as exc:
            failures.append(exc)
        finally:
            if self.hub.nats_server is not None:
                self.hub.nats_server.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
        if failures:
            raise failures[0]

    # ---------------------------------------------------------------- input

    def raise_incidents(self, ship: str, n: int, lane: str, prefix: str = "dev") -> None:
        """n new incidents on n devices of one uplink lane (by the default severity map):
        urgent = navigation_data (high), normal = resource_pressure (medium),
        bulk = auth_failure (low)."""
        t = time.time()
        items: list[Any] = []
        for i in range(n):
            device = f"{prefix}-{lane}-{i:05d}"
            if lane == "urgent":
                items.append(logline(device, "gpsd", "GPS fix lost", t))
            elif lane == "normal":
                items += [metric(device, "host.disk_pct", 97.0, t + k * 31) for k in range(3)]
            else:
                items += [
                    logline(device, "sshd", "Failed password for admin from 10.10.1.5", t + k)
                    for k in range(5)
                ]
        agent = self.agents[ship]
        agent.call(_submit(agent.agent, items))
        agent.drain()

    # ---------------------------------------------------------------- what is where

    def committed(self, ship: str) -> dict[str, int]:
        """The newest version of every incident the ship committed."""
        return {i: v for i, v in self.agents[ship].sql("SELECT id, version FROM incidents")}

    def stored(self, ship: str | None = None) -> dict[str, int]:
        """The newest version of every incident the hub stored (for one ship, or all)."""
        where = "WHERE ship_id = {ship:String}" if ship else ""
        rows = self.hub.store.backend.query(
            f"SELECT id, version FROM {self.database}.incidents FINAL {where}",
            {"ship": ship} if ship else {},
        )
        return {r["id"]: int(r["version"]) for r in rows}

    def undelivered(self, ship: str) -> int:
        """Outbox rows the hub has not confirmed (superseded/evicted rows excluded)."""
        return int(
            self.agents[ship].sql(
                "SELECT count(*) FROM outbox WHERE delivered IS NULL AND note IS NULL"
            )[0][0]
        )


async def _submit(agent: Any, items: list[Any]) -> None:
    while not agent.submit(items):  # the ingest queue is bounded: wait for room
        await asyncio.sleep(0.05)
