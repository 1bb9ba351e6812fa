"""`seawatch demo`: a small fleet on one machine, on embedded defaults.

A hub (own nats-server, chdb, Qdrant local mode), N ships each with its agent, its leaf
nats-server and a simulator injecting faults, and a link simulator between every ship and
the hub that cuts one ship's link now and then. It prints incidents as ships raise them
and, every few seconds, what each ship has committed, what waits in its outbox and what the
hub holds: an outage's backlog arrives when the link comes back, nothing lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shared import log
from shared.policy import load_policy
from shared.settings import AgentSettings, HubSettings
from ship_agent.agent import ShipAgent
from ship_agent.run import print_incidents
from ship_agent.simulator.live import simulate_against
from shore_hub.auth import Role
from shore_hub.hub import Hub
from sync.linksim import ThreadedLink


async def _fleet(args: argparse.Namespace) -> None:
    root: Path = args.data_dir
    policy = load_policy()
    hub = Hub(
        HubSettings(
            data_dir=root / "hub",
            http_port=args.http_port,
            leaf_port=0,
            memory=not args.no_memory,
        ),
        policy,
    )
    await hub.start()
    key = hub.keys.create("demo", Role.ADMIN, None)
    print(f"hub: API http://127.0.0.1:{hub.http_port} (docs /schema), X-API-Key: {key}")
    ships = [f"MV-DEMO-{i + 1}" for i in range(args.ships)]
    links: dict[str, ThreadedLink] = {}
    agents: dict[str, ShipAgent] = {}
    tasks: list[asyncio.Task[Any]] = []
    try:
        for i, ship in enumerate(ships):
            secret = await hub.fleet.add_ship(ship)
            links[ship] = ThreadedLink("127.0.0.1", hub.fleet.leaf_port, name=ship)
            links[ship].start()
            agent = ShipAgent(
                AgentSettings(
                    ship_id=ship,
                    data_dir=root / ship,
                    http_port=0,
                    syslog_port=0,
                    hub_leaf_url=f"nats-leaf://127.0.0.1:{links[ship].port}",
                    ship_secret=SecretStr(secret),
                    insight=not args.no_llm,
                ),
                load_policy(ship_id=ship),
            )
            await agent.start()
            agent.listeners.append(print_incidents)
            agents[ship] = agent
            assert agent.syslog is not None and agent.syslog.udp_port and agent.http_port
            print(f"{ship}: API http://127.0.0.1:{agent.http_port}")
            tasks.append(
                asyncio.create_task(
                    simulate_against(
                        ship,
                        "127.0.0.1",
                        agent.syslog.udp_port,
                        agent.http_port,
                        speed=args.speed,
                        duration_s=None,
                        seed=args.seed + i,
                    )
                )
            )
        tasks.append(asyncio.create_task(_cut_links(links, args.cut_every, args.cut_for)))
        tasks.append(asyncio.create_task(_report(hub, agents, links)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if args.duration:
            waiters.append(asyncio.create_task(asyncio.sleep(args.duration)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for agent in agents.values():
            await agent.stop()
        for link in links.values():
            link.stop()
        await hub.stop()


async def _cut_links(links: dict[str, ThreadedLink], every: float, length: float) -> None:
    """One ship at a time loses its link for a while, as a rain fade or a blockage would."""
    rng = random.Random(7)
    while True:
        await asyncio.sleep(every)
        ship = rng.choice(sorted(links))
        print(f"--- link of {ship} cut for {length:.0f} s", flush=True)
        await asyncio.to_thread(links[ship].cut)
        await asyncio.sleep(length)
        await asyncio.to_thread(links[ship].restore)
        print(f"--- link of {ship} restored", flush=True)


async def _report(hub: Hub, agents: dict[str, ShipAgent], links: dict[str, ThreadedLink]) -> None:
    db = hub.settings.clickhouse_database
    while True:
        await asyncio.sleep(15)
        rows = await hub.read(
            hub.store.backend.query,
            f"SELECT ship_id, count() AS n FROM {db}.incidents FINAL GROUP BY ship_id",
        )
        at_hub = {r["ship_id"]: int(r["n"]) for r in rows}
        for ship, agent in agents.items():
            committed = agent.store.conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
            unsent = sum(agent.outbox.depths().values())
            state = "up" if links[ship].sim.up else "CUT"
            print(
                f"=== {ship}: link {state:<3} incidents on ship {committed:>4}, at hub "
                f"{at_hub.get(ship, 0):>4}; outbox unsent {unsent:>3}; bytes up "
                f"{links[ship].sim.bytes_up:,}",
                flush=True,
            )


def run_demo(args: argparse.Namespace) -> int:
    log.configure("WARNING")
    asyncio.run(_fleet(args))
    return 0
