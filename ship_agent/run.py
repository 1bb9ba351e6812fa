"""`seawatch ship`: run the agent until Ctrl-C (or --duration), optionally with the simulator.

With --simulate the simulator sends its syslog over real UDP and its metrics over real HTTP
to this agent, injects a scripted fault every few simulated minutes, and incidents are
printed as they open, change type or severity, and close.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from shared import log
from shared.policy import PolicyError, load_policy
from shared.settings import AgentSettings, load_settings
from shared.timeutil import iso
from ship_agent.agent import ShipAgent
from ship_agent.store import Batch
from sync import bundles

_SHOWN = {"opened", "type", "severity", "escalated", "suppressed", "acknowledged", "resolved"}


def print_incidents(batch: Batch) -> None:
    for inc in batch.incidents:
        for note in inc.timeline:
            if note["version"] != inc.version or note["event"] not in _SHOWN:
                continue
            print(
                f"{iso(note['ts'])}  {note['event'].upper():<12} {inc.severity.value:<8} "
                f"{inc.type.value:<20} {inc.device:<14} v{inc.version}  {note['detail'][:90]}",
                flush=True,
            )


def run_ship(args: argparse.Namespace) -> int:
    settings = load_settings(
        AgentSettings,
        args.config,
        ship_id=args.ship_id,
        data_dir=args.data_dir,
        http_port=args.http_port,
        syslog_port=args.syslog_port,
        host=args.host,
        policy_dir=args.policy_dir,
        nats_url=args.nats_url,
        hub_leaf_url=args.hub_leaf_url,
        insight=False if args.no_llm else None,
    )
    log.configure(settings.log_level)
    try:  # a bundle shore sent and the ship accepted wins over the local directory
        policy_dir = bundles.active_dir(settings.data_dir) or settings.policy_dir
        policy = load_policy(policy_dir, settings.ship_id)
    except PolicyError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    asyncio.run(_main(settings, policy, args))
    return 0


async def _main(settings: AgentSettings, policy: Any, args: argparse.Namespace) -> None:
    agent = ShipAgent(settings, policy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    assert agent.syslog is not None
    print(
        f"seawatch ship {settings.ship_id}: API http://{settings.host}:{agent.http_port} "
        f"(docs /schema), syslog udp+tcp {settings.host}:{agent.syslog.udp_port}, "
        f"data {settings.data_dir}",
        flush=True,
    )
    agent.listeners.append(print_incidents)
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if args.simulate:
        from ship_agent.simulator.live import simulate_against

        udp_port, http_port = agent.syslog.udp_port, agent.http_port
        assert udp_port is not None and http_port is not None
        waiters.append(
            asyncio.create_task(
                simulate_against(
                    agent.ship_id,
                    settings.host,
                    udp_port,
                    http_port,
                    speed=args.speed,
                    duration_s=args.duration,
                    seed=args.seed,
                )
            )
        )
    elif args.duration is not None:
        waiters.append(asyncio.create_task(asyncio.sleep(args.duration)))
    t0 = time.monotonic()
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in waiters:
        task.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    await agent.stop()
    failure = next((r for r in results if isinstance(r, Exception)), None)
    if failure is not None:
        raise failure
    print(f"stopped after {time.monotonic() - t0:.0f} s", flush=True)
