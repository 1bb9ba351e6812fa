"""`seawatch demo`: a small fleet on one machine, on embedded defaults, telling a story.

A hub (own nats-server, chdb, Qdrant Edge) and N ships, each a real agent with its
leaf nats-server, SQLite and simulator, linked to the hub through a link simulator. Time is
compressed (`--speed` simulated seconds per wall second) and the same story plays on it:
a rain-fade front sweeps across three ships, one ship loses its link for half an hour while
its disk fills (incidents pile up on board, then catch up), and a brute-force attack hits
another. The terminal shows each beat, the incidents as ships raise them, and, every few
seconds, what each ship holds, what waits in its outbox and what has reached the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from seawatch.status import STATE_FILE
from shared import log
from shared.policy import load_policy
from shared.settings import AgentSettings, HubSettings
from ship_agent.agent import ShipAgent
from ship_agent.run import print_incidents
from ship_agent.simulator.engine import Simulator
from ship_agent.simulator.live import simulate_against
from ship_agent.simulator.scenarios import SCENARIOS
from shore_hub.auth import Role
from shore_hub.hub import Hub
from sync.linksim import ThreadedLink

NAMES = ("MV-AURORA", "MV-BOREAS", "MV-CALYPSO", "MV-DORADO", "MV-EOS", "MV-FJORD")
WARM_UP_S = 300.0  # simulated seconds of normal traffic before the first beat
CYCLE_S = 4_800.0  # the story repeats every 80 simulated minutes
CYCLES = 12


def ship_names(n: int) -> list[str]:
    return [NAMES[i] if i < len(NAMES) else f"MV-SHIP-{i + 1}" for i in range(n)]


@dataclass(frozen=True)
class Beat:
    at_s: float  # simulated seconds after the start
    ship: str
    what: str  # a simulator scenario, or "cut" / "restore" of the ship's link
    text: str


def story(ships: list[str], offset_s: float = 0.0) -> list[Beat]:
    """One telling; with fewer than five ships, ships play several parts."""
    n = len(ships)
    t = offset_s + WARM_UP_S
    beats = [
        Beat(t + 300 + 600 * i, ships[i], "rain_fade", "rain-fade front reaches the ship")
        for i in range(min(3, n))
    ]
    cut_ship, attacked = ships[3 % n], ships[4 % n]
    beats += [
        Beat(t + 600, cut_ship, "cut", "satellite link lost: incidents queue on board"),
        Beat(t + 700, cut_ship, "disk_filling", "debug logging left on: the POS disk fills"),
        Beat(t + 1200, attacked, "sshd_bruteforce", "password-guessing bot hits the crew sshd"),
        Beat(t + 2400, cut_ship, "restore", "satellite link back: the backlog goes ashore"),
    ]
    return sorted(beats, key=lambda b: b.at_s)


def timeline(ships: list[str], cycles: int = CYCLES) -> list[Beat]:
    return [b for c in range(cycles) for b in story(ships, c * CYCLE_S)]


def faults_of(ship: str, beats: list[Beat]) -> Callable[[Simulator, float], None]:
    """The simulator's fault schedule for one ship: its beats of the story, nothing else."""

    def schedule(sim: Simulator, duration_s: float) -> None:
        for b in beats:
            if b.ship == ship and b.what in SCENARIOS and b.at_s < duration_s:
                sim.inject(b.what, sim.start_ts + b.at_s)

    return schedule


@dataclass
class Outage:
    ship: str
    start: float  # wall clock
    end: float | None = None


@dataclass
class Fleet:
    hub: Hub
    key: str
    start_ts: float = 0.0  # the simulation's start, for every ship
    agents: dict[str, ShipAgent] = field(default_factory=dict)
    links: dict[str, ThreadedLink] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)


def _progress(what: str) -> Callable[[], None]:
    """Prints `what ...` now and the seconds it took when the returned callable runs."""
    t0 = time.monotonic()
    print(f"  {what} ...", end="", flush=True)
    return lambda: print(f" ready in {time.monotonic() - t0:.1f} s", flush=True)


async def _start(args: argparse.Namespace, ships: list[str]) -> Fleet:
    root: Path = args.data_dir
    policy = load_policy()
    print(f"starting a fleet of {len(ships)} ships and a shore hub under {root}", flush=True)
    done = _progress("hub: nats-server, ClickHouse (chdb), Qdrant, API")
    hub = Hub(
        HubSettings(
            data_dir=root / "hub", http_port=args.http_port, leaf_port=0, memory=not args.no_memory
        ),
        policy,
    )
    await hub.start()
    done()
    fleet = Fleet(hub, hub.keys.create("demo", Role.ADMIN, None))
    for ship in ships:
        done = _progress(f"{ship}: leaf nats-server, agent, link simulator")
        secret = await hub.fleet.add_ship(ship)
        link = ThreadedLink("127.0.0.1", hub.fleet.leaf_port, name=ship)
        link.start()
        fleet.links[ship] = link
        agent = ShipAgent(
            AgentSettings(
                ship_id=ship,
                data_dir=root / ship,
                http_port=0,
                syslog_port=0,
                hub_leaf_url=f"nats-leaf://127.0.0.1:{link.port}",
                ship_secret=SecretStr(secret),
                insight=not args.no_llm,
            ),
            load_policy(ship_id=ship),
        )
        await agent.start()
        agent.listeners.append(print_incidents)
        fleet.agents[ship] = agent
        done()
    return fleet


def _announce(fleet: Fleet, args: argparse.Namespace) -> None:
    url = f"http://127.0.0.1:{fleet.hub.http_port}"
    state = {
        "hub": url,
        "api_key": fleet.key,
        "ships": {s: f"http://127.0.0.1:{a.http_port}" for s, a in fleet.agents.items()},
        "start_ts": fleet.start_ts,
        "speed": args.speed,
        "beats": [b.__dict__ for b in timeline(list(fleet.agents), 1)],
    }
    path: Path = args.data_dir / STATE_FILE
    path.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)  # it holds an admin key
    print(
        f"\nconsole  {url}/console   (log in with the API key below)\n"
        f"API      {url}/api/v3     (OpenAPI at {url}/schema)\n"
        f"API key  {fleet.key}   (role admin)\n"
        f"status   seawatch status --data-dir {args.data_dir}\n"
        f"\nthe story, {args.speed:g} simulated seconds per second:",
        flush=True,
    )
    for b in timeline(list(fleet.agents), 1):
        print(f"  +{_clock(b.at_s)}  {b.ship:<11} {b.text}", flush=True)
    print(flush=True)


def _clock(sim_s: float) -> str:
    return f"{int(sim_s // 3600):02d}:{int(sim_s % 3600 // 60):02d}"


async def _tell(fleet: Fleet, beats: list[Beat], speed: float, wall0: float) -> None:
    """Plays the beats at their wall-clock moment; cuts and restores links on cue."""
    loop = asyncio.get_running_loop()
    for b in beats:
        await asyncio.sleep(max(0.0, wall0 + b.at_s / speed - loop.time()))
        print(f">>> story +{_clock(b.at_s)}  {b.ship}: {b.text}", flush=True)
        link = fleet.links[b.ship]
        if b.what == "cut":
            await asyncio.to_thread(link.cut)
            fleet.outages.append(Outage(b.ship, time.time()))
        elif b.what == "restore":
            await asyncio.to_thread(link.restore)
            ongoing = [o for o in fleet.outages if o.ship == b.ship and o.end is None]
            if ongoing:
                ongoing[-1].end = time.time()


def _held_during(agent: ShipAgent, outage: Outage) -> str:
    """What the ship committed while its link was down, and how much of it the hub has
    receipted (stored durably ashore); a version replaced on board before it could be sent
    travels as its newer version."""
    held, replaced, ashore = agent.store.conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE note = 'superseded'), count(delivered)"
        " FROM outbox WHERE kind = 'incident' AND created >= ? AND created < ?",
        (outage.start, outage.end or time.time()),
    ).fetchone()
    caught_up = outage.end is not None and held and ashore + replaced == held
    return (
        f"{held} incident versions committed on board while cut; {ashore} stored ashore, "
        f"{replaced} replaced on board by a newer version{'; all caught up' if caught_up else ''}"
    )


async def _report(fleet: Fleet, every: float) -> None:
    hub = fleet.hub
    db = hub.settings.clickhouse_database
    while True:
        await asyncio.sleep(every)
        rows = await hub.read(
            hub.store.backend.query,
            f"SELECT ship_id, count() AS n FROM {db}.incidents FINAL GROUP BY ship_id",
        )
        at_hub = {r["ship_id"]: int(r["n"]) for r in rows}
        for ship, agent in fleet.agents.items():
            committed = agent.store.conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
            unsent = sum(agent.outbox.depths().values())
            state = "up" if fleet.links[ship].sim.up else "CUT"
            print(
                f"=== {ship:<11} link {state:<3} incidents on ship {committed:>4}, at hub "
                f"{at_hub.get(ship, 0):>4}; outbox unsent {unsent:>4}; bytes up "
                f"{fleet.links[ship].sim.bytes_up:,}",
                flush=True,
            )
        for outage in fleet.outages:
            span = (outage.end or time.time()) - outage.start
            print(
                f"=== outage of {outage.ship} ({span:.0f} s{'' if outage.end else ', ongoing'}):"
                f" {_held_during(fleet.agents[outage.ship], outage)}",
                flush=True,
            )


def story_check(fleet: Fleet, until_s: float) -> Iterator[tuple[Beat, str | None]]:
    """Each fault beat played so far, with an incident the hub holds for it (or None)."""
    for b in timeline(list(fleet.agents)):
        if b.what not in SCENARIOS or b.at_s > until_s:
            continue
        scenario = SCENARIOS[b.what]
        start = fleet.start_ts + b.at_s
        page = fleet.hub.store.list_incidents(
            ship=b.ship,
            type=scenario.incident_type,
            since=start - 60,
            until=start + scenario.duration_s,
            limit=1,
        )
        yield b, (page["items"][0]["id"] if page["items"] else None)


async def _fleet(args: argparse.Namespace) -> None:
    ships = ship_names(args.ships)
    fleet = await _start(args, ships)
    tasks: list[asyncio.Task[Any]] = []
    loop = asyncio.get_running_loop()
    wall0 = loop.time()
    try:
        fleet.start_ts = time.time()
        _announce(fleet, args)
        beats = timeline(ships)
        for i, (ship, agent) in enumerate(fleet.agents.items()):
            assert agent.syslog is not None and agent.syslog.udp_port and agent.http_port
            run = simulate_against(
                ship,
                "127.0.0.1",
                agent.syslog.udp_port,
                agent.http_port,
                speed=args.speed,
                duration_s=None,
                seed=args.seed + i,
                start_ts=fleet.start_ts,
                faults=faults_of(ship, beats),
            )
            tasks.append(asyncio.create_task(run, name=f"simulate-{ship}"))
        tasks.append(asyncio.create_task(_tell(fleet, beats, args.speed, wall0), name="story"))
        tasks.append(asyncio.create_task(_report(fleet, args.report_every), name="report"))
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if args.duration:
            waiters.append(asyncio.create_task(asyncio.sleep(args.duration)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        print("\nstopping; the story so far, as the hub holds it:", flush=True)
        played = (loop.time() - wall0) * args.speed
        checks = await fleet.hub.read(lambda: list(story_check(fleet, played)))
        for b, incident_id in checks:
            found = f"at hub as {incident_id}" if incident_id else "not at the hub (yet)"
            print(f"  +{_clock(b.at_s)}  {b.ship:<11} {b.what:<16} {found}", flush=True)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for agent in fleet.agents.values():
            await agent.stop()
        for link in fleet.links.values():
            link.stop()
        await fleet.hub.stop()
        with contextlib.suppress(FileNotFoundError):
            os.remove(args.data_dir / STATE_FILE)


def run_demo(args: argparse.Namespace) -> int:
    log.configure("WARNING")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_fleet(args))
    return 0
