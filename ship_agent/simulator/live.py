"""The simulator driving a running agent over its real sockets (`seawatch ship --simulate`).

Syslog goes over UDP, metrics over HTTP, paced at `speed` simulated seconds per wall second,
with one scripted fault after another so incidents keep opening and closing on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ship_agent.simulator.engine import Simulator
from ship_agent.simulator.scenarios import SCENARIOS
from ship_agent.simulator.sinks import HttpIngestSink, Sink, UdpSyslogSink, run_simulation

FIRST_FAULT_S = 300.0  # let the detectors see some normal traffic first
FAULT_EVERY_S = 1500.0  # simulated seconds between scripted faults
FOREVER_S = 30 * 86_400.0


def scripted(sim: Simulator, duration_s: float) -> None:
    """One fault after another, cycling through the scenario catalogue."""
    names = sorted(SCENARIOS)
    at, i = sim.start_ts + FIRST_FAULT_S, 0
    while at < sim.start_ts + duration_s:
        sim.inject(names[i % len(names)], at)
        at += FAULT_EVERY_S
        i += 1


async def simulate_against(
    ship_id: str,
    host: str,
    udp_port: int,
    http_port: int,
    *,
    speed: float,
    duration_s: float | None,
    seed: int,
    start_ts: float | None = None,
    faults: Callable[[Simulator, float], None] = scripted,
) -> int:
    """`faults` schedules what goes wrong (default: the whole catalogue in turn)."""
    duration = duration_s if duration_s is not None else FOREVER_S
    sim = Simulator(ship_id, seed=seed, start_ts=time.time() if start_ts is None else start_ts)
    faults(sim, duration)
    sinks: list[Sink] = [
        UdpSyslogSink(host, udp_port),
        HttpIngestSink(f"http://{host}:{http_port}", ship_id, kinds=("metric",)),
    ]
    return await run_simulation(sim, duration, sinks, speed)
