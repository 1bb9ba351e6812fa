"""`seawatch simulate`: one ship's telemetry with labelled faults, to the agent or a file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

from ship_agent.simulator.engine import Simulator
from ship_agent.simulator.sinks import (
    HttpIngestSink,
    JsonlFileSink,
    Sink,
    TcpSyslogSink,
    UdpSyslogSink,
    run_simulation,
)


def sink_for(target: str, ship_id: str) -> Sink:
    """udp://H:P and tcp://H:P (syslog lines), http://H:P (JSON batches), file:PATH (JSONL)."""
    if target.startswith("file:"):
        return JsonlFileSink(target[5:])
    url = urlsplit(target)
    if url.scheme in ("udp", "tcp") and url.hostname and url.port:
        sink_class = UdpSyslogSink if url.scheme == "udp" else TcpSyslogSink
        return sink_class(url.hostname, url.port)
    if url.scheme in ("http", "https") and url.hostname:
        return HttpIngestSink(target, ship_id)
    raise ValueError(
        f"cannot send to {target!r}: use udp://H:P, tcp://H:P, http://H:P or file:PATH"
    )


def parse_scenario(text: str, start_ts: float) -> tuple[str, float, float | None]:
    """NAME@OFFSET_S[:DURATION_S] -> (name, absolute start, duration or None)."""
    name, _, when = text.partition("@")
    offset, _, duration = when.partition(":")
    try:
        return name, start_ts + float(offset or 0), float(duration) if duration else None
    except ValueError:
        raise ValueError(f"bad --scenario {text!r}: use NAME@OFFSET_S[:DURATION_S]") from None


def run_simulate(args: argparse.Namespace) -> int:
    sim = Simulator(
        args.ship_id, seed=args.seed, start_ts=time.time(), extra_devices=args.extra_devices
    )
    try:
        for text in args.scenario:
            name, at, duration = parse_scenario(text, sim.start_ts)
            sim.inject(name, at, duration)
        sinks = [sink_for(t, args.ship_id) for t in args.to or ["file:/dev/stdout"]]
    except ValueError as exc:
        print(f"seawatch simulate: {exc}", file=sys.stderr)
        return 2
    if args.labels:
        with open(args.labels, "w", encoding="utf-8") as f:
            for label in sim.labels:
                f.write(json.dumps(label.as_dict()) + "\n")
    sent = asyncio.run(run_simulation(sim, args.duration, sinks, args.speed))
    print(f"sent {sent} events, {len(sim.labels)} labelled faults", file=sys.stderr)
    return 0
